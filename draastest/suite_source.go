package draastest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/opendraas/draas"
)

// TestBlockSource checks that an implementation of draas.BlockSource, and of
// the optional capabilities draas.As finds in it, meets their contracts.
//
// For each of several contents (random, sparse with large holes, all zeros, a
// size that is not a multiple of any block size, one byte, and empty) it
// calls open to get a source holding that content. open may call t.Skip for a
// content it cannot represent (for example an empty disk). A source may be
// larger than its content when its storage has a size granularity (an EBS
// snapshot holds whole GiB): the bytes past the content must then read as
// zeros, and the suite reads the content's range and the end of the source
// rather than all of it.
//
// The suite checks that:
//   - ReadAt at aligned and unaligned offsets returns the content;
//   - a read reaching Size returns the bytes before it and io.EOF, a read at
//     or past Size returns 0 and io.EOF or another error, and a read at a
//     negative offset fails;
//   - concurrent reads return the right bytes (run the test with -race);
//   - a ReadAt whose context is already cancelled either fails with an error
//     wrapping context.Canceled or returns the right bytes, and returns
//     within seconds;
//   - if the source is a draas.ExtentSource: the extents are sorted, do not
//     overlap, lie inside Size, and hold every non-zero byte;
//   - if it is a draas.ChecksumSource: BlockSize is positive, each block read
//     with ReadBlock holds the content, its sum is the SHA-256 of the block
//     when ok, and when not ok the block is all zeros and p is zeroed;
//   - if it is a draas.ChangeTracker: an unknown base fails with an error
//     wrapping draas.ErrNotFound.
func TestBlockSource(t *testing.T, open func(t *testing.T, content []byte) draas.BlockSource) {
	for _, c := range sourceContents() {
		t.Run(c.name, func(t *testing.T) {
			content := c.content()
			src := open(t, content)
			if src == nil {
				t.Fatal("open returned a nil source")
			}
			sc := newSourceCheck(t, src, content)
			t.Run("ReadAligned", sc.readAligned)
			t.Run("ReadUnaligned", sc.readUnaligned)
			t.Run("ReadPastEnd", sc.readPastEnd)
			t.Run("ReadConcurrent", sc.readConcurrent)
			t.Run("ReadCancelled", sc.readCancelled)
			t.Run("AllocatedExtents", sc.allocatedExtents)
			t.Run("ReadBlock", sc.readBlock)
			t.Run("ChangedExtents", sc.changedExtents)
		})
	}
}

type sourceContent struct {
	name    string
	content func() []byte
}

func sourceContents() []sourceContent {
	return []sourceContent{
		{"Random", func() []byte { return randomBytes(1, 3<<20+4096) }},
		{"Sparse", func() []byte {
			// Holes of a MiB or more, so that filesystems can report them.
			p := make([]byte, 5<<20)
			copy(p[:64<<10], randomBytes(2, 64<<10))
			copy(p[2<<20+100:], randomBytes(3, 200<<10))
			copy(p[len(p)-1000:], randomBytes(4, 1000))
			return p
		}},
		{"Zeros", func() []byte { return make([]byte, 2<<20) }},
		{"OddSize", func() []byte { return randomBytes(5, 1_000_003) }},
		{"OneByte", func() []byte { return []byte{0x5a} }},
		{"Empty", func() []byte { return []byte{} }},
	}
}

// randomBytes returns n pseudo-random bytes, the same for the same seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'd', 'r', 'a', 'a', 's'})
	p := make([]byte, n)
	r.Read(p)
	return p
}

// sourceCheck holds what the checks of one source share.
type sourceCheck struct {
	src     draas.BlockSource
	content []byte
	size    int64
	chunk   int
	// ranges are the parts of the source the suite reads: all of it, or for
	// a source padded past its content, the content and the end.
	ranges []draas.Extent
}

func newSourceCheck(t *testing.T, src draas.BlockSource, content []byte) *sourceCheck {
	size := src.Size()
	if size < int64(len(content)) {
		t.Fatalf("Size() = %d, want at least the content's %d bytes", size, len(content))
	}
	if bs := src.BlockSize(); bs < 0 {
		t.Errorf("BlockSize() = %d, want 0 or positive", bs)
	}
	chunk := 64 << 10
	if bs := src.BlockSize(); bs > 0 && bs <= 4<<20 {
		chunk = bs
	}
	sc := &sourceCheck{src: src, content: content, size: size, chunk: chunk}
	// Read everything up to a few chunks past the content, and the last
	// two chunks.
	head := min(size, int64(len(content))+2*int64(chunk))
	sc.ranges = draas.NormalizeExtents([]draas.Extent{
		{Offset: 0, Length: head},
		{Offset: max(head, size-2*int64(chunk)), Length: size - max(head, size-2*int64(chunk))},
	})
	return sc
}

