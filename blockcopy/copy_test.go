package blockcopy_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/retry"
)

const bs = 64 << 10 // small blocks keep tests fast; the engine takes any

// fastRetry retries quickly so tests do not wait for real backoff.
var fastRetry = retry.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond}

// makeDisk returns content of the given size: random where kind says so.
func makeDisk(t *testing.T, kind string, size int64, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	p := make([]byte, size)
	switch kind {
	case "random":
		fillRandom(r, p)
	case "sparse":
		// Every third block has data, some blocks only partly.
		for off := int64(0); off < size; off += bs {
			if r.IntN(3) == 0 {
				end := min(off+bs, size)
				if r.IntN(2) == 0 {
					end = min(off+int64(r.IntN(bs)+1), size)
				}
				fillRandom(r, p[off:end])
			}
		}
	case "zero":
	default:
		t.Fatalf("unknown disk kind %q", kind)
	}
	return p
}

func fillRandom(r *rand.Rand, p []byte) {
	for i := range p {
		p[i] = byte(r.Uint32())
	}
}

func nonZeroBlocks(p []byte, blockSize int) int {
	n := 0
	for off := 0; off < len(p); off += blockSize {
		if !draas.IsZero(p[off:min(off+blockSize, len(p))]) {
			n++
		}
	}
	return n
}

func TestCopyByteIdentical(t *testing.T) {
	sizes := []int64{1, bs - 1, bs, bs + 1, 5*bs + 12345, 64 * bs}
	for _, kind := range []string{"random", "sparse", "zero"} {
		for _, size := range sizes {
			for _, plain := range []bool{false, true} {
				content := makeDisk(t, kind, size, uint64(size))
				var src draas.BlockSource = draastest.DiskFrom(content, bs)
				if plain {
					// No optional capabilities: the engine must fall back to
					// reading everything.
					src = draastest.PlainSource(src)
				}
				sink := draastest.NewSink(size, bs, draastest.SinkOptions{})
				st, err := blockcopy.Copy(context.Background(), sink, src, blockcopy.Options{Concurrency: 4, Verify: true})
				require.NoError(t, err, "%s size %d plain %v", kind, size, plain)
				assert.True(t, bytes.Equal(content, sink.Disk().Bytes()), "%s size %d plain %v: bytes differ", kind, size, plain)
				assert.Equal(t, draastest.SinkCommitted, sink.State())
				assert.True(t, st.Verified)
				assert.Equal(t, int64(0), sink.ZeroWrites(), "zero blocks must never reach the sink")
				assert.Equal(t, int64(nonZeroBlocks(content, bs)), sink.Writes())
				assert.Equal(t, int64(nonZeroBlocks(content, bs)), st.BlocksCopied)
				assert.Equal(t, size, st.BytesCopied+st.BytesZero)
			}
		}
	}
}

func TestCopyZeroWritesWhenSinkNeedsThem(t *testing.T) {
	size := int64(8 * bs)
	content := makeDisk(t, "sparse", size, 3)
	// The sink starts from a base full of old data, as an incremental
	// snapshot on a parent does: every block must be written, zeros too.
	old := draastest.DiskFrom(makeDisk(t, "random", size, 4), bs)
	sink := draastest.NewSink(size, bs, draastest.SinkOptions{NeedsZeroWrites: true, Base: old})
	st, err := blockcopy.Copy(context.Background(), sink, draastest.DiskFrom(content, bs), blockcopy.Options{})
	require.NoError(t, err)
	assert.Equal(t, content, sink.Disk().Bytes())
	assert.Equal(t, int64(8), st.BlocksCopied)
	assert.Equal(t, int64(8-nonZeroBlocks(content, bs)), sink.ZeroWrites())
}

