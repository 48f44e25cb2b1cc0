package draastest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/opendraas/draas"
)

// SinkHarness is what the factory passed to [TestVolumeSink] returns: a new,
// open sink and a way to read back what it committed.
type SinkHarness struct {
	// Sink is the sink under test, open and empty.
	Sink draas.VolumeSink
	// ReadBack returns the content the sink committed, Size bytes, read
	// independently of the sink (for example by opening the file or snapshot
	// it made). When nothing committed exists it returns an error wrapping
	// draas.ErrNotFound.
	ReadBack func(ctx context.Context) ([]byte, error)
	// Size is the size the sink holds when the implementation had to round
	// the requested size up (an EBS snapshot holds whole GiB); 0 means the
	// requested size. Bytes past the requested size are expected to read
	// back as zeros.
	Size int64
	// InPlace marks a sink that writes in place (a block device, a VM disk):
	// written blocks stay after Abort, so the suite does not check that Abort
	// leaves nothing committed.
	InPlace bool
}

// TestVolumeSink checks that an implementation of draas.VolumeSink, and of
// the optional capabilities draas.As finds in it, meets their contracts.
// create is called for every subtest with the size of the disk to write
// (a few MiB, not a multiple of common block sizes) and returns a new sink.
//
// The suite checks that:
//   - blocks written concurrently in random order, the short last block
//     included, read back after Commit, also through Committed if the sink is
//     a draas.VerifiableSink; a draas.Flusher's Flush succeeds mid-way;
//   - the sink does not retain a block's Data (the suite overwrites it after
//     WriteBlock returns);
//   - writing a block again with the same data changes nothing;
//   - unless the sink needs zero writes (draas.ZeroWriteSink), blocks never
//     written read back as zeros, and an empty commit reads back all zeros;
//   - Abort leaves nothing committed (unless InPlace), and afterwards
//     WriteBlock fails with draas.ErrClosed and Commit fails;
//   - after Commit, WriteBlock fails with draas.ErrClosed, and a stray Abort
//     does not undo the commit;
//   - a misaligned block, a block past the end, a short block that is not the
//     last and an oversized block fail with draas.ErrInvalid.
func TestVolumeSink(t *testing.T, create func(t *testing.T, size int64) SinkHarness) {
	const size = 3<<20 + 12345
	newCheck := func(t *testing.T) *sinkCheck {
		h := create(t, size)
		if h.Sink == nil || h.ReadBack == nil {
			t.Fatal("create returned a harness without Sink or ReadBack")
		}
		bs := h.Sink.BlockSize()
		if bs <= 0 {
			t.Fatalf("BlockSize() = %d, want positive", bs)
		}
		total := h.Size
		if total == 0 {
			total = size
		}
		if total < size {
			t.Fatalf("harness Size %d is smaller than the requested %d", total, size)
		}
		return &sinkCheck{h: h, bs: int64(bs), size: size, total: total}
	}
	t.Run("WriteCommit", func(t *testing.T) { newCheck(t).writeCommit(t) })
	t.Run("Idempotent", func(t *testing.T) { newCheck(t).idempotent(t) })
	t.Run("SkipZeroBlocks", func(t *testing.T) { newCheck(t).skipZeroBlocks(t) })
	t.Run("EmptyCommit", func(t *testing.T) { newCheck(t).emptyCommit(t) })
	t.Run("Abort", func(t *testing.T) { newCheck(t).abort(t) })
	t.Run("Invalid", func(t *testing.T) { newCheck(t).invalid(t) })
}

type sinkCheck struct {
	h     SinkHarness
	bs    int64
	size  int64 // the requested size
	total int64 // the size the sink holds
}

func (sc *sinkCheck) blocks() int64 { return (sc.total + sc.bs - 1) / sc.bs }

// content returns the disk content for a test: random where keep reports
// true for the block index, zeros elsewhere and past the requested size.
func (sc *sinkCheck) content(seed uint64, keep func(i int64) bool) []byte {
	p := make([]byte, sc.total)
	copy(p, randomBytes(seed, int(sc.size)))
	for i := range sc.blocks() {
		if !keep(i) {
			clear(p[i*sc.bs : min((i+1)*sc.bs, sc.total)])
		}
	}
	return p
}

