package orchestrate

import (
	"container/heap"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/opendraas/draas/retry"
)

// Step is one unit of work in a [Graph]: typically one control-plane call and
// its wait (create a volume, launch an instance, wait until it is healthy).
//
// A step may run more than once: its Retry policy repeats attempts that fail
// with a retryable error, and a run resumed from a [Journal] repeats a step
// that was interrupted before it was recorded as finished. Run and Undo MUST
// therefore be idempotent (for AWS calls: a client token derived from the
// plan, the VM and the step), and MUST return promptly once their context is
// cancelled.
type Step struct {
	// ID names the step; it is unique in its graph and is the name used in
	// Deps, reports, events, errors and the journal. Required.
	ID string
	// Deps are the IDs of the steps that must succeed before this one
	// starts. An ID may appear more than once.
	Deps []string
	// Priority orders the steps that are ready at the same time: higher
	// starts first; among equal priorities, the step added first starts
	// first. It never overrides a dependency.
	Priority int
	// Timeout bounds each attempt of Run (and of Undo); 0 means no bound. An
	// attempt that outlives it sees its context cancelled and fails with an
	// error wrapping [ErrTimeout], which the default retry classifier
	// retries.
	Timeout time.Duration
	// Retry says which failed attempts are repeated and after what backoff.
	// Its zero value is the project's default policy: up to 8 attempts for
	// errors [draas.IsRetryable] accepts (throttling, transient failures,
	// attempt timeouts), none for the rest. retry.Policy{MaxAttempts: 1}
	// disables retries. OnRetry, if set, is called after the Retried event.
	Retry retry.Policy
	// Run does the step's work. Its context is cancelled when the run is
	// cancelled, when another step fails under [StopAll], or when the
	// attempt times out. Run may record small results for its dependents
	// with [Put] and read its dependencies' results with [Get].
	// Required.
	Run func(ctx context.Context) error
	// Undo, if set, reverses a Run that succeeded (delete the volume Run
	// created). It is called only during rollback (see Options.Rollback),
	// with the same Timeout and Retry as Run, and may read the step's own
	// outputs with [Get].
	Undo func(ctx context.Context) error
	// Labels are free-form attributes copied into events, reports and plans
	// (for example "vm": "web-1", "kind": "launch").
	Labels map[string]string
}

// Graph is a set of steps and their dependencies. The zero value is an empty
// graph ready to use. A Graph is not safe for concurrent use. [Run] and
// [Plan] take a snapshot of it when they start: changing the graph
// afterwards does not affect them.
type Graph struct {
	steps []Step
	index map[string]int
}

// Add adds a copy of s to the graph. It returns an error wrapping
// [ErrInvalidGraph] if s has no ID or no Run, a negative Timeout, or the ID
// of a step already added; the graph is then unchanged. Dependencies may name
// steps added later; [Graph.Validate] checks them.
func (g *Graph) Add(s Step) error {
	switch {
	case s.ID == "":
		return invalidf("step with no ID (deps %q)", s.Deps)
	case s.Run == nil:
		return invalidf("step %q has no Run", s.ID)
	case s.Timeout < 0:
		return invalidf("step %q has negative timeout %v", s.ID, s.Timeout)
	}
	if _, dup := g.index[s.ID]; dup {
		return invalidf("duplicate step ID %q", s.ID)
	}
	if g.index == nil {
		g.index = make(map[string]int)
	}
	s.Deps = slices.Clone(s.Deps)
	s.Labels = maps.Clone(s.Labels)
	g.index[s.ID] = len(g.steps)
	g.steps = append(g.steps, s)
	return nil
}

// Len returns the number of steps in the graph.
func (g *Graph) Len() int { return len(g.steps) }

// Validate reports whether the graph can run. It returns nil, or an error
// wrapping [ErrInvalidGraph] that names every dependency on an unknown step
// ("step "web" depends on unknown step "ap"") and one dependency cycle, in
// the order each step depends on the next ("a → b → c → a").
func (g *Graph) Validate() error {
	_, err := compile(g)
	return err
}

// node is a step of a compiled graph, with its edges as indices.
type node struct {
	step       *Step
	deps       []int // distinct, in declaration order
	dependents []int // in insertion order
}

// dag is a validated, immutable view of a Graph, shared by Run and Plan.
type dag struct {
	nodes []node
	index map[string]int
	// order is the deterministic topological order: the order in which the
	// steps start with Parallelism 1 and no journal.
	order []int
	// pos[i] is the position of node i in order.
	pos []int
}

