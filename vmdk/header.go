package vmdk

import (
	"encoding/binary"
	"fmt"
)

// On-disk constants of hosted sparse extents (VMware "Virtual Disk Format
// 5.0" technical note, and qemu's block/vmdk.c).
const (
	sectorSize = 512

	sparseMagic = 0x564d444b // "KDMV" read as little-endian bytes
	cowdMagic   = 0x44574f43 // "COWD": ESX vmfsSparse, not supported

	flagNewlineDetect = 1 << 0
	flagRedundantGD   = 1 << 1
	flagZeroGrain     = 1 << 2
	flagCompressed    = 1 << 16
	flagMarkers       = 1 << 17
	// flagsIncompatible are the flag bits a reader must understand; the
	// ones not in flagCompressed|flagMarkers are unknown to us.
	flagsIncompatible = 0xffff0000

	compressNone    = 0
	compressDeflate = 1

	// gdAtEnd in a header's gdOffset says the grain directory's offset is in
	// the footer at the end of the file (streamOptimized).
	gdAtEnd = ^uint64(0)

	// Marker types: a marker whose size field is 0 introduces metadata.
	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3

	// grainMarkerSize is the size of a compressed grain's header: the LBA
	// (uint64, in sectors) and the compressed size (uint32).
	grainMarkerSize = 12

	// gteZero is a grain table entry for a grain that reads as zeros.
	gteZero = 1
)

// Limits that keep a hostile file from making the reader allocate or loop
// without bound. Real files are far inside them.
const (
	maxCapacitySectors  = 1 << 41 // 1 PiB
	maxGrainSectors     = 2048    // 1 MiB grains
	minGTEsPerGT        = 128     // one sector of entries
	maxGTEsPerGT        = 4096
	maxDescriptorBytes  = 1 << 20
	maxLoadedTableBytes = 1 << 30 // grain tables held in memory
)

// header is a hosted sparse extent header (SparseExtentHeader), 512 bytes
// little-endian on disk, packed.
type header struct {
	Version          uint32
	Flags            uint32
	Capacity         uint64 // sectors
	GrainSize        uint64 // sectors
	DescriptorOffset uint64 // sectors
	DescriptorSize   uint64 // sectors
	NumGTEsPerGT     uint32
	RGDOffset        uint64 // sectors
	GDOffset         uint64 // sectors
	Overhead         uint64 // sectors
	UncleanShutdown  uint8
	// newline detection characters, checked when flagNewlineDetect is set
	NL [4]byte
	// CompressAlgorithm is compressNone or compressDeflate.
	CompressAlgorithm uint16
}

// newlineChars are the characters of a valid newline detector: '\n', ' ',
// '\r', '\n'. A file transferred in text mode has them mangled.
var newlineChars = [4]byte{'\n', ' ', '\r', '\n'}

// marshal returns the 512-byte on-disk form of h.
func (h *header) marshal() []byte {
	p := make([]byte, sectorSize)
	le := binary.LittleEndian
	le.PutUint32(p[0:], sparseMagic)
	le.PutUint32(p[4:], h.Version)
	le.PutUint32(p[8:], h.Flags)
	le.PutUint64(p[12:], h.Capacity)
	le.PutUint64(p[20:], h.GrainSize)
	le.PutUint64(p[28:], h.DescriptorOffset)
	le.PutUint64(p[36:], h.DescriptorSize)
	le.PutUint32(p[44:], h.NumGTEsPerGT)
	le.PutUint64(p[48:], h.RGDOffset)
	le.PutUint64(p[56:], h.GDOffset)
	le.PutUint64(p[64:], h.Overhead)
	p[72] = h.UncleanShutdown
	copy(p[73:77], h.NL[:])
	le.PutUint16(p[77:], h.CompressAlgorithm)
	return p
}

// parseHeader decodes a 512-byte sparse extent header without validating it
// beyond the magic number.
func parseHeader(p []byte) (header, error) {
	var h header
	if len(p) < sectorSize {
		return h, fmt.Errorf("header: %d bytes, want %d", len(p), sectorSize)
	}
	le := binary.LittleEndian
	switch magic := le.Uint32(p[0:]); magic {
	case sparseMagic:
	case cowdMagic:
		return h, fmt.Errorf("header: magic COWD (ESX vmfsSparse delta disk) is not supported")
	default:
		return h, fmt.Errorf("header: magic %#08x, want %#08x (KDMV)", magic, sparseMagic)
	}
	h.Version = le.Uint32(p[4:])
	h.Flags = le.Uint32(p[8:])
	h.Capacity = le.Uint64(p[12:])
	h.GrainSize = le.Uint64(p[20:])
	h.DescriptorOffset = le.Uint64(p[28:])
	h.DescriptorSize = le.Uint64(p[36:])
	h.NumGTEsPerGT = le.Uint32(p[44:])
	h.RGDOffset = le.Uint64(p[48:])
	h.GDOffset = le.Uint64(p[56:])
	h.Overhead = le.Uint64(p[64:])
	h.UncleanShutdown = p[72]
	copy(h.NL[:], p[73:77])
	h.CompressAlgorithm = le.Uint16(p[77:])
	return h, nil
}

