package draastest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
)

var errBoom = errors.New("boom")

// failures calls op n times through f and returns the call numbers (1-based)
// that failed.
func failures(t *testing.T, f *draastest.Faults, op string, n int) []int {
	t.Helper()
	var failed []int
	for i := 1; i <= n; i++ {
		if err := f.Inject(t.Context(), op); err != nil {
			failed = append(failed, i)
		}
	}
	return failed
}

func TestFailNth(t *testing.T) {
	f := new(draastest.Faults)
	f.Inject(t.Context(), "ReadAt") // calls before configuring do not count
	f.FailNth("ReadAt", 2, errBoom)
	f.FailNth("ReadAt", 4, nil)
	var errs []error
	for range 5 {
		errs = append(errs, f.Inject(t.Context(), "ReadAt"))
	}
	if errs[0] != nil || errs[2] != nil || errs[4] != nil {
		t.Errorf("calls 1, 3, 5 failed: %v", errs)
	}
	if !errors.Is(errs[1], errBoom) {
		t.Errorf("call 2: error %v, want one wrapping errBoom", errs[1])
	}
	if !errors.Is(errs[3], draas.ErrTransient) {
		t.Errorf("call 4 with a nil error: %v, want one wrapping ErrTransient", errs[3])
	}
	if got := f.Calls("ReadAt"); got != 6 {
		t.Errorf("Calls(ReadAt) = %d, want 6", got)
	}
	if got := f.Calls("WriteBlock"); got != 0 {
		t.Errorf("Calls(WriteBlock) = %d, want 0", got)
	}
}

func TestThrottle(t *testing.T) {
	f := new(draastest.Faults)
	f.Throttle("WriteBlock", 3)
	got := failures(t, f, "WriteBlock", 10)
	if want := []int{3, 6, 9}; !slices.Equal(got, want) {
		t.Errorf("throttled calls = %v, want %v", got, want)
	}
	if err := f.Inject(t.Context(), "Commit"); err != nil {
		t.Errorf("another op was throttled: %v", err)
	}
	f2 := new(draastest.Faults)
	f2.Throttle("Commit", 1)
	err := f2.Inject(t.Context(), "Commit")
	if !errors.Is(err, draas.ErrThrottled) || !draas.IsRetryable(err) {
		t.Errorf("throttled call: error %v, want a retryable ErrThrottled", err)
	}
	f2.Throttle("Commit", 0)
	if err := f2.Inject(t.Context(), "Commit"); err != nil {
		t.Errorf("after Throttle(op, 0): %v", err)
	}
}

func TestFailAfterAndClear(t *testing.T) {
	f := new(draastest.Faults)
	f.FailAfter("*", 3, errBoom)
	ops := []string{"ReadAt", "WriteBlock", "ReadAt", "Commit", "Abort"}
	var failed []string
	for _, op := range ops {
		if err := f.Inject(t.Context(), op); err != nil {
			if !errors.Is(err, errBoom) {
				t.Errorf("%s: error %v, want errBoom", op, err)
			}
			failed = append(failed, op)
		}
	}
	if len(failed) != 2 || failed[0] != "Commit" || failed[1] != "Abort" {
		t.Errorf("failed calls = %v, want [Commit Abort]", failed)
	}
	if f.Calls("*") != 5 || f.Calls("ReadAt") != 2 {
		t.Errorf("Calls(*) = %d, Calls(ReadAt) = %d; want 5, 2", f.Calls("*"), f.Calls("ReadAt"))
	}
	f.Clear()
	if err := f.Inject(t.Context(), "Commit"); err != nil {
		t.Errorf("after Clear: %v", err)
	}
}

