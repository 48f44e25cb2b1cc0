package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendraas/draas"
	s3 "github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
)

// TestSourceConformance runs draas's BlockSource suite against a Source:
// each content is backed up as a one-disk point and opened again.
func TestSourceConformance(t *testing.T) {
	t.Parallel()
	draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
		if len(content) == 0 {
			t.Skip("a backup store disk has a positive size")
		}
		e := newEnv(t)
		st := e.store("conformance", s3.Options{})
		w := backup(t, st, "vm", time.Time{}, map[string][]byte{"disk": content})
		src, err := st.OpenDisk(t.Context(), "vm", w.ID(), "disk")
		if err != nil {
			t.Fatal(err)
		}
		return src
	})
}

// TestSinkConformance runs draas's VolumeSink suite against a Sink. The
// harness reads back by committing the point and opening the disk from the
// store; a point whose disk was aborted cannot commit, which reads as
// nothing committed.
func TestSinkConformance(t *testing.T) {
	t.Parallel()
	draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
		e := newEnv(t)
		st := e.store("conformance", s3.Options{})
		w, err := pointWriter(st.BeginPoint(t.Context(), "vm", []draas.Disk{{Name: "disk", Size: size}}, time.Time{}))
		if err != nil {
			t.Fatal(err)
		}
		sink, err := w.Disk("disk")
		if err != nil {
			t.Fatal(err)
		}
		return draastest.SinkHarness{
			Sink: sink,
			ReadBack: func(ctx context.Context) ([]byte, error) {
				err := w.Commit(ctx)
				switch {
				case errors.Is(err, draas.ErrInvalid):
					return nil, fmt.Errorf("point not committable: %w (%v)", draas.ErrNotFound, err)
				case err != nil && !errors.Is(err, draas.ErrClosed):
					return nil, err
				}
				src, err := st.OpenDisk(ctx, "vm", w.ID(), "disk")
				if err != nil {
					return nil, err
				}
				p := make([]byte, src.Size())
				if _, err := src.ReadAt(ctx, p, 0); err != nil {
					return nil, err
				}
				return p, nil
			},
		}
	})
}

// cancelAfter cancels a context once n blocks were written through it.
type cancelAfter struct {
	draas.VolumeSink
	n      atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Unwrap() any { return c.VolumeSink }

func (c *cancelAfter) WriteBlock(ctx context.Context, b draas.Block) error {
	if c.n.Add(-1) < 0 {
		c.cancel()
		return context.Canceled
	}
	return c.VolumeSink.WriteBlock(ctx, b)
}

// TestBlockcopyResume kills a blockcopy backup half-way and resumes it in a
// new store from the checkpoint's sink state: only the missing blocks are
// written, and the point reads back whole.
func TestBlockcopyResume(t *testing.T) {
	e := newEnv(t)
	content := makeDisk(40, 16*s3.BlockSize+5)
	src := draastest.DiskFrom(content, s3.BlockSize)
	cp := blockcopy.FileCheckpoint(filepath.Join(t.TempDir(), "checkpoint"))
	disks := []draas.Disk{{Name: "disk", Size: src.Size()}}

	st := e.store("", s3.Options{})
	w, err := pointWriter(st.BeginPoint(t.Context(), "vm", disks, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	sink, err := w.Disk("disk")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	killer := &cancelAfter{VolumeSink: sink, cancel: cancel}
	killer.n.Store(5)
	if _, err := blockcopy.Copy(ctx, killer, src, blockcopy.Options{Checkpoint: cp, Concurrency: 1}); err == nil {
		t.Fatal("the copy was not interrupted")
	}

	// A new process: a new store, resumed from the checkpoint.
	st2 := e.store("", s3.Options{})
	state, err := blockcopy.SinkState(t.Context(), cp)
	if err != nil || state == nil {
		t.Fatalf("SinkState = %q, %v", state, err)
	}
	vm, id, err := s3.ResumeStatePoint(state)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := st2.ResumePoint(t.Context(), vm, id)
	if err != nil {
		t.Fatal(err)
	}
	sink2, err := w2.ResumeDisk(state)
	if err != nil {
		t.Fatal(err)
	}
	e.count.reset()
	stats, err := blockcopy.Copy(t.Context(), sink2, src, blockcopy.Options{Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if stats.BlocksResumed == 0 {
		t.Errorf("nothing resumed: %+v", stats)
	}
	if err := w2.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := st2.OpenDisk(t.Context(), "vm", id, "disk")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, got), content) {
		t.Error("the resumed point reads back wrong")
	}
	t.Logf("resumed %d blocks, copied %d, %d chunk PUTs", stats.BlocksResumed, stats.BlocksCopied, e.count.get("PUT chunk"))
}
