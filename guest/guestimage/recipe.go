package guestimage

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Layout is the partitioning of an image's disk.
type Layout string

const (
	// LayoutLVM is the RHEL layout: partition 1 an ext4 /boot, partition 2
	// an LVM physical volume holding the volume group with the logical
	// volumes "root" (ext4) and "swap". The volume group's name is unique to
	// the recipe ([Image.VolumeGroup]).
	LayoutLVM Layout = "lvm"
	// LayoutExt4 is a single ext4 root filesystem in partition 1, /boot
	// included.
	LayoutExt4 Layout = "ext4"
)

// builderVersion changes when the build steps in Go change the image; it is
// part of every recipe's hash.
const builderVersion = 1

// configureScript runs in the guest's chroot and makes it a VMware guest.
//
//go:embed configure.sh
var configureScript string

// Recipe says what guest to build. Its zero value is not useful: start from
// [DebianVMware] and change fields. Every field is part of the cache key.
type Recipe struct {
	// Suite is the Debian release, "bookworm".
	Suite string `json:"suite"`
	// Layout is the disk layout.
	Layout Layout `json:"layout"`
	// DiskMiB is the size of the raw disk image in MiB. The file is sparse.
	DiskMiB int64 `json:"disk_mib"`
	// BootMiB is the size of the /boot partition of [LayoutLVM].
	BootMiB int64 `json:"boot_mib"`
	// SwapMiB is the size of the swap logical volume of [LayoutLVM].
	SwapMiB int64 `json:"swap_mib"`
	// Packages are installed by debootstrap (--include) on top of minbase.
	Packages []string `json:"packages"`
	// InitramfsModules are the only modules of the initramfs
	// (initramfs-tools MODULES=list), besides what its hooks add.
	InitramfsModules []string `json:"initramfs_modules"`
	// Hostname is the guest's host name.
	Hostname string `json:"hostname"`
	// Interface is the NIC that gets the static address, as vSphere names
	// a VMXNET3 NIC in PCI slot 192: "ens192".
	Interface string `json:"interface"`
	// Address is the static IPv4 address with its prefix length.
	Address string `json:"address"`
	// Gateway is the IPv4 default gateway (and name server).
	Gateway string `json:"gateway"`
}

// ReadyMarker starts the line that a guest built by this package prints on
// its serial console (ttyS0) once systemd has reached multi-user.target. The
// line goes on with "root=" (the root filesystem's source) and "addrs=" (its
// global IPv4 addresses as NAME=ADDRESS/PREFIX).
const ReadyMarker = "DRAAS-GUEST-READY"

// DebianVMware returns the recipe of a Debian 12 guest as a VMware install
// leaves it, with the given layout.
func DebianVMware(layout Layout) Recipe {
	r := Recipe{
		Suite:   "bookworm",
		Layout:  layout,
		DiskMiB: 3072,
		Packages: []string{
			"linux-image-amd64", "grub-pc", "initramfs-tools", "zstd",
			"systemd-sysv", "udev", "kmod", "open-vm-tools",
			"ifupdown", "iproute2", "netbase", "procps", "busybox",
			// In both layouts, so that one debootstrap serves both.
			"lvm2",
		},
		InitramfsModules: []string{
			"vmw_pvscsi", "mptspi", "ahci", "sd_mod",
			"ext4", "crc32c_generic",
		},
		Hostname:  "draas-debian12",
		Interface: "ens192",
		Address:   "192.168.50.10/24",
		Gateway:   "192.168.50.1",
	}
	if layout == LayoutLVM {
		r.BootMiB = 512
		r.SwapMiB = 128
		r.InitramfsModules = append(r.InitramfsModules, "dm_mod")
		r.Hostname = "draas-debian12-lvm"
	}
	return r
}

// Validate reports a recipe this package cannot build.
func (r Recipe) Validate() error {
	switch {
	case r.Suite == "":
		return fmt.Errorf("guestimage: recipe has no suite")
	case r.Layout != LayoutLVM && r.Layout != LayoutExt4:
		return fmt.Errorf("guestimage: unknown layout %q (want %q or %q)", r.Layout, LayoutLVM, LayoutExt4)
	case r.Layout == LayoutLVM && (r.BootMiB <= 0 || r.SwapMiB < 0 || r.DiskMiB < r.BootMiB+r.SwapMiB+1024):
		return fmt.Errorf("guestimage: disk of %d MiB too small for /boot %d MiB, swap %d MiB and a root of 1 GiB", r.DiskMiB, r.BootMiB, r.SwapMiB)
	case r.DiskMiB < 1024:
		return fmt.Errorf("guestimage: disk of %d MiB too small (at least 1024)", r.DiskMiB)
	case r.Hostname == "" || r.Interface == "" || r.Address == "" || r.Gateway == "":
		return fmt.Errorf("guestimage: recipe needs a hostname, an interface, an address and a gateway")
	}
	return nil
}

// Hash is the recipe's cache key: a hex SHA-256 of the recipe, the script
// that configures the guest and the version of the build steps.
func (r Recipe) Hash() string {
	return hashOf(struct {
		Version int    `json:"version"`
		Recipe  Recipe `json:"recipe"`
		Script  string `json:"script"`
	}{builderVersion, r, configureScript})
}

// baseHash keys the debootstrapped tree, which depends only on the suite and
// the packages.
func (r Recipe) baseHash() string {
	return hashOf(struct {
		Version  int      `json:"version"`
		Suite    string   `json:"suite"`
		Packages []string `json:"packages"`
	}{builderVersion, r.Suite, r.Packages})
}

// volumeGroup is the name of the LVM volume group: unique to the recipe, so
// that no two recipes' images (nor anything on the build host) share one.
func (r Recipe) volumeGroup() string {
	return "dg" + r.Hash()[:10]
}

func hashOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain strings, numbers and slices: cannot happen.
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
