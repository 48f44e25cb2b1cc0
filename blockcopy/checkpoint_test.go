package blockcopy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
)

// stateSink is a resumable sink that only describes a state: a constant
// one, or with perBlock > 0 one that grows by perBlock bytes per written
// block, as ebs.Sink's and s3.Sink's block lists do.
type stateSink struct {
	perBlock int
	written  *bitmap
	flushes  int
}

func (s *stateSink) BlockSize() int                                { return 512 << 10 }
func (s *stateSink) WriteBlock(context.Context, draas.Block) error { return nil }
func (s *stateSink) Commit(context.Context) error                  { return nil }
func (s *stateSink) Abort(context.Context) error                   { return nil }
func (s *stateSink) Flush(context.Context) error                   { s.flushes++; return nil }
func (s *stateSink) Target() string                                { return "state-sink" }
func (s *stateSink) ResumeState() ([]byte, error) {
	if s.perBlock == 0 {
		return []byte("constant state"), nil
	}
	var n int
	for _, r := range s.written.ranges(nil) {
		n += int(r.end - r.first)
	}
	out := make([]byte, 8+n*s.perBlock)
	binary.LittleEndian.PutUint64(out, uint64(n))
	return out, nil
}

// countingStore is an in-memory CheckpointAppender that counts what it is
// given.
type countingStore struct {
	mu                   sync.Mutex
	data                 []byte
	keep                 bool // keep the data (else only count)
	saves, appends       int
	savedBytes, appBytes int64
	maxAppend            int
}

func (m *countingStore) Load(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.data), nil
}

func (m *countingStore) Save(_ context.Context, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saves++
	m.savedBytes += int64(len(p))
	if m.keep {
		m.data = bytes.Clone(p)
	}
	return nil
}

func (m *countingStore) Append(_ context.Context, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.appends++
	m.appBytes += int64(len(p))
	m.maxAppend = max(m.maxAppend, len(p))
	if m.keep {
		m.data = append(m.data, p...)
	}
	return nil
}

func (m *countingStore) Delete(context.Context) error { m.data = nil; return nil }

// fakeCopier returns a copier of a fully planned disk of n 512 KiB blocks,
// as newCopier would set it up, without a source.
func fakeCopier(t testing.TB, n int64, dst draas.VolumeSink, store CheckpointStore) *copier {
	c := &copier{dst: dst, size: n * 512 << 10, bs: 512 << 10, nblocks: n,
		runs: []run{{0, n, true}}, opts: Options{Checkpoint: store}}
	c.done = newBitmap(n)
	require.NoError(t, c.loadCheckpoint(context.Background()))
	return c
}

// simulateCopy marks the blocks done in order, batch by batch (the blocks a
// copy at 500 MiB/s finishes between two saves 2 s apart), saving after each
// batch, and returns the peak heap growth seen.
func simulateCopy(t testing.TB, c *copier, sink *stateSink, batch int64) uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, uint64(0)
	for first := int64(0); first < c.nblocks; first += batch {
		for i := first; i < min(first+batch, c.nblocks); i++ {
			c.done.set(i)
			if sink.written != nil {
				sink.written.set(i)
			}
		}
		require.NoError(t, c.saveCheckpoint(context.Background(), false))
		if (first/batch)%64 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc-min(ms.HeapAlloc, base))
		}
	}
	require.NoError(t, c.saveCheckpoint(context.Background(), true))
	return peak
}

