package guestimage

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ErrMissingTools is wrapped by the error of [CheckBuildTools],
// [CheckBootTools], [Build] and [Boot] when a program they run is not
// installed or the process is not root.
var ErrMissingTools = errors.New("guestimage: missing tools")

// Tool is a program this package runs and the Debian package that provides it.
type Tool struct {
	Command string
	Package string
}

// buildTools are what Build runs on the host. GRUB, the kernel and
// update-initramfs are the guest's own, run in its chroot.
var buildTools = []Tool{
	{"debootstrap", "debootstrap"},
	{"lvm", "lvm2"},
	{"losetup", "mount"},
	{"mount", "mount"},
	{"umount", "mount"},
	{"partx", "util-linux"},
	{"sfdisk", "fdisk"},
	{"mkfs.ext4", "e2fsprogs"},
	{"mkswap", "util-linux"},
	{"chroot", "coreutils"},
	{"cp", "coreutils"},
}

// bootTools are what Boot runs.
var bootTools = []Tool{
	{"qemu-system-x86_64", "qemu-system-x86"},
}

// MissingToolsError lists what is missing. It wraps [ErrMissingTools].
type MissingToolsError struct {
	// Missing are the programs not found on PATH, /usr/sbin or /sbin.
	Missing []Tool
	// NotRoot is set when the process is not root (Build needs loop
	// devices, mounts and chroot).
	NotRoot bool
}

// Packages returns the Debian packages that provide the missing programs,
// sorted and without duplicates.
func (e *MissingToolsError) Packages() []string {
	seen := map[string]bool{}
	var pkgs []string
	for _, t := range e.Missing {
		if !seen[t.Package] {
			seen[t.Package] = true
			pkgs = append(pkgs, t.Package)
		}
	}
	sort.Strings(pkgs)
	return pkgs
}

func (e *MissingToolsError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		var names []string
		for _, t := range e.Missing {
			names = append(names, t.Command)
		}
		parts = append(parts, "not installed: "+strings.Join(names, ", ")+
			" (apt-get install -y "+strings.Join(e.Packages(), " ")+")")
	}
	if e.NotRoot {
		parts = append(parts, "not running as root (building a disk image needs loop devices, mounts and chroot)")
	}
	return "guestimage: " + strings.Join(parts, "; ")
}

// Unwrap returns [ErrMissingTools].
func (e *MissingToolsError) Unwrap() error { return ErrMissingTools }

// CheckBuildTools reports, as a *[MissingToolsError], what [Build] needs and
// does not find: the programs (debootstrap, lvm2's lvm, util-linux's losetup
// and partx, …) and root privileges. It returns nil when Build can run.
func CheckBuildTools() error {
	return check(buildTools, true)
}

// CheckBootTools reports, as a *[MissingToolsError], whether
// qemu-system-x86_64 (Debian package qemu-system-x86) is missing.
func CheckBootTools() error {
	return check(bootTools, false)
}

func check(tools []Tool, needRoot bool) error {
	e := &MissingToolsError{NotRoot: needRoot && os.Geteuid() != 0}
	for _, t := range tools {
		if _, err := lookTool(t.Command); err != nil {
			e.Missing = append(e.Missing, t)
		}
	}
	if len(e.Missing) == 0 && !e.NotRoot {
		return nil
	}
	return e
}

// lookTool finds a program on PATH or in the sbin directories, which a
// non-login root shell may not have on its PATH.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
}
