package observe

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/replicate"
)

// Attribute keys of the records a [Logger] writes. They are stable: log
// queries and alerts may rely on them. Every record has [KeyEvent]; the
// others appear where the event has the value.
const (
	KeyEvent     = "event"     // the event's kind: "copied", "retried", …
	KeyVM        = "vm"        // the VM's name (for steps, the step's "vm" label)
	KeyDisk      = "disk"      // the disk's name
	KeyStep      = "step"      // the orchestration step's ID
	KeySnapshot  = "snapshot"  // the DR copy's snapshot ID
	KeyBytes     = "bytes"     // bytes written to the DR copy
	KeyDuration  = "duration"  // a run's or a step's time
	KeyError     = "error"     // the error's text
	KeyAttempt   = "attempt"   // the step's attempt (1-based)
	KeyAction    = "action"    // what a replication run did (replicate.Action)
	KeyPoint     = "point"     // the recovery point's ID
	KeyRPO       = "rpo"       // age of the newest complete DR copy's point
	KeyTotal     = "total"     // the disk's size in bytes
	KeyProcessed = "processed" // bytes of the disk dealt with: written, skipped or resumed
	KeyRate      = "rate"      // bytes per second
	KeyETA       = "eta"       // estimated time left
	KeyBackoff   = "backoff"   // wait before the next attempt
	KeyWarning   = "warning"   // a warning's text
	KeyDeleted   = "deleted"   // number of old DR copies deleted
	KeyRetries   = "retries"   // reads and writes a copy retried
	KeyLabels    = "labels"    // group of a step's labels other than "vm"
)

// DefaultProgressInterval is the least time between two progress records of
// one disk when [LogOptions.ProgressInterval] is 0.
const DefaultProgressInterval = 10 * time.Second

// LogOptions tunes a [Logger]. The zero value is useful.
type LogOptions struct {
	// ProgressInterval is the least time between two progress records of
	// one disk, measured on the events' times: progress events in between
	// are not logged. 0 means [DefaultProgressInterval]; negative means
	// every progress event is logged.
	ProgressInterval time.Duration
}

// Logger writes events as structured records to a [slog.Logger]. Its
// methods Replicate and Orchestrate are event consumers: pass them (method
// values) as Options.Events, alone or through [Tee]. A Logger is safe for
// concurrent use; one Logger may consume several streams.
//
// Records carry the event's time, one of the messages below, and the Key
// attributes that apply. Levels: Info for the lifecycle, Debug for copy
// progress, Warn for retries, skips, cancellations and warnings, Error for
// failures.
//
//	replicate.Event           level  message
//	started                   Info   "replication started"
//	copy                      Info   "disk copy started"
//	progress                  Debug  "disk copy progress"   (rate-limited per disk)
//	copied                    Info   "disk copied"
//	completed                 Info   "DR copy complete"
//	deleted                   Info   "DR copy deleted"
//	finished                  Info   "replication finished"
//	finished, failed          Error  "replication failed"
//	finished, each warning    Warn   "replication warning"
//
//	orchestrate.Event         level  message
//	started, undo-started     Info   "step started", "step undo started"
//	succeeded, resumed        Info   "step succeeded", "step resumed"
//	undone                    Info   "step undone"
//	retried, undo-retried     Warn   "step retried", "step undo retried"
//	skipped, cancelled        Warn   "step skipped", "step cancelled"
//	undo-skipped              Warn   "step undo skipped"
//	failed, undo-failed       Error  "step failed", "step undo failed"
type Logger struct {
	l    *slog.Logger
	opts LogOptions

	mu    sync.Mutex
	disks map[diskKey]diskLog // copies in progress
}

type diskKey struct{ vm, disk string }

// diskLog is what a Logger remembers of a disk copy in progress.
type diskLog struct {
	logged  time.Time // time of the last progress record; zero if none
	written int64     // Written of the last progress event
	seen    bool      // a progress event was seen
}

// NewLogger returns a Logger writing to l; a nil l means slog.Default().
func NewLogger(l *slog.Logger, opts LogOptions) *Logger {
	if l == nil {
		l = slog.Default()
	}
	if opts.ProgressInterval == 0 {
		opts.ProgressInterval = DefaultProgressInterval
	}
	return &Logger{l: l, opts: opts, disks: map[diskKey]diskLog{}}
}

