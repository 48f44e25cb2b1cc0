package orchestrate

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Schedule is the dry run of a graph: the order in which [Run] would start
// its steps. It is JSON-serialisable.
type Schedule struct {
	// Steps are the steps to run, in start order, then the steps the
	// journal records as finished (Resumed), in dependency order.
	Steps []PlannedStep `json:"steps"`
	// Parallelism is the limit the schedule was planned for; 0 is none.
	Parallelism int `json:"parallelism"`
}

// PlannedStep is one step of a [Schedule].
type PlannedStep struct {
	ID     string            `json:"id"`
	Deps   []string          `json:"deps,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Priority is the step's priority.
	Priority int `json:"priority,omitempty"`
	// Wave is the step's position in time (0-based) if every step took
	// equally long: the steps of one wave run side by side. It is -1 for a
	// resumed step.
	Wave int `json:"wave"`
	// Resumed marks a step the journal records as finished: it will not
	// run.
	Resumed bool `json:"resumed,omitempty"`
}

// Plan returns the order in which Run(ctx, g, opts) would start the steps of
// g, without running any: ready steps by Priority, then insertion order,
// opts.Parallelism at a time, every step assumed to take equally long, none
// failing. The order is deterministic. With Parallelism 1 it is exactly the
// order in which Run starts the steps; with more, Run's order differs only
// as far as the steps' real durations differ. With opts.Journal, the steps it
// records as finished are marked Resumed and do not hold back their
// dependents. Plan returns the errors Run would return for an invalid graph
// or invalid options, or a journal that cannot be loaded.
func Plan(ctx context.Context, g *Graph, opts Options) (Schedule, error) {
	if err := opts.validate(); err != nil {
		return Schedule{}, err
	}
	d, err := compile(g)
	if err != nil {
		return Schedule{}, err
	}
	r := newRunner(d, opts)
	done, err := r.load(ctx)
	if err != nil {
		return Schedule{}, err
	}
	wave := make([]int, len(d.nodes))
	order := d.schedule(done, opts.Parallelism, wave)
	for _, i := range d.order {
		if done[i] {
			order = append(order, i)
			wave[i] = -1
		}
	}
	sc := Schedule{Parallelism: opts.Parallelism, Steps: make([]PlannedStep, 0, len(order))}
	for _, i := range order {
		s := d.nodes[i].step
		sc.Steps = append(sc.Steps, PlannedStep{
			ID:       s.ID,
			Deps:     slices.Clone(s.Deps),
			Labels:   maps.Clone(s.Labels),
			Priority: s.Priority,
			Wave:     wave[i],
			Resumed:  done[i],
		})
	}
	return sc, nil
}

// Order returns the IDs of the steps to run, in start order (resumed steps
// left out).
func (s Schedule) Order() []string {
	var ids []string
	for _, p := range s.Steps {
		if !p.Resumed {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// Waves returns the IDs of the steps to run grouped by wave.
func (s Schedule) Waves() [][]string {
	var waves [][]string
	for _, p := range s.Steps {
		if p.Resumed {
			continue
		}
		for len(waves) <= p.Wave {
			waves = append(waves, nil)
		}
		waves[p.Wave] = append(waves[p.Wave], p.ID)
	}
	return waves
}

// String renders the schedule as a table, one step a line in start order,
// for example
//
//	WAVE  STEP        AFTER      LABELS
//	1     db/volume              vm=db
//	2     db/launch   db/volume  vm=db
//	done  dns                    (resumed)
func (s Schedule) String() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "WAVE\tSTEP\tAFTER\tLABELS")
	for _, p := range s.Steps {
		wave := fmt.Sprint(p.Wave + 1)
		if p.Resumed {
			wave = "done"
		}
		labels := make([]string, 0, len(p.Labels)+1)
		for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
			labels = append(labels, k+"="+p.Labels[k])
		}
		if p.Resumed {
			labels = append(labels, "(resumed)")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", wave, p.ID, strings.Join(p.Deps, ","), strings.Join(labels, " "))
	}
	w.Flush()
	// A step without labels would end in the padding of the column before.
	var out strings.Builder
	for line := range strings.Lines(b.String()) {
		out.WriteString(strings.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	return out.String()
}
