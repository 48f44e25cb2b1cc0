package guest

import (
	"path"
	"regexp"
	"slices"
	"strings"
)

// vmwareUnits are the systemd units of VMware Tools and open-vm-tools that
// start at boot.
var vmwareUnits = []string{
	"vmtoolsd.service", "vmware-tools.service", "open-vm-tools.service",
	"vgauthd.service", "vgauth.service", "vmware-vgauth.service", "vmware-tools-thinprint.service",
	`run-vmblock\x2dfuse.mount`, "vmware-vmblock-fuse.service",
}

// vmwareRCLink matches SysV rc links of VMware Tools: S or K, a priority,
// the script name.
var (
	vmwareRCLink = regexp.MustCompile(`^[SK][0-9]+(vmware-tools|vmware-tools-thinprint|open-vm-tools|vmtoolsd)$`)
	rcDir        = regexp.MustCompile(`^rc[0-6S]\.d$`)
)

// prepareVMwareTools disables VMware Tools' boot hooks: it removes the
// symbolic links that enable their systemd units (in *.wants and
// *.requires directories, and unit aliases) and their SysV rc links. The
// packages stay installed; reverting restores the links.
func prepareVMwareTools(e *editor, o Options) error {
	sys, names, err := e.list("etc/systemd/system")
	if err != nil {
		return err
	}
	for _, n := range names {
		p := path.Join(sys, n)
		if slices.Contains(vmwareUnits, n) {
			// An alias made by systemctl enable; a unit file of the
			// administrator's own is left alone.
			if st, err := e.g.state(p); err != nil {
				return err
			} else if st.Type == TypeSymlink {
				if err := e.remove(p, "VMware Tools: disable "+n+" (alias)"); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasSuffix(n, ".wants") && !strings.HasSuffix(n, ".requires") {
			continue
		}
		dir, units, err := e.list(p)
		if err != nil {
			return err
		}
		for _, u := range units {
			if slices.Contains(vmwareUnits, u) {
				if err := e.remove(path.Join(dir, u), "VMware Tools: disable "+u); err != nil {
					return err
				}
			}
		}
	}
	for _, rc := range []string{"etc", "etc/rc.d"} {
		_, names, err := e.list(rc)
		if err != nil {
			return err
		}
		for _, n := range names {
			if !rcDir.MatchString(n) {
				continue
			}
			if ok, err := e.isDir(path.Join(rc, n)); err != nil || !ok {
				if err != nil {
					return err
				}
				continue
			}
			dir, links, err := e.list(path.Join(rc, n))
			if err != nil {
				return err
			}
			for _, l := range links {
				if vmwareRCLink.MatchString(l) {
					if err := e.remove(path.Join(dir, l), "VMware Tools: disable the SysV service "+l); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
