package guest

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opendraas/draas"
)

const (
	rhelBootUUID   = "7e4c2a1b-9d8f-4e6a-b5c3-2f1e0d9c8b7a"
	debianDataPart = "PARTUUID=3c2b1a09-01"
)

var dracutConfWant = `# Written by draas guest preparation for EC2; reverting the guest removes it.
# EC2 Nitro instances boot from NVMe (nvme) and network through ENA (ena).
add_drivers+=" nvme nvme_core ena "
hostonly="no"
`

// distroCase is a guest root, what Prepare must write, and what it must
// remove.
type distroCase struct {
	name    string
	tree    tree
	modes   map[string]fs.FileMode
	opts    Options
	distro  Distro
	want    map[string]string // path → content after Prepare; "-> x" for links
	absent  []string          // paths Prepare removes or must not create
	warn    []string          // substrings of Changes.Warnings, one each
	noWarns bool
}

func distroCases() []distroCase {
	rhelCommon := func(version string) distroCase {
		rhel := Distro{ID: "rhel", VersionID: version, Name: "Red Hat Enterprise Linux " + version + " (Plow)", Family: FamilyRHEL, Initramfs: "dracut"}
		return distroCase{
			name:   "rhel" + version,
			tree:   rhelTree(version),
			modes:  map[string]fs.FileMode{"etc/sysconfig/network-scripts/ifcfg-ens192": 0o600},
			opts:   Options{DeviceUUIDs: map[string]string{"/dev/sda1": rhelBootUUID}},
			distro: rhel,
			want: map[string]string{
				"etc/fstab": strings.NewReplacer(
					"/dev/sda1               /boot", "UUID="+rhelBootUUID+"               /boot",
					"defaults,noatime\t", "defaults,noatime,nofail\t",
					"swap    defaults ", "swap    defaults,nofail ",
				).Replace(rhelFstab),
				"etc/sysconfig/network-scripts/ifcfg-ens192": strings.NewReplacer(
					"BOOTPROTO=none", "BOOTPROTO=dhcp",
					"IPADDR=192.168.10.21\nPREFIX=24\nGATEWAY=192.168.10.1\n", "",
					"HWADDR=00:50:56:8a:12:34\n", "",
				).Replace(rhelIfcfg),
				"etc/sysconfig/network-scripts/ifcfg-lo":                             "DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\nONBOOT=yes\n",
				"etc/sysconfig/network":                                              "# Created by anaconda\nNETWORKING=yes\n",
				"etc/NetworkManager/system-connections/draas-ec2.nmconnection":       keyfileCatchAllText,
				"etc/dracut.conf.d/90-draas-ec2.conf":                                dracutConfWant,
				"etc/systemd/system/draas-firstboot.service":                         firstBootUnitText,
				"etc/systemd/system/multi-user.target.wants/draas-firstboot.service": "-> /etc/systemd/system/draas-firstboot.service",
				"etc/systemd/system/multi-user.target.wants/sshd.service":            "-> /usr/lib/systemd/system/sshd.service",
				"usr/local/sbin/draas-firstboot":                                     firstBootScriptText(rhel, defaultModules),
			},
			absent: []string{
				"etc/systemd/system/multi-user.target.wants/vmtoolsd.service",
				"etc/rc.d/rc3.d/S03vmware-tools", "etc/rc.d/rc0.d/K08vmware-tools",
				"etc/udev/rules.d/70-persistent-net.rules",
				"var/lib/draas",
			},
			warn: []string{"host-only"},
		}
	}
	ubuntu := Distro{ID: "ubuntu", VersionID: "22.04", Name: "Ubuntu 22.04.4 LTS", Family: FamilyDebian, Initramfs: "initramfs-tools"}
	sles := Distro{ID: "sles", VersionID: "15.5", Name: "SUSE Linux Enterprise Server 15 SP5", Family: FamilySUSE, Initramfs: "dracut"}
	return []distroCase{
		rhelCommon("9.4"),
		rhelCommon("8.9"),
		{
			name:   "ubuntu22.04",
			tree:   ubuntuTree(),
			modes:  map[string]fs.FileMode{"etc/netplan/00-installer-config.yaml": 0o600},
			distro: ubuntu,
			want: map[string]string{
				"etc/fstab": strings.NewReplacer(
					"/home ext4 defaults 0 2", "/home ext4 defaults,nofail 0 2",
					"/data ext4 defaults 0 2", "/data ext4 defaults,nofail 0 2",
				).Replace(ubuntuFstab),
				"etc/netplan/00-installer-config.yaml.draas-disabled": ubuntuNetplan,
				"etc/netplan/90-draas-ec2.yaml":                       netplanCatchAllText,
				"etc/initramfs-tools/modules": initramfsToolsModules +
					"# Added by draas for EC2 Nitro (NVMe, ENA); reverting the guest removes these lines.\nnvme\nnvme_core\nena\n",
				"etc/systemd/system/multi-user.target.wants/ssh.service": "-> /lib/systemd/system/ssh.service",
				"usr/local/sbin/draas-firstboot":                         firstBootScriptText(ubuntu, defaultModules),
			},
			absent: []string{
				"etc/netplan/00-installer-config.yaml",
				"etc/systemd/system/multi-user.target.wants/open-vm-tools.service",
				"etc/systemd/system/vmtoolsd.service",
				"etc/systemd/system/open-vm-tools.service.requires/vgauth.service",
				"etc/dracut.conf.d",
				"etc/NetworkManager",
			},
			noWarns: true,
		},
		{
			name:   "debian12",
			tree:   debianTree(),
			opts:   Options{DeviceUUIDs: map[string]string{"/dev/sdb1": debianDataPart}},
			distro: Distro{ID: "debian", VersionID: "12", Name: "Debian GNU/Linux 12 (bookworm)", Family: FamilyDebian, Initramfs: "initramfs-tools"},
			want: map[string]string{
				"etc/fstab": "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\nUUID=9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d /               ext4    errors=remount-ro 0       1\n" +
					debianDataPart + " /srv ext4 defaults,nofail 0 2\n",
				"etc/network/interfaces": debianInterfacesHead + `iface ens192 inet dhcp
	# dns-* options are implemented by the resolvconf package, if installed
	dns-nameservers 10.30.0.2
	dns-search corp.example.com
iface ens192 inet6 auto

# Added by draas for EC2: DHCP on the cloud NIC; reverting the guest removes these lines.
allow-hotplug ens5
iface ens5 inet dhcp
allow-hotplug eth0
iface eth0 inet dhcp
`,
				"etc/rcS.d/S01udev": "-> ../init.d/udev",
			},
			absent: []string{
				"etc/rc2.d/S01open-vm-tools",
				"etc/systemd/system/multi-user.target.wants/open-vm-tools.service",
				"etc/netplan",
			},
			noWarns: true,
		},
		{
			name:   "sles15",
			tree:   suseTree(),
			distro: sles,
			want: map[string]string{
				"etc/fstab":                           "UUID=5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d  /      btrfs  defaults  0  0\nUUID=5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d  /home  btrfs  subvol=/@/home,nofail  0  0\n/dev/sdb1  /data  xfs  defaults,nofail  0  0\n",
				"etc/sysconfig/network/ifcfg-eth0":    "BOOTPROTO='dhcp'\nSTARTMODE='auto'\nNAME='VMXNET3 Ethernet Controller'\n",
				"etc/sysconfig/network/ifcfg-lo":      suseTree()["etc/sysconfig/network/ifcfg-lo"],
				"etc/sysconfig/network/routes":        "10.99.0.0/16 10.40.0.254 - eth0\n",
				"etc/dracut.conf.d/90-draas-ec2.conf": dracutConfWant,
				"usr/local/sbin/draas-firstboot":      firstBootScriptText(sles, defaultModules),
			},
			absent: []string{
				"etc/systemd/system/multi-user.target.wants/vmtoolsd.service",
				"etc/NetworkManager",
			},
			warn: []string{"host-only"},
		},
	}
}

