package draastest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/opendraas/draas"
)

// DefaultBlockSize is the block size a [Disk] or [Sink] gets when it is given
// a block size of 0 or less: 512 KiB, the EBS snapshot block size.
const DefaultBlockSize = 512 << 10

// Disk is an in-memory sparse disk of fixed size, divided into blocks of a
// fixed size (the last one shorter when the size is not a multiple). Only
// blocks holding non-zero data are stored, each with the SHA-256 recorded when
// it was written, so a Disk behaves like a snapshot store.
//
// A Disk is a draas.BlockSource, draas.ExtentSource (the stored blocks),
// draas.ChangeTracker (the blocks that differ from a version recorded with
// [Disk.Version]) and draas.ChecksumSource (the recorded checksums). Use
// [PlainSource] to hide these capabilities. All methods are safe for
// concurrent use.
type Disk struct {
	size int64
	bs   int

	mu       sync.RWMutex
	blocks   map[int64]*diskBlock
	versions map[string]map[int64]*diskBlock
}

// diskBlock is one stored block. Writes replace a block rather than modify
// it, so versions can share blocks; only Corrupt modifies data in place.
type diskBlock struct {
	data []byte   // the block's bytes, as long as the block
	sum  [32]byte // the SHA-256 recorded when the block was written
}

var (
	_ draas.BlockSource    = (*Disk)(nil)
	_ draas.ExtentSource   = (*Disk)(nil)
	_ draas.ChangeTracker  = (*Disk)(nil)
	_ draas.ChecksumSource = (*Disk)(nil)
	_ io.WriterAt          = (*Disk)(nil)
)

// NewDisk returns an all-zero disk of size bytes in blocks of blockSize
// bytes. A blockSize of 0 or less means [DefaultBlockSize]; a negative size
// means 0.
func NewDisk(size int64, blockSize int) *Disk {
	if blockSize <= 0 {
		blockSize = DefaultBlockSize
	}
	return &Disk{
		size:     max(size, 0),
		bs:       blockSize,
		blocks:   map[int64]*diskBlock{},
		versions: map[string]map[int64]*diskBlock{},
	}
}

// DiskFrom returns a disk holding a copy of data, in blocks of blockSize
// bytes (0 or less means [DefaultBlockSize]). Only its non-zero blocks are
// stored.
func DiskFrom(data []byte, blockSize int) *Disk {
	d := NewDisk(int64(len(data)), blockSize)
	d.WriteAt(data, 0) // cannot fail: data fits exactly
	return d
}

// Size returns the disk's size in bytes.
func (d *Disk) Size() int64 { return d.size }

// BlockSize returns the disk's block size in bytes.
func (d *Disk) BlockSize() int { return d.bs }

// blockLen returns the length of block i.
func (d *Disk) blockLen(i int64) int {
	return int(min(int64(d.bs), d.size-i*int64(d.bs)))
}

// ReadAt reads len(p) bytes at off, following the draas.BlockSource
// contract: holes read as zeros, and a read reaching Size returns the bytes
// before it and io.EOF. It fails with ctx's error when ctx is done and with an
// error wrapping draas.ErrInvalid for a negative offset.
func (d *Disk) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, draas.Invalidf("draastest: read at negative offset %d", off)
	}
	if off >= d.size {
		return 0, io.EOF
	}
	want := int(min(int64(len(p)), d.size-off))
	d.mu.RLock()
	defer d.mu.RUnlock()
	bs := int64(d.bs)
	for n := 0; n < want; {
		pos := off + int64(n)
		i, in := pos/bs, int(pos%bs)
		m := min(d.blockLen(i)-in, want-n)
		if b := d.blocks[i]; b != nil {
			copy(p[n:n+m], b.data[in:])
		} else {
			clear(p[n : n+m])
		}
		n += m
	}
	if want < len(p) {
		return want, io.EOF
	}
	return want, nil
}

// WriteAt writes p at off, as a guest changing its disk would: it implements
// io.WriterAt. Each block it touches is replaced and its checksum recorded
// anew; blocks left all zero are no longer stored. A write that does not fit
// writes what fits and returns an error wrapping draas.ErrInvalid.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > d.size {
		return 0, draas.Invalidf("draastest: write at offset %d outside the disk's %d bytes", off, d.size)
	}
	want := int(min(int64(len(p)), d.size-off))
	d.mu.Lock()
	defer d.mu.Unlock()
	bs := int64(d.bs)
	for n := 0; n < want; {
		pos := off + int64(n)
		i, in := pos/bs, int(pos%bs)
		data := make([]byte, d.blockLen(i))
		if b := d.blocks[i]; b != nil {
			copy(data, b.data)
		}
		m := copy(data[in:], p[n:want])
		d.put(i, data, sha256.Sum256(data))
		n += m
	}
	if want < len(p) {
		return want, draas.Invalidf("draastest: write of %d bytes at offset %d ends past the disk's %d bytes", len(p), off, d.size)
	}
	return want, nil
}

// put stores data (which the disk takes over) as block i with the recorded
// checksum sum, or drops the block when data is all zeros. d.mu is held.
func (d *Disk) put(i int64, data []byte, sum [32]byte) {
	if draas.IsZero(data) {
		delete(d.blocks, i)
		return
	}
	d.blocks[i] = &diskBlock{data: data, sum: sum}
}

