// Package guestimage builds and boots real Linux guests for tests: it is test
// support, not part of the DR workflows.
//
// [Build] makes a raw disk image of a Debian 12 (bookworm) guest as a VMware
// install leaves it: an MBR partition table, GRUB (grub-pc) in the MBR, either
// a separate /boot partition with the root and swap on LVM (the RHEL layout,
// [LayoutLVM]) or a single ext4 root ([LayoutExt4]), open-vm-tools, a static
// IPv4 address on ens192, an /etc/fstab that names /dev/sd* and /dev/mapper/*
// devices, and an initramfs built host-only for VMware hardware (vmw_pvscsi,
// mptspi, ahci and the filesystems; no nvme). Such a guest boots from a
// PVSCSI disk and does not boot from an NVMe disk until something prepares it.
//
// The image is built with debootstrap from the Debian mirror that apt uses on
// the machine ([AptMirror]), as root, with loop devices and lvm2's tools, and
// cached under a directory keyed by a hash of the [Recipe]: a second Build of
// the same recipe costs a stat. Builders of the same recipe, in one process
// or several, serialise on a lock file; a builder killed half-way leaves a
// temporary directory that the next Build of that recipe cleans up (loop
// devices, mounts and LVM activation included).
//
// [Boot] starts an image in QEMU (TCG, BIOS) with its disk on a given
// controller, reads the serial console and tells whether the guest reached
// multi-user or its initramfs gave up waiting for the root filesystem.
//
// [CheckTools] says which programs are missing and which Debian packages
// provide them, so that tests can skip with a useful message.
package guestimage
