package awssim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Volume data in sparse files ([Options].VolumeDir): each volume is a raw
// file of its full size, <id>.raw, that QEMU can use as a disk. A volume
// made from a snapshot starts as the snapshot's blocks written into the
// file; a snapshot of the volume reads the file. The volume's blocks map is
// then the content as of its last snapshot (or its source snapshot): a block
// that reads the same as there is shared with it, so that snapshots of an
// unchanged block hold the same block and ListChangedBlocks sees only what
// changed, as with in-memory volumes.

// Whence values of lseek(2) for sparse files (Linux, the BSDs, Solaris).
// Where they are unknown, Seek fails and every block is read.
const (
	seekData = 3
	seekHole = 4
)

// volumePath is where volume id's file lives.
func (s *Server) volumePath(id string) string {
	return filepath.Join(s.volumeDir, id+".raw")
}

// createVolumeFile makes v's file, sparse, of v's size, holding v.blocks.
// Callers hold s.mu.
func (s *Server) createVolumeFile(v *volume) error {
	f, err := os.OpenFile(s.volumePath(v.id), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("awssim: volume file: %w", err)
	}
	err = f.Truncate(v.sizeGiB << 30)
	for idx, b := range v.blocks {
		if err != nil {
			break
		}
		if !isZero(b.data) {
			_, err = f.WriteAt(b.data, idx*BlockSize)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("awssim: volume file of %s: %w", v.id, err)
	}
	v.file = f
	return nil
}

// dropVolume forgets volume v and removes its file. Callers hold s.mu.
func (s *Server) dropVolume(v *volume) {
	delete(s.vols, v.id)
	if v.file != nil {
		v.file.Close()
		os.Remove(v.file.Name())
		v.file = nil
	}
}

// volumeBlocks returns v's content as blocks, for a snapshot. For a
// file-backed volume it reads the file, sharing the blocks that did not
// change since the last snapshot, and makes the result the new base.
// Callers hold s.mu.
func (s *Server) volumeBlocks(v *volume) (map[int64]*block, error) {
	if v.file == nil {
		return cloneBlocks(v.blocks), nil
	}
	out := map[int64]*block{}
	buf := make([]byte, BlockSize)
	idxs := dataBlocks(v.file, v.sizeGiB<<30)
	for idx := range v.blocks {
		idxs[idx] = true
	}
	for idx := range idxs {
		if _, err := io.ReadFull(io.NewSectionReader(v.file, idx*BlockSize, BlockSize), buf); err != nil {
			return nil, fmt.Errorf("awssim: reading volume file of %s: %w", v.id, err)
		}
		old := v.blocks[idx]
		switch {
		case old != nil && bytes.Equal(old.data, buf):
			out[idx] = old
		case old == nil && isZero(buf):
		default:
			out[idx] = newBlock(buf)
		}
	}
	v.blocks = cloneBlocks(out)
	return out, nil
}

// readVolumeAt and writeVolumeAt do file-backed volumes' I/O.
func readVolumeAt(v *volume, p []byte, off int64) error {
	if _, err := v.file.ReadAt(p, off); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("awssim: reading volume %s: %w", v.id, err)
	}
	return nil
}

func writeVolumeAt(v *volume, p []byte, off int64) error {
	if _, err := v.file.WriteAt(p, off); err != nil {
		return fmt.Errorf("awssim: writing volume %s: %w", v.id, err)
	}
	return nil
}

// volumeFileBytes returns a file-backed volume's content up to the end of
// its last block that holds data.
func volumeFileBytes(v *volume) ([]byte, error) {
	buf := make([]byte, BlockSize)
	end := int64(0)
	for idx := range dataBlocks(v.file, v.sizeGiB<<30) {
		off := idx * BlockSize
		if off+BlockSize <= end {
			continue
		}
		if err := readVolumeAt(v, buf, off); err != nil {
			return nil, err
		}
		if !isZero(buf) {
			end = off + BlockSize
		}
	}
	out := make([]byte, end)
	if err := readVolumeAt(v, out, 0); err != nil {
		return nil, err
	}
	return out, nil
}

var zeroBlock [BlockSize]byte

// isZero tells whether p (at most a block) is all zeros.
func isZero(p []byte) bool {
	for len(p) > BlockSize {
		if !bytes.Equal(p[:BlockSize], zeroBlock[:]) {
			return false
		}
		p = p[BlockSize:]
	}
	return bytes.Equal(p, zeroBlock[:len(p)])
}

// dataBlocks returns the indexes of the blocks of the first size bytes of
// f that may hold data: those that are not holes, where the file system
// says (SEEK_DATA, SEEK_HOLE), else all of them.
func dataBlocks(f *os.File, size int64) map[int64]bool {
	out := map[int64]bool{}
	all := func(from int64) map[int64]bool {
		for idx := from / BlockSize; idx*BlockSize < size; idx++ {
			out[idx] = true
		}
		return out
	}
	for off := int64(0); off < size; {
		data, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return out // no data after off
		}
		if err != nil {
			return all(off)
		}
		hole, err := f.Seek(data, seekHole)
		if err != nil {
			return all(off)
		}
		for idx := data / BlockSize; idx*BlockSize < min(hole, size); idx++ {
			out[idx] = true
		}
		off = hole
	}
	return out
}