func readTreeEntry(t *testing.T, root, p string) (string, bool) {
	t.Helper()
	full := filepath.Join(root, filepath.FromSlash(p))
	fi, err := os.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(full)
		if err != nil {
			t.Fatal(err)
		}
		return "-> " + target, true
	}
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

func TestPrepareRevert(t *testing.T) {
	ctx := context.Background()
	for _, tc := range distroCases() {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.tree, tc.modes)
			before := snapshot(t, root)

			c, err := Linux{}.Prepare(ctx, root, tc.opts)
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if c.Distro != tc.distro {
				t.Errorf("Distro = %+v, want %+v", c.Distro, tc.distro)
			}
			for p, want := range tc.want {
				got, ok := readTreeEntry(t, root, p)
				if !ok {
					t.Errorf("%s: missing after Prepare", p)
				} else if got != want {
					t.Errorf("%s after Prepare:\n%s\nwant:\n%s", p, got, want)
				}
			}
			for _, p := range tc.absent {
				if _, ok := readTreeEntry(t, root, p); ok {
					t.Errorf("%s: exists after Prepare, want it absent", p)
				}
			}
			// Modes of rewritten files are kept; new files get theirs.
			after := snapshot(t, root)
			for p, m := range tc.modes {
				if e, ok := after[p]; ok && e.mode != m {
					t.Errorf("%s: mode %v after Prepare, want %v kept", p, e.mode, m)
				}
			}
			for p, m := range map[string]fs.FileMode{
				"usr/local/sbin/draas-firstboot":                               0o755,
				"etc/systemd/system/draas-firstboot.service":                   0o644,
				"etc/netplan/90-draas-ec2.yaml":                                0o600,
				"etc/NetworkManager/system-connections/draas-ec2.nmconnection": 0o600,
			} {
				if e, ok := after[p]; ok && e.mode != m {
					t.Errorf("%s: mode %v, want %v", p, e.mode, m)
				}
			}
			checkWarnings(t, c.Warnings, tc.warn, tc.noWarns)
			checkRecordMatchesTree(t, c, before, after)

			// Prepare is idempotent.
			c2, err := Linux{}.Prepare(ctx, root, tc.opts)
			if err != nil {
				t.Fatalf("second Prepare: %v", err)
			}
			if !c2.Empty() {
				t.Errorf("second Prepare changed %d paths: %+v", len(c2.Files), c2.Files)
			}
			assertSameTree(t, "second Prepare", after, snapshot(t, root))

			// The record survives JSON, and Revert restores the tree.
			js, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			var decoded Changes
			if err := json.Unmarshal(js, &decoded); err != nil {
				t.Fatal(err)
			}
			if err := (Linux{}).Revert(ctx, root, &decoded); err != nil {
				t.Fatalf("Revert: %v", err)
			}
			assertSameTree(t, "Revert", before, snapshot(t, root))
			if err := (Linux{}).Revert(ctx, root, &decoded); err != nil {
				t.Fatalf("second Revert: %v", err)
			}
			assertSameTree(t, "second Revert", before, snapshot(t, root))
		})
	}
}

