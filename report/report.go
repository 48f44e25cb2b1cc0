// Package report turns what a replication, drill, failover or failback run
// did into the record operators and auditors read afterwards: one model,
// [Run], whatever the workflow, written as JSON for machines ([WriteJSON])
// and as a self-contained HTML page for people ([WriteHTML]), or both into
// a directory with [Write].
//
// Converters build a Run from each workflow's own report: [FromFailover],
// [FromFailback] and [FromReplicate]. The recovery targets are parameters,
// not read from the workflows ([TargetsFromPlan] derives them from a plan);
// a drill's clean-up proof is added with [WithCleanup].
//
// # JSON
//
// Field names are stable camelCase json tags. Times are RFC 3339 with
// nanoseconds (encoding/json's format for time.Time). Durations are Go
// duration strings rounded to the millisecond ("4m12.5s", "1h0m0s", "0s"),
// readable by time.ParseDuration; the HTML page prints every duration with
// the same function, so the two never disagree. Besides the fields of Run,
// the JSON carries derived values that reading it back ignores and
// recomputes: the run's "duration", each step's "duration", the "totals"
// of [Run.Totals] and the "verdict" of [Run.Verdict].
package report

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/opendraas/draas/orchestrate"
)

// Kind is what sort of run a [Run] describes.
type Kind string

// The kinds of runs.
const (
	KindReplicate Kind = "replicate"
	KindDrill     Kind = "drill"
	KindFailover  Kind = "failover"
	KindFailback  Kind = "failback"
)

// Status is the outcome of a run for one VM.
type Status string

// The outcomes of a VM.
const (
	// StatusOK: the VM got where the run was taking it (replicated, up
	// after a failover or drill, back after a failback).
	StatusOK Status = "ok"
	// StatusFailed: some step failed, or the VM did not get there.
	StatusFailed Status = "failed"
	// StatusCancelled: the run was stopped (interrupted, or cancelled by
	// the caller) while the VM was on its way and none of its steps failed;
	// running it again resumes or redoes it.
	StatusCancelled Status = "cancelled"
	// StatusSkipped: nothing was attempted for the VM (no step started),
	// for example because the run was cancelled first.
	StatusSkipped Status = "skipped"
)

// Targets are recovery objectives, or what a run achieved of them.
//
// As targets, zero means "no target": nothing to pass or fail. As achieved
// values (Run.Achieved), RTO is the time from the run's start until the
// last VM was up and RPO the age of the oldest recovery point a VM had;
// see each converter for the precise measure.
type Targets struct {
	RTO time.Duration
	RPO time.Duration
}

type targetsJSON struct {
	RTO string `json:"rto"`
	RPO string `json:"rpo"`
}