func TestLatency(t *testing.T) {
	f := new(draastest.Faults)
	f.Latency("Launch", 30*time.Millisecond)
	start := time.Now()
	if err := f.Inject(t.Context(), "Launch"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("call took %v, want at least 30ms", d)
	}
	f.Latency("Launch", time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := f.Inject(ctx, "Launch"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call cancelled during its latency: error %v, want DeadlineExceeded", err)
	}
}

func TestNilFaultsInjectsNothing(t *testing.T) {
	var f *draastest.Faults
	if err := f.Inject(t.Context(), "ReadAt"); err != nil || f.Calls("ReadAt") != 0 {
		t.Errorf("nil Faults: %v, %d calls", err, f.Calls("ReadAt"))
	}
	f.Clear()
}

func TestFaultySourceFailsAndCorrupts(t *testing.T) {
	ctx := t.Context()
	data := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	f := new(draastest.Faults)
	src := draastest.FaultySource(draastest.DiskFrom(data, 1024), f)

	f.FailNth("ReadAt", 1, draas.ErrTransient)
	p := make([]byte, 1024)
	if n, err := src.ReadAt(ctx, p, 0); n != 0 || !errors.Is(err, draas.ErrTransient) {
		t.Errorf("first ReadAt = %d, %v; want 0 and ErrTransient", n, err)
	}
	f.CorruptReads("ReadAt", 1)
	if n, err := src.ReadAt(ctx, p, 0); n != 1024 || err != nil || p[0] != data[0]^0xff || !bytes.Equal(p[1:], data[1:1024]) {
		t.Errorf("corrupted ReadAt = %d, %v, first byte %#x; want 1024, nil and only the first byte flipped", n, err, p[0])
	}
	if _, err := src.ReadAt(ctx, p, 0); err != nil || !bytes.Equal(p, data[:1024]) {
		t.Errorf("ReadAt after the corrupted one = %v, data ok %v", err, bytes.Equal(p, data[:1024]))
	}

	// Corruption through ReadBlock is detectable: the recorded sum does not
	// match the bytes.
	cs, ok := src.(draas.ChecksumSource)
	if !ok {
		t.Fatal("FaultySource of a Disk is not a ChecksumSource")
	}
	f.CorruptReads("ReadBlock", 2)
	var mismatches []int64
	for off := int64(0); off < 4096; off += 1024 {
		sum, ok, err := cs.ReadBlock(ctx, p, off)
		if err != nil || !ok {
			t.Fatalf("ReadBlock(%d) = %v, %v", off, ok, err)
		}
		if sha256.Sum256(p) != sum {
			mismatches = append(mismatches, off)
		}
	}
	if len(mismatches) != 1 || mismatches[0] != 1024 {
		t.Errorf("blocks with a checksum mismatch = %v, want [1024]", mismatches)
	}
	if f.Calls("ReadBlock") != 4 || f.Calls("ReadAt") != 3 {
		t.Errorf("Calls(ReadBlock) = %d, Calls(ReadAt) = %d; want 4, 3", f.Calls("ReadBlock"), f.Calls("ReadAt"))
	}

	f.FailNth("AllocatedExtents", 1, errBoom)
	if _, err := draas.AllocatedExtents(ctx, src); !errors.Is(err, errBoom) {
		t.Errorf("AllocatedExtents through draas.AllocatedExtents: error %v, want errBoom", err)
	}
}

func TestFaultySinkCorruptionIsRejectedBySink(t *testing.T) {
	ctx := t.Context()
	f := new(draastest.Faults)
	inner := draastest.NewSink(2048, 1024, draastest.SinkOptions{})
	s := draastest.FaultySink(inner, f)
	f.CorruptReads("WriteBlock", 1)
	data := bytes.Repeat([]byte{9}, 1024)
	b := block(1024, 0, data)
	if err := s.WriteBlock(ctx, b); !errors.Is(err, draas.ErrChecksumMismatch) {
		t.Fatalf("WriteBlock corrupted on the way: error %v, want ErrChecksumMismatch", err)
	}
	if !bytes.Equal(b.Data, data) {
		t.Error("FaultySink corrupted the caller's buffer")
	}
	if err := s.WriteBlock(ctx, b); err != nil {
		t.Fatalf("second WriteBlock: %v", err)
	}
	f.FailNth("Commit", 1, errBoom)
	if err := s.Commit(ctx); !errors.Is(err, errBoom) || inner.State() != draastest.SinkOpen {
		t.Errorf("failed Commit = %v, inner state %v; want errBoom and open", err, inner.State())
	}
	if err := s.Commit(ctx); err != nil || inner.State() != draastest.SinkCommitted {
		t.Errorf("Commit = %v, inner state %v; want committed", err, inner.State())
	}
	if inner.Writes() != 1 || f.Calls("WriteBlock") != 2 || f.Calls("Commit") != 2 {
		t.Errorf("inner writes %d, WriteBlock calls %d, Commit calls %d; want 1, 2, 2", inner.Writes(), f.Calls("WriteBlock"), f.Calls("Commit"))
	}
}

func TestFaultyWrappersKeepCapabilities(t *testing.T) {
	disk := draastest.NewDisk(1024, 0)
	full := draastest.FaultySource(disk, nil)
	if _, ok := full.(draas.ExtentSource); !ok {
		t.Error("FaultySource(Disk) is not an ExtentSource")
	}
	if _, ok := full.(draas.ChangeTracker); !ok {
		t.Error("FaultySource(Disk) is not a ChangeTracker")
	}
	if _, ok := full.(draas.ChecksumSource); !ok {
		t.Error("FaultySource(Disk) is not a ChecksumSource")
	}
	if w, ok := full.(draas.Wrapper); !ok || w.Unwrap() != draas.BlockSource(disk) {
		t.Error("FaultySource does not unwrap to its source")
	}
	plain := draastest.FaultySource(draastest.PlainSource(disk), nil)
	if _, ok := draas.As[draas.ExtentSource](plain); ok {
		t.Error("FaultySource(PlainSource) is an ExtentSource")
	}
	if _, ok := draas.As[draas.ChecksumSource](plain); ok {
		t.Error("FaultySource(PlainSource) is a ChecksumSource")
	}
	// Nested wrappers keep them too.
	nested := draastest.FaultySource(full, nil)
	if _, ok := nested.(draas.ChecksumSource); !ok {
		t.Error("FaultySource(FaultySource(Disk)) is not a ChecksumSource")
	}

	sink := draastest.FaultySink(draastest.NewSink(1024, 0, draastest.SinkOptions{NeedsZeroWrites: true}), nil)
	if _, ok := sink.(draas.Flusher); !ok {
		t.Error("FaultySink(Sink) is not a Flusher")
	}
	if _, ok := sink.(draas.VerifiableSink); !ok {
		t.Error("FaultySink(Sink) is not a VerifiableSink")
	}
	if z, ok := sink.(draas.ZeroWriteSink); !ok || !z.NeedsZeroWrites() {
		t.Error("FaultySink(Sink) is not a ZeroWriteSink needing zero writes")
	}
	psink := draastest.FaultySink(draastest.PlainSink(draastest.NewSink(1024, 0, draastest.SinkOptions{})), nil)
	if _, ok := draas.As[draas.Flusher](psink); ok {
		t.Error("FaultySink(PlainSink) is a Flusher")
	}
	if _, ok := draas.As[draas.VerifiableSink](psink); ok {
		t.Error("FaultySink(PlainSink) is a VerifiableSink")
	}
}

func TestFaultyWrappersAllCombinations(t *testing.T) {
	// A source with each subset of capabilities keeps exactly that subset.
	disk := draastest.NewDisk(1024, 0)
	for mask := range 8 {
		var src draas.BlockSource = capSource(disk, mask)
		w := draastest.FaultySource(src, nil)
		_, e := w.(draas.ExtentSource)
		_, c := w.(draas.ChangeTracker)
		_, s := w.(draas.ChecksumSource)
		if e != (mask&1 != 0) || c != (mask&2 != 0) || s != (mask&4 != 0) {
			t.Errorf("source with capabilities %03b: wrapper has extents %v, changes %v, checksums %v", mask, e, c, s)
		}
	}
	for mask := range 8 {
		w := draastest.FaultySink(capSink(draastest.NewSink(1024, 0, draastest.SinkOptions{}), mask), nil)
		_, z := w.(draas.ZeroWriteSink)
		_, f := w.(draas.Flusher)
		_, v := w.(draas.VerifiableSink)
		if z != (mask&1 != 0) || f != (mask&2 != 0) || v != (mask&4 != 0) {
			t.Errorf("sink with capabilities %03b: wrapper has zeros %v, flush %v, verify %v", mask, z, f, v)
		}
	}
}

// capSource returns d with only the capabilities in mask (1 extents, 2
// changes, 4 checksums), and no Unwrap.
func capSource(d *draastest.Disk, mask int) draas.BlockSource {
	type (
		e interface {
			AllocatedExtents(context.Context) ([]draas.Extent, error)
		}
		c interface {
			ChangedExtents(context.Context, string) ([]draas.Extent, error)
		}
		s interface {
			ReadBlock(context.Context, []byte, int64) ([32]byte, bool, error)
		}
	)
	p := draastest.PlainSource(d)
	switch mask {
	case 1:
		return struct {
			draas.BlockSource
			e
		}{p, d}
	case 2:
		return struct {
			draas.BlockSource
			c
		}{p, d}
	case 3:
		return struct {
			draas.BlockSource
			e
			c
		}{p, d, d}
	case 4:
		return struct {
			draas.BlockSource
			s
		}{p, d}
	case 5:
		return struct {
			draas.BlockSource
			e
			s
		}{p, d, d}
	case 6:
		return struct {
			draas.BlockSource
			c
			s
		}{p, d, d}
	case 7:
		return d
	}
	return p
}

// capSink returns s with only the capabilities in mask (1 zero writes, 2
// flush, 4 verify), and no Unwrap.
func capSink(s *draastest.Sink, mask int) draas.VolumeSink {
	type (
		z interface{ NeedsZeroWrites() bool }
		f interface{ Flush(context.Context) error }
		v interface {
			Committed(context.Context) (draas.BlockSource, error)
		}
	)
	p := draastest.PlainSink(s)
	switch mask {
	case 1:
		return struct {
			draas.VolumeSink
			z
		}{p, s}
	case 2:
		return struct {
			draas.VolumeSink
			f
		}{p, s}
	case 3:
		return struct {
			draas.VolumeSink
			z
			f
		}{p, s, s}
	case 4:
		return struct {
			draas.VolumeSink
			v
		}{p, s}
	case 5:
		return struct {
			draas.VolumeSink
			z
			v
		}{p, s, s}
	case 6:
		return struct {
			draas.VolumeSink
			f
			v
		}{p, s, s}
	case 7:
		return s
	}
	return p
}
