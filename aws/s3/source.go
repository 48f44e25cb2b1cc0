package s3

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/opendraas/draas"
)

var (
	_ draas.BlockSource    = (*Source)(nil)
	_ draas.ExtentSource   = (*Source)(nil)
	_ draas.ChangeTracker  = (*Source)(nil)
	_ draas.ChecksumSource = (*Source)(nil)
)

// cacheChunks is how many decoded chunks a Source keeps for reads that do
// not cover whole blocks.
const cacheChunks = 4

// Source reads one disk of a recovery point. It is a draas.BlockSource whose
// BlockSize is the manifest's (512 KiB), a draas.ExtentSource (the blocks
// the manifest lists), a draas.ChecksumSource (the SHA-256 the manifest
// records, which is the chunk's name) and a draas.ChangeTracker (changes
// since another point of the same VM, from the two manifests).
//
// Every chunk read is checked: its decoded bytes must hash to its name, or
// the read fails with an error wrapping draas.ErrChecksumMismatch that names
// the VM, point, disk and block; a chunk missing from the bucket fails with
// draas.ErrNotFound, named the same way. A Source holds the manifest (about
// 40 bytes per stored block) and at most 4 decoded chunks; it is safe for
// concurrent use.
type Source struct {
	s *Store
	m *manifest

	mu    sync.Mutex
	cache []cachedChunk // most recent last
}

type cachedChunk struct {
	sum  [32]byte
	data []byte
}

func newSource(s *Store, m *manifest) *Source { return &Source{s: s, m: m} }

// Size returns the disk's size in bytes.
func (r *Source) Size() int64 { return r.m.Size }

// BlockSize returns the size of the store's blocks, [BlockSize].
func (r *Source) BlockSize() int { return r.m.BlockSize }

// VM returns the name of the VM whose disk the source reads.
func (r *Source) VM() string { return r.m.VM }

// Point returns the ID of the recovery point the source reads.
func (r *Source) Point() string { return r.m.Point }

// Disk returns the name of the disk the source reads.
func (r *Source) Disk() string { return r.m.Disk }

func (r *Source) resource(i int64) string {
	return fmt.Sprintf("vm %s point %s disk %s block %d", r.m.VM, r.m.Point, r.m.Disk, i)
}

// lookup returns the recorded checksum of block i.
func (r *Source) lookup(i int64) ([32]byte, bool) {
	bl := r.m.Blocks
	j := sort.Search(len(bl), func(j int) bool { return bl[j].Index >= i })
	if j < len(bl) && bl[j].Index == i {
		return bl[j].Sum, true
	}
	return [32]byte{}, false
}

// readChunk reads block i's chunk, named sum, into dst[:n] and verifies it.
func (r *Source) readChunk(ctx context.Context, i int64, sum [32]byte, dst []byte) error {
	s := r.s
	n := len(dst)
	res := r.resource(i)
	key := s.chunkKey(sum)
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	obj, err := s.get(ctx, "read block", res, key, *bp, int64(n)+1)
	if obj != nil {
		*bp = obj[:0]
	}
	if err != nil {
		var oe *draas.OpError
		if errors.Is(err, draas.ErrNotFound) && errors.As(err, &oe) {
			return &draas.OpError{Op: "read block", Resource: res, Kind: draas.ErrNotFound,
				Err: fmt.Errorf("chunk s3://%s/%s is missing: %w", s.bucket, key, oe.Err)}
		}
		return err
	}
	out, err := s.decodeChunk(obj, dst[:0:n], n)
	if err != nil {
		return &draas.OpError{Op: "read block", Resource: res, Kind: draas.ErrChecksumMismatch,
			Err: fmt.Errorf("chunk s3://%s/%s: %w", s.bucket, key, err)}
	}
	if &out[0] != &dst[0] {
		copy(dst, out)
	}
	if got := sha256.Sum256(dst); got != sum {
		return &draas.OpError{Op: "read block", Resource: res, Kind: draas.ErrChecksumMismatch,
			Err: fmt.Errorf("chunk s3://%s/%s holds data with SHA-256 %x", s.bucket, key, got)}
	}
	return nil
}

