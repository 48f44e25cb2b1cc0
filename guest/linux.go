package guest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/opendraas/draas"
)

// Linux prepares Linux guests of the RHEL, Debian and SUSE families (see
// [Family]) for EC2 Nitro instances. Its zero value is ready to use, and it
// is safe for concurrent use on different roots.
//
// Prepare, in order:
//   - initramfs: dracut guests get /etc/dracut.conf.d/90-draas-ec2.conf
//     (add_drivers for the modules, hostonly="no"); initramfs-tools guests
//     get the modules appended to /etc/initramfs-tools/modules;
//   - first boot: a systemd unit, draas-firstboot.service, that rebuilds the
//     running kernel's initramfs once if it lacks one of the modules;
//   - /etc/fstab: device names rewritten to UUID= from
//     [Options.DeviceUUIDs], nofail on every disk mount but / and /boot;
//   - network: static configuration switched to DHCP (ifcfg files,
//     NetworkManager keyfiles, netplan, /etc/network/interfaces), a DHCP
//     configuration added for the cloud NIC, MAC-pinning
//     70-persistent-net.rules removed;
//   - VMware Tools: their systemd units and SysV rc links disabled;
//   - checks that add [Changes.Warnings]: kernels that lack a module, an
//     initramfs that was probably built host-only, a root mount by device
//     name.
//
// docs/guest-preparation.md explains each step.
type Linux struct{}

var _ Preparer = Linux{}

// Prepare implements [Preparer].
func (Linux) Prepare(ctx context.Context, root string, opts Options) (*Changes, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g, err := openGuest(root)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	c := &Changes{Format: changesFormat}
	e := newEditor(ctx, g, c)
	if c.Distro, err = detect(e); err != nil {
		return nil, err
	}
	steps := []func(*editor, Options) error{
		prepareInitramfs,
		prepareFirstBoot,
		prepareFstab,
		prepareNetwork,
		prepareVMwareTools,
		checkKernels,
	}
	for _, step := range steps {
		if err = ctx.Err(); err == nil {
			err = step(e, opts)
		}
		if err != nil {
			if rerr := revert(context.WithoutCancel(ctx), g, c, true); rerr != nil {
				return c, errors.Join(err, fmt.Errorf("guest: rolling back the partial preparation of %s failed too, revert it with the returned record: %w", g.path, rerr))
			}
			return nil, err
		}
	}
	return c, nil
}

// Revert implements [Preparer]; it is [Revert].
func (Linux) Revert(ctx context.Context, root string, c *Changes) error {
	return Revert(ctx, root, c)
}

var moduleName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (o Options) validate() error {
	for _, m := range o.modules() {
		if !moduleName.MatchString(m) {
			return draas.Invalidf("guest options: module name %q: want a kernel module name such as nvme_core (letters, digits, _ and -)", m)
		}
	}
	for dev, u := range o.DeviceUUIDs {
		if !strings.HasPrefix(dev, "/dev/") {
			return draas.Invalidf("guest options: DeviceUUIDs key %q: want a device name as /etc/fstab writes it, such as /dev/sda1", dev)
		}
		if u == "" || strings.ContainsAny(u, " \t\r\n#") {
			return draas.Invalidf("guest options: DeviceUUIDs[%q] = %q: want the filesystem's UUID as blkid prints it", dev, u)
		}
	}
	return nil
}

// supported names what detect accepts, for error messages.
const supported = "RHEL, CentOS, Rocky Linux, AlmaLinux, Oracle Linux, Fedora and Amazon Linux (dracut); " +
	"Ubuntu and Debian (initramfs-tools); SLES and openSUSE (dracut); and derivatives whose ID_LIKE names one of them"

var familyIDs = map[string]Family{
	"rhel": FamilyRHEL, "centos": FamilyRHEL, "rocky": FamilyRHEL, "almalinux": FamilyRHEL, "ol": FamilyRHEL,
	"fedora": FamilyRHEL, "amzn": FamilyRHEL,
	"debian": FamilyDebian, "ubuntu": FamilyDebian,
	"sles": FamilySUSE, "sled": FamilySUSE, "suse": FamilySUSE, "opensuse": FamilySUSE,
	"opensuse-leap": FamilySUSE, "opensuse-tumbleweed": FamilySUSE,
}

// detect reads os-release and returns the distribution, or an error
// wrapping ErrUnsupported that names the file and what is supported.
func detect(e *editor) (Distro, error) {
	for _, win := range []string{"Windows/System32", "WINDOWS/system32", "Windows/system32"} {
		if ok, err := e.isDir(win); err != nil {
			return Distro{}, err
		} else if ok {
			return Distro{}, errWindows(e.g.path)
		}
	}
	for _, name := range []string{"etc/os-release", "usr/lib/os-release"} {
		_, data, ok, err := e.read(name)
		if err != nil {
			return Distro{}, err
		}
		if !ok {
			continue
		}
		vars := parseShellVars(data)
		get := func(k string) string { v, _ := vars.get(k); return v }
		d := Distro{ID: get("ID"), VersionID: get("VERSION_ID"), Name: get("PRETTY_NAME")}
		if d.Name == "" {
			d.Name = get("NAME")
		}
		fam, ok := familyIDs[strings.ToLower(d.ID)]
		for _, like := range strings.Fields(strings.ToLower(get("ID_LIKE"))) {
			if ok {
				break
			}
			fam, ok = familyIDs[like]
		}
		if !ok {
			return Distro{}, fmt.Errorf("%w: %s: ID=%q (%s) is not a supported distribution; supported are %s",
				ErrUnsupported, e.g.host(name), d.ID, d.Name, supported)
		}
		d.Family = fam
		if d.Initramfs, err = initramfsTool(e, fam); err != nil {
			return Distro{}, err
		}
		return d, nil
	}
	return Distro{}, fmt.Errorf("%w: %s: neither etc/os-release nor usr/lib/os-release exists: mount the guest's root filesystem there (supported are %s)",
		ErrUnsupported, e.g.path, supported)
}

// The initramfs builders.
const (
	toolDracut         = "dracut"
	toolInitramfsTools = "initramfs-tools"
)

// initramfsTool returns the guest's initramfs builder: dracut on RHEL and
// SUSE; on Debian and Ubuntu initramfs-tools, or dracut where it replaced
// initramfs-tools; "" if a Debian-family guest has neither's configuration.
func initramfsTool(e *editor, f Family) (string, error) {
	if f != FamilyDebian {
		return toolDracut, nil
	}
	for _, c := range []struct{ dir, tool string }{
		{"etc/initramfs-tools", toolInitramfsTools},
		{"etc/dracut.conf.d", toolDracut},
		{"etc/dracut.conf", toolDracut},
	} {
		if ok, err := e.exists(c.dir); err != nil || ok {
			return c.tool, err
		}
	}
	return "", nil
}

// hasModule reports whether names, file names of kernel modules as
// modules.dep or lsinitrd list them, contain module m; '-' and '_' are the
// same in module names.
func hasModule(list, m string) bool {
	norm := strings.NewReplacer("-", "_")
	list, m = norm.Replace(list), norm.Replace(m)
	for i := 0; ; {
		j := strings.Index(list[i:], "/"+m+".ko")
		if j < 0 {
			return false
		}
		i += j + 1
		if k := i + len(m) + len(".ko"); k == len(list) || slices.Contains([]byte{'.', ':', '\n', ' ', '\t', '\r'}, list[k]) {
			return true
		}
	}
}
