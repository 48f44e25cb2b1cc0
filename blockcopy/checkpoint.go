package blockcopy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendraas/draas"
)

// bitmap is a fixed-size set of block indices, safe for concurrent use.
type bitmap struct {
	words []atomic.Uint64
}

func newBitmap(n int64) *bitmap {
	return &bitmap{words: make([]atomic.Uint64, (n+63)/64)}
}

func (b *bitmap) set(i int64) { b.words[i/64].Or(1 << (i % 64)) }

func (b *bitmap) get(i int64) bool { return b.words[i/64].Load()&(1<<(i%64)) != 0 }

func (b *bitmap) bytes() []byte {
	out := make([]byte, 8*len(b.words))
	for i := range b.words {
		binary.LittleEndian.PutUint64(out[8*i:], b.words[i].Load())
	}
	return out
}

func (b *bitmap) load(p []byte) bool {
	if len(p) != 8*len(b.words) {
		return false
	}
	for i := range b.words {
		b.words[i].Store(binary.LittleEndian.Uint64(p[8*i:]))
	}
	return true
}

// A checkpoint is written in one of two formats.
//
// Format 2 (written today) is a log: the magic string, a header record (the
// plan, the block count and the sink target), then records appended by each
// save: the ranges of blocks newly done since the previous save, and the
// sink's resume state when it changed. Every record carries a CRC-32, so a
// torn append (a crash in the middle of one) ends the log at the last whole
// record: the saved state is then that of an earlier save, which is always
// correct. The log is rewritten compactly (header, all done ranges, the
// sink's latest state) at the first save of each Copy, when the store cannot
// append, and when it grows past compactFactor times its compact size.
//
// Format 1 (before) was one JSON object rewritten by every save; it is still
// read, so a copy killed by an older version resumes.

// checkpointMagic starts a format 2 checkpoint.
const checkpointMagic = "draas-checkpoint/2\n"

// Record types of format 2.
const (
	recHeader = 'H' // plan, block count, sink target
	recDone   = 'D' // run-length encoded ranges of blocks done
	recSink   = 'S' // the sink's resume state, replacing any earlier one
)

const (
	// compactFactor is how much larger than its compact form the log may
	// grow before a save rewrites it.
	compactFactor = 4
	// compactMin is the log size below which it is never compacted.
	compactMin = 64 << 10
	// sinkStateRatio bounds the cost of saving a sink state that grows
	// with the copy (the block lists of ebs.Sink and s3.Sink): a save writes
	// a changed sink state of n bytes only when the blocks it newly records
	// hold at least sinkStateRatio × n bytes, so those writes total about
	// 1/sinkStateRatio of the bytes copied. Until then the newly done
	// blocks stay unsaved (a resume copies them again).
	sinkStateRatio = 256
)

// checkpointData is the format 1 checkpoint, still read. Plan identifies the
// copy (size, block size, extents, zero-write mode) so that a checkpoint of
// another copy is never applied.
type checkpointData struct {
	Version int    `json:"version"`
	Plan    string `json:"plan"`
	Blocks  int64  `json:"blocks"`
	Done    []byte `json:"done"`
	// Sink is the sink's draas.ResumableSink state and Target its target,
	// if it has them.
	Sink   []byte `json:"sink,omitempty"`
	Target string `json:"target,omitempty"`
}

const checkpointVersion = 1

// blockRange is the blocks [first, end).
type blockRange struct{ first, end int64 }

// parsedCheckpoint is a decoded checkpoint of either format.
type parsedCheckpoint struct {
	plan   string
	blocks int64
	target string
	sink   []byte
	ranges []blockRange // done, possibly overlapping (format 2)
	done   []byte       // done bitmap (format 1)
}

// errNotCheckpoint reports data that is not a checkpoint of a known format.
var errNotCheckpoint = errors.New("not a draas checkpoint of a known format (format 1 or 2)")

