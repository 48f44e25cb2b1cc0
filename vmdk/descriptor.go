package vmdk

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Geometry is a disk's CHS geometry as its descriptor records it
// (ddb.geometry.*). Guests booting from BIOS may rely on it; it does not
// affect the disk's size.
type Geometry struct {
	Cylinders int
	Heads     int
	Sectors   int
}

// descriptor is a parsed disk descriptor.
type descriptor struct {
	version    int
	cid        uint32
	parentCID  uint32
	createType string
	extents    []extentDesc
	// ddb holds the disk database, keys without the "ddb." prefix.
	ddb         map[string]string
	adapterType string
	geometry    Geometry
}

// extentDesc is one line of a descriptor's extent description.
type extentDesc struct {
	line    int
	access  string // RW, RDONLY or NOACCESS
	sectors uint64
	typ     string // FLAT, VMFS, SPARSE or ZERO
	file    string // relative to the descriptor's directory; empty for ZERO
	offset  uint64 // sectors into file, for FLAT and VMFS
}

// noParent is the parentCID of a disk without a parent.
const noParent = 0xffffffff

// createTypes maps the createType values Open reads to the extent types they
// may use. Delta disks (vmfsSparse, seSparse) and raw device mappings are
// not supported.
var createTypes = map[string][]string{
	"monolithicSparse":     {"SPARSE"},
	"streamOptimized":      {"SPARSE"},
	"twoGbMaxExtentSparse": {"SPARSE"},
	"monolithicFlat":       {"FLAT", "ZERO"},
	"twoGbMaxExtentFlat":   {"FLAT", "ZERO"},
	"vmfs":                 {"VMFS", "FLAT", "ZERO"},
	"vmfsThin":             {"VMFS", "FLAT", "ZERO"},
	"vmfsPreallocated":     {"VMFS", "FLAT", "ZERO"},
	"vmfsEagerZeroedThick": {"VMFS", "FLAT", "ZERO"},
}

// extentLine matches an extent description: access, size in sectors, type,
// and for all but ZERO a quoted file name and an optional offset.
var extentLine = regexp.MustCompile(`^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$`)

// parseDescriptor parses and validates descriptor text. Text after a NUL
// byte (the padding of an embedded descriptor) is ignored. Errors name the
// line or the field.
func parseDescriptor(text []byte) (*descriptor, error) {
	if i := bytes.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	if len(text) > maxDescriptorBytes {
		return nil, fmt.Errorf("descriptor: %d bytes, more than the supported %d", len(text), maxDescriptorBytes)
	}
	d := &descriptor{version: 1, parentCID: noParent, ddb: map[string]string{}}
	seen := map[string]bool{}
	for n, line := range strings.Split(string(text), "\n") {
		n++ // line numbers count from 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := extentLine.FindStringSubmatch(line); m != nil {
			e, err := parseExtent(n, m)
			if err != nil {
				return nil, err
			}
			d.extents = append(d.extents, e)
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("descriptor line %d: %q is neither key=value nor an extent (ACCESS SECTORS TYPE \"FILE\" [OFFSET])", n, truncate(line))
		}
		key = strings.TrimSpace(key)
		val = unquote(strings.TrimSpace(val))
		if seen[strings.ToLower(key)] {
			return nil, fmt.Errorf("descriptor line %d: %s is set twice", n, key)
		}
		seen[strings.ToLower(key)] = true
		if k, ok := strings.CutPrefix(key, "ddb."); ok {
			d.ddb[k] = val
			continue
		}
		var err error
		switch strings.ToLower(key) {
		case "version":
			d.version, err = strconv.Atoi(val)
			if err == nil && (d.version < 1 || d.version > 3) {
				err = fmt.Errorf("want 1, 2 or 3")
			}
		case "cid":
			d.cid, err = parseCID(val)
		case "parentcid":
			d.parentCID, err = parseCID(val)
		case "createtype":
			d.createType = val
		}
		if err != nil {
			return nil, fmt.Errorf("descriptor line %d: %s %q: %v", n, key, truncate(val), err)
		}
	}
	return d, d.validate()
}

// parseExtent decodes the submatches of extentLine.
func parseExtent(n int, m []string) (extentDesc, error) {
	e := extentDesc{line: n, access: m[1], typ: strings.ToUpper(m[3]), file: m[4]}
	var err error
	if e.sectors, err = strconv.ParseUint(m[2], 10, 64); err != nil || e.sectors > maxCapacitySectors {
		return e, fmt.Errorf("descriptor line %d: extent size %q sectors, want at most %d", n, m[2], uint64(maxCapacitySectors))
	}
	if m[5] != "" {
		if e.offset, err = strconv.ParseUint(m[5], 10, 64); err != nil || e.offset > maxCapacitySectors {
			return e, fmt.Errorf("descriptor line %d: extent offset %q sectors, want at most %d", n, m[5], uint64(maxCapacitySectors))
		}
	}
	switch e.typ {
	case "FLAT", "VMFS", "SPARSE":
		if e.file == "" {
			return e, fmt.Errorf("descriptor line %d: %s extent without a file name", n, e.typ)
		}
		if filepath.IsAbs(e.file) || slices.Contains(strings.Split(filepath.ToSlash(e.file), "/"), "..") {
			return e, fmt.Errorf("descriptor line %d: extent file %q must be a path relative to the descriptor's directory, without ..", n, e.file)
		}
		if e.typ == "SPARSE" && m[5] != "" {
			return e, fmt.Errorf("descriptor line %d: SPARSE extent with an offset", n)
		}
	case "ZERO":
		if e.file != "" {
			return e, fmt.Errorf("descriptor line %d: ZERO extent with a file name", n)
		}
	case "VMFSSPARSE", "SESPARSE":
		return e, fmt.Errorf("descriptor line %d: %s extents (delta disks) are not supported", n, e.typ)
	case "VMFSRDM", "VMFSRAW", "VMFSPASSTHROUGHRAWDEVICEMAP":
		return e, fmt.Errorf("descriptor line %d: %s extents (raw device mappings) are not supported", n, e.typ)
	default:
		return e, fmt.Errorf("descriptor line %d: extent type %q is unknown, want FLAT, VMFS, SPARSE or ZERO", n, m[3])
	}
	if e.access == "NOACCESS" {
		return e, fmt.Errorf("descriptor line %d: extent is NOACCESS", n)
	}
	return e, nil
}

