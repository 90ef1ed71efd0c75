"""The qemu-img comparison cases: ImgCase(name, setup, args[, diverges]).

The set-up runs with the real tools in both directories; then
`qemu-img ARGS` runs against `pyqemu-img ARGS`.  See img_harness.py and
README.rst; DIVERGENCES.rst explains every case with diverges=.
"""

import os
import random
import struct

from img_harness import ImgCase

# A raw file with holes: 2 MiB, data at 64k (64k of 0x01) and at 1M (4k of
# 0x02), holes elsewhere.
RAW = ("qemu-img create -f raw a.raw 2M",
       "qemu-io -f raw -c 'write -P 1 64k 64k' -c 'write -P 2 1M 4k' a.raw")
# The same data and another byte at 1.5M
RAW_DIFF = RAW + ("qemu-img create -f raw d.raw 2M",
                  "qemu-io -f raw -c 'write -P 1 64k 64k' "
                  "-c 'write -P 2 1M 4k' -c 'write -P 9 1536k 512' d.raw")
# A zeroed raw image of another size
RAW_3M = RAW + ("qemu-img create -f raw e.raw 3M",)
# qcow2 b (64 MiB, 64k of 0x03 at 0) and its overlay c (64k of 0x04 at 128k,
# a zero cluster at 256k)
QCOW2 = ("qemu-img create -f qcow2 b.qcow2 64M",
         "qemu-io -f qcow2 -c 'write -P 3 0 64k' b.qcow2")
CHAIN = QCOW2 + ("qemu-img create -f qcow2 -b b.qcow2 -F qcow2 c.qcow2",
                 "qemu-io -f qcow2 -c 'write -P 4 128k 64k' "
                 "-c 'write -z 256k 64k' c.qcow2")
# compat=0.10 with 4k clusters, data spread out
QCOW2_V2 = ("qemu-img create -f qcow2 -o compat=0.10,cluster_size=4k "
            "v.qcow2 8M",
            "qemu-io -f qcow2 -c 'write -P 5 0 12k' -c 'write -P 6 1M 3k' "
            "-c 'write -P 7 7M 4k' v.qcow2")
# b (as QCOW2) and v (compat=0.10, 1 MiB) with an internal snapshot each
SNAPSHOTS = QCOW2 + ("qemu-img snapshot -c s1 b.qcow2",
                     "qemu-img create -f qcow2 -o compat=0.10 v.qcow2 1M",
                     "qemu-img snapshot -c s1 v.qcow2")
# qcow2 o of 100k, its partial last cluster allocated (0x08 from 64k)
QCOW2_ODD = ("qemu-img create -f qcow2 o.qcow2 100k",
             "qemu-io -f qcow2 -c 'write -P 8 64k 36k' o.qcow2")
# a 2 MiB raw file of 0x07 under a qcow2 p of 100k (4k of 0x01 at 0): what
# p grows by must read as zeroes, not as g's data
G_RAW = ("qemu-img create -f raw g.raw 2M",
         "qemu-io -f raw -c 'write -P 7 0 2M' g.raw")
QCOW2_ODD_OVER_RAW = G_RAW + (
    "qemu-img create -f qcow2 -b g.raw -F raw p.qcow2 100k",
    "qemu-io -f qcow2 -c 'write -P 1 0 4k' p.qcow2")
# the same with compat=0.10, which has no zero clusters
QCOW2_V2_OVER_RAW = G_RAW + (
    "qemu-img create -f qcow2 -o compat=0.10 -b g.raw -F raw p.qcow2 128k",)
# 1-bit refcounts and 4k clusters: the refcount structures grow soon
QCOW2_REFCOUNT_BITS = (
    "qemu-img create -f qcow2 -o refcount_bits=1,cluster_size=4k r.qcow2 1M",
    "qemu-io -f qcow2 -c 'write -P 9 0 100k' r.qcow2")
NONE = ()


def noise(name: str, offset: int, length: int):
    """A set-up step: length bytes that do not compress, at offset of
    name."""
    def step(cwd: str) -> None:
        with open(os.path.join(cwd, name), "r+b") as f:
            f.seek(offset)
            f.write(random.Random(offset).randbytes(length))
    return step


def file_of(name: str, data: bytes):
    """A set-up step: a file holding data."""
    def step(cwd: str) -> None:
        with open(os.path.join(cwd, name), "wb") as f:
            f.write(data)
    return step


# A raw image whose size is not a multiple of the sector size
ODD = (file_of("odd.raw", bytes(range(256)) * 3 + b"\x01" * 232),)
# Data that compresses, and data that does not over a cluster boundary
RAND = ("qemu-img create -f raw r.raw 1M",
        "qemu-io -f raw -c 'write -P 8 0 96k' r.raw",
        noise("r.raw", 100000, 40000))


def leaked_clusters(name: str, count: int):
    """A set-up step: mark count clusters past the end of qcow2 image name
    (64k clusters) as used, so that check finds them leaked."""
    def step(cwd: str) -> None:
        path = os.path.join(cwd, name)
        with open(path, "r+b") as f:
            data = f.read()
            reftable = struct.unpack(">Q", data[48:56])[0]
            refblock = struct.unpack(">Q", data[reftable:reftable + 8])[0]
            first = len(data) // 65536
            for k in range(count):
                f.seek(refblock + 2 * (first + k))
                f.write(struct.pack(">H", 1))
            f.seek(0, os.SEEK_END)
            f.write(bytes(65536 * count))
    return step


