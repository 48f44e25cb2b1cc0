package draastest_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
)

func block(bs int, index int64, data []byte) draas.Block {
	return draas.Block{Index: index, Offset: index * int64(bs), Data: data, Checksum: sha256.Sum256(data)}
}

func TestSinkRejectsChecksumMismatch(t *testing.T) {
	ctx := t.Context()
	s := draastest.NewSink(4096, 1024, draastest.SinkOptions{})
	b := block(1024, 1, bytes.Repeat([]byte{7}, 1024))
	b.Checksum[0] ^= 1
	err := s.WriteBlock(ctx, b)
	if !errors.Is(err, draas.ErrChecksumMismatch) || draas.IsRetryable(err) {
		t.Fatalf("WriteBlock with a wrong checksum: error %v, want a non-retryable ErrChecksumMismatch", err)
	}
	if s.Writes() != 0 || s.Disk().StoredBlocks() != 0 {
		t.Errorf("a rejected block was counted (%d) or stored (%d)", s.Writes(), s.Disk().StoredBlocks())
	}
}

func TestSinkCounts(t *testing.T) {
	ctx := t.Context()
	s := draastest.NewSink(3000, 1024, draastest.SinkOptions{NeedsZeroWrites: true})
	if !draas.NeedsZeroWrites(s) {
		t.Error("NeedsZeroWrites is false, want true")
	}
	writes := []draas.Block{
		block(1024, 0, bytes.Repeat([]byte{1}, 1024)),
		block(1024, 1, make([]byte, 1024)),
		block(1024, 2, bytes.Repeat([]byte{3}, 952)),
		block(1024, 0, bytes.Repeat([]byte{1}, 1024)),
	}
	for _, b := range writes {
		if err := s.WriteBlock(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := [...]int64{s.Writes(), int64(s.WritesOf(0)), int64(s.WritesOf(1)), int64(s.WritesOf(3)), s.ZeroWrites(), s.Flushes()}; got != [...]int64{4, 2, 1, 0, 1, 1} {
		t.Errorf("Writes, WritesOf(0), WritesOf(1), WritesOf(3), ZeroWrites, Flushes = %v, want [4 2 1 0 1 1]", got)
	}
	if _, err := s.Committed(ctx); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("Committed before Commit: error %v, want ErrNotFound", err)
	}
	if s.State() != draastest.SinkOpen {
		t.Errorf("State() = %v, want open", s.State())
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if s.State() != draastest.SinkCommitted || s.State().String() != "committed" {
		t.Errorf("State() = %v, want committed", s.State())
	}
	if err := s.Commit(ctx); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("second Commit: error %v, want ErrClosed", err)
	}
	if err := s.Flush(ctx); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("Flush after Commit: error %v, want ErrClosed", err)
	}
	src, err := s.Committed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 3000)
	if n, _ := src.ReadAt(ctx, p, 0); n != 3000 || p[0] != 1 || p[1500] != 0 || p[2999] != 3 {
		t.Errorf("committed content is wrong: n %d, bytes %d %d %d", n, p[0], p[1500], p[2999])
	}
}

func TestSinkWithBase(t *testing.T) {
	ctx := t.Context()
	base := draastest.DiskFrom(bytes.Repeat([]byte{5}, 4096), 1024)
	s := draastest.NewSink(5000, 1024, draastest.SinkOptions{Base: base, NeedsZeroWrites: true})
	if err := s.WriteBlock(ctx, block(1024, 1, make([]byte, 1024))); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBlock(ctx, block(1024, 4, bytes.Repeat([]byte{6}, 904))); err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Repeat([]byte{5}, 1024), make([]byte, 1024)...)
	want = append(want, bytes.Repeat([]byte{5}, 2048)...)
	want = append(want, bytes.Repeat([]byte{6}, 904)...)
	if got := s.Disk().Bytes(); !bytes.Equal(got, want) {
		t.Error("incremental sink content is not base + written blocks")
	}
	if got := base.Bytes(); !bytes.Equal(got, bytes.Repeat([]byte{5}, 4096)) {
		t.Error("writing the sink changed its base")
	}
}

func TestSinkAbortTwiceAndAfterCommit(t *testing.T) {
	ctx := t.Context()
	s := draastest.NewSink(10, 10, draastest.SinkOptions{})
	for range 2 {
		if err := s.Abort(ctx); err != nil {
			t.Errorf("Abort: %v", err)
		}
	}
	c := draastest.NewSink(10, 10, draastest.SinkOptions{})
	c.Commit(ctx)
	if err := c.Abort(ctx); !errors.Is(err, draas.ErrClosed) || c.State() != draastest.SinkCommitted {
		t.Errorf("Abort after Commit = %v, state %v; want ErrClosed and still committed", err, c.State())
	}
}

func TestSinkTargets(t *testing.T) {
	a := draastest.NewSink(10, 0, draastest.SinkOptions{})
	b := draastest.NewSink(10, 0, draastest.SinkOptions{})
	if a.Target() == b.Target() || a.Target() == "" {
		t.Errorf("two sinks have targets %q and %q, want two different ones", a.Target(), b.Target())
	}
	if st, err := a.ResumeState(); err != nil || string(st) != a.Target() {
		t.Errorf("ResumeState() = %q, %v", st, err)
	}
	if r, ok := draas.As[draas.ResumableSink](draastest.FaultySink(a, nil)); !ok || r.Target() != a.Target() {
		t.Error("draas.As does not find the ResumableSink inside a FaultySink")
	}

	ctx := t.Context()
	h := draastest.NewHypervisor(nil)
	h.CreateVM(ctx, draas.VMRequest{Name: "vm", Shape: draas.Shape{CPUs: 1, MemoryMiB: 1, Disks: []draas.Disk{{Size: 10}}}})
	s1, _ := h.OpenDisk(ctx, "vm", 0)
	s2, _ := h.OpenDisk(ctx, "vm", 0)
	if s1.(draas.ResumableSink).Target() != s2.(draas.ResumableSink).Target() {
		t.Error("two sinks onto the same VM disk have different targets")
	}
}

func TestPlainSinkHidesCapabilities(t *testing.T) {
	s := draastest.PlainSink(draastest.NewSink(10, 0, draastest.SinkOptions{NeedsZeroWrites: true}))
	if _, ok := draas.As[draas.Flusher](s); ok {
		t.Error("PlainSink is a Flusher")
	}
	if _, ok := draas.As[draas.VerifiableSink](s); ok {
		t.Error("PlainSink is a VerifiableSink")
	}
	if draas.NeedsZeroWrites(s) {
		t.Error("PlainSink needs zero writes")
	}
	if _, ok := draas.As[draas.ResumableSink](s); ok {
		t.Error("PlainSink is a ResumableSink")
	}
}
