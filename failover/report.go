package failover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/retry"
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
	// RemovedVolumes are volumes the run made for the VM and no longer
	// used, deleted at its end: the launch image's root volume of a launch
	// cut short between detaching and deleting it. Leftover are those that
	// could not be deleted, each with the reason.
	RemovedVolumes []string `json:"removedVolumes,omitempty"`
	Leftover       []string `json:"leftover,omitempty"`
	// Up is true when the VM is healthy (and its DNS updated).
	Up bool `json:"up"`
	// Ready is the time from the run's start until the VM was up.
	Ready time.Duration `json:"ready"`
	Steps []Step        `json:"steps"`
	// Retries counts the requests of the VM's steps in this run that the
	// clients retried (AWS throttled them or failed them transiently; see
	// retry.Counter); a step's own repeated attempts are in its Attempts.
	Retries int64  `json:"retries"`
	Error   string `json:"error,omitempty"`
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
//
// A run whose journal records it finished does nothing and returns its
// report again (every step resumed). With a launcher that is a [Finder]:
// a failover that finds instances of the plan launched by another run
// (an earlier failover, whose journal is gone or moved aside) running makes
// nothing and returns an [*AlreadyFailedOverError] and no report; and a run
// not cancelled ends by deleting, for each VM whose volumes it made, the
// volumes tagged with the run and VM that are available and not in the
// report (VMReport.RemovedVolumes).
func (r *Runner) Run(ctx context.Context, p *plan.Plan, mode Mode) (*Report, error) {
	g, err := r.Compile(p, mode)
	if err != nil {
		return nil, err
	}
	counters := retryCounters{}
	for _, vm := range p.VMs {
		counters[vm.Name] = new(retry.Counter)
	}
	ctx = context.WithValue(ctx, retryCountersKey{}, counters)
	finder, _ := draas.As[Finder](r.launcher)
	if finder != nil && mode == Failover {
		if err := r.checkEarlier(ctx, finder, p); err != nil {
			return nil, err
		}
	}
	events := r.opts.Events
	if events != nil {
		// The health wait reports its rounds through the same function.
		em := &emitter{f: events}
		events = em.emit
		ctx = context.WithValue(ctx, emitterKey{}, em)
	}
	rep, runErr := orchestrate.Run(ctx, g, orchestrate.Options{
		Parallelism:   r.opts.Parallelism,
		FailurePolicy: orchestrate.ContinueIndependent,
		Journal:       r.opts.Journal,
		Events:        events,
	})
	out := r.report(p, mode, rep, counters)
	if finder != nil && ctx.Err() == nil && out.RunID != "" {
		r.sweep(ctx, finder, out)
	}
	if runErr != nil {
		if errors.Is(runErr, draas.ErrInvalid) && len(rep.Steps) == 0 {
			return nil, runErr
		}
		return out, fmt.Errorf("%w: %w", ErrFailed, runErr)
	}
	return out, nil
}

// checkEarlier returns an *AlreadyFailedOverError if instances of a
// failover of p other than the run the journal records are running.
func (r *Runner) checkEarlier(ctx context.Context, f Finder, p *plan.Plan) error {
	current := ""
	if r.opts.Journal != nil {
		id, err := JournalRunID(ctx, r.opts.Journal)
		switch {
		case err == nil:
			current = id
		case !errors.Is(err, draas.ErrNotFound):
			return err
		}
	}
	found, err := f.RunningInstances(ctx, map[string]string{draas.TagPlan: p.Name, draas.TagRole: Failover.String()})
	if err != nil {
		return fmt.Errorf("failover %s: look for the instances of an earlier failover: %w", p.Name, err)
	}
	e := &AlreadyFailedOverError{Plan: p.Name}
	for id, tags := range found {
		if current == "" || tags[TagRun] != current {
			e.Instances = append(e.Instances, EarlierInstance{VM: tags[draas.TagVM], InstanceID: id, RunID: tags[TagRun]})
		}
	}
	if len(e.Instances) == 0 {
		return nil
	}
	slices.SortFunc(e.Instances, func(a, b EarlierInstance) int {
		return cmp.Or(strings.Compare(a.VM, b.VM), strings.Compare(a.InstanceID, b.InstanceID))
	})
	return e
}

// sweep deletes, for each VM whose volumes the run made, the volumes
// tagged with the run and the VM that are available and that the report
// does not name: what a launch cut short between detaching the image's
// root volume and deleting it left. A VM whose volumes step did not finish
// is left alone: a resumed run finds its volumes again by client token.
func (r *Runner) sweep(ctx context.Context, f Finder, rep *Report) {
	for i := range rep.VMs {
		vr := &rep.VMs[i]
		if len(vr.VolumeIDs) == 0 {
			continue
		}
		tags := map[string]string{draas.TagPlan: rep.Plan, draas.TagVM: vr.VM, draas.TagRole: rep.Mode, TagRun: rep.RunID}
		vols, err := f.AvailableVolumes(ctx, tags)
		if err != nil {
			vr.Leftover = append(vr.Leftover, fmt.Sprintf("volumes of run %s: could not list them: %v", rep.RunID, err))
			continue
		}
		for _, v := range vols {
			if slices.Contains(vr.VolumeIDs, v) {
				continue
			}
			if err := r.launcher.DeleteVolume(ctx, v); err != nil {
				vr.Leftover = append(vr.Leftover, fmt.Sprintf("volume %s: %v", v, err))
				continue
			}
			vr.RemovedVolumes = append(vr.RemovedVolumes, v)
		}
	}
}

// report builds the run's report from the orchestration's and the steps'
// outputs, and the VMs' retry counters.
func (r *Runner) report(p *plan.Plan, mode Mode, rep orchestrate.Report, counters retryCounters) *Report {
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
		if c := counters[vm.Name]; c != nil {
			vr.Retries = c.Load()
		}
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