// ReadBlock implements draas.ChecksumSource: it reads the block at off, which
// must be a multiple of BlockSize, into p, which must hold the block (BlockSize
// bytes, or fewer for the last block; bytes beyond the block are zeroed), and
// returns the checksum recorded when the block was written. For blocks that
// are not stored, ok is false and p is zeroed.
func (d *Disk) ReadBlock(ctx context.Context, p []byte, off int64) (sum [32]byte, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return sum, false, err
	}
	if off < 0 || off >= d.size || off%int64(d.bs) != 0 {
		return sum, false, draas.Invalidf("draastest: ReadBlock at offset %d: want a multiple of the block size %d below the size %d", off, d.bs, d.size)
	}
	i := off / int64(d.bs)
	if n := d.blockLen(i); len(p) < n {
		return sum, false, draas.Invalidf("draastest: ReadBlock at offset %d into %d bytes: the block has %d bytes; pass a buffer that holds it", off, len(p), n)
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	b := d.blocks[i]
	if b == nil {
		clear(p)
		return sum, false, nil
	}
	n := copy(p, b.data)
	clear(p[n:])
	return b.sum, true, nil
}

// AllocatedExtents implements draas.ExtentSource: the extents of the stored
// blocks, sorted and merged.
func (d *Disk) AllocatedExtents(ctx context.Context) ([]draas.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.extents(func(i int64) bool { return true }, d.blocks), nil
}

// extents returns the merged extents of the blocks in m for which keep
// reports true. d.mu is held.
func (d *Disk) extents(keep func(i int64) bool, m map[int64]*diskBlock) []draas.Extent {
	var exts []draas.Extent
	for i := range m {
		if keep(i) {
			exts = append(exts, draas.Extent{Offset: i * int64(d.bs), Length: int64(d.blockLen(i))})
		}
	}
	return draas.NormalizeExtents(exts)
}

// Version records the disk's current content under name, replacing an
// earlier version of that name, so that ChangedExtents(ctx, name) later
// reports what changed since now.
func (d *Disk) Version(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.versions[name] = maps.Clone(d.blocks)
}

// ChangedExtents implements draas.ChangeTracker: the extents of the blocks
// whose content differs from the version recorded as base with
// [Disk.Version], or an error wrapping draas.ErrNotFound when there is no such
// version. Changes made by [Disk.Corrupt] are not reported, as storage
// corruption is not a change.
func (d *Disk) ChangedExtents(ctx context.Context, base string) ([]draas.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	old, ok := d.versions[base]
	if !ok {
		return nil, fmt.Errorf("draastest: changed extents since %q: no such version: %w", base, draas.ErrNotFound)
	}
	changed := func(i int64) bool {
		a, b := old[i], d.blocks[i]
		switch {
		case a == b:
			return false
		case a == nil || b == nil:
			return true // a stored block is never all zeros
		default:
			return string(a.data) != string(b.data)
		}
	}
	union := maps.Clone(old)
	for i, b := range d.blocks {
		union[i] = b
	}
	return d.extents(changed, union), nil
}

// Corrupt flips the bits of the byte at off in storage without updating the
// recorded checksum, as bit rot would: ReadAt returns the flipped byte and
// ReadBlock the old checksum, so a copier that checks checksums detects it.
// An offset outside the disk is ignored.
func (d *Disk) Corrupt(off int64) {
	if off < 0 || off >= d.size {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	i := off / int64(d.bs)
	b := d.blocks[i]
	if b == nil {
		data := make([]byte, d.blockLen(i))
		b = &diskBlock{data: data, sum: sha256.Sum256(data)}
		d.blocks[i] = b
	}
	b.data[off%int64(d.bs)] ^= 0xff
}

// Bytes returns a copy of the disk's whole content.
func (d *Disk) Bytes() []byte {
	p := make([]byte, d.size)
	d.ReadAt(context.Background(), p, 0) // cannot fail: p holds exactly Size bytes
	return p
}

// StoredBlocks returns the number of blocks the disk stores (the non-zero
// ones).
func (d *Disk) StoredBlocks() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.blocks)
}

// Clone returns an independent copy of the disk's content and checksums,
// without its versions.
func (d *Disk) Clone() *Disk {
	return d.CloneSize(d.size)
}

// CloneSize returns an independent copy of the disk resized to size bytes:
// content past size is dropped, and a larger disk reads zeros past the old
// end. Versions are not copied.
func (d *Disk) CloneSize(size int64) *Disk {
	c := NewDisk(size, d.bs)
	d.mu.RLock()
	defer d.mu.RUnlock()
	for i, b := range d.blocks {
		if i*int64(d.bs) >= c.size {
			continue
		}
		if n := c.blockLen(i); n == len(b.data) {
			c.blocks[i] = &diskBlock{data: slices.Clone(b.data), sum: b.sum}
		} else {
			// The block's length changed; its old checksum no longer applies.
			data := make([]byte, n)
			copy(data, b.data)
			c.put(i, data, sha256.Sum256(data))
		}
	}
	return c
}

// writeBlock stores a whole block with the checksum the writer recorded.
func (d *Disk) writeBlock(i int64, data []byte, sum [32]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.put(i, slices.Clone(data), sum)
}

// PlainSource returns a draas.BlockSource that reads src but has none of its
// optional capabilities (no extents, change tracking or checksums, and no
// Unwrap through which draas.As could find them), so that tests exercise the
// fallback paths of code that uses draas.AllocatedExtents and friends.
func PlainSource(src draas.BlockSource) draas.BlockSource {
	return plainSource{src}
}

type plainSource struct{ src draas.BlockSource }

func (s plainSource) Size() int64    { return s.src.Size() }
func (s plainSource) BlockSize() int { return s.src.BlockSize() }
func (s plainSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return s.src.ReadAt(ctx, p, off)
}
