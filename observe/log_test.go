package observe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/replicate"
)

// capture is a slog.Handler that keeps the records it handles.
type capture struct {
	level slog.Level

	mu      sync.Mutex
	records []slog.Record
}

func (h *capture) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *capture) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

func (h *capture) WithAttrs([]slog.Attr) slog.Handler { panic("not used") }
func (h *capture) WithGroup(string) slog.Handler      { panic("not used") }

// take returns the records handled since the last take.
func (h *capture) take() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.records
	h.records = nil
	return r
}

// attrs flattens a record's attributes, groups as "group.key", values
// resolved to their Go values.
func attrs(r slog.Record) map[string]any {
	out := map[string]any{}
	var add func(prefix string, a slog.Attr)
	add = func(prefix string, a slog.Attr) {
		v := a.Value.Resolve()
		if v.Kind() == slog.KindGroup {
			for _, g := range v.Group() {
				add(prefix+a.Key+".", g)
			}
			return
		}
		out[prefix+a.Key] = v.Any()
	}
	r.Attrs(func(a slog.Attr) bool { add("", a); return true })
	return out
}

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func newCapture(level slog.Level, opts LogOptions) (*capture, *Logger) {
	h := &capture{level: level}
	return h, NewLogger(slog.New(h), opts)
}

func TestReplicateLogger(t *testing.T) {
	h := &capture{level: slog.LevelDebug}
	log := ReplicateLogger(slog.New(h))
	prog := &blockcopy.Progress{Total: 100, Written: 30, SkippedZero: 10, SkippedUnchanged: 5, Resumed: 5, Rate: 1e6 + 0.7, ETA: 2 * time.Second}
	res := &replicate.Result{
		VM: "db", Action: replicate.ActionIncremental, RecoveryPoint: "rp-2", BytesSent: 4096,
		Duration: 90 * time.Second, RPO: time.Hour, Deleted: []string{"snap-1"},
		Disks: []replicate.DiskResult{{Disk: "d0", Stats: blockcopy.Stats{Retries: 2}}},
	}
	for _, tc := range []struct {
		e     replicate.Event
		level slog.Level
		msg   string
		attrs map[string]any
	}{
		{replicate.Event{Kind: replicate.EventStarted, VM: "db"}, slog.LevelInfo, "replication started",
			map[string]any{KeyEvent: "started", KeyVM: "db"}},
		{replicate.Event{Kind: replicate.EventCopy, VM: "db", Disk: "d0", SnapshotID: "snap-2"}, slog.LevelInfo, "disk copy started",
			map[string]any{KeyEvent: "copy", KeyVM: "db", KeyDisk: "d0", KeySnapshot: "snap-2"}},
		{replicate.Event{Kind: replicate.EventProgress, VM: "db", Disk: "d0", SnapshotID: "snap-2", Progress: prog}, slog.LevelDebug, "disk copy progress",
			map[string]any{KeyEvent: "progress", KeyVM: "db", KeyDisk: "d0", KeySnapshot: "snap-2", KeyBytes: int64(30),
				KeyProcessed: int64(50), KeyTotal: int64(100), KeyRate: int64(1e6), KeyETA: 2 * time.Second}},
		{replicate.Event{Kind: replicate.EventCopied, VM: "db", Disk: "d0", SnapshotID: "snap-2"}, slog.LevelInfo, "disk copied",
			map[string]any{KeyEvent: "copied", KeyVM: "db", KeyDisk: "d0", KeySnapshot: "snap-2", KeyBytes: int64(30)}},
		{replicate.Event{Kind: replicate.EventCompleted, VM: "db"}, slog.LevelInfo, "DR copy complete",
			map[string]any{KeyEvent: "completed", KeyVM: "db"}},
		{replicate.Event{Kind: replicate.EventDeleted, VM: "db", Disk: "d0", SnapshotID: "snap-1"}, slog.LevelInfo, "DR copy deleted",
			map[string]any{KeyEvent: "deleted", KeyVM: "db", KeyDisk: "d0", KeySnapshot: "snap-1"}},
		{replicate.Event{Kind: replicate.EventFinished, VM: "db", Result: res}, slog.LevelInfo, "replication finished",
			map[string]any{KeyEvent: "finished", KeyVM: "db", KeyAction: "incremental", KeyPoint: "rp-2", KeyBytes: int64(4096),
				KeyDuration: 90 * time.Second, KeyRPO: time.Hour, KeyDeleted: int64(1), KeyRetries: int64(2)}},
	} {
		t.Run(string(tc.e.Kind), func(t *testing.T) {
			tc.e.Time = t0
			log(tc.e)
			recs := h.take()
			require.Len(t, recs, 1)
			assert.Equal(t, tc.level, recs[0].Level)
			assert.Equal(t, tc.msg, recs[0].Message)
			assert.Equal(t, t0, recs[0].Time, "records carry the event's time")
			assert.Equal(t, tc.attrs, attrs(recs[0]))
		})
	}
}

