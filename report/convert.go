package report

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
)

// TargetsFromPlan returns the plan's RPO target (replication.rpo, or twice
// replication.interval when that is 0, as replicate's status does) and RTO
// target: rto when positive, else the plan's rto.
func TargetsFromPlan(p *plan.Plan, rto time.Duration) Targets {
	t := Targets{RTO: rto}
	if p != nil {
		if t.RTO <= 0 {
			t.RTO = time.Duration(p.RTO)
		}
		t.RPO = time.Duration(p.Replication.RPO)
		if t.RPO <= 0 {
			t.RPO = 2 * time.Duration(p.Replication.Interval)
		}
	}
	return t
}

// WithCleanup returns r with the drill's clean-up proof attached. A proof
// that is not [CleanupProof.OK] adds an error naming what remains.
func WithCleanup(r Run, proof CleanupProof) Run {
	p := CleanupProof{
		Removed:   append([]string{}, proof.Removed...),
		Remaining: append([]string{}, proof.Remaining...),
		Verified:  proof.Verified,
	}
	r.Cleanup = &p
	r.Errors = slices.Clone(r.Errors)
	switch {
	case len(p.Remaining) > 0:
		r.Errors = append(r.Errors, fmt.Sprintf("cleanup: %d resources remain: %s", len(p.Remaining), strings.Join(p.Remaining, ", ")))
	case !p.Verified:
		r.Errors = append(r.Errors, "cleanup: not verified: nothing listed the cloud afterwards to confirm the drill's resources are gone")
	}
	return r
}

// FromFailover converts a failover's or drill's report (Kind is "drill"
// for a drill). rep must not be nil.
//
// Achieved.RTO is the report's RTO: the time from the start until the last
// VM that came up was up. Achieved.RPO is the greatest age, at the run's
// start, of a recovery point a VM was recovered from: the data a disaster
// at that moment would have lost. The critical path is the report's.
func FromFailover(rep *failover.Report, targets Targets) Run {
	kind := KindFailover
	if rep.Mode == failover.Drill.String() {
		kind = KindDrill
	}
	r := Run{
		Kind: kind, Plan: rep.Plan, RunID: rep.RunID, Start: rep.Start, End: rep.End,
		Targets: targets, CriticalPath: slices.Clone(rep.CriticalPath),
	}
	r.Achieved.RTO = rep.RTO
	for _, v := range rep.VMs {
		vm := VM{Name: v.VM, RecoveryPoint: v.RecoveryPoint, Error: v.Error}
		for _, s := range v.Steps {
			vm.Steps = append(vm.Steps, Step{
				Name: s.Name, Start: s.Start, End: s.End, Status: s.Status,
				Attempts: s.Attempts, Error: s.Error,
			})
		}
		vm.Retries = stepRetries(vm.Steps) + int(v.Retries)
		vm.Status = vmStatus(vm.Steps, v.Up)
		if !v.PointTime.IsZero() {
			age := rep.Start.Sub(v.PointTime)
			r.Achieved.RPO = max(r.Achieved.RPO, age)
			vm.Notes = append(vm.Notes, fmt.Sprintf("recovery point %s of %s, %s old at the start",
				v.RecoveryPoint, formatTime(v.PointTime), formatDuration(age)))
		}
		if v.InstanceID != "" {
			n := "instance " + v.InstanceID
			if v.PrivateIP != "" {
				n += " at " + v.PrivateIP
			}
			vm.Notes = append(vm.Notes, n)
		}
		if len(v.VolumeIDs) > 0 {
			vm.Notes = append(vm.Notes, "volumes "+strings.Join(v.VolumeIDs, ", "))
		}
		if len(v.RemovedVolumes) > 0 {
			vm.Notes = append(vm.Notes, "removed unused volumes "+strings.Join(v.RemovedVolumes, ", "))
		}
		for _, l := range v.Leftover {
			vm.Notes = append(vm.Notes, "left behind: "+l)
		}
		for _, rec := range v.Records {
			vm.Notes = append(vm.Notes, fmt.Sprintf("DNS %s %s → %s", rec.Type, rec.Name, strings.Join(rec.Values, ", ")))
		}
		if v.Up {
			vm.Notes = append(vm.Notes, "up after "+formatDuration(v.Ready))
		}
		r.addVM(vm)
	}
	return r
}

