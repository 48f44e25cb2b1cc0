package orchestrate

import (
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// Status is the outcome of a step in a [Report].
type Status string

// The outcomes of a step.
const (
	// Succeeded: Run succeeded in this run.
	Succeeded Status = "succeeded"
	// Failed: Run failed and no retry was left (or, with a journal, the
	// success could not be recorded).
	Failed Status = "failed"
	// Skipped: Run was not called because a dependency failed or was
	// skipped.
	Skipped Status = "skipped"
	// Cancelled: the run stopped (its context was cancelled, or StopAll
	// after a failure) while the step was running or before it started.
	Cancelled Status = "cancelled"
	// Resumed: the journal records the step as finished in an earlier run;
	// Run was not called again.
	Resumed Status = "resumed"
)

// Report describes a finished [Run]. It is JSON-serialisable; errors are
// written as their messages and read back as errors carrying the message.
type Report struct {
	// Start and End bound the run, by Options.Clock.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Steps holds one report per step, in the order the steps were added.
	Steps []StepReport `json:"steps"`
	// CriticalPath is the chain of steps, each depending on the previous,
	// whose Run durations in this run add up to the most: no schedule of
	// the same steps with the same durations could have ended sooner than
	// Start + CriticalPathDuration. Resumed and never-started steps have no
	// duration and are not part of it.
	CriticalPath []string `json:"criticalPath"`
	// CriticalPathDuration is the sum of the durations of CriticalPath's
	// steps. The run's Duration minus this is what the parallelism limit,
	// retries' backoffs counted in their steps aside, and the engine
	// itself added.
	CriticalPathDuration time.Duration `json:"criticalPathDuration"`
}

// Duration returns End - Start.
func (r Report) Duration() time.Duration { return r.End.Sub(r.Start) }

// Step returns the report of the step with the given ID.
func (r Report) Step(id string) (StepReport, bool) {
	for _, s := range r.Steps {
		if s.ID == id {
			return s, true
		}
	}
	return StepReport{}, false
}

// StepReport describes what a run did with one step.
type StepReport struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
	Status Status            `json:"status"`
	// Start and End bound the step's Run, all attempts and backoffs
	// included; for a resumed step, the times recorded in the journal; zero
	// for a step that never started.
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// Attempts is the number of times Run was called (for a resumed step,
	// in the run that finished it).
	Attempts int `json:"attempts"`
	// Err is the last attempt's error (Failed, Cancelled), or why the step
	// was skipped; nil otherwise.
	Err error `json:"-"`
	// Outputs are the values the step recorded with [Put] (for a step that
	// failed or was cancelled, what its attempts recorded); [Key.From]
	// reads one.
	Outputs Outputs `json:"outputs,omitempty"`
	// Undo is what rollback did with the step; nil if rollback did not
	// consider it (no rollback, no Undo, or the step did not succeed).
	Undo *UndoReport `json:"undo,omitempty"`
}

// Duration returns End - Start.
func (s StepReport) Duration() time.Duration { return s.End.Sub(s.Start) }

// MarshalJSON writes the report with Err as its message under "error".
func (s StepReport) MarshalJSON() ([]byte, error) {
	type plain StepReport
	return json.Marshal(struct {
		plain
		Err string `json:"error,omitempty"`
	}{plain(s), errorString(s.Err)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *StepReport) UnmarshalJSON(b []byte) error {
	type plain StepReport
	var v struct {
		plain
		Err string `json:"error,omitempty"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = StepReport(v.plain)
	s.Err = stringError(v.Err)
	return nil
}

// UndoReport describes what rollback did with a step's Undo.
type UndoReport struct {
	// Status is Succeeded (undone), Failed, or Skipped (not attempted
	// because the Undo of a step depending on it failed, or rollback was
	// cancelled).
	Status   Status    `json:"status"`
	Start    time.Time `json:"start,omitzero"`
	End      time.Time `json:"end,omitzero"`
	Attempts int       `json:"attempts"`
	Err      error     `json:"-"`
}

// MarshalJSON writes the report with Err as its message under "error".
func (u UndoReport) MarshalJSON() ([]byte, error) {
	type plain UndoReport
	return json.Marshal(struct {
		plain
		Err string `json:"error,omitempty"`
	}{plain(u), errorString(u.Err)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (u *UndoReport) UnmarshalJSON(b []byte) error {
	type plain UndoReport
	var v struct {
		plain
		Err string `json:"error,omitempty"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*u = UndoReport(v.plain)
	u.Err = stringError(v.Err)
	return nil
}

func errorString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func stringError(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

// criticalPath returns the chain of dependent steps with the greatest total
// Run duration among the steps that ran, and that total.
func criticalPath(d *dag, steps []StepReport) ([]string, time.Duration) {
	n := len(d.nodes)
	dist := make([]time.Duration, n) // longest chain ending at i
	prev := make([]int, n)
	best := -1
	for _, i := range d.order {
		prev[i] = -1
		s := &steps[i]
		if s.Start.IsZero() || s.Status == Resumed {
			continue
		}
		for _, j := range d.nodes[i].deps {
			if dist[j] > 0 && (prev[i] == -1 || dist[j] > dist[prev[i]]) {
				prev[i] = j
			}
		}
		dist[i] = max(s.End.Sub(s.Start), 1)
		if prev[i] >= 0 {
			dist[i] += dist[prev[i]]
		}
		if best == -1 || dist[i] > dist[best] {
			best = i
		}
	}
	if best == -1 {
		return nil, 0
	}
	var path []string
	var total time.Duration
	for i := best; i >= 0; i = prev[i] {
		path = append(path, d.nodes[i].step.ID)
		total += steps[i].Duration()
	}
	slices.Reverse(path)
	return path, total
}
