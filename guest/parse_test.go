package guest

import (
	"slices"
	"strings"
	"testing"
)

func TestFstabPrepare(t *testing.T) {
	uuids := map[string]string{"/dev/sda1": "abcd-1234", "/dev/sdb1": "PARTUUID=0a0b0c0d-01", "/dev/xvdf": "ffff"}
	for _, tc := range []struct{ in, want string }{
		{"/dev/sda1 / ext4 defaults 0 1", "UUID=abcd-1234 / ext4 defaults 0 1"},
		{"/dev/sda1\t/\text4\tdefaults\t0\t1\n", "UUID=abcd-1234\t/\text4\tdefaults\t0\t1\n"},
		{"  /dev/sdb1   /data  xfs   noatime  0 0  ", "  PARTUUID=0a0b0c0d-01   /data  xfs   noatime,nofail  0 0  "},
		{"/dev/xvdf /srv ext4", "UUID=ffff /srv ext4 nofail"},
		{"/dev/xvdf /srv ext4\r", "UUID=ffff /srv ext4 nofail\r"},
		{"/dev/sdc1 /data ext4 defaults 0 2", "/dev/sdc1 /data ext4 defaults,nofail 0 2"},
		{"/dev/sdc1 /boot ext4 defaults 0 2", "/dev/sdc1 /boot ext4 defaults 0 2"},
		{"UUID=x /data ext4 defaults,nofail 0 2", "UUID=x /data ext4 defaults,nofail 0 2"},
		{"LABEL=data /data ext4 nofail,defaults 0 2", "LABEL=data /data ext4 nofail,defaults 0 2"},
		{"PARTUUID=p /data ext4 defaults 0 2", "PARTUUID=p /data ext4 defaults,nofail 0 2"},
		{"/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:1:0-part1 /data ext4 defaults 0 2", "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:1:0-part1 /data ext4 defaults,nofail 0 2"},
		{"/dev/disk/by-id/dm-name-vg-root / xfs defaults 0 0", "/dev/disk/by-id/dm-name-vg-root / xfs defaults 0 0"},
		{"tmpfs /tmp tmpfs defaults 0 0", "tmpfs /tmp tmpfs defaults 0 0"},
		{"proc /proc proc defaults 0 0", "proc /proc proc defaults 0 0"},
		{"nfs.example.com:/export /mnt/nfs nfs defaults 0 0", "nfs.example.com:/export /mnt/nfs nfs defaults 0 0"},
		{"/srv/a /srv/b none bind 0 0", "/srv/a /srv/b none bind 0 0"},
		{"/swapfile none swap sw 0 0", "/swapfile none swap sw 0 0"},
		{"# /dev/sda1 / ext4 defaults 0 1", "# /dev/sda1 / ext4 defaults 0 1"},
		{"   # indented comment", "   # indented comment"},
		{"/dev/sda1", "/dev/sda1"},
		{"", ""},
		{"\n\n", "\n\n"},
		{"/dev/sda1 / ext4 defaults 0 1 # trailing", "UUID=abcd-1234 / ext4 defaults 0 1 # trailing"},
		{"/dev/sd /data ext4 defaults 0 0", "/dev/sd /data ext4 defaults,nofail 0 0"},
	} {
		f := parseFstab([]byte(tc.in))
		if got := string(f.bytes()); got != tc.in {
			t.Errorf("parse(%q) round trip = %q", tc.in, got)
		}
		f.prepare(uuids)
		if got := string(f.bytes()); got != tc.want {
			t.Errorf("prepare(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestShellVars(t *testing.T) {
	for _, tc := range []struct {
		line, key, value string
	}{
		{`BOOTPROTO=static`, "BOOTPROTO", "static"},
		{`BOOTPROTO="static"`, "BOOTPROTO", "static"},
		{`BOOTPROTO='static'`, "BOOTPROTO", "static"},
		{`  export NAME="a \"b\" \$c \d"  # comment`, "NAME", `a "b" $c \d`},
		{`PRETTY_NAME="Ubuntu 22.04.4 LTS"`, "PRETTY_NAME", "Ubuntu 22.04.4 LTS"},
		{`X=a b`, "", ""},
		{`X="unterminated`, "", ""},
		{`X=$(reboot)`, "", ""},
		{`# X=1`, "", ""},
		{`1X=1`, "", ""},
		{`X=`, "X", ""},
		{`X=1` + "\r", "X", "1"},
	} {
		l := parseShellLine(tc.line)
		if l.key != tc.key || l.value != tc.value {
			t.Errorf("parseShellLine(%q) = %q=%q, want %q=%q", tc.line, l.key, l.value, tc.key, tc.value)
		}
	}
	v := parseShellVars([]byte("# c\nA='x y'\nB=\"q\"\n"))
	v.set("A", "it's")
	v.set("B", "dhcp")
	v.set("C", "a b")
	if got, want := string(v.bytes()), "# c\nA=\"it's\"\nB=\"dhcp\"\nC=\"a b\"\n"; got != want {
		t.Errorf("set = %q, want %q", got, want)
	}
	for _, l := range v.lines {
		if l.key != "" {
			if re := parseShellLine(l.raw); re.key != l.key || re.value != l.value {
				t.Errorf("%q does not parse back to %q=%q", l.raw, l.key, l.value)
			}
		}
	}
}

func TestIfcfgToDHCP(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		suse     bool
	}{
		{"BOOTPROTO=dhcp\nDEVICE=ens192\n", "BOOTPROTO=dhcp\nDEVICE=ens192\n", false},
		{"BOOTPROTO=dhcp\nHWADDR=00:50:56:00:00:01\n", "BOOTPROTO=dhcp\n", false},
		{"DEVICE=eth0\nIPADDR=10.0.0.2\nNETMASK=255.255.255.0\n", "DEVICE=eth0\nBOOTPROTO=dhcp\n", false},
		{"BOOTPROTO=\"static\"\nIPADDR0=10.0.0.2\nPREFIX0=24\nGATEWAY0=10.0.0.1\nIPADDR1=10.0.1.2\n", "BOOTPROTO=\"dhcp\"\n", false},
		{"BOOTPROTO=none\nMASTER=bond0\nSLAVE=yes\n", "BOOTPROTO=none\nMASTER=bond0\nSLAVE=yes\n", false},
		{"BOOTPROTO='static'\nIPADDR_1='10.0.0.3/24'\nLABEL_1='x'\nSTARTMODE='auto'\n", "BOOTPROTO='dhcp'\nLABEL_1='x'\nSTARTMODE='auto'\n", true},
		{"BOOTPROTO='dhcp'\nLLADDR='00:50:56:00:00:01'\n", "BOOTPROTO='dhcp'\n", true},
	} {
		v := parseShellVars([]byte(tc.in))
		ifcfgToDHCP(v, tc.suse)
		if got := string(v.bytes()); got != tc.want {
			t.Errorf("ifcfgToDHCP(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestKeyfileToDHCP(t *testing.T) {
	in := `[connection]
id=ens192
uuid=4c2a
type=ethernet
interface-name=ens192

[ethernet]
mac-address=00:50:56:8A:12:34

[ipv4]
address1=192.168.10.21/24,192.168.10.1
dns=192.168.10.2;
method=manual

[ipv6]
addr-gen-mode=eui64
method = manual
address1=fd00::5/64
# comment=kept
`
	want := `[connection]
id=ens192
uuid=4c2a
type=ethernet
interface-name=ens192

[ethernet]

[ipv4]
dns=192.168.10.2;
method=auto

[ipv6]
addr-gen-mode=eui64
method = auto
# comment=kept
`
	got, changed := keyfileToDHCP([]byte(in))
	if !changed || string(got) != want {
		t.Errorf("keyfileToDHCP = %v\n%s\nwant:\n%s", changed, got, want)
	}
	if _, changed := keyfileToDHCP(got); changed {
		t.Error("second keyfileToDHCP changed the file")
	}
}

func TestNetplanStatic(t *testing.T) {
	for in, want := range map[string]bool{
		ubuntuNetplan:       true,
		netplanCatchAllText: false,
		"network:\n  version: 2\n  ethernets:\n    ens192:\n      dhcp4: true\n":                          false,
		"network:\n  version: 2\n  bonds:\n    bond0:\n      addresses: [10.0.0.2/24]\n":                  true,
		"network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: false\n      gateway4: 10.0.0.1\n": true,
		"# only a comment\n": false,
	} {
		got, err := netplanStatic([]byte(in))
		if err != nil || got != want {
			t.Errorf("netplanStatic(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := netplanStatic([]byte("network: [")); err == nil {
		t.Error("netplanStatic accepted broken YAML")
	}
}

func TestInterfacesToDHCP(t *testing.T) {
	out, changed, names := interfacesToDHCP([]byte(debianInterfaces))
	if !changed || !slices.Equal(names, []string{"lo", "ens192", "ens192"}) {
		t.Errorf("changed %v, names %q", changed, names)
	}
	if strings.Contains(string(out), "address 10.30.0.7") || strings.Contains(string(out), "inet static") {
		t.Errorf("static configuration left:\n%s", out)
	}
	// An inet6 static stanza after an inet one keeps its options.
	in := "iface eth0 inet static\n  address 10.0.0.2/24\niface eth0 inet6 static\n  address fd00::2/64\n"
	out, _, _ = interfacesToDHCP([]byte(in))
	if want := "iface eth0 inet dhcp\niface eth0 inet6 static\n  address fd00::2/64\n"; string(out) != want {
		t.Errorf("interfacesToDHCP(%q) = %q, want %q", in, out, want)
	}
}

func TestHasModule(t *testing.T) {
	list := "kernel/drivers/nvme/host/nvme.ko.xz: kernel/drivers/nvme/host/nvme-core.ko.xz\nkernel/drivers/net/ethernet/amazon/ena/ena.ko\n"
	for m, want := range map[string]bool{"nvme": true, "nvme_core": true, "nvme-core": true, "ena": true, "en": false, "nvme_fabrics": false, "xen-blkfront": false} {
		if got := hasModule(list, m); got != want {
			t.Errorf("hasModule(%q) = %v, want %v", m, got, want)
		}
	}
}

func TestResolve(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, tree{
		"etc/a":        "-> b/c",
		"etc/b/c":      "x",
		"etc/loop":     "-> loop",
		"etc/up":       "-> ../..",
		"etc/abs":      "-> /etc/b/c",
		"etc/dirlink":  "-> b",
		"usr/lib/x":    "y",
		"lib":          "-> usr/lib",
		"etc/dotdot":   "-> ../usr/./lib/../lib/x",
		"etc/dangling": "-> nothere",
	}, nil)
	g, err := openGuest(root)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for name, want := range map[string]string{
		"etc/a":          "etc/b/c",
		"etc/dirlink/c":  "etc/b/c",
		"lib/x":          "usr/lib/x",
		"etc/dotdot":     "usr/lib/x",
		"etc/dangling":   "etc/nothere",
		"etc/new/file":   "etc/new/file",
		"/etc/b/c":       "etc/b/c",
		"etc/../etc/b/c": "etc/b/c",
	} {
		if got, err := g.resolve(name, true); err != nil || got != want {
			t.Errorf("resolve(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if got, err := g.resolve("etc/a", false); err != nil || got != "etc/a" {
		t.Errorf("resolve(etc/a, not last) = %q, %v", got, err)
	}
	for _, name := range []string{"etc/loop", "etc/up/x", "etc/abs", "../x"} {
		if got, err := g.resolve(name, true); err == nil {
			t.Errorf("resolve(%q) = %q, want an error", name, got)
		}
	}
}