func TestCopyOnlyGivenExtents(t *testing.T) {
	size := int64(32 * bs)
	base := makeDisk(t, "random", size, 5)
	disk := draastest.DiskFrom(base, bs)
	disk.Version("v1")
	// Change three blocks, one of them to zeros.
	disk.WriteAt(bytes.Repeat([]byte{1}, 10), 3*bs+7)
	disk.WriteAt(bytes.Repeat([]byte{2}, bs), 17*bs)
	disk.WriteAt(make([]byte, bs), 30*bs)
	changed, err := draas.ChangedExtents(context.Background(), disk, "v1")
	require.NoError(t, err)

	sink := draastest.NewSink(size, bs, draastest.SinkOptions{NeedsZeroWrites: true, Base: draastest.DiskFrom(base, bs)})
	st, err := blockcopy.Copy(context.Background(), sink, disk, blockcopy.Options{Extents: changed, Verify: true})
	require.NoError(t, err)
	assert.Equal(t, disk.Bytes(), sink.Disk().Bytes())
	assert.Equal(t, int64(3), sink.Writes(), "only the changed blocks are written")
	assert.Equal(t, int64(3), st.BlocksCopied)
	assert.Equal(t, int64(29), st.BlocksUnchanged)
	assert.Equal(t, int64(3*bs), st.BytesRead, "unchanged blocks are not read")
}

func TestCopyRejectsBadInput(t *testing.T) {
	src := draastest.DiskFrom([]byte("x"), bs)
	sink := draastest.NewSink(1, bs, draastest.SinkOptions{})
	_, err := blockcopy.Copy(context.Background(), sink, src, blockcopy.Options{Extents: []draas.Extent{{Offset: -1, Length: 3}}})
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Contains(t, err.Error(), "negative")
	assert.Equal(t, draastest.SinkAborted, sink.State(), "a copy that cannot start aborts its sink")

	// Verify needs a sink that reads back.
	_, err = blockcopy.Copy(context.Background(), writeOnly{draastest.NewSink(1, bs, draastest.SinkOptions{})}, src, blockcopy.Options{Verify: true})
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Contains(t, err.Error(), "Verify")
}

// writeOnly hides every capability of a sink but the VolumeSink methods.
type writeOnly struct{ draas.VolumeSink }

// cancellingSink cancels the copy after limit successful writes, like a kill
// at that point, and counts successful writes per block.
type cancellingSink struct {
	*draastest.Sink
	mu     sync.Mutex
	ok     map[int64]int
	limit  int
	cancel context.CancelFunc
}

func (s *cancellingSink) WriteBlock(ctx context.Context, b draas.Block) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.Sink.WriteBlock(ctx, b); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok[b.Index]++
	if s.cancel != nil && len(s.ok) >= s.limit {
		s.cancel()
	}
	return nil
}

func (s *cancellingSink) Unwrap() any { return s.Sink }

type memCheckpoint struct {
	mu    sync.Mutex
	data  []byte
	saves int
}

func (m *memCheckpoint) Load(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.data), nil
}

func (m *memCheckpoint) Save(_ context.Context, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = bytes.Clone(p)
	m.saves++
	return nil
}

func (m *memCheckpoint) Delete(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = nil
	return nil
}

func TestCopyResumesFromCheckpoint(t *testing.T) {
	size := int64(100 * bs)
	content := makeDisk(t, "random", size, 9)
	src := draastest.DiskFrom(content, bs)
	ckpt := &memCheckpoint{}
	sink := &cancellingSink{Sink: draastest.NewSink(size, bs, draastest.SinkOptions{}), ok: map[int64]int{}, limit: 60}

	ctx, cancel := context.WithCancel(context.Background())
	sink.cancel = cancel
	st1, err := blockcopy.Copy(ctx, sink, src, blockcopy.Options{Concurrency: 4, Checkpoint: ckpt})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, draastest.SinkOpen, sink.State(), "with a checkpoint the sink stays open for the resume")
	require.NotEmpty(t, ckpt.data, "the failed copy saved its checkpoint")
	firstRun := len(sink.ok)
	require.GreaterOrEqual(t, firstRun, 60)
	require.Less(t, firstRun, 100)

	sink.cancel = nil
	st2, err := blockcopy.Copy(context.Background(), sink, src, blockcopy.Options{Concurrency: 4, Checkpoint: ckpt, Verify: true})
	require.NoError(t, err)
	assert.Equal(t, content, sink.Disk().Bytes())
	assert.Equal(t, int64(100-firstRun), st2.BlocksCopied, "the resume writes only the missing blocks")
	assert.Equal(t, int64(firstRun), st2.BlocksResumed)
	assert.Equal(t, int64(firstRun), st1.BlocksCopied)
	for i, n := range sink.ok {
		assert.Equal(t, 1, n, "block %d written %d times", i, n)
	}
	assert.Len(t, sink.ok, 100)
	assert.Nil(t, ckpt.data, "a finished copy deletes its checkpoint")
}

