package orchestrate

import (
	"fmt"
	"strings"
	"time"
)

// EventKind says what happened to a step.
type EventKind string

// The kinds of [Event]. For each step, a run emits exactly one of
//
//	Resumed
//	Skipped
//	Cancelled                              (never started)
//	Started, Retried…, Succeeded | Failed | Cancelled
//
// and, if rollback then undoes it, one of
//
//	UndoSkipped
//	UndoStarted, UndoRetried…, Undone | UndoFailed
//
// in that order. Steps without Undo emit no rollback events.
const (
	// EventStarted: the step's first attempt is about to start.
	EventStarted EventKind = "started"
	// EventRetried: an attempt failed with a retryable error; Attempt is the
	// failed attempt (1-based), Err its error, Backoff the wait before the
	// next one.
	EventRetried EventKind = "retried"
	// EventSucceeded: Run succeeded and, with a journal, the step was
	// recorded as finished.
	EventSucceeded EventKind = "succeeded"
	// EventFailed: the last attempt failed (Err) and no retry is left.
	EventFailed EventKind = "failed"
	// EventSkipped: the step will not run because a dependency failed or
	// was skipped; Err names the dependency.
	EventSkipped EventKind = "skipped"
	// EventCancelled: the run stopped (context cancelled, or StopAll after
	// a failure) before the step finished or before it started.
	EventCancelled EventKind = "cancelled"
	// EventResumed: the journal records the step as finished in an earlier
	// run; it does not run again.
	EventResumed EventKind = "resumed"
	// EventUndoStarted: rollback is about to call the step's Undo.
	EventUndoStarted EventKind = "undo-started"
	// EventUndoRetried: an Undo attempt failed with a retryable error.
	EventUndoRetried EventKind = "undo-retried"
	// EventUndone: Undo succeeded and, with a journal, was recorded.
	EventUndone EventKind = "undone"
	// EventUndoFailed: Undo failed (Err) and no retry is left.
	EventUndoFailed EventKind = "undo-failed"
	// EventUndoSkipped: rollback left the step as it is because the Undo of
	// a step depending on it failed, or rollback was cancelled.
	EventUndoSkipped EventKind = "undo-skipped"
)

// Event reports a change in a step's state during [Run]. Events are
// delivered to Options.Events one at a time, in the order they happened.
type Event struct {
	Kind EventKind
	// Step is the step's ID and Labels its labels (shared: do not modify).
	Step   string
	Labels map[string]string
	// Time is when the event happened, by Options.Clock.
	Time time.Time
	// Attempt is, for Retried events, the attempt that failed; for
	// Succeeded, Failed, Cancelled, Undone and UndoFailed, the number of
	// attempts made; otherwise 0.
	Attempt int
	// Err is the error of a Retried, Failed, Cancelled, UndoFailed or
	// UndoSkipped event, or the reason of a Skipped one.
	Err error
	// Backoff is the wait before the next attempt, for Retried events.
	Backoff time.Duration
	// Duration is, for events that end a step's Run or Undo, the time since
	// it started.
	Duration time.Duration
}

// String formats e for a log line, for example
//
//	step "db/launch" retried: attempt 1: throttled (backoff 200ms)
func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %q %s", e.Step, e.Kind)
	if e.Kind == EventRetried || e.Kind == EventUndoRetried {
		fmt.Fprintf(&b, ": attempt %d", e.Attempt)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Backoff > 0 {
		fmt.Fprintf(&b, " (backoff %v)", e.Backoff)
	}
	if e.Duration > 0 {
		fmt.Fprintf(&b, " in %v", e.Duration)
	}
	return b.String()
}
