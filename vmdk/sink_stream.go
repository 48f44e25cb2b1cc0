package vmdk

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"github.com/klauspost/compress/zlib"

	"github.com/opendraas/draas"
)

// streamWriter writes a streamOptimized extent:
//
//	sector 0        header (gdOffset = GD_AT_END)
//	sectors 1-20    descriptor
//	sector 128...   grains in arrival order: marker (LBA, size) + zlib data,
//	                each padded to a sector
//	at Commit       for each grain table with entries: GT marker + table;
//	                GD marker + grain directory; footer marker + footer
//	                (the header with the real gdOffset); end-of-stream marker
//
// This is the layout of VMware's own streamOptimized files (ovftool), with
// grain tables that hold no grain left out (directory entry 0).
type streamWriter struct {
	m     meta
	f     *os.File
	h     header
	level int
	writerState
}

// streamOverhead is the number of sectors before the first grain: the
// header and the descriptor, padded to a grain.
const (
	descriptorSectors = 20
	streamOverhead    = grainSectors
)

func newStreamWriter(m meta, level int) (*streamWriter, error) {
	if level == 0 {
		level = 1
	}
	f, err := tempFile(m.path)
	if err != nil {
		return nil, err
	}
	w := &streamWriter{m: m, f: f, level: level}
	w.h = header{
		Version:           3,
		Flags:             flagNewlineDetect | flagCompressed | flagMarkers,
		Capacity:          uint64(m.capacity / sectorSize),
		GrainSize:         grainSectors,
		DescriptorOffset:  1,
		DescriptorSize:    descriptorSectors,
		NumGTEsPerGT:      512,
		GDOffset:          gdAtEnd,
		Overhead:          streamOverhead,
		NL:                newlineChars,
		CompressAlgorithm: compressDeflate,
	}
	w.next = streamOverhead * sectorSize
	w.gt = newGrainTables(m.capacity)
	w.sums = map[int64][32]byte{}
	head := make([]byte, 0, streamOverhead*sectorSize)
	head = append(head, w.h.marshal()...)
	head = append(head, w.m.descriptor("streamOptimized", "SPARSE", baseName(m.path))...)
	if len(head) > (1+descriptorSectors)*sectorSize {
		closeAndRemove(f)
		return nil, fmt.Errorf("descriptor of %d bytes does not fit in %d sectors", len(head)-sectorSize, descriptorSectors)
	}
	head = head[:cap(head)]
	if _, err := f.WriteAt(head, 0); err != nil {
		closeAndRemove(f)
		return nil, err
	}
	return w, nil
}

// deflaters holds zlib writers, one pool per level.
var deflaters [10]sync.Pool

// blockBufs holds the buffers compressed blocks are assembled in.
var blockBufs = sync.Pool{New: func() any { return new(appendBuffer) }}

// appendBuffer is an io.Writer that appends to a byte slice.
type appendBuffer struct{ b []byte }

func (a *appendBuffer) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

func (w *streamWriter) writeBlock(idx, off int64, data []byte, sum [32]byte) error {
	if w.written(idx, sum) {
		return nil
	}
	buf := blockBufs.Get().(*appendBuffer)
	defer blockBufs.Put(buf)
	buf.b = buf.b[:0]
	zw, _ := deflaters[w.level].Get().(*zlib.Writer)
	if zw == nil {
		var err error
		if zw, err = zlib.NewWriterLevel(buf, w.level); err != nil {
			return err
		}
	}
	defer deflaters[w.level].Put(zw)

	const grain = grainSectors * sectorSize
	first := off / grain
	var starts []int // start of each stored grain in buf, -1 for zero grains
	var last []byte  // the disk's last grain, padded to a whole grain
	for i := 0; i < len(data); i += grain {
		g := data[i:min(i+grain, len(data))]
		if draas.IsZero(g) {
			starts = append(starts, -1)
			continue
		}
		if len(g) < grain {
			// qemu requires every grain to inflate to a whole grain.
			last = make([]byte, grain)
			copy(last, g)
			g = last
		}
		start := len(buf.b)
		starts = append(starts, start)
		buf.b = binary.LittleEndian.AppendUint64(buf.b, uint64(first+int64(i/grain))*grainSectors)
		buf.b = append(buf.b, 0, 0, 0, 0) // compressed size, set below
		zw.Reset(buf)
		if _, err := zw.Write(g); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(buf.b[start+8:], uint32(len(buf.b)-start-grainMarkerSize))
		buf.b = padSector(buf.b)
	}

	var at int64
	if len(buf.b) > 0 {
		var err error
		if at, err = w.reserve(int64(len(buf.b))); err != nil {
			return err
		}
		if _, err := w.f.WriteAt(buf.b, at); err != nil {
			return err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, start := range starts {
		var e uint32
		if start >= 0 {
			e = uint32((at + int64(start)) / sectorSize)
		}
		w.gt.set(first+int64(i), e)
	}
	w.sums[idx] = sum
	return nil
}

func (w *streamWriter) commit() error {
	// Every WriteBlock has returned: no lock needed.
	var p []byte
	next := w.next / sectorSize
	gd := make([]uint32, len(w.gt.tables))
	for i, t := range w.gt.tables {
		if t == nil {
			continue
		}
		tableSectors := sectorsFor(int64(len(t)) * 4)
		p = append(p, metadataMarker(uint64(tableSectors), markerGT)...)
		gd[i] = uint32(next + 1)
		p = padSector(putTable(p, t))
		next += 1 + tableSectors
	}
	gdSectors := sectorsFor(int64(len(gd)) * 4)
	p = append(p, metadataMarker(uint64(gdSectors), markerGD)...)
	gdOffset := next + 1
	p = padSector(putTable(p, gd))
	next += 1 + gdSectors

	footer := w.h
	footer.GDOffset = uint64(gdOffset)
	p = append(p, metadataMarker(1, markerFooter)...)
	p = append(p, footer.marshal()...)
	p = append(p, metadataMarker(0, markerEOS)...)
	next += 3
	if next > 0xffffffff {
		return fmt.Errorf("the file would exceed 2 TiB, the most a sparse VMDK's grain tables can address")
	}
	if _, err := w.f.WriteAt(p, w.next); err != nil {
		return err
	}
	return syncCloseInstall(w.f, w.m.path, w.m.overwrite)
}

func (w *streamWriter) abort() error { return closeAndRemove(w.f) }