func TestCopyIgnoresForeignCheckpoint(t *testing.T) {
	ckpt := &memCheckpoint{data: []byte(`{"version":1,"plan":"other","blocks":4,"done":"/w=="}`)}
	content := makeDisk(t, "random", 4*bs, 1)
	sink := draastest.NewSink(4*bs, bs, draastest.SinkOptions{})
	st, err := blockcopy.Copy(context.Background(), sink, draastest.DiskFrom(content, bs), blockcopy.Options{Checkpoint: ckpt})
	require.NoError(t, err)
	assert.Equal(t, int64(4), st.BlocksCopied)
	assert.Equal(t, content, sink.Disk().Bytes())
}

func TestCopyCancelWithoutCheckpointAborts(t *testing.T) {
	size := int64(50 * bs)
	sink := &cancellingSink{Sink: draastest.NewSink(size, bs, draastest.SinkOptions{}), ok: map[int64]int{}, limit: 10}
	ctx, cancel := context.WithCancel(context.Background())
	sink.cancel = cancel
	_, err := blockcopy.Copy(ctx, sink, draastest.DiskFrom(makeDisk(t, "random", size, 2), bs), blockcopy.Options{})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, draastest.SinkAborted, sink.State())
}

func TestCopyRetriesTransientSource(t *testing.T) {
	size := int64(16 * bs)
	content := makeDisk(t, "random", size, 11)
	f := &draastest.Faults{}
	f.FailNth("ReadBlock", 3, draas.ErrTransient)
	f.FailNth("ReadBlock", 7, draas.ErrThrottled)
	src := draastest.FaultySource(draastest.DiskFrom(content, bs), f)
	sink := draastest.NewSink(size, bs, draastest.SinkOptions{})
	st, err := blockcopy.Copy(context.Background(), sink, src, blockcopy.Options{Retry: fastRetry})
	require.NoError(t, err)
	assert.Equal(t, content, sink.Disk().Bytes())
	assert.Equal(t, int64(2), st.Retries)
	assert.Equal(t, int64(18), st.ReadRequests)
}

func TestCopyDoesNotRetryPermanentErrors(t *testing.T) {
	f := &draastest.Faults{}
	boom := errors.New("disk on fire")
	f.FailNth("ReadAt", 1, boom)
	src := draastest.FaultySource(draastest.PlainSource(draastest.DiskFrom(makeDisk(t, "random", 4*bs, 1), bs)), f)
	sink := draastest.NewSink(4*bs, bs, draastest.SinkOptions{})
	st, err := blockcopy.Copy(context.Background(), sink, src, blockcopy.Options{Retry: fastRetry, Concurrency: 1})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "block 0")
	assert.Equal(t, int64(0), st.Retries)
	assert.Equal(t, draastest.SinkAborted, sink.State())
}

func TestCopyDetectsCorruptSource(t *testing.T) {
	size := int64(16 * bs)
	disk := draastest.DiskFrom(makeDisk(t, "random", size, 12), bs)
	disk.Corrupt(5*bs + 100)
	sink := draastest.NewSink(size, bs, draastest.SinkOptions{})
	st, err := blockcopy.Copy(context.Background(), sink, disk, blockcopy.Options{Retry: fastRetry})
	require.ErrorIs(t, err, draas.ErrChecksumMismatch)
	assert.Contains(t, err.Error(), "block 5")
	assert.Equal(t, int64(0), st.Retries, "a checksum mismatch is never retried")
	assert.Equal(t, draastest.SinkAborted, sink.State())

	// Corruption in transit (the source's data changes after the storage
	// recorded its checksum) is caught the same way.
	f := &draastest.Faults{}
	f.CorruptReads("ReadBlock", 2)
	sink = draastest.NewSink(size, bs, draastest.SinkOptions{})
	_, err = blockcopy.Copy(context.Background(), sink, draastest.FaultySource(draastest.DiskFrom(makeDisk(t, "random", size, 13), bs), f), blockcopy.Options{})
	require.ErrorIs(t, err, draas.ErrChecksumMismatch)
}

