package failover

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// Run fails the plan over (or drills it, per opts.Mode) and returns the
// report. The error is nil only if every VM came up; a VM that failed
// stops the VMs that depend on it while independent VMs continue.
func Run(ctx context.Context, p *plan.Plan, opts Options) (*Report, error) {
	g, err := Compile(p, opts)
	if err != nil {
		return nil, err
	}
	rep, runErr := orchestrate.Run(ctx, g, orchestrate.Options{
		Parallelism:   opts.Parallelism,
		FailurePolicy: orchestrate.ContinueIndependent,
		Journal:       opts.Journal,
		Events:        opts.Events,
	})
	out := buildReport(p, opts, rep)
	if runErr != nil {
		if errors.Is(runErr, draas.ErrInvalid) && len(rep.Steps) == 0 {
			return nil, runErr
		}
		return out, fmt.Errorf("%w: %w", ErrFailed, runErr)
	}
	return out, nil
}

func buildReport(p *plan.Plan, opts Options, rep orchestrate.Report) *Report {
	out := &Report{Plan: p.Name, Mode: opts.Mode.String(), Start: rep.Start, End: rep.End,
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
	out.RunID = steps[runStep].Outputs["id"]
	for _, vm := range p.VMs {
		vr := VMReport{VM: vm.Name}
		var last orchestrate.StepReport
		for _, name := range []string{"select", "volumes", "prepare", "launch", "healthy", "dns-before", "dns"} {
			s, ok := steps[sid(vm.Name, name)]
			if !ok {
				continue
			}
			st := Step{Name: name, Status: s.Status, Start: s.Start, End: s.End, Attempts: s.Attempts}
			if !s.End.IsZero() && !s.Start.IsZero() {
				st.Duration = s.End.Sub(s.Start)
			}
			if s.Err != nil {
				st.Error = s.Err.Error()
				if vr.Error == "" {
					vr.Error = fmt.Sprintf("%s: %v", name, s.Err)
				}
			}
			vr.Steps = append(vr.Steps, st)
			last = s
			switch name {
			case "select":
				vr.RecoveryPoint = s.Outputs["point"]
				vr.PointTime, _ = time.Parse(time.RFC3339, s.Outputs["pointTime"])
			case "volumes":
				if v := s.Outputs["volumes"]; v != "" {
					vr.VolumeIDs = strings.Split(v, ",")
				}
			case "prepare":
				vr.GuestChanges = s.Outputs["changes"]
			case "launch":
				vr.InstanceID, vr.PrivateIP = s.Outputs["instance"], s.Outputs["ip"]
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
			r := &vmRun{p: p, vm: vm, opts: opts}
			if r.dns() != nil {
				vr.Records = r.records(vr.PrivateIP)
			}
			outs := steps[sid(vm.Name, "dns-before")].Outputs
			for _, rec := range vr.Records {
				if prev := outs["previous "+rec.Type+" "+rec.Name]; prev != "" {
					rec.Values = strings.Split(prev, ",")
					vr.PreviousRecords = append(vr.PreviousRecords, rec)
				}
			}
		}
		out.VMs = append(out.VMs, vr)
	}
	return out
}

// Cleanup removes what a drill made, as its report records it: the drill
// zone's records, the instances, then the volumes. It never touches
// anything the report does not name, and refuses a failover's report (a
// failover is not cleaned up: it is the new production). Deleting what is
// already gone is not an error, so Cleanup can be repeated.
func Cleanup(ctx context.Context, rep *Report, opts Options) error {
	if rep == nil {
		return draas.Invalidf("failover: Cleanup needs the drill's report")
	}
	if rep.Mode != Drill.String() {
		return draas.Invalidf("failover: run %s of plan %s was a %s, not a drill: Cleanup only removes drills", rep.RunID, rep.Plan, rep.Mode)
	}
	var errs []error
	for _, vm := range rep.VMs {
		for _, rec := range vm.Records {
			if opts.DrillDNS == nil {
				errs = append(errs, fmt.Errorf("drill record %s: Options.DrillDNS is not set", rec.Name))
				continue
			}
			if err := opts.DrillDNS.Delete(ctx, rec); err != nil {
				errs = append(errs, fmt.Errorf("delete drill record %s: %w", rec.Name, err))
			}
		}
	}
	for _, vm := range rep.VMs {
		if vm.InstanceID != "" {
			if err := opts.Launcher.Terminate(ctx, vm.InstanceID); err != nil {
				errs = append(errs, fmt.Errorf("terminate drill instance %s of %s: %w", vm.InstanceID, vm.VM, err))
			}
		}
	}
	for _, vm := range rep.VMs {
		for _, v := range vm.VolumeIDs {
			if err := opts.Launcher.DeleteVolume(ctx, v); err != nil {
				errs = append(errs, fmt.Errorf("delete drill volume %s of %s: %w", v, vm.VM, err))
			}
		}
	}
	return errors.Join(errs...)
}
