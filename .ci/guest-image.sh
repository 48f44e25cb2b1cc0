#!/usr/bin/env bash
# Builds the Debian 12 test guests of package guest/guestimage (a VMware
# install's layouts: LVM root with a separate /boot, and a single ext4 root)
# and runs their boot tests in QEMU under TCG: the positive control (the
# image boots from PVSCSI) and the negative control (it does not boot from
# NVMe, its initramfs lacking the driver). Installs the Debian packages it
# needs. Needs root. Images are cached under $DRAAS_GUEST_CACHE (default
# /var/cache/draas-guest) by a hash of their recipe: the first run takes
# minutes (debootstrap), later ones only the boots.
# Run from anywhere: bash .ci/guest-image.sh
set -euo pipefail

cd "$(dirname "$0")/.."

pkgs=()
command -v debootstrap >/dev/null 2>&1 || pkgs+=(debootstrap)
command -v lvm >/dev/null 2>&1 || [ -x /sbin/lvm ] || pkgs+=(lvm2)
command -v qemu-system-x86_64 >/dev/null 2>&1 || pkgs+=(qemu-system-x86)
command -v sfdisk >/dev/null 2>&1 || [ -x /sbin/sfdisk ] || pkgs+=(fdisk)
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /sbin/mkfs.ext4 ] || pkgs+=(e2fsprogs)
if [ ${#pkgs[@]} -gt 0 ]; then
	echo "installing Debian packages: ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi

export DRAAS_GUEST_IMAGES=1 DRAAS_REQUIRE_ORACLES=1
go test -count=1 -timeout 60m -v -run 'TestGuest' ./guest/guestimage/
