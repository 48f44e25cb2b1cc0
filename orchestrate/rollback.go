package orchestrate

import (
	"context"
	"fmt"
)

// rollback calls the Undo of every finished step, each only after the Undo
// of every finished step depending on it succeeded.
func (r *runner) rollback(ctx context.Context) {
	d, steps := r.dag, r.report.Steps
	finished := func(i int) bool { return steps[i].Status == Succeeded || steps[i].Status == Resumed }
	// pending[i] counts the finished dependents of i not undone yet.
	pending := make([]int, len(d.nodes))
	for i := range d.nodes {
		if !finished(i) {
			continue
		}
		for _, j := range d.nodes[i].deps {
			pending[j]++
		}
	}
	// Ready steps are undone latest-started first, so that with
	// Parallelism 1 rollback runs in exactly the reverse order of the run.
	ready := &queue{less: func(a, b int) bool { return r.seq[a] > r.seq[b] }}
	for i := range d.nodes {
		if finished(i) && pending[i] == 0 {
			ready.push(i)
		}
	}
	results := make(chan outcome)
	running := 0
	// undone marks step i as undone (or as having nothing to undo) and
	// makes the steps it depends on ready once all their dependents are.
	undone := func(i int) {
		for _, j := range d.nodes[i].deps {
			if pending[j]--; pending[j] == 0 && finished(j) {
				ready.push(j)
			}
		}
	}
	for {
		for ctx.Err() == nil && ready.Len() > 0 && (r.opts.Parallelism == 0 || running < r.opts.Parallelism) {
			i := ready.pop()
			if d.nodes[i].step.Undo == nil {
				undone(i)
				continue
			}
			r.startUndo(ctx, i, results)
			running++
		}
		if running == 0 {
			break
		}
		res := <-results
		running--
		u := steps[res.step].Undo
		u.End, u.Attempts = res.end, res.attempts
		ev := Event{Step: steps[res.step].ID, Time: res.end, Attempt: res.attempts, Err: res.err, Duration: u.End.Sub(u.Start)}
		if res.err == nil {
			u.Status, ev.Kind = Succeeded, EventUndone
			r.emit(ev)
			undone(res.step)
			continue
		}
		u.Status, u.Err, ev.Kind = Failed, res.err, EventUndoFailed
		r.emit(ev)
		r.skipUndo(res.step, fmt.Errorf("orchestrate: undo of dependent step %q did not succeed", steps[res.step].ID))
	}
	// What is left was not undone because rollback was cancelled.
	for _, i := range d.order {
		if finished(i) && d.nodes[i].step.Undo != nil && steps[i].Undo == nil {
			r.interrupted = true
			err := fmt.Errorf("orchestrate: rollback interrupted: %w", context.Cause(ctx))
			steps[i].Undo = &UndoReport{Status: Skipped, Err: err}
			r.emit(Event{Kind: EventUndoSkipped, Step: steps[i].ID, Time: r.now(), Err: err})
		}
	}
}

// skipUndo marks the finished transitive dependencies of step i that have an
// Undo as not to be undone.
func (r *runner) skipUndo(i int, err error) {
	steps := r.report.Steps
	seen := make(map[int]bool)
	stack := []int{i}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, j := range r.dag.nodes[v].deps {
			s := &steps[j]
			if seen[j] || s.Undo != nil || s.Status != Succeeded && s.Status != Resumed {
				continue
			}
			seen[j] = true
			if r.dag.nodes[j].step.Undo != nil {
				s.Undo = &UndoReport{Status: Skipped, Err: err}
				r.emit(Event{Kind: EventUndoSkipped, Step: s.ID, Time: r.now(), Err: err})
			}
			stack = append(stack, j)
		}
	}
}

// startUndo starts step i's Undo in a goroutine that sends its outcome, once
// the undo is journaled, to results.
func (r *runner) startUndo(ctx context.Context, i int, results chan<- outcome) {
	s := &r.report.Steps[i]
	start := r.now()
	s.Undo = &UndoReport{Start: start}
	r.emit(Event{Kind: EventUndoStarted, Step: s.ID, Time: start})
	go func() {
		attempts, err := r.call(ctx, i, true)
		res := outcome{step: i, end: r.now(), attempts: attempts, err: err}
		if err == nil {
			res.err = r.append(ctx, Entry{Step: s.ID, Undone: true, Start: start, End: res.end, Attempts: attempts})
		}
		results <- res
	}()
}
