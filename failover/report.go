package failover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
)

// Step is one step of a VM's failover in a report.
type Step struct {
	Name     string             `json:"name"`
	Status   orchestrate.Status `json:"status"`
	Start    time.Time          `json:"start,omitzero"`
	End      time.Time          `json:"end,omitzero"`
	Duration time.Duration      `json:"duration"`
	Attempts int                `json:"attempts"`
	Error    string             `json:"error,omitempty"`
}

// VMReport is what a run did for one VM.
type VMReport struct {
	VM            string         `json:"vm"`
	RecoveryPoint string         `json:"recoveryPoint,omitempty"`
	PointTime     time.Time      `json:"pointTime,omitzero"`
	InstanceID    string         `json:"instanceId,omitempty"`
	PrivateIP     string         `json:"privateIp,omitempty"`
	VolumeIDs     []string       `json:"volumeIds,omitempty"`
	Records       []draas.Record `json:"records,omitempty"`
	// PreviousRecords are the records as they were before the failover
	// changed them: what failback points DNS back to.
	PreviousRecords []draas.Record `json:"previousRecords,omitempty"`
	// GuestChanges is the guest preparer's record of its changes.
	GuestChanges string `json:"guestChanges,omitempty"`
	// Up is true when the VM is healthy (and its DNS updated).
	Up bool `json:"up"`
	// Ready is the time from the run's start until the VM was up.
	Ready time.Duration `json:"ready"`
	Steps []Step        `json:"steps"`
	Error string        `json:"error,omitempty"`
}

