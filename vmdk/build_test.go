package vmdk

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"

	"github.com/opendraas/draas"
)

// This file builds small VMDK images in memory for the reader's unit and
// fuzz tests: 4 KiB grains and 128-entry grain tables keep them a few KiB,
// and the builder is independent of the Sink's code.

// image describes an image to build.
type image struct {
	stream     bool   // streamOptimized, else monolithicSparse
	data       []byte // disk content, a whole number of sectors
	createType string // descriptor createType; "" for the format's own
	noDesc     bool   // no embedded descriptor
	noFooter   bool   // stream: no GT/GD/footer, only grains and EOS
	noEOS      bool   // stream: drop the end-of-stream marker too
}

const (
	testGrainSectors = 8
	testGrain        = testGrainSectors * sectorSize
	testGTEs         = 128
)

// build returns the image's bytes and, for tests that corrupt it, the
// sector of its grain directory and of each stored grain (by grain index).
func (im image) build() (p []byte, gdSector int64, grainAt map[int64]int64) {
	capacity := uint64(len(im.data)) / sectorSize
	h := header{
		Version: 1, Flags: flagNewlineDetect,
		Capacity: capacity, GrainSize: testGrainSectors,
		NumGTEsPerGT: testGTEs, NL: newlineChars,
	}
	if im.stream {
		h.Version, h.Flags, h.CompressAlgorithm = 3, flagNewlineDetect|flagCompressed|flagMarkers, compressDeflate
		h.GDOffset = gdAtEnd
	}
	createType := im.createType
	if createType == "" {
		createType = "monolithicSparse"
		if im.stream {
			createType = "streamOptimized"
		}
	}
	var desc []byte
	if !im.noDesc {
		desc = []byte(fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"%s\"\nRW %d SPARSE \"disk.vmdk\"\nddb.adapterType = \"lsilogic\"\nddb.geometry.heads = \"255\"\n", createType, capacity))
		desc = padSector(desc)
		h.DescriptorOffset, h.DescriptorSize = 1, uint64(len(desc)/sectorSize)
	}
	grains := (int64(capacity) + testGrainSectors - 1) / testGrainSectors
	tables := (grains + testGTEs - 1) / testGTEs
	gtSectors := int64(testGTEs * 4 / sectorSize)
	gdSectors := sectorsFor(tables * 4)
	// Sector 1 is never a grain's: a grain table entry of 1 means a zeroed
	// grain.
	start := max(2, 1+int64(len(desc)/sectorSize))
	if !im.stream {
		// GD and all GTs follow the descriptor.
		h.GDOffset = uint64(start)
		start += gdSectors + tables*gtSectors
	}
	h.Overhead = uint64(start)
	p = append(h.marshal(), desc...)
	p = append(p, make([]byte, start*sectorSize-int64(len(p)))...)
	gt := make([]uint32, tables*testGTEs)
	grainAt = map[int64]int64{}
	for g := range grains {
		chunk := im.data[g*testGrain : min((g+1)*testGrain, int64(len(im.data)))]
		if draas.IsZero(chunk) {
			continue
		}
		sector := int64(len(p) / sectorSize)
		gt[g] = uint32(sector)
		grainAt[g] = sector
		if !im.stream {
			p = append(p, chunk...)
			p = append(p, make([]byte, testGrain-len(chunk))...)
			continue
		}
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write(chunk)
		zw.Write(make([]byte, testGrain-len(chunk)))
		zw.Close()
		p = binary.LittleEndian.AppendUint64(p, uint64(g*testGrainSectors))
		p = binary.LittleEndian.AppendUint32(p, uint32(z.Len()))
		p = padSector(append(p, z.Bytes()...))
	}
	gd := make([]uint32, tables)
	if !im.stream {
		for i := range gd {
			gd[i] = uint32(int64(h.GDOffset) + gdSectors + int64(i)*gtSectors)
		}
		copy(p[h.GDOffset*sectorSize:], putTable(nil, gd))
		copy(p[(int64(h.GDOffset)+gdSectors)*sectorSize:], putTable(nil, gt))
		return p, int64(h.GDOffset), grainAt
	}
	if im.noFooter {
		if !im.noEOS {
			p = append(p, metadataMarker(0, markerEOS)...)
		}
		return p, 0, grainAt
	}
	for i := range gd {
		p = append(p, metadataMarker(uint64(gtSectors), markerGT)...)
		gd[i] = uint32(len(p) / sectorSize)
		p = padSector(putTable(p, gt[int64(i)*testGTEs:int64(i+1)*testGTEs]))
	}
	p = append(p, metadataMarker(uint64(gdSectors), markerGD)...)
	gdSector = int64(len(p) / sectorSize)
	p = padSector(putTable(p, gd))
	footer := h
	footer.GDOffset = uint64(gdSector)
	p = append(p, metadataMarker(1, markerFooter)...)
	p = append(p, footer.marshal()...)
	if !im.noEOS {
		p = append(p, metadataMarker(0, markerEOS)...)
	}
	return p, gdSector, grainAt
}

// testData returns n bytes (a whole number of sectors) of compressible disk
// content with zero grains between data grains.
func testData(n int) []byte {
	p := make([]byte, n)
	for g := 0; g*testGrain < n; g++ {
		if g%3 == 1 {
			continue // a zero grain
		}
		for i := g * testGrain; i < min((g+1)*testGrain, n); i++ {
			p[i] = byte(i/7 + g)
		}
	}
	return p
}
