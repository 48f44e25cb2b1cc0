package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/replicate"
)

// stepProgress shows a workflow's progress from its events: a bar of
// finished steps on a terminal, a line per step event otherwise. Failures
// are printed as lines in both cases.
type stepProgress struct {
	w     io.Writer
	title string
	bar   *progressbar.ProgressBar // nil: plain lines
}

func (a *app) newStepProgress(title string, steps int) *stepProgress {
	p := &stepProgress{w: a.out, title: title}
	if a.tty {
		p.bar = progressbar.NewOptions(steps,
			progressbar.OptionSetWriter(a.out),
			progressbar.OptionSetDescription(title),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	return p
}

// event consumes one orchestration event; the run calls it one at a time.
func (p *stepProgress) event(e orchestrate.Event) {
	ends := e.Kind == orchestrate.EventSucceeded || e.Kind == orchestrate.EventFailed ||
		e.Kind == orchestrate.EventSkipped || e.Kind == orchestrate.EventCancelled || e.Kind == orchestrate.EventResumed
	if p.bar == nil {
		p.line(e)
		return
	}
	switch {
	case e.Kind == orchestrate.EventStarted:
		p.bar.Describe(p.title + " " + e.Step)
	case e.Kind == orchestrate.EventFailed || e.Kind == orchestrate.EventRetried:
		p.bar.Clear()
		p.line(e)
	}
	if ends {
		p.bar.Add(1)
	}
}

// line prints an event as one line: the step, what happened, and its time
// or error.
func (p *stepProgress) line(e orchestrate.Event) {
	s := fmt.Sprintf("%-8s %-16s %s", p.title, e.Step, e.Kind)
	switch e.Kind {
	case orchestrate.EventResumed:
		s += " (finished in an earlier run)"
	case orchestrate.EventSucceeded:
		s += " " + e.Duration.Round(time.Millisecond).String()
	case orchestrate.EventRetried:
		s += fmt.Sprintf(" after attempt %d: %v (next in %s)", e.Attempt, e.Err, e.Backoff.Round(time.Millisecond))
	case orchestrate.EventFailed, orchestrate.EventSkipped, orchestrate.EventCancelled:
		if e.Err != nil {
			s += ": " + e.Err.Error()
		}
	}
	fmt.Fprintln(p.w, s)
}

// done removes the bar, so the summary stands alone.
func (p *stepProgress) done() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar.Clear()
		p.bar.Exit()
	}
}

// copyProgress shows replication: a bar of bytes settled across every disk
// copy on a terminal, a line per copy started and finished otherwise. A
// replicator calls it from several goroutines.
type copyProgress struct {
	w   io.Writer
	tty bool

	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	last map[string]int64 // bytes settled per "vm/disk"
}

func (a *app) newCopyProgress() *copyProgress {
	return &copyProgress{w: a.out, tty: a.tty, last: map[string]int64{}}
}

func (p *copyProgress) event(e replicate.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := e.VM + "/" + e.Disk
	if !p.tty {
		switch e.Kind {
		case replicate.EventCopy:
			fmt.Fprintf(p.w, "replicate %-16s copying into %s\n", key, e.SnapshotID)
		case replicate.EventCopied:
			fmt.Fprintf(p.w, "replicate %-16s copied\n", key)
		case replicate.EventFinished:
			p.finished(e.Result)
		}
		return
	}
	switch e.Kind {
	case replicate.EventProgress:
		pr := e.Progress
		if pr == nil {
			return
		}
		settled := min(pr.Written+pr.SkippedZero+pr.SkippedUnchanged+pr.Resumed, pr.Total)
		prev, seen := p.last[key]
		if !seen {
			if p.bar == nil {
				p.bar = progressbar.NewOptions64(pr.Total,
					progressbar.OptionSetWriter(p.w),
					progressbar.OptionShowBytes(true),
					progressbar.OptionUseIECUnits(true),
					progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionClearOnFinish(),
				)
			} else {
				p.bar.AddMax64(pr.Total)
			}
		}
		p.last[key] = settled
		p.bar.Describe("replicate " + key)
		p.bar.Add64(settled - prev)
	case replicate.EventFinished:
		if p.bar != nil {
			p.bar.Clear()
		}
		p.finished(e.Result)
	}
}

func (p *copyProgress) finished(r *replicate.Result) {
	if r == nil {
		return
	}
	if r.Err != nil {
		fmt.Fprintf(p.w, "replicate %-16s failed: %v\n", r.VM, r.Err)
		return
	}
	fmt.Fprintf(p.w, "replicate %-16s %s, recovery point %s, %d bytes sent in %s\n",
		r.VM, r.Action, r.RecoveryPoint, r.BytesSent, r.Duration.Round(time.Millisecond))
}

func (p *copyProgress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Finish()
		p.bar.Clear()
		p.bar.Exit()
		p.bar = nil
	}
}
