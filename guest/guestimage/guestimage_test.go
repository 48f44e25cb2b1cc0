package guestimage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRecipeHash(t *testing.T) {
	lvm, ext4 := DebianVMware(LayoutLVM), DebianVMware(LayoutExt4)
	if lvm.Hash() != DebianVMware(LayoutLVM).Hash() {
		t.Error("the same recipe hashes differently twice")
	}
	if lvm.Hash() == ext4.Hash() {
		t.Error("the two layouts share a hash")
	}
	if lvm.baseHash() != ext4.baseHash() {
		t.Error("the two layouts need two debootstraps; they should share one")
	}
	changed := DebianVMware(LayoutLVM)
	changed.Packages = append(slices.Clone(changed.Packages), "openssh-server")
	if changed.Hash() == lvm.Hash() || changed.baseHash() == lvm.baseHash() {
		t.Error("adding a package does not change the hashes")
	}
	changed = DebianVMware(LayoutLVM)
	changed.Address = "10.0.0.5/24"
	if changed.Hash() == lvm.Hash() {
		t.Error("changing the address does not change the hash")
	}
	if changed.baseHash() != lvm.baseHash() {
		t.Error("changing the address changes the debootstrapped tree's hash")
	}
	vg := lvm.volumeGroup()
	if !strings.HasPrefix(vg, "dg") || len(vg) != 12 || strings.Contains(vg, "-") {
		t.Errorf("volume group %q: want dg and 10 hex digits, no hyphen (it would double in /dev/mapper)", vg)
	}
	if vg == ext4.volumeGroup() {
		t.Error("two recipes share a volume group name")
	}
}

func TestDebianVMwareRecipe(t *testing.T) {
	for _, layout := range []Layout{LayoutLVM, LayoutExt4} {
		r := DebianVMware(layout)
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", layout, err)
		}
		for _, m := range []string{"vmw_pvscsi", "mptspi", "ahci", "ext4"} {
			if !slices.Contains(r.InitramfsModules, m) {
				t.Errorf("%s: initramfs lacks %s", layout, m)
			}
		}
		for _, m := range r.InitramfsModules {
			if strings.HasPrefix(m, "nvme") {
				t.Errorf("%s: initramfs holds %s: the negative control would boot", layout, m)
			}
		}
		for _, p := range []string{"linux-image-amd64", "grub-pc", "open-vm-tools", "lvm2"} {
			if !slices.Contains(r.Packages, p) {
				t.Errorf("%s: packages lack %s", layout, p)
			}
		}
	}
	if !slices.Contains(DebianVMware(LayoutLVM).InitramfsModules, "dm_mod") {
		t.Error("LVM layout's initramfs lacks dm_mod")
	}
}