func checkWarnings(t *testing.T, got, want []string, none bool) {
	t.Helper()
	if none && len(got) > 0 {
		t.Errorf("warnings %q, want none", got)
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
			t.Errorf("warnings %q lack %q", got, w)
		}
	}
}

// checkRecordMatchesTree checks that the record names exactly the paths
// that changed, with their states before and after.
func checkRecordMatchesTree(t *testing.T, c *Changes, before, after map[string]entry) {
	t.Helper()
	changed := map[string]bool{}
	for _, d := range diffSnapshots(before, after) {
		p := d[2:]
		if i := strings.Index(p, ":"); d[0] == '~' && i >= 0 {
			p = p[:i]
		}
		changed[p] = true
	}
	recorded := map[string]bool{}
	for _, f := range c.Files {
		recorded[f.Path] = true
		if (f.Before == nil) != (before[f.Path] == entry{}) {
			t.Errorf("record of %s: Before %v, tree had %v", f.Path, f.Before, before[f.Path])
		}
		if f.After != nil && f.After.Type == TypeFile && string(f.After.Content) != after[f.Path].content {
			t.Errorf("record of %s: After content differs from the tree", f.Path)
		}
		if f.Before != nil && f.Before.Type == TypeFile && string(f.Before.Content) != before[f.Path].content {
			t.Errorf("record of %s: Before content differs from the tree", f.Path)
		}
		if f.Why == "" {
			t.Errorf("record of %s has no Why", f.Path)
		}
	}
	for p := range changed {
		if !recorded[p] {
			t.Errorf("%s changed but is not in the record", p)
		}
	}
	for p := range recorded {
		if !changed[p] {
			t.Errorf("%s is in the record but did not change", p)
		}
	}
}

