#!/bin/sh
# `make run`: a short session with pyqemu-img and pyqemu-io, printing what
# qemu-img and qemu-io would print.  A qcow2 image over a raw backing file:
# writes, verified reads, write -z, discard, map, copy-on-read, then check
# and map of the result.
set -eu
dir=$(mktemp -d "${TMPDIR:-/tmp}/pyqemu-run.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"
run() { echo; echo "\$ $*"; "$@"; }

run pyqemu-img create -f raw base.raw 4M
run pyqemu-io -f raw -c 'write -P 0xaa 0 1M' -c 'write -P 0xbb 2M 512k' base.raw
run pyqemu-img create -f qcow2 -b base.raw -F raw top.qcow2
run pyqemu-io -f qcow2 \
    -c 'write -P 0x11 64k 64k' -c 'read -P 0x11 64k 64k' \
    -c 'read -P 0xaa 0 64k' -c 'write -z 1M 256k' -c 'discard 2M 64k' \
    -c 'map' top.qcow2
# -C: what is read from the backing file is copied into top.qcow2
run pyqemu-io -C -f qcow2 -c 'read -P 0xbb 2304k 64k' -c 'map' top.qcow2
run pyqemu-img check top.qcow2
run pyqemu-img map top.qcow2
run pyqemu-img info top.qcow2