func TestCopyThrottledSinkLosesNothing(t *testing.T) {
	size := int64(40 * bs)
	content := makeDisk(t, "random", size, 14)
	f := &draastest.Faults{}
	f.Throttle("WriteBlock", 3)
	inner := draastest.NewSink(size, bs, draastest.SinkOptions{})
	sink := draastest.FaultySink(inner, f)
	st, err := blockcopy.Copy(context.Background(), sink, draastest.DiskFrom(content, bs), blockcopy.Options{Retry: fastRetry, Verify: true})
	require.NoError(t, err)
	assert.Equal(t, content, inner.Disk().Bytes())
	assert.GreaterOrEqual(t, st.Retries, int64(13))
	assert.Equal(t, int64(40)+st.Retries, st.WriteRequests)
	assert.Equal(t, int64(40), inner.Writes())
}

// badReadback is a sink whose committed result differs from what was written.
type badReadback struct{ *draastest.Sink }

func (s badReadback) Committed(ctx context.Context) (draas.BlockSource, error) {
	src, err := s.Sink.Committed(ctx)
	if err != nil {
		return nil, err
	}
	d := draastest.DiskFrom(readAll(ctx, src), bs)
	d.WriteAt([]byte{0xff}, 2*bs+1)
	return d, nil
}

func readAll(ctx context.Context, src draas.BlockSource) []byte {
	p := make([]byte, src.Size())
	_, _ = src.ReadAt(ctx, p, 0)
	return p
}

func TestCopyVerifyDetectsMismatch(t *testing.T) {
	size := int64(4 * bs)
	sink := badReadback{draastest.NewSink(size, bs, draastest.SinkOptions{})}
	st, err := blockcopy.Copy(context.Background(), sink, draastest.DiskFrom(makeDisk(t, "random", size, 15), bs), blockcopy.Options{Verify: true})
	require.ErrorIs(t, err, blockcopy.ErrVerify)
	require.ErrorIs(t, err, draas.ErrChecksumMismatch)
	assert.Contains(t, err.Error(), "block 2")
	assert.False(t, st.Verified)
}

func TestCopyProgress(t *testing.T) {
	size := int64(20 * bs)
	content := makeDisk(t, "sparse", size, 16)
	var events []blockcopy.Progress
	var mu sync.Mutex
	_, err := blockcopy.Copy(context.Background(), draastest.NewSink(size, bs, draastest.SinkOptions{}), draastest.DiskFrom(content, bs), blockcopy.Options{
		ProgressInterval: time.Millisecond,
		Progress: func(p blockcopy.Progress) {
			mu.Lock()
			events = append(events, p)
			mu.Unlock()
		},
	})
	require.NoError(t, err)
	require.NotEmpty(t, events)
	last := events[len(events)-1]
	assert.True(t, last.Done)
	assert.Equal(t, size, last.Total)
	assert.Equal(t, size, last.Written+last.SkippedZero)
	for i := 1; i < len(events); i++ {
		assert.GreaterOrEqual(t, events[i].Written, events[i-1].Written, "progress never goes back")
	}
}

func TestCopyRateLimit(t *testing.T) {
	size := int64(16 * bs) // 1 MiB
	start := time.Now()
	_, err := blockcopy.Copy(context.Background(), draastest.NewSink(size, bs, draastest.SinkOptions{}), draastest.DiskFrom(makeDisk(t, "random", size, 17), bs), blockcopy.Options{RateLimit: 2 << 20})
	require.NoError(t, err)
	// 1 MiB at 2 MiB/s with a one-block burst takes at least ~0.45 s. This
	// is a lower bound on the limiter's behaviour, not a speed assertion.
	assert.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond)
}