// ReadAt reads len(p) bytes at off; see draas.BlockSource. Holes read as
// zeros. A read that reaches the end of the disk returns io.EOF with the
// bytes before it.
func (r *Source) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, &draas.OpError{Op: "read", Resource: r.resource(off / int64(r.m.BlockSize)), Kind: draas.ErrInvalid,
			Err: fmt.Errorf("negative offset %d", off)}
	}
	if off >= r.m.Size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	if rem := r.m.Size - off; int64(want) > rem {
		p = p[:rem]
	}
	bs := int64(r.m.BlockSize)
	n := 0
	for n < len(p) {
		if err := ctx.Err(); err != nil {
			return n, context.Cause(ctx)
		}
		pos := off + int64(n)
		i := pos / bs
		inBlock := int(pos - i*bs)
		blen := r.m.blockLen(i)
		chunk := min(blen-inBlock, len(p)-n)
		dst := p[n : n+chunk]
		sum, ok := r.lookup(i)
		switch {
		case !ok:
			clear(dst)
		case inBlock == 0 && chunk == blen:
			if err := r.readChunk(ctx, i, sum, dst); err != nil {
				return n, err
			}
		default:
			data, err := r.cached(ctx, i, sum, blen)
			if err != nil {
				return n, err
			}
			copy(dst, data[inBlock:])
		}
		n += chunk
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// cached returns block i's decoded chunk from the cache or from S3.
func (r *Source) cached(ctx context.Context, i int64, sum [32]byte, blen int) ([]byte, error) {
	r.mu.Lock()
	for j, c := range r.cache {
		if c.sum == sum && len(c.data) == blen {
			r.cache = append(append(r.cache[:j:j], r.cache[j+1:]...), c)
			r.mu.Unlock()
			return c.data, nil
		}
	}
	r.mu.Unlock()
	data := make([]byte, blen)
	if err := r.readChunk(ctx, i, sum, data); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if len(r.cache) == cacheChunks {
		r.cache = append(r.cache[:0], r.cache[1:]...)
	}
	r.cache = append(r.cache, cachedChunk{sum: sum, data: data})
	r.mu.Unlock()
	return data, nil
}

// ReadBlock reads the block at off (a multiple of BlockSize) into p, whose
// length must be the block's (BlockSize, or less for the last block), and
// returns the SHA-256 the manifest records for it; see
// draas.ChecksumSource. For a hole ok is false and p is zeroed.
func (r *Source) ReadBlock(ctx context.Context, p []byte, off int64) (sum [32]byte, ok bool, err error) {
	bs := int64(r.m.BlockSize)
	i := off / bs
	if off < 0 || off%bs != 0 || off >= r.m.Size {
		return sum, false, &draas.OpError{Op: "read block", Resource: r.resource(i), Kind: draas.ErrInvalid,
			Err: fmt.Errorf("offset %d is not a multiple of the block size %d within the disk's %d bytes", off, bs, r.m.Size)}
	}
	if blen := r.m.blockLen(i); len(p) != blen {
		return sum, false, &draas.OpError{Op: "read block", Resource: r.resource(i), Kind: draas.ErrInvalid,
			Err: fmt.Errorf("buffer is %d bytes, the block has %d", len(p), blen)}
	}
	sum, ok = r.lookup(i)
	if !ok {
		clear(p)
		return sum, false, nil
	}
	if err := r.readChunk(ctx, i, sum, p); err != nil {
		return sum, true, err
	}
	return sum, true, nil
}

// AllocatedExtents returns the blocks the manifest lists, adjacent blocks
// coalesced; everything else is a hole. It makes no request.
func (r *Source) AllocatedExtents(ctx context.Context) ([]draas.Extent, error) {
	idx := make([]int64, len(r.m.Blocks))
	for i, b := range r.m.Blocks {
		idx[i] = b.Index
	}
	return r.extents(idx), nil
}

// extents turns ascending block indexes into coalesced byte extents.
func (r *Source) extents(idx []int64) []draas.Extent {
	bs := int64(r.m.BlockSize)
	var out []draas.Extent
	for _, i := range idx {
		off := i * bs
		l := int64(r.m.blockLen(i))
		if n := len(out); n > 0 && out[n-1].End() == off {
			out[n-1].Length += l
			continue
		}
		out = append(out, draas.Extent{Offset: off, Length: l})
	}
	return out
}

// ChangedExtents returns the extents of this disk that differ from the same
// disk in base, another committed point of the same VM: blocks whose
// recorded SHA-256 differs, including blocks that became holes or stopped
// being holes. It reads only base's record and manifest. An unknown base, a
// base without this disk, or one with another block size is an error
// wrapping draas.ErrNotFound (the caller then copies everything).
func (r *Source) ChangedExtents(ctx context.Context, base string) ([]draas.Extent, error) {
	res := fmt.Sprintf("vm %s point %s disk %s since point %s", r.m.VM, r.m.Point, r.m.Disk, base)
	if err := validName("point", base); err != nil {
		return nil, &draas.OpError{Op: "changed extents", Resource: res, Kind: draas.ErrNotFound, Err: err}
	}
	if base == r.m.Point {
		return nil, nil
	}
	rec, err := r.s.loadPoint(ctx, r.m.VM, base)
	if err != nil {
		return nil, &draas.OpError{Op: "changed extents", Resource: res, Err: err}
	}
	d, ok := rec.disk(r.m.Disk)
	if !ok {
		return nil, &draas.OpError{Op: "changed extents", Resource: res, Kind: draas.ErrNotFound,
			Err: fmt.Errorf("base point has no disk %s", r.m.Disk)}
	}
	bm, err := r.s.loadManifest(ctx, r.m.VM, base, r.m.Disk, d.Manifest)
	if err != nil {
		return nil, &draas.OpError{Op: "changed extents", Resource: res, Err: err}
	}
	if bm.BlockSize != r.m.BlockSize {
		return nil, &draas.OpError{Op: "changed extents", Resource: res, Kind: draas.ErrNotFound,
			Err: fmt.Errorf("base block size %d differs from %d", bm.BlockSize, r.m.BlockSize)}
	}
	return r.extents(diffBlocks(r.m, bm)), nil
}

// diffBlocks returns the indexes, below cur's block count, of the blocks
// whose content differs between cur and base. A block of base's last,
// shorter block that cur has made longer counts as changed unless both are
// holes.
func diffBlocks(cur, base *manifest) []int64 {
	n := cur.blocks()
	var out []int64
	a, b := cur.Blocks, base.Blocks
	for len(a) > 0 || len(b) > 0 {
		var i int64
		switch {
		case len(b) == 0 || len(a) > 0 && a[0].Index < b[0].Index:
			i, a = a[0].Index, a[1:]
		case len(a) == 0 || b[0].Index < a[0].Index:
			i, b = b[0].Index, b[1:]
		default:
			i = a[0].Index
			same := a[0].Sum == b[0].Sum && cur.blockLen(i) == base.blockLen(i)
			a, b = a[1:], b[1:]
			if same {
				continue
			}
		}
		if i < n {
			out = append(out, i)
		}
	}
	return out
}
