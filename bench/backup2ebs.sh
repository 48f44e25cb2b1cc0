#!/usr/bin/env bash
# Benchmark: a recovery point in the backup store (S3) copied into an EBS
# snapshot, full and then incremental, on the AWS simulator over loopback
# through the real aws-sdk-go-v2 clients.
#
# Makes a raw image (SIZE_MIB, default 2048) whose 512 KiB blocks are half
# random data and half written zeros (bench/mkimage), then runs
# `drbench backup2ebs` (bench/cmd/drbench): back the image up into a backup
# store in awssim's S3; copy the point into a new snapshot through the EBS
# direct APIs (full); then ROUNDS (default 3) times rewrite CHANGE_PERCENT
# (default 1) % of the image's blocks, back it up again, and copy only the
# changed blocks into a snapshot on the previous one (incremental). Every
# snapshot is compared with the image byte for byte, outside the timings.
# Reports throughput, requests per GiB and the incremental/full ratios of
# the median incremental copy.
#
# Usage: bench/backup2ebs.sh     (SIZE_MIB=2048 CHANGE_PERCENT=1 ROUNDS=3 CONCURRENCY=8)
. "$(dirname "$0")/lib.sh"
start_drbench
make_image "$work/img.raw"

"$work/drbench" backup2ebs -change-percent "$change" -rounds "$rounds" -concurrency "$concurrency" "$work/img.raw"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
