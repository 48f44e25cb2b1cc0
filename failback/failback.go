// Package failback brings VMs that failed over to EC2 back to a rebuilt
// vSphere site: for each instance it reads its shape (vCPUs, memory, disks),
// snapshots its volumes together (crash-consistent), creates a vSphere VM of
// the same shape, copies each snapshot into the VM's disks (only allocated
// blocks), powers the VM on and points DNS back.
//
// Two modes, chosen per run:
//
//   - Direct: stop the instance, snapshot, copy everything, power on. The
//     downtime is the whole copy.
//   - Pre-seed: [Run] with PreSeed copies from a snapshot taken while the
//     instance keeps serving; a later [Run] with CutOver stops the instance,
//     takes a final snapshot and copies only the blocks that changed since
//     the pre-seed (ListChangedBlocks). The downtime is the changed blocks'
//     copy. The report measures it.
//
// VMs are handled in the plan's dependency order through package
// orchestrate, resumably with a journal.
package failback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
)

// Mode is how a run copies.
type Mode int

const (
	// Direct stops the instance first and copies everything.
	Direct Mode = iota
	// PreSeed copies from a snapshot of the running instance; the VM stays
	// powered off and the instance keeps serving.
	PreSeed
	// CutOver stops the instance, snapshots it again and copies only what
	// changed since the pre-seed run, then powers the VM on.
	CutOver
)

func (m Mode) String() string {
	return [...]string{"direct", "pre-seed", "cut-over"}[m]
}

// Cloud is what failback needs of the EC2 side.
type Cloud interface {
	draas.InstanceLauncher
	draas.InstanceSnapshotter
}

// Target is where a VM comes back to and what DNS should say.
type Target struct {
	// InstanceID is the EC2 instance the VM runs as now.
	InstanceID string
	// Placement of the new vSphere VM; Name and Shape are filled in.
	Placement draas.VMRequest
	// Records are pointed back (their Values are the on-premises
	// addresses).
	Records []draas.Record
	// PreSeedSnapshots are the snapshots a PreSeed run copied, for the
	// CutOver run (the PreSeed run's report has them).
	PreSeedSnapshots []string
}

// Options configures a run. Cloud, Hypervisor and OpenSnapshot are
// required.
type Options struct {
	Mode       Mode
	Cloud      Cloud
	Hypervisor draas.Hypervisor
	// OpenSnapshot reads an EBS snapshot, e.g. with aws/ebs.OpenSnapshot.
	OpenSnapshot func(ctx context.Context, snapshotID string) (draas.BlockSource, error)
	// DNS points names back on premises; nil skips DNS.
	DNS draas.DNS
	// Targets maps each VM of the plan to its instance and placement.
	Targets map[string]Target
	// Copy tunes the disk copies (Verify is always on).
	Copy blockcopy.Options
	// KeepSnapshots keeps the failback snapshots after a successful
	// direct or cut-over run; by default they are deleted.
	KeepSnapshots bool
	Journal       orchestrate.Journal
	Parallelism   int
	Events        func(orchestrate.Event)
}

// VMReport is what a run did for one VM.
type VMReport struct {
	VM         string      `json:"vm"`
	InstanceID string      `json:"instanceId"`
	Shape      draas.Shape `json:"shape"`
	Snapshots  []string    `json:"snapshots"`
	// BytesCopied and BlocksCopied count what was written to the VM.
	BytesCopied  int64 `json:"bytesCopied"`
	BlocksCopied int64 `json:"blocksCopied"`
	// Downtime is the time from stopping the instance until the VM was
	// powered on (0 for a pre-seed run, which stops nothing).
	Downtime time.Duration `json:"downtime"`
	Up       bool          `json:"up"`
	Error    string        `json:"error,omitempty"`
}