// block returns block i of content in a buffer of its own.
func (sc *sinkCheck) block(content []byte, i int64) draas.Block {
	off := i * sc.bs
	data := bytes.Clone(content[off:min(off+sc.bs, int64(len(content)))])
	return draas.Block{Index: i, Offset: off, Data: data, Checksum: sha256.Sum256(data)}
}

// toWrite returns the indexes of the blocks of content a copier writes: the
// non-zero ones, or all when the sink needs zero writes, in random order.
func (sc *sinkCheck) toWrite(content []byte, seed uint64) []int64 {
	zeros := draas.NeedsZeroWrites(sc.h.Sink)
	var idx []int64
	for i := range sc.blocks() {
		if zeros || !draas.IsZero(content[i*sc.bs:min((i+1)*sc.bs, sc.total)]) {
			idx = append(idx, i)
		}
	}
	rand.New(rand.NewPCG(seed, 7)).Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
	return idx
}

// write writes the given blocks of content with four writers, then
// overwrites each block's buffer so that a sink retaining it is caught.
func (sc *sinkCheck) write(ctx context.Context, content []byte, idx []int64) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, i := range idx {
		g.Go(func() error {
			b := sc.block(content, i)
			err := sc.h.Sink.WriteBlock(ctx, b)
			for j := range b.Data {
				b.Data[j] = 0xee
			}
			return err
		})
	}
	return g.Wait()
}

// commitAndCheck commits the sink and checks what it reads back.
func (sc *sinkCheck) commitAndCheck(t *testing.T, want []byte) {
	ctx := t.Context()
	if err := sc.h.Sink.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	sc.checkReadBack(t, want)
	if vs, ok := draas.As[draas.VerifiableSink](sc.h.Sink); ok {
		src, err := vs.Committed(ctx)
		if err != nil {
			t.Fatalf("Committed: %v", err)
		}
		if c, ok := src.(io.Closer); ok {
			defer c.Close()
		}
		if src.Size() != sc.total {
			t.Errorf("Committed().Size() = %d, want %d", src.Size(), sc.total)
		}
		t.Run("Committed", func(t *testing.T) {
			newSourceCheck(t, src, want[:sc.size]).readAligned(t)
		})
	}
}

func (sc *sinkCheck) checkReadBack(t *testing.T, want []byte) {
	t.Helper()
	got, err := sc.h.ReadBack(t.Context())
	switch {
	case err != nil:
		t.Fatalf("ReadBack: %v", err)
	case len(got) != len(want):
		t.Fatalf("ReadBack returned %d bytes, want %d", len(got), len(want))
	case !bytes.Equal(got, want):
		i := firstDiff(got, want)
		t.Fatalf("ReadBack: byte %d (block %d) is %#x, want %#x", i, int64(i)/sc.bs, got[i], want[i])
	}
}

func (sc *sinkCheck) writeCommit(t *testing.T) {
	ctx := t.Context()
	// Block 1 is all zeros: a copier skips it unless the sink needs zeros.
	content := sc.content(11, func(i int64) bool { return i != 1 })
	idx := sc.toWrite(content, 1)
	half := len(idx) / 2
	if err := sc.write(ctx, content, idx[:half]); err != nil {
		t.Fatalf("WriteBlock: %v", err)
	}
	if f, ok := draas.As[draas.Flusher](sc.h.Sink); ok {
		if err := f.Flush(ctx); err != nil {
			t.Fatalf("Flush mid-way: %v", err)
		}
	}
	if err := sc.write(ctx, content, idx[half:]); err != nil {
		t.Fatalf("WriteBlock: %v", err)
	}
	sc.commitAndCheck(t, content)

	if err := sc.h.Sink.WriteBlock(ctx, sc.block(content, 0)); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("WriteBlock after Commit: error %v, want one wrapping draas.ErrClosed", err)
	}
	_ = sc.h.Sink.Abort(ctx) // a stray Abort must not undo the commit
	t.Run("AbortAfterCommit", func(t *testing.T) { sc.checkReadBack(t, content) })
}