func TestReplicateLoggerFailureAndWarnings(t *testing.T) {
	h, l := newCapture(slog.LevelInfo, LogOptions{})
	err := errors.New("replicate db: list recovery points: AccessDenied")
	l.Replicate(replicate.Event{Kind: replicate.EventFinished, VM: "db", Time: t0, Result: &replicate.Result{
		VM: "db", Action: replicate.ActionFailed, Err: err, Error: err.Error(), Duration: time.Second,
		Warnings: []string{"delete DR copy snap-1 (the next run retries): boom", "second"},
	}})
	recs := h.take()
	require.Len(t, recs, 3)
	for i, w := range []string{"delete DR copy snap-1 (the next run retries): boom", "second"} {
		assert.Equal(t, slog.LevelWarn, recs[i].Level)
		assert.Equal(t, "replication warning", recs[i].Message)
		assert.Equal(t, map[string]any{KeyEvent: "finished", KeyVM: "db", KeyWarning: w}, attrs(recs[i]))
	}
	assert.Equal(t, slog.LevelError, recs[2].Level)
	assert.Equal(t, "replication failed", recs[2].Message)
	assert.Equal(t, map[string]any{KeyEvent: "finished", KeyVM: "db", KeyAction: "failed", KeyBytes: int64(0),
		KeyDuration: time.Second, KeyError: err.Error()}, attrs(recs[2]))

	// A result decoded from JSON has Error but no Err.
	l.Replicate(replicate.Event{Kind: replicate.EventFinished, VM: "db", Time: t0, Result: &replicate.Result{
		VM: "db", Action: replicate.ActionFailed, Error: "gone",
	}})
	recs = h.take()
	require.Len(t, recs, 1)
	assert.Equal(t, slog.LevelError, recs[0].Level)
	assert.Equal(t, "gone", attrs(recs[0])[KeyError])
}

