package vmdk

import (
	"fmt"
	"os"

	"github.com/opendraas/draas"
)

// sparseWriter writes a monolithicSparse extent, laid out as qemu-img and
// VMware Workstation do:
//
//	sector 0        header
//	sectors 1-20    descriptor
//	sector 21...    redundant grain directory, then its grain tables
//	then            grain directory, then its grain tables
//	overhead...     grains (64 KiB, uncompressed) in arrival order
//
// Every table is preallocated so that the directories are complete; the file
// is sparse, so tables never written cost no space.
type sparseWriter struct {
	m      meta
	f      *os.File
	h      header
	rgtAt  int64 // sector of the first redundant grain table
	gtAt   int64 // sector of the first grain table
	tables int64
	writerState
}

func newSparseWriter(m meta) (*sparseWriter, error) {
	f, err := tempFile(m.path)
	if err != nil {
		return nil, err
	}
	w := &sparseWriter{m: m, f: f}
	w.gt = newGrainTables(m.capacity)
	w.sums = map[int64][32]byte{}
	w.tables = int64(len(w.gt.tables))
	gdSectors := sectorsFor(w.tables * 4)
	tableSectors := sectorsFor(w.gt.gtes * 4)
	rgd := int64(1 + descriptorSectors)
	w.rgtAt = rgd + gdSectors
	gd := w.rgtAt + w.tables*tableSectors
	w.gtAt = gd + gdSectors
	overhead := (w.gtAt + w.tables*tableSectors + grainSectors - 1) / grainSectors * grainSectors
	w.h = header{
		Version:          1,
		Flags:            flagNewlineDetect | flagRedundantGD,
		Capacity:         uint64(m.capacity / sectorSize),
		GrainSize:        grainSectors,
		DescriptorOffset: 1,
		DescriptorSize:   descriptorSectors,
		NumGTEsPerGT:     uint32(w.gt.gtes),
		RGDOffset:        uint64(rgd),
		GDOffset:         uint64(gd),
		Overhead:         uint64(overhead),
		NL:               newlineChars,
	}
	w.next = overhead * sectorSize

	// Header, descriptor and both directories; the tables stay holes until
	// Commit writes those that have entries.
	head := append(w.h.marshal(), w.m.descriptor("monolithicSparse", "SPARSE", baseName(m.path))...)
	if len(head) > (1+descriptorSectors)*sectorSize {
		closeAndRemove(f)
		return nil, fmt.Errorf("descriptor of %d bytes does not fit in %d sectors", len(head)-sectorSize, descriptorSectors)
	}
	head = append(head, make([]byte, (1+descriptorSectors)*sectorSize-len(head))...)
	err = f.Truncate(w.next)
	if err == nil {
		_, err = f.WriteAt(head, 0)
	}
	if err == nil {
		err = w.writeDirectory(rgd, w.rgtAt)
	}
	if err == nil {
		err = w.writeDirectory(gd, w.gtAt)
	}
	if err != nil {
		closeAndRemove(f)
		return nil, err
	}
	return w, nil
}

// writeDirectory writes at sector at a grain directory whose tables are
// laid out one after the other from sector tables.
func (w *sparseWriter) writeDirectory(at, tables int64) error {
	if w.tables == 0 {
		return nil
	}
	dir := make([]uint32, w.tables)
	tableSectors := sectorsFor(w.gt.gtes * 4)
	for i := range dir {
		dir[i] = uint32(tables + int64(i)*tableSectors)
	}
	_, err := w.f.WriteAt(padSector(putTable(nil, dir)), at*sectorSize)
	return err
}

func (w *sparseWriter) writeBlock(idx, off int64, data []byte, sum [32]byte) error {
	if w.written(idx, sum) {
		return nil
	}
	const grain = grainSectors * sectorSize
	first := off / grain
	n := (len(data) + grain - 1) / grain
	stored := make([]bool, n)
	var count int64
	for i := range n {
		if !draas.IsZero(data[i*grain : min((i+1)*grain, len(data))]) {
			stored[i] = true
			count++
		}
	}
	var at int64
	if count > 0 {
		var err error
		if at, err = w.reserve(count * grain); err != nil {
			return err
		}
	}
	// Write runs of stored grains with one call each.
	pos := at
	entries := make([]uint32, n)
	for i := 0; i < n; {
		if !stored[i] {
			i++
			continue
		}
		j := i
		for j < n && stored[j] {
			entries[j] = uint32((pos + int64(j-i)*grain) / sectorSize)
			j++
		}
		run := data[i*grain : min(j*grain, len(data))]
		if r := len(run) % grain; r != 0 {
			// The disk's last grain: stored whole, padded with zeros.
			run = append(append([]byte(nil), run...), make([]byte, grain-r)...)
		}
		if _, err := w.f.WriteAt(run, pos); err != nil {
			return err
		}
		pos += int64(len(run))
		i = j
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, e := range entries {
		w.gt.set(first+int64(i), e)
	}
	w.sums[idx] = sum
	return nil
}

func (w *sparseWriter) commit() error {
	tableSectors := sectorsFor(w.gt.gtes * 4)
	for i, t := range w.gt.tables {
		if t == nil {
			continue
		}
		p := padSector(putTable(nil, t))
		for _, base := range []int64{w.gtAt, w.rgtAt} {
			if _, err := w.f.WriteAt(p, (base+int64(i)*tableSectors)*sectorSize); err != nil {
				return err
			}
		}
	}
	return syncCloseInstall(w.f, w.m.path, w.m.overwrite)
}

func (w *sparseWriter) abort() error { return closeAndRemove(w.f) }
