// Package guest prepares the root filesystem of a VMware guest to boot as an
// EC2 instance ("driver injection"), and undoes that preparation for
// failback.
//
// A [Preparer] works offline, on a root filesystem mounted at a directory
// (for example a restored EBS volume attached to a proxy instance). It makes
// the guest's next initramfs contain the NVMe and ENA drivers, rewrites
// /etc/fstab so that it no longer names VMware-era devices, switches static
// network configuration to DHCP on the cloud NIC, and disables VMware Tools'
// boot hooks. Every change is recorded in a [Changes] value, a JSON-serialisable
// record from which [Preparer.Revert] restores the previous state exactly.
// What cannot be done offline (rebuilding the initramfs with the guest's own
// dracut or update-initramfs) becomes a first-boot action: a systemd unit that
// runs once and is recorded like every other change.
//
// [Linux] is the implementation for RHEL-family, Debian-family and SUSE-family
// guests. [Windows] reports [ErrUnsupported]. docs/guest-preparation.md says
// what each step does and why, and what a Windows guest would need.
package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"strconv"
	"unicode/utf8"

	"github.com/opendraas/draas"
)

// Preparer prepares a guest's root filesystem for EC2 and reverts that
// preparation.
//
// root is the host path of the guest's root filesystem, mounted read-write,
// with any separate /boot, /usr or /var filesystems of the guest mounted
// beneath it. The guest must not be running. Implementations never follow a
// symbolic link out of root: a link with an absolute target, or one that
// climbs above root, is an error wrapping [ErrSymlinkEscape], and nothing
// outside root is read or written. Methods must not be called concurrently
// on the same root; calls on different roots may run in parallel.
type Preparer interface {
	// Prepare changes the guest under root so that it boots on EC2 and
	// returns the record of every change it made. It is idempotent: on a
	// root it already prepared, it changes nothing and returns a record with
	// no Files, so callers must keep the record of the first call. If
	// Prepare fails it reverts what it had changed and returns a nil record;
	// if that revert fails too, it returns the partial record with the
	// error, so that the caller can retry [Preparer.Revert] with it.
	Prepare(ctx context.Context, root string, opts Options) (*Changes, error)
	// Revert restores the state that a Prepare recorded in c: file
	// contents, modes, owners, SELinux labels, symbolic links and absent
	// files, and removes what the first-boot actions wrote. It is
	// idempotent: an entry already in its previous state is left alone. An
	// entry that was changed after Prepare (it is neither as Prepare left
	// it nor as it was before) is a conflict: Revert then changes nothing
	// and returns an error wrapping [draas.ErrConflict] naming every such
	// file.
	Revert(ctx context.Context, root string, c *Changes) error
}

// Options tunes a [Preparer]. The zero value is useful: it adds nvme,
// nvme_core and ena to the initramfs and marks non-root data mounts nofail
// instead of guessing their UUIDs.
type Options struct {
	// DeviceUUIDs maps device names as /etc/fstab writes them (for example
	// "/dev/sda1") to the UUID of the filesystem on that device, as blkid
	// reports it. Entries of /etc/fstab that name such a device (/dev/sd*,
	// /dev/hd*, /dev/vd*, /dev/xvd*, /dev/disk/by-path/*, /dev/disk/by-id/*)
	// are rewritten to UUID=…; a value that already carries a tag
	// ("PARTUUID=…", "LABEL=…") is written as it is. A device missing from
	// the map is left as it is (with nofail added to non-root mounts) and,
	// for the root and /boot mounts, reported in [Changes.Warnings].
	DeviceUUIDs map[string]string
	// Modules are the kernel modules every initramfs must contain. Empty means
	// nvme, nvme_core and ena, what Nitro instances need; add xen-blkfront
	// and xen-netfront for Xen-based instance types. Every module must
	// exist in the guest's kernels: dracut refuses to build an image that
	// lacks one.
	Modules []string
}

// defaultModules are the modules a Nitro instance needs: NVMe for EBS
// volumes, ENA for the network.
var defaultModules = []string{"nvme", "nvme_core", "ena"}

func (o Options) modules() []string {
	if len(o.Modules) == 0 {
		return defaultModules
	}
	return o.Modules
}

