"""The comparison cases: one Case a line, grouped by what they exercise.

Case(name, setup, options, commands): setup steps run with the real tools
in both directories, then `qemu-io OPTIONS -c CMD...` against
`pyqemu-io OPTIONS -c CMD...`.  See harness.py and README.rst.
"""

from harness import Case

# Images.  Paths are relative: both programs run in their own directory.
RAW = ("qemu-img create -f raw t.raw 1M",)
# Data, a hole and data again, so that map, alloc and reads see all kinds.
RAW_DATA = RAW + ("qemu-io -f raw -c 'write -P 0x5a 0 64k'"
                  " -c 'write -P 0xa5 128k 64k' t.raw",)
# Data all over: discard and zero detection leave holes where they work.
RAW_FULL = RAW + ("qemu-io -f raw -c 'write -P 1 0 1M' t.raw",)
RAW_128M = ("qemu-img create -f raw t.raw 128M",)
NONE = ()

R = "-f raw t.raw"
BD = "-f raw blkdebug::t.raw"          # blkdebug without rules
BDC = "-f raw blkdebug:bd.conf:t.raw"  # blkdebug with the rules of bd.conf


def conf(text: str, image: tuple = RAW) -> tuple:
    """A raw image plus a blkdebug config file bd.conf holding text."""
    return image + (("file", "bd.conf", text),)


def rule(section: str, **keys: str) -> str:
    """One config-file section, written the way QEMU's parser reads it."""
    return f"[{section}]\n" + "".join(f'{k} = "{v}"\n'
                                      for k, v in keys.items())


# The 4k-aligned blkdebug image of iotest 077, opened by the first command.
OPEN_077 = "open -o driver=raw,file.align=4k blkdebug::t.raw"
# The iotest lets requests in flight settle with "sleep 100"; the cases wait
# longer, so that pyqemu-io gets there too on a loaded machine.
SETTLE = "sleep 300"
# Where blkdebug's "Suspended" line falls depends on thread timing in QEMU:
# iotest 077 deletes these lines, and so do its cases here.
SUSPENDED = r"^blkdebug: Suspended request"

# A line of the event list of -T help.
TRACE_EVENT_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
# 7.2's refusal to make a node read-only names it by a generated node name,
# whose last two digits are random.
READ_ONLY_NODE = r"^QEMU_IO_PROG: Read-only block node '#block[0-9]+' cannot support read-write users$"

COMMANDS = ("abort", "aio_flush", "aio_read", "aio_write", "alloc", "break",
            "close", "discard", "flush", "help", "info", "length", "map",
            "open", "quit", "read", "readv", "remove_break", "reopen",
            "resume", "sigraise", "sleep", "truncate", "wait_break", "write",
            "writev")

# qcow2 images made by the real qemu-img (harness.py compares them with
# `qemu-img compare`, `check` and the guest-visible map, not byte for byte).
def qcow2(opts: str = "", size: str = "1M", name: str = "t.qcow2") -> tuple:
    return (f"qemu-img create -f qcow2 {opts} {name} {size}".replace("  ", " "),)


def qio(name: str, fmt: str, *cmds: str) -> str:
    """A set-up step writing with the real qemu-io."""
    return f"qemu-io -f {fmt} " + " ".join(f"-c '{c}'" for c in cmds) + f" {name}"


# Data, a hole and data again, as RAW_DATA.
DATA_CMDS = ("write -P 0x5a 0 64k", "write -P 0xa5 128k 64k")
Q = "-f qcow2 t.qcow2"
QCOW2 = qcow2()
QCOW2_DATA = QCOW2 + (qio("t.qcow2", "qcow2", *DATA_CMDS),)
# A raw backing file with data, a qcow2 one, and a chain of three.
RAW_BASE = ("qemu-img create -f raw b.raw 1M", qio("b.raw", "raw", *DATA_CMDS))
QCOW2_OVER_RAW = RAW_BASE + qcow2("-b b.raw -F raw")
QCOW2_BASE = qcow2(name="b.qcow2") + (qio("b.qcow2", "qcow2", *DATA_CMDS),)
QCOW2_OVER_QCOW2 = QCOW2_BASE + qcow2("-b b.qcow2 -F qcow2")
QCOW2_CHAIN = QCOW2_BASE + qcow2("-b b.qcow2 -F qcow2", name="m.qcow2") + (
    qio("m.qcow2", "qcow2", "write -P 0x66 32k 64k", "write -z 160k 8k"),) + qcow2("-b m.qcow2 -F qcow2")
# Compressed clusters: qemu-img convert -c of the raw data.
QCOW2_COMPRESSED = RAW_BASE + ("qemu-img convert -c -f raw -O qcow2 b.raw t.qcow2",)
# Data of its own over the backing file's, in and past the first 100k.
QCOW2_SHRINK_OVER_RAW = QCOW2_OVER_RAW + (qio("t.qcow2", "qcow2", "write -P 1 0 4k", "write -P 2 128k 8k"),)
# 100k: the last cluster is partial, and holds data.
QCOW2_PARTIAL_END = qcow2(size="100k") + (qio("t.qcow2", "qcow2", "write -P 1 0 4k", "write -P 2 64k 36k"),)
# 512-byte clusters: an L2 table maps 32k, a refblock counts 128k of the file.
QCOW2_SMALL_CLUSTERS = qcow2("-o cluster_size=512", size="4M") + (
    qio("t.qcow2", "qcow2", "write -P 7 0 3M", "write -P 8 3584k 64k"),)
# blkdebug under it, with the caches of 7.2 and the port made the same size.
BD_SMALL_CACHES = ("--image-opts driver=qcow2,l2-cache-size=1M,refcount-cache-size=256k,"
                   "file.driver=blkdebug,file.config=bd.conf,file.image.filename=t.qcow2")
# Every data command on an image holding DATA_CMDS (at whatever depth).
QCOW2_IO = ("map", "alloc 0 1M", "read -P 0x5a 0 64k", "read -P 0 64k 64k", "read -P 0xa5 128k 64k",
            "write -P 1 1 3", "write -P 2 60k 8k", "write -P 3 100k 4k", "writev -P 4 200k 512 1k 3",
            "read -P 1 1 3", "read -P 0x5a 4 4092", "read -P 2 60k 8k", "readv -P 4 200k 512 1k 3",
            "read -v 65530 12", "write -z 4k 4k", "write -z -u 136k 8k", "write -z 150k 1k", "write -z 250k 100k",
            "discard 176k 16k", "discard 300k 64k", "read -P 0 4k 4k", "read -P 0 136k 8k", "read -P 0 150k 1k",
            "read -P 0 250k 100k", "aio_write -P 5 512k 4k", "aio_flush", "aio_write -P 6 520k 1k", "aio_flush",
            "aio_read -P 5 512k 4k", "aio_flush", "aio_read -P 6 520k 1k", "aio_flush", "flush",
            "read -P 0xa5 160k 16k", "read -P 0xa5 192k 0", "alloc 0 1M", "alloc 512k 4k", "map")

