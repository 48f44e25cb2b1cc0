#!/usr/bin/env bash
# Benchmark: raw to streamOptimized VMDK with draas's vmdk.Sink against
# qemu-img convert and govmomi's vmdk.StreamOptimizedWriter.
#
# Makes the same 2 GiB raw image as bench/copy.sh (bench/mkimage: 512 KiB
# blocks, half random data, half written zeros, interleaved pseudo-randomly),
# builds bench/cmd/vmdkbench once, then runs each of
#   vmdkbench -impl draas IMG OUT              blockcopy → vmdk.Sink, deflate level 1
#   vmdkbench -impl draas -level 6 IMG OUT     the same at zlib's default level
#   vmdkbench -impl govmomi IMG OUT            govmomi's single-threaded writer
#   qemu-img convert -O vmdk -o subformat=streamOptimized IMG OUT
# RUNS times (default 3), reports the median wall time of each, checks every
# output with `qemu-img compare` against the image (an output that fails is
# reported INVALID, not hidden), and prints the ratios to draas's median.
#
# Usage: bench/vmdk.sh        (SIZE_MIB=2048 RUNS=3 by default)
. "$(dirname "$0")/lib.sh"
start_qemu_bench draas-vmdk-bench

build_tools bench/mkimage bench/cmd/vmdkbench
make_bench_image

after_run() { :; }

# check NAME OUT RUN: after the first run, checks OUT against the image with
# qemu-img compare and records the verdict in $work/NAME.ok.
check() {
	[ "$3" = 1 ] || return 0
	if qemu-img compare -q -f raw -F vmdk "$img" "$2" >/dev/null 2>&1; then
		echo "valid, $(calc "$(stat -c %s "$2") / 1048576" 0) MiB" >"$work/$1.ok"
	else
		echo "INVALID: qemu-img compare fails" >"$work/$1.ok"
	fi
}

# quiet CMD...: CMD without its stderr.
quiet() { "$@" 2>/dev/null; }

ours=$(timeit draas "$work/draas.vmdk" quiet "$work/vmdkbench" -impl draas "$img" "$work/draas.vmdk")
ours6=$(timeit draas6 "$work/draas6.vmdk" quiet "$work/vmdkbench" -impl draas -level 6 "$img" "$work/draas6.vmdk")
gov=$(timeit govmomi "$work/govmomi.vmdk" quiet "$work/vmdkbench" -impl govmomi "$img" "$work/govmomi.vmdk")
qemu=$(timeit qemu "$work/qemu.vmdk" quiet qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$img" "$work/qemu.vmdk")

mibps() { calc "$size_mib / $1" 0; }
row() { printf '%-52s %8s s  %6s MiB/s  %s\n' "$1" "$2" "$(mibps "$2")" "$(cat "$work/$3.ok")"; }
echo
row "draas vmdk.Sink via blockcopy (deflate level 1)" "$ours" draas
row "draas vmdk.Sink via blockcopy (deflate level 6)" "$ours6" draas6
row "govmomi vmdk.StreamOptimizedWriter" "$gov" govmomi
row "qemu-img convert -O vmdk -o subformat=streamOptimized" "$qemu" qemu
echo "speed-up of draas over qemu-img: $(calc "$qemu / $ours")x, over govmomi: $(calc "$gov / $ours")x (median of $runs runs; goal: at least 2x over qemu-img)"
