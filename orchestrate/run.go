package orchestrate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"sync"
	"time"

	"github.com/opendraas/draas"
)

// FailurePolicy says what a run does when a step fails.
type FailurePolicy int

const (
	// ContinueIndependent, the zero value, skips the failed step's
	// transitive dependents (status [Skipped]) and lets every step that
	// does not depend on it run to completion: in a failover, every VM that
	// can come up does.
	ContinueIndependent FailurePolicy = iota
	// StopAll cancels the context of every running step and starts no new
	// one: running steps end [Cancelled] (or Succeeded, if they finish
	// anyway), and steps not yet started end Cancelled (or Skipped, if they
	// depend on the failed step).
	StopAll
)

// String returns "continue-independent" or "stop-all".
func (p FailurePolicy) String() string {
	switch p {
	case ContinueIndependent:
		return "continue-independent"
	case StopAll:
		return "stop-all"
	}
	return fmt.Sprintf("FailurePolicy(%d)", int(p))
}

// Options tunes a [Run] and a [Plan]. The zero value is useful: no limit on
// parallelism, independent branches continue after a failure, no rollback,
// no journal, no events, the real clock.
type Options struct {
	// Parallelism is the most steps running at once (Run and Undo alike);
	// 0 means no limit: every ready step starts at once. Control-plane
	// steps mostly wait (for an instance to boot, a volume to attach), and
	// a failover's recovery time is that of its critical path only if the
	// waits overlap; throttling by the cloud is better met with retries.
	// Negative is invalid.
	Parallelism int
	// FailurePolicy says what happens to the other steps when one fails.
	FailurePolicy FailurePolicy
	// Rollback, when set, undoes a run in which a step failed: once no step
	// is running any more, the Undo of every step that finished (in this
	// run or, resumed, an earlier one) is called, a step's Undo only after
	// the Undo of every finished step depending on it succeeded (reverse
	// topological order; with Parallelism 1, exactly the reverse of the
	// order in which the steps started, then the resumed ones). If an Undo fails, the steps it depends
	// on are left as they are (undo status Skipped). The Undo of a step
	// that failed is not called: a step cleans up after its own failed
	// attempts. A run whose context is cancelled is not rolled back, so that
	// it can be resumed from its journal. With a journal, each successful
	// Undo is recorded, so that a resumed run runs the step again.
	Rollback bool
	// Journal, when set, records each step that finishes, and steps it
	// already records as finished are not run again (status [Resumed]).
	Journal Journal
	// Events, when set, receives every [Event], one call at a time, in the
	// order they happen. It must return quickly: the run waits for it.
	Events func(Event)
	// Clock returns the current time for events and reports; nil means
	// time.Now. It does not drive timeouts or retry backoffs.
	Clock func() time.Time
}

func (o *Options) validate() error {
	if o.Parallelism < 0 {
		return draas.Invalidf("orchestrate: Options.Parallelism is %d; use 0 for no limit or a positive limit", o.Parallelism)
	}
	if o.FailurePolicy != ContinueIndependent && o.FailurePolicy != StopAll {
		return draas.Invalidf("orchestrate: unknown Options.FailurePolicy %v", o.FailurePolicy)
	}
	return nil
}

// Run runs the steps of g, each once all its dependencies have succeeded,
// at most opts.Parallelism at a time; among the steps ready at once, higher
// Priority first, then the step added first. It returns when no step is
// running any more and, when opts.Rollback applies, rollback is done.
//
// Run returns a report of every step and an error that is nil only if every
// step succeeded or was resumed. Otherwise the error joins a [*StepError] per
// failed Run or Undo, in the order the steps were added, and, if ctx was
// done before every step finished (or before rollback did), an error
// wrapping ctx.Err() (context.Canceled or context.DeadlineExceeded). On cancellation the running steps see their
// context cancelled, no step starts, and Run returns as soon as the running
// steps have returned; the journal holds every step that finished. An
// invalid graph or invalid options are reported, before any step runs, with
// an error wrapping [draas.ErrInvalid] (and [ErrInvalidGraph] for the graph)
// and an empty report; so is a journal that cannot be loaded.
//
// A panic in a step's Run or Undo is recovered and reported as that
// attempt's error, wrapping [ErrPanic].
func Run(ctx context.Context, g *Graph, opts Options) (Report, error) {
	if err := opts.validate(); err != nil {
		return Report{}, err
	}
	d, err := compile(g)
	if err != nil {
		return Report{}, err
	}
	r := newRunner(d, opts)
	r.report.Start = r.now()
	done, err := r.load(ctx)
	if err != nil {
		return Report{}, err
	}
	failed := r.forward(ctx, done)
	if failed && opts.Rollback {
		if ctx.Err() == nil {
			r.rollback(ctx)
		} else {
			r.interrupted = true
		}
	}
	r.report.CriticalPath, r.report.CriticalPathDuration = criticalPath(d, r.report.Steps)
	r.report.End = r.now()
	return r.report, r.err(ctx)
}

