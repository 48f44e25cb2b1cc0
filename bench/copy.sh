#!/usr/bin/env bash
# Benchmark: draas's diskcopy against qemu-img convert, raw to raw.
#
# Makes a 2 GiB raw image whose 512 KiB blocks are half random data and half
# written zeros, interleaved pseudo-randomly; builds examples/diskcopy once;
# then runs each of
#   diskcopy file://IMG file://OUT
#   diskcopy --verify file://IMG file://OUT
#   qemu-img convert -O raw -W -m 8 IMG OUT2
# RUNS times (default 3), timing each to a durable output (the command, then
# fsync of its output file, since qemu-img does not fsync on its own),
# reports the median wall time of each, checks that
# every output is byte-identical to the image, and prints the ratio of
# diskcopy's median to qemu-img's.
#
# Usage: bench/copy.sh        (SIZE_MIB=2048 RUNS=3 by default)
. "$(dirname "$0")/lib.sh"
start_qemu_bench
echo "work:    $work"

build_tools examples/diskcopy bench/mkimage
make_bench_image

# qemu-img convert does not fsync its output; diskcopy's sink does on
# commit. Time both to a durable copy: fsync the output (a no-op for
# diskcopy's).
after_run() { sync "$1"; }

# check NAME OUT RUN: every output must be the image, byte for byte.
check() {
	if ! cmp -s "$img" "$2"; then
		echo "$1 run $3: output differs from the image" >&2
		exit 1
	fi
}

ours=$(timeit diskcopy "$work/out.raw" "$work/diskcopy" --quiet "file://$img" "file://$work/out.raw")
ours_verify=$(timeit "diskcopy --verify" "$work/out.raw" "$work/diskcopy" --quiet --verify "file://$img" "file://$work/out.raw")
qemu=$(timeit "qemu-img convert" "$work/out2.raw" qemu-img convert -O raw -W -m 8 "$img" "$work/out2.raw")

mibps() { calc "$size_mib / $1" 0; }
echo
printf '%-34s %8s s  %6s MiB/s\n' "diskcopy" "$ours" "$(mibps "$ours")"
printf '%-34s %8s s  %6s MiB/s\n' "diskcopy --verify" "$ours_verify" "$(mibps "$ours_verify")"
printf '%-34s %8s s  %6s MiB/s\n' "qemu-img convert -O raw -W -m 8" "$qemu" "$(mibps "$qemu")"
echo "ratio diskcopy/qemu-img: $(calc "$ours / $qemu") (median of $runs runs; below 1 means diskcopy is faster)"
