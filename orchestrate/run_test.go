package orchestrate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/orchestrate"
)

func TestRunRespectsDependencies(t *testing.T) {
	tr := newTracker()
	steps := randomDAG(1, 60, 3, true)
	for i := range steps {
		steps[i] = withTracker(tr, steps[i])
	}
	g := mustAdd(t, steps...)
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Parallelism: 4})
	require.NoError(t, err)

	pos := make(map[string]int)
	for i, e := range tr.log {
		pos[e] = i
	}
	for _, s := range steps {
		assert.Equal(t, 1, tr.calls(s.ID), s.ID)
		for _, dep := range s.Deps {
			assert.Less(t, pos["end:"+dep], pos["start:"+s.ID], "%s started before its dependency %s ended", s.ID, dep)
		}
		sr, ok := rep.Step(s.ID)
		require.True(t, ok)
		assert.Equal(t, orchestrate.Succeeded, sr.Status)
		assert.Equal(t, 1, sr.Attempts)
		assert.False(t, sr.End.Before(sr.Start))
	}
	assert.LessOrEqual(t, tr.maxRun, 4)
}

// withTracker makes s log its calls in tr, keeping its ID, deps and
// priority.
func withTracker(tr *tracker, s orchestrate.Step) orchestrate.Step {
	ts := tr.step(s.ID, s.Deps, nil)
	ts.Priority = s.Priority
	return ts
}

func TestRunParallelismLimit(t *testing.T) {
	for _, limit := range []int{1, 3, 0} {
		t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
			const n = 10
			var (
				running, peak atomic.Int32
				started       = make(chan struct{}, n)
				release       = make(chan struct{})
			)
			var g orchestrate.Graph
			for i := range n {
				require.NoError(t, g.Add(orchestrate.Step{ID: fmt.Sprint(i), Retry: noRetry, Run: func(ctx context.Context) error {
					r := running.Add(1)
					for p := peak.Load(); r > p && !peak.CompareAndSwap(p, r); p = peak.Load() {
					}
					started <- struct{}{}
					<-release
					running.Add(-1)
					return nil
				}}))
			}
			done := make(chan error)
			go func() {
				_, err := orchestrate.Run(context.Background(), &g, orchestrate.Options{Parallelism: limit})
				done <- err
			}()
			want := limit
			if limit == 0 {
				want = n
			}
			// The limit is reached while enough steps are ready, and then
			// each step that ends lets exactly one more start.
			for range want {
				<-started
			}
			assert.Equal(t, int32(want), running.Load())
			for range n - want {
				release <- struct{}{}
				<-started
				assert.LessOrEqual(t, running.Load(), int32(want))
			}
			for range want {
				release <- struct{}{}
			}
			require.NoError(t, <-done)
			assert.Equal(t, int32(want), peak.Load())
		})
	}
}

var errBoom = errors.New("boom")

func TestRunFailureSkipsTransitiveDependentsOnly(t *testing.T) {
	tr := newTracker()
	fail := func(context.Context) error { return errBoom }
	g := mustAdd(t,
		tr.step("a", nil, nil),
		tr.step("b", []string{"a"}, fail),
		tr.step("c", []string{"b"}, nil),
		tr.step("d", nil, nil),
		tr.step("e", []string{"d"}, nil),
		tr.step("f", []string{"e", "c"}, nil),
		tr.step("g", []string{"a", "e"}, nil),
	)
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Parallelism: 2})
	require.Error(t, err)
	assert.ErrorIs(t, err, errBoom)
	var se *orchestrate.StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "b", se.Step)
	assert.Contains(t, err.Error(), `step "b" failed: boom`)
	assert.NotErrorIs(t, err, context.Canceled)

	assert.Equal(t, map[string]orchestrate.Status{
		"a": orchestrate.Succeeded, "b": orchestrate.Failed, "c": orchestrate.Skipped,
		"d": orchestrate.Succeeded, "e": orchestrate.Succeeded, "f": orchestrate.Skipped,
		"g": orchestrate.Succeeded,
	}, statuses(rep))
	assert.Zero(t, tr.calls("c"))
	assert.Zero(t, tr.calls("f"))
	c, _ := rep.Step("c")
	assert.ErrorContains(t, c.Err, `"b"`)
	f, _ := rep.Step("f")
	assert.ErrorContains(t, f.Err, `"c"`)
}