// Changes records everything a [Preparer] changed in a guest, so that
// [Preparer.Revert] can undo it. It is plain data: keep it as JSON (in the
// failover journal, next to the DR copy) until failback.
type Changes struct {
	// Format is the version of this record's layout; it is 1.
	Format int `json:"format"`
	// Distro is the distribution Prepare found.
	Distro Distro `json:"distro"`
	// Files lists the changes to files, directories and symbolic links in
	// the order they were made; Revert undoes them in reverse order.
	Files []FileChange `json:"files,omitempty"`
	// FirstBoot lists the actions installed to run inside the guest at its
	// first boot on EC2, for what cannot be done offline.
	FirstBoot []FirstBootAction `json:"firstBoot,omitempty"`
	// Warnings are what Prepare noticed but could not fix, each naming the
	// file concerned and the fix, for example a root mount given by device
	// name with no UUID in [Options.DeviceUUIDs].
	Warnings []string `json:"warnings,omitempty"`
}

// changesFormat is the current [Changes.Format].
const changesFormat = 1

// Empty reports whether the record holds no change, as a second Prepare of
// the same root returns.
func (c *Changes) Empty() bool {
	return c == nil || (len(c.Files) == 0 && len(c.FirstBoot) == 0)
}

// Distro identifies a Linux distribution, as /etc/os-release describes it.
type Distro struct {
	// ID is os-release's ID, e.g. "rhel", "ubuntu", "sles".
	ID string `json:"id"`
	// VersionID is os-release's VERSION_ID, e.g. "9.4".
	VersionID string `json:"versionId,omitempty"`
	// Name is os-release's PRETTY_NAME (or NAME).
	Name string `json:"name,omitempty"`
	// Family is the family whose tools and file layout the guest uses.
	Family Family `json:"family"`
	// Initramfs is the tool that builds the guest's initramfs: "dracut" or
	// "initramfs-tools"; empty if Prepare found neither's configuration.
	Initramfs string `json:"initramfs,omitempty"`
}

// Family is a family of Linux distributions that share their initramfs
// builder and network configuration layout.
type Family string

// The supported families.
const (
	// FamilyRHEL: RHEL, CentOS, Rocky, AlmaLinux, Oracle Linux, Fedora,
	// Amazon Linux. dracut; ifcfg files or NetworkManager keyfiles.
	FamilyRHEL Family = "rhel"
	// FamilyDebian: Debian and Ubuntu. initramfs-tools; netplan or
	// /etc/network/interfaces.
	FamilyDebian Family = "debian"
	// FamilySUSE: SLES and openSUSE. dracut; wicked ifcfg files or
	// NetworkManager keyfiles.
	FamilySUSE Family = "suse"
)

// FileChange is one change to one path of the guest.
type FileChange struct {
	// Path is slash-separated and relative to the guest's root, e.g.
	// "etc/fstab". It never contains a symbolic link: links on the way
	// were resolved inside the root before the change was made.
	Path string `json:"path"`
	// Why says what the change is for, for people reading the record.
	Why string `json:"why"`
	// Before is the state before Prepare; nil means the path did not exist.
	Before *FileState `json:"before"`
	// After is the state Prepare left; nil means Prepare removed the path.
	After *FileState `json:"after"`
}

// FileType is the type of a [FileState].
type FileType string

// The file types a [FileState] can record.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
)

// FileState is the state of one path: a regular file with its content, a
// directory, or a symbolic link with its target.
//
// In JSON, content that is valid UTF-8 is written as "text", other content
// as "base64".
type FileState struct {
	Type FileType `json:"type"`
	// Mode holds the permission bits (with setuid, setgid and sticky); it
	// is 0 for a symbolic link.
	Mode fs.FileMode `json:"mode"`
	// UID and GID own the path; Revert restores them when it runs as root.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// Content is a regular file's content.
	Content []byte `json:"-"`
	// Target is a symbolic link's target, as written in the link.
	Target string `json:"target,omitempty"`
	// SELinux is the path's security.selinux label, if it had one.
	SELinux string `json:"selinux,omitempty"`
}

type fileStateJSON struct {
	Type    FileType `json:"type"`
	Mode    string   `json:"mode,omitempty"`
	UID     int      `json:"uid"`
	GID     int      `json:"gid"`
	Text    *string  `json:"text,omitempty"`
	Base64  []byte   `json:"base64,omitempty"`
	Target  string   `json:"target,omitempty"`
	SELinux string   `json:"selinux,omitempty"`
}