// FromFailback converts a failback's report. rep must not be nil.
//
// Achieved.RTO is the greatest downtime of a VM: from stopping its
// instance until the vSphere VM was powered on. Achieved.RPO is 0: the
// instance is stopped before its final snapshot, so nothing is lost. A
// pre-seed run stops nothing and brings nothing up, so its targets are
// dropped (not judged) and a VM whose copy succeeded is ok. The failback
// report has no critical path; CriticalPath is left empty.
func FromFailback(rep *failback.Report, targets Targets) Run {
	r := Run{Kind: KindFailback, Plan: rep.Plan, Mode: rep.Mode, Start: rep.Start, End: rep.End, Targets: targets, CriticalPath: rep.CriticalPath}
	preSeed := rep.Mode == failback.PreSeed.String()
	if preSeed {
		r.Targets = Targets{}
	}
	for _, v := range rep.VMs {
		vm := VM{Name: v.VM, Error: v.Error, BytesMoved: v.BytesCopied, BlocksMoved: v.BlocksCopied}
		prefix := v.VM + "/"
		for _, s := range rep.Steps {
			name, ok := strings.CutPrefix(s.ID, prefix)
			if s.Labels["vm"] != v.VM && !ok {
				continue
			}
			vm.Steps = append(vm.Steps, fromStepReport(name, s))
		}
		vm.Retries = stepRetries(vm.Steps)
		up := v.Up
		if preSeed {
			up = v.Error == "" && slices.ContainsFunc(vm.Steps, func(s Step) bool {
				return s.Name == "copy" && (s.Status == orchestrate.Succeeded || s.Status == orchestrate.Resumed)
			})
		}
		vm.Status = vmStatus(vm.Steps, up)
		if v.InstanceID != "" {
			vm.Notes = append(vm.Notes, "from instance "+v.InstanceID)
		}
		if len(v.Snapshots) > 0 {
			vm.Notes = append(vm.Notes, "snapshots "+strings.Join(v.Snapshots, ", "))
		}
		if !preSeed && v.Up {
			vm.Notes = append(vm.Notes, "down for "+formatDuration(v.Downtime))
			r.Achieved.RTO = max(r.Achieved.RTO, v.Downtime)
		}
		r.addVM(vm)
	}
	return r
}