func TestRecipeValidate(t *testing.T) {
	for name, edit := range map[string]func(*Recipe){
		"no suite":       func(r *Recipe) { r.Suite = "" },
		"unknown layout": func(r *Recipe) { r.Layout = "zfs" },
		"tiny disk":      func(r *Recipe) { r.DiskMiB = 600 },
		"no address":     func(r *Recipe) { r.Address = "" },
	} {
		r := DebianVMware(LayoutLVM)
		edit(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAptMirror(t *testing.T) {
	for _, tc := range []struct {
		dir, suite, want string
	}{
		{"apt-deb822", "bookworm", "http://deb.debian.org/debian"},
		{"apt-deb822", "bookworm-security", "http://deb.debian.org/debian-security"},
		{"apt-oneline", "bookworm", "http://mirror.example.invalid/debian"},
	} {
		got, err := AptMirror(filepath.Join("testdata", tc.dir), tc.suite)
		if err != nil || got != tc.want {
			t.Errorf("AptMirror(%s, %s) = %q, %v; want %q", tc.dir, tc.suite, got, err, tc.want)
		}
	}
	for _, dir := range []string{"apt-none", "does-not-exist"} {
		if got, err := AptMirror(filepath.Join("testdata", dir), "bookworm"); !errors.Is(err, ErrNoMirror) {
			t.Errorf("AptMirror(%s) = %q, %v; want ErrNoMirror", dir, got, err)
		}
	}
}

func TestParseSegments(t *testing.T) {
	out := "  root,/dev/loop0p2:32-766\n  swap,/dev/loop0p2:0-31\n  split,/dev/loop0p2:800-810 /dev/loop0p2:900-910\n"
	segs, err := parseSegments(out)
	if err != nil {
		t.Fatal(err)
	}
	if segs["root"] != (segment{32, 766}) || segs["swap"] != (segment{0, 31}) {
		t.Errorf("segments %v", segs)
	}
	if _, ok := segs["split"]; ok {
		t.Error("a volume of two segments was taken as one")
	}
	for _, bad := range []string{"root", "root,/dev/loop0p2:9-3", "root,/dev/loop0p2:x-3"} {
		if _, err := parseSegments(bad); err == nil {
			t.Errorf("parseSegments(%q) accepted", bad)
		}
	}
}

func TestMissingToolsError(t *testing.T) {
	err := error(&MissingToolsError{Missing: []Tool{
		{"debootstrap", "debootstrap"}, {"lvm", "lvm2"}, {"pvs", "lvm2"},
	}, NotRoot: true})
	if !errors.Is(err, ErrMissingTools) {
		t.Error("not ErrMissingTools")
	}
	msg := err.Error()
	for _, want := range []string{"debootstrap, lvm, pvs", "apt-get install -y debootstrap lvm2)", "root"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
}

func TestQEMUArgs(t *testing.T) {
	nvme, err := qemuArgs("/cache/a,b/disk.raw", BusNVMe, BootOptions{MemoryMiB: 512, Serial: "vol0abc"})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(nvme, " ")
	for _, want := range []string{"-accel tcg", "file=/cache/a,,b/disk.raw,", "snapshot=on", "nvme,drive=disk0,serial=vol0abc", "-m 512", "virtio-net-pci"} {
		if !strings.Contains(line, want) {
			t.Errorf("NVMe command line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(line, "pvscsi") {
		t.Errorf("NVMe command line has a PVSCSI controller: %s", line)
	}
	pv, err := qemuArgs("/d.raw", BusPVSCSI, BootOptions{MemoryMiB: 512})
	if err != nil {
		t.Fatal(err)
	}
	line = strings.Join(pv, " ")
	for _, want := range []string{"-device pvscsi", "scsi-hd,drive=disk0", "slot=192", "vmxnet3", "acpi-pci-hotplug-with-bridge-support=off"} {
		if !strings.Contains(line, want) {
			t.Errorf("PVSCSI command line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(line, "nvme") {
		t.Errorf("PVSCSI command line has NVMe: %s", line)
	}
	if _, err := qemuArgs("/d.raw", "ide", BootOptions{}); err == nil {
		t.Error("unknown bus accepted")
	}
}

func TestMachineArgs(t *testing.T) {
	args, err := Machine{
		Accel: "kvm", VCPUs: 2, MemoryMiB: 2048, ConsoleFile: "/run/i-1,x.console",
		Disks: []Disk{
			{Path: "/v/vol-1.raw", Bus: BusNVMe, Serial: "vol1"},
			{Path: "/v/vol-2.raw", Bus: BusNVMe, Serial: "vol2"},
		},
		Forwards: []Forward{{HostPort: 4022, GuestPort: 22}, {HostAddr: "0.0.0.0", HostPort: 4080, GuestPort: 80}},
	}.Args()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-accel kvm", "-smp 2", "-m 2048", "file,id=console0,append=on,path=/run/i-1,,x.console", "-serial chardev:console0",
		"file=/v/vol-1.raw,format=raw,if=none,id=disk0 ", "nvme,drive=disk0,serial=vol1,bootindex=0",
		"file=/v/vol-2.raw,format=raw,if=none,id=disk1 ", "nvme,drive=disk1,serial=vol2 ",
		"user,id=net0,hostfwd=tcp:127.0.0.1:4022-:22,hostfwd=tcp:0.0.0.0:4080-:80", "virtio-net-pci", "slot=5",
	} {
		if !strings.Contains(line+" ", want) {
			t.Errorf("command line lacks %q: %s", want, line)
		}
	}
	for _, bad := range []string{"snapshot=on", "-no-reboot", "-serial stdio"} {
		if strings.Contains(line, bad) {
			t.Errorf("command line has %q: %s", bad, line)
		}
	}
	if _, err := (Machine{}).Args(); err == nil {
		t.Error("a machine without disks accepted")
	}
	if _, err := (Machine{Disks: []Disk{{Path: "/a", Bus: BusNVMe}, {Path: "/b", Bus: BusPVSCSI}}}).Args(); err == nil {
		t.Error("a machine with two buses accepted")
	}
}

func TestClassify(t *testing.T) {
	for line, want := range map[string]Outcome{
		"\x1b[0mDRAAS-GUEST-READY root=/dev/sda1 addrs=ens192=192.168.50.10/24 \r\n":      OutcomeReady,
		"ALERT!  /dev/mapper/dg0123456789-root does not exist.  Dropping to a shell!\r\n": OutcomeRootNotFound,
		"[    4.2] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n":          OutcomePanic,
		"Gave up waiting for root file system device.  Common problems:\r\n":              "",
		"Debian GNU/Linux 12 draas-debian12 ttyS0\r\n":                                    "",
	} {
		if got := classify(line); got != want {
			t.Errorf("classify(%q) = %q, want %q", line, got, want)
		}
	}
	if got := cleanLine("\x1b[0;1;31mALERT!\x1b[0m  x\r\n"); got != "ALERT!  x" {
		t.Errorf("cleanLine = %q", got)
	}
}

func TestConsoleTranscripts(t *testing.T) {
	// Real consoles of the images booted by TestGuestBoot (kept in testdata):
	// the classification must hold on them, not only on made-up lines.
	for file, want := range map[string]Outcome{
		"console-lvm-nvme.txt":    OutcomeRootNotFound,
		"console-lvm-pvscsi.txt":  OutcomeReady,
		"console-ext4-nvme.txt":   OutcomeRootNotFound,
		"console-ext4-pvscsi.txt": OutcomeReady,
	} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		var got Outcome
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if got = classify(line); got != "" {
				break
			}
		}
		if got != want {
			t.Errorf("%s: %q, want %q", file, got, want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Errorf("unescapeMount = %q", got)
	}
}