def corrupted_refcount(name: str):
    """A set-up step: zero the refcount of the last cluster of name (a data
    cluster after a plain write), a corruption."""
    def step(cwd: str) -> None:
        path = os.path.join(cwd, name)
        with open(path, "r+b") as f:
            data = f.read()
            reftable = struct.unpack(">Q", data[48:56])[0]
            refblock = struct.unpack(">Q", data[reftable:reftable + 8])[0]
            f.seek(refblock + 2 * (len(data) // 65536 - 1))
            f.write(struct.pack(">H", 0))
    return step


def dirty(name: str):
    """A set-up step: set the dirty bit of qcow2 image name, as a crash
    with lazy refcounts leaves it."""
    def step(cwd: str) -> None:
        with open(os.path.join(cwd, name), "r+b") as f:
            f.seek(72)
            features = struct.unpack(">Q", f.read(8))[0]
            f.seek(72)
            f.write(struct.pack(">Q", features | 1))
    return step


DIRTY = ("qemu-img create -f qcow2 -o lazy_refcounts=on y.qcow2 1M",
         "qemu-io -f qcow2 -c 'write -P 5 0 128k' y.qcow2",
         dirty("y.qcow2"))
LEAKY = ("qemu-img create -f qcow2 l.qcow2 1M",
         "qemu-io -f qcow2 -c 'write -P 5 0 128k' l.qcow2",
         leaked_clusters("l.qcow2", 2))
CORRUPT = ("qemu-img create -f qcow2 k.qcow2 1M",
           "qemu-io -f qcow2 -c 'write -P 5 0 128k' k.qcow2",
           corrupted_refcount("k.qcow2"))

# Entries of DIVERGENCES.rst
SECTOR_STATUS = "sector-granular-block-status"
QCOW2_OPTIONS_ONCE = "qcow2-create-options-parsed-once"

CASES = [
    # --- the program --------------------------------------------------------
    ImgCase("prog_no_args", NONE, ""),
    ImgCase("prog_bad_command", NONE, "nosuch"),
    ImgCase("prog_bad_option", NONE, "--bogus"),
    ImgCase("prog_missing_trace_arg", NONE, "-T"),

    # --- create -------------------------------------------------------------
    ImgCase("create_raw", NONE, "create -f raw x.raw 1M"),
    ImgCase("create_raw_default_fmt", NONE, "create x.raw 64k"),
    ImgCase("create_raw_fraction", NONE, "create x.raw 1.5k"),
    ImgCase("create_size_option_range", NONE,
            "create -f raw -o size=20E x.raw"),
    ImgCase("create_size_option_range_digits", NONE,
            "create -f qcow2 -o size=99999999999999999999 x.qcow2"),
    ImgCase("create_size_option_bad", NONE,
            "create -f raw -o 'size=1 k' x.raw"),
    ImgCase("create_size_option_rounded", NONE,
            "create -f raw -o size=1.0005k x.raw"),
    ImgCase("create_size_option_hex_suffix", NONE,
            "create -f raw -o size=0x10k x.raw"),
    ImgCase("create_size_option_hex_suffix_qcow2", NONE,
            "create -f qcow2 -o size=0x10k x.qcow2", diverges=QCOW2_OPTIONS_ONCE),
    ImgCase("create_size_hex_suffix", NONE, "create -f raw x.raw 0x10k"),
    ImgCase("create_raw_hex", NONE, "create x.raw 0x10000"),
    ImgCase("create_raw_size_option", NONE, "create -o size=2M x.raw"),
    ImgCase("create_raw_prealloc_full", NONE,
            "create -f raw -o preallocation=full x.raw 128k"),
    ImgCase("create_raw_prealloc_falloc", NONE,
            "create -o preallocation=falloc x.raw 128k"),
    ImgCase("create_raw_quiet", NONE, "create -q x.raw 4M"),
    ImgCase("create_raw_help", NONE, "create -o help"),
    ImgCase("create_raw_help_file", NONE, "create -o help x.raw"),
    ImgCase("create_raw_extent_hint", NONE,
            "create -f raw -o extent_size_hint=2M x.raw 1M"),
    ImgCase("create_raw_extent_hint_zero", NONE,
            "create -o extent_size_hint=0,nocow=on x.raw 1M"),
    ImgCase("create_raw_extent_hint_bad", NONE,
            "create -o extent_size_hint=1Q x.raw 1M"),
    ImgCase("create_raw_extent_hint_negative", NONE,
            "create -o extent_size_hint=-1 x.raw 1M"),
    ImgCase("create_raw_extent_hint_too_large", NONE,
            "create -o extent_size_hint=4G x.raw 1M"),
    ImgCase("create_raw_backing", RAW, "create -f raw -b a.raw z.raw"),
    ImgCase("create_bad_size", NONE, "create x.raw 1Q"),
    ImgCase("create_size_range", NONE, "create x.raw 20E"),
    ImgCase("create_no_size", NONE, "create x.raw"),
    ImgCase("create_bad_format", NONE, "create -f nosuch x.raw 1M"),
    ImgCase("create_bad_option", NONE, "create -o nosuch=1 x.raw 1M"),
    ImgCase("create_bad_option_list", NONE, "create -o ,x x.raw 1M"),
    ImgCase("create_unknown_option", NONE, "create -z x.raw 1M"),
    ImgCase("create_no_dir", NONE, "create nodir/x.raw 1M"),
    ImgCase("create_qcow2", NONE, "create -f qcow2 x.qcow2 64M"),
    ImgCase("create_qcow2_quiet", NONE, "create -q -f qcow2 x.qcow2 1G"),
    ImgCase("create_qcow2_quiet_opts", NONE,
            "create -q -f qcow2 -o cluster_size=4k,lazy_refcounts=on "
            "x.qcow2 100M"),
    ImgCase("create_qcow2_quiet_v2", NONE,
            "create -q -f qcow2 -o compat=0.10 x.qcow2 10M"),
    ImgCase("create_qcow2_quiet_prealloc", NONE,
            "create -q -f qcow2 -o preallocation=metadata x.qcow2 2M"),
    ImgCase("create_qcow2_prealloc_falloc", NONE,
            "create -f qcow2 -o preallocation=falloc x.qcow2 1000k"),
    ImgCase("create_qcow2_prealloc_full", NONE,
            "create -f qcow2 -o preallocation=full,cluster_size=4k x.qcow2 "
            "3M"),
    ImgCase("create_qcow2_prealloc_metadata_small_clusters", NONE,
            "create -f qcow2 -o preallocation=metadata,cluster_size=512 "
            "x.qcow2 1M"),
    ImgCase("create_qcow2_quiet_backing", QCOW2,
            "create -q -f qcow2 -b b.qcow2 -F qcow2 z.qcow2"),
    ImgCase("create_qcow2_backing", QCOW2,
            "create -f qcow2 -b b.qcow2 -F qcow2 z.qcow2"),
    ImgCase("create_qcow2_backing_no_fmt", RAW,
            "create -q -f qcow2 -b a.raw z.qcow2"),
    ImgCase("create_qcow2_unsafe_backing", NONE,
            "create -q -f qcow2 -u -b nosuch.qcow2 -F qcow2 z.qcow2 1M"),
    ImgCase("create_qcow2_unsafe_backing_no_size", NONE,
            "create -q -f qcow2 -u -b nosuch.qcow2 -F qcow2 z.qcow2"),
    ImgCase("create_qcow2_bad_cluster", NONE,
            "create -q -f qcow2 -o cluster_size=1000 x.qcow2 1M"),
    ImgCase("create_qcow2_help", NONE, "create -f qcow2 -o help"),
    ImgCase("create_qcow2_help_file", NONE, "create -f qcow2 -o help x.qcow2"),
    ImgCase("create_qcow2_extent_hint", NONE,
            "create -f qcow2 -o extent_size_hint=256k,preallocation=metadata "
            "x.qcow2 1M"),
    ImgCase("create_qcow2_extent_hint_too_large", NONE,
            "create -f qcow2 -o extent_size_hint=8G x.qcow2 1M"),

    # --- info ---------------------------------------------------------------
    ImgCase("info_raw", RAW, "info a.raw"),
    ImgCase("info_raw_json", RAW, "info --output=json a.raw"),
    ImgCase("info_raw_f", RAW, "info -f raw a.raw"),
    ImgCase("info_qcow2", QCOW2, "info b.qcow2"),
    ImgCase("info_qcow2_json", QCOW2, "info --output=json b.qcow2"),
    ImgCase("info_backing", CHAIN, "info c.qcow2"),
    ImgCase("info_backing_json", CHAIN, "info --output=json c.qcow2"),
    ImgCase("info_chain", CHAIN, "info --backing-chain c.qcow2"),
    ImgCase("info_chain_json", CHAIN,
            "info --backing-chain --output=json c.qcow2"),
    ImgCase("info_qcow2_v2", QCOW2_V2, "info v.qcow2"),
    ImgCase("info_qcow2_v2_json", QCOW2_V2, "info --output=json v.qcow2"),
    ImgCase("info_dirty", DIRTY, "info y.qcow2"),
    ImgCase("info_dirty_json", DIRTY, "info --output=json y.qcow2"),
    ImgCase("info_missing", NONE, "info nosuch.raw"),
    ImgCase("info_wrong_format", RAW, "info -f qcow2 a.raw"),
    ImgCase("info_bad_output", RAW, "info --output=xml a.raw"),
    ImgCase("info_null", NONE, "info -f null-co null-co://"),

    # --- map -----------------------------------------------------------------
    ImgCase("map_raw", RAW, "map a.raw"),
    ImgCase("map_raw_json", RAW, "map --output=json a.raw"),
    ImgCase("map_raw_range", RAW,
            "map --output=json --start-offset=64k --max-length=1M a.raw"),
    ImgCase("map_qcow2", QCOW2, "map b.qcow2"),
    ImgCase("map_backing", CHAIN, "map c.qcow2"),
    ImgCase("map_backing_json", CHAIN, "map --output=json c.qcow2"),
    ImgCase("map_v2_json", QCOW2_V2, "map --output=json -f qcow2 v.qcow2"),
    ImgCase("map_null_json", NONE, "map --output=json null-co://"),
    ImgCase("map_odd_size", ODD, "map --output=json -f raw odd.raw",
            diverges=SECTOR_STATUS),

    # --- check ---------------------------------------------------------------
    ImgCase("check_qcow2", CHAIN, "check c.qcow2"),
    ImgCase("check_qcow2_json", CHAIN, "check --output=json c.qcow2"),
    ImgCase("check_qcow2_quiet", CHAIN, "check -q c.qcow2"),
    ImgCase("check_v2", QCOW2_V2, "check v.qcow2"),
    ImgCase("check_raw", RAW, "check a.raw"),
    ImgCase("check_leaks", LEAKY, "check l.qcow2"),
    ImgCase("check_leaks_json", LEAKY, "check --output=json l.qcow2"),
    ImgCase("check_repair_leaks", LEAKY, "check -r leaks l.qcow2"),
    ImgCase("check_repair_all_json", LEAKY,
            "check -r all --output=json l.qcow2"),
    ImgCase("check_corrupt", CORRUPT, "check k.qcow2"),
    ImgCase("check_repair_corrupt", CORRUPT, "check -r all k.qcow2"),
    ImgCase("check_dirty", DIRTY, "check y.qcow2"),
    ImgCase("check_repair_dirty", DIRTY, "check -r all y.qcow2"),
    ImgCase("check_bad_repair", CHAIN, "check -r some c.qcow2"),

    # --- compare -------------------------------------------------------------
    ImgCase("compare_same", RAW, "compare a.raw a.raw"),
    ImgCase("compare_different", RAW_DIFF, "compare a.raw d.raw"),
    ImgCase("compare_size_mismatch", RAW_3M, "compare a.raw e.raw"),
    ImgCase("compare_strict_size", RAW_3M, "compare -s a.raw e.raw"),
    ImgCase("compare_chain", CHAIN, "compare b.qcow2 c.qcow2"),
    ImgCase("compare_chain_strict", CHAIN, "compare -s b.qcow2 c.qcow2"),
    ImgCase("compare_qcow2_raw", CHAIN + (
        "qemu-img convert -O raw c.qcow2 flat.raw",),
        "compare -f qcow2 -F raw c.qcow2 flat.raw"),
    ImgCase("compare_progress", RAW, "compare -p a.raw a.raw"),
    ImgCase("compare_quiet", RAW_DIFF, "compare -q a.raw d.raw"),
    ImgCase("compare_missing", RAW, "compare a.raw nosuch.raw"),

    # --- convert -------------------------------------------------------------
    ImgCase("convert_raw_raw", RAW, "convert -f raw -O raw a.raw o.raw"),
    ImgCase("convert_raw_default", RAW, "convert a.raw o.raw"),
    ImgCase("convert_raw_qcow2", RAW, "convert -O qcow2 a.raw o.qcow2"),
    ImgCase("convert_raw_qcow2_opts", RAW,
            "convert -O qcow2 -o cluster_size=4k,compat=0.10 a.raw o.qcow2"),
    ImgCase("convert_qcow2_raw", CHAIN, "convert -O raw c.qcow2 o.raw"),
    ImgCase("convert_qcow2_qcow2", CHAIN,
            "convert -O qcow2 c.qcow2 o.qcow2"),
    ImgCase("convert_v2_raw", QCOW2_V2, "convert -O raw v.qcow2 o.raw"),
    ImgCase("convert_backing", CHAIN,
            "convert -O qcow2 -B b.qcow2 -F qcow2 c.qcow2 o.qcow2"),
    ImgCase("convert_backing_no_fmt", CHAIN,
            "convert -O qcow2 -B b.qcow2 c.qcow2 o.qcow2"),
    ImgCase("convert_compressed", RAND, "convert -c -O qcow2 r.raw o.qcow2"),
    ImgCase("convert_compressed_chain", CHAIN,
            "convert -c -O qcow2 c.qcow2 o.qcow2"),
    ImgCase("convert_compressed_raw", RAW, "convert -c -O raw a.raw o.raw"),
    ImgCase("convert_progress", CHAIN, "convert -p -O raw c.qcow2 o.raw"),
    ImgCase("convert_progress_compressed", RAND,
            "convert -p -c -O qcow2 r.raw o.qcow2"),
    ImgCase("convert_no_sparse", RAW, "convert -S 0 -O raw a.raw o.raw"),
    ImgCase("convert_sparse_64k", RAW, "convert -S 64k -O raw a.raw o.raw"),
    ImgCase("convert_odd_size_raw", ODD, "convert -O raw odd.raw o.raw"),
    ImgCase("convert_odd_size_qcow2", ODD,
            "convert -O qcow2 odd.raw o.qcow2"),
    ImgCase("convert_odd_size_compressed", ODD,
            "convert -c -O qcow2 odd.raw o.qcow2"),
    ImgCase("info_odd_size", ODD, "info -f raw odd.raw"),
    ImgCase("convert_concat", RAW + QCOW2,
            "convert -O raw a.raw b.qcow2 o.raw"),
    ImgCase("convert_existing", RAW_3M, "convert -n -O raw a.raw e.raw"),
    ImgCase("convert_existing_small", RAW_3M,
            "convert -n -O raw e.raw a.raw"),
    ImgCase("convert_unordered", CHAIN,
            "convert -W -m 4 -O raw c.qcow2 o.raw"),
    ImgCase("convert_cache", RAW,
            "convert -t writeback -T writethrough -O raw a.raw o.raw"),
    ImgCase("convert_bad_cache", RAW, "convert -t fast -O raw a.raw o.raw"),
    ImgCase("convert_bad_format", RAW, "convert -O nosuch a.raw o.raw"),
    ImgCase("convert_missing", NONE, "convert nosuch.raw o.raw"),
    ImgCase("convert_help", NONE, "convert -O qcow2 -o help"),

    # --- bench ---------------------------------------------------------------
    ImgCase("bench_null", NONE,
            "bench -f null-co -c 2000 -d 32 null-co://"),
    ImgCase("bench_read_raw", RAW, "bench -c 500 -d 4 -f raw a.raw"),
    ImgCase("bench_write_raw", RAW,
            "bench -w -c 300 -d 8 -s 512 -S 8k --pattern=7 -f raw a.raw"),
    ImgCase("bench_flush", RAW,
            "bench -w -c 400 -d 16 --flush-interval=100 -f raw a.raw"),
    ImgCase("bench_flush_no_drain", RAW,
            "bench -w -c 400 -d 16 --flush-interval=100 --no-drain -o 64k "
            "-f raw a.raw"),
    ImgCase("bench_qcow2", CHAIN,
            "bench -w -c 200 -d 8 -s 64k --pattern=0x11 c.qcow2"),
    ImgCase("bench_bad_count", NONE, "bench -c x null-co://"),
    ImgCase("bench_bad_interval", NONE,
            "bench -w --flush-interval=4 null-co://"),
    # --- dd ------------------------------------------------------------------
    ImgCase("dd_raw_raw", RAW, "dd if=a.raw of=o.raw"),
    ImgCase("dd_raw_raw_fmt", RAW, "dd -f raw -O raw if=a.raw of=o.raw"),
    ImgCase("dd_raw_qcow2", RAW, "dd -O qcow2 if=a.raw of=o.qcow2"),
    ImgCase("dd_qcow2_raw", QCOW2, "dd if=b.qcow2 of=o.raw bs=1M"),
    ImgCase("dd_qcow2_qcow2", QCOW2_V2,
            "dd -f qcow2 -O qcow2 if=v.qcow2 of=o.qcow2 bs=4k"),
    ImgCase("dd_overlay_raw", CHAIN, "dd if=c.qcow2 of=o.raw bs=64k count=8"),
    ImgCase("dd_odd_size", ODD, "dd if=odd.raw of=o.raw bs=100"),
    ImgCase("dd_odd_size_qcow2", ODD, "dd -O qcow2 if=odd.raw of=o.qcow2"),
    ImgCase("dd_bs", RAW, "dd bs=64k if=a.raw of=o.raw"),
    ImgCase("dd_bs_odd", RAW, "dd bs=1000 if=a.raw of=o.raw"),
    ImgCase("dd_count", RAW, "dd bs=4k count=20 if=a.raw of=o.raw"),
    ImgCase("dd_count_zero", RAW, "dd count=0 if=a.raw of=o.raw"),
    ImgCase("dd_count_past_end", RAW, "dd bs=1k count=5000 if=a.raw of=o.raw"),
    ImgCase("dd_count_huge", RAW, "dd bs=1M count=8E if=a.raw of=o.raw"),
    ImgCase("dd_skip", RAW, "dd bs=64k skip=1 if=a.raw of=o.raw"),
    ImgCase("dd_skip_to_end", RAW, "dd bs=1M skip=2 if=a.raw of=o.raw"),
    ImgCase("dd_skip_past_end", RAW, "dd skip=5000 if=a.raw of=o.raw"),
    ImgCase("dd_skip_overflow", RAW, "dd bs=1M skip=4E if=a.raw of=o.raw"),
    ImgCase("dd_skip_past_end_qcow2", RAW,
            "dd -O qcow2 bs=1M skip=3 if=a.raw of=o.qcow2"),
    ImgCase("dd_count_skip", RAW,
            "dd bs=64k count=4 skip=1 if=a.raw of=o.raw"),
    ImgCase("dd_count_skip_qcow2", QCOW2,
            "dd -O qcow2 bs=32k count=3 skip=1 if=b.qcow2 of=o.qcow2"),
    ImgCase("dd_repeated_operand", RAW,
            "dd bs=1k bs=64k if=nosuch if=a.raw of=o.raw"),
    ImgCase("dd_bs_zero", RAW, "dd bs=0 if=a.raw of=o.raw"),
    ImgCase("dd_bs_suffix_plus", RAW, "dd bs=1k+1 if=a.raw of=o.raw"),
    ImgCase("dd_bs_too_big", RAW, "dd bs=2G if=a.raw of=o.raw"),
    ImgCase("dd_bs_negative", RAW, "dd bs=-1 if=a.raw of=o.raw"),
    ImgCase("dd_bs_empty", RAW, "dd bs= if=a.raw of=o.raw"),
    ImgCase("dd_count_bad", RAW, "dd count=x if=a.raw of=o.raw"),
    ImgCase("dd_skip_bad", RAW, "dd skip=1Q if=a.raw of=o.raw"),
    ImgCase("dd_no_if", RAW, "dd of=o.raw"),
    ImgCase("dd_no_of", RAW, "dd if=a.raw"),
    ImgCase("dd_no_args", NONE, "dd"),
    ImgCase("dd_unknown_operand", RAW, "dd if=a.raw of=o.raw foo=1"),
    ImgCase("dd_operand_without_value", RAW, "dd if=a.raw of=o.raw count"),
    ImgCase("dd_empty_operand", RAW, "dd if=a.raw of=o.raw ''"),
    ImgCase("dd_unknown_option", RAW, "dd -x if=a.raw of=o.raw"),
    ImgCase("dd_unknown_long_option", RAW, "dd --bs=1 if=a.raw of=o.raw"),
    ImgCase("dd_missing_arg", RAW, "dd if=a.raw of=o.raw -O"),
    ImgCase("dd_unknown_format", RAW, "dd -O foo if=a.raw of=o.raw"),
    ImgCase("dd_no_create_format", RAW, "dd -O null-co if=a.raw of=o.raw"),
    ImgCase("dd_missing_input", NONE, "dd if=nosuch.raw of=o.raw"),
    ImgCase("dd_wrong_format", RAW, "dd -f qcow2 if=a.raw of=o.raw"),
    ImgCase("dd_force_share", QCOW2, "dd -U if=b.qcow2 of=o.raw"),
    ImgCase("dd_image_opts", RAW,
            "dd --image-opts if=driver=raw,file.filename=a.raw,offset=1M "
            "of=o.raw"),
    ImgCase("dd_image_opts_fmt", RAW,
            "dd --image-opts -f raw if=driver=raw,file.filename=a.raw "
            "of=o.raw"),
    ImgCase("dd_object", RAW,
            "dd --object secret,id=s0,data=x if=a.raw of=o.raw"),
    ImgCase("dd_overwrite", RAW_3M, "dd if=a.raw of=e.raw"),
    ImgCase("dd_null_input", NONE,
            "dd -f null-co bs=1M count=2 if=null-co:// of=o.raw"),
    # --- measure -------------------------------------------------------------
    ImgCase("measure_size_raw", NONE, "measure --size 1G"),
    ImgCase("measure_size_raw_odd", NONE, "measure --size 1000"),
    ImgCase("measure_size_raw_prealloc", NONE,
            "measure -O raw -o preallocation=full --size 1G"),
    ImgCase("measure_size_qcow2", NONE, "measure -O qcow2 --size 1G"),
    ImgCase("measure_size_qcow2_zero", NONE, "measure -O qcow2 --size 0"),
    ImgCase("measure_size_qcow2_odd", NONE, "measure -O qcow2 --size 1000"),
    ImgCase("measure_size_qcow2_json", NONE,
            "measure --output=json -O qcow2 --size 100G"),
    ImgCase("measure_size_qcow2_human", NONE,
            "measure --output=human -O qcow2 --size 100G"),
    ImgCase("measure_size_option", NONE,
            "measure -O qcow2 -o size=5M --size 1G"),
    ImgCase("measure_cluster_512", NONE,
            "measure -O qcow2 -o cluster_size=512 --size 10G"),
    ImgCase("measure_cluster_4k", NONE,
            "measure -O qcow2 -o cluster_size=4k --size 3T"),
    ImgCase("measure_cluster_2M", NONE,
            "measure -O qcow2 -o cluster_size=2M --size 8E"),
    ImgCase("measure_cluster_bad", NONE,
            "measure -O qcow2 -o cluster_size=1000 --size 1G"),
    ImgCase("measure_too_large", NONE,
            "measure -O qcow2 -o cluster_size=512 --size 1P"),
    ImgCase("measure_refcount_bits", NONE,
            "measure -O qcow2 -o cluster_size=512,refcount_bits=1 "
            "--size 100G"),
    ImgCase("measure_refcount_bits_64", NONE,
            "measure -O qcow2 -o refcount_bits=64 --size 100G"),
    ImgCase("measure_refcount_bits_bad", NONE,
            "measure -O qcow2 -o refcount_bits=3 --size 1G"),
    ImgCase("measure_refcount_bits_word", NONE,
            "measure -O qcow2 -o refcount_bits=x --size 1G"),
    ImgCase("measure_refcount_bits_v2", NONE,
            "measure -O qcow2 -o compat=0.10,refcount_bits=8 --size 1G"),
    ImgCase("measure_compat_v2", NONE,
            "measure -O qcow2 -o compat=0.10 --size 1G"),
    ImgCase("measure_compat_bad", NONE,
            "measure -O qcow2 -o compat=v3 --size 1G"),
    ImgCase("measure_extended_l2", NONE,
            "measure -O qcow2 -o extended_l2=on --size 1G"),
    ImgCase("measure_extended_l2_small_cluster", NONE,
            "measure -O qcow2 -o extended_l2=on,cluster_size=4k --size 1G"),
    ImgCase("measure_prealloc_metadata", NONE,
            "measure -O qcow2 -o preallocation=metadata --size 1G"),
    ImgCase("measure_prealloc_falloc", NONE,
            "measure -O qcow2 -o preallocation=falloc,cluster_size=2M "
            "--size 3T"),
    ImgCase("measure_prealloc_full", NONE,
            "measure -O qcow2 -o preallocation=full --size 1G"),
    ImgCase("measure_prealloc_bad", NONE,
            "measure -O qcow2 -o preallocation=bad --size 1G"),
    ImgCase("measure_unknown_option", NONE,
            "measure -O qcow2 -o foo=1 --size 1G"),
    ImgCase("measure_option_help", NONE,
            "measure -O qcow2 -o help --size 1G"),
    ImgCase("measure_raw_input", RAW, "measure a.raw"),
    ImgCase("measure_raw_input_qcow2", RAW, "measure -O qcow2 a.raw"),
    ImgCase("measure_raw_input_qcow2_json", RAW,
            "measure --output=json -O qcow2 -f raw a.raw"),
    ImgCase("measure_raw_input_cluster_4k", RAW,
            "measure -O qcow2 -o cluster_size=4k a.raw"),
    ImgCase("measure_raw_input_prealloc", RAW,
            "measure -O qcow2 -o preallocation=full a.raw"),
    ImgCase("measure_raw_input_backing", RAW,
            "measure -O qcow2 -o backing_file=a.raw a.raw"),
    ImgCase("measure_odd_input", ODD, "measure -O qcow2 odd.raw"),
    ImgCase("measure_qcow2_input", QCOW2, "measure b.qcow2"),
    ImgCase("measure_qcow2_input_qcow2", QCOW2, "measure -O qcow2 b.qcow2"),
    ImgCase("measure_qcow2_input_json", QCOW2,
            "measure --output=json -O qcow2 b.qcow2"),
    ImgCase("measure_qcow2_input_v2_target", QCOW2,
            "measure -O qcow2 -o compat=0.10 b.qcow2"),
    ImgCase("measure_qcow2_v2_input", QCOW2_V2,
            "measure -O qcow2 -o cluster_size=4k v.qcow2"),
    ImgCase("measure_qcow2_overlay", CHAIN, "measure -O qcow2 c.qcow2"),
    ImgCase("measure_qcow2_odd", QCOW2_ODD, "measure -O qcow2 o.qcow2"),
    ImgCase("measure_qcow2_input_force_share", QCOW2,
            "measure -U -O qcow2 b.qcow2"),
    ImgCase("measure_image_opts", RAW,
            "measure -O qcow2 --image-opts "
            "driver=raw,file.filename=a.raw,offset=1M"),
    ImgCase("measure_image_opts_fmt", RAW,
            "measure --image-opts -f raw driver=raw,file.filename=a.raw"),
    ImgCase("measure_object", RAW,
            "measure --object secret,id=s0,data=x a.raw"),
    ImgCase("measure_snapshot_missing", QCOW2, "measure -l s1 b.qcow2"),
    ImgCase("measure_snapshot_opts_missing", SNAPSHOTS,
            "measure -l snapshot.id=1,snapshot.name=x b.qcow2"),
    ImgCase("measure_snapshot_raw", RAW, "measure -l s1 a.raw"),
    ImgCase("measure_snapshot_bad_param", RAW,
            "measure -l snapshot.foo=1 a.raw"),
    ImgCase("measure_snapshot_no_file", NONE, "measure -l s1 --size 1G"),
    ImgCase("measure_no_args", NONE, "measure"),
    ImgCase("measure_fmt_no_file", NONE, "measure -f raw"),
    ImgCase("measure_size_and_file", RAW, "measure --size 1G a.raw"),
    ImgCase("measure_two_files", RAW, "measure a.raw a.raw"),
    ImgCase("measure_bad_size", NONE, "measure --size -1"),
    ImgCase("measure_bad_output", RAW, "measure --output=xml a.raw"),
    ImgCase("measure_unknown_format", NONE, "measure -O foo --size 1G"),
    ImgCase("measure_no_create_format", NONE,
            "measure -O null-co --size 1G"),
    ImgCase("measure_missing_file", NONE, "measure nosuch.raw"),
    ImgCase("measure_wrong_format", RAW, "measure -f qcow2 a.raw"),
    # --- resize --------------------------------------------------------------
    ImgCase("resize_raw_grow", RAW, "resize -f raw a.raw 3M"),
    ImgCase("resize_raw_grow_probed", RAW, "resize a.raw 3M"),
    ImgCase("resize_raw_shrink_refused", RAW, "resize -f raw a.raw 1M"),
    ImgCase("resize_raw_shrink_refused_probed", RAW, "resize a.raw 1M"),
    ImgCase("resize_raw_shrink", RAW, "resize -f raw --shrink a.raw 1M"),
    ImgCase("resize_raw_shrink_probed", RAW, "resize --shrink a.raw 1M"),
    ImgCase("resize_raw_plus", RAW, "resize -f raw a.raw +1M"),
    ImgCase("resize_raw_minus", RAW, "resize -f raw --shrink a.raw -512k"),
    ImgCase("resize_raw_minus_dashdash", RAW,
            "resize --shrink -f raw a.raw -- -1536k"),
    ImgCase("resize_raw_minus_refused", RAW, "resize -f raw a.raw -- -512k"),
    ImgCase("resize_raw_same", RAW, "resize -f raw a.raw 2M"),
    ImgCase("resize_raw_odd", RAW, "resize -f raw a.raw 2097999"),
    ImgCase("resize_raw_odd_plus", ODD, "resize -f raw odd.raw +100"),
    ImgCase("resize_raw_hex", RAW, "resize -f raw a.raw 0x300000"),
    ImgCase("resize_raw_quiet", RAW, "resize -q -f raw a.raw 4M"),
    ImgCase("resize_raw_quiet_refused", RAW, "resize -q -f raw a.raw 1M"),
    ImgCase("resize_zero", RAW, "resize -f raw --shrink a.raw 0"),
    ImgCase("resize_below_zero", RAW, "resize -f raw --shrink a.raw -- -3M"),
    ImgCase("resize_to_nothing", RAW, "resize -f raw --shrink a.raw -2M"),
    ImgCase("resize_bad_size", RAW, "resize -f raw a.raw 1Q"),
    ImgCase("resize_bad_size_word", RAW, "resize -f raw a.raw abc"),
    ImgCase("resize_bad_size_empty", RAW, "resize -f raw a.raw ''"),
    ImgCase("resize_bad_size_sign", RAW, "resize -f raw a.raw +-1"),
    ImgCase("resize_size_range", RAW, "resize -f raw a.raw 20E"),
    ImgCase("resize_size_int64", RAW, "resize -f raw a.raw 8E"),
    ImgCase("resize_size_max_length", RAW,
            "resize -f raw a.raw 9223372036854775807"),
    ImgCase("resize_size_above_max_length", RAW,
            "resize -f raw a.raw 9223372035781033985"),
    ImgCase("resize_size_at_max_length", RAW,
            "resize -f raw a.raw 9223372035781033984"),
    ImgCase("resize_no_size", RAW, "resize a.raw"),
    ImgCase("resize_no_args", NONE, "resize"),
    ImgCase("resize_extra_arg", RAW, "resize a.raw 1M 2M"),
    ImgCase("resize_bad_option", RAW, "resize -U a.raw 3M"),
    ImgCase("resize_missing_arg", RAW, "resize -f 3M"),
    ImgCase("resize_missing_file", NONE, "resize nosuch.raw 1M"),
    ImgCase("resize_wrong_format", RAW, "resize -f qcow2 a.raw 3M"),
    ImgCase("resize_image_opts", RAW,
            "resize --image-opts driver=raw,file.filename=a.raw 3M"),
    ImgCase("resize_image_opts_fmt", RAW,
            "resize --image-opts -f raw driver=raw,file.filename=a.raw 3M"),
    ImgCase("resize_image_opts_fixed", RAW,
            "resize --image-opts driver=raw,file.filename=a.raw,size=512 3M"),
    ImgCase("resize_image_opts_offset", RAW,
            "resize --image-opts driver=raw,file.filename=a.raw,offset=1M "
            "+512"),
    ImgCase("resize_image_opts_read_only", RAW,
            "resize --image-opts driver=raw,file.filename=a.raw,read-only=on "
            "3M"),
    ImgCase("resize_image_opts_file_read_only", RAW,
            "resize --image-opts driver=raw,file.filename=a.raw,file.read-only=on "
            "3M"),
    ImgCase("resize_null", NONE, "resize -f null-co null-co:// 2G"),
    ImgCase("resize_null_probed", NONE, "resize null-co:// 1M"),
    ImgCase("resize_object", RAW,
            "resize --object secret,id=s0,data=x -f raw a.raw 3M"),
    ImgCase("resize_prealloc_off_raw", RAW,
            "resize --preallocation=off -f raw a.raw 3M"),
    ImgCase("resize_prealloc_full_raw", RAW,
            "resize --preallocation=full -f raw a.raw 3M"),
    ImgCase("resize_prealloc_falloc_raw", RAW,
            "resize --preallocation=falloc -f raw a.raw +64k"),
    ImgCase("resize_prealloc_metadata_raw", RAW,
            "resize --preallocation=metadata -f raw a.raw 3M"),
    ImgCase("resize_prealloc_bad", RAW,
            "resize --preallocation=some -f raw a.raw 3M"),
    ImgCase("resize_prealloc_shrink", RAW,
            "resize --preallocation=full --shrink -f raw a.raw 1M"),
    ImgCase("resize_prealloc_same", RAW,
            "resize --preallocation=falloc -f raw a.raw 2M"),
    ImgCase("resize_qcow2_grow", QCOW2, "resize b.qcow2 128M"),
    ImgCase("resize_qcow2_plus", QCOW2, "resize -f qcow2 b.qcow2 +1G"),
    ImgCase("resize_qcow2_large", QCOW2, "resize b.qcow2 100T"),
    ImgCase("resize_qcow2_odd", QCOW2, "resize b.qcow2 +1000"),
    ImgCase("resize_qcow2_odd_abs", QCOW2, "resize -f qcow2 b.qcow2 3000000"),
    ImgCase("resize_qcow2_overlay", CHAIN, "resize c.qcow2 +64k"),
    ImgCase("resize_qcow2_v2", QCOW2_V2, "resize v.qcow2 9M"),
    ImgCase("resize_qcow2_prealloc_off", QCOW2,
            "resize --preallocation=off b.qcow2 +64k"),
    ImgCase("resize_qcow2_prealloc_metadata", QCOW2,
            "resize --preallocation=metadata b.qcow2 +64k"),
    ImgCase("resize_qcow2_prealloc_falloc", QCOW2,
            "resize --preallocation=falloc b.qcow2 +64k"),
    ImgCase("resize_qcow2_prealloc_full", QCOW2,
            "resize --preallocation=full b.qcow2 +64k"),
    ImgCase("resize_qcow2_prealloc_metadata_large", QCOW2,
            "resize --preallocation=metadata b.qcow2 1G"),
    ImgCase("resize_qcow2_prealloc_falloc_odd", QCOW2_ODD,
            "resize --preallocation=falloc o.qcow2 +1000k"),
    ImgCase("resize_qcow2_prealloc_full_odd", QCOW2_ODD,
            "resize --preallocation=full o.qcow2 +1000k"),
    ImgCase("resize_qcow2_prealloc_metadata_odd", QCOW2_ODD,
            "resize --preallocation=metadata o.qcow2 +1000k"),
    ImgCase("resize_qcow2_prealloc_falloc_overlay", QCOW2_ODD_OVER_RAW,
            "resize --preallocation=falloc p.qcow2 +1M"),
    ImgCase("resize_qcow2_prealloc_metadata_overlay", QCOW2_ODD_OVER_RAW,
            "resize --preallocation=metadata p.qcow2 +1M"),
    ImgCase("resize_qcow2_overlay_zeroes", QCOW2_ODD_OVER_RAW,
            "resize p.qcow2 +1M"),
    ImgCase("resize_qcow2_v2_overlay_zeroes", QCOW2_V2_OVER_RAW,
            "resize p.qcow2 +1M"),
    ImgCase("resize_qcow2_prealloc_full_refcount_bits", QCOW2_REFCOUNT_BITS,
            "resize --preallocation=full r.qcow2 +3M"),
    ImgCase("resize_qcow2_prealloc_shrink", QCOW2,
            "resize --preallocation=full b.qcow2 -- -64k"),
    ImgCase("resize_qcow2_shrink_refused", QCOW2, "resize b.qcow2 32M"),
    ImgCase("resize_qcow2_shrink", QCOW2, "resize --shrink b.qcow2 32M"),
    ImgCase("resize_qcow2_shrink_minus", QCOW2,
            "resize --shrink b.qcow2 -- -64k"),
    ImgCase("resize_qcow2_shrink_data", QCOW2,
            "resize --shrink b.qcow2 32k"),
    ImgCase("resize_qcow2_shrink_v2", QCOW2_V2,
            "resize --shrink v.qcow2 4M"),
    ImgCase("resize_qcow2_shrink_overlay", CHAIN,
            "resize --shrink -f qcow2 c.qcow2 -- -32M"),
    ImgCase("resize_qcow2_shrink_odd", QCOW2,
            "resize --shrink b.qcow2 -- -1000"),
    ImgCase("resize_qcow2_snapshot", SNAPSHOTS, "resize b.qcow2 +1M"),
    ImgCase("resize_qcow2_snapshot_v2", SNAPSHOTS, "resize v.qcow2 +1M"),
    ImgCase("resize_qcow2_snapshot_shrink", SNAPSHOTS,
            "resize --shrink b.qcow2 32M"),
]