func TestFirstBootRecord(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, rhelTree("9.4"), nil)
	c, err := Linux{}.Prepare(context.Background(), root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.FirstBoot) != 1 {
		t.Fatalf("FirstBoot = %+v, want one action", c.FirstBoot)
	}
	a := c.FirstBoot[0]
	if a.Unit != "draas-firstboot.service" || a.Command != "/usr/local/sbin/draas-firstboot" ||
		!slices.Equal(a.Writes, []string{"var/lib/draas", "var/lib/draas/firstboot-done"}) {
		t.Errorf("FirstBoot[0] = %+v", a)
	}
	// The unit ran on EC2: its stamp exists. Revert removes it, and the
	// directory it made.
	writeTree(t, root, tree{"var/lib/draas/firstboot-done": ""}, nil)
	if err := Revert(context.Background(), root, c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, "var/lib/draas")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("var/lib/draas after Revert: %v, want it gone", err)
	}
}

func TestFirstBootScriptSyntax(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	for _, d := range []Distro{
		{Family: FamilyRHEL, Initramfs: toolDracut},
		{Family: FamilyDebian, Initramfs: toolInitramfsTools},
		{Family: FamilyDebian, Initramfs: toolDracut},
		{Family: FamilySUSE, Initramfs: toolDracut},
	} {
		f := d.Family
		script := filepath.Join(t.TempDir(), "s")
		if err := os.WriteFile(script, []byte(firstBootScriptText(d, defaultModules)), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sh, "-n", script).CombinedOutput(); err != nil {
			t.Errorf("%s script: sh -n: %v\n%s", f, err, out)
		}
	}
}