// validate checks the fields a reader relies on. fileSize bounds the
// offsets; the grain directory's offset is checked by the caller, which may
// find it in a footer.
func (h *header) validate(fileSize int64) error {
	if h.Version < 1 || h.Version > 3 {
		return fmt.Errorf("header: version %d, want 1, 2 or 3", h.Version)
	}
	if unknown := h.Flags & flagsIncompatible &^ (flagCompressed | flagMarkers); unknown != 0 {
		return fmt.Errorf("header: flags %#x has unknown incompatible bits %#x", h.Flags, unknown)
	}
	if h.Flags&flagNewlineDetect != 0 && h.NL != newlineChars {
		return fmt.Errorf("header: newline detector is %q, want %q: the file was probably transferred in text mode", h.NL[:], newlineChars[:])
	}
	if h.Flags&flagMarkers != 0 && h.Flags&flagCompressed == 0 {
		return fmt.Errorf("header: flags %#x has markers without compressed grains", h.Flags)
	}
	switch h.CompressAlgorithm {
	case compressNone:
		if h.Flags&flagCompressed != 0 {
			return fmt.Errorf("header: flags say compressed grains but compressAlgorithm is 0 (none)")
		}
	case compressDeflate:
	default:
		return fmt.Errorf("header: compressAlgorithm %d, want 0 (none) or 1 (deflate)", h.CompressAlgorithm)
	}
	if h.Capacity > maxCapacitySectors {
		return fmt.Errorf("header: capacity %d sectors is more than the supported %d", h.Capacity, uint64(maxCapacitySectors))
	}
	if g := h.GrainSize; g == 0 || g > maxGrainSectors || g&(g-1) != 0 {
		return fmt.Errorf("header: grainSize %d sectors, want a power of two up to %d", g, maxGrainSectors)
	}
	if n := h.NumGTEsPerGT; n < minGTEsPerGT || n > maxGTEsPerGT || n&(n-1) != 0 {
		return fmt.Errorf("header: numGTEsPerGT %d, want a power of two from %d to %d", n, minGTEsPerGT, maxGTEsPerGT)
	}
	sectors := uint64(fileSize) / sectorSize
	if h.DescriptorSize > 0 {
		if h.DescriptorOffset == 0 || h.DescriptorSize > maxDescriptorBytes/sectorSize ||
			h.DescriptorOffset > sectors || h.DescriptorSize > sectors-h.DescriptorOffset {
			return fmt.Errorf("header: embedded descriptor at sector %d, %d sectors, lies outside the file's %d sectors or is larger than %d bytes",
				h.DescriptorOffset, h.DescriptorSize, sectors, maxDescriptorBytes)
		}
	}
	return nil
}

// grains returns the number of grains of the extent, the last one possibly
// partial.
func (h *header) grains() uint64 {
	return (h.Capacity + h.GrainSize - 1) / h.GrainSize
}

// tables returns the number of grain tables, which is the number of grain
// directory entries.
func (h *header) tables() uint64 {
	n := uint64(h.NumGTEsPerGT)
	return (h.grains() + n - 1) / n
}

// marker is a streamOptimized marker: for a compressed grain, val is its LBA
// and size its compressed size; for metadata (size 0), val is the number of
// sectors that follow and typ says what they hold.
type marker struct {
	val  uint64
	size uint32
	typ  uint32
}

func parseMarker(p []byte) marker {
	le := binary.LittleEndian
	m := marker{val: le.Uint64(p[0:]), size: le.Uint32(p[8:])}
	if m.size == 0 && len(p) >= 16 {
		m.typ = le.Uint32(p[12:])
	}
	return m
}

// metadataMarker returns the sector that introduces numSectors of metadata
// of type typ.
func metadataMarker(numSectors uint64, typ uint32) []byte {
	p := make([]byte, sectorSize)
	binary.LittleEndian.PutUint64(p[0:], numSectors)
	binary.LittleEndian.PutUint32(p[12:], typ)
	return p
}