// Report is what a failover or drill did.
type Report struct {
	Plan  string    `json:"plan"`
	Mode  string    `json:"mode"`
	RunID string    `json:"runId"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// RTO is the time from the start (of the first run, when this one
	// resumed it) until the last VM was up: the recovery time achieved.
	RTO time.Duration `json:"rto"`
	// CriticalPath is the chain of steps that determined the end time.
	CriticalPath         []string      `json:"criticalPath"`
	CriticalPathDuration time.Duration `json:"criticalPathDuration"`
	VMs                  []VMReport    `json:"vms"`
}

// VM returns the report of the named VM.
func (r *Report) VM(name string) (VMReport, bool) {
	for _, v := range r.VMs {
		if v.VM == name {
			return v, true
		}
	}
	return VMReport{}, false
}

// Run fails the plan over (or drills it, per mode) and returns the report.
// The error is nil only if every VM came up; a VM that failed stops the VMs
// that depend on it while independent VMs continue, and the report (with an
// error wrapping [ErrFailed]) says which and why. An invalid plan or mode is
// an error wrapping [draas.ErrInvalid] and no report.
func (r *Runner) Run(ctx context.Context, p *plan.Plan, mode Mode) (*Report, error) {
	g, err := r.Compile(p, mode)
	if err != nil {
		return nil, err
	}
	rep, runErr := orchestrate.Run(ctx, g, orchestrate.Options{
		Parallelism:   r.opts.Parallelism,
		FailurePolicy: orchestrate.ContinueIndependent,
		Journal:       r.opts.Journal,
		Events:        r.opts.Events,
	})
	out := r.report(p, mode, rep)
	if runErr != nil {
		if errors.Is(runErr, draas.ErrInvalid) && len(rep.Steps) == 0 {
			return nil, runErr
		}
		return out, fmt.Errorf("%w: %w", ErrFailed, runErr)
	}
	return out, nil
}

// report builds the run's report from the orchestration's and the steps'
// outputs.
func (r *Runner) report(p *plan.Plan, mode Mode, rep orchestrate.Report) *Report {
	out := &Report{Plan: p.Name, Mode: mode.String(), Start: rep.Start, End: rep.End,
		CriticalPath: rep.CriticalPath, CriticalPathDuration: rep.CriticalPathDuration}
	steps := map[string]orchestrate.StepReport{}
	for _, s := range rep.Steps {
		steps[s.ID] = s
		// A resumed run started when its first run did: RTO counts from
		// there.
		if !s.Start.IsZero() && s.Start.Before(out.Start) {
			out.Start = s.Start
		}
	}
	out.RunID = output(steps[runStep], runIDKey)
	for _, vm := range p.VMs {
		vr := VMReport{VM: vm.Name}
		var last orchestrate.StepReport
		var previous []draas.Record
		for _, st := range vmSteps {
			s, ok := steps[sid(vm.Name, st.name)]
			if !ok {
				continue
			}
			step := Step{Name: st.name, Status: s.Status, Start: s.Start, End: s.End, Attempts: s.Attempts}
			if !s.End.IsZero() && !s.Start.IsZero() {
				step.Duration = s.End.Sub(s.Start)
			}
			if s.Err != nil {
				step.Error = s.Err.Error()
				if vr.Error == "" {
					vr.Error = fmt.Sprintf("%s: %v", st.name, s.Err)
				}
			}
			vr.Steps = append(vr.Steps, step)
			last = s
			if s.Status != orchestrate.Succeeded && s.Status != orchestrate.Resumed {
				continue
			}
			switch st.name {
			case stepSelect:
				set := output(s, copyKey)
				vr.RecoveryPoint, vr.PointTime = set.Point, set.PointTime
			case stepVolumes:
				vr.VolumeIDs = output(s, volumesKey)
			case stepPrepare:
				vr.GuestChanges = output(s, changesKey)
			case stepLaunch:
				inst := output(s, instanceKey)
				vr.InstanceID, vr.PrivateIP = inst.ID, inst.PrivateIP
			case stepDNSBefore:
				previous = output(s, previousKey)
			}
		}
		if last.Status == orchestrate.Succeeded || last.Status == orchestrate.Resumed {
			vr.Up = true
			if !last.End.IsZero() {
				vr.Ready = last.End.Sub(out.Start)
			}
			out.RTO = max(out.RTO, vr.Ready)
		}
		if vr.PrivateIP != "" {
			v := &vmRun{Runner: r, p: p, vm: vm, mode: mode}
			if v.dns() != nil {
				vr.Records = v.records(vr.PrivateIP)
			}
			vr.PreviousRecords = previous
		}
		out.VMs = append(out.VMs, vr)
	}
	return out
}

// output returns the value of k a step recorded, or the zero value: the
// steps that read it fail on a missing or mistyped value, which the report
// shows.
func output[T any](s orchestrate.StepReport, k orchestrate.Key[T]) T {
	v, _, _ := k.From(s.Outputs)
	return v
}

// Cleanup removes what a drill made, as its report records it: the drill
// zone's records, the instances, then the volumes. It never touches
// anything the report does not name, and refuses a failover's report (a
// failover is not cleaned up: it is the new production). Deleting what is
// already gone is not an error, so Cleanup can be repeated. Records need
// Options.DrillDNS.
func (r *Runner) Cleanup(ctx context.Context, rep *Report) error {
	if !r.valid() {
		return errNilRunner
	}
	if rep == nil {
		return draas.Invalidf("failover: Cleanup needs the drill's report")
	}
	if rep.Mode != Drill.String() {
		return draas.Invalidf("failover: run %s of plan %s was a %s, not a drill: Cleanup only removes drills", rep.RunID, rep.Plan, rep.Mode)
	}
	var errs []error
	for _, vm := range rep.VMs {
		for _, rec := range vm.Records {
			if r.opts.DrillDNS == nil {
				errs = append(errs, fmt.Errorf("drill record %s: Options.DrillDNS is not set", rec.Name))
				continue
			}
			if err := r.opts.DrillDNS.Delete(ctx, rec); err != nil {
				errs = append(errs, fmt.Errorf("delete drill record %s: %w", rec.Name, err))
			}
		}
	}
	for _, vm := range rep.VMs {
		if vm.InstanceID != "" {
			if err := r.launcher.Terminate(ctx, vm.InstanceID); err != nil {
				errs = append(errs, fmt.Errorf("terminate drill instance %s of %s: %w", vm.InstanceID, vm.VM, err))
			}
		}
	}
	for _, vm := range rep.VMs {
		for _, v := range vm.VolumeIDs {
			if err := r.launcher.DeleteVolume(ctx, v); err != nil {
				errs = append(errs, fmt.Errorf("delete drill volume %s of %s: %w", v, vm.VM, err))
			}
		}
	}
	return errors.Join(errs...)
}