func TestRunStopAllCancelsRunning(t *testing.T) {
	slowStarted := make(chan struct{})
	var slowCause error
	var laterRan atomic.Bool
	g := mustAdd(t,
		orchestrate.Step{ID: "slow", Priority: 2, Retry: noRetry, Run: func(ctx context.Context) error {
			close(slowStarted)
			<-ctx.Done()
			slowCause = context.Cause(ctx)
			return ctx.Err()
		}},
		orchestrate.Step{ID: "bad", Priority: 1, Retry: noRetry, Run: func(ctx context.Context) error {
			<-slowStarted
			return errBoom
		}},
		orchestrate.Step{ID: "later", Retry: noRetry, Run: func(ctx context.Context) error {
			laterRan.Store(true)
			return nil
		}},
		orchestrate.Step{ID: "after-slow", Deps: []string{"slow"}, Retry: noRetry, Run: func(ctx context.Context) error {
			laterRan.Store(true)
			return nil
		}},
	)
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Parallelism: 2, FailurePolicy: orchestrate.StopAll})
	require.ErrorIs(t, err, errBoom)
	assert.NotErrorIs(t, err, context.Canceled, "the caller did not cancel")
	assert.False(t, laterRan.Load())
	assert.Equal(t, map[string]orchestrate.Status{
		"slow": orchestrate.Cancelled, "bad": orchestrate.Failed,
		"later": orchestrate.Cancelled, "after-slow": orchestrate.Cancelled,
	}, statuses(rep))
	assert.ErrorIs(t, slowCause, context.Canceled)
	assert.ErrorContains(t, slowCause, `step "bad" failed`)
	slow, _ := rep.Step("slow")
	assert.ErrorIs(t, slow.Err, context.Canceled)
	later, _ := rep.Step("later")
	assert.True(t, later.Start.IsZero())
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	g := mustAdd(t,
		orchestrate.Step{ID: "a", Retry: noRetry, Run: func(ctx context.Context) error { return nil }},
		orchestrate.Step{ID: "b", Deps: []string{"a"}, Retry: noRetry, Run: func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}},
		orchestrate.Step{ID: "c", Deps: []string{"b"}, Retry: noRetry, Run: func(ctx context.Context) error { return nil }},
	)
	go func() {
		<-started
		cancel()
	}()
	rep, err := orchestrate.Run(ctx, g, orchestrate.Options{})
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorAs(t, err, new(*orchestrate.StepError), "a cancelled step is not a failure")
	assert.Equal(t, map[string]orchestrate.Status{
		"a": orchestrate.Succeeded, "b": orchestrate.Cancelled, "c": orchestrate.Cancelled,
	}, statuses(rep))
}

func TestRunAlreadyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tr := newTracker()
	var ev events
	rep, err := orchestrate.Run(ctx, mustAdd(t, tr.step("a", nil, nil), tr.step("b", []string{"a"}, nil)),
		orchestrate.Options{Events: ev.add, Rollback: true})
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, tr.calls("a"))
	assert.Equal(t, map[string]orchestrate.Status{"a": orchestrate.Cancelled, "b": orchestrate.Cancelled}, statuses(rep))
	assert.Equal(t, []orchestrate.EventKind{orchestrate.EventCancelled}, ev.kinds("a"))
}

func TestRunAttemptTimeout(t *testing.T) {
	var calls atomic.Int32
	g := mustAdd(t, orchestrate.Step{
		ID: "hang", Timeout: 20 * time.Millisecond, Retry: fastRetry(3),
		Run: func(ctx context.Context) error {
			calls.Add(1)
			<-ctx.Done()
			return ctx.Err()
		},
	})
	start := time.Now()
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{})
	require.ErrorIs(t, err, orchestrate.ErrTimeout)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.True(t, draas.IsRetryable(rep.Steps[0].Err), "a timed-out attempt is retryable")
	assert.GreaterOrEqual(t, time.Since(start), 60*time.Millisecond, "three attempts of 20ms")
	assert.Equal(t, int32(3), calls.Load())
	assert.Equal(t, 3, rep.Steps[0].Attempts)
	assert.Equal(t, orchestrate.Failed, rep.Steps[0].Status)
	assert.ErrorContains(t, err, `step "hang" failed after 3 attempts`)

	// A timed-out attempt is retried and the next one may succeed.
	calls.Store(0)
	g = mustAdd(t, orchestrate.Step{
		ID: "slow-once", Timeout: 10 * time.Millisecond, Retry: fastRetry(3),
		Run: func(ctx context.Context) error {
			if calls.Add(1) == 1 {
				<-ctx.Done()
				return context.Cause(ctx)
			}
			return nil
		},
	})
	rep, err = orchestrate.Run(context.Background(), g, orchestrate.Options{})
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Steps[0].Attempts)
}