func TestRootMountByDeviceNameWarns(t *testing.T) {
	root := t.TempDir()
	tr := debianTree()
	tr["etc/fstab"] = "/dev/sda1 / ext4 errors=remount-ro 0 1\n/dev/sda5 none swap sw 0 0\n"
	writeTree(t, root, tr, nil)
	c, err := Linux{}.Prepare(context.Background(), root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkWarnings(t, c.Warnings, []string{"/ is mounted from /dev/sda1", "DeviceUUIDs"}, false)
	got, _ := readTreeEntry(t, root, "etc/fstab")
	if want := "/dev/sda1 / ext4 errors=remount-ro 0 1\n/dev/sda5 none swap sw,nofail 0 0\n"; got != want {
		t.Errorf("fstab = %q, want %q", got, want)
	}
}

func TestKernelWithoutModuleWarns(t *testing.T) {
	root := t.TempDir()
	tr := rhelTree("9.4")
	tr["usr/lib/modules/3.10.0-123.el7.x86_64/modules.dep"] = "kernel/drivers/nvme/host/nvme.ko:\n"
	writeTree(t, root, tr, nil)
	c, err := Linux{}.Prepare(context.Background(), root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkWarnings(t, c.Warnings, []string{"kernel 3.10.0-123.el7.x86_64 has no nvme_core, ena module"}, false)
}

func TestUnsupported(t *testing.T) {
	ctx := context.Background()
	cases := map[string]tree{
		"arch":    {"etc/os-release": "NAME=\"Arch Linux\"\nID=arch\n"},
		"empty":   {"etc/": ""},
		"windows": {"Windows/System32/config/": ""},
	}
	for name, tr := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tr, nil)
			before := snapshot(t, root)
			c, err := Linux{}.Prepare(ctx, root, Options{})
			if c != nil || !errors.Is(err, ErrUnsupported) || !errors.Is(err, draas.ErrInvalid) {
				t.Fatalf("Prepare = %v, %v; want an error wrapping ErrUnsupported and draas.ErrInvalid", c, err)
			}
			if draas.IsRetryable(err) {
				t.Errorf("%v is retryable", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, root) || !strings.Contains(msg, "supported") {
				t.Errorf("error %q does not name the root and what is supported", msg)
			}
			if name == "arch" && !strings.Contains(msg, filepath.Join(root, "etc/os-release")) {
				t.Errorf("error %q does not name the os-release file", msg)
			}
			assertSameTree(t, "failed Prepare", before, snapshot(t, root))
		})
	}
	if _, err := (Windows{}).Prepare(ctx, t.TempDir(), Options{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Windows.Prepare = %v, want ErrUnsupported", err)
	}
	if err := (Windows{}).Revert(ctx, t.TempDir(), &Changes{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Windows.Revert = %v, want ErrUnsupported", err)
	}
}

func TestDerivativeByIDLike(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, tree{"etc/os-release": "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nNAME=\"Linux Mint\"\n"}, nil)
	c, err := Linux{}.Prepare(context.Background(), root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Distro.Family != FamilyDebian {
		t.Errorf("Family = %q, want debian", c.Distro.Family)
	}
}

func TestSymlinkEscapeRefused(t *testing.T) {
	ctx := context.Background()
	links := map[string]func(outside string) string{
		"absolute": func(outside string) string { return outside },
		"relative": func(outside string) string {
			return "../../../../../../../../../../../../" + strings.TrimPrefix(outside, "/")
		},
	}
	for _, tc := range distroCases() {
		for kind, link := range links {
			for _, victim := range []string{"etc/fstab", "etc/udev/rules.d"} {
				t.Run(tc.name+"/"+kind+"/"+victim, func(t *testing.T) {
					host := t.TempDir()
					const hostFile = "/dev/sda1 /data ext4 defaults 0 0\n"
					outside := filepath.Join(host, "fstab")
					if err := os.WriteFile(outside, []byte(hostFile), 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(host, "70-persistent-net.rules"), []byte(hostFile), 0o644); err != nil {
						t.Fatal(err)
					}
					hostBefore := snapshot(t, host)
					target := outside
					if victim != "etc/fstab" {
						target = host
					}
					root := t.TempDir()
					tr := maps.Clone(tc.tree)
					delete(tr, "etc/udev/rules.d/70-persistent-net.rules")
					tr[victim] = "-> " + link(target)
					writeTree(t, root, tr, nil)
					before := snapshot(t, root)
					c, err := Linux{}.Prepare(ctx, root, tc.opts)
					if c != nil || !errors.Is(err, ErrSymlinkEscape) || !errors.Is(err, draas.ErrInvalid) {
						t.Fatalf("Prepare = %v, %v; want an error wrapping ErrSymlinkEscape", c, err)
					}
					if !strings.Contains(err.Error(), filepath.Join(root, victim)) {
						t.Errorf("error %q does not name the link", err)
					}
					assertSameTree(t, "host", hostBefore, snapshot(t, host))
					// Prepare rolled back what it did before it met the link.
					assertSameTree(t, "failed Prepare", before, snapshot(t, root))
				})
			}
		}
	}
}

func TestRelativeSymlinkInsideRootFollowed(t *testing.T) {
	root := t.TempDir()
	tr := debianTree()
	tr["etc/fstab"] = "-> ../srv/conf/fstab"
	tr["srv/conf/fstab"] = "/dev/sdb1 /srv ext4 defaults 0 2\n"
	writeTree(t, root, tr, nil)
	before := snapshot(t, root)
	c, err := Linux{}.Prepare(context.Background(), root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := readTreeEntry(t, root, "etc/fstab"); got != "-> ../srv/conf/fstab" {
		t.Errorf("etc/fstab = %q, want the link kept", got)
	}
	if got, _ := readTreeEntry(t, root, "srv/conf/fstab"); got != "/dev/sdb1 /srv ext4 defaults,nofail 0 2\n" {
		t.Errorf("link target = %q", got)
	}
	if !slices.ContainsFunc(c.Files, func(f FileChange) bool { return f.Path == "srv/conf/fstab" }) {
		t.Errorf("record does not name the link's target: %+v", c.Files)
	}
	if err := Revert(context.Background(), root, c); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, "Revert", before, snapshot(t, root))
}

func TestRevertConflict(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	writeTree(t, root, rhelTree("9.4"), nil)
	before := snapshot(t, root)
	c, err := Linux{}.Prepare(ctx, root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The guest ran on EC2 and someone edited fstab there.
	edited := filepath.Join(root, "etc/fstab")
	if err := os.WriteFile(edited, []byte("# edited on EC2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mid := snapshot(t, root)
	err = Revert(ctx, root, c)
	if !errors.Is(err, draas.ErrConflict) || !strings.Contains(err.Error(), "etc/fstab") {
		t.Fatalf("Revert = %v, want a conflict naming etc/fstab", err)
	}
	assertSameTree(t, "conflicting Revert", mid, snapshot(t, root))
	// Dropping the entry (the operator restores fstab by hand) lets the
	// rest revert.
	c.Files = slices.DeleteFunc(c.Files, func(f FileChange) bool { return f.Path == "etc/fstab" })
	if err := Revert(ctx, root, c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edited, []byte(before["etc/fstab"].content), 0o644); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, "Revert", before, snapshot(t, root))
}

func TestPrepareFailureRollsBack(t *testing.T) {
	root := t.TempDir()
	tr := ubuntuTree()
	tr["etc/netplan/99-broken.yaml"] = "network: [unclosed\n"
	writeTree(t, root, tr, nil)
	before := snapshot(t, root)
	c, err := Linux{}.Prepare(context.Background(), root, Options{})
	if c != nil || !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), "99-broken.yaml") {
		t.Fatalf("Prepare = %v, %v; want an error naming the broken file", c, err)
	}
	assertSameTree(t, "failed Prepare", before, snapshot(t, root))
}

func TestPrepareCancelled(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, rhelTree("9.4"), nil)
	before := snapshot(t, root)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Linux{}).Prepare(ctx, root, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Prepare = %v, want context.Canceled", err)
	}
	assertSameTree(t, "cancelled Prepare", before, snapshot(t, root))
}

