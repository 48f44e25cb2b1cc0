package vsphere

import (
	"strings"
	"testing"
)

func TestFlatExtentOf(t *testing.T) {
	for _, tc := range []struct {
		name, desc, want, err string
	}{
		{name: "vmfs thin", want: "db01-flat.vmdk", desc: `# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=ffffffff
createType="vmfs"

# Extent description
RW 8388608 VMFS "db01-flat.vmdk"

# The Disk Data Base
#DDB
ddb.thinProvisioned = "1"
`},
		{name: "monolithicFlat", want: "a b-flat.vmdk", desc: "createType=\"monolithicFlat\"\nRW 2048 FLAT \"a b-flat.vmdk\" 0\n"},
		{name: "vcsim", want: "vm-flat.vmdk", desc: "# Disk DescriptorFile\nversion=1\nCID=00000000\nparentCID=00000000\ncreateType=\"vmfs\"\n\nRW 8192 VMFS \"vm-flat.vmdk\"\n\x00\x00"},
		{name: "snapshot delta", err: "delta disk", desc: `createType="vmfsSparse"
parentFileNameHint="db01.vmdk"
RW 8388608 VMFSSPARSE "db01-000001-delta.vmdk"
`},
		{name: "seSparse", err: "not a flat extent", desc: "createType=\"seSparse\"\nRW 8388608 SESPARSE \"db01-sesparse.vmdk\"\n"},
		{name: "vsan", err: "not a flat extent", desc: "createType=\"vsan\"\nRW 8388608 VSANSPARSE \"vsan://52a1\"\n"},
		{name: "rdm", err: "not a flat extent", desc: "createType=\"vmfsRawDeviceMap\"\nRW 8388608 VMFSRDM \"db01-rdm.vmdk\"\n"},
		{name: "split", err: "2 extents", desc: "RW 4192256 FLAT \"x-f001.vmdk\" 0\nRW 4192256 FLAT \"x-f002.vmdk\" 0\n"},
		{name: "offset", err: "starts at sector 128", desc: "RW 2048 FLAT \"x.img\" 128\n"},
		{name: "no extent", err: "no extent", desc: "version=1\n"},
		{name: "sparse file", err: "monolithic sparse", desc: "KDMV\x01\x00\x00\x00"},
		{name: "path", err: "outside", desc: "RW 2048 VMFS \"../other/x-flat.vmdk\"\n"},
		{name: "malformed", err: "malformed", desc: "RW lots VMFS \"x-flat.vmdk\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := flatExtentOf([]byte(tc.desc))
			switch {
			case tc.err == "" && (err != nil || got != tc.want):
				t.Errorf("flatExtentOf = %q, %v; want %q", got, err, tc.want)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("flatExtentOf = %q, %v; want an error mentioning %q", got, err, tc.err)
			}
		})
	}
}

func TestContentRange(t *testing.T) {
	for _, tc := range []struct {
		h           string
		first, last int64
		ok          bool
	}{
		{"bytes 0-99/1000", 0, 99, true},
		{"bytes 100-100/*", 100, 100, true},
		{"bytes */1000", 0, 0, false},
		{"bytes 9-3/10", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"", 0, 0, false},
	} {
		first, last, err := contentRange(tc.h)
		if (err == nil) != tc.ok || first != tc.first || last != tc.last {
			t.Errorf("contentRange(%q) = %d, %d, %v", tc.h, first, last, err)
		}
	}
}

func TestIsChangeID(t *testing.T) {
	for id, want := range map[string]bool{
		"52 3c 3d 4e 5f 60 71 82-93 a4 b5 c6 d7 e8 f9 0a/17": true,
		"52 0d vm-1 2000/3": true,
		"*":                 false,
		"":                  false,
		"/4":                false,
		"52 aa/":            false,
		"52 aa/x":           false,
	} {
		if isChangeID(id) != want {
			t.Errorf("isChangeID(%q) = %v, want %v", id, !want, want)
		}
	}
}