// MarshalJSON writes the durations as Go duration strings rounded to the
// millisecond.
func (t Targets) MarshalJSON() ([]byte, error) {
	return json.Marshal(targetsJSON{RTO: formatDuration(t.RTO), RPO: formatDuration(t.RPO)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (t *Targets) UnmarshalJSON(b []byte) error {
	var v targetsJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	var err error
	if t.RTO, err = parseDuration(v.RTO); err != nil {
		return fmt.Errorf("report: rto: %w", err)
	}
	if t.RPO, err = parseDuration(v.RPO); err != nil {
		return fmt.Errorf("report: rpo: %w", err)
	}
	return nil
}

// Run is what one run of a workflow did, for every VM of its plan.
type Run struct {
	Kind Kind   `json:"kind"`
	Plan string `json:"plan"`
	// Mode refines Kind where the workflow has modes: a failback's
	// "direct", "pre-seed" or "cut-over".
	Mode  string `json:"mode,omitempty"`
	RunID string `json:"runId,omitempty"`
	// Start and End bound the run.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Targets are the objectives the run is judged against; zero ones
	// are not judged.
	Targets Targets `json:"targets"`
	// Achieved is what the run measured.
	Achieved Targets `json:"achieved"`
	// VMs holds one entry per VM, in the plan's order.
	VMs []VM `json:"vms"`
	// CriticalPath is the chain of steps, as "<vm>/<step>" (or a
	// workflow's own step ID, such as failover's "run"), that determined
	// when the run ended.
	CriticalPath []string `json:"criticalPath,omitempty"`
	// Cleanup is a drill's proof that what it made was removed; nil when
	// none was recorded.
	Cleanup *CleanupProof `json:"cleanup,omitempty"`
	// Errors are the run's errors with their causes, each prefixed with the
	// VM it concerns.
	Errors []string `json:"errors,omitempty"`
}

// VM is what a run did for one VM.
type VM struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Steps are the VM's steps in the workflow's order.
	Steps []Step `json:"steps"`
	// BytesMoved and BlocksMoved count what was written to the
	// destination; BlocksSkipped the blocks not sent (unchanged or zero).
	BytesMoved    int64 `json:"bytesMoved"`
	BlocksMoved   int64 `json:"blocksMoved"`
	BlocksSkipped int64 `json:"blocksSkipped"`
	// Retries counts repeated step attempts, retried disk reads and
	// writes, and the cloud requests the clients retried (AWS throttled
	// them or failed them transiently).
	Retries int `json:"retries"`
	// RecoveryPoint identifies the recovery point the VM was copied or
	// recovered from.
	RecoveryPoint string `json:"recoveryPoint,omitempty"`
	// Error is why the VM failed, with its cause.
	Error string `json:"error,omitempty"`
	// Notes are facts worth reading: instance IDs, snapshots, warnings.
	Notes []string `json:"notes,omitempty"`
}

// Step is one step of a VM's run.
type Step struct {
	Name string `json:"name"`
	// Start and End bound the step (all attempts); zero for a step that
	// never started. A step resumed from a journal has the times of the
	// run that finished it.
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// Status uses orchestrate's vocabulary: succeeded, failed, skipped,
	// cancelled or resumed.
	Status   orchestrate.Status `json:"status"`
	Attempts int                `json:"attempts"`
	Error    string             `json:"error,omitempty"`
}

// Duration returns End - Start, or 0 for a step that did not both start
// and end.
func (s Step) Duration() time.Duration {
	if s.Start.IsZero() || s.End.IsZero() {
		return 0
	}
	return s.End.Sub(s.Start)
}

// Started reports whether the step has times to draw.
func (s Step) Started() bool { return !s.Start.IsZero() && !s.End.IsZero() }

// MarshalJSON writes the step with its duration added.
func (s Step) MarshalJSON() ([]byte, error) {
	type plain Step
	v := struct {
		plain
		Duration string `json:"duration,omitempty"`
	}{plain: plain(s)}
	if s.Started() {
		v.Duration = formatDuration(s.Duration())
	}
	return json.Marshal(v)
}

// CleanupProof records what removing a drill's resources did.
type CleanupProof struct {
	// Removed are the IDs of the resources deleted (instances, volumes,
	// DNS records).
	Removed []string `json:"removed"`
	// Remaining are the IDs of the drill's resources still found after
	// the clean-up.
	Remaining []string `json:"remaining"`
	// Verified is true when the cloud was listed after the clean-up to
	// confirm Remaining, rather than Remaining being only what failed to
	// delete.
	Verified bool `json:"verified"`
}

// OK reports whether the proof shows a complete clean-up: verified and
// nothing remaining.
func (c CleanupProof) OK() bool { return c.Verified && len(c.Remaining) == 0 }

// Duration returns End - Start, or 0 if either is unset.
func (r Run) Duration() time.Duration {
	if r.Start.IsZero() || r.End.IsZero() {
		return 0
	}
	return r.End.Sub(r.Start)
}

// Totals sums the VMs' counters.
type Totals struct {
	BytesMoved    int64 `json:"bytesMoved"`
	BlocksMoved   int64 `json:"blocksMoved"`
	BlocksSkipped int64 `json:"blocksSkipped"`
	Retries       int   `json:"retries"`
	// VMs counts the VMs by status.
	VMs map[Status]int `json:"vms"`
}

// Totals sums the VMs' counters.
func (r Run) Totals() Totals {
	t := Totals{VMs: map[Status]int{}}
	for _, vm := range r.VMs {
		t.BytesMoved += vm.BytesMoved
		t.BlocksMoved += vm.BlocksMoved
		t.BlocksSkipped += vm.BlocksSkipped
		t.Retries += vm.Retries
		t.VMs[vm.Status]++
	}
	return t
}

// Outcome is a judgement in a [Verdict].
type Outcome string

// The outcomes of a judgement.
const (
	Pass Outcome = "pass"
	Fail Outcome = "fail"
	// NotJudged: there was nothing to judge against (no target, or no
	// clean-up to prove).
	NotJudged Outcome = "none"
)

// Verdict judges a run against its targets.
type Verdict struct {
	// RTO: NotJudged without an RTO target; Fail if some VM is not ok or
	// Achieved.RTO exceeds the target; Pass otherwise.
	RTO Outcome `json:"rto"`
	// RPO: likewise with the RPO target and Achieved.RPO.
	RPO Outcome `json:"rpo"`
	// Cleanup: NotJudged for a run that is not a drill or has no proof;
	// Pass if the proof is [CleanupProof.OK]; Fail otherwise.
	Cleanup Outcome `json:"cleanup"`
	// Overall: Fail if any judgement failed, some VM is not ok or the run
	// has errors; Pass otherwise.
	Overall Outcome `json:"overall"`
}

// Verdict judges the run. A target is met only when every VM is ok: a VM
// that failed or never started has not shown that it can be recovered in
// time.
func (r Run) Verdict() Verdict {
	allOK := true
	for _, vm := range r.VMs {
		if vm.Status != StatusOK {
			allOK = false
		}
	}
	judge := func(target, achieved time.Duration) Outcome {
		switch {
		case target <= 0:
			return NotJudged
		case !allOK || achieved > target:
			return Fail
		}
		return Pass
	}
	v := Verdict{
		RTO:     judge(r.Targets.RTO, r.Achieved.RTO),
		RPO:     judge(r.Targets.RPO, r.Achieved.RPO),
		Cleanup: NotJudged,
		Overall: Pass,
	}
	if r.Kind == KindDrill && r.Cleanup != nil {
		v.Cleanup = Fail
		if r.Cleanup.OK() {
			v.Cleanup = Pass
		}
	}
	if !allOK || len(r.Errors) > 0 || v.RTO == Fail || v.RPO == Fail || v.Cleanup == Fail {
		v.Overall = Fail
	}
	return v
}

// OnCriticalPath reports whether the VM's step is on the critical path.
func (r Run) OnCriticalPath(vm, step string) bool {
	id := vm + "/" + step
	for _, c := range r.CriticalPath {
		if c == id {
			return true
		}
	}
	return false
}

// MarshalJSON writes the run with its derived values added: "duration",
// "totals" and "verdict".
func (r Run) MarshalJSON() ([]byte, error) {
	type plain Run
	return json.Marshal(struct {
		plain
		Duration string  `json:"duration"`
		Totals   Totals  `json:"totals"`
		Verdict  Verdict `json:"verdict"`
	}{plain(r), formatDuration(r.Duration()), r.Totals(), r.Verdict()})
}

// formatDuration is how the JSON and the HTML page write every duration:
// Go's notation, rounded to the millisecond.
func formatDuration(d time.Duration) string {
	return d.Round(time.Millisecond).String()
}

func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

// formatTime is how the HTML page shows a time to people; the page's
// <time datetime> attribute carries the JSON's exact value.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Format("2006-01-02 15:04:05.000 MST")
}

// jsonTime is the JSON's form of a time, for <time datetime>.
func jsonTime(t time.Time) string {
	return t.Format(time.RFC3339Nano)
}

// formatBytes is a byte count in binary units, for people; the exact count
// is shown beside it.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
