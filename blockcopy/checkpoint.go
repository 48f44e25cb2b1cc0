package blockcopy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// checkpointData is the saved form of a checkpoint. Plan identifies the copy
// (size, block size, extents, zero-write mode) so that a checkpoint of another
// copy is never applied.
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
	data, err := c.opts.Checkpoint.Load(ctx)
	if err != nil {
		return fmt.Errorf("blockcopy: load checkpoint: %w", err)
	}
	if len(data) == 0 {
		return nil
	}
	var cp checkpointData
	if json.Unmarshal(data, &cp) != nil || cp.Version != checkpointVersion || cp.Plan != c.planID() || cp.Blocks != c.nblocks {
		return nil
	}
	if cp.Target != sinkTarget(c.dst) {
		// Recorded for another target: its done blocks are not in this sink.
		return nil
	}
	if !c.done.load(cp.Done) {
		c.done = newBitmap(c.nblocks)
	}
	return nil
}

// saveCheckpoint flushes the sink and records the blocks that were done
// before the flush began: those are durable.
func (c *copier) saveCheckpoint(ctx context.Context) error {
	done := c.done.bytes()
	if f, ok := draas.As[draas.Flusher](c.dst); ok {
		if err := f.Flush(ctx); err != nil {
			return fmt.Errorf("flush sink: %w", err)
		}
	}
	cp := checkpointData{Version: checkpointVersion, Plan: c.planID(), Blocks: c.nblocks, Done: done}
	if r, ok := draas.As[draas.ResumableSink](c.dst); ok {
		state, err := r.ResumeState()
		if err != nil {
			return fmt.Errorf("sink resume state: %w", err)
		}
		cp.Sink, cp.Target = state, r.Target()
	}
	data, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	return c.opts.Checkpoint.Save(ctx, data)
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
				_ = c.saveCheckpoint(ctx)
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
	var cp checkpointData
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, fmt.Errorf("blockcopy: checkpoint is unreadable: %w", err)
	}
	return cp.Sink, nil
}

// FileCheckpoint returns a CheckpointStore that keeps the checkpoint in the
// file at path, replaced atomically (write to a temporary file, fsync,
// rename).
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
