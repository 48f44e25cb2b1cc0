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
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
size_mib=${SIZE_MIB:-2048}
runs=${RUNS:-3}

if ! command -v qemu-img >/dev/null 2>&1; then
	echo "bench/copy.sh needs qemu-img: apt-get install -y qemu-utils" >&2
	exit 1
fi


work=$(mktemp -d "${TMPDIR:-/tmp}/draas-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

machine_info "$(qemu-img --version | head -n 1)"
echo "work:    $work"

go build -o "$work/diskcopy" ./examples/diskcopy
go build -o "$work/mkimage" ./bench/mkimage
img=$work/img.raw
t0=$(date +%s.%N)
"$work/mkimage" -size-mib "$size_mib" -block-kib 512 -data-percent 50 -o "$img"
echo "image:   $size_mib MiB, half random / half zero 512 KiB blocks, made in $(calc "$(date +%s.%N) - $t0") s"

# timeit NAME OUT CMD...: runs CMD $runs times after removing OUT, checks OUT
# against the image each time, and prints the median wall time in seconds.
timeit() {
	local name=$1 out=$2
	shift 2
	local times=()
	for i in $(seq "$runs"); do
		rm -f "$out" "$out.draas-partial"
		sync
		local start end
		start=$(date +%s.%N)
		"$@" >/dev/null
		# qemu-img convert does not fsync its output; diskcopy's sink does
		# on commit. Time both to a durable copy: fsync the output (a no-op
		# for diskcopy's).
		sync "$out"
		end=$(date +%s.%N)
		if ! cmp -s "$img" "$out"; then
			echo "$name run $i: output differs from the image" >&2
			exit 1
		fi
		times+=("$(calc "$end - $start" 3)")
	done
	local sorted
	sorted=$(printf '%s\n' "${times[@]}" | sort -g)
	echo "$name: runs $(echo "$sorted" | tr '\n' ' ')" >&2
	echo "$sorted" | sed -n "$(((runs + 1) / 2))p"
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