func TestRunRetries(t *testing.T) {
	var ev events
	var flaky, broken atomic.Int32
	g := mustAdd(t,
		orchestrate.Step{ID: "flaky", Retry: fastRetry(5), Run: func(ctx context.Context) error {
			if flaky.Add(1) <= 2 {
				return fmt.Errorf("launch: %w", draas.ErrTransient)
			}
			return nil
		}},
		orchestrate.Step{ID: "broken", Retry: fastRetry(5), Run: func(ctx context.Context) error {
			broken.Add(1)
			return fmt.Errorf("launch: %w", draas.ErrInvalid)
		}},
	)
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Events: ev.add})
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Equal(t, int32(3), flaky.Load())
	assert.Equal(t, int32(1), broken.Load(), "a non-retryable error is not retried")
	f, _ := rep.Step("flaky")
	assert.Equal(t, orchestrate.Succeeded, f.Status)
	assert.Equal(t, 3, f.Attempts)

	var retried []orchestrate.Event
	for _, e := range ev.all {
		if e.Kind == orchestrate.EventRetried {
			retried = append(retried, e)
		}
	}
	require.Len(t, retried, 2)
	for i, e := range retried {
		assert.Equal(t, "flaky", e.Step)
		assert.Equal(t, i+1, e.Attempt)
		assert.ErrorIs(t, e.Err, draas.ErrTransient)
		assert.Positive(t, e.Backoff)
	}
	assert.Equal(t, []orchestrate.EventKind{orchestrate.EventStarted, orchestrate.EventFailed}, ev.kinds("broken"))
}

func TestRunPanicIsStepFailure(t *testing.T) {
	g := mustAdd(t,
		orchestrate.Step{ID: "p", Retry: fastRetry(3), Run: func(ctx context.Context) error { panic("nil map") }},
		orchestrate.Step{ID: "q", Deps: []string{"p"}, Run: func(ctx context.Context) error { return nil }},
	)
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{})
	require.ErrorIs(t, err, orchestrate.ErrPanic)
	assert.ErrorContains(t, err, `step "p" failed: orchestrate: step panicked: nil map`)
	assert.Equal(t, 1, rep.Steps[0].Attempts, "a panic is not retried")
	assert.Equal(t, orchestrate.Skipped, rep.Steps[1].Status)
}

func TestRunRollback(t *testing.T) {
	tr := newTracker()
	// With Parallelism 1 the steps run in insertion order (no priorities),
	// and undo runs in exactly the reverse order of the finished ones,
	// passing over n, which has no Undo.
	b := tr.step("b", []string{"a"}, nil)
	noUndo := tr.step("n", []string{"b"}, nil)
	noUndo.Undo = nil
	g := mustAdd(t,
		tr.step("a", nil, nil),
		b,
		tr.step("d", []string{"a"}, nil),
		noUndo,
		tr.step("c", []string{"n", "d"}, nil),
		tr.step("x", []string{"c"}, func(context.Context) error { return errBoom }),
		tr.step("y", []string{"x"}, nil),
	)
	var ev events
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Parallelism: 1, Rollback: true, Events: ev.add})
	require.ErrorIs(t, err, errBoom)
	assert.Equal(t, []string{"a", "b", "d", "n", "c", "x"}, tr.starts())
	assert.Equal(t, []string{"c", "d", "b", "a"}, tr.undos, "reverse of the run order, failed x not undone")
	for _, id := range []string{"a", "b", "c", "d"} {
		s, _ := rep.Step(id)
		require.NotNil(t, s.Undo, id)
		assert.Equal(t, orchestrate.Succeeded, s.Undo.Status, id)
		assert.Equal(t, []orchestrate.EventKind{orchestrate.EventStarted, orchestrate.EventSucceeded,
			orchestrate.EventUndoStarted, orchestrate.EventUndone}, ev.kinds(id))
	}
	n, _ := rep.Step("n")
	assert.Nil(t, n.Undo)

	data, err := json.Marshal(rep)
	require.NoError(t, err)
	var back orchestrate.Report
	require.NoError(t, json.Unmarshal(data, &back))
	require.NotNil(t, back.Steps[0].Undo)
	assert.Equal(t, orchestrate.Succeeded, back.Steps[0].Undo.Status)
	assert.Equal(t, 1, back.Steps[0].Undo.Attempts)
	x, _ := rep.Step("x")
	assert.Nil(t, x.Undo)
}