// runner is the state of one Run.
type runner struct {
	dag    *dag
	opts   Options
	now    func() time.Time
	report Report
	// seq orders the steps as they started: resumed steps first, in
	// topological order, then the others as they started in this run.
	seq     []int
	nextSeq int
	// interrupted is set when a step was cancelled or rollback skipped or
	// cut short: if ctx is done, Run's error then says so.
	interrupted bool

	// outMu guards outputs, the values steps recorded with Put.
	outMu   sync.Mutex
	outputs []Outputs

	// emitMu serialises calls of opts.Events.
	emitMu sync.Mutex
	// journalMu serialises calls of opts.Journal.Append.
	journalMu sync.Mutex
}

func newRunner(d *dag, opts Options) *runner {
	r := &runner{dag: d, opts: opts, now: opts.Clock, outputs: make([]Outputs, len(d.nodes)), seq: make([]int, len(d.nodes))}
	if r.now == nil {
		r.now = time.Now
	}
	r.report.Steps = make([]StepReport, len(d.nodes))
	for i, n := range d.nodes {
		r.report.Steps[i] = StepReport{ID: n.step.ID, Labels: n.step.Labels}
	}
	return r
}

// load reads the journal and marks the steps it records as finished.
func (r *runner) load(ctx context.Context) ([]bool, error) {
	done := make([]bool, len(r.dag.nodes))
	if r.opts.Journal == nil {
		return done, nil
	}
	entries, err := r.opts.Journal.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("orchestrate: load journal: %w", err)
	}
	for id, e := range finished(entries) {
		i, ok := r.dag.index[id]
		if !ok {
			continue
		}
		done[i] = true
		r.seq[i] = r.dag.pos[i] - len(r.dag.nodes)
		s := &r.report.Steps[i]
		s.Status, s.Start, s.End, s.Attempts = Resumed, e.Start, e.End, e.Attempts
		r.outputs[i], s.Outputs = e.Outputs, maps.Clone(e.Outputs)
	}
	return done, nil
}

func (r *runner) emit(e Event) {
	if r.opts.Events == nil {
		return
	}
	if e.Labels == nil {
		e.Labels = r.dag.nodes[r.dag.index[e.Step]].step.Labels
	}
	r.emitMu.Lock()
	defer r.emitMu.Unlock()
	r.opts.Events(e)
}

func (r *runner) append(ctx context.Context, e Entry) error {
	if r.opts.Journal == nil {
		return nil
	}
	r.journalMu.Lock()
	defer r.journalMu.Unlock()
	if err := r.opts.Journal.Append(context.WithoutCancel(ctx), e); err != nil {
		return fmt.Errorf("record step %q in journal: %w", e.Step, err)
	}
	return nil
}

// outcome is what a worker reports when a step's Run or Undo returns.
type outcome struct {
	step      int
	end       time.Time
	attempts  int
	err       error
	cancelled bool // the run was stopped when the step returned its error
}

// forward runs the steps not done yet and reports whether any failed.
func (r *runner) forward(ctx context.Context, done []bool) (failed bool) {
	d, steps := r.dag, r.report.Steps
	for _, i := range d.order {
		if done[i] {
			r.emit(Event{Kind: EventResumed, Step: steps[i].ID, Time: r.now()})
		}
	}
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	pending := make([]int, len(d.nodes))
	ready := &queue{less: d.before}
	for i, n := range d.nodes {
		for _, j := range n.deps {
			if !done[j] {
				pending[i]++
			}
		}
		if pending[i] == 0 && !done[i] {
			ready.push(i)
		}
	}
	results := make(chan outcome)
	running, stopped := 0, false
	for {
		if ctx.Err() != nil {
			stopped = true
		}
		for !stopped && ready.Len() > 0 && (r.opts.Parallelism == 0 || running < r.opts.Parallelism) {
			r.start(runCtx, ready.pop(), results)
			running++
		}
		if running == 0 {
			break
		}
		res := <-results
		running--
		s := &steps[res.step]
		s.End, s.Attempts = res.end, res.attempts
		ev := Event{Step: s.ID, Time: res.end, Attempt: res.attempts, Err: res.err, Duration: s.Duration()}
		switch {
		case res.err == nil:
			s.Status, s.Outputs = Succeeded, r.outputsOf(res.step)
			ev.Kind = EventSucceeded
			r.emit(ev)
			for _, k := range d.nodes[res.step].dependents {
				if pending[k]--; pending[k] == 0 {
					ready.push(k)
				}
			}
		case res.cancelled:
			r.interrupted = true
			s.Status, s.Err, s.Outputs = Cancelled, res.err, r.outputsOf(res.step)
			ev.Kind = EventCancelled
			r.emit(ev)
		default:
			failed = true
			s.Status, s.Err, s.Outputs = Failed, res.err, r.outputsOf(res.step)
			ev.Kind = EventFailed
			r.emit(ev)
			r.skipDependents(res.step)
			if r.opts.FailurePolicy == StopAll && !stopped {
				stopped = true
				stop(fmt.Errorf("orchestrate: stopped because step %q failed: %w", s.ID, context.Canceled))
			}
		}
	}
	// Whatever has no status now never started because the run stopped.
	cause := context.Cause(runCtx)
	for _, i := range d.order {
		if steps[i].Status == "" {
			r.interrupted = true
			steps[i].Status, steps[i].Err = Cancelled, cause
			r.emit(Event{Kind: EventCancelled, Step: steps[i].ID, Time: r.now(), Err: cause})
		}
	}
	return failed
}