func TestOptionsValidated(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, rhelTree("9.4"), nil)
	for _, o := range []Options{
		{Modules: []string{"nvme; rm -rf /"}},
		{DeviceUUIDs: map[string]string{"sda1": "x"}},
		{DeviceUUIDs: map[string]string{"/dev/sda1": ""}},
	} {
		if _, err := (Linux{}).Prepare(context.Background(), root, o); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("Prepare(%+v) = %v, want ErrInvalid", o, err)
		}
	}
	if _, err := (Linux{}).Prepare(context.Background(), filepath.Join(root, "nope"), Options{}); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("Prepare on a missing root = %v, want ErrInvalid", err)
	}
}

func TestRevertRejectsBadRecord(t *testing.T) {
	root := t.TempDir()
	for _, c := range []*Changes{
		{Format: 2},
		{Format: 1, Files: []FileChange{{Path: "../etc/passwd"}}},
		{Format: 1, Files: []FileChange{{Path: "/etc/passwd"}}},
		{Format: 1, FirstBoot: []FirstBootAction{{Writes: []string{"a/../../b"}}}},
	} {
		if err := Revert(context.Background(), root, c); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("Revert(%+v) = %v, want ErrInvalid", c, err)
		}
	}
	if err := Revert(context.Background(), root, nil); err != nil {
		t.Errorf("Revert(nil) = %v", err)
	}
}

