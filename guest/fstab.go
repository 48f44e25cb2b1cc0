package guest

import (
	"fmt"
	"slices"
	"strings"
)

// fstab is /etc/fstab, parsed so that it can be written back byte for byte:
// every line keeps its text, and an entry's fields keep the whitespace
// between them, so that only the fields we change change.
type fstab struct {
	lines []fstabLine
}

// fstabLine is one line. For an entry, toks alternates whitespace and
// fields: toks[0] is the leading whitespace, toks[1] the first field,
// toks[2] the whitespace after it, and so on; the last token is trailing
// whitespace (possibly empty). Comments and blank lines have no tokens.
type fstabLine struct {
	raw  string
	toks []string
}

func isFstabSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

// parseFstab parses data. It accepts anything: lines it does not understand
// (comments, blank lines, entries with fewer than two fields) are kept as
// they are and never changed.
func parseFstab(data []byte) *fstab {
	f := &fstab{}
	for _, raw := range strings.Split(string(data), "\n") {
		l := fstabLine{raw: raw}
		if t := strings.TrimLeft(raw, " \t\r\v\f"); t != "" && t[0] != '#' {
			l.toks = tokenize(raw)
		}
		f.lines = append(f.lines, l)
	}
	return f
}

// tokenize splits s into alternating whitespace and field tokens, starting
// and ending with (possibly empty) whitespace.
func tokenize(s string) []string {
	var toks []string
	i := 0
	for {
		j := i
		for j < len(s) && isFstabSpace(s[j]) {
			j++
		}
		toks = append(toks, s[i:j])
		if j == len(s) {
			return toks
		}
		k := j
		for k < len(s) && !isFstabSpace(s[k]) {
			k++
		}
		toks = append(toks, s[j:k])
		i = k
	}
}

// bytes returns the file's text.
func (f *fstab) bytes() []byte {
	var b strings.Builder
	for i, l := range f.lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l.text())
	}
	return []byte(b.String())
}

func (l *fstabLine) text() string {
	if l.toks == nil {
		return l.raw
	}
	return strings.Join(l.toks, "")
}

// nfields returns the number of fields of an entry line.
func (l *fstabLine) nfields() int { return len(l.toks) / 2 }

// field returns the i-th field (0-based), or "".
func (l *fstabLine) field(i int) string {
	if i < l.nfields() {
		return l.toks[2*i+1]
	}
	return ""
}

func (l *fstabLine) setField(i int, v string) { l.toks[2*i+1] = v }

// appendField adds a field after the last one, separated by one space.
func (l *fstabLine) appendField(v string) {
	n := len(l.toks)
	trail := l.toks[n-1]
	l.toks = append(l.toks[:n-1], " ", v, trail)
}

// deviceNamePrefixes are the spec prefixes that name a device by where it
// is attached, which changes on EC2 (Nitro presents EBS volumes as NVMe
// devices, /dev/nvme0n1p1 …).
var deviceNamePrefixes = []string{"/dev/sd", "/dev/hd", "/dev/vd", "/dev/xvd", "/dev/disk/by-path/", "/dev/disk/by-id/"}

// stableByID are /dev/disk/by-id names that do not depend on the hardware:
// device-mapper, LVM and MD RAID identities.
var stableByID = []string{"dm-", "lvm-", "md-"}

func isDeviceName(spec string) bool {
	for _, p := range deviceNamePrefixes {
		if strings.HasPrefix(spec, p) && len(spec) > len(p) {
			if p == "/dev/disk/by-id/" {
				for _, s := range stableByID {
					if strings.HasPrefix(spec[len(p):], s) {
						return false
					}
				}
			}
			return true
		}
	}
	return false
}

// isDiskSpec reports whether spec names a block device (a path under /dev
// or a tag such as UUID=), as opposed to a network share, a swap file or a
// bind mount's source.
func isDiskSpec(spec string) bool {
	for _, p := range []string{"/dev/", "UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=", "ID="} {
		if strings.HasPrefix(spec, p) {
			return true
		}
	}
	return false
}