// TestCheckpointCostGrowsWithChange simulates the copy of a fully written
// 1 TiB disk (2 Mi blocks of 512 KiB) and counts the bytes written to the
// checkpoint store: each save writes only the newly done ranges, never the
// unchanged sink state again, and the whole is far below 1 % of the bytes
// copied.
func TestCheckpointCostGrowsWithChange(t *testing.T) {
	const n = 2 << 20 // 1 TiB of 512 KiB blocks
	copied := int64(n) * 512 << 10
	sink := &stateSink{}
	store := &countingStore{keep: true}
	c := fakeCopier(t, n, sink, store)
	peak := simulateCopy(t, c, sink, 2000)

	total := store.savedBytes + store.appBytes
	t.Logf("1 TiB, constant sink state: %d saves, %d appends, %d bytes written (%.6f %% of copied), largest append %d bytes, peak heap growth %d KiB",
		store.saves, store.appends, total, 100*float64(total)/float64(copied), store.maxAppend, peak>>10)
	assert.LessOrEqual(t, total, copied/100, "checkpointing writes at most 1 % of the bytes copied")
	assert.Less(t, total, int64(1<<20), "and in fact a few bytes per save")
	assert.Equal(t, 1, store.saves, "the log is never rewritten: it stays small")
	assert.LessOrEqual(t, store.maxAppend, 32, "an append holds one new range, not the unchanged sink state")
	assert.Less(t, peak, uint64(4<<20), "no second copy of the state in memory")

	// The log reads back as every block done, with the sink's state.
	c2 := fakeCopier(t, n, sink, store)
	assert.Equal(t, []blockRange{{0, n}}, c2.done.ranges(nil))
	state, err := SinkState(context.Background(), store)
	require.NoError(t, err)
	assert.Equal(t, "constant state", string(state))

	// A save with nothing new writes nothing.
	before := store.appBytes + store.savedBytes
	require.NoError(t, c.saveCheckpoint(context.Background(), false))
	assert.Equal(t, before, store.appBytes+store.savedBytes)
}

// TestCheckpointGrowingSinkStateIsBounded: a sink state that grows with the
// copy (ebs.Sink's list of block checksums, ~70 bytes a block) is saved only
// when enough was copied since its last save, so its saves total about
// 1/sinkStateRatio of the bytes copied, and every save that records blocks
// records a state covering them.
func TestCheckpointGrowingSinkStateIsBounded(t *testing.T) {
	n := int64(128 << 10) // 64 GiB
	if testing.Short() {
		n = 16 << 10
	}
	copied := n * 512 << 10
	sink := &stateSink{perBlock: 70, written: newBitmap(n)}
	store := &countingStore{keep: true}
	c := fakeCopier(t, n, sink, store)
	simulateCopy(t, c, sink, 2000)

	total := store.savedBytes + store.appBytes
	t.Logf("%d GiB, sink state of 70 B/block: %d saves, %d appends, %d bytes written (%.3f %% of copied)",
		copied>>30, store.saves, store.appends, total, 100*float64(total)/float64(copied))
	assert.LessOrEqual(t, total, copied/100, "checkpointing writes at most 1 % of the bytes copied")

	// Every prefix of the log (a crash after any append, or in the middle of
	// one) records only blocks its sink state covers.
	data := store.data
	for cut := len(checkpointMagic); cut <= len(data); cut += max(1, len(data)/257) {
		cp, err := parseCheckpoint(data[:cut])
		if err != nil {
			continue // torn inside the header
		}
		var done int64
		for _, r := range unionRanges(nil, cp.ranges) {
			done += r.end - r.first
		}
		if done == 0 {
			continue
		}
		require.NotNil(t, cp.sink, "cut at %d", cut)
		covered := int64(binary.LittleEndian.Uint64(cp.sink))
		assert.GreaterOrEqual(t, covered, done, "cut at %d: blocks recorded done that the sink state does not cover", cut)
	}
	cp, err := parseCheckpoint(data)
	require.NoError(t, err)
	assert.Equal(t, []blockRange{{0, n}}, unionRanges(nil, cp.ranges), "the final save records everything")
}

// TestCheckpointStoreWithoutAppend: a store that can only Save gets the
// compact checkpoint each time, and it reads back.
func TestCheckpointStoreWithoutAppend(t *testing.T) {
	store := &saveOnly{}
	sink := &stateSink{}
	c := fakeCopier(t, 1000, sink, store)
	for i := int64(0); i < 1000; i += 3 {
		c.done.set(i)
	}
	require.NoError(t, c.saveCheckpoint(context.Background(), false))
	first := len(store.data)
	c.done.set(1)
	require.NoError(t, c.saveCheckpoint(context.Background(), false))
	c2 := fakeCopier(t, 1000, sink, store)
	assert.Equal(t, c.done.ranges(nil), c2.done.ranges(nil))
	assert.Less(t, first, 2000, "the compact form is run-length encoded")
}

type saveOnly struct{ data []byte }

func (m *saveOnly) Load(context.Context) ([]byte, error)   { return m.data, nil }
func (m *saveOnly) Save(_ context.Context, p []byte) error { m.data = bytes.Clone(p); return nil }
func (m *saveOnly) Delete(context.Context) error           { m.data = nil; return nil }