func compile(g *Graph) (*dag, error) {
	if g == nil {
		return nil, invalidf("nil graph")
	}
	// The dag owns copies, so the graph may change once Run has started.
	steps := slices.Clone(g.steps)
	d := &dag{nodes: make([]node, len(steps)), index: maps.Clone(g.index)}
	var errs []error
	for i := range steps {
		n := &d.nodes[i]
		n.step = &steps[i]
		for _, dep := range n.step.Deps {
			j, ok := d.index[dep]
			if !ok {
				errs = append(errs, invalidf("step %q depends on unknown step %q", n.step.ID, dep))
				continue
			}
			if !slices.Contains(n.deps, j) {
				n.deps = append(n.deps, j)
			}
		}
	}
	for i := range d.nodes {
		for _, j := range d.nodes[i].deps {
			d.nodes[j].dependents = append(d.nodes[j].dependents, i)
		}
	}
	d.order = d.schedule(nil, 1, nil)
	if len(d.order) < len(d.nodes) {
		errs = append(errs, invalidf("dependency cycle: %s (each step depends on the next)", d.cycle()))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	d.pos = make([]int, len(d.nodes))
	for p, i := range d.order {
		d.pos[i] = p
	}
	return d, nil
}

// schedule simulates a run in which every step takes one tick: at each tick
// it starts, among the ready steps, up to limit (0: all) by priority then
// insertion order. Steps with done[i] set are finished already and are not
// scheduled. It returns the steps in start order and, if wave is not nil,
// stores each one's tick in wave. Steps on or behind a cycle are left out.
func (d *dag) schedule(done []bool, limit int, wave []int) []int {
	pending := make([]int, len(d.nodes))
	for i := range d.nodes {
		for _, j := range d.nodes[i].deps {
			if done == nil || !done[j] {
				pending[i]++
			}
		}
	}
	ready := &queue{less: d.before}
	for i := range d.nodes {
		if pending[i] == 0 && (done == nil || !done[i]) {
			ready.push(i)
		}
	}
	var order, started []int
	for tick := 0; ready.Len() > 0; tick++ {
		started = started[:0]
		for ready.Len() > 0 && (limit == 0 || len(started) < limit) {
			i := ready.pop()
			started = append(started, i)
			order = append(order, i)
			if wave != nil {
				wave[i] = tick
			}
		}
		for _, i := range started {
			for _, k := range d.nodes[i].dependents {
				if pending[k]--; pending[k] == 0 {
					ready.push(k)
				}
			}
		}
	}
	return order
}

// before orders ready steps: higher priority first, then insertion order.
func (d *dag) before(a, b int) bool {
	pa, pb := d.nodes[a].step.Priority, d.nodes[b].step.Priority
	if pa != pb {
		return pa > pb
	}
	return a < b
}

// cycle describes one dependency cycle of a graph whose topological order
// is incomplete, starting from the earliest-added step in it.
func (d *dag) cycle() string {
	in := make([]bool, len(d.nodes))
	for i := range in {
		in[i] = true
	}
	for _, i := range d.order {
		in[i] = false
	}
	// Every step left out of the order has a dependency left out too, so
	// following the first such dependency must come back to a step already
	// seen: that loop is a cycle.
	seen := make(map[int]int)
	var path []int
	v := slices.Index(in, true)
	for {
		if p, ok := seen[v]; ok {
			path = path[p:]
			break
		}
		seen[v] = len(path)
		path = append(path, v)
		for _, j := range d.nodes[v].deps {
			if in[j] {
				v = j
				break
			}
		}
	}
	first := slices.Index(path, slices.Min(path))
	path = append(path[first:], path[:first]...)
	names := make([]string, 0, len(path)+1)
	for _, i := range path {
		names = append(names, d.nodes[i].step.ID)
	}
	names = append(names, names[0])
	return strings.Join(names, " → ")
}

// ancestor reports whether step a is a transitive dependency of step b.
func (d *dag) ancestor(a, b int) bool {
	seen := make([]bool, len(d.nodes))
	stack := slices.Clone(d.nodes[b].deps)
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if v == a {
			return true
		}
		if !seen[v] {
			seen[v] = true
			stack = append(stack, d.nodes[v].deps...)
		}
	}
	return false
}

// queue is a priority queue of step indices.
type queue struct {
	items []int
	less  func(a, b int) bool
}

func (q *queue) Len() int           { return len(q.items) }
func (q *queue) Less(i, j int) bool { return q.less(q.items[i], q.items[j]) }
func (q *queue) Swap(i, j int)      { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *queue) Push(x any)         { q.items = append(q.items, x.(int)) }
func (q *queue) Pop() any {
	n := len(q.items) - 1
	x := q.items[n]
	q.items = q.items[:n]
	return x
}
func (q *queue) push(i int) { heap.Push(q, i) }
func (q *queue) pop() int   { return heap.Pop(q).(int) }