func TestFileStateJSON(t *testing.T) {
	for _, s := range []FileState{
		{Type: TypeFile, Mode: 0o600, Content: []byte("BOOTPROTO=dhcp\n")},
		{Type: TypeFile, Mode: 0o644, Content: []byte{0xff, 0xfe, 0}},
		{Type: TypeFile, Mode: 0o644, Content: []byte{}},
		{Type: TypeSymlink, Target: "/usr/lib/systemd/system/vmtoolsd.service", SELinux: "system_u:object_r:systemd_unit_file_t:s0"},
		{Type: TypeDir, Mode: 0o755 | fs.ModeSetgid, UID: 0, GID: 4},
	} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var got FileState
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !sameState(&s, &got) || got.SELinux != s.SELinux {
			t.Errorf("%s: round trip gave %+v, want %+v", b, got, s)
		}
	}
	b, _ := json.Marshal(FileState{Type: TypeFile, Mode: 0o640 | fs.ModeSetgid, Content: []byte("text")})
	if !strings.Contains(string(b), `"text":"text"`) || !strings.Contains(string(b), `"mode":"2640"`) {
		t.Errorf("want content as text and mode in octal: %s", b)
	}
	var bad FileState
	if err := json.Unmarshal([]byte(`{"type":"file","mode":"rw-r--r--"}`), &bad); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("Unmarshal of a bad mode = %v, want ErrInvalid", err)
	}
}

func TestSELinuxLabels(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, rhelTree("9.4"), nil)
	const unitLabel = "system_u:object_r:systemd_unit_file_t:s0"
	sys := filepath.Join(root, "etc/systemd/system")
	setLabel(sys, unitLabel)
	if getLabel(sys) != unitLabel {
		t.Skip("this filesystem or kernel keeps no security.selinux attributes")
	}
	link := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/vmtoolsd.service")
	setLabel(link, unitLabel)
	c, err := Linux{}.Prepare(context.Background(), root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := getLabel(filepath.Join(sys, "draas-firstboot.service")); got != unitLabel {
		t.Errorf("new unit labelled %q, want its directory's %q", got, unitLabel)
	}
	if err := Revert(context.Background(), root, c); err != nil {
		t.Fatal(err)
	}
	if got := getLabel(link); got != unitLabel {
		t.Errorf("restored link labelled %q, want %q", got, unitLabel)
	}
}

func TestDebianInitramfsTool(t *testing.T) {
	ctx := context.Background()
	// Debian with dracut instead of initramfs-tools.
	root := t.TempDir()
	tr := debianTree()
	delete(tr, "etc/initramfs-tools/modules")
	tr["etc/dracut.conf.d/"] = ""
	writeTree(t, root, tr, nil)
	c, err := Linux{}.Prepare(ctx, root, Options{Modules: []string{"nvme", "ena", "xen-blkfront"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Distro.Initramfs != "dracut" {
		t.Errorf("Initramfs = %q, want dracut", c.Distro.Initramfs)
	}
	if got, _ := readTreeEntry(t, root, dracutConf); !strings.Contains(got, `add_drivers+=" nvme ena xen-blkfront "`) {
		t.Errorf("%s = %q", dracutConf, got)
	}
	if got, _ := readTreeEntry(t, root, firstBootScript); !strings.Contains(got, "img=/boot/initrd.img-$kver") || !strings.Contains(got, "lsinitrd") {
		t.Errorf("first-boot script for Debian with dracut:\n%s", got)
	}

	// Neither: a warning, and no first-boot action.
	root = t.TempDir()
	delete(tr, "etc/dracut.conf.d/")
	writeTree(t, root, tr, nil)
	if c, err = (Linux{}).Prepare(ctx, root, Options{}); err != nil {
		t.Fatal(err)
	}
	checkWarnings(t, c.Warnings, []string{"found neither /etc/initramfs-tools nor dracut"}, false)
	if len(c.FirstBoot) != 0 {
		t.Errorf("FirstBoot = %+v, want none", c.FirstBoot)
	}
}
