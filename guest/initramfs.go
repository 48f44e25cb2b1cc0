package guest

import (
	"fmt"
	"path"
	"strings"
)

// Paths of the files Prepare writes for the initramfs and the first boot.
const (
	dracutConf         = "etc/dracut.conf.d/90-draas-ec2.conf"
	initramfsToolsMods = "etc/initramfs-tools/modules"
	firstBootUnit      = "draas-firstboot.service"
	firstBootUnitPath  = "etc/systemd/system/" + firstBootUnit
	firstBootWants     = "etc/systemd/system/multi-user.target.wants/" + firstBootUnit
	firstBootScript    = "usr/local/sbin/draas-firstboot"
	firstBootStateDir  = "var/lib/draas"
	firstBootStamp     = firstBootStateDir + "/firstboot-done"
)

const generatedBy = "Written by draas guest preparation for EC2; reverting the guest removes it."

// prepareInitramfs makes every initramfs the guest builds from now on hold
// the modules.
func prepareInitramfs(e *editor, o Options) error {
	mods := o.modules()
	switch e.c.Distro.Initramfs {
	case "":
		e.warnf("%s: found neither /etc/initramfs-tools nor dracut's configuration: make sure the guest's initramfs holds %s before failover",
			e.g.path, strings.Join(mods, ", "))
		return nil
	case toolDracut:
		// hostonly="no": an image built while the guest runs on EC2 must
		// still boot on vSphere after failback (vmw_pvscsi, mptspi, ahci),
		// and one built on vSphere must boot on Nitro. add_drivers makes
		// dracut fail when a module is missing, which checkKernels warns of.
		conf := fmt.Sprintf("# %s\n# EC2 Nitro instances boot from NVMe (nvme) and network through ENA (ena).\nadd_drivers+=\" %s \"\nhostonly=\"no\"\n",
			generatedBy, strings.Join(mods, " "))
		return e.write(dracutConf, []byte(conf), 0o644, "dracut: add the EC2 drivers to every initramfs, built generic")
	}
	p, data, ok, err := e.read(initramfsToolsMods)
	if err != nil {
		return err
	}
	if !ok {
		data = []byte("# List of modules that you want to include in your initramfs.\n")
		p = initramfsToolsMods
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			have[strings.ReplaceAll(f[0], "-", "_")] = true
		}
	}
	var add []string
	for _, m := range mods {
		if !have[strings.ReplaceAll(m, "-", "_")] {
			add = append(add, m)
		}
	}
	if len(add) == 0 {
		return nil
	}
	out := string(data)
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	out += "# Added by draas for EC2 Nitro (NVMe, ENA); reverting the guest removes these lines.\n" + strings.Join(add, "\n") + "\n"
	return e.write(p, []byte(out), 0o644, "initramfs-tools: add the EC2 drivers to every initramfs")
}

// prepareFirstBoot installs a systemd unit that, at the first boot on EC2,
// rebuilds the running kernel's initramfs if it lacks a module, then
// records that it ran.
func prepareFirstBoot(e *editor, o Options) error {
	if e.c.Distro.Initramfs == "" {
		return nil // nothing to rebuild with; prepareInitramfs warned
	}
	if ok, err := e.isDir("etc/systemd/system"); err != nil {
		return err
	} else if !ok {
		e.warnf("%s: the guest does not use systemd, so no first-boot action was installed: after its first boot on EC2, rebuild its initramfs by hand (%s)",
			e.g.host("etc/systemd/system"), rebuildCommand(e.c.Distro))
		return nil
	}
	stateDirExisted, err := e.exists(firstBootStateDir)
	if err != nil {
		return err
	}
	n := len(e.c.Files)
	if err := e.write(firstBootScript, []byte(firstBootScriptText(e.c.Distro, o.modules())), 0o755, "first boot: rebuild the initramfs if it lacks the EC2 drivers"); err != nil {
		return err
	}
	if err := e.write(firstBootUnitPath, []byte(firstBootUnitText), 0o644, "first boot: the unit that runs /"+firstBootScript); err != nil {
		return err
	}
	if err := e.symlink("/"+firstBootUnitPath, firstBootWants, "first boot: enable "+firstBootUnit); err != nil {
		return err
	}
	if len(e.c.Files) == n {
		return nil // installed by an earlier Prepare, whose record has the action
	}
	writes := []string{firstBootStamp}
	if !stateDirExisted {
		writes = []string{firstBootStateDir, firstBootStamp}
	}
	e.c.FirstBoot = append(e.c.FirstBoot, FirstBootAction{
		Name: "rebuild-initramfs",
		Description: fmt.Sprintf("at the first boot that is not on VMware, rebuild the running kernel's initramfs (%s) if it lacks one of %s, then create /%s so that it runs once",
			rebuildCommand(e.c.Distro), strings.Join(o.modules(), ", "), firstBootStamp),
		Unit:    firstBootUnit,
		Command: "/" + firstBootScript,
		Writes:  writes,
	})
	return nil
}