// FromReplicate converts the results of a replication run of the plan:
// each VM's run is one "copy" step from its Start to Start + Duration.
//
// Achieved.RPO is the greatest RPO of a VM (the age of its newest complete
// DR copy at the end of its run). A failed VM with no complete copy adds
// nothing to it, but being failed it fails the RPO verdict. Replication has
// no RTO: targets.RTO is dropped. The critical path is the copy that ended
// last. RunID is left empty for the caller to set.
func FromReplicate(planName string, results []replicate.Result, targets Targets) Run {
	r := Run{Kind: KindReplicate, Plan: planName, Targets: Targets{RPO: targets.RPO}}
	var last string
	for _, res := range results {
		end := res.Start.Add(res.Duration)
		if r.Start.IsZero() || res.Start.Before(r.Start) {
			r.Start = res.Start
		}
		if !end.Before(r.End) {
			r.End, last = end, res.VM+"/copy"
		}
		errText := res.Error
		if errText == "" && res.Err != nil {
			errText = res.Err.Error()
		}
		step := Step{Name: "copy", Start: res.Start, End: end, Status: orchestrate.Succeeded, Attempts: 1}
		vm := VM{
			Name: res.VM, Status: StatusOK, RecoveryPoint: res.RecoveryPoint,
			BytesMoved: res.BytesSent, BlocksMoved: res.BlocksSent, BlocksSkipped: res.BlocksSkipped,
			Retries: int(res.Retries),
		}
		switch {
		case errors.Is(res.Err, context.Canceled):
			// Stopped, not failed: the next run resumes the copy.
			step.Status, step.Error = orchestrate.Cancelled, errText
			vm.Status, vm.Error = StatusCancelled, "copy: "+errText
		case res.Action == replicate.ActionFailed || errText != "":
			step.Status, step.Error = orchestrate.Failed, errText
			vm.Status, vm.Error = StatusFailed, "copy: "+errText
		}
		vm.Steps = []Step{step}
		vm.Notes = append(vm.Notes, "action "+string(res.Action))
		if !res.PointTime.IsZero() {
			vm.Notes = append(vm.Notes, fmt.Sprintf("recovery point %s of %s", res.RecoveryPoint, formatTime(res.PointTime)))
		}
		for _, d := range res.Disks {
			vm.Retries += int(d.Stats.Retries)
			n := fmt.Sprintf("disk %s: %s copied, %s zero, %s unchanged", d.Disk,
				formatBytes(d.Stats.BytesCopied), formatBytes(d.Stats.BytesZero), formatBytes(d.Stats.BytesUnchanged))
			if d.SnapshotID != "" {
				n += " into " + d.SnapshotID
				if d.Parent != "" {
					n += " on " + d.Parent
				}
			}
			if d.Stats.Verified {
				n += ", verified"
			}
			if d.Resumed {
				n += ", resumed"
			}
			vm.Notes = append(vm.Notes, n)
		}
		if len(res.Deleted) > 0 {
			vm.Notes = append(vm.Notes, "deleted old copies "+strings.Join(res.Deleted, ", "))
		}
		for _, w := range res.Warnings {
			vm.Notes = append(vm.Notes, "warning: "+w)
		}
		if res.RPO > 0 {
			vm.Notes = append(vm.Notes, "RPO "+formatDuration(res.RPO)+" at the end")
			r.Achieved.RPO = max(r.Achieved.RPO, res.RPO)
		} else if vm.Status == StatusFailed {
			vm.Notes = append(vm.Notes, "no complete DR copy")
		}
		r.addVM(vm)
	}
	if last != "" {
		r.CriticalPath = []string{last}
	}
	return r
}

// addVM appends vm and its error to the run.
func (r *Run) addVM(vm VM) {
	r.VMs = append(r.VMs, vm)
	switch {
	case vm.Error != "":
		r.Errors = append(r.Errors, vm.Name+": "+vm.Error)
	case vm.Status == StatusFailed:
		r.Errors = append(r.Errors, vm.Name+": did not complete")
	}
}

func fromStepReport(name string, s orchestrate.StepReport) Step {
	st := Step{Name: name, Start: s.Start, End: s.End, Status: s.Status, Attempts: s.Attempts}
	if s.Err != nil {
		st.Error = s.Err.Error()
	}
	return st
}

// stepRetries counts the attempts beyond each step's first.
func stepRetries(steps []Step) int {
	n := 0
	for _, s := range steps {
		n += max(s.Attempts-1, 0)
	}
	return n
}

// vmStatus is ok if the VM got there; failed if one of its steps failed;
// skipped if none of its steps started; cancelled if the run stopped it on
// its way (a step of it cancelled); and failed otherwise.
func vmStatus(steps []Step, ok bool) Status {
	if ok {
		return StatusOK
	}
	started, cancelled := false, false
	for _, s := range steps {
		switch {
		case s.Status == orchestrate.Failed:
			return StatusFailed
		case s.Status == orchestrate.Cancelled:
			cancelled = true
		}
		if !s.Start.IsZero() || s.Status == orchestrate.Resumed {
			started = true
		}
	}
	switch {
	case !started:
		return StatusSkipped
	case cancelled:
		return StatusCancelled
	}
	return StatusFailed
}