// Report is what a run did.
type Report struct {
	Plan  string                   `json:"plan"`
	Mode  string                   `json:"mode"`
	Start time.Time                `json:"start"`
	End   time.Time                `json:"end"`
	VMs   []VMReport               `json:"vms"`
	Steps []orchestrate.StepReport `json:"steps"`
	// CriticalPath is the chain of steps that determined the end time.
	CriticalPath         []string      `json:"criticalPath"`
	CriticalPathDuration time.Duration `json:"criticalPathDuration"`
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

// ErrFailed marks a run in which some VM did not come back.
var ErrFailed = errors.New("failback: not every VM came back")

func sid(vm, step string) string { return vm + "/" + step }

// Run fails the plan's VMs back.
func Run(ctx context.Context, p *plan.Plan, opts Options) (*Report, error) {
	if opts.Cloud == nil || opts.Hypervisor == nil || opts.OpenSnapshot == nil {
		return nil, draas.Invalidf("failback: Options.Cloud, Options.Hypervisor and Options.OpenSnapshot are required")
	}
	g := &orchestrate.Graph{}
	runs := map[string]*vmRun{}
	for _, vm := range p.VMs {
		t, ok := opts.Targets[vm.Name]
		if !ok || t.InstanceID == "" {
			return nil, draas.Invalidf("failback: plan %s: no instance for VM %s: set Options.Targets[%q].InstanceID (the failover report has it)", p.Name, vm.Name, vm.Name)
		}
		if opts.Mode == CutOver && len(t.PreSeedSnapshots) == 0 {
			return nil, draas.Invalidf("failback: cut-over of VM %s needs the pre-seed run's snapshots in Targets[%q].PreSeedSnapshots", vm.Name, vm.Name)
		}
		r := &vmRun{p: p, vm: vm, t: t, opts: opts}
		runs[vm.Name] = r
		labels := map[string]string{"vm": vm.Name}
		var deps []string
		for _, d := range vm.DependsOn {
			deps = append(deps, sid(d, "power-on"))
		}
		steps := []orchestrate.Step{
			{ID: sid(vm.Name, "shape"), Run: r.shape},
			{ID: sid(vm.Name, "snapshot"), Deps: []string{sid(vm.Name, "shape")}, Run: r.snapshot},
			{ID: sid(vm.Name, "create-vm"), Deps: []string{sid(vm.Name, "shape")}, Run: r.createVM},
			{ID: sid(vm.Name, "copy"), Deps: []string{sid(vm.Name, "snapshot"), sid(vm.Name, "create-vm")}, Run: r.copy},
		}
		if opts.Mode != PreSeed {
			steps = append(steps,
				orchestrate.Step{ID: sid(vm.Name, "power-on"), Deps: append([]string{sid(vm.Name, "copy")}, deps...), Run: r.powerOn})
			if opts.DNS != nil && len(t.Records) > 0 {
				steps = append(steps, orchestrate.Step{ID: sid(vm.Name, "dns"), Deps: []string{sid(vm.Name, "power-on")}, Run: r.dns})
			}
			if !opts.KeepSnapshots {
				last := steps[len(steps)-1].ID
				steps = append(steps, orchestrate.Step{ID: sid(vm.Name, "cleanup"), Deps: []string{last}, Run: r.cleanup})
			}
		}
		for _, s := range steps {
			s.Labels = labels
			if err := g.Add(s); err != nil {
				return nil, err
			}
		}
	}
	rep, runErr := orchestrate.Run(ctx, g, orchestrate.Options{
		Parallelism: opts.Parallelism, Journal: opts.Journal, Events: opts.Events, FailurePolicy: orchestrate.ContinueIndependent,
	})
	if runErr != nil && len(rep.Steps) == 0 {
		return nil, runErr
	}
	out := &Report{Plan: p.Name, Mode: opts.Mode.String(), Start: rep.Start, End: rep.End, Steps: rep.Steps,
		CriticalPath: rep.CriticalPath, CriticalPathDuration: rep.CriticalPathDuration}
	byID := map[string]orchestrate.StepReport{}
	for _, s := range rep.Steps {
		byID[s.ID] = s
	}
	for _, vm := range p.VMs {
		vr := VMReport{VM: vm.Name, InstanceID: opts.Targets[vm.Name].InstanceID}
		r := runs[vm.Name]
		vr.Shape = r.shapeOut
		if s := byID[sid(vm.Name, "snapshot")]; s.Outputs["snapshots"] != "" {
			vr.Snapshots = strings.Split(s.Outputs["snapshots"], ",")
		}
		vr.BytesCopied, vr.BlocksCopied = r.bytes, r.blocks
		final := sid(vm.Name, "copy")
		if opts.Mode != PreSeed {
			final = sid(vm.Name, "power-on")
			stop, on := byID[sid(vm.Name, "snapshot")], byID[final]
			if !stop.Start.IsZero() && !on.End.IsZero() {
				vr.Downtime = on.End.Sub(stop.Start)
			}
		}
		if st := byID[final].Status; st == orchestrate.Succeeded || st == orchestrate.Resumed {
			vr.Up = opts.Mode != PreSeed
		}
		for _, name := range []string{"shape", "snapshot", "create-vm", "copy", "power-on", "dns", "cleanup"} {
			if s := byID[sid(vm.Name, name)]; s.Err != nil && vr.Error == "" {
				vr.Error = fmt.Sprintf("%s: %v", name, s.Err)
			}
		}
		out.VMs = append(out.VMs, vr)
	}
	if runErr != nil {
		return out, fmt.Errorf("%w: %w", ErrFailed, runErr)
	}
	return out, nil
}

type vmRun struct {
	p    *plan.Plan
	vm   plan.VM
	t    Target
	opts Options

	shapeOut      draas.Shape
	bytes, blocks int64
}

func (r *vmRun) shape(ctx context.Context) error {
	s, err := r.opts.Cloud.Shape(ctx, r.t.InstanceID)
	if err != nil {
		return fmt.Errorf("shape of instance %s: %w", r.t.InstanceID, err)
	}
	r.shapeOut = s
	return nil
}

// snapshot stops the instance (except when pre-seeding) and snapshots its
// volumes together.
func (r *vmRun) snapshot(ctx context.Context) error {
	if r.opts.Mode != PreSeed {
		if err := r.opts.Cloud.Stop(ctx, r.t.InstanceID); err != nil {
			return fmt.Errorf("stop instance %s: %w", r.t.InstanceID, err)
		}
	}
	ids, err := r.opts.Cloud.SnapshotInstance(ctx, r.t.InstanceID, map[string]string{
		draas.TagPlan + "-failback": r.p.Name, draas.TagRole: "failback-" + r.opts.Mode.String(),
	})
	if err != nil {
		return fmt.Errorf("snapshot instance %s: %w", r.t.InstanceID, err)
	}
	return orchestrate.SetOutput(ctx, "snapshots", strings.Join(ids, ","))
}

func (r *vmRun) ensureShape(ctx context.Context) error {
	if r.shapeOut.CPUs == 0 {
		return r.shape(ctx) // resumed: the shape step finished in an earlier run
	}
	return nil
}

func (r *vmRun) createVM(ctx context.Context) error {
	if err := r.ensureShape(ctx); err != nil {
		return err
	}
	req := r.t.Placement
	req.Name, req.Shape = r.vm.Name, r.shapeOut
	if err := r.opts.Hypervisor.CreateVM(ctx, req); err != nil {
		return fmt.Errorf("create VM %s: %w", r.vm.Name, err)
	}
	return nil
}

// copy copies each snapshot into the VM's disk: everything allocated, or
// on cut-over only what changed since the pre-seed snapshot.
func (r *vmRun) copy(ctx context.Context) error {
	v, _ := orchestrate.Output(ctx, sid(r.vm.Name, "snapshot"), "snapshots")
	snaps := strings.Split(v, ",")
	if err := r.ensureShape(ctx); err != nil {
		return err
	}
	if len(snaps) != len(r.shapeOut.Disks) {
		return fmt.Errorf("instance %s has %d volumes but %d snapshots were taken", r.t.InstanceID, len(r.shapeOut.Disks), len(snaps))
	}
	for i, snap := range snaps {
		src, err := r.opts.OpenSnapshot(ctx, snap)
		if err != nil {
			return fmt.Errorf("open snapshot %s: %w", snap, err)
		}
		opts := r.opts.Copy
		opts.Verify = true
		opts.Extents = nil
		if r.opts.Mode == CutOver {
			if i >= len(r.t.PreSeedSnapshots) {
				return fmt.Errorf("no pre-seed snapshot for disk %d of %s", i, r.vm.Name)
			}
			exts, err := draas.ChangedExtents(ctx, src, r.t.PreSeedSnapshots[i])
			if err != nil {
				return fmt.Errorf("changes of disk %d since pre-seed snapshot %s: %w", i, r.t.PreSeedSnapshots[i], err)
			}
			opts.Extents = exts
			if exts == nil {
				opts.Extents = []draas.Extent{}
			}
		}
		sink, err := r.opts.Hypervisor.OpenDisk(ctx, r.vm.Name, i)
		if err != nil {
			return fmt.Errorf("open disk %d of VM %s: %w", i, r.vm.Name, err)
		}
		st, err := blockcopy.Copy(ctx, sink, src, opts)
		r.bytes += st.BytesCopied
		r.blocks += st.BlocksCopied
		if err != nil {
			return fmt.Errorf("copy snapshot %s to disk %d of VM %s: %w", snap, i, r.vm.Name, err)
		}
	}
	return nil
}

func (r *vmRun) powerOn(ctx context.Context) error {
	if err := r.opts.Hypervisor.PowerOn(ctx, r.vm.Name); err != nil {
		return fmt.Errorf("power on VM %s: %w", r.vm.Name, err)
	}
	return nil
}

func (r *vmRun) dns(ctx context.Context) error {
	for _, rec := range r.t.Records {
		if err := r.opts.DNS.Upsert(ctx, rec); err != nil {
			return fmt.Errorf("point %s back: %w", rec.Name, err)
		}
	}
	return nil
}

// cleanup deletes the failback snapshots (and the pre-seed ones).
func (r *vmRun) cleanup(ctx context.Context) error {
	v, _ := orchestrate.Output(ctx, sid(r.vm.Name, "snapshot"), "snapshots")
	var errs []error
	for _, id := range append(strings.Split(v, ","), r.t.PreSeedSnapshots...) {
		if id == "" {
			continue
		}
		if err := r.opts.Cloud.DeleteSnapshot(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