CASES = [
    # --- the program: options, help, no image, errors ---------------------
    Case("prog_help", NONE, "-h"),
    Case("prog_bad_option", NONE, "--bogus"),
    Case("prog_no_args", NONE, ""),
    Case("prog_two_images", RAW, "-f raw t.raw t.raw", ["length"]),
    Case("prog_missing_image", NONE, "-f raw nosuch.raw", ["length"]),
    Case("prog_bad_format", RAW, "-f nosuchfmt t.raw", ["length"]),
    Case("prog_probe_raw", RAW, "t.raw", ["write -P 1 0 512", "read -P 1 0 512"]),
    Case("prog_image_opts", RAW, "--image-opts driver=raw,file.filename=t.raw",
         ["write -P 3 0 4k", "read -P 3 0 4k", "info"]),
    Case("prog_image_opts_f", RAW, "--image-opts -f raw driver=raw,file.filename=t.raw", ["length"]),
    Case("prog_json", RAW, "'json:{\"driver\": \"raw\", \"file\": {\"driver\": \"file\", \"filename\": \"t.raw\"}}'",
         ["write -P 4 0 1k", "read -P 4 0 1k"]),
    Case("prog_read_only", RAW_DATA, "-r -f raw t.raw",
         ["read -P 0x5a 0 4k", "write 0 1", "writev 0 1", "write -z 0 1", "discard 0 1",
          "truncate 0", "aio_write 0 1", "aio_flush", "flush", "length"]),
    Case("prog_nocache", RAW, "-n -f raw t.raw",
         ["write -P 1 0 4k", "write -P 2 1 3", "read -P 2 1 3", "read -P 1 4 4092", "read -v 0 16"]),
    Case("prog_cache_modes", RAW, "-t writeback -f raw t.raw", ["write -P 1 0 4k", "flush", "read -P 1 0 4k"]),
    Case("prog_cache_none", RAW, "-t none -f raw t.raw", ["write -P 1 0 4k", "read -P 1 0 4k"]),
    Case("prog_cache_unsafe", RAW, "-t unsafe -f raw t.raw", ["write -P 1 0 4k", "flush"]),
    Case("prog_cache_directsync", RAW, "-t directsync -f raw t.raw", ["write -P 1 0 4k"]),
    Case("prog_cache_writethrough", RAW, "-t writethrough -f raw t.raw", ["write -P 1 0 4k"]),
    Case("prog_cache_bad", RAW, "-t bogus -f raw t.raw", ["length"]),
    Case("prog_discard_unmap", RAW_DATA, "-d unmap -f raw t.raw", ["discard 0 4k", "write -z -u 8k 4k", "map"]),
    Case("prog_discard_ignore", RAW_DATA, "-d ignore -f raw t.raw", ["discard 0 4k", "write -z -u 8k 4k", "map"]),
    Case("prog_discard_bad", RAW, "-d bogus -f raw t.raw", ["length"]),
    Case("prog_copy_on_read", RAW_DATA, "-C -f raw t.raw", ["read -P 0x5a 0 4k"]),
    Case("prog_misalign", RAW, "-m -f raw t.raw", ["write -P 6 0 4k", "read -P 6 0 4k"]),
    Case("prog_native_aio", RAW, "-k -f raw t.raw", ["length"]),
    Case("prog_native_aio_nocache", RAW, "-k -n -f raw t.raw", ["write -P 7 0 4k", "read -P 7 0 4k"]),
    Case("prog_aio_threads", RAW, "-i threads -f raw t.raw", ["write -P 7 0 4k", "read -P 7 0 4k"]),
    Case("prog_aio_bad", RAW, "-i bogus -f raw t.raw", ["length"]),
    Case("prog_force_share", RAW, "-U -f raw t.raw", ["length"]),
    Case("prog_force_share_ro", RAW, "-U -r -f raw t.raw", ["length"]),
    Case("prog_snapshot", RAW_DATA, "-s -f raw t.raw",
         ["write -P 0x11 0 4k", "read -P 0x11 0 4k", "read -P 0xa5 128k 4k"]),
    Case("prog_stdin", RAW, R, ["write -P 8 0 512", "read -P 8 0 512", "length"], stdin=True),
    Case("prog_stdin_quit", RAW, R, ["write -P 8 0 512", "quit", "read 0 512"], stdin=True),
    Case("prog_exit_status", RAW, R, ["read 2M 1", "read 0 1"]),
    Case("prog_object", RAW, "--object secret,id=sec0,data=x -f raw t.raw", ["length"]),
    Case("prog_object_bad", RAW, "--object bogus,id=x -f raw t.raw", ["length"]),
    Case("prog_object_duplicate", RAW, "--object secret,id=s,data=x --object secret,id=s,data=y -f raw t.raw",
         ["length"]),
    Case("prog_version", NONE, "-V", diverges="version"),
    Case("prog_trace", RAW, "-T bdrv_co_* -f raw t.raw", ["write 0 1"], diverges="trace-events"),

    # --- help, quit, sleep, abort, sigraise, unknown commands -------------
    Case("help_all", NONE, "", ["help"]),
    Case("help_each", NONE, "", ["help " + c for c in COMMANDS] + ["help nosuch", "help read write"]),
    Case("unknown_command", RAW, R, ["bogus", "read 0 1", ""]),
    Case("no_file_open", NONE, "",
         ["read 0 1", "write 0 1", "length", "info", "map", "flush", "close", "truncate 0",
          "aio_flush", "discard 0 1", "alloc 0", "break pwritev A", "reopen"]),
    Case("quit_early", RAW, R, ["write -P 1 0 1", "quit", "write -P 2 0 1"]),
    Case("quit_args", RAW, R, ["quit now"]),
    Case("sleep", RAW, R, ["sleep 10", "sleep", "sleep x", "length"]),
    Case("abort", RAW, R, ["write -P 1 0 512", "abort"]),
    Case("sigraise_term", RAW, R, ["write -P 1 0 512", "sigraise 15"]),
    Case("sigraise_bad", RAW, R, ["sigraise", "sigraise x", "sigraise 0"]),

    # --- read --------------------------------------------------------------
    Case("read_basic", RAW_DATA, R,
         ["read 0 64k", "read -P 0x5a 0 64k", "read -q -P 0 64k 64k", "read -P 0xa5 128k 64k"]),
    Case("read_pattern_mismatch", RAW_DATA, R, ["read -P 0x11 0 4k", "read -P 0x5a 60k 8k"]),
    Case("read_pattern_range", RAW_DATA, R,
         ["read -P 0x5a -s 0 -l 512 0 4k", "read -P 0 -s 64k -l 64k 0 128k", "read -P 0 -s 0 -l 1 64k 1",
          "read -P 0x5a -s 5k -l 1 0 4k", "read -P 0x5a -s 1k -l 8k 0 4k", "read -s 4 0 4k", "read -l 1 0 4k"]),
    Case("read_dump", RAW_DATA, R, ["read -v 60k 8k", "read -v 1 33", "read -v 64k 17"]),
    Case("read_C", RAW_DATA, R, ["read -C 0 4k", "read -C -q 0 4k", "read -q 0 4k"]),
    Case("read_b", RAW_DATA, R, ["read -b 0 512", "read -b -P 0 0 512"]),
    Case("read_p", RAW_DATA, R, ["read -p 0 512", "read -p -P 0x5a 0 512", "read -a 0 512"]),
    Case("read_unaligned", RAW_DATA, R,
         ["read -P 0x5a 1 3", "read -P 0x5a 511 2", "read 65535 2", "read -P 0x5a 4095 4098", "read -v 65530 12"]),
    Case("read_past_end", RAW_DATA, R, ["read 1M 1", "read 1023k 2k", "read 1M 0", "read 2M 512", "read 1048575 1"]),
    Case("read_zero_length", RAW_DATA, R, ["read 0 0", "read -P 1 0 0", "read -v 512 0"]),
    Case("read_sizes", RAW_DATA, R, ["read 0 1k", "read 0x200 0x200", "read 1k 0.5k", "read 0 1M", "read 0 1b", "read 0 1K"]),
    Case("read_bad_args", RAW_DATA, R,
         ["read", "read 0", "read x 1", "read 0 x", "read -1 1", "read 0 -1", "read 0 3G", "read 0 1T",
          "read -P x 0 1", "read -P 256 0 1", "read -Z 0 1", "read 0 1 2", "read 1E 1", "read 9223372036854775807 1"]),

    # --- write ---------------------------------------------------------------
    Case("write_basic", RAW, R, ["write 0 4k", "read -P 0xcd 0 4k", "write -P 0x33 4k 4k", "read -P 0x33 4k 4k"]),
    Case("write_flags_q_C", RAW, R, ["write -q 0 1", "write -C 0 1", "write -C -q 0 1"]),
    Case("write_fua", RAW, R, ["write -f -P 7 0 4k", "read -P 7 0 4k"]),
    Case("write_p", RAW, R, ["write -p 0 512", "write -p -P 9 512 512", "read -P 9 512 512"]),
    Case("write_zeroes", RAW_DATA, R,
         ["map", "write -z 0 4k", "write -z -u 8k 4k", "write -z 60k 8k", "write -z 1 2", "write -z -u 4097 4094",
          "write -z 128k 64k", "map", "read -P 0 0 4k", "read -P 0x5a 4k 4k", "read -P 0 60k 4k"]),
    Case("write_zeroes_n", RAW_DATA, R,
         ["write -z -n 0 4k", "write -z -n -u 4k 4k", "write -n 0 4k", "write -u 0 4k", "map"]),
    Case("write_zeroes_past_end", RAW_DATA, R, ["write -z 1M 4k", "write -z 1020k 8k", "length"]),
    Case("write_source_file", RAW + (("file", "pat.bin", "abcdefghijklmnop"),), R,
         ["write -s pat.bin 0 16", "read -v 0 16", "write -s pat.bin 0 4k", "write -s nofile 0 4",
          "write -s pat.bin -P 1 0 4", "write -s pat.bin -z 0 4", "write -s pat.bin 3 5", "read -v 0 16"]),
    Case("write_vmstate_compressed", RAW, R, ["write -b 0 512", "write -c 0 64k", "write -c -z 0 1", "write -c 0 1"]),
    Case("write_unaligned", RAW, R,
         ["write -P 0x11 1 3", "write -P 0x22 511 2", "write -P 0x33 4095 4098", "read -P 0x11 1 3",
          "read -P 0x22 511 2", "read -P 0x33 4095 4098", "read -P 0 0 1", "read -v 0 16"]),
    Case("write_past_end", RAW, R, ["write 1M 1", "write 1023k 2k", "write -P 1 1048575 1", "length"]),
    Case("write_bad_args", RAW, R,
         ["write", "write 0", "write -z -P 1 0 1", "write -P 256 0 1", "write -P -1 0 1", "write x 1",
          "write 0 -1", "write 0 3G", "write -Z 0 1", "write -u 0 1"]),

    # --- readv / writev ---------------------------------------------------------
    Case("vectored", RAW, R,
         ["writev -P 0x1 0 512 1k 3", "readv -P 0x1 0 512 1k 3", "readv -v 0 16 16", "writev -q 4k 4k",
          "writev -C 8k 512", "writev -f 12k 1k", "readv -C 0 1k", "readv -q 0 1k", "readv -P 2 0 1"]),
    Case("vectored_unaligned", RAW, R,
         ["writev -P 9 1 2 3 4", "readv -P 9 1 2 7", "readv -v 0 7 9", "readv 1M 1", "writev 1M 1", "readv 1023k 1k 1k"]),
    Case("vectored_bad_args", RAW, R,
         ["writev", "writev 0", "writev x 1", "readv 0 x", "readv 0 1 x", "writev -z 0 1", "readv -P x 0 1"]),

    # --- aio ---------------------------------------------------------------------
    Case("aio_basic", RAW, R,
         ["aio_write -P 0x44 0 4k", "aio_flush", "aio_read -P 0x44 0 4k", "aio_flush", "aio_read -v 0 16", "aio_flush"]),
    Case("aio_vectored", RAW, R,
         ["aio_write -P 1 0 512 512", "aio_flush", "aio_read -P 1 0 512 512", "aio_flush",
          "aio_read -P 1 0 1k 1k", "aio_flush"]),
    Case("aio_flags", RAW, R,
         ["aio_write -q 0 1", "aio_flush", "aio_write -C 0 1", "aio_flush", "aio_write -f 0 1", "aio_flush",
          "aio_write -z 0 4k", "aio_flush", "aio_write -z -u 4k 4k", "aio_flush", "aio_read -q 0 1", "aio_flush",
          "aio_read -C 0 1", "aio_flush", "aio_read -P 0 0 1", "aio_flush", "map"]),
    Case("aio_invalid", RAW, R, ["aio_write -i 0 1", "aio_read -i 0 1", "aio_flush"]),
    Case("aio_errors", RAW, R,
         ["aio_read 1M 1", "aio_flush", "aio_write 1M 1", "aio_flush", "aio_read -P 1 0 1", "aio_flush",
          "aio_write -z -P 1 0 1", "aio_write -u 0 1", "aio_read", "aio_write x 1", "aio_read -P x 0 1"]),
    Case("aio_unaligned", RAW, R,
         ["aio_write -P 3 1 511", "aio_flush", "aio_read -P 3 1 511", "aio_flush", "aio_read -P 0 0 1", "aio_flush"]),
    Case("aio_no_flush_at_exit", RAW, R, ["aio_write -P 5 0 4k"]),
    Case("aio_flush_idle", RAW, R, ["aio_flush", "aio_flush x"]),

    # --- discard, flush, length, info, map, alloc, truncate ----------------------
    Case("discard", RAW_DATA, R,
         ["discard 0 4k", "discard -q 8k 4k", "discard -C 16k 4k", "discard 1 2", "discard 60k 8k", "map",
          "read -P 0 0 4k", "discard 1M 1", "discard", "discard x 1", "discard 0 0"]),
    Case("flush", RAW, R, ["write 0 1", "flush", "flush x"]),
    Case("length_info", RAW_DATA, R, ["length", "info", "length x"]),
    Case("map_data", RAW_DATA, R, ["map", "map x"]),
    Case("map_empty", RAW, R, ["map"]),
    Case("alloc", RAW_DATA, R,
         ["alloc 0", "alloc 0 64k", "alloc 64k 64k", "alloc 0 1M", "alloc 1 1", "alloc 1M", "alloc 0 2M",
          "alloc 1023k 4k", "alloc x", "alloc", "alloc 0 x"]),
    Case("truncate", RAW_DATA, R,
         ["truncate 2M", "length", "read -P 0 1M 1M", "truncate 512k", "length", "truncate 1", "length",
          "truncate 0", "length", "truncate x", "truncate", "truncate -1"]),
    Case("truncate_prealloc", RAW, R,
         ["truncate -m off 2M", "truncate -m full 3M", "truncate -m falloc 4M", "truncate -m metadata 5M",
          "truncate -m bogus 6M", "length", "map"]),

    # --- open, close, reopen -------------------------------------------------------
    Case("open_close", RAW, "",
         ["open -o driver=raw t.raw", "length", "open -o driver=raw t.raw", "close", "close",
          "open -r -o driver=raw t.raw", "write 0 1", "close", "open nosuch", "open", "open -o driver=raw",
          "open -f raw t.raw", "open -o driver=raw t.raw", "write -P 2 0 1"]),
    Case("open_probe", RAW, "", ["open t.raw", "write -P 3 0 512", "read -P 3 0 512"]),
    Case("open_flags", RAW, "",
         ["open -n -o driver=raw t.raw", "write -P 1 0 4k", "close",
          "open -t writeback -o driver=raw t.raw", "write -P 2 0 4k", "close",
          "open -t none -o driver=raw t.raw", "close", "open -t writethrough -o driver=raw t.raw", "close",
          "open -t directsync -o driver=raw t.raw", "close", "open -t unsafe -o driver=raw t.raw", "close",
          "open -t bogus -o driver=raw t.raw", "open -d unmap -o driver=raw t.raw", "close",
          "open -d ignore -o driver=raw t.raw", "close", "open -d bogus -o driver=raw t.raw",
          "open -C -o driver=raw t.raw", "close", "open -U -o driver=raw t.raw", "open -U -r -o driver=raw t.raw",
          "close", "open -k -o driver=raw t.raw", "open -k -n -o driver=raw t.raw", "close",
          "open -i threads -o driver=raw t.raw", "close", "open -x t.raw", "open -o driver=raw t.raw",
          "read -P 2 0 4k"]),
    Case("open_snapshot", RAW_DATA, "", ["open -s -o driver=raw t.raw", "write -P 3 0 4k", "read -P 3 0 4k"]),
    Case("open_options", RAW, "",
         ["open -o driver=raw,file.filename=t.raw", "length", "close", "open -o driver=raw,bogus=1 t.raw",
          "open -o driver=raw,size=4096 t.raw", "length", "close", "open -o driver=raw,offset=512 t.raw",
          "write -P 5 0 512", "length", "close", "open -o driver=file t.raw", "length", "close",
          "open -o driver=raw,file.driver=file,file.filename=t.raw", "info", "close",
          "open -o driver=raw,file.driver=nosuch t.raw"]),
    Case("reopen", RAW, R,
         ["reopen -r", "write 0 1", "read 0 1", "reopen -w", "write -P 3 0 1", "reopen -c none", "write 0 4k",
          "reopen -c bogus", "reopen -r -w", "reopen -o bogus=1", "reopen x", "reopen -c writeback",
          "write -P 4 0 1", "read -P 4 0 1"]),
    Case("reopen_read_only_image", RAW, "-r -f raw t.raw", ["write 0 1", "reopen -w", "write -P 6 0 1", "reopen", "write -P 7 0 1"]),

    # --- raw offset and size (7.2's raw-format.c) ----------------------------------------
    Case("raw_offset_io", RAW_DATA, "--image-opts driver=raw,file.filename=t.raw,offset=64k",
         ["length", "read -P 0 0 64k", "read -P 0xa5 64k 64k", "read -P 0 128k 832k", "read 960k 1",
          "write -P 1 0 512", "write -P 2 1000 24", "read -P 2 1000 24", "writev -P 3 4k 1k 1k",
          "aio_write -P 4 8k 4k", "aio_flush", "read -P 4 8k 4k", "write -z 16k 8k", "write -z -u 32k 16k",
          "discard 48k 4k", "read -P 0 16k 8k", "alloc 0 64k", "alloc 900k 1M", "map", "info", "flush",
          "truncate 512k", "length", "read -P 0xa5 64k 64k", "truncate 1M", "length", "read -P 0 512k 512k"]),
    Case("raw_size_io", RAW_DATA, "--image-opts driver=raw,file.filename=t.raw,offset=4k,size=64k",
         ["length", "read -P 0x5a 0 60k", "read -P 0 60k 4k", "read 64k 1", "read 63k 2k", "write -P 1 60k 4k",
          "write 64k 1", "write 1 65535", "write -z 0 4k", "write -z 64k 512", "discard 4k 4k", "discard 64k 4k",
          "read -P 0 0 4k", "alloc 0 64k", "map", "truncate 8k", "truncate 1M", "length", "info"]),
    Case("raw_offset_size_open", RAW, "",
         ["open -o driver=raw,offset=2M t.raw", "open -o driver=raw,size=2M t.raw",
          "open -o driver=raw,offset=512,size=1M t.raw", "open -o driver=raw,size=1000 t.raw",
          "open -o driver=raw,size=x t.raw", "open -o driver=raw,offset=-1 t.raw",
          "open -o driver=raw,offset=1.5 t.raw", "open -o driver=raw,offset=18446744073709551615 t.raw",
          "open -o driver=raw,size=18446744073709551615 t.raw", "open -o driver=raw,offset=1M t.raw", "length",
          "read 0 1", "map", "close", "open -o driver=raw,size=0 t.raw", "length", "write 0 512", "close",
          "open -o driver=raw,offset=0x200,size=1.5k t.raw", "length", "write -P 6 0 1536", "close",
          "open -o driver=raw,offset=1M-1 t.raw", "open -o offset=512,size=4k t.raw", "write -P 7 0 512",
          "length", "close"]),
    Case("raw_offset_image_opts_error", RAW, "--image-opts driver=raw,file.filename=t.raw,offset=2M", ["length"]),
    Case("raw_offset_reopen", RAW + ("qemu-io -f raw -c 'write -P 1 0 512' -c 'write -P 2 512 512'"
                                     " -c 'write -P 3 1k 512' -c 'write -P 4 1536 512' t.raw",),
         "--image-opts driver=raw,file.filename=t.raw,offset=512",
         ["length", "read -P 2 0 512", "reopen -r", "length", "read -P 2 0 512", "reopen -o offset=1k", "length",
          "read -P 3 0 512", "reopen -o size=4k", "length", "read -P 3 0 512", "reopen -w", "length",
          "write -P 8 0 512", "reopen -o size=2k,offset=0", "length", "read -P 1 0 512", "reopen -o offset=2M",
          "length", "reopen -o size=1000", "reopen -o size=x", "reopen -o offset=512,size=1M", "length",
          "read -P 1 0 512", "truncate 4k", "reopen -o size=1M", "length", "reopen -o offset=1k", "length",
          "read -P 8 0 512"]),
    Case("raw_offset_unaligned", RAW_DATA, "--image-opts driver=raw,file.filename=t.raw,offset=1",
         ["length", "read -v 65520 32", "write -P 3 1 3", "read -v 0 8", "write -P 4 1000 100",
          "read -P 4 1000 100", "writev -P 5 2k 100 1k", "read -P 5 2k 1124", "write -z 4k 4k",
          "read -P 0 4k 4k", "aio_write -P 6 10k 1k", "aio_flush", "read -v 10239 4", "info",
          "truncate 2k", "length", "read -v 2032 16"]),
    Case("raw_offset_blkdebug", conf(rule("inject-error", event="read_aio", errno="5", once="on")), "",
         ["open -o driver=raw,offset=4k,size=8k,file.driver=blkdebug,file.config=bd.conf,file.image.filename=t.raw",
          "length", "read 0 4k", "read 0 4k", "write -P 1 1 1", "write -z 4k 4k", "discard 0 4k", "map", "info",
          "open -o driver=raw,offset=512,file.driver=null-co null-co://", "length", "map", "read -v 0 16"]),

    # --- null-co, null-aio ------------------------------------------------------------
    Case("null_co", NONE, "-f null-co null-co://",
         ["length", "info", "map", "read -v 0 16", "write -P 1 0 4k", "read -P 0xab 0 4k", "write -z 0 4k",
          "discard 0 4k", "flush", "alloc 0 4k", "readv 0 1 2", "writev 0 1 2", "aio_read 0 1k", "aio_flush",
          "aio_write 0 1k", "aio_flush", "truncate 4k", "read 1G 1", "read 1 3"]),
    Case("null_co_probe", NONE, "null-co://", ["read -v 0 16", "length"]),
    Case("null_co_options", NONE, "--image-opts driver=null-co,size=4096,read-zeroes=on",
         ["length", "read -v 0 16", "map", "read 4k 1", "read 4095 1", "alloc 0 4k"]),
    Case("null_co_odd_size", NONE, "--image-opts driver=null-co,size=4097", ["length", "read 4096 1", "read 4097 1", "map"]),
    Case("null_co_open", NONE, "",
         ["open -o driver=null-co null-co://", "length", "close", "open -o driver=null-co,size=1M null-co://",
          "length", "close", "open -o driver=null-co,bogus=1 null-co://"]),
    Case("null_co_bad_size", NONE, "", ["open -o driver=null-co,size=x null-co://", "length"],
         diverges="null-bad-size"),
    Case("null_aio", NONE, "--image-opts driver=null-aio,size=1M",
         ["aio_read 0 1k", "aio_write 0 1k", "aio_read 0 1k", "aio_flush", "read 0 4k", "write 0 4k",
          "readv 0 1k 1k", "writev 0 1k 1k", "flush", "map", "info"]),
    Case("throttling_options", NONE, "--image-opts driver=null-co,throttling.iops-total=1000",
         ["read 0 512"], diverges="throttling-options"),
    Case("null_json", NONE, "'json:{\"driver\": \"null-co\", \"size\": 8192}'", ["length", "read 0 8k"]),

    # --- blkdebug: plain pass-through --------------------------------------------------------
    Case("bd_align_odd_size", ("qemu-img create -f raw t.raw 260608",),
         "--image-opts driver=raw,file.driver=blkdebug,file.align=4096,file.image.filename=t.raw",
         ["write 260607 1", "length"]),
    Case("bd_align_odd_size_ro", ("qemu-img create -f raw t.raw 260608",),
         "-r --image-opts driver=raw,file.driver=blkdebug,file.align=4096,file.image.filename=t.raw",
         ["read 260607 1", "length"]),
    Case("bd_basic", RAW_DATA, BD,
         ["read -P 0x5a 0 4k", "write -P 1 0 4k", "read -P 1 0 4k", "length", "info", "map", "alloc 0 4k",
          "flush", "readv -P 0 64k 1k 1k", "writev -P 2 8k 1k 1k", "aio_write -P 3 16k 4k", "aio_flush"]),
    Case("bd_discard_zeroes", RAW_DATA, BD,
         ["discard 0 4k", "write -z 8k 4k", "write -z -u 16k 4k", "discard 1 2", "write -z 1 2", "map"]),
    Case("bd_truncate", RAW_DATA, BD, ["truncate 2M", "length", "truncate 4k", "length", "read -P 0x5a 0 4k"]),
    Case("bd_probe", RAW, "blkdebug::t.raw", ["length", "write -P 1 0 512", "read -P 1 0 512"]),
    Case("bd_as_format", RAW, "-f blkdebug blkdebug::t.raw", ["length", "write -P 1 0 512"]),
    Case("bd_top", RAW_DATA, "--image-opts driver=blkdebug,image.driver=file,image.filename=t.raw",
         ["read -P 0x5a 0 4k", "write -P 1 1 1", "map", "info"]),
    Case("bd_past_end", RAW, BD, ["read 1M 1", "write 1M 1", "read 1023k 2k", "write -z 1M 1"]),
    Case("bd_read_only", RAW, "-r " + BD, ["write 0 1", "read 0 1"]),
    Case("bd_reopen", RAW, BD, ["reopen -r", "write 0 1", "reopen -w", "write -P 1 0 1", "read -P 1 0 1",
                                "reopen -c none", "write -P 2 1 511", "read -P 2 1 511"]),
    Case("bd_nocache", RAW, "-n " + BD, ["write -P 1 1 3", "read -P 1 1 3", "read -P 0 0 1", "write -z 4k 4k"]),
    Case("bd_filename_errors", RAW, "",
         ["open -o driver=raw blkdebug:t.raw", "open -o driver=raw blkdebug:", "open -o driver=raw blkdebug::",
          "open -o driver=raw blkdebug::nosuch.raw", "open -o driver=raw blkdebug:nosuch.conf:t.raw",
          "open -o driver=raw,file.bogus=1 blkdebug::t.raw", "open -o driver=raw blkdebug::blkdebug::t.raw",
          "length"]),
    Case("bd_nested", RAW, "-f raw blkdebug::blkdebug::t.raw", ["write -P 1 0 4k", "read -P 1 0 4k"]),

    # --- blkdebug: config-file rules -------------------------------------------------------
    Case("bd_inject_read", conf(rule("inject-error", event="read_aio")), BDC,
         ["read 0 512", "write 0 512", "read 0 512", "flush"]),
    Case("bd_inject_write", conf(rule("inject-error", event="write_aio")), BDC,
         ["read 0 512", "write 0 512", "read 0 512", "aio_write 0 1k", "aio_flush"]),
    Case("bd_inject_errno", conf(rule("inject-error", event="read_aio", errno="28")), BDC,
         ["read 0 512", "aio_read 0 512", "aio_flush", "readv 0 1 2"]),
    Case("bd_inject_errno_odd", conf(rule("inject-error", event="read_aio", errno="1000")), BDC, ["read 0 512"]),
    Case("bd_inject_errno_zero", conf(rule("inject-error", event="read_aio", errno="0")), BDC, ["read 0 512"]),
    Case("bd_inject_once", conf(rule("inject-error", event="read_aio", once="on")), BDC,
         ["read 0 512", "read 0 512", "write 0 512", "read 0 512"]),
    Case("bd_inject_immediately", conf(rule("inject-error", event="read_aio", immediately="on", errno="5")), BDC,
         ["read 0 512", "aio_read 0 512", "aio_flush", "write 0 512"]),
    Case("bd_inject_immediately_errno",
         conf(rule("inject-error", event="write_aio", immediately="on", errno="28", once="on")), BDC,
         ["write 0 512", "write 0 512", "read 0 512"]),
    Case("bd_inject_sector", conf(rule("inject-error", event="read_aio", sector="8")), BDC,
         ["read 0 512", "read 0 4k", "read 4k 512", "read 4k 1k", "read 3584 1k", "read 4608 512", "write 4k 512"]),
    Case("bd_inject_sector_once", conf(rule("inject-error", event="write_aio", sector="1", once="on")), BDC,
         ["write 0 512", "write 0 1k", "write 0 1k", "read 512 1"]),
    Case("bd_inject_two_rules",
         conf(rule("inject-error", event="read_aio", once="on") + rule("inject-error", event="read_aio", once="on", errno="28")),
         BDC, ["read 0 512", "write 0 512", "read 0 512"]),
    Case("bd_inject_two_events",
         conf(rule("inject-error", event="read_aio") + rule("inject-error", event="write_aio", errno="28")), BDC,
         ["read 0 512", "write 0 512", "read 0 512"]),
    Case("bd_inject_flush_to_os", conf(rule("inject-error", event="flush_to_os")), BDC,
         ["read 0 512", "write 0 512", "flush", "read 0 512"]),
    Case("bd_inject_flush_to_os_wb", conf(rule("inject-error", event="flush_to_os")), "-t writeback " + BDC,
         ["read 0 512", "write 0 512", "flush", "read 0 512"]),
    Case("bd_inject_flush_to_disk", conf(rule("inject-error", event="flush_to_disk")), BDC,
         ["read 0 512", "write 0 512", "flush", "read 0 512"]),
    Case("bd_inject_flush_to_disk_wb", conf(rule("inject-error", event="flush_to_disk")), "-t writeback " + BDC,
         ["write 0 512", "flush", "read 0 512"]),
    Case("bd_inject_zeroes_discard", conf(rule("inject-error", event="write_aio", errno="28")), BDC,
         ["write -z 0 4k", "write -P 1 0 4k", "write -z 0 4k", "discard 0 4k", "map"]),
    Case("bd_inject_unused_event", conf(rule("inject-error", event="l2_load")), BDC, ["read 0 512", "write 0 512"]),
    Case("bd_inject_event_none", conf(rule("inject-error", event="none", once="on")), BDC,
         ["read 0 512", "write 0 512", "read 0 512"]),
    Case("bd_inject_iotype", conf(rule("inject-error", event="read_aio", iotype="write")), BDC,
         ["read 0 512", "write 0 512", "read 0 512"]),
    Case("bd_config_layout",
         conf("# a comment\n\n[inject-error]\n  event = \"read_aio\"  \n   errno   =   \"28\"\n"
              "[inject-error \"x\"]\nevent = \"write_aio\"\n"), BDC, ["read 0 512", "write 0 512"]),
    Case("bd_config_empty", conf(""), BDC, ["read 0 512", "write 0 512"]),

    # --- blkdebug: states ----------------------------------------------------------------------
    Case("bd_set_state",
         conf(rule("set-state", event="read_aio", state="1", new_state="2") +
              rule("inject-error", event="read_aio", state="2")), BDC,
         ["read 0 512", "read 0 512", "write 0 512"]),
    Case("bd_set_state_cycle",
         conf(rule("set-state", event="write_aio", state="1", new_state="2") +
              rule("set-state", event="write_aio", state="2", new_state="3") +
              rule("set-state", event="write_aio", state="3", new_state="1") +
              rule("inject-error", event="read_aio", state="3", once="on")), BDC,
         ["read 0 512", "write 0 512", "read 0 512", "write 0 512", "read 0 512", "read 0 512",
          "write 0 512", "read 0 512"]),
    Case("bd_set_state_any",
         conf(rule("set-state", event="write_aio", new_state="5") + rule("inject-error", event="read_aio", state="5")), BDC,
         ["read 0 512", "write 0 512", "read 0 512"]),
    Case("bd_set_state_same_event",
         conf(rule("inject-error", event="write_aio", state="2") + rule("set-state", event="write_aio", state="1", new_state="2")),
         BDC, ["write 0 512", "write 0 512", "write 0 512"]),
    Case("bd_set_state_none",
         conf(rule("set-state", event="none", new_state="2") + rule("inject-error", event="read_aio", state="2")), BDC,
         ["read 0 512", "write 0 512"]),

    # --- blkdebug: config errors ----------------------------------------------------------------
    Case("bd_config_missing_event", conf(rule("inject-error", errno="5")), BDC, ["read 0 512"]),
    Case("bd_config_bad_event", conf(rule("inject-error", event="bogus")), BDC, ["read 0 512"]),
    Case("bd_config_old_event_name", conf(rule("inject-error", event="pwritev_rmw.head")), BDC, ["read 0 512"],
         diverges="blkdebug-event-names"),
    Case("bd_config_unknown_key", conf(rule("inject-error", event="read_aio", foo="1")), BDC, ["read 0 512"]),
    Case("bd_config_key_of_other_section", conf(rule("set-state", event="read_aio", errno="2")), BDC, ["read 0 512"]),
    Case("bd_config_bad_number", conf(rule("inject-error", event="read_aio", errno="x")), BDC, ["read 0 512"]),
    Case("bd_config_bad_bool", conf(rule("inject-error", event="read_aio", once="maybe")), BDC, ["read 0 512"]),
    Case("bd_config_bool_yes", conf(rule("inject-error", event="read_aio", once="yes")), BDC, ["read 0 512", "read 0 512"]),
    Case("bd_config_hex_number", conf(rule("inject-error", event="read_aio", sector="0x8")), BDC, ["read 0 512", "read 4k 512"]),
    Case("bd_config_unknown_section", conf(rule("bogus", event="read_aio")), BDC, ["read 0 512"]),
    Case("bd_config_no_section", conf('event = "read_aio"\n'), BDC, ["read 0 512"]),
    Case("bd_config_garbage", conf("garbage\n"), BDC, ["read 0 512"]),
    Case("bd_config_unquoted", conf("[inject-error]\nevent = read_aio\n"), BDC, ["read 0 512"]),
    Case("bd_config_no_spaces", conf("[inject-error]\nevent=\"read_aio\"\n"), BDC, ["read 0 512"]),
    Case("bd_config_blank_line", conf("[inject-error]\n   \n"), BDC, ["read 0 512"]),
    Case("bd_config_bad_iotype", conf(rule("inject-error", event="read_aio", iotype="bogus")), BDC, ["read 0 512"]),

    # --- blkdebug: rules and settings as options -------------------------------------------------
    Case("bd_opts_inject", RAW,
         "--image-opts driver=raw,file.driver=blkdebug,file.image.filename=t.raw,"
         "file.inject-error.0.event=read_aio,file.inject-error.0.errno=28,file.inject-error.0.once=on",
         ["read 0 512", "read 0 512"]),
    Case("bd_opts_set_state", RAW,
         "--image-opts driver=raw,file.driver=blkdebug,file.image.filename=t.raw,"
         "file.set-state.0.event=write_aio,file.set-state.0.new_state=2,"
         "file.inject-error.0.event=read_aio,file.inject-error.0.state=2",
         ["read 0 512", "write 0 512", "read 0 512"]),
    Case("bd_opts_two_rules", RAW,
         "--image-opts driver=raw,file.driver=blkdebug,file.image.filename=t.raw,"
         "file.inject-error.0.event=read_aio,file.inject-error.0.once=on,"
         "file.inject-error.1.event=write_aio,file.inject-error.1.errno=28",
         ["read 0 512", "read 0 512", "write 0 512"]),
    Case("bd_opts_config", conf(rule("inject-error", event="write_aio")),
         "--image-opts driver=raw,file.driver=blkdebug,file.config=bd.conf,file.image.filename=t.raw",
         ["read 0 512", "write 0 512"]),
    Case("bd_opts_config_and_rule", conf(rule("inject-error", event="write_aio")),
         "--image-opts driver=raw,file.driver=blkdebug,file.config=bd.conf,file.image.filename=t.raw,"
         "file.inject-error.0.event=read_aio,file.inject-error.0.errno=28",
         ["read 0 512", "write 0 512"]),
    Case("bd_opts_errors", RAW, "",
         ["open -o driver=raw,file.driver=blkdebug,file.image.filename=t.raw,file.inject-error.0.event=bogus",
          "open -o driver=raw,file.driver=blkdebug,file.image.filename=t.raw,file.inject-error.0.errno=5",
          "open -o driver=raw,file.driver=blkdebug,file.image.filename=t.raw,file.inject-error.0.foo=5",
          "open -o driver=raw,file.driver=blkdebug",
          "open -o driver=raw,file.driver=blkdebug,file.image.filename=t.raw,file.foo=1"]),
    Case("bd_align", RAW, "",
         ["open -o driver=raw,file.align=4k blkdebug::t.raw", "write -P 1 1k 1k", "read -P 0 0 1k",
          "read -P 1 1k 1k", "write -P 2 4095 2", "read -P 2 4095 2", "read -P 0 4097 100", "writev -P 3 8k 1 511",
          "read -P 3 8k 512", "write -z 12k 1k", "discard 16k 4k", "length", "info", "map", "close"]),
    Case("bd_align_errors", RAW, "",
         ["open -o driver=raw,file.align=3 blkdebug::t.raw", "open -o driver=raw,file.align=0 blkdebug::t.raw",
          "open -o driver=raw,file.align=2G blkdebug::t.raw", "open -o driver=raw,file.align=x blkdebug::t.raw",
          "open -o driver=raw,file.align=512 blkdebug::t.raw", "length"]),
    Case("bd_align_inject", conf(rule("inject-error", event="write_aio", once="on")), "",
         ["open -o driver=raw,file.align=4k blkdebug:bd.conf:t.raw", "write -P 1 0 4k", "write -P 1 0 4k",
          "read -P 1 0 4k"]),
    Case("bd_align_rmw_read_error", conf(rule("inject-error", event="write_aio", once="on", iotype="read")), "",
         ["open -o driver=raw,file.align=4k blkdebug:bd.conf:t.raw", "write -P 1 512 512", "read -P 1 512 512",
          "read -P 0 0 512"], diverges="rmw-read-error"),
    Case("bd_align_past_end", RAW, "", [OPEN_077, "write 1M 512", "read 1023k 2k", "write -P 1 1047552 512"]),

    # --- blkdebug: breakpoints ------------------------------------------------------------------
    Case("bd_break_errors", RAW, BD,
         ["break", "break pwritev", "break bogus A", "remove_break A", "resume A", "break pwritev A",
          "remove_break A", "remove_break A", "resume A", "break pwritev A", "break pwritev A", "remove_break A",
          "wait_break", "resume", "remove_break"]),
    Case("bd_break_not_blkdebug", RAW, R, ["break pwritev A", "remove_break A", "resume A"]),
    Case("bd_break_old_spelling", RAW, BD, ["break pwritev_rmw.head A", "remove_break A"],
         diverges="blkdebug-event-names"),
    Case("bd_break_resume", RAW, BD,
         ["break pwritev A", "aio_write -P 1 0 4k", "wait_break A", "resume A", "aio_flush", "read -P 1 0 4k"]),
    Case("bd_break_remove_resumes", RAW, BD,
         ["break pwritev A", "aio_write -P 1 0 4k", "wait_break A", "remove_break A", "aio_flush",
          "read -P 1 0 4k"]),
    Case("bd_break_remove_unused", RAW, BD,
         ["break pwritev A", "remove_break A", "write -P 1 0 4k", "read -P 1 0 4k"]),
    Case("bd_break_two_tags", RAW, BD,
         ["break pwritev A", "aio_write -P 1 0 4k", "wait_break A", "break pwritev B", "aio_write -P 2 8k 4k",
          "wait_break B", "resume B", SETTLE, "resume A", "aio_flush", "read -P 1 0 4k",
          "read -P 2 8k 4k"]),
    Case("bd_break_same_tag", RAW, BD,
         ["break pwritev A", "break pwritev_done A", "aio_write -P 1 0 4k", "wait_break A", "resume A",
          "wait_break A", "resume A", "aio_flush"]),
    Case("bd_break_read_event", RAW_DATA, BD,
         ["break read_aio A", "aio_read -P 0x5a 0 4k", "wait_break A", "resume A", "aio_flush"]),
    Case("bd_break_pwritev_zero", RAW_DATA, BD,
         ["break pwritev_zero A", "aio_write -z 0 4k", "wait_break A", "resume A", "aio_flush", "map"]),
    Case("bd_break_inject_after", conf(rule("inject-error", event="pwritev_done", once="on")), BDC,
         ["break pwritev A", "aio_write -P 1 0 4k", "wait_break A", "resume A", "aio_flush", "write 0 4k",
          "read -P 1 0 4k"]),

    # --- iotest 077: concurrent read-modify-write on a 4k-aligned image ----------------------------
    *[Case(f"iotest077_sequential_{ev}", RAW_128M, "",
           [OPEN_077, f"break pwritev_rmw_{ev} A", "aio_write -P 10 0x1200 0x200", "wait_break A",
            "aio_write -P 11 0x1400 0x200", SETTLE, "resume A", "aio_flush",
            "read -P 0 0x1000 0x200", "read -P 10 0x1200 0x200", "read -P 11 0x1400 0x200",
            "read -P 0 0x1600 0xa00"], drop=SUSPENDED)
      for ev in ("head", "after_head", "tail", "after_tail")],
    Case("iotest077_simple_rmw", RAW_128M, "",
         [OPEN_077, "aio_write -P 10 0x200 0x200", "aio_flush", "read -P 0 0 0x200", "read -P 10 0x200 0x200",
          "read -P 0 0x400 0xc00"], drop=SUSPENDED),
    Case("iotest077_chained", RAW_128M, "",
         [OPEN_077, "break pwritev_rmw_after_tail A", "aio_write -P 10 0x5000 0x200", "wait_break A",
          *[f"aio_write -P {p} {0x5000 + 0x200 * (p - 10):#x} 0x200" for p in range(11, 18)],
          SETTLE, "resume A", "aio_flush",
          *[f"read -P {p} {0x5000 + 0x200 * (p - 10):#x} 0x200" for p in range(10, 18)]], drop=SUSPENDED),
    *[Case(f"iotest077_overlap_{n}", RAW_128M, "",
           [OPEN_077, *cmds, "read -P 10 0x6000 0x200", "read -P 0 0x6200 0x600", "read -P 11 0x6800 0x1000",
            "read -P 0 0x7800 0x600", "read -P 10 0x7e00 0x200"], drop=SUSPENDED)
      for n, cmds in enumerate([
          ["break pwritev_rmw_after_tail A", "aio_write -P 10 0x6000 0x200", "wait_break A",
           "break pwritev_rmw_after_head B", "aio_write -P 10 0x7e00 0x200", "wait_break B",
           "aio_write -P 11 0x6800 0x1000", "resume A", SETTLE, "resume B", "aio_flush"],
          ["break pwritev_rmw_after_tail A", "aio_write -P 10 0x6000 0x200", "wait_break A",
           "break pwritev_rmw_after_head B", "aio_write -P 10 0x7e00 0x200", "wait_break B",
           "aio_write -P 11 0x6800 0x1000", "resume B", SETTLE, "resume A", "aio_flush"],
          ["break pwritev_rmw_after_tail A", "aio_write -P 10 0x6000 0x200", "wait_break A",
           "aio_write -P 11 0x6800 0x1000", "break pwritev_rmw_after_head B", "aio_write -P 10 0x7e00 0x200",
           "wait_break B", "resume A", SETTLE, "resume B", "aio_flush"],
          ["break pwritev_rmw_after_tail A", "aio_write -P 10 0x6000 0x200", "wait_break A",
           "aio_write -P 11 0x6800 0x1000", "break pwritev_rmw_after_head B", "aio_write -P 10 0x7e00 0x200",
           "wait_break B", "resume B", SETTLE, "resume A", "aio_flush"]], 1)],
    Case("iotest077_tail_only", RAW_128M, "",
         [OPEN_077, "break pwritev_rmw_after_tail A", "aio_write -P 10 0xe000 0x1800", "wait_break A",
          "aio_write -P 11 0xf000 0xc00", SETTLE, "resume A", "aio_flush",
          "read -P 10 0xe000 0x1000", "read -P 11 0xf800 0x400", "read -P 0 0xfc00 0x400"], drop=SUSPENDED),
    Case("iotest077_pwritev_done", RAW_128M, "",
         [OPEN_077, "break pwritev A", "aio_write -P 10 0x10000 0x800", "wait_break A",
          "break pwritev_rmw_after_tail B", "aio_write -P 11 0x10000 0x400", "break pwritev_done C", "resume A",
          "wait_break C", "resume C", SETTLE, "wait_break B", "resume B", "aio_flush",
          "read -P 11 0x10000 0x400", "read -P 10 0x10400 0x400"], drop=SUSPENDED),
    Case("iotest077_pwritev_overlap", RAW_128M, "",
         [OPEN_077, "break pwritev A", "aio_write -P 10 0x11000 0x800", "wait_break A",
          "aio_write -P 11 0x11000 0x1000", SETTLE, "resume A", "aio_flush", "read -P 11 0x11000 0x1000"],
         drop=SUSPENDED),
]