func (sc *sinkCheck) idempotent(t *testing.T) {
	ctx := t.Context()
	content := sc.content(12, func(int64) bool { return true })
	idx := sc.toWrite(content, 2)
	if err := sc.write(ctx, content, idx); err != nil {
		t.Fatalf("WriteBlock: %v", err)
	}
	// Write the first and last blocks again, twice each, concurrently.
	again := []int64{0, sc.blocks() - 1, 0, sc.blocks() - 1}
	if err := sc.write(ctx, content, again); err != nil {
		t.Fatalf("WriteBlock of a block already written: %v", err)
	}
	sc.commitAndCheck(t, content)
}

// skipIfZeroWrites aborts the sink and skips the test when the sink needs
// zero writes.
func (sc *sinkCheck) skipIfZeroWrites(t *testing.T) {
	t.Helper()
	if draas.NeedsZeroWrites(sc.h.Sink) {
		sc.h.Sink.Abort(t.Context())
		t.Skip("the sink needs zero writes")
	}
}

func (sc *sinkCheck) skipZeroBlocks(t *testing.T) {
	sc.skipIfZeroWrites(t)
	content := sc.content(13, func(i int64) bool { return i%2 == 0 })
	if err := sc.write(t.Context(), content, sc.toWrite(content, 3)); err != nil {
		t.Fatalf("WriteBlock: %v", err)
	}
	sc.commitAndCheck(t, content)
}

func (sc *sinkCheck) emptyCommit(t *testing.T) {
	sc.skipIfZeroWrites(t)
	sc.commitAndCheck(t, make([]byte, sc.total))
}

func (sc *sinkCheck) abort(t *testing.T) {
	ctx := t.Context()
	content := sc.content(14, func(int64) bool { return true })
	if err := sc.write(ctx, content, []int64{0, sc.blocks() - 1}); err != nil {
		t.Fatalf("WriteBlock: %v", err)
	}
	if err := sc.h.Sink.Abort(ctx); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if !sc.h.InPlace {
		if _, err := sc.h.ReadBack(ctx); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("ReadBack after Abort: error %v, want one wrapping draas.ErrNotFound", err)
		}
	}
	if err := sc.h.Sink.WriteBlock(ctx, sc.block(content, 0)); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("WriteBlock after Abort: error %v, want one wrapping draas.ErrClosed", err)
	}
	if err := sc.h.Sink.Commit(ctx); err == nil {
		t.Error("Commit after Abort succeeded, want an error")
	}
	if !sc.h.InPlace {
		if _, err := sc.h.ReadBack(ctx); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("ReadBack after Abort and Commit: error %v, want one wrapping draas.ErrNotFound", err)
		}
	}
}

func (sc *sinkCheck) invalid(t *testing.T) {
	ctx := t.Context()
	defer sc.h.Sink.Abort(ctx)
	content := sc.content(15, func(int64) bool { return true })
	bad := func(name string, b draas.Block) {
		b.Checksum = sha256.Sum256(b.Data)
		if err := sc.h.Sink.WriteBlock(ctx, b); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("WriteBlock of %s: error %v, want one wrapping draas.ErrInvalid", name, err)
		}
	}
	if sc.bs > 1 {
		bad("a misaligned block", draas.Block{Index: 0, Offset: 1, Data: bytes.Repeat([]byte{1}, int(sc.bs))})
	}
	n := sc.blocks()
	bad("a block past the end", draas.Block{Index: n, Offset: n * sc.bs, Data: make([]byte, sc.bs)})
	if n > 1 && sc.bs > 1 {
		bad("a short block that is not the last", draas.Block{Index: 0, Offset: 0, Data: content[:sc.bs/2]})
	}
	if n > 1 {
		bad("an oversized block", draas.Block{Index: 0, Offset: 0, Data: content[:sc.bs+1]})
	}
}