// TestFileCheckpointAppendsAndSurvivesATornTail: FileCheckpoint appends,
// and a crash in the middle of an append loses only that append.
func TestFileCheckpointAppendsAndSurvivesATornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ckpt")
	store := FileCheckpoint(path)
	sink := &stateSink{}
	c := fakeCopier(t, 100, sink, store)
	for i := int64(0); i < 10; i++ {
		c.done.set(i)
	}
	require.NoError(t, c.saveCheckpoint(context.Background(), false))
	for i := int64(20); i < 30; i++ {
		c.done.set(i)
	}
	require.NoError(t, c.saveCheckpoint(context.Background(), false))
	assert.Greater(t, c.ckpt.logSize, c.ckpt.compact, "the second save appended")

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data[:len(data)-2], 0o600)) // torn append
	c2 := fakeCopier(t, 100, sink, store)
	assert.Equal(t, []blockRange{{0, 10}}, c2.done.ranges(nil))

	require.NoError(t, os.WriteFile(path, data, 0o600))
	c3 := fakeCopier(t, 100, sink, store)
	assert.Equal(t, []blockRange{{0, 10}, {20, 30}}, c3.done.ranges(nil))

	// The next Copy's first save rewrites the log (it may end torn).
	for i := int64(40); i < 50; i++ {
		c3.done.set(i)
	}
	require.NoError(t, c3.saveCheckpoint(context.Background(), false))
	c4 := fakeCopier(t, 100, sink, store)
	assert.Equal(t, []blockRange{{0, 10}, {20, 30}, {40, 50}}, c4.done.ranges(nil))
}

// TestCheckpointReadsFormat1: a checkpoint written before the log format
// still resumes its copy.
func TestCheckpointReadsFormat1(t *testing.T) {
	sink := &stateSink{}
	c := fakeCopier(t, 100, sink, &countingStore{})
	done := newBitmap(100)
	done.setRange(blockRange{5, 70})
	old, err := json.Marshal(checkpointData{Version: 1, Plan: c.planID(), Blocks: 100, Done: done.bytes(),
		Sink: []byte("old state"), Target: sink.Target()})
	require.NoError(t, err)
	store := &countingStore{keep: true, data: old}
	c2 := fakeCopier(t, 100, sink, store)
	assert.Equal(t, []blockRange{{5, 70}}, c2.done.ranges(nil))
	state, err := SinkState(context.Background(), store)
	require.NoError(t, err)
	assert.Equal(t, "old state", string(state))

	// Garbage is not applied, and SinkState says it is unreadable.
	store.data = []byte("draas-checkpoint/9\n...")
	c3 := fakeCopier(t, 100, sink, store)
	assert.Empty(t, c3.done.ranges(nil))
	_, err = SinkState(context.Background(), store)
	assert.ErrorIs(t, err, errNotCheckpoint)
}

func TestBitmapRanges(t *testing.T) {
	b := newBitmap(300)
	for _, r := range []blockRange{{0, 1}, {3, 64}, {64, 130}, {200, 201}, {255, 300}} {
		b.setRange(r)
	}
	assert.Equal(t, []blockRange{{0, 1}, {3, 130}, {200, 201}, {255, 300}}, b.ranges(nil))
	not := newBitmap(300)
	not.setRange(blockRange{10, 256})
	assert.Equal(t, []blockRange{{0, 1}, {3, 10}, {256, 300}}, b.ranges(not))
	enc := encodeRanges(b.ranges(nil))
	dec, ok := decodeRanges(enc, 300)
	require.True(t, ok)
	assert.Equal(t, b.ranges(nil), dec)
	_, ok = decodeRanges(enc, 299)
	assert.False(t, ok, "a range past the disk is refused")
}

// BenchmarkCheckpointSave measures one periodic save of a 1 TiB disk's
// checkpoint after 2,000 more blocks were done.
func BenchmarkCheckpointSave(b *testing.B) {
	const n = 2 << 20
	sink := &stateSink{}
	store := &countingStore{}
	c := fakeCopier(b, n, sink, store)
	next := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		for i := next; i < next+2000; i++ {
			c.done.set(i % n)
		}
		next += 2000
		if err := c.saveCheckpoint(context.Background(), false); err != nil {
			b.Fatal(err)
		}
	}
}