// pseudoFS are filesystem types that are not on a disk: they never get
// nofail.
var pseudoFS = []string{"proc", "sysfs", "tmpfs", "devpts", "devtmpfs", "securityfs", "cgroup", "cgroup2",
	"debugfs", "tracefs", "hugetlbfs", "mqueue", "pstore", "bpf", "configfs", "efivarfs", "fusectl", "binfmt_misc", "rpc_pipefs", "none"}

// fstabEdit is what prepareFstab did to one entry, for the record and for
// warnings.
type fstabEdit struct {
	spec, mount string
	uuid        string // the new spec, if the spec was rewritten
	nofail      bool   // nofail was added
	unresolved  bool   // a device name with no UUID in the map
}

// prepare rewrites device-name specs that uuids maps, and adds nofail to
// every mount of a block device other than / and /boot (network shares,
// swap files and bind mounts are left alone). Comments, blank lines and lines
// it does not understand are kept; entries already using UUID=, LABEL=,
// PARTUUID= or other stable names keep their spec. It returns what it did.
func (f *fstab) prepare(uuids map[string]string) []fstabEdit {
	var edits []fstabEdit
	for i := range f.lines {
		l := &f.lines[i]
		if l.nfields() < 2 {
			continue
		}
		spec, mount, vfs := l.field(0), l.field(1), l.field(2)
		ed := fstabEdit{spec: spec, mount: mount}
		if isDeviceName(spec) {
			if u, ok := uuids[spec]; ok {
				ed.uuid = uuidSpec(u)
				l.setField(0, ed.uuid)
			} else {
				ed.unresolved = true
			}
		}
		if mount != "/" && mount != "/boot" && l.nfields() >= 3 && isDiskSpec(l.field(0)) && !slices.Contains(pseudoFS, vfs) {
			switch {
			case l.nfields() == 3:
				l.appendField("nofail")
				ed.nofail = true
			case !slices.Contains(strings.Split(l.field(3), ","), "nofail"):
				l.setField(3, l.field(3)+",nofail")
				ed.nofail = true
			}
		}
		if ed.uuid != "" || ed.nofail || ed.unresolved {
			edits = append(edits, ed)
		}
	}
	return edits
}

// uuidSpec returns the fstab spec for a value of Options.DeviceUUIDs.
func uuidSpec(u string) string {
	for _, tag := range []string{"UUID=", "PARTUUID=", "LABEL=", "PARTLABEL="} {
		if strings.HasPrefix(u, tag) {
			return u
		}
	}
	return "UUID=" + u
}

// prepareFstab rewrites /etc/fstab (see fstab.prepare) and warns of the
// root and /boot mounts it could not give a UUID.
func prepareFstab(e *editor, o Options) error {
	p, data, ok, err := e.read("etc/fstab")
	if err != nil {
		return err
	}
	if !ok {
		e.warnf("%s does not exist: the guest mounts only what its kernel command line names", e.g.host("etc/fstab"))
		return nil
	}
	f := parseFstab(data)
	var whys []string
	for _, ed := range f.prepare(o.DeviceUUIDs) {
		switch {
		case ed.uuid != "":
			whys = append(whys, fmt.Sprintf("%s: %s → %s", ed.mount, ed.spec, ed.uuid))
		case ed.unresolved && (ed.mount == "/" || ed.mount == "/boot"):
			e.warnf("%s: %s is mounted from %s, a device name that does not exist on EC2 Nitro (disks are /dev/nvme*): pass its UUID in Options.DeviceUUIDs (blkid %s), or the guest may stop in emergency mode",
				e.g.host(p), ed.mount, ed.spec, ed.spec)
		}
		if ed.nofail {
			whys = append(whys, ed.mount+": nofail")
		}
	}
	out := f.bytes()
	if string(out) == string(data) {
		return nil
	}
	return e.write(p, out, 0o644, "fstab: "+strings.Join(whys, "; "))
}
