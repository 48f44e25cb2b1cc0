#!/usr/bin/env bash
# Benchmark: replicate.ReplicateAll on a plan of VMS (default 4) VMs of one
# SIZE_MIB (default 2048) disk each, full and then incremental, on the AWS
# simulator over loopback through the real aws-sdk-go-v2 clients.
#
# Makes one raw image per VM whose 512 KiB blocks are half random data and
# half written zeros (bench/mkimage, a different seed each), then runs
# `drbench replicate` (bench/cmd/drbench): back every VM up into a backup
# store in awssim's S3 and replicate the plan into EBS snapshots (full DR
# copies, verify pass on, as replicate always does); then ROUNDS (default 3)
# times rewrite CHANGE_PERCENT (default 1) % of every image's blocks, back
# up again and replicate again (incremental DR copies on the previous ones,
# which are then deleted). Every DR copy is compared with its image byte for
# byte, outside the timings. Reports the full and incremental times and the
# ratio of the median incremental round to the full one (goal: at most
# 5 %), and the ratio of blocks sent (goal: at most 2 %).
#
# The simulator keeps all data in memory: with the defaults, about 4 GiB in
# S3 and 4 GiB in EBS snapshots.
#
# Usage: bench/replicate.sh     (VMS=4 SIZE_MIB=2048 CHANGE_PERCENT=1 ROUNDS=3 CONCURRENCY=8)
. "$(dirname "$0")/lib.sh"
vms=${VMS:-4}
start_drbench
imgs=()
for i in $(seq "$vms"); do
	make_image "$work/vm$i.raw" -seed "$i"
	imgs+=("$work/vm$i.raw")
done

"$work/drbench" replicate -change-percent "$change" -rounds "$rounds" -concurrency "$concurrency" "${imgs[@]}"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