// skipDependents marks the transitive dependents of step i that have no
// status yet as skipped.
func (r *runner) skipDependents(i int) {
	steps := r.report.Steps
	for _, k := range r.dag.nodes[i].dependents {
		if steps[k].Status != "" {
			continue
		}
		err := fmt.Errorf("orchestrate: dependency %q did not succeed", steps[i].ID)
		steps[k].Status, steps[k].Err = Skipped, err
		r.emit(Event{Kind: EventSkipped, Step: steps[k].ID, Time: r.now(), Err: err})
		r.skipDependents(k)
	}
}

// start starts step i's Run in a goroutine that sends its outcome, once the
// success is journaled, to results.
func (r *runner) start(ctx context.Context, i int, results chan<- outcome) {
	s := &r.report.Steps[i]
	s.Start = r.now()
	r.seq[i] = r.nextSeq
	r.nextSeq++
	r.emit(Event{Kind: EventStarted, Step: s.ID, Time: s.Start})
	start := s.Start
	go func() {
		step := r.dag.nodes[i].step
		attempts, err := r.call(ctx, i, false)
		res := outcome{step: i, end: r.now(), attempts: attempts, err: err}
		if err != nil {
			res.cancelled = ctx.Err() != nil
		} else {
			res.err = r.append(ctx, Entry{Step: step.ID, Start: start, End: res.end, Attempts: attempts, Outputs: r.outputsOf(i)})
		}
		results <- res
	}()
}

// call calls step i's Run (or Undo) under its retry policy and timeout, and
// returns the number of attempts and the last error.
func (r *runner) call(ctx context.Context, i int, undo bool) (attempts int, err error) {
	step := r.dag.nodes[i].step
	fn, kind := step.Run, EventRetried
	if undo {
		fn, kind = step.Undo, EventUndoRetried
	}
	ctx = withScope(ctx, &scope{r: r, step: i, undo: undo})
	p := step.Retry
	onRetry := p.OnRetry
	p.OnRetry = func(attempt int, err error, backoff time.Duration) {
		r.emit(Event{Kind: kind, Step: step.ID, Time: r.now(), Attempt: attempt, Err: err, Backoff: backoff})
		if onRetry != nil {
			onRetry(attempt, err, backoff)
		}
	}
	_, err = p.Do(ctx, func(ctx context.Context) error {
		attempts++
		return attempt(ctx, step, fn)
	})
	return attempts, err
}

// attempt calls fn once, bounded by the step's timeout, turning a panic into
// an error.
func attempt(ctx context.Context, step *Step, fn func(context.Context) error) (err error) {
	var timeout error
	if step.Timeout > 0 {
		timeout = &attemptTimeout{d: step.Timeout}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, step.Timeout, timeout)
		defer cancel()
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanic, v, debug.Stack())
		}
	}()
	err = fn(ctx)
	// An error caused by the attempt's own deadline (rather than by the
	// run's context) becomes the retryable timeout error.
	if err != nil && timeout != nil && context.Cause(ctx) == timeout &&
		(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout)) {
		err = timeout
	}
	return err
}

// err builds Run's error from the report.
func (r *runner) err(ctx context.Context) error {
	var errs []error
	if err := ctx.Err(); err != nil && r.interrupted {
		if cause := context.Cause(ctx); cause != err {
			errs = append(errs, fmt.Errorf("orchestrate: run interrupted: %w (%w)", err, cause))
		} else {
			errs = append(errs, fmt.Errorf("orchestrate: run interrupted: %w", err))
		}
	}
	for _, s := range r.report.Steps {
		if s.Status == Failed {
			errs = append(errs, &StepError{Step: s.ID, Attempts: s.Attempts, Err: s.Err})
		}
	}
	for _, s := range r.report.Steps {
		if s.Undo != nil && s.Undo.Status == Failed {
			errs = append(errs, &StepError{Step: s.ID, Undo: true, Attempts: s.Undo.Attempts, Err: s.Undo.Err})
		}
	}
	return errors.Join(errs...)
}
