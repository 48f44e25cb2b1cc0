#!/bin/sh
# Runs inside the guest's root filesystem (chroot) while guestimage builds a
# disk image, with /dev, /proc and /sys bound in. It makes the guest look as a
# VMware install of Debian leaves it. Everything it needs comes from the
# environment that guestimage sets:
#
#   DRAAS_LAYOUT    lvm (separate /boot, root and swap on LVM) or ext4 (single root)
#   DRAAS_HOSTNAME  the guest's host name
#   DRAAS_IFACE     the NIC as vSphere names it (ens192)
#   DRAAS_ADDRESS   static IPv4 address with prefix (192.168.50.10/24)
#   DRAAS_GATEWAY   default gateway
#   DRAAS_ROOT_DEV  the root device as the guest names it (/dev/mapper/VG-root, /dev/sda1)
#   DRAAS_BOOT_DEV  the /boot device as the guest names it, empty for a single root
#   DRAAS_SWAP_DEV  the swap device as the guest names it, or empty
#   DRAAS_MODULES   the initramfs modules (MODULES=list), separated by spaces
#   DRAAS_DISK      the build host's block device of the whole disk, for grub-install
#   DRAAS_READY     the line the guest prints on its serial console at multi-user
#
# This file is part of the recipe: changing it changes the image's cache key.
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin

echo "$DRAAS_HOSTNAME" >/etc/hostname
cat >/etc/hosts <<HOSTS
127.0.0.1	localhost
127.0.1.1	$DRAAS_HOSTNAME
::1		localhost ip6-localhost ip6-loopback
HOSTS

# /etc/fstab as the installer writes it on vSphere, with device names rather
# than UUIDs (what the preparation must rewrite for NVMe).
{
	echo "# <file system> <mount point> <type> <options> <dump> <pass>"
	echo "$DRAAS_ROOT_DEV	/	ext4	errors=remount-ro	0	1"
	if [ -n "$DRAAS_BOOT_DEV" ]; then
		echo "$DRAAS_BOOT_DEV	/boot	ext4	defaults	0	2"
	fi
	if [ -n "$DRAAS_SWAP_DEV" ]; then
		echo "$DRAAS_SWAP_DEV	none	swap	sw	0	0"
	fi
} >/etc/fstab

# Static IPv4 on the VMXNET3 NIC, ifupdown as the Debian installer sets it up.
addr=${DRAAS_ADDRESS%/*}
cat >/etc/network/interfaces <<IFACES
# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug $DRAAS_IFACE
iface $DRAAS_IFACE inet static
	address $DRAAS_ADDRESS
	gateway $DRAAS_GATEWAY
IFACES
echo "nameserver $DRAAS_GATEWAY" >/etc/resolv.conf

# A host-only initramfs for VMware hardware, as RHEL's dracut builds one:
# the disk controllers and filesystems of this VM, and no NVMe.
sed -i 's/^MODULES=.*/MODULES=list/' /etc/initramfs-tools/initramfs.conf
grep -q '^MODULES=list$' /etc/initramfs-tools/initramfs.conf
for m in $DRAAS_MODULES; do
	echo "$m" >>/etc/initramfs-tools/modules
done
# No resume device: the initramfs would wait for a swap it cannot find.
echo "RESUME=none" >/etc/initramfs-tools/conf.d/resume

# GRUB in the MBR, its menu and the kernel's messages on the serial console
# (a test needs to read them, as EC2's console output shows them).
sed -i \
	-e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' \
	-e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=""/' \
	-e 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"/' \
	/etc/default/grub
cat >>/etc/default/grub <<GRUB
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB
echo "grub-pc grub-pc/install_devices multiselect /dev/sda" | debconf-set-selections

# The line a test waits for: printed once multi-user.target is reached.
cat >/usr/local/sbin/draas-guest-ready <<READY
#!/bin/sh
# draas test guest: tell the serial console that multi-user.target is reached.
root=\$(findmnt -n -o SOURCE /)
addrs=\$(ip -4 -o addr show scope global | awk '{print \$2 "=" \$4}' | tr '\n' ' ')
echo "$DRAAS_READY root=\$root addrs=\$addrs" >/dev/ttyS0
READY
chmod 0755 /usr/local/sbin/draas-guest-ready
cat >/etc/systemd/system/draas-guest-ready.service <<UNIT
[Unit]
Description=draas test guest: report reaching multi-user on the serial console
DefaultDependencies=no
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/draas-guest-ready

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable draas-guest-ready.service

grub-install --target=i386-pc "$DRAAS_DISK"
# grub-mkconfig would name the build host's loop device as root=: name the
# guest's own device instead, as the installer's grub-mkconfig does on vSphere.
cat >/etc/default/grub.d/zz-draas-build.cfg <<OVERRIDE
GRUB_DEVICE=$DRAAS_ROOT_DEV
GRUB_DISABLE_LINUX_UUID=true
OVERRIDE
update-grub
rm -f /etc/default/grub.d/zz-draas-build.cfg
grep -q "root=$DRAAS_ROOT_DEV " /boot/grub/grub.cfg

update-initramfs -u -k all
for initrd in /boot/initrd.img-*; do
	list=$(lsinitramfs "$initrd")
	for m in vmw_pvscsi mptspi ahci ext4; do
		echo "$list" | grep -q "/$m\.ko" || { echo "$initrd lacks $m" >&2; exit 1; }
	done
	if echo "$list" | grep -q '/nvme\.ko'; then
		echo "$initrd holds nvme: the image must not boot from NVMe as built" >&2
		exit 1
	fi
done

apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