# The whole of iotest 077 in one run, fed on standard input as the iotest
# does, in the iotest's order.
_BY_NAME = {c.name: c for c in CASES}
CASES.append(Case("iotest077", RAW_128M, "", [OPEN_077] + [
    command
    for part in ("simple_rmw", "sequential_head", "sequential_after_head", "sequential_tail",
                 "sequential_after_tail", "chained", "overlap_1", "overlap_2", "overlap_3", "overlap_4",
                 "tail_only", "pwritev_done", "pwritev_overlap")
    for command in _BY_NAME["iotest077_" + part].commands[1:]], stdin=True, drop=SUSPENDED))

# --- qcow2 images made by the real qemu-img ------------------------------------------------------
CHAIN_IO = ("map", "alloc 0 1M", "read -P 0x5a 0 32k", "read -P 0x66 32k 64k", "read -P 0 96k 32k",
            "read -P 0xa5 128k 32k", "read -P 0 160k 8k", "read -P 0xa5 168k 24k", "write -P 1 30k 4k",
            "write -z 100k 60k", "discard 64k 64k", "write -z -u 168k 4k", "read -P 1 30k 4k", "read -P 0x66 34k 30k",
            "read -P 0 64k 64k", "read -P 0 100k 72k", "read -P 0xa5 172k 20k", "aio_write -P 2 1020k 4k",
            "aio_flush", "readv -P 2 1020k 1k 3k", "map")