func parseCheckpoint(data []byte) (*parsedCheckpoint, error) {
	if len(data) > 0 && data[0] == '{' {
		var cp checkpointData
		if err := json.Unmarshal(data, &cp); err != nil {
			return nil, err
		}
		if cp.Version != checkpointVersion {
			return nil, errNotCheckpoint
		}
		return &parsedCheckpoint{plan: cp.Plan, blocks: cp.Blocks, target: cp.Target, sink: cp.Sink, done: cp.Done}, nil
	}
	rest, ok := bytes.CutPrefix(data, []byte(checkpointMagic))
	if !ok {
		return nil, errNotCheckpoint
	}
	var p *parsedCheckpoint
	for len(rest) > 0 {
		typ, payload, next, ok := nextRecord(rest)
		if !ok {
			break // a torn append: the log ends at the last whole record
		}
		rest = next
		if p == nil {
			if typ != recHeader {
				return nil, errNotCheckpoint
			}
			h, ok := decodeHeader(payload)
			if !ok {
				return nil, errNotCheckpoint
			}
			p = h
			continue
		}
		switch typ {
		case recDone:
			rs, ok := decodeRanges(payload, p.blocks)
			if !ok {
				return nil, fmt.Errorf("a done record is malformed")
			}
			p.ranges = append(p.ranges, rs...)
		case recSink:
			p.sink = payload
		default:
			return nil, fmt.Errorf("unknown record type %q", typ)
		}
	}
	if p == nil {
		return nil, errNotCheckpoint
	}
	return p, nil
}

// appendRecord appends one record: type, length, payload, CRC-32 of all
// three.
func appendRecord(out []byte, typ byte, payload []byte) []byte {
	start := len(out)
	out = append(out, typ)
	out = binary.AppendUvarint(out, uint64(len(payload)))
	out = append(out, payload...)
	return binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out[start:]))
}

func nextRecord(p []byte) (typ byte, payload, rest []byte, ok bool) {
	if len(p) < 1 {
		return 0, nil, nil, false
	}
	n, w := binary.Uvarint(p[1:])
	if w <= 0 || n > uint64(len(p)) || 1+w+int(n)+4 > len(p) {
		return 0, nil, nil, false
	}
	end := 1 + w + int(n)
	if crc32.ChecksumIEEE(p[:end]) != binary.LittleEndian.Uint32(p[end:]) {
		return 0, nil, nil, false
	}
	return p[0], p[1+w : end], p[end+4:], true
}

func encodeHeader(plan string, blocks int64, target string) []byte {
	var out []byte
	out = binary.AppendUvarint(out, uint64(len(plan)))
	out = append(out, plan...)
	out = binary.AppendUvarint(out, uint64(blocks))
	out = binary.AppendUvarint(out, uint64(len(target)))
	return append(out, target...)
}

func decodeHeader(p []byte) (*parsedCheckpoint, bool) {
	str := func() (string, bool) {
		n, w := binary.Uvarint(p)
		if w <= 0 || n > uint64(len(p)-w) {
			return "", false
		}
		s := string(p[w : w+int(n)])
		p = p[w+int(n):]
		return s, true
	}
	plan, ok := str()
	if !ok {
		return nil, false
	}
	blocks, w := binary.Uvarint(p)
	if w <= 0 || blocks > math.MaxInt64 {
		return nil, false
	}
	p = p[w:]
	target, ok := str()
	if !ok || len(p) != 0 {
		return nil, false
	}
	return &parsedCheckpoint{plan: plan, blocks: int64(blocks), target: target}, true
}

// encodeRanges encodes sorted, disjoint ranges as pairs of uvarints: the gap
// since the previous range's end and the length.
func encodeRanges(rs []blockRange) []byte {
	out := make([]byte, 0, 4*len(rs))
	var prev int64
	for _, r := range rs {
		out = binary.AppendUvarint(out, uint64(r.first-prev))
		out = binary.AppendUvarint(out, uint64(r.end-r.first))
		prev = r.end
	}
	return out
}

func decodeRanges(p []byte, blocks int64) ([]blockRange, bool) {
	var rs []blockRange
	var prev int64
	for len(p) > 0 {
		gap, w1 := binary.Uvarint(p)
		if w1 <= 0 {
			return nil, false
		}
		n, w2 := binary.Uvarint(p[w1:])
		if w2 <= 0 || gap > uint64(blocks) || n > uint64(blocks) {
			return nil, false
		}
		p = p[w1+w2:]
		first := prev + int64(gap)
		end := first + int64(n)
		if end > blocks {
			return nil, false
		}
		rs = append(rs, blockRange{first, end})
		prev = end
	}
	return rs, true
}

// unionRanges merges two sorted lists of disjoint ranges.
func unionRanges(a, b []blockRange) []blockRange {
	out := make([]blockRange, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		var r blockRange
		if len(b) == 0 || (len(a) > 0 && a[0].first <= b[0].first) {
			r, a = a[0], a[1:]
		} else {
			r, b = b[0], b[1:]
		}
		if n := len(out); n > 0 && r.first <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, r.end)
			continue
		}
		out = append(out, r)
	}
	return out
}

