package guest

import (
	"strings"
	"testing"
)

// Seeds live in testdata/fuzz/Fuzz*; `go test -fuzz=FuzzFstab ./guest/`
// searches further.

// commentLines returns the lines of text that are comments or blank.
func commentLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			out = append(out, l)
		}
	}
	return out
}

func equalLines(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n") && len(a) == len(b)
}

func FuzzFstab(f *testing.F) {
	f.Add([]byte(rhelFstab))
	f.Add([]byte(ubuntuFstab))
	f.Add([]byte("/dev/sda1 / ext4"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := parseFstab(data)
		if got := fs.bytes(); string(got) != string(data) {
			t.Fatalf("round trip changed %q to %q", data, got)
		}
		uuids := map[string]string{"/dev/sda1": "1111-2222", "/dev/sdb1": "LABEL=data"}
		fs.prepare(uuids)
		out := string(fs.bytes())
		in := strings.Split(string(data), "\n")
		got := strings.Split(out, "\n")
		if len(in) != len(got) {
			t.Fatalf("prepare changed the number of lines: %q → %q", data, out)
		}
		for i := range in {
			if t2 := strings.TrimSpace(in[i]); (t2 == "" || strings.HasPrefix(t2, "#")) && in[i] != got[i] {
				t.Fatalf("prepare changed comment line %d: %q → %q", i, in[i], got[i])
			}
			if n := len(strings.Fields(in[i])); n < 2 && in[i] != got[i] {
				t.Fatalf("prepare changed a line it cannot understand: %q → %q", in[i], got[i])
			}
		}
		again := parseFstab([]byte(out))
		again.prepare(uuids)
		if string(again.bytes()) != out {
			t.Fatalf("prepare is not idempotent: %q → %q", out, again.bytes())
		}
	})
}

func FuzzIfcfg(f *testing.F) {
	f.Add([]byte(rhelIfcfg), false)
	f.Add([]byte(suseTree()["etc/sysconfig/network/ifcfg-eth0"]), true)
	f.Add([]byte("# comment\nBOOTPROTO=\"none\" # static\nIPADDR0='10.0.0.2'\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, suse bool) {
		v := parseShellVars(data)
		if got := v.bytes(); string(got) != string(data) {
			t.Fatalf("round trip changed %q to %q", data, got)
		}
		ifcfgToDHCP(v, suse)
		out := string(v.bytes())
		// Lines that are not assignments (comments, blank lines, shell we
		// do not interpret) are kept, in order.
		keep := func(text string) []string {
			var ls []string
			for _, l := range parseShellVars([]byte(text)).lines {
				if l.key == "" {
					ls = append(ls, l.raw)
				}
			}
			// "" and "X=1" both end in an empty line once X=1 is removed.
			if n := len(ls); n > 0 && ls[n-1] == "" {
				ls = ls[:n-1]
			}
			return ls
		}
		if a, b := keep(string(data)), keep(out); !equalLines(a, b) {
			t.Fatalf("non-assignment lines changed: %q → %q", a, b)
		}
		again := parseShellVars([]byte(out))
		if ifcfgToDHCP(again, suse) {
			t.Fatalf("ifcfgToDHCP is not idempotent on %q: %q", out, again.bytes())
		}
	})
}

func FuzzInterfaces(f *testing.F) {
	f.Add([]byte(debianInterfaces))
	f.Add([]byte("auto eth0\niface eth0 inet static\n address 10.0.0.2\n netmask 255.255.255.0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, changed, _ := interfacesToDHCP(data)
		if !changed && string(out) != string(data) {
			t.Fatalf("unchanged, yet %q became %q", data, out)
		}
		if a, b := commentLines(string(data)), commentLines(string(out)); !equalLines(a, b) {
			t.Fatalf("comments changed: %q → %q", a, b)
		}
		if again, changed, _ := interfacesToDHCP(out); changed || string(again) != string(out) {
			t.Fatalf("interfacesToDHCP is not idempotent: %q → %q", out, again)
		}
	})
}

func FuzzKeyfile(f *testing.F) {
	f.Add([]byte("[ipv4]\nmethod=manual\naddress1=10.0.0.2/24\n# c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, changed := keyfileToDHCP(data)
		if !changed && string(out) != string(data) {
			t.Fatalf("unchanged, yet %q became %q", data, out)
		}
		if a, b := commentLines(string(data)), commentLines(string(out)); !equalLines(a, b) {
			t.Fatalf("comments changed: %q → %q", a, b)
		}
		if again, changed := keyfileToDHCP(out); changed || string(again) != string(out) {
			t.Fatalf("keyfileToDHCP is not idempotent: %q → %q", out, again)
		}
	})
}