// MarshalJSON writes Mode in octal as chmod takes it ("0644") and Content
// as "text" when it is valid UTF-8, otherwise as "base64", so that the
// record stays readable and exact.
func (s FileState) MarshalJSON() ([]byte, error) {
	j := fileStateJSON{Type: s.Type, UID: s.UID, GID: s.GID, Target: s.Target, SELinux: s.SELinux}
	if s.Type != TypeSymlink {
		j.Mode = fmt.Sprintf("%04o", unixMode(s.Mode))
	}
	if s.Type == TypeFile {
		if utf8.Valid(s.Content) {
			t := string(s.Content)
			j.Text = &t
		} else {
			j.Base64 = s.Content
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *FileState) UnmarshalJSON(b []byte) error {
	var j fileStateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = FileState{Type: j.Type, UID: j.UID, GID: j.GID, Target: j.Target, SELinux: j.SELinux}
	if j.Mode != "" {
		m, err := strconv.ParseUint(j.Mode, 8, 32)
		if err != nil || m > 0o7777 {
			return draas.Invalidf("file mode %q: want octal permission bits such as \"0644\"", j.Mode)
		}
		s.Mode = fileMode(uint32(m))
	}
	switch {
	case j.Text != nil:
		s.Content = []byte(*j.Text)
	case j.Base64 != nil:
		s.Content = j.Base64
	case s.Type == TypeFile:
		s.Content = []byte{}
	}
	return nil
}

// unixMode returns m as chmod(2) takes it.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// fileMode is the inverse of unixMode.
func fileMode(u uint32) fs.FileMode {
	m := fs.FileMode(u & 0o777)
	if u&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if u&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if u&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// FirstBootAction is work that cannot be done offline and runs inside the
// guest at its first boot on EC2, once, from a systemd unit that Prepare
// installs (and records in [Changes.Files]).
type FirstBootAction struct {
	// Name identifies the action, e.g. "rebuild-initramfs".
	Name string `json:"name"`
	// Description says what the action does and when.
	Description string `json:"description"`
	// Unit is the systemd unit that runs the action, e.g.
	// "draas-firstboot.service".
	Unit string `json:"unit"`
	// Command is the command the unit runs, a path inside the guest.
	Command string `json:"command"`
	// Writes lists the paths (relative to the root) the action creates
	// when it runs; Revert removes those that exist. Files the action
	// rewrites in /boot (the initramfs) are not restored: see
	// docs/guest-preparation.md.
	Writes []string `json:"writes,omitempty"`
}

// Errors of this package, besides those of package draas.
var (
	// ErrUnsupported means the guest's operating system or distribution is
	// not supported. It wraps [draas.ErrInvalid], so it is never retried.
	ErrUnsupported error = &wrapped{msg: "guest: unsupported guest operating system", kind: draas.ErrInvalid}
	// ErrSymlinkEscape means a symbolic link in the guest leads out of its
	// root: its target is absolute (it would name a host path), or it climbs
	// above the root. It wraps [draas.ErrInvalid].
	ErrSymlinkEscape error = &wrapped{msg: "guest: symbolic link leads out of the guest root", kind: draas.ErrInvalid}
)

// wrapped is a sentinel error that also matches a sentinel of package
// draas, so that errors.Is finds both.
type wrapped struct {
	msg  string
	kind error
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.kind }

// Windows would prepare Windows guests. It is not implemented: both methods
// return an error wrapping [ErrUnsupported]. docs/guest-preparation.md lists
// what a Windows guest needs (AWS NVMe and ENA drivers, EC2Launch, SAN
// policy OnlineAll, RealTimeIsUniversal, no VMware Tools, DHCP).
type Windows struct{}

var _ Preparer = Windows{}

func errWindows(root string) error {
	return fmt.Errorf("%w: %s: Windows guests are not supported yet: install the AWS NVMe and ENA drivers and EC2Launch in the VM before it is protected (see docs/guest-preparation.md)", ErrUnsupported, root)
}

// Prepare returns an error wrapping [ErrUnsupported].
func (Windows) Prepare(ctx context.Context, root string, opts Options) (*Changes, error) {
	return nil, errWindows(root)
}

// Revert returns an error wrapping [ErrUnsupported].
func (Windows) Revert(ctx context.Context, root string, c *Changes) error {
	return errWindows(root)
}