// ranges returns the set bits of b as sorted, disjoint ranges; with not
// set, only those that are not set in not.
func (b *bitmap) ranges(not *bitmap) []blockRange {
	var out []blockRange
	for wi := range b.words {
		w := b.words[wi].Load()
		if not != nil {
			w &^= not.words[wi].Load()
		}
		for w != 0 {
			lo := bits.TrailingZeros64(w)
			n := bits.TrailingZeros64(^(w >> lo)) // ones from lo; 64 if all
			if lo+n > 64 {
				n = 64 - lo
			}
			first := int64(wi)*64 + int64(lo)
			if k := len(out); k > 0 && out[k-1].end == first {
				out[k-1].end += int64(n)
			} else {
				out = append(out, blockRange{first, first + int64(n)})
			}
			if lo+n == 64 {
				break
			}
			w &^= (uint64(1)<<n - 1) << lo
		}
	}
	return out
}

func (b *bitmap) setRange(r blockRange) {
	for i := r.first; i < r.end; i++ {
		b.set(i)
	}
}

// CheckpointAppender is a [CheckpointStore] that can also append to the
// saved checkpoint, so that a save costs in proportion to what changed since
// the previous one. Copy appends to a checkpoint it saved itself, and uses
// Save to start it and, rarely, to compact it; with a store that is not a
// CheckpointAppender, every save is a Save of the whole (compact)
// checkpoint.
type CheckpointAppender interface {
	CheckpointStore
	// Append adds data at the end of the saved checkpoint, durably. A crash
	// during Append may leave any prefix of data appended (the checkpoint
	// format detects a torn end), but must not change what was there.
	Append(ctx context.Context, data []byte) error
}

// checkpointer is the saving side of a copy's checkpoint. Its saves are
// serialised by mu (the periodic saver and the final save may overlap).
type checkpointer struct {
	mu      sync.Mutex
	saved   *bitmap // blocks recorded in the store
	fresh   bool    // nothing written yet by this Copy: the next save rewrites
	sinkSum [32]byte
	sinkLen int // 0: no state saved yet by this Copy
	logSize int64
	compact int64 // size of the last compact rewrite
	// written counts the bytes handed to the store, for tests.
	written atomic.Int64
}