CASES += [
    *[Case(f"qcow2_io_cluster_{cs}", qcow2(f"-o cluster_size={cs}") + (qio("t.qcow2", "qcow2", *DATA_CMDS),),
           Q, QCOW2_IO) for cs in ("512", "4k", "64k", "2M")],
    *[Case(f"qcow2_io_compat_{c}", qcow2(f"-o compat={c}") + (qio("t.qcow2", "qcow2", *DATA_CMDS),), Q,
           QCOW2_IO + ("info",)) for c in ("0.10", "1.1")],
    Case("qcow2_io_over_raw", QCOW2_OVER_RAW, Q, QCOW2_IO),
    Case("qcow2_io_over_qcow2", QCOW2_OVER_QCOW2, Q, QCOW2_IO),
    Case("qcow2_io_over_qcow2_cluster_4k", QCOW2_BASE + qcow2("-o cluster_size=4k -b b.qcow2 -F qcow2"), Q,
         QCOW2_IO),
    Case("qcow2_io_chain", QCOW2_CHAIN, Q, CHAIN_IO),
    Case("qcow2_io_compressed", QCOW2_COMPRESSED, Q, QCOW2_IO),
    Case("qcow2_empty", QCOW2, Q, ["map", "alloc 0 1M", "read -P 0 0 1M", "length", "info"]),
    Case("qcow2_info", QCOW2_CHAIN, Q, ["info", "length", "close", "open -o driver=qcow2 b.qcow2", "info"]),
    Case("qcow2_probe", QCOW2_DATA, "t.qcow2", ["read -P 0x5a 0 64k", "write -P 1 0 512", "info"]),
    Case("qcow2_past_end", QCOW2_DATA, Q,
         ["read 1M 1", "write 1M 1", "read 1023k 2k", "write 1023k 2k", "write -z 1M 1", "write -z 1020k 8k",
          "discard 1M 4k", "alloc 1M", "alloc 1023k 4k", "readv 1023k 1k 1k", "aio_read 1M 512", "aio_flush",
          "length", "map"]),
    Case("qcow2_unaligned", qcow2("-o cluster_size=4k") + (qio("t.qcow2", "qcow2", *DATA_CMDS),), Q,
         ["write -P 0x11 1 3", "write -P 0x22 4095 2", "write -P 0x33 65535 4098", "writev -P 0x44 200k 1 511 3",
          "aio_write -P 0x55 300k 7", "aio_flush", "read -P 0x11 1 3", "read -P 0x22 4095 2",
          "read -P 0x33 65535 4098", "readv -P 0x44 200k 1 511 3", "read -P 0x55 300k 7", "read -v 0 8",
          "read -v 65530 12", "write -z 5 10", "discard 7 9", "read -v 0 16", "map"]),
    Case("qcow2_truncate", QCOW2_DATA, Q,
         ["truncate 2M", "length", "read -P 0 1M 1M", "write -P 7 1536k 4k", "map", "truncate 3000000", "length",
          "info", "read -P 7 1536k 4k"]),
    Case("qcow2_truncate_shrink", QCOW2_DATA, Q, ["truncate 512k", "length", "read -P 0x5a 0 64k", "map"]),
    Case("qcow2_truncate_shrink_unaligned", QCOW2_DATA, Q,
         ["truncate 150k", "length", "read -P 0xa5 128k 22k", "read 150k 512", "map", "truncate 1M",
          "read -v 150k 16", "read -P 0 192k 64k", "map"]),
    Case("qcow2_truncate_shrink_backing", QCOW2_SHRINK_OVER_RAW, Q,
         ["truncate 100k", "length", "read -P 1 0 4k", "read -P 0x5a 4k 60k", "read -P 0 64k 36k",
          "read 128k 4k", "map"]),
    Case("qcow2_truncate_shrink_backing_regrow", QCOW2_SHRINK_OVER_RAW, Q,
         ["truncate 100k", "truncate 1M", "read -v 96k 16", "read -v 100k 16", "read -v 128k 16",
          "read -v 136k 16", "map"]),
    Case("qcow2_truncate_shrink_compat_010", qcow2("-o compat=0.10") + (qio("t.qcow2", "qcow2", *DATA_CMDS),), Q,
         ["truncate 128k", "length", "read -P 0x5a 0 64k", "map", "truncate 1M", "read -P 0 128k 64k", "map"]),
    Case("qcow2_truncate_shrink_compressed", QCOW2_COMPRESSED, Q,
         ["truncate 136k", "length", "read -P 0x5a 0 64k", "read -P 0xa5 128k 8k", "map"]),
    Case("qcow2_truncate_shrink_regrow", QCOW2_DATA, Q,
         ["truncate 64k", "truncate 1M", "length", "read -P 0x5a 0 64k", "read -P 0 64k 960k", "map"]),
    Case("qcow2_truncate_shrink_small_clusters", QCOW2_SMALL_CLUSTERS, Q, ["truncate 96k", "length", "read -P 7 0 96k", "map", "truncate 4M", "read -P 0 96k 3M", "map"]),
    Case("qcow2_truncate_shrink_l1_error",
         conf(rule("inject-error", event="l1_shrink_write_table", errno="5", once="on"), QCOW2_SMALL_CLUSTERS),
         BD_SMALL_CACHES, ["truncate 96k", "length", "read -P 7 0 96k", "map"]),
    Case("qcow2_truncate_shrink_free_l2_event",
         conf(rule("inject-error", event="l1_shrink_free_l2_clusters", errno="28", once="on"), QCOW2_SMALL_CLUSTERS),
         BD_SMALL_CACHES, ["truncate 96k", "length", "read -P 7 0 96k", "map"]),
    Case("qcow2_truncate_shrink_snapshot", QCOW2_DATA + ("qemu-img snapshot -c s1 t.qcow2",), Q,
         ["truncate 64k", "length", "read -P 0x5a 0 64k", "map", "truncate 1M", "read -P 0 64k 960k"]),
    Case("qcow2_truncate_shrink_snapshot_v2",
         qcow2("-o compat=0.10") + (qio("t.qcow2", "qcow2", *DATA_CMDS), "qemu-img snapshot -c s1 t.qcow2"), Q,
         ["truncate 64k", "truncate 2M", "length"]),
    Case("qcow2_truncate_over_backing", QCOW2_OVER_RAW, Q,
         ["truncate 2M", "length", "read -P 0 1M 1M", "read -P 0xa5 128k 64k", "map"]),
    *[Case(f"qcow2_truncate_prealloc_{m}", QCOW2_PARTIAL_END, Q,
           [f"truncate -m {m} 1M", "read -P 1 0 4k", "read -P 2 64k 36k", "read -P 0 100k 924k", "map", "length"])
      for m in ("metadata", "falloc", "full")],
    *[Case(f"qcow2_truncate_prealloc_{m}_{event}",
           conf(rule("inject-error", event=event, errno="5", once="on"), QCOW2_PARTIAL_END),
           "-f qcow2 blkdebug:bd.conf:t.qcow2", [f"truncate -m {m} 1M", "length", "map"])
      for m in ("metadata", "falloc")
      for event in ("refblock_alloc_write_table", "refblock_alloc_switch_table", "l2_update",
                    "refblock_update_part")],
    Case("qcow2_truncate_compat_010_over_longer_backing",
         RAW_BASE + qcow2("-o compat=0.10 -b b.raw -F raw", size="128k"), Q,
         ["truncate 1M", "length", "read -P 0xa5 128k 64k", "map"]),
    # A relative backing file name is taken from the directory of the file
    # under blkdebug (7.2's bdrv_dirname goes down the primary children).
    *[Case(f"qcow2_backing_through_blkdebug_{n}", QCOW2_OVER_RAW + (("file", "bd.conf", ""),), opts,
           ["read -P 0x5a 0 4k", "read -P 0xa5 128k 4k", "map", "info"])
      for n, opts in (("json", "'json:{\"driver\": \"qcow2\", \"file\": {\"driver\": \"blkdebug\", "
                               "\"config\": \"bd.conf\", \"image\": {\"driver\": \"file\", "
                               "\"filename\": \"t.qcow2\"}}}'"),
                      ("filename", "-f qcow2 blkdebug:bd.conf:t.qcow2"),
                      ("no_config", "-f qcow2 blkdebug::t.qcow2"),
                      ("image_opts", "--image-opts driver=qcow2,file.driver=blkdebug,file.image.filename=t.qcow2"))],
    Case("qcow2_copy_on_read", QCOW2_OVER_RAW, "-C " + Q,
         ["read -P 0x5a 0 4k", "read -P 0 64k 8k", "read -P 0xa5 130k 1k", "map", "alloc 0 1M"]),
    Case("qcow2_copy_on_read_chain", QCOW2_CHAIN, "-C " + Q,
         ["read -P 0x5a 0 32k", "read -P 0x66 40k 4k", "read -P 0 160k 8k", "map"]),
    Case("qcow2_snapshot", QCOW2_OVER_QCOW2, "-s " + Q,
         ["write -P 0x11 0 4k", "read -P 0x11 0 4k", "read -P 0xa5 128k 4k", "map", "info"]),
    Case("qcow2_read_only", QCOW2_DATA, "-r " + Q,
         ["read -P 0x5a 0 4k", "write 0 1", "writev 0 1", "write -z 0 1", "discard 0 1", "truncate 2M",
          "aio_write 0 1", "aio_flush", "flush", "length", "map", "reopen -w", "write -P 3 0 1", "read -P 3 0 1"]),
    Case("qcow2_open_close", QCOW2_OVER_QCOW2, "",
         ["open -o driver=qcow2 t.qcow2", "read -P 0x5a 0 4k", "close", "open t.qcow2", "write -P 1 0 4k", "close",
          "open -r -o driver=qcow2 t.qcow2", "write 0 1", "reopen -w", "write -P 2 4k 4k", "reopen -r",
          "reopen -c none", "read -P 2 4k 4k", "close", "open -o driver=qcow2,backing=null t.qcow2",
          "open -o driver=qcow2,file.filename=b.qcow2", "read -P 0xa5 128k 4k", "close",
          "open -o driver=qcow2 t.raw", "open -o driver=qcow2,bogus=1 t.qcow2", "open -o driver=raw t.qcow2",
          "length", "close", "open -o driver=qcow2 t.qcow2", "read -P 1 0 4k", "read -P 2 4k 4k", "map"]),
    Case("qcow2_open_no_backing", QCOW2_OVER_QCOW2, "",
         ["open -o driver=qcow2,backing= t.qcow2", "read -P 0 0 4k", "map", "close",
          "open -o driver=qcow2,backing.driver=raw,backing.file.filename=b.qcow2 t.qcow2", "read -v 0 4"]),
    Case("qcow2_discard_unmap", QCOW2_DATA, "-d unmap " + Q,
         ["discard 0 64k", "write -z -u 128k 64k", "write -z 64k 64k", "map"]),
    Case("qcow2_zero_keeps_allocation", QCOW2_DATA, Q, ["write -z 0 64k", "read -P 0 0 64k", "map"]),
    Case("qcow2_zero_over_backing", QCOW2_OVER_RAW, Q,
         ["write -z 0 64k", "write -z -u 128k 64k", "read -P 0 0 64k", "read -P 0 128k 64k", "map"]),
    Case("qcow2_zero_over_backing_crossing", QCOW2_OVER_RAW, Q, ["write -z 60k 8k", "read -P 0 60k 8k", "map"]),
    Case("qcow2_zero_unaligned", QCOW2, Q, ["write -z 1 2", "write -z 64k 512", "read -P 0 0 128k", "map"]),
    Case("qcow2_zero_compat_010", qcow2("-o compat=0.10") + (qio("t.qcow2", "qcow2", *DATA_CMDS),), Q,
         ["write -z 0 64k", "write -z -u 128k 64k", "write -z 1 2", "read -v 0 4", "map"]),
    Case("qcow2_write_compressed", QCOW2, Q,
         ["write -c -P 1 0 64k", "read -P 1 0 64k", "write -c 1 1", "write -c -P 2 64k 4k", "map", "info"]),
    Case("qcow2_write_fua_nocache", QCOW2_DATA, "-n -t none " + Q,
         ["write -f -P 9 0 4k", "write -P 8 1 3", "read -P 8 1 3", "read -P 9 4 4092", "flush"]),
    Case("qcow2_aio_many", QCOW2_OVER_RAW, Q,
         [*[f"aio_write -q -P {i} {i * 48}k 40k" for i in range(1, 12)], "aio_flush",
          *[f"read -P {i} {i * 48}k 40k" for i in range(1, 12)], "map"]),
    Case("qcow2_abort", QCOW2_DATA, Q, ["write -P 1 512k 64k", "abort"]),

    # --- option strings, force-share, -T, reopen of child options ----------
    # 7.2 lists its own trace events (hundreds), the port its own: the list
    # differs; with the names dropped the rest (exit 0 before anything else
    # runs, nothing on stderr) must be the same.
    Case("trace_help", NONE, "-T help", diverges="trace-event-list"),
    Case("trace_help_exits", RAW, "-T help -f raw t.raw", ["write -P 1 0 1"], drop=TRACE_EVENT_NAME),
    Case("trace_help_question_mark", NONE, "-T '?'", ["quit"], drop=TRACE_EVENT_NAME),
    Case("trace_help_enable", NONE, "-T enable=help,events=nosuch", ["quit"], drop=TRACE_EVENT_NAME),
    Case("trace_events_file_help", (("file", "ev", "# comment\n\n-qcow2_cache_get\nhelp\n"),), "-T events=ev",
         ["quit"], drop=TRACE_EVENT_NAME),
    Case("trace_options_help", NONE, "-T file=t.log,help", ["quit"]),
    Case("trace_bad_parameter", NONE, "-T bogus=1", ["quit"]),
    Case("trace_bad_logfile", NONE, "-T file=nodir/t.log", ["quit"]),
    Case("trace_missing_events_file", NONE, "-T events=nosuch", ["quit"]),
    Case("trace_unknown_events", NONE, "-T 'nosuch?' -T -nosuch -T 'nosuch*' -T id=x", ["quit"]),
    Case("trace_driver_events", QCOW2,
         "-T -qcow2_cache_get -T qcow2_writev_start_req,file=t.log -T -qcow2_writev_start_req -f qcow2 t.qcow2",
         ["write -P 1 0 4k"]),
    Case("opts_short_form_bool", RAW, "",
         ["open -o driver=raw,read-only t.raw", "open -o driver=raw,noread-only t.raw", "info", "close",
          "open -o driver=raw,nodelay t.raw", "open -o driver=raw,delay t.raw", "open -o driver=raw,help t.raw",
          "open -o driver=raw -o read-only t.raw", "open -r -o driver=raw -o nocache.direct t.raw", "close",
          "open -o driver=raw,nocache.direct,,x t.raw"]),
    Case("opts_image_opts_short_form", RAW, "--image-opts driver=raw,file.filename=t.raw,read-only", ["length"]),
    Case("opts_image_opts_short_form_ro", RAW, "-r --image-opts driver=raw,file.filename=t.raw,read-only",
         ["length", "read -P 0 0 1"]),
    Case("opts_id", RAW, "", ["open -o id=x,driver=raw t.raw", "open -o driver=raw,id=1 t.raw",
                              "open -o driver=raw,id t.raw", "length"]),
    Case("opts_image_opts_id", RAW, "--image-opts id=x,driver=raw,file.filename=t.raw", ["length"]),
    Case("opts_image_opts_bad_id", RAW, "--image-opts id=1x,driver=raw,file.filename=t.raw", ["length"]),
    Case("opts_reopen", RAW, R, ["reopen -o id=x", "reopen -o noread-only", "reopen -o read-only=off,nocache.direct",
                                 "write -P 1 0 1"]),
    Case("opts_reopen_flags", RAW, R, ["reopen -o help", "reopen -o read-only,noread-only", "reopen -o file.help",
                                       "reopen -o id=x,bogus", "write -P 2 0 1"]),
    Case("opts_reopen_bad_booleans", RAW, R,
         ["reopen -o read-only=bogus", "reopen -o cache.direct=bogus", "reopen -o file.read-only=bogus",
          "reopen -o file.cache.no-flush=x", "reopen -c none -o read-only=bogus,cache.direct=on",
          "reopen -r -o read-only=bogus", "write -P 1 0 1"]),
    Case("open_read_only_option", RAW, "",
         ["open -o driver=raw,read-only=on t.raw", "open -r -o driver=raw,read-only=on t.raw", "write 0 1", "close",
          "open -o driver=raw,read-only=off t.raw", "write -P 2 0 1", "close", "open -U -o driver=raw,read-only=on t.raw"]),
    Case("open_read_only_child_option", QCOW2_DATA + RAW, "",
         ["open -o driver=raw,file.read-only=on t.raw", "open -r -o driver=raw,file.read-only=off t.raw", "close",
          "open -o driver=raw,read-only=on,file.read-only=off t.raw",
          "open -o driver=raw,file.driver=blkdebug,file.image.filename=t.raw,file.image.read-only=on",
          "open -o driver=qcow2,file.filename=t.qcow2,file.read-only=on",
          "open -o driver=raw,file.driver=blkdebug,file.image.filename=t.raw,file.read-only=off",
          "write -P 1 0 1", "close", "open -o driver=qcow2,file.filename=t.qcow2,backing.read-only=on",
          "write -P 2 0 1"]),
    Case("force_share_open", RAW, "",
         ["open -o force-share=on -o driver=raw t.raw", "open -o driver=raw,file.force-share=on t.raw",
          "open -r -o driver=raw,force-share=bogus t.raw", "open -U -o force-share=off -o driver=raw t.raw",
          "open -r -U -o driver=raw,force-share=yes t.raw", "open -U nosuch.raw", "open -U t.raw",
          "open -r -o driver=raw,force-share t.raw", "info", "close",
          "open -r -o driver=raw,file.force-share=on t.raw", "read -P 0 0 1", "reopen -w", "write -P 3 0 1",
          "close", "open -r -U t.raw", "read -P 3 0 1"]),
    Case("force_share_image_opts", RAW, "-U --image-opts driver=raw,file.filename=t.raw,force-share", ["length"]),
    Case("force_share_image_opts_ro", RAW, "-r --image-opts driver=raw,file.filename=t.raw,force-share=on",
         ["length", "reopen -w", "write -P 1 0 1"]),
    Case("force_share_image_opts_conflict", RAW, "-U -r --image-opts driver=raw,file.filename=t.raw,force-share=off",
         ["length"]),
    Case("force_share_backing", QCOW2_OVER_QCOW2,
         "--image-opts driver=qcow2,file.filename=t.qcow2,backing.force-share=on", ["read -P 0x5a 0 4k"]),
    Case("force_share_backing_bad", QCOW2_OVER_QCOW2,
         "--image-opts driver=qcow2,file.filename=t.qcow2,backing.force-share=bogus", ["read -P 0x5a 0 4k"]),
    Case("force_share_reopen", RAW, R,
         ["reopen -o force-share=bogus", "reopen -o file.force-share=bogus", "reopen -o force-share=on",
          "write -P 4 0 1"]),
    Case("reopen_child_options", RAW, R,
         ["reopen -o file.filename=x", "reopen -o file.filename=t.raw", "reopen -o file.bogus=1",
          "reopen -o file.aio=native", "reopen -o file.locking=off", "reopen -o file.node-name=foo",
          "reopen -o file.filename=t.raw,file.bogus=2", "reopen -o backing.x=1", "write -P 3 0 1"]),
    Case("reopen_child_options_qcow2", QCOW2_OVER_QCOW2, Q,
         ["reopen -o backing.file.filename=x", "reopen -o backing.bogus=1", "reopen -o file.bogus=1",
          "reopen -o backing.file.bogus=1", "reopen -o backing.file.filename=b.qcow2",
          "reopen -o backing.l2-cache-size=1M", "reopen -o l2-cache-size=1M", "read -P 0x5a 0 4k"]),
    # 7.2 holds the write permission from a read-write open or the first
    # write on; a node it holds may not become read-only (the message names
    # a generated node name with random digits: dropped)
    Case("reopen_read_only_write_permission", RAW, "-r " + R,
         ["reopen -w", "reopen -o read-only=on", "write 0 1", "reopen -w", "write -P 5 0 1",
          "reopen -o read-only=on", "write -P 6 1 1", "reopen -r", "reopen -o read-only=off", "reopen -o read-only=on",
          "info"],
         drop=READ_ONLY_NODE),
    Case("reopen_read_only_opened_rw", RAW, R,
         ["read 0 1", "reopen -o read-only=on", "aio_write -P 6 0 1", "aio_flush", "discard 1 1",
          "reopen -r -o read-only=on", "reopen -r", "reopen -o read-only=on", "write 0 1", "close",
          "open -o driver=raw t.raw", "reopen -o read-only=on", "write -P 7 2 1"], drop=READ_ONLY_NODE),
    Case("reopen_read_only_child", RAW, R,
         ["reopen -o file.read-only=on", "write -P 8 0 1", "reopen -r", "reopen -o file.read-only=on",
          "reopen -o read-only=off", "reopen -o file.read-only=off", "write -P 9 1 1"], drop=READ_ONLY_NODE),
    # 7.2's bdrv_reopen_prepare takes discard and detect-zeroes (the node
    # keeps them for later reopens), checks auto-read-only, and lets the
    # driver stay as it is
    Case("reopen_driver_unchanged", RAW, R,
         ["reopen -o driver=raw", "reopen -o file.driver=file", "reopen -o driver=qcow2",
          "reopen -o file.driver=null-co", "reopen -o driver=raw,file.driver=file", "write -P 3 0 1", "info"]),
    Case("reopen_driver_unchanged_qcow2", QCOW2_DATA, Q,
         ["reopen -o driver=qcow2,file.driver=file", "reopen -o driver=raw", "reopen -o file.driver=raw",
          "read -P 0x5a 0 4k"]),
    Case("reopen_discard", RAW_FULL, R,
         ["reopen -o discard=ignore", "discard 0 64k", "reopen", "discard 64k 64k", "reopen -o discard=unmap",
          "discard 128k 64k", "reopen -o discard=bogus", "discard 192k 64k", "map"]),
    Case("reopen_discard_from_ignore", RAW_FULL, "-d ignore " + R,
         ["discard 0 64k", "reopen -o discard=on", "discard 64k 64k", "reopen -r", "reopen -w", "discard 128k 64k",
          "reopen -o discard=off", "discard 192k 64k", "map"]),
    Case("reopen_detect_zeroes", RAW_FULL, R,
         ["reopen -o detect-zeroes=on", "write -P 0 0 64k", "reopen -r", "reopen -w", "write -P 0 64k 64k",
          "reopen -o detect-zeroes=off", "write -P 0 128k 64k", "reopen -o detect-zeroes=bogus",
          "reopen -o detect-zeroes=unmap", "write -P 0 192k 64k", "reopen -o discard=ignore",
          "reopen -o detect-zeroes=unmap,discard=ignore", "write -P 0 256k 64k", "map"]),
    Case("reopen_detect_zeroes_unmap_not_discarding", RAW_FULL, "-d ignore " + R,
         ["reopen -o detect-zeroes=unmap", "reopen -o detect-zeroes=unmap,discard=unmap", "write -P 0 0 64k",
          "map"]),
    Case("reopen_detect_zeroes_image_opts", RAW_FULL, "--image-opts driver=raw,file.filename=t.raw,detect-zeroes=on",
         ["write -P 0 0 64k", "reopen", "write -P 0 64k 64k", "reopen -o detect-zeroes=off", "write -P 0 128k 64k",
          "map"]),
    Case("reopen_child_discard_detect_zeroes", RAW_FULL, R,
         ["reopen -o file.detect-zeroes=on", "write -P 0 0 64k", "reopen -o file.discard=ignore", "discard 64k 64k",
          "reopen -o file.detect-zeroes=bogus", "map"]),
    Case("reopen_auto_read_only", RAW, R,
         ["reopen -o auto-read-only=on", "reopen -o auto-read-only=off", "reopen -o auto-read-only=x",
          "reopen -o file.auto-read-only=on", "reopen -o auto-read-only=x,driver=qcow2",
          "reopen -o auto-read-only=on,driver=qcow2", "reopen -o discard=x,auto-read-only=x", "write -P 1 0 1"]),
    Case("force_share_reopen_same_value", RAW, "-U -r " + R,
         ["reopen -o force-share=on,file.force-share=on", "reopen -o force-share=off", "reopen -o force-share=yes",
          "reopen -o file.force-share=on", "close", "open -r -o driver=raw,file.force-share=on t.raw",
          "reopen -o force-share=on", "reopen -o file.force-share=on", "reopen -o file.force-share=off",
          "read -P 0 0 1"]),
    Case("force_share_reopen_image_opts", RAW, "-r --image-opts driver=raw,file.filename=t.raw,force-share=yes",
         ["reopen -o force-share=on", "reopen -o force-share=yes", "reopen -o file.force-share=yes", "reopen -w"]),
    # the file driver's 7.2 options that the port keeps without using them
    Case("file_opts_kept", RAW_DATA,
         "--image-opts driver=raw,file.filename=t.raw,file.aio-max-batch=4,file.drop-cache=off,"
         "file.x-check-cache-dropped=on", ["read -P 0x5a 0 4k"]),
    Case("file_opts_bad_number", RAW, "--image-opts driver=raw,file.filename=t.raw,file.aio-max-batch=x",
         ["length"]),
    Case("file_opts_bad_bool", RAW, "--image-opts driver=raw,file.filename=t.raw,file.drop-cache=foo",
         ["length"]),
    Case("file_opts_pr_manager", RAW, "--image-opts driver=raw,file.filename=t.raw,file.pr-manager=pr0",
         ["length"]),
    Case("file_opts_pr_manager_empty", RAW, "--image-opts driver=file,filename=t.raw,pr-manager=", ["length"]),
    Case("file_opts_reopen", RAW_DATA, "-f raw t.raw",
         ["reopen -o file.x-check-cache-dropped=on", "reopen -o file.drop-cache=off", "reopen -o file.drop-cache=x",
          "reopen -o file.aio-max-batch=3", "reopen -o x-check-cache-dropped=on", "read -P 0x5a 0 4k"]),
]