func TestProgressRateLimit(t *testing.T) {
	progress := func(vm, disk string, at time.Duration, written int64) replicate.Event {
		return replicate.Event{Kind: replicate.EventProgress, Time: t0.Add(at), VM: vm, Disk: disk,
			Progress: &blockcopy.Progress{Total: 1 << 30, Written: written}}
	}
	logged := func(recs []slog.Record) []string {
		var out []string
		for _, r := range recs {
			a := attrs(r)
			out = append(out, fmt.Sprintf("%s/%s@%s", a[KeyVM], a[KeyDisk], r.Time.Sub(t0)))
		}
		return out
	}

	t.Run("default interval", func(t *testing.T) {
		h, l := newCapture(slog.LevelDebug, LogOptions{})
		// Two disks of one VM and a disk of the same name in another VM, a
		// progress event every 2s for 25s each.
		for at := time.Duration(0); at <= 25*time.Second; at += 2 * time.Second {
			l.Replicate(progress("db", "d0", at, int64(at)))
			l.Replicate(progress("db", "d1", at+time.Second, int64(at)))
			l.Replicate(progress("web", "d0", at, int64(at)))
		}
		assert.Equal(t, []string{
			"db/d0@0s", "db/d1@1s", "web/d0@0s",
			"db/d0@10s", "db/d1@11s", "web/d0@10s",
			"db/d0@20s", "db/d1@21s", "web/d0@20s",
		}, logged(h.take()), "at most one progress record per disk per 10s")
	})

	t.Run("configured interval", func(t *testing.T) {
		h, l := newCapture(slog.LevelDebug, LogOptions{ProgressInterval: 3 * time.Second})
		for at := time.Duration(0); at <= 8*time.Second; at += time.Second {
			l.Replicate(progress("db", "d0", at, 0))
		}
		assert.Equal(t, []string{"db/d0@0s", "db/d0@3s", "db/d0@6s"}, logged(h.take()))
	})

	t.Run("negative interval logs every event", func(t *testing.T) {
		h, l := newCapture(slog.LevelDebug, LogOptions{ProgressInterval: -1})
		for at := time.Duration(0); at < 3*time.Second; at += time.Second {
			l.Replicate(progress("db", "d0", at, 0))
		}
		assert.Len(t, h.take(), 3)
	})

	t.Run("a new copy starts a new interval", func(t *testing.T) {
		h, l := newCapture(slog.LevelDebug, LogOptions{})
		l.Replicate(progress("db", "d0", 0, 10))
		l.Replicate(replicate.Event{Kind: replicate.EventCopied, Time: t0.Add(time.Second), VM: "db", Disk: "d0"})
		l.Replicate(replicate.Event{Kind: replicate.EventCopy, Time: t0.Add(2 * time.Second), VM: "db", Disk: "d0"})
		l.Replicate(progress("db", "d0", 3*time.Second, 20))
		l.Replicate(progress("db", "d0", 4*time.Second, 30))
		recs := h.take()
		var got []string
		for _, r := range recs {
			got = append(got, fmt.Sprintf("%s@%s", r.Message, r.Time.Sub(t0)))
		}
		assert.Equal(t, []string{"disk copy progress@0s", "disk copied@1s", "disk copy started@2s", "disk copy progress@3s"}, got)
	})

	t.Run("finished forgets the run's disks", func(t *testing.T) {
		_, l := newCapture(slog.LevelDebug, LogOptions{})
		l.Replicate(progress("db", "d0", 0, 10))
		l.Replicate(progress("db", "d1", 0, 10))
		l.Replicate(replicate.Event{Kind: replicate.EventFinished, VM: "db", Result: &replicate.Result{
			Action: replicate.ActionFailed, Disks: []replicate.DiskResult{{Disk: "d0"}, {Disk: "d1"}},
		}})
		assert.Empty(t, l.disks, "no state is left for copies that ended")
	})

	t.Run("Debug disabled", func(t *testing.T) {
		h, l := newCapture(slog.LevelInfo, LogOptions{})
		l.Replicate(progress("db", "d0", 0, 10))
		l.Replicate(replicate.Event{Kind: replicate.EventCopied, Time: t0, VM: "db", Disk: "d0"})
		recs := h.take()
		require.Len(t, recs, 1, "no progress record at Info")
		assert.Equal(t, int64(10), attrs(recs[0])[KeyBytes], "the copied record still has the bytes")
	})
}