// validate checks the descriptor as a whole and fills adapterType and
// geometry from the disk database.
func (d *descriptor) validate() error {
	if d.createType == "" {
		return fmt.Errorf("descriptor: createType is missing")
	}
	types, ok := createTypes[d.createType]
	if !ok {
		return fmt.Errorf("descriptor: createType %q is not supported; Open reads monolithicSparse, streamOptimized, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat and vmfs flat disks", truncate(d.createType))
	}
	if d.parentCID != noParent {
		return fmt.Errorf("descriptor: parentCID %08x: delta disks (with a parent) are not supported", d.parentCID)
	}
	if len(d.extents) == 0 {
		return fmt.Errorf("descriptor: no extents")
	}
	var total uint64
	for _, e := range d.extents {
		if !slices.Contains(types, e.typ) {
			return fmt.Errorf("descriptor line %d: extent type %s does not belong in a %s disk", e.line, e.typ, d.createType)
		}
		total += e.sectors
		if total > maxCapacitySectors {
			return fmt.Errorf("descriptor: extents add up to more than %d sectors", uint64(maxCapacitySectors))
		}
	}
	d.adapterType = d.ddb["adapterType"]
	for _, f := range []struct {
		key      string
		dst      *int
		min, max int
	}{
		{"geometry.cylinders", &d.geometry.Cylinders, 0, 1 << 30},
		{"geometry.heads", &d.geometry.Heads, 1, 255},
		{"geometry.sectors", &d.geometry.Sectors, 1, 63},
	} {
		v, ok := d.ddb[f.key]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < f.min || n > f.max {
			return fmt.Errorf("descriptor: ddb.%s %q, want an integer from %d to %d", f.key, truncate(v), f.min, f.max)
		}
		*f.dst = n
	}
	return nil
}

// sectors returns the disk's size in sectors: the sum of its extents.
func (d *descriptor) sectors() uint64 {
	var n uint64
	for _, e := range d.extents {
		n += e.sectors
	}
	return n
}

func parseCID(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("want 8 hexadecimal digits")
	}
	return uint32(v), nil
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// formatDescriptor returns the text of a descriptor for a new disk with one
// extent.
func formatDescriptor(createType string, cid uint32, ext extentDesc, adapterType string, geo Geometry, longCID string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Disk DescriptorFile\n")
	fmt.Fprintf(&b, "version=1\n")
	fmt.Fprintf(&b, "encoding=\"UTF-8\"\n")
	fmt.Fprintf(&b, "CID=%08x\n", cid)
	fmt.Fprintf(&b, "parentCID=ffffffff\n")
	fmt.Fprintf(&b, "createType=\"%s\"\n", createType)
	fmt.Fprintf(&b, "\n# Extent description\n")
	fmt.Fprintf(&b, "%s %d %s \"%s\"", ext.access, ext.sectors, ext.typ, ext.file)
	if ext.typ == "FLAT" {
		fmt.Fprintf(&b, " %d", ext.offset)
	}
	fmt.Fprintf(&b, "\n\n# The Disk Data Base\n#DDB\n\n")
	fmt.Fprintf(&b, "ddb.adapterType = \"%s\"\n", adapterType)
	fmt.Fprintf(&b, "ddb.geometry.cylinders = \"%d\"\n", geo.Cylinders)
	fmt.Fprintf(&b, "ddb.geometry.heads = \"%d\"\n", geo.Heads)
	fmt.Fprintf(&b, "ddb.geometry.sectors = \"%d\"\n", geo.Sectors)
	fmt.Fprintf(&b, "ddb.longContentID = \"%s\"\n", longCID)
	fmt.Fprintf(&b, "ddb.virtualHWVersion = \"4\"\n")
	return b.String()
}

// geometryFor returns the geometry VMware gives a disk of the given number
// of sectors on the adapter type: 16 heads for IDE, 255 for SCSI, 63
// sectors per track, cylinders rounded up and capped.
func geometryFor(sectors uint64, adapterType string) Geometry {
	heads, maxCyl := uint64(255), uint64(65535)
	if adapterType == "ide" {
		heads, maxCyl = 16, 16383
	}
	cyl := min((sectors+heads*63-1)/(heads*63), maxCyl)
	return Geometry{Cylinders: int(cyl), Heads: int(heads), Sectors: 63}
}