// ReplicateLogger returns a consumer of a [replicate.Replicator]'s events
// that logs them to l with the default [LogOptions]. It is
// NewLogger(l, LogOptions{}).Replicate.
func ReplicateLogger(l *slog.Logger) func(replicate.Event) {
	return NewLogger(l, LogOptions{}).Replicate
}

// OrchestrateLogger returns a consumer of orchestration events (failover,
// failback) that logs them to l. It is NewLogger(l, LogOptions{}).Orchestrate.
// To tell failover from failback records apart, pass
// l.With("kind", "failover").
func OrchestrateLogger(l *slog.Logger) func(orchestrate.Event) {
	return NewLogger(l, LogOptions{}).Orchestrate
}

// Replicate logs a replication event.
func (g *Logger) Replicate(e replicate.Event) {
	t := eventTime(e.Time)
	ev := slog.String(KeyEvent, string(e.Kind))
	vm := slog.String(KeyVM, e.VM)
	switch e.Kind {
	case replicate.EventStarted:
		g.log(t, slog.LevelInfo, "replication started", ev, vm)
	case replicate.EventCopy:
		g.forget(diskKey{e.VM, e.Disk}) // a new copy counts from zero
		g.log(t, slog.LevelInfo, "disk copy started", ev, vm, slog.String(KeyDisk, e.Disk), slog.String(KeySnapshot, e.SnapshotID))
	case replicate.EventProgress:
		g.progress(t, e)
	case replicate.EventCopied:
		attrs := []slog.Attr{ev, vm, slog.String(KeyDisk, e.Disk), slog.String(KeySnapshot, e.SnapshotID)}
		if st, ok := g.forget(diskKey{e.VM, e.Disk}); ok && st.seen {
			attrs = append(attrs, slog.Int64(KeyBytes, st.written))
		}
		g.log(t, slog.LevelInfo, "disk copied", attrs...)
	case replicate.EventCompleted:
		g.log(t, slog.LevelInfo, "DR copy complete", ev, vm)
	case replicate.EventDeleted:
		g.log(t, slog.LevelInfo, "DR copy deleted", ev, vm, slog.String(KeyDisk, e.Disk), slog.String(KeySnapshot, e.SnapshotID))
	case replicate.EventFinished:
		g.finished(t, e)
	default:
		attrs := []slog.Attr{ev, vm}
		if e.Disk != "" {
			attrs = append(attrs, slog.String(KeyDisk, e.Disk))
		}
		if e.SnapshotID != "" {
			attrs = append(attrs, slog.String(KeySnapshot, e.SnapshotID))
		}
		g.log(t, slog.LevelInfo, "replication event", attrs...)
	}
}

// progress logs a progress event unless the disk's last progress record is
// more recent than ProgressInterval.
func (g *Logger) progress(t time.Time, e replicate.Event) {
	if e.Progress == nil {
		return
	}
	p := *e.Progress
	k := diskKey{e.VM, e.Disk}
	g.mu.Lock()
	st := g.disks[k]
	st.written, st.seen = p.Written, true
	due := g.opts.ProgressInterval < 0 || st.logged.IsZero() || t.Sub(st.logged) >= g.opts.ProgressInterval
	if due {
		st.logged = t
	}
	g.disks[k] = st
	g.mu.Unlock()
	if !due {
		return
	}
	attrs := []slog.Attr{
		slog.String(KeyEvent, string(e.Kind)), slog.String(KeyVM, e.VM), slog.String(KeyDisk, e.Disk),
		slog.String(KeySnapshot, e.SnapshotID),
		slog.Int64(KeyBytes, p.Written),
		slog.Int64(KeyProcessed, p.Written+p.SkippedZero+p.SkippedUnchanged+p.Resumed),
		slog.Int64(KeyTotal, p.Total),
		slog.Int64(KeyRate, int64(p.Rate)),
	}
	if p.ETA > 0 {
		attrs = append(attrs, slog.Duration(KeyETA, p.ETA))
	}
	g.log(t, slog.LevelDebug, "disk copy progress", attrs...)
}