func TestRunRollbackRespectsDependentsInParallel(t *testing.T) {
	tr := newTracker()
	steps := randomDAG(7, 40, 3, false)
	for i := range steps {
		steps[i] = withTracker(tr, steps[i])
	}
	steps = append(steps, tr.step("fail", []string{"s0039"}, func(context.Context) error { return errBoom }))
	g := mustAdd(t, steps...)
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Parallelism: 8, Rollback: true})
	require.ErrorIs(t, err, errBoom)
	require.Len(t, tr.undos, 40)
	pos := make(map[string]int)
	for i, id := range tr.undos {
		pos[id] = i
	}
	for _, s := range steps[:40] {
		for _, dep := range s.Deps {
			assert.Less(t, pos[s.ID], pos[dep], "%s undone after its dependency %s", s.ID, dep)
		}
	}
	assert.Len(t, rep.Steps, 41)
}

func TestRunRollbackUndoFailure(t *testing.T) {
	tr := newTracker()
	b := tr.step("b", []string{"a"}, nil)
	b.Undo = func(ctx context.Context) error { return errors.New("volume in use") }
	g := mustAdd(t,
		tr.step("a", nil, nil),
		b,
		tr.step("c", []string{"b"}, nil),
		tr.step("z", nil, nil),
		tr.step("x", []string{"c"}, func(context.Context) error { return errBoom }),
	)
	var ev events
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Rollback: true, Events: ev.add})
	require.ErrorIs(t, err, errBoom)
	assert.ErrorContains(t, err, `undo of step "b" failed: volume in use`)
	assert.ElementsMatch(t, []string{"c", "z"}, tr.undos, "a is not undone: b still uses it")
	a, _ := rep.Step("a")
	require.NotNil(t, a.Undo)
	assert.Equal(t, orchestrate.Skipped, a.Undo.Status)
	assert.Equal(t, orchestrate.EventUndoSkipped, ev.kinds("a")[2])
	bs, _ := rep.Step("b")
	assert.Equal(t, orchestrate.Failed, bs.Undo.Status)
}