// want returns the expected bytes of [off, off+n), clipped to Size.
func (sc *sourceCheck) want(off int64, n int) []byte {
	end := min(off+int64(n), sc.size)
	if off >= end {
		return nil
	}
	p := make([]byte, end-off)
	if off < int64(len(sc.content)) {
		copy(p, sc.content[off:])
	}
	return p
}

// read reads n bytes at off and reports a mismatch with the content or a
// violation of the short-read contract.
func (sc *sourceCheck) read(ctx context.Context, off int64, n int) error {
	p := make([]byte, n)
	got, err := sc.src.ReadAt(ctx, p, off)
	want := sc.want(off, n)
	switch {
	case got != len(want):
		return fmt.Errorf("ReadAt(%d bytes at %d) read %d bytes (err %v), want %d", n, off, got, err, len(want))
	case got < n && !errors.Is(err, io.EOF):
		return fmt.Errorf("ReadAt(%d bytes at %d) read %d bytes with error %v, want io.EOF", n, off, got, err)
	case got == n && err != nil && !errors.Is(err, io.EOF):
		return fmt.Errorf("ReadAt(%d bytes at %d) read all bytes but returned error %v", n, off, err)
	case !bytes.Equal(p[:got], want):
		i := firstDiff(p[:got], want)
		return fmt.Errorf("ReadAt(%d bytes at %d): byte %d is %#x, want %#x", n, off, off+int64(i), p[i], want[i])
	}
	return nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func (sc *sourceCheck) readAligned(t *testing.T) {
	ctx := t.Context()
	for _, r := range sc.ranges {
		for off := r.Offset - r.Offset%int64(sc.chunk); off < r.End(); off += int64(sc.chunk) {
			if err := sc.read(ctx, off, sc.chunk); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sc.size <= 16<<20 {
		if err := sc.read(ctx, 0, int(sc.size)); err != nil {
			t.Errorf("reading the whole source at once: %v", err)
		}
	}
}

func (sc *sourceCheck) readUnaligned(t *testing.T) {
	if len(sc.ranges) == 0 {
		t.Skip("empty source")
	}
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, uint64(sc.size)))
	for range 64 {
		r := sc.ranges[rng.IntN(len(sc.ranges))]
		off := r.Offset + rng.Int64N(r.Length)
		n := 1 + rng.IntN(3*sc.chunk)
		if rng.IntN(2) == 0 {
			// A short read across a chunk boundary.
			off = max(0, off-off%int64(sc.chunk)-int64(rng.IntN(100)))
			n = 1 + rng.IntN(200)
		}
		if err := sc.read(ctx, off, n); err != nil {
			t.Fatal(err)
		}
	}
}

func (sc *sourceCheck) readPastEnd(t *testing.T) {
	ctx := t.Context()
	for _, k := range []int64{1, 7, int64(sc.chunk) + 3} {
		if k > sc.size {
			continue
		}
		if err := sc.read(ctx, sc.size-k, int(k)+10); err != nil {
			t.Error(err)
		}
	}
	p := make([]byte, 10)
	if n, err := sc.src.ReadAt(ctx, p, sc.size); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("ReadAt at Size = (%d, %v), want (0, io.EOF)", n, err)
	}
	if n, err := sc.src.ReadAt(ctx, p, sc.size+100); n != 0 || err == nil {
		t.Errorf("ReadAt past Size = (%d, %v), want 0 and an error", n, err)
	}
	if n, err := sc.src.ReadAt(ctx, p, -1); n != 0 || err == nil {
		t.Errorf("ReadAt at offset -1 = (%d, %v), want 0 and an error", n, err)
	}
}