// initramfsImage returns the path of the initramfs of kernel version kver
// (a shell expression) on d.
func initramfsImage(d Distro, kver string) string {
	switch {
	case d.Family == FamilySUSE:
		return "/boot/initrd-" + kver
	case d.Family == FamilyDebian:
		return "/boot/initrd.img-" + kver
	}
	return "/boot/initramfs-" + kver + ".img"
}

func rebuildCommand(d Distro) string {
	if d.Initramfs == toolInitramfsTools {
		return `update-initramfs -u -k "$(uname -r)"`
	}
	return `dracut --force ` + initramfsImage(d, `"$(uname -r)"`) + ` "$(uname -r)"`
}

const firstBootUnitText = `# ` + generatedBy + `
[Unit]
Description=draas: rebuild the initramfs with the EC2 drivers, once, at the first boot on EC2
ConditionPathExists=!/` + firstBootStamp + `
ConditionVirtualization=!vmware
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/` + firstBootScript + `
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
`

// firstBootScriptText returns the POSIX shell script the first-boot unit
// runs.
func firstBootScriptText(d Distro, mods []string) string {
	list, build := `lsinitrd "$img"`, `dracut --force "$img" "$kver"`
	if d.Initramfs == toolInitramfsTools {
		list, build = `lsinitramfs "$img"`, `update-initramfs -u -k "$kver"`
	}
	img := initramfsImage(d, "$kver")
	return `#!/bin/sh
# ` + generatedBy + `
# Run once by ` + firstBootUnit + ` at the first boot on EC2: rebuild the
# running kernel's initramfs if it lacks one of the modules EC2 needs, then
# create the stamp file so that the unit does not run again.
set -eu
kver=$(uname -r)
img=` + img + `
modules="` + strings.Join(mods, " ") + `"
stamp=/` + firstBootStamp + `
builtin=/lib/modules/$kver/modules.builtin

contents=$(` + list + ` 2>/dev/null | tr - _ || true)
missing=""
for m in $modules; do
	n=$(echo "$m" | tr - _)
	if printf '%s\n' "$contents" | grep -q "/$n\.ko"; then continue; fi
	if [ -f "$builtin" ] && tr - _ <"$builtin" | grep -q "/$n\.ko"; then continue; fi
	missing="$missing $m"
done
if [ -n "$missing" ]; then
	echo "draas-firstboot: $img lacks$missing: rebuilding it"
	` + build + `
fi
mkdir -p "$(dirname "$stamp")"
: >"$stamp"
`
}

// checkKernels warns of kernels that lack a module (dracut would then fail
// to build their initramfs, and the guest cannot use the device) and, for
// dracut guests, of an initramfs that was probably built host-only.
func checkKernels(e *editor, o Options) error {
	dir, kernels, err := e.list("lib/modules")
	if err != nil {
		return err
	}
	for _, k := range kernels {
		var lists strings.Builder
		for _, f := range []string{"modules.dep", "modules.builtin"} {
			_, data, ok, err := e.read(path.Join(dir, k, f))
			if err != nil {
				return err
			}
			if ok {
				lists.Write(data)
				lists.WriteByte('\n')
			}
		}
		if lists.Len() == 0 {
			continue // not a kernel's module tree, or one we cannot judge
		}
		var missing []string
		for _, m := range o.modules() {
			if !hasModule(lists.String(), m) {
				missing = append(missing, m)
			}
		}
		if len(missing) > 0 {
			e.warnf("%s: kernel %s has no %s module: it cannot boot or network on EC2 Nitro, and dracut fails to build its initramfs; update the guest's kernel, or remove this kernel, before failover",
				e.g.host(path.Join(dir, k)), k, strings.Join(missing, ", "))
		}
	}
	if e.c.Distro.Initramfs != toolDracut {
		return nil
	}
	generic, err := dracutGeneric(e)
	if err != nil || generic {
		return err
	}
	e.warnf("%s: dracut builds host-only images by default on %s, so the initramfs images in /boot probably hold only the VMware storage drivers: the first boot on a Nitro instance needs nvme in the image it boots. Rebuild it before launch from a chroot into the guest (%s), or launch on hardware the image supports; Prepare does not run the guest's own tools",
		e.g.host("boot"), e.c.Distro.Name, `dracut --force --no-hostonly --add-drivers "`+strings.Join(o.modules(), " ")+`" --kver VERSION`)
	return nil
}

// dracutGeneric reports whether the guest's own dracut configuration (not
// ours) already builds generic images.
func dracutGeneric(e *editor) (bool, error) {
	confs := []string{"etc/dracut.conf"}
	dir, names, err := e.list("etc/dracut.conf.d")
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if p := path.Join(dir, n); strings.HasSuffix(n, ".conf") && p != dracutConf {
			confs = append(confs, p)
		}
	}
	generic := false
	for _, c := range confs {
		_, data, ok, err := e.read(c)
		if err != nil || !ok {
			if err != nil {
				return false, err
			}
			continue
		}
		for _, l := range parseShellVars(data).lines {
			if l.key == "hostonly" {
				generic = l.value == "no"
			}
		}
	}
	return generic, nil
}