func TestRunEventsCompleteAndOrdered(t *testing.T) {
	clock := newFakeClock()
	var ev events
	var n atomic.Int32
	g := mustAdd(t,
		orchestrate.Step{ID: "a", Run: func(ctx context.Context) error { clock.Advance(time.Second); return nil },
			Undo: func(ctx context.Context) error { return nil }},
		orchestrate.Step{ID: "r", Deps: []string{"a"}, Retry: fastRetry(3), Run: func(ctx context.Context) error {
			clock.Advance(time.Second)
			if n.Add(1) == 1 {
				return draas.ErrThrottled
			}
			return nil
		}},
		orchestrate.Step{ID: "f", Deps: []string{"r"}, Retry: noRetry, Run: func(ctx context.Context) error { return errBoom }},
		orchestrate.Step{ID: "s", Deps: []string{"f"}, Run: func(ctx context.Context) error { return nil }},
	)
	_, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Rollback: true, Events: ev.add, Clock: clock.Now})
	require.Error(t, err)
	E := func(k ...orchestrate.EventKind) []orchestrate.EventKind { return k }
	assert.Equal(t, E(orchestrate.EventStarted, orchestrate.EventSucceeded, orchestrate.EventUndoStarted, orchestrate.EventUndone), ev.kinds("a"))
	assert.Equal(t, E(orchestrate.EventStarted, orchestrate.EventRetried, orchestrate.EventSucceeded), ev.kinds("r"))
	assert.Equal(t, E(orchestrate.EventStarted, orchestrate.EventFailed), ev.kinds("f"))
	assert.Equal(t, E(orchestrate.EventSkipped), ev.kinds("s"))
	for i, e := range ev.all {
		if i > 0 {
			assert.False(t, e.Time.Before(ev.all[i-1].Time), "event times never go back")
		}
		switch e.Kind {
		case orchestrate.EventSucceeded:
			assert.Positive(t, e.Duration)
			assert.Positive(t, e.Attempt)
		case orchestrate.EventFailed:
			assert.ErrorIs(t, e.Err, errBoom)
		case orchestrate.EventRetried:
			assert.ErrorIs(t, e.Err, draas.ErrThrottled)
		}
	}
	r := ev.all[slices.IndexFunc(ev.all, func(e orchestrate.Event) bool { return e.Step == "r" && e.Kind == orchestrate.EventSucceeded })]
	assert.Equal(t, 2*time.Second, r.Duration)
	assert.Equal(t, 2, r.Attempt)
	assert.Equal(t, `step "r" succeeded in 2s`, r.String())
}

func TestValidate(t *testing.T) {
	run := func(context.Context) error { return nil }
	var g orchestrate.Graph
	for _, s := range []orchestrate.Step{
		{ID: "lonely", Run: run},
		{ID: "a", Deps: []string{"c"}, Run: run},
		{ID: "b", Deps: []string{"a", "lonely"}, Run: run},
		{ID: "c", Deps: []string{"b"}, Run: run},
		{ID: "web", Deps: []string{"ap"}, Run: run},
		{ID: "d", Deps: []string{"a"}, Run: run},
	} {
		require.NoError(t, g.Add(s))
	}
	err := g.Validate()
	require.ErrorIs(t, err, orchestrate.ErrInvalidGraph)
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.ErrorContains(t, err, `step "web" depends on unknown step "ap"`)
	assert.ErrorContains(t, err, "dependency cycle: a → c → b → a")

	_, err = orchestrate.Run(context.Background(), &g, orchestrate.Options{})
	assert.ErrorIs(t, err, orchestrate.ErrInvalidGraph)
	_, err = orchestrate.Plan(context.Background(), &g, orchestrate.Options{})
	assert.ErrorIs(t, err, orchestrate.ErrInvalidGraph)

	self := mustAdd(t, orchestrate.Step{ID: "x", Deps: []string{"x"}, Run: run})
	assert.ErrorContains(t, self.Validate(), "dependency cycle: x → x")

	err = g.Add(orchestrate.Step{ID: "a", Run: run})
	assert.ErrorIs(t, err, draas.ErrInvalid)
	assert.ErrorContains(t, err, `duplicate step ID "a"`)
	assert.ErrorIs(t, g.Add(orchestrate.Step{ID: "norun"}), orchestrate.ErrInvalidGraph)
	assert.ErrorIs(t, g.Add(orchestrate.Step{Run: run}), orchestrate.ErrInvalidGraph)
	assert.Equal(t, 6, g.Len())

	_, err = orchestrate.Run(context.Background(), mustAdd(t), orchestrate.Options{Parallelism: -1})
	assert.ErrorIs(t, err, draas.ErrInvalid)
}

func TestPlanEqualsExecutionAtParallelismOne(t *testing.T) {
	tr := newTracker()
	steps := randomDAG(42, 200, 4, true)
	for i := range steps {
		steps[i] = withTracker(tr, steps[i])
	}
	g := mustAdd(t, steps...)
	opts := orchestrate.Options{Parallelism: 1}
	plan, err := orchestrate.Plan(context.Background(), g, opts)
	require.NoError(t, err)
	_, err = orchestrate.Run(context.Background(), g, opts)
	require.NoError(t, err)
	assert.Equal(t, plan.Order(), tr.starts())
	assert.Len(t, plan.Waves(), 200)

	again, err := orchestrate.Plan(context.Background(), g, opts)
	require.NoError(t, err)
	assert.Equal(t, plan, again, "plans are deterministic")
}