// synthetic is a huge sparse source whose data is computed, not stored: one
// 512 KiB block of data every 64 MiB.
type synthetic struct{ size int64 }

const synthBS = 512 << 10
const synthEvery = 64 << 20

func (s synthetic) Size() int64    { return s.size }
func (s synthetic) BlockSize() int { return synthBS }
func (s synthetic) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	for i := range p {
		o := off + int64(i)
		if o%synthEvery < synthBS {
			p[i] = byte(o>>19) ^ byte(o)
		} else {
			p[i] = 0
		}
	}
	return len(p), nil
}
func (s synthetic) AllocatedExtents(context.Context) ([]draas.Extent, error) {
	var exts []draas.Extent
	for off := int64(0); off < s.size; off += synthEvery {
		exts = append(exts, draas.Extent{Offset: off, Length: synthBS})
	}
	return exts, nil
}

// hashSink keeps nothing but a count, so the only memory is the engine's.
type hashSink struct{ writes atomic.Int64 }

func (h *hashSink) BlockSize() int                                { return synthBS }
func (h *hashSink) WriteBlock(context.Context, draas.Block) error { h.writes.Add(1); return nil }
func (h *hashSink) Commit(context.Context) error                  { return nil }
func (h *hashSink) Abort(context.Context) error                   { return nil }

func TestCopyMemoryBoundedOn16GiBSparseSource(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	src := synthetic{size: 16 << 30}
	sink := &hashSink{}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	}()
	st, err := blockcopy.Copy(context.Background(), sink, src, blockcopy.Options{Concurrency: 8})
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	assert.Equal(t, int64(256), sink.writes.Load())
	assert.Equal(t, int64(16<<30), st.BytesCopied+st.BytesZero)
	growth := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("peak heap growth %d KiB for a 16 GiB disk", growth>>10)
	// 8 buffers of 512 KiB, a zero block and bookkeeping: far below 32 MiB,
	// and independent of the disk's size.
	assert.Less(t, growth, int64(32<<20))
}

// TestCopyConcurrencyBounded checks that a huge Concurrency on a small disk
// allocates buffers for the disk's blocks only (it used to allocate one per
// unit of Concurrency and die out of memory), and that one that would
// exceed the memory limit on a large disk fails with draas.ErrInvalid
// naming the concurrency that fits, before allocating anything.
func TestCopyConcurrencyBounded(t *testing.T) {
	const small = 4 << 10
	data := bytes.Repeat([]byte("draas"), 2*small/5+1)[:2*small]
	src := draastest.DiskFrom(data, small)
	sink := draastest.NewSink(int64(len(data)), small, draastest.SinkOptions{})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := blockcopy.Copy(context.Background(), sink, src, blockcopy.Options{Concurrency: 1 << 16, Verify: true})
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	assert.Equal(t, data, sink.Disk().Bytes())
	// 65,536 buffers of 4 KiB would be 256 MiB (and a channel of 1.5 MiB);
	// two blocks need 16 KiB.
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(4<<20), "bytes allocated by a 2-block copy with Concurrency 65536")

	for _, c := range []struct {
		opts blockcopy.Options
		fit  string
	}{
		{blockcopy.Options{Concurrency: 100_000_000}, "at most 2048"},
		{blockcopy.Options{Concurrency: 100_000_000, Verify: true}, "at most 1024"},
		{blockcopy.Options{Concurrency: 64, MemoryLimit: 16 * synthBS}, "at most 16"},
		{blockcopy.Options{MemoryLimit: synthBS / 2}, "raise Options.MemoryLimit"},
	} {
		sink := &hashSink{}
		_, err := blockcopy.Copy(context.Background(), sink, synthetic{size: 1 << 40}, c.opts)
		require.ErrorIs(t, err, draas.ErrInvalid, "%+v", c.opts)
		assert.Contains(t, err.Error(), c.fit)
		assert.Zero(t, sink.writes.Load())
	}
	// At the limit, the copy runs.
	_, err = blockcopy.Copy(context.Background(), &hashSink{}, synthetic{size: 64 << 20}, blockcopy.Options{Concurrency: 16, MemoryLimit: 16 * synthBS})
	require.NoError(t, err)
}