func TestOrchestrateLogger(t *testing.T) {
	h := &capture{level: slog.LevelDebug}
	log := OrchestrateLogger(slog.New(h))
	labels := map[string]string{"vm": "db", "tier": "data"}
	boom := errors.New("throttled")
	for _, tc := range []struct {
		e     orchestrate.Event
		level slog.Level
		msg   string
		extra map[string]any
	}{
		{orchestrate.Event{Kind: orchestrate.EventStarted}, slog.LevelInfo, "step started", nil},
		{orchestrate.Event{Kind: orchestrate.EventRetried, Attempt: 1, Err: boom, Backoff: 200 * time.Millisecond}, slog.LevelWarn, "step retried",
			map[string]any{KeyAttempt: int64(1), KeyError: "throttled", KeyBackoff: 200 * time.Millisecond}},
		{orchestrate.Event{Kind: orchestrate.EventSucceeded, Attempt: 2, Duration: 3 * time.Second}, slog.LevelInfo, "step succeeded",
			map[string]any{KeyAttempt: int64(2), KeyDuration: 3 * time.Second}},
		{orchestrate.Event{Kind: orchestrate.EventFailed, Attempt: 3, Err: boom, Duration: time.Minute}, slog.LevelError, "step failed",
			map[string]any{KeyAttempt: int64(3), KeyError: "throttled", KeyDuration: time.Minute}},
		{orchestrate.Event{Kind: orchestrate.EventSkipped, Err: errors.New(`dependency "db/launch" failed`)}, slog.LevelWarn, "step skipped",
			map[string]any{KeyError: `dependency "db/launch" failed`}},
		{orchestrate.Event{Kind: orchestrate.EventCancelled, Err: context.Canceled}, slog.LevelWarn, "step cancelled",
			map[string]any{KeyError: "context canceled"}},
		{orchestrate.Event{Kind: orchestrate.EventResumed}, slog.LevelInfo, "step resumed", nil},
		{orchestrate.Event{Kind: orchestrate.EventUndoStarted}, slog.LevelInfo, "step undo started", nil},
		{orchestrate.Event{Kind: orchestrate.EventUndoRetried, Attempt: 1, Err: boom, Backoff: time.Second}, slog.LevelWarn, "step undo retried",
			map[string]any{KeyAttempt: int64(1), KeyError: "throttled", KeyBackoff: time.Second}},
		{orchestrate.Event{Kind: orchestrate.EventUndone, Attempt: 1, Duration: time.Second}, slog.LevelInfo, "step undone",
			map[string]any{KeyAttempt: int64(1), KeyDuration: time.Second}},
		{orchestrate.Event{Kind: orchestrate.EventUndoFailed, Attempt: 1, Err: boom, Duration: time.Second}, slog.LevelError, "step undo failed",
			map[string]any{KeyAttempt: int64(1), KeyError: "throttled", KeyDuration: time.Second}},
		{orchestrate.Event{Kind: orchestrate.EventUndoSkipped, Err: boom}, slog.LevelWarn, "step undo skipped",
			map[string]any{KeyError: "throttled"}},
	} {
		t.Run(string(tc.e.Kind), func(t *testing.T) {
			tc.e.Step, tc.e.Labels, tc.e.Time = "db/launch", labels, t0
			log(tc.e)
			recs := h.take()
			require.Len(t, recs, 1)
			assert.Equal(t, tc.level, recs[0].Level)
			assert.Equal(t, tc.msg, recs[0].Message)
			assert.Equal(t, t0, recs[0].Time)
			want := map[string]any{KeyEvent: string(tc.e.Kind), KeyStep: "db/launch", KeyVM: "db", KeyLabels + ".tier": "data"}
			for k, v := range tc.extra {
				want[k] = v
			}
			assert.Equal(t, want, attrs(recs[0]))
		})
	}

	// A step without labels has no vm and no labels group.
	log(orchestrate.Event{Kind: orchestrate.EventStarted, Step: "run", Time: t0})
	recs := h.take()
	require.Len(t, recs, 1)
	assert.Equal(t, map[string]any{KeyEvent: "started", KeyStep: "run"}, attrs(recs[0]))
}

// TestLoggerConcurrent feeds one Logger from several goroutines, as a
// Replicator running VMs in parallel does; run it with -race.
func TestLoggerConcurrent(t *testing.T) {
	h, l := newCapture(slog.LevelDebug, LogOptions{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			vm := fmt.Sprintf("vm%d", i)
			for j := range 100 {
				l.Replicate(replicate.Event{Kind: replicate.EventProgress, Time: t0.Add(time.Duration(j) * time.Second), VM: vm, Disk: "d0",
					Progress: &blockcopy.Progress{Written: int64(j)}})
			}
			l.Replicate(replicate.Event{Kind: replicate.EventFinished, VM: vm, Result: &replicate.Result{Disks: []replicate.DiskResult{{Disk: "d0"}}}})
		})
	}
	wg.Wait()
	assert.Len(t, h.take(), 8*(10+1), "10 progress records per disk (0s, 10s, … 90s) and one finished record per VM")
}

func TestTee(t *testing.T) {
	var got []string
	rec := func(name string) func(int) {
		return func(e int) { got = append(got, fmt.Sprintf("%s%d", name, e)) }
	}
	f := Tee(rec("a"), nil, rec("b"), rec("c"))
	f(1)
	f(2)
	assert.Equal(t, []string{"a1", "b1", "c1", "a2", "b2", "c2"}, got)

	Tee[int]()(1) // no consumer: a no-op
	Tee[int](nil, nil)(1)

	got = nil
	Tee(nil, rec("only"))(3)
	assert.Equal(t, []string{"only3"}, got)
}