func TestPlanWaves(t *testing.T) {
	run := func(context.Context) error { return nil }
	g := mustAdd(t,
		orchestrate.Step{ID: "db/volume", Run: run, Labels: map[string]string{"vm": "db"}},
		orchestrate.Step{ID: "web/volume", Run: run, Labels: map[string]string{"vm": "web"}},
		orchestrate.Step{ID: "app/volume", Priority: 1, Run: run, Labels: map[string]string{"vm": "app"}},
		orchestrate.Step{ID: "db/launch", Deps: []string{"db/volume"}, Run: run},
		orchestrate.Step{ID: "app/launch", Deps: []string{"app/volume", "db/launch"}, Run: run},
		orchestrate.Step{ID: "web/launch", Deps: []string{"web/volume", "app/launch"}, Run: run},
	)
	plan, err := orchestrate.Plan(context.Background(), g, orchestrate.Options{})
	require.NoError(t, err)
	assert.Equal(t, [][]string{{"app/volume", "db/volume", "web/volume"}, {"db/launch"}, {"app/launch"}, {"web/launch"}}, plan.Waves())
	plan, err = orchestrate.Plan(context.Background(), g, orchestrate.Options{Parallelism: 2})
	require.NoError(t, err)
	assert.Equal(t, [][]string{{"app/volume", "db/volume"}, {"web/volume", "db/launch"}, {"app/launch"}, {"web/launch"}}, plan.Waves())
	want := strings.Join([]string{
		"WAVE  STEP        AFTER                  LABELS",
		"1     app/volume                         vm=app",
		"1     db/volume                          vm=db",
		"2     web/volume                         vm=web",
		"2     db/launch   db/volume",
		"3     app/launch  app/volume,db/launch",
		"4     web/launch  web/volume,app/launch",
		"",
	}, "\n")
	assert.Equal(t, want, plan.String())
}

func TestOutputScope(t *testing.T) {
	var got struct{ fromDep, fromGrand, fromOther, own string }
	var errOther error
	g := mustAdd(t,
		orchestrate.Step{ID: "a", Run: func(ctx context.Context) error {
			return orchestrate.Put(ctx, idKey, "vol-1")
		}},
		orchestrate.Step{ID: "b", Deps: []string{"a"}, Run: func(ctx context.Context) error {
			got.fromDep, _ = orchestrate.Get(ctx, "a", idKey)
			if err := orchestrate.Put(ctx, idKey, "i-1"); err != nil {
				return err
			}
			got.own, _ = orchestrate.Get(ctx, "b", idKey)
			return nil
		}},
		orchestrate.Step{ID: "c", Deps: []string{"b"}, Run: func(ctx context.Context) error {
			got.fromGrand, _ = orchestrate.Get(ctx, "a", idKey)
			return nil
		}},
		orchestrate.Step{ID: "other", Deps: []string{"a"}, Run: func(ctx context.Context) error {
			got.fromOther, errOther = orchestrate.Get(ctx, "b", idKey)
			return nil
		}},
	)
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Parallelism: 1})
	require.NoError(t, err)
	assert.Equal(t, "vol-1", got.fromDep)
	assert.Equal(t, "vol-1", got.fromGrand)
	assert.Equal(t, "i-1", got.own)
	assert.ErrorIs(t, errOther, draas.ErrInvalid, "b is not a dependency of other")
	assert.Contains(t, errOther.Error(), "not one of its dependencies")
	assert.Empty(t, got.fromOther)
	assert.Equal(t, orchestrate.Outputs{"id": json.RawMessage(`"i-1"`)}, rep.Steps[1].Outputs)
	id, ok, err := idKey.From(rep.Steps[1].Outputs)
	assert.Equal(t, "i-1", id)
	assert.True(t, ok)
	assert.NoError(t, err)
	assert.Error(t, orchestrate.Put(context.Background(), idKey, "v"))
	_, err = orchestrate.Get(context.Background(), "a", idKey)
	assert.Error(t, err)
}

// shape is a structured output, as workflows record them.
type shape struct {
	CPUs  int      `json:"cpus"`
	Disks []string `json:"disks"`
}