// finished logs the end of a VM's run: its warnings, then its outcome.
func (g *Logger) finished(t time.Time, e replicate.Event) {
	ev := slog.String(KeyEvent, string(e.Kind))
	res := e.Result
	if res == nil {
		g.log(t, slog.LevelInfo, "replication finished", ev, slog.String(KeyVM, e.VM))
		return
	}
	var retries int64
	for _, d := range res.Disks {
		g.forget(diskKey{e.VM, d.Disk})
		retries += d.Stats.Retries
	}
	for _, w := range res.Warnings {
		g.log(t, slog.LevelWarn, "replication warning", ev, slog.String(KeyVM, e.VM), slog.String(KeyWarning, w))
	}
	attrs := []slog.Attr{ev, slog.String(KeyVM, e.VM), slog.String(KeyAction, string(res.Action))}
	if res.RecoveryPoint != "" {
		attrs = append(attrs, slog.String(KeyPoint, res.RecoveryPoint))
	}
	attrs = append(attrs, slog.Int64(KeyBytes, res.BytesSent), slog.Duration(KeyDuration, res.Duration))
	if res.RPO > 0 {
		attrs = append(attrs, slog.Duration(KeyRPO, res.RPO))
	}
	if len(res.Deleted) > 0 {
		attrs = append(attrs, slog.Int(KeyDeleted, len(res.Deleted)))
	}
	if retries > 0 {
		attrs = append(attrs, slog.Int64(KeyRetries, retries))
	}
	if res.Err != nil || res.Action == replicate.ActionFailed {
		msg := res.Error
		if res.Err != nil {
			msg = res.Err.Error()
		}
		attrs = append(attrs, slog.String(KeyError, msg))
		g.log(t, slog.LevelError, "replication failed", attrs...)
		return
	}
	g.log(t, slog.LevelInfo, "replication finished", attrs...)
}

// forget drops what the Logger remembers of a disk copy and returns it.
func (g *Logger) forget(k diskKey) (diskLog, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, ok := g.disks[k]
	delete(g.disks, k)
	return st, ok
}

// Orchestrate logs an orchestration (failover, failback) event.
func (g *Logger) Orchestrate(e orchestrate.Event) {
	level, msg := stepRecord(e.Kind)
	attrs := []slog.Attr{slog.String(KeyEvent, string(e.Kind)), slog.String(KeyStep, e.Step)}
	if vm, ok := e.Labels["vm"]; ok {
		attrs = append(attrs, slog.String(KeyVM, vm))
	}
	if e.Attempt > 0 {
		attrs = append(attrs, slog.Int(KeyAttempt, e.Attempt))
	}
	if e.Duration > 0 {
		attrs = append(attrs, slog.Duration(KeyDuration, e.Duration))
	}
	if e.Backoff > 0 {
		attrs = append(attrs, slog.Duration(KeyBackoff, e.Backoff))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String(KeyError, e.Err.Error()))
	}
	if len(e.Labels) > 0 {
		var labels []any
		for _, k := range slices.Sorted(maps.Keys(e.Labels)) {
			if k != "vm" {
				labels = append(labels, slog.String(k, e.Labels[k]))
			}
		}
		if len(labels) > 0 {
			attrs = append(attrs, slog.Group(KeyLabels, labels...))
		}
	}
	g.log(eventTime(e.Time), level, msg, attrs...)
}

// stepRecord returns the level and message of a step event's record.
func stepRecord(k orchestrate.EventKind) (slog.Level, string) {
	switch k {
	case orchestrate.EventStarted:
		return slog.LevelInfo, "step started"
	case orchestrate.EventSucceeded:
		return slog.LevelInfo, "step succeeded"
	case orchestrate.EventResumed:
		return slog.LevelInfo, "step resumed"
	case orchestrate.EventUndoStarted:
		return slog.LevelInfo, "step undo started"
	case orchestrate.EventUndone:
		return slog.LevelInfo, "step undone"
	case orchestrate.EventRetried:
		return slog.LevelWarn, "step retried"
	case orchestrate.EventUndoRetried:
		return slog.LevelWarn, "step undo retried"
	case orchestrate.EventSkipped:
		return slog.LevelWarn, "step skipped"
	case orchestrate.EventCancelled:
		return slog.LevelWarn, "step cancelled"
	case orchestrate.EventUndoSkipped:
		return slog.LevelWarn, "step undo skipped"
	case orchestrate.EventFailed:
		return slog.LevelError, "step failed"
	case orchestrate.EventUndoFailed:
		return slog.LevelError, "step undo failed"
	}
	return slog.LevelInfo, "step event"
}

// log writes a record stamped with the event's time t, if the logger's
// handler takes records of that level.
func (g *Logger) log(t time.Time, level slog.Level, msg string, attrs ...slog.Attr) {
	ctx := context.Background()
	h := g.l.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(t, level, msg, 0)
	r.AddAttrs(attrs...)
	_ = h.Handle(ctx, r) // like slog.Logger, ignore the handler's error
}

// eventTime returns t, or now for an event without a time.
func eventTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}
