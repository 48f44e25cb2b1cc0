package orchestrate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/internal/testclock"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/retry"
)

// noRetry is a policy that makes one attempt.
var noRetry = retry.Policy{MaxAttempts: 1}

// fastRetry retries retryable errors up to n attempts without waiting.
func fastRetry(n int) retry.Policy {
	return retry.Policy{MaxAttempts: n, Initial: time.Millisecond, Jitter: -1,
		Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}
}

// tracker logs the start and end of every Run and Undo call, in order, and
// counts calls per step.
type tracker struct {
	mu      sync.Mutex
	log     []string // "start:a", "end:a", "undo:a"
	runs    map[string]int
	undos   []string
	running int
	maxRun  int
}

func newTracker() *tracker { return &tracker{runs: make(map[string]int)} }

func (t *tracker) begin(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, "start:"+id)
	t.runs[id]++
	t.running++
	t.maxRun = max(t.maxRun, t.running)
}

func (t *tracker) end(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, "end:"+id)
	t.running--
}

func (t *tracker) undo(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.undos = append(t.undos, id)
}

// calls returns how many times step id's Run was called.
func (t *tracker) calls(id string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.runs[id]
}

// starts returns the steps in the order their Run was first called.
func (t *tracker) starts() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []string
	for _, e := range t.log {
		if id, ok := strings.CutPrefix(e, "start:"); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// step returns a step that logs its calls in t and then runs fn (nil: succeed).
func (t *tracker) step(id string, deps []string, fn func(ctx context.Context) error) orchestrate.Step {
	return orchestrate.Step{
		ID:    id,
		Deps:  deps,
		Retry: noRetry,
		Run: func(ctx context.Context) error {
			t.begin(id)
			defer t.end(id)
			if fn != nil {
				return fn(ctx)
			}
			return nil
		},
		Undo: func(ctx context.Context) error {
			t.undo(id)
			return nil
		},
	}
}

// mustAdd adds steps to a new graph.
func mustAdd(t testing.TB, steps ...orchestrate.Step) *orchestrate.Graph {
	t.Helper()
	var g orchestrate.Graph
	for _, s := range steps {
		require.NoError(t, g.Add(s))
	}
	return &g
}

// randomDAG returns n steps named s0000… whose dependencies are up to
// maxDeps random earlier steps, with random priorities if prio is set.
func randomDAG(seed uint64, n, maxDeps int, prio bool) []orchestrate.Step {
	rng := rand.New(rand.NewPCG(seed, seed))
	steps := make([]orchestrate.Step, n)
	for i := range steps {
		s := orchestrate.Step{ID: fmt.Sprintf("s%04d", i), Retry: noRetry}
		if i > 0 {
			for range rng.IntN(maxDeps + 1) {
				s.Deps = append(s.Deps, fmt.Sprintf("s%04d", rng.IntN(i)))
			}
		}
		if prio {
			s.Priority = rng.IntN(3)
		}
		steps[i] = s
	}
	return steps
}

// events collects events.
type events struct {
	mu  sync.Mutex
	all []orchestrate.Event
}

func (e *events) add(ev orchestrate.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// kinds returns the kinds of step id's events, in order.
func (e *events) kinds(id string) []orchestrate.EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ks []orchestrate.EventKind
	for _, ev := range e.all {
		if ev.Step == id {
			ks = append(ks, ev.Kind)
		}
	}
	return ks
}

// newFakeClock returns a clock for Options.Now that moves only when advanced.
func newFakeClock() *testclock.Clock {
	return testclock.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
}

func statuses(r orchestrate.Report) map[string]orchestrate.Status {
	m := make(map[string]orchestrate.Status)
	for _, s := range r.Steps {
		m[s.ID] = s.Status
	}
	return m
}