func (sc *sourceCheck) readConcurrent(t *testing.T) {
	if len(sc.ranges) == 0 {
		t.Skip("empty source")
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			for range 16 {
				r := sc.ranges[rng.IntN(len(sc.ranges))]
				off := r.Offset + rng.Int64N(r.Length)
				if err := sc.read(ctx, off, 1+rng.IntN(sc.chunk)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func (sc *sourceCheck) readCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	n := int(min(sc.size, int64(sc.chunk)))
	done := make(chan error, 1)
	go func() {
		p := make([]byte, n)
		got, err := sc.src.ReadAt(ctx, p, 0)
		switch {
		case err != nil && !errors.Is(err, context.Canceled) && !(n == 0 && errors.Is(err, io.EOF)):
			done <- fmt.Errorf("ReadAt with a cancelled context failed with %v, want an error wrapping context.Canceled", err)
		case err == nil && !bytes.Equal(p[:got], sc.want(0, n)):
			done <- fmt.Errorf("ReadAt with a cancelled context succeeded with wrong bytes")
		default:
			done <- nil
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadAt with a cancelled context did not return within 10s")
	}
}

func (sc *sourceCheck) allocatedExtents(t *testing.T) {
	es, ok := draas.As[draas.ExtentSource](sc.src)
	if !ok {
		t.Skip("not a draas.ExtentSource")
	}
	exts, err := es.AllocatedExtents(t.Context())
	if err != nil {
		t.Fatalf("AllocatedExtents: %v", err)
	}
	var prev draas.Extent
	for i, e := range exts {
		switch {
		case e.Length <= 0:
			t.Errorf("extent %d %+v is empty", i, e)
		case e.Offset < 0 || e.End() > sc.size:
			t.Errorf("extent %d %+v lies outside the source's %d bytes", i, e, sc.size)
		case i > 0 && e.Offset < prev.End():
			t.Errorf("extent %d %+v is not after extent %d %+v: extents must be sorted and not overlap", i, e, i-1, prev)
		}
		prev = e
	}
	// Every non-zero byte of the content lies in an extent.
	norm := draas.NormalizeExtents(exts)
	j := 0
	for piece := 0; piece < len(sc.content); piece += 4096 {
		p := sc.content[piece:min(piece+4096, len(sc.content))]
		if draas.IsZero(p) {
			continue
		}
		for k, b := range p {
			i := int64(piece + k)
			if b == 0 {
				continue
			}
			for j < len(norm) && norm[j].End() <= i {
				j++
			}
			if j == len(norm) || norm[j].Offset > i {
				t.Fatalf("byte %d is %#x but lies in no allocated extent", i, b)
			}
		}
	}
}

func (sc *sourceCheck) readBlock(t *testing.T) {
	cs, ok := draas.As[draas.ChecksumSource](sc.src)
	if !ok {
		t.Skip("not a draas.ChecksumSource")
	}
	bs := int64(sc.src.BlockSize())
	if bs <= 0 {
		t.Fatalf("a draas.ChecksumSource has BlockSize() = %d, want positive", bs)
	}
	ctx := t.Context()
	seen := map[int64]bool{}
	for _, r := range sc.ranges {
		for off := r.Offset - r.Offset%bs; off < r.End(); off += bs {
			if seen[off] {
				continue
			}
			seen[off] = true
			want := sc.want(off, int(bs))
			p := bytes.Repeat([]byte{0xa5}, len(want))
			sum, ok, err := cs.ReadBlock(ctx, p, off)
			switch {
			case err != nil:
				t.Fatalf("ReadBlock at %d: %v", off, err)
			case ok && sum != sha256.Sum256(want):
				t.Fatalf("ReadBlock at %d: the recorded sum is not the SHA-256 of the block's content", off)
			case ok && !bytes.Equal(p, want):
				t.Fatalf("ReadBlock at %d: byte %d differs from the content", off, off+int64(firstDiff(p, want)))
			case !ok && !draas.IsZero(want):
				t.Fatalf("ReadBlock at %d reports no block but the content there is not all zeros", off)
			case !ok && !draas.IsZero(p):
				t.Fatalf("ReadBlock at %d reports no block but did not zero p", off)
			}
		}
	}
}

func (sc *sourceCheck) changedExtents(t *testing.T) {
	ct, ok := draas.As[draas.ChangeTracker](sc.src)
	if !ok {
		t.Skip("not a draas.ChangeTracker")
	}
	if _, err := ct.ChangedExtents(t.Context(), "draastest-no-such-base"); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("ChangedExtents with an unknown base: error %v, want one wrapping draas.ErrNotFound", err)
	}
}