func (c *copier) planID() string {
	h := sha256.New()
	fmt.Fprintf(h, "size=%d bs=%d zero=%t changed=%t\n", c.size, c.bs, c.needZero, c.changed)
	for _, r := range c.runs {
		fmt.Fprintf(h, "%d-%d:%t\n", r.first, r.end, r.in)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// loadCheckpoint marks the blocks a matching saved checkpoint records as done.
// A checkpoint of another copy or another sink target, or an unreadable one,
// is ignored: copying everything again is always correct because sinks are
// idempotent.
func (c *copier) loadCheckpoint(ctx context.Context) error {
	c.ckpt = &checkpointer{saved: newBitmap(c.nblocks), fresh: true}
	data, err := c.opts.Checkpoint.Load(ctx)
	if err != nil {
		return fmt.Errorf("blockcopy: load checkpoint: %w", err)
	}
	if len(data) == 0 {
		return nil
	}
	cp, err := parseCheckpoint(data)
	if err != nil || cp.plan != c.planID() || cp.blocks != c.nblocks {
		return nil
	}
	if cp.target != sinkTarget(c.dst) {
		// Recorded for another target: its done blocks are not in this sink.
		return nil
	}
	if cp.done != nil {
		if !c.done.load(cp.done) {
			c.done = newBitmap(c.nblocks)
		}
		return nil
	}
	for _, r := range cp.ranges {
		c.done.setRange(r)
	}
	return nil
}

// saveCheckpoint flushes the sink and records the blocks that were done
// before the flush began: those are durable. It writes only what changed
// since the previous save: the newly done ranges, and the sink's state if it
// changed (see sinkStateRatio). With final, it records every done block.
func (c *copier) saveCheckpoint(ctx context.Context, final bool) error {
	k := c.ckpt
	k.mu.Lock()
	defer k.mu.Unlock()
	newRanges := c.done.ranges(k.saved)
	if len(newRanges) == 0 && !k.fresh {
		return nil // nothing changed: write nothing
	}
	resumable, isResumable := draas.As[draas.ResumableSink](c.dst)
	if isResumable && !final && k.sinkLen > 0 {
		var newBytes int64
		for _, r := range newRanges {
			newBytes += (r.end - r.first) * c.bs
		}
		if newBytes < sinkStateRatio*int64(k.sinkLen) {
			// The sink's state must be saved with these blocks, and it is
			// too large to save so soon again. They wait for a later save.
			return nil
		}
	}
	if f, ok := draas.As[draas.Flusher](c.dst); ok {
		if err := f.Flush(ctx); err != nil {
			return fmt.Errorf("flush sink: %w", err)
		}
	}
	var state []byte
	var stateSum [32]byte
	if isResumable {
		var err error
		if state, err = resumable.ResumeState(); err != nil {
			return fmt.Errorf("sink resume state: %w", err)
		}
		stateSum = sha256.Sum256(state)
	}
	stateChanged := isResumable && (k.sinkLen == 0 || stateSum != k.sinkSum)

	appender, canAppend := c.opts.Checkpoint.(CheckpointAppender)
	var rec []byte
	if stateChanged {
		rec = appendRecord(rec, recSink, state)
	}
	if len(newRanges) > 0 {
		rec = appendRecord(rec, recDone, encodeRanges(newRanges))
	}
	rewrite := k.fresh || !canAppend || k.logSize+int64(len(rec)) > max(compactFactor*k.compact, compactMin)
	if rewrite {
		all := unionRanges(c.ckpt.saved.ranges(nil), newRanges)
		out := []byte(checkpointMagic)
		out = appendRecord(out, recHeader, encodeHeader(c.planID(), c.nblocks, sinkTarget(c.dst)))
		if isResumable {
			out = appendRecord(out, recSink, state)
		}
		out = appendRecord(out, recDone, encodeRanges(all))
		if err := c.opts.Checkpoint.Save(ctx, out); err != nil {
			return err
		}
		k.written.Add(int64(len(out)))
		k.logSize, k.compact, k.fresh = int64(len(out)), int64(len(out)), false
	} else if len(rec) > 0 {
		if err := appender.Append(ctx, rec); err != nil {
			return err
		}
		k.written.Add(int64(len(rec)))
		k.logSize += int64(len(rec))
	}
	for _, r := range newRanges {
		k.saved.setRange(r)
	}
	if isResumable {
		k.sinkSum, k.sinkLen = stateSum, max(1, len(state))
	}
	return nil
}

func sinkTarget(dst draas.VolumeSink) string {
	if r, ok := draas.As[draas.ResumableSink](dst); ok {
		return r.Target()
	}
	return ""
}

// startCheckpointing saves the checkpoint every CheckpointInterval until the
// returned function is called.
func (c *copier) startCheckpointing(ctx context.Context) func() {
	if c.opts.Checkpoint == nil {
		return func() {}
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(c.opts.CheckpointInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				// A failed periodic save is not fatal: the final save on
				// failure, or a resume from an older checkpoint, is still
				// correct.
				_ = c.saveCheckpoint(ctx, false)
			}
		}
	}()
	return func() {
		close(stop)
		<-finished
	}
}

// SinkState returns the draas.ResumableSink state saved in the checkpoint in
// store, or nil if there is none. Use it to reopen the sink of a copy that
// is to be resumed, before calling Copy with the same store.
func SinkState(ctx context.Context, store CheckpointStore) ([]byte, error) {
	data, err := store.Load(ctx)
	if err != nil || len(data) == 0 {
		return nil, err
	}
	cp, err := parseCheckpoint(data)
	if err != nil {
		return nil, fmt.Errorf("blockcopy: checkpoint is unreadable: %w", err)
	}
	return cp.sink, nil
}

// FileCheckpoint returns a CheckpointStore that keeps the checkpoint in the
// file at path. Save replaces it atomically (write to a temporary file,
// fsync, rename); Append (it is a [CheckpointAppender]) appends and fsyncs.
func FileCheckpoint(path string) CheckpointStore { return fileCheckpoint(path) }

type fileCheckpoint string

func (f fileCheckpoint) Load(ctx context.Context) ([]byte, error) {
	data, err := os.ReadFile(string(f))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

func (f fileCheckpoint) Save(ctx context.Context, data []byte) error {
	path := string(f)
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

func (f fileCheckpoint) Delete(ctx context.Context) error {
	err := os.Remove(string(f))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Append appends data to the checkpoint file and fsyncs it. It fails if the
// file does not exist. It implements CheckpointAppender.
func (f fileCheckpoint) Append(ctx context.Context, data []byte) error {
	fh, err := os.OpenFile(string(f), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = fh.Write(data)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}
