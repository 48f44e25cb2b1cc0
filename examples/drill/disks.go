package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/lab"
)

// blockSize is the block size of the backup store's chunks and of EBS
// snapshots: 512 KiB, so that one changed block of a disk is one changed
// chunk and one PutSnapshotBlock.
const blockSize = lab.BlockSize

// disk is a disk as a guest reads and writes it.
type disk interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
}

// changeDisk changes percent % of the disk's blocks (at least one), as a
// running VM would between two backups: most changes write 4 KiB up to a
// whole block of new data, 4 KiB aligned, anywhere on the disk; every
// fourth change of a block that holds data zeros it whole, as a guest
// trimming freed space does, which an incremental EBS snapshot must record
// by writing zeros over its parent's data. It returns the number of blocks
// whose content changed.
func changeDisk(rng *rand.Rand, d disk, percent float64) (int, error) {
	nblocks := (d.Size() + blockSize - 1) / blockSize
	n := max(1, int(float64(nblocks)*percent/100+0.5))
	buf := make([]byte, blockSize)
	held := make([]byte, blockSize)
	for i, b := range rng.Perm(int(nblocks))[:n] {
		off := int64(b) * blockSize
		blen := min(blockSize, d.Size()-off)
		if _, err := d.ReadAt(held[:blen], off); err != nil {
			return 0, err
		}
		if i%4 == 3 && !draas.IsZero(held[:blen]) {
			clear(buf[:blen])
			if _, err := d.WriteAt(buf[:blen], off); err != nil {
				return 0, err
			}
			continue
		}
		pages := blen / 4096
		length := (1 + rng.Int64N(pages)) * 4096
		at := off + rng.Int64N(pages-length/4096+1)*4096
		p := buf[:length]
		fillRandom(rng, p)
		p[0] |= 1 // never all zeros: the write is a change even over a hole
		if _, err := d.WriteAt(p, at); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// fillRandom fills p with pseudo-random bytes from rng.
func fillRandom(rng *rand.Rand, p []byte) {
	for ; len(p) >= 8; p = p[8:] {
		binary.LittleEndian.PutUint64(p, rng.Uint64())
	}
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
}

// reader reads len(p) bytes at off of something holding a disk's bytes,
// and names it for errors.
type reader struct {
	name string
	read func(p []byte, off int64) error
}

func guestReader(d *lab.GuestDisk) reader {
	return reader{"the datastore file", func(p []byte, off int64) error {
		_, err := d.ReadAt(p, off)
		return err
	}}
}

func snapshotReader(srv *awssim.Server, id string) reader {
	return reader{"snapshot " + id, func(p []byte, off int64) error {
		n, err := srv.ReadSnapshotAt(id, p, off)
		if err == io.EOF && n == len(p) {
			err = nil
		}
		return err
	}}
}

func volumeReader(srv *awssim.Server, id string) reader {
	return reader{"volume " + id, func(p []byte, off int64) error { return srv.ReadVolume(id, off, p) }}
}

func sourceReader(ctx context.Context, name string, src draas.BlockSource) reader {
	return reader{name, func(p []byte, off int64) error {
		n, err := src.ReadAt(ctx, p, off)
		if err == io.EOF && n == len(p) {
			err = nil
		}
		return err
	}}
}

// zeroReader reads zeros: what a disk holds past the end of a smaller one.
var zeroReader = reader{"zeros", func(p []byte, off int64) error { clear(p); return nil }}

// compareBytes reads size bytes of a and b in 8 MiB pieces and fails at the
// first difference, naming its offset.
func compareBytes(size int64, a, b reader) error {
	return compareRange(0, size, a, b)
}

// compareRange compares the bytes from off to end.
func compareRange(off, end int64, a, b reader) error {
	const piece = 8 << 20
	pa, pb := make([]byte, piece), make([]byte, piece)
	for ; off < end; off += piece {
		n := int(min(piece, end-off))
		if err := a.read(pa[:n], off); err != nil {
			return fmt.Errorf("read %s at %d: %w", a.name, off, err)
		}
		if err := b.read(pb[:n], off); err != nil {
			return fmt.Errorf("read %s at %d: %w", b.name, off, err)
		}
		if !bytes.Equal(pa[:n], pb[:n]) {
			i := 0
			for pa[i] == pb[i] {
				i++
			}
			return fmt.Errorf("%s differs from %s at byte %d: %w", b.name, a.name, off+int64(i), draas.ErrChecksumMismatch)
		}
	}
	return nil
}
