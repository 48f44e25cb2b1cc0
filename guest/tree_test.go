package guest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A tree describes files of a guest root: path → content. A content
// starting with "-> " makes a symbolic link to the rest; a path ending in
// "/" makes a directory. Files get mode 0644 unless modes says otherwise.
type tree map[string]string

func writeTree(t testing.TB, root string, files tree, modes map[string]fs.FileMode) {
	t.Helper()
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		c := files[p]
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(p, "/"):
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(c, "-> "):
			if err := os.Symlink(strings.TrimPrefix(c, "-> "), full); err != nil {
				t.Fatal(err)
			}
		default:
			mode := fs.FileMode(0o644)
			if m, ok := modes[p]; ok {
				mode = m
			}
			if err := os.WriteFile(full, []byte(c), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(full, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// entry is one path of a snapshot.
type entry struct {
	kind    string // "file", "dir", "symlink"
	mode    fs.FileMode
	content string // file content or link target
}

func (e entry) String() string {
	return fmt.Sprintf("%s %v %q", e.kind, e.mode, e.content)
}

// snapshot walks root without following links and records every path's
// type, mode and content or target.
func snapshot(t testing.TB, root string) map[string]entry {
	t.Helper()
	snap := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{mode: fi.Mode()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.kind = "symlink"
			e.mode = 0
			e.content, err = os.Readlink(p)
		case fi.IsDir():
			e.kind = "dir"
		default:
			e.kind = "file"
			var b []byte
			b, err = os.ReadFile(p)
			e.content = string(b)
		}
		snap[filepath.ToSlash(rel)] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// diffSnapshots returns the differences between two snapshots, one line
// each, sorted.
func diffSnapshots(a, b map[string]entry) []string {
	var d []string
	for p, ea := range a {
		eb, ok := b[p]
		switch {
		case !ok:
			d = append(d, "- "+p)
		case ea != eb:
			d = append(d, fmt.Sprintf("~ %s: %v → %v", p, ea, eb))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			d = append(d, "+ "+p)
		}
	}
	slices.Sort(d)
	return d
}

func assertSameTree(t *testing.T, what string, want, got map[string]entry) {
	t.Helper()
	if d := diffSnapshots(want, got); len(d) > 0 {
		t.Errorf("%s: tree differs:\n%s", what, strings.Join(d, "\n"))
	}
}

// Fixtures: guest roots that look like real installations.

const rhelFstab = `
#
# /etc/fstab
# Created by anaconda on Tue Mar  5 10:12:44 2024
#
# Accessible filesystems, by reference, are maintained under '/dev/disk/'.
# See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info.
#
/dev/mapper/rhel-root   /                       xfs     defaults        0 0
/dev/sda1               /boot                   xfs     defaults        0 0
/dev/sdb1	/data	xfs	defaults,noatime	0 0
/dev/mapper/rhel-swap   none                    swap    defaults        0 0
tmpfs                   /tmp                    tmpfs   defaults        0 0
`

const rhelIfcfg = `TYPE=Ethernet
PROXY_METHOD=none
BROWSER_ONLY=no
BOOTPROTO=none
DEFROUTE=yes
IPV4_FAILURE_FATAL=no
NAME=ens192
UUID=2b5e6a7c-1d3f-4e8a-9b0c-7d6e5f4a3b21
DEVICE=ens192
ONBOOT=yes
IPADDR=192.168.10.21
PREFIX=24
GATEWAY=192.168.10.1
DNS1=192.168.10.2
HWADDR=00:50:56:8a:12:34
`

func rhelTree(version string) tree {
	kver := "5.14.0-427.13.1.el9_4.x86_64"
	if strings.HasPrefix(version, "8") {
		kver = "4.18.0-513.5.1.el8_9.x86_64"
	}
	return tree{
		"etc/os-release": "-> ../usr/lib/os-release",
		"usr/lib/os-release": `NAME="Red Hat Enterprise Linux"
VERSION="` + version + ` (Plow)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="` + version + `"
PRETTY_NAME="Red Hat Enterprise Linux ` + version + ` (Plow)"
`,
		"etc/fstab": rhelFstab,
		"etc/sysconfig/network-scripts/ifcfg-ens192":                  rhelIfcfg,
		"etc/sysconfig/network-scripts/ifcfg-lo":                      "DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\nONBOOT=yes\n",
		"etc/sysconfig/network":                                       "# Created by anaconda\nNETWORKING=yes\nGATEWAY=192.168.10.1\n",
		"etc/NetworkManager/NetworkManager.conf":                      "[main]\n#plugins=keyfile,ifcfg-rh\n",
		"etc/NetworkManager/system-connections/":                      "",
		"etc/systemd/system/multi-user.target.wants/vmtoolsd.service": "-> /usr/lib/systemd/system/vmtoolsd.service",
		"etc/systemd/system/multi-user.target.wants/sshd.service":     "-> /usr/lib/systemd/system/sshd.service",
		"etc/systemd/system/default.target":                           "-> /usr/lib/systemd/system/multi-user.target",
		"usr/lib/systemd/system/vmtoolsd.service":                     "[Unit]\nDescription=Service for virtual machines hosted on VMware\n",
		"etc/init.d":                               "-> rc.d/init.d",
		"etc/rc.d/init.d/vmware-tools":             "#!/bin/sh\n# legacy VMware Tools\n",
		"etc/rc.d/rc3.d/S03vmware-tools":           "-> ../init.d/vmware-tools",
		"etc/rc.d/rc0.d/K08vmware-tools":           "-> ../init.d/vmware-tools",
		"etc/rc3.d":                                "-> rc.d/rc3.d",
		"etc/rc0.d":                                "-> rc.d/rc0.d",
		"etc/udev/rules.d/70-persistent-net.rules": "SUBSYSTEM==\"net\", ACTION==\"add\", ATTR{address}==\"00:50:56:8a:12:34\", NAME=\"ens192\"\n",
		"etc/dracut.conf":                          "# PUT YOUR CONFIG IN separate files\n# in /etc/dracut.conf.d named \"<name>.conf\"\n",
		"etc/selinux/config":                       "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
		"usr/local/sbin/":                          "",
		"var/lib/":                                 "",
		"lib":                                      "-> usr/lib",
		"usr/lib/modules/" + kver + "/modules.dep": "kernel/drivers/nvme/host/nvme.ko.xz: kernel/drivers/nvme/host/nvme-core.ko.xz\n" +
			"kernel/drivers/nvme/host/nvme-core.ko.xz:\nkernel/drivers/net/ethernet/amazon/ena/ena.ko.xz:\nkernel/drivers/scsi/vmw_pvscsi.ko.xz:\n",
		"usr/lib/modules/" + kver + "/modules.builtin": "kernel/drivers/block/loop.ko\n",
		"boot/initramfs-" + kver + ".img":              "not really an initramfs\n",
	}
}

const ubuntuNetplan = `# This is the network config written by 'subiquity'
network:
  ethernets:
    ens192:
      addresses:
      - 10.20.0.15/24
      nameservers:
        addresses:
        - 10.20.0.2
        search: [corp.example.com]
      routes:
      - to: default
        via: 10.20.0.1
  version: 2
`

const ubuntuFstab = `# /etc/fstab: static file system information.
#
# Use 'blkid' to print the universally unique identifier for a
# device; this may be used with UUID= as a more robust way to name devices
# that works even if disks are added and removed. See fstab(5).
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
/dev/disk/by-id/dm-uuid-LVM-abc / ext4 defaults 0 1
# /boot was on /dev/sda2 during curtin installation
/dev/disk/by-uuid/4f6f7c3e-2b8f-4a2c-9a57-1b2c3d4e5f60 /boot ext4 defaults 0 1
UUID=0e8d5a4c-7b6f-4d3e-8c2b-1a0f9e8d7c6b /home ext4 defaults 0 2
/dev/sdb1 /data ext4 defaults 0 2
/swap.img	none	swap	sw	0	0
`

const initramfsToolsModules = `# List of modules that you want to include in your initramfs.
# They will be loaded at boot time in the order below.
#
# Syntax:  module_name [args ...]
#
# You must run update-initramfs(8) to effect this change.
#
# Examples:
#
# raid1
# sd_mod
`

func ubuntuTree() tree {
	kver := "5.15.0-91-generic"
	return tree{
		"etc/os-release": "-> ../usr/lib/os-release",
		"usr/lib/os-release": `PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=jammy
`,
		"etc/fstab":                            ubuntuFstab,
		"etc/netplan/00-installer-config.yaml": ubuntuNetplan,
		"etc/initramfs-tools/modules":          initramfsToolsModules,
		"etc/systemd/system/multi-user.target.wants/open-vm-tools.service": "-> /lib/systemd/system/open-vm-tools.service",
		"etc/systemd/system/vmtoolsd.service":                              "-> /lib/systemd/system/open-vm-tools.service",
		"etc/systemd/system/open-vm-tools.service.requires/vgauth.service": "-> /lib/systemd/system/vgauth.service",
		"etc/systemd/system/multi-user.target.wants/ssh.service":           "-> /lib/systemd/system/ssh.service",
		"usr/local/sbin/": "",
		"var/lib/draas/":  "", // exists already: Revert must keep it
		"lib":             "-> usr/lib",
		"usr/lib/modules/" + kver + "/modules.dep": "kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko\n" +
			"kernel/drivers/nvme/host/nvme-core.ko:\nkernel/drivers/net/ethernet/amazon/ena/ena.ko:\n",
		"boot/initrd.img-" + kver: "not really an initramfs\n",
	}
}

// debianInterfacesHead is the start of the /etc/network/interfaces a
// Debian installer writes, up to the primary interface's stanza.
const debianInterfacesHead = `# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug ens192
`

const debianInterfaces = debianInterfacesHead + `iface ens192 inet static
	address 10.30.0.7/24
	gateway 10.30.0.1
	# dns-* options are implemented by the resolvconf package, if installed
	dns-nameservers 10.30.0.2
	dns-search corp.example.com
iface ens192 inet6 auto
`

func debianTree() tree {
	return tree{
		"etc/os-release": "-> ../usr/lib/os-release",
		"usr/lib/os-release": `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
`,
		"etc/fstab":                   "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\nUUID=9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d /               ext4    errors=remount-ro 0       1\n/dev/sdb1 /srv ext4 defaults 0 2\n",
		"etc/network/interfaces":      debianInterfaces,
		"etc/network/interfaces.d/":   "",
		"etc/initramfs-tools/modules": initramfsToolsModules,
		"etc/init.d/open-vm-tools":    "#!/bin/sh\n",
		"etc/rc2.d/S01open-vm-tools":  "-> ../init.d/open-vm-tools",
		"etc/rcS.d/S01udev":           "-> ../init.d/udev",
		"etc/systemd/system/multi-user.target.wants/open-vm-tools.service": "-> /lib/systemd/system/open-vm-tools.service",
		"usr/local/sbin/": "",
	}
}

func suseTree() tree {
	kver := "5.14.21-150500.55.39-default"
	return tree{
		"etc/os-release": "-> ../usr/lib/os-release",
		"usr/lib/os-release": `NAME="SLES"
VERSION="15-SP5"
VERSION_ID="15.5"
PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"
ID="sles"
ID_LIKE="suse"
`,
		"etc/fstab":                                                   "UUID=5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d  /      btrfs  defaults  0  0\nUUID=5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d  /home  btrfs  subvol=/@/home  0  0\n/dev/sdb1  /data  xfs  defaults  0  0\n",
		"etc/sysconfig/network/ifcfg-eth0":                            "BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='10.40.0.9/24'\nLLADDR='00:50:56:aa:bb:cc'\nNAME='VMXNET3 Ethernet Controller'\n",
		"etc/sysconfig/network/ifcfg-lo":                              "IPADDR=127.0.0.1\nNETMASK=255.0.0.0\nNETWORK=127.0.0.0\nBROADCAST=127.255.255.255\nSTARTMODE=onboot\nUSERCONTROL=no\nFIREWALL=no\n",
		"etc/sysconfig/network/routes":                                "default 10.40.0.1 - -\n10.99.0.0/16 10.40.0.254 - eth0\n",
		"etc/sysconfig/network/config":                                "NETCONFIG_MODULES_ORDER=\"dns-resolver dns-bind ntp-runtime\"\n",
		"etc/dracut.conf.d/":                                          "",
		"etc/systemd/system/multi-user.target.wants/vmtoolsd.service": "-> /usr/lib/systemd/system/vmtoolsd.service",
		"usr/local/sbin/":                                             "",
		"lib/modules/" + kver + "/modules.dep": "kernel/drivers/nvme/host/nvme.ko.zst: kernel/drivers/nvme/host/nvme-core.ko.zst\n" +
			"kernel/drivers/nvme/host/nvme-core.ko.zst:\n",
		"lib/modules/" + kver + "/modules.builtin": "kernel/drivers/net/ethernet/amazon/ena/ena.ko\n",
	}
}