func TestTypedOutputs(t *testing.T) {
	shapeKey := orchestrate.NewKey[shape]("shape")
	asCount := orchestrate.NewKey[int]("shape") // same name, another type
	asOther := orchestrate.NewKey[struct{ Size int64 }]("shape")
	missing := orchestrate.NewKey[string]("missing")
	var got shape
	var errCount, errOther, errMissing error
	g := mustAdd(t,
		orchestrate.Step{ID: "a", Run: func(ctx context.Context) error {
			return orchestrate.Put(ctx, shapeKey, shape{CPUs: 2, Disks: []string{"os", "data"}})
		}},
		orchestrate.Step{ID: "b", Deps: []string{"a"}, Run: func(ctx context.Context) error {
			var err error
			got, err = orchestrate.Get(ctx, "a", shapeKey)
			_, errCount = orchestrate.Get(ctx, "a", asCount)
			_, errOther = orchestrate.Get(ctx, "a", asOther)
			_, errMissing = orchestrate.Get(ctx, "a", missing)
			return err
		}},
	)
	_, err := orchestrate.Run(context.Background(), g, orchestrate.Options{})
	require.NoError(t, err)
	assert.Equal(t, shape{CPUs: 2, Disks: []string{"os", "data"}}, got)
	require.ErrorIs(t, errCount, orchestrate.ErrOutputType)
	assert.ErrorIs(t, errCount, draas.ErrInvalid)
	assert.Contains(t, errCount.Error(), `output "shape" holds {"cpus":2,"disks":["os","data"]}, not a int`)
	assert.Contains(t, errCount.Error(), `step "b" reads step "a"`)
	assert.ErrorIs(t, errOther, orchestrate.ErrOutputType, "a struct of another type is a mismatch, not a zero value")
	require.ErrorIs(t, errMissing, orchestrate.ErrNoOutput)
	assert.ErrorIs(t, errMissing, draas.ErrNotFound)
	assert.Contains(t, errMissing.Error(), `output "missing" of step "a", which recorded none`)
}

func TestFailedStepReportsItsOutputs(t *testing.T) {
	g := mustAdd(t, orchestrate.Step{ID: "copy", Retry: noRetry, Run: func(ctx context.Context) error {
		if err := orchestrate.Put(ctx, idKey, "half"); err != nil {
			return err
		}
		return errBoom
	}})
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{})
	require.ErrorIs(t, err, errBoom)
	v, ok, err := idKey.From(rep.Steps[0].Outputs)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "half", v)
}

func TestReportCriticalPathAndJSON(t *testing.T) {
	clock := newFakeClock()
	work := func(d time.Duration) func(context.Context) error {
		return func(context.Context) error { clock.Advance(d); return nil }
	}
	g := mustAdd(t,
		orchestrate.Step{ID: "a", Run: work(time.Second)},
		orchestrate.Step{ID: "b", Deps: []string{"a"}, Run: work(5 * time.Second)},
		orchestrate.Step{ID: "c", Deps: []string{"a"}, Run: work(2 * time.Second)},
		orchestrate.Step{ID: "d", Deps: []string{"b", "c"}, Run: work(time.Second)},
		orchestrate.Step{ID: "e", Deps: []string{"d"}, Retry: noRetry, Run: func(context.Context) error { return errBoom }},
	)
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Parallelism: 1, Clock: clock.Now})
	require.ErrorIs(t, err, errBoom)
	assert.Equal(t, []string{"a", "b", "d", "e"}, rep.CriticalPath)
	assert.Equal(t, 7*time.Second, rep.CriticalPathDuration)
	assert.Equal(t, 9*time.Second, rep.Duration())

	data, err := json.Marshal(rep)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"error":"boom"`)
	assert.Contains(t, string(data), `"status":"failed"`)
	var back orchestrate.Report
	require.NoError(t, json.Unmarshal(data, &back))
	assert.EqualError(t, back.Steps[4].Err, "boom")
	assert.Equal(t, rep.CriticalPath, back.CriticalPath)
	assert.True(t, rep.End.Equal(back.End))
	assert.Equal(t, rep.Steps[1].Status, back.Steps[1].Status)
}
