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
//   - Pre-seed: [Runner.Run] with PreSeed copies from a snapshot taken while
//     the instance keeps serving; a later run with CutOver stops the instance,
//     takes a final snapshot and copies only the blocks that changed since
//     the pre-seed (ListChangedBlocks). The downtime is the changed blocks'
//     copy. The report measures it.
//
// A [Runner], made by [New] with the EC2 side, the vSphere site and a way to
// read snapshots, runs a failback: [Runner.Compile] builds its graph of
// steps (for a dry run with orchestrate.Plan), [Runner.Run] runs it and
// returns a [Report]. Each VM's steps are one table (vmSteps in the source);
// they pass the instance's shape, the snapshots and the bytes copied to
// each other as typed orchestrate outputs, kept in the journal.
//
// VMs are handled in the plan's dependency order through package
// orchestrate, resumably with a journal. A journal written by a version
// before these outputs were typed cannot be resumed (its steps fail with an
// error wrapping orchestrate.ErrNoOutput or ErrOutputType): finish such a
// run with the version that started it, or remove the journal.
package failback

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

// Target is where a VM comes back to and what DNS should say: the per-run
// data of a failback, one per VM of the plan.
type Target struct {
	// InstanceID is the EC2 instance the VM runs as now.
	InstanceID string
	// Placement of the new vSphere VM; Name and Shape are filled in.
	Placement draas.VMRequest
	// Records are pointed back (their Values are the on-premises
	// addresses).
	Records []draas.Record
	// PreSeedSnapshots are the snapshots a PreSeed run copied, for the
	// CutOver run (the PreSeed run's report has them; TargetsFromFailover
	// copies them).
	PreSeedSnapshots []string
}

// SnapshotOpener reads an EBS snapshot's blocks, e.g. with
// aws/ebs.OpenSnapshot.
type SnapshotOpener func(ctx context.Context, snapshotID string) (draas.BlockSource, error)

// Options tunes a [Runner]. The zero value is useful: no DNS, default copy
// tuning, the failback snapshots deleted after a direct or cut-over run, no
// journal, no limit on parallelism, no events.
type Options struct {
	// DNS points names back on premises; nil skips DNS.
	DNS draas.DNS
	// Copy tunes the disk copies: Concurrency, RateLimit, Retry,
	// ProgressInterval. Failback sets three fields itself, per copy:
	// Extents (the snapshot's allocated blocks; on cut-over, the blocks
	// changed since the pre-seed snapshot), Verify (always on: a failback
	// copy is read back and compared, whatever Copy.Verify says) and
	// Progress (from Options.Progress). Copy.Extents, Copy.Progress and
	// Copy.Checkpoint (one checkpoint cannot serve several disks) must be
	// left unset: New returns an error wrapping draas.ErrInvalid if one is
	// set, rather than overwrite it.
	Copy blockcopy.Options
	// Progress, when set, receives the progress of every disk copy,
	// tagged with the VM and the disk (its name in the instance's shape),
	// one call at a time even when VMs copy in parallel. It must return
	// quickly.
	Progress func(blockcopy.DiskProgress)
	// KeepSnapshots keeps the failback snapshots after a successful
	// direct or cut-over run; by default they are deleted.
	KeepSnapshots bool
	// Journal makes a run resumable: a run with the same journal skips
	// the steps it records as finished, and reports what they did.
	Journal orchestrate.Journal
	// Parallelism bounds the steps running at once; 0 means no limit.
	Parallelism int
	// Events receives the orchestration's events, one call at a time.
	Events func(orchestrate.Event)
}

// VMReport is what a run did for one VM.
type VMReport struct {
	VM         string      `json:"vm"`
	InstanceID string      `json:"instanceId"`
	Shape      draas.Shape `json:"shape"`
	Snapshots  []string    `json:"snapshots"`
	// BytesCopied and BlocksCopied count what was written to the VM by
	// the copy step's last attempt (the one that succeeded, or how far
	// the last failed one got), in this run or, resumed, an earlier one.
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

// Runner fails plans' VMs back with one cloud, one vSphere site and one set
// of options. It holds no state between runs.
type Runner struct {
	cloud        Cloud
	hv           draas.Hypervisor
	openSnapshot SnapshotOpener
	opts         Options
}

// New returns a Runner that reads instances and snapshots them in cloud,
// reads the snapshots with openSnapshot and creates the VMs on hv. All three
// are required: a nil one is an error wrapping [draas.ErrInvalid], as are
// Options.Copy fields that failback sets itself (see Options.Copy).
func New(cloud Cloud, hv draas.Hypervisor, openSnapshot SnapshotOpener, opts Options) (*Runner, error) {
	switch {
	case cloud == nil:
		return nil, draas.Invalidf("failback.New: cloud is nil: pass the EC2 side (a failback.Cloud), e.g. aws/ec2.New")
	case hv == nil:
		return nil, draas.Invalidf("failback.New: hypervisor is nil: pass the vSphere site to fail back to, e.g. vsphere.Dial")
	case openSnapshot == nil:
		return nil, draas.Invalidf("failback.New: openSnapshot is nil: pass a function reading an EBS snapshot, e.g. one calling aws/ebs.OpenSnapshot")
	case opts.Copy.Extents != nil:
		return nil, draas.Invalidf("failback.New: Options.Copy.Extents is set by failback for each disk (allocated or changed blocks): leave it nil")
	case opts.Copy.Progress != nil:
		return nil, draas.Invalidf("failback.New: Options.Copy.Progress is set by failback for each disk: use Options.Progress, which tags events with VM and disk")
	case opts.Copy.Checkpoint != nil:
		return nil, draas.Invalidf("failback.New: Options.Copy.Checkpoint would be shared by every disk copy: leave it nil (a resumed failback redoes an interrupted copy)")
	case opts.Parallelism < 0:
		return nil, draas.Invalidf("failback.New: Options.Parallelism is %d; use 0 for no limit or a positive limit", opts.Parallelism)
	}
	return &Runner{cloud: cloud, hv: hv, openSnapshot: openSnapshot, opts: opts}, nil
}

// errNilRunner is returned by the methods of a nil or zero Runner.
var errNilRunner = draas.Invalidf("failback: Runner not made by failback.New: make one with failback.New")

// The names of a VM's steps; a step's ID is "VM/name".
const (
	stepShape    = "shape"
	stepSnapshot = "snapshot"
	stepCreateVM = "create-vm"
	stepCopy     = "copy"
	stepPowerOn  = "power-on"
	stepDNS      = "dns"
	stepCleanup  = "cleanup"
)

// The outputs steps pass on, each recorded by one step (see vmSteps) and
// kept in the journal.
var (
	// shapeKey: the instance's shape, by shape.
	shapeKey = orchestrate.NewKey[draas.Shape]("shape")
	// snapshotsKey: the snapshots of the instance's volumes, in disk
	// order, by snapshot.
	snapshotsKey = orchestrate.NewKey[[]string]("snapshots")
	// copiedKey: what the copy wrote, by copy.
	copiedKey = orchestrate.NewKey[copied]("copied")
)

// copied counts what a copy step wrote.
type copied struct {
	Bytes  int64 `json:"bytes"`
	Blocks int64 `json:"blocks"`
}

// vmStep is one row of the table of a VM's steps.
type vmStep struct {
	name string
	// after are the steps of the same VM this one depends on; those not
	// in the graph (see when) are left out.
	after []string
	// afterDeps, if set, is the step of each VM this one depends on
	// (plan.VM.DependsOn) that must succeed first.
	afterDeps string
	// when says whether the VM has the step in a run; nil means always.
	when func(v *vmRun) bool
	run  func(v *vmRun, ctx context.Context) error
}

// vmSteps is the table of a VM's steps, in the order reports list them,
// with what each produces.
var vmSteps = []vmStep{
	// Read the instance's vCPUs, memory and disks: shapeKey.
	{name: stepShape, run: (*vmRun).shape},
	// Stop the instance (not when pre-seeding) and snapshot its volumes
	// together: snapshotsKey.
	{name: stepSnapshot, after: []string{stepShape}, run: (*vmRun).snapshot},
	// A vSphere VM of the instance's shape.
	{name: stepCreateVM, after: []string{stepShape}, run: (*vmRun).createVM},
	// Copy each snapshot into the VM's disk: copiedKey.
	{name: stepCopy, after: []string{stepSnapshot, stepCreateVM}, run: (*vmRun).copy},
	// Power the VM on once the VMs it depends on are on.
	{name: stepPowerOn, after: []string{stepCopy}, afterDeps: stepPowerOn, when: (*vmRun).switches, run: (*vmRun).powerOn},
	// Point the VM's records back.
	{name: stepDNS, after: []string{stepPowerOn}, when: (*vmRun).pointsDNS, run: (*vmRun).dns},
	// Delete the failback (and pre-seed) snapshots.
	{name: stepCleanup, after: []string{stepPowerOn, stepDNS}, when: (*vmRun).deletesSnapshots, run: (*vmRun).cleanup},
}

// switches reports whether the run switches the VM over (not a pre-seed).
func (v *vmRun) switches() bool { return v.mode != PreSeed }

func (v *vmRun) pointsDNS() bool {
	return v.switches() && v.opts.DNS != nil && len(v.t.Records) > 0
}

func (v *vmRun) deletesSnapshots() bool { return v.switches() && !v.opts.KeepSnapshots }

func sid(vm, step string) string { return vm + "/" + step }

// Compile turns a failback of the plan's VMs in mode, to and from targets
// (one per VM of the plan), into the graph of a run, without running it:
// for a dry run, pass it to orchestrate.Plan. It returns an error wrapping
// [draas.ErrInvalid] for an unknown mode or a VM without its target (or,
// on cut-over, without the pre-seed snapshots).
func (r *Runner) Compile(p *plan.Plan, mode Mode, targets map[string]Target) (*orchestrate.Graph, error) {
	g, _, err := r.compile(p, mode, targets)
	return g, err
}

func (r *Runner) compile(p *plan.Plan, mode Mode, targets map[string]Target) (*orchestrate.Graph, map[string]*vmRun, error) {
	switch {
	case r == nil || r.cloud == nil || r.hv == nil || r.openSnapshot == nil:
		return nil, nil, errNilRunner
	case p == nil:
		return nil, nil, draas.Invalidf("failback: no plan")
	case mode != Direct && mode != PreSeed && mode != CutOver:
		return nil, nil, draas.Invalidf("failback: unknown mode %d: use failback.Direct, PreSeed or CutOver", int(mode))
	}
	// One mux per run: the run's copies report one at a time.
	progress := blockcopy.NewProgressMux(r.opts.Progress)
	g := &orchestrate.Graph{}
	runs := map[string]*vmRun{}
	for _, vm := range p.VMs {
		t, ok := targets[vm.Name]
		if !ok || t.InstanceID == "" {
			return nil, nil, draas.Invalidf("failback: plan %s: no instance for VM %s: set targets[%q].InstanceID (the failover report has it: see TargetsFromFailover)", p.Name, vm.Name, vm.Name)
		}
		if mode == CutOver && len(t.PreSeedSnapshots) == 0 {
			return nil, nil, draas.Invalidf("failback: cut-over of VM %s needs the pre-seed run's snapshots in targets[%q].PreSeedSnapshots", vm.Name, vm.Name)
		}
		v := &vmRun{Runner: r, p: p, vm: vm, t: t, mode: mode, progress: progress}
		runs[vm.Name] = v
		labels := map[string]string{"vm": vm.Name}
		has := map[string]bool{}
		for _, st := range vmSteps {
			if st.when != nil && !st.when(v) {
				continue
			}
			has[st.name] = true
			s := orchestrate.Step{ID: sid(vm.Name, st.name), Labels: labels, Run: func(ctx context.Context) error { return st.run(v, ctx) }}
			for _, a := range st.after {
				if has[a] {
					s.Deps = append(s.Deps, sid(vm.Name, a))
				}
			}
			if st.afterDeps != "" {
				for _, d := range vm.DependsOn {
					s.Deps = append(s.Deps, sid(d, st.afterDeps))
				}
			}
			if err := g.Add(s); err != nil {
				return nil, nil, err
			}
		}
	}
	return g, runs, g.Validate()
}

// Run fails the plan's VMs back in mode, to and from targets (one per VM of
// the plan; [TargetsFromFailover] makes them from the failover's report),
// and returns the report. The error is nil only if every VM came back (for
// a pre-seed run: was copied); a VM that failed stops the VMs that depend
// on it while independent VMs continue, and the report (with an error
// wrapping [ErrFailed]) says which and why. An invalid plan, mode or
// targets are an error wrapping [draas.ErrInvalid] and no report.
func (r *Runner) Run(ctx context.Context, p *plan.Plan, mode Mode, targets map[string]Target) (*Report, error) {
	g, runs, err := r.compile(p, mode, targets)
	if err != nil {
		return nil, err
	}
	rep, runErr := orchestrate.Run(ctx, g, orchestrate.Options{
		Parallelism: r.opts.Parallelism, Journal: r.opts.Journal, Events: r.opts.Events, FailurePolicy: orchestrate.ContinueIndependent,
	})
	if runErr != nil && len(rep.Steps) == 0 {
		return nil, runErr
	}
	out := report(p, mode, runs, rep)
	if runErr != nil {
		return out, fmt.Errorf("%w: %w", ErrFailed, runErr)
	}
	return out, nil
}

// report builds the run's report from the orchestration's and the steps'
// outputs.
func report(p *plan.Plan, mode Mode, runs map[string]*vmRun, rep orchestrate.Report) *Report {
	out := &Report{Plan: p.Name, Mode: mode.String(), Start: rep.Start, End: rep.End, Steps: rep.Steps,
		CriticalPath: rep.CriticalPath, CriticalPathDuration: rep.CriticalPathDuration}
	byID := map[string]orchestrate.StepReport{}
	for _, s := range rep.Steps {
		byID[s.ID] = s
	}
	for _, vm := range p.VMs {
		vr := VMReport{VM: vm.Name, InstanceID: runs[vm.Name].t.InstanceID}
		step := func(name string) orchestrate.StepReport { return byID[sid(vm.Name, name)] }
		vr.Shape = output(step(stepShape), shapeKey)
		vr.Snapshots = output(step(stepSnapshot), snapshotsKey)
		c := output(step(stepCopy), copiedKey)
		vr.BytesCopied, vr.BlocksCopied = c.Bytes, c.Blocks
		final := stepCopy
		if mode != PreSeed {
			final = stepPowerOn
			stop, on := step(stepSnapshot), step(final)
			if !stop.Start.IsZero() && !on.End.IsZero() {
				vr.Downtime = on.End.Sub(stop.Start)
			}
		}
		if st := step(final).Status; st == orchestrate.Succeeded || st == orchestrate.Resumed {
			vr.Up = mode != PreSeed
		}
		for _, st := range vmSteps {
			if s := step(st.name); s.Err != nil && vr.Error == "" {
				vr.Error = fmt.Sprintf("%s: %v", st.name, s.Err)
			}
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

// vmRun holds the steps of one VM.
type vmRun struct {
	*Runner
	p        *plan.Plan
	vm       plan.VM
	t        Target
	mode     Mode
	progress *blockcopy.ProgressMux
}

// get reads output k of the VM's step name.
func get[T any](ctx context.Context, v *vmRun, name string, k orchestrate.Key[T]) (T, error) {
	return orchestrate.Get(ctx, sid(v.vm.Name, name), k)
}

func (v *vmRun) shape(ctx context.Context) error {
	s, err := v.cloud.Shape(ctx, v.t.InstanceID)
	if err != nil {
		return fmt.Errorf("shape of instance %s: %w", v.t.InstanceID, err)
	}
	return orchestrate.Put(ctx, shapeKey, s)
}

// snapshot stops the instance (except when pre-seeding) and snapshots its
// volumes together.
func (v *vmRun) snapshot(ctx context.Context) error {
	if v.mode != PreSeed {
		if err := v.cloud.Stop(ctx, v.t.InstanceID); err != nil {
			return fmt.Errorf("stop instance %s: %w", v.t.InstanceID, err)
		}
	}
	ids, err := v.cloud.SnapshotInstance(ctx, v.t.InstanceID, map[string]string{
		draas.TagPlan + "-failback": v.p.Name, draas.TagRole: "failback-" + v.mode.String(),
	})
	if err != nil {
		return fmt.Errorf("snapshot instance %s: %w", v.t.InstanceID, err)
	}
	return orchestrate.Put(ctx, snapshotsKey, ids)
}

func (v *vmRun) createVM(ctx context.Context) error {
	shape, err := get(ctx, v, stepShape, shapeKey)
	if err != nil {
		return err
	}
	req := v.t.Placement
	req.Name, req.Shape = v.vm.Name, shape
	if err := v.hv.CreateVM(ctx, req); err != nil {
		return fmt.Errorf("create VM %s: %w", v.vm.Name, err)
	}
	return nil
}

// copy copies each snapshot into the VM's disk: everything allocated, or
// on cut-over only what changed since the pre-seed snapshot. It records
// what it wrote after each disk, counting from zero in each attempt, so a
// retried copy is not counted twice.
func (v *vmRun) copy(ctx context.Context) error {
	snaps, err := get(ctx, v, stepSnapshot, snapshotsKey)
	if err != nil {
		return err
	}
	shape, err := get(ctx, v, stepShape, shapeKey)
	if err != nil {
		return err
	}
	if len(snaps) != len(shape.Disks) {
		return fmt.Errorf("instance %s has %d volumes but %d snapshots were taken", v.t.InstanceID, len(shape.Disks), len(snaps))
	}
	var done copied
	if err := orchestrate.Put(ctx, copiedKey, done); err != nil {
		return err
	}
	for i, snap := range snaps {
		src, err := v.openSnapshot(ctx, snap)
		if err != nil {
			return fmt.Errorf("open snapshot %s: %w", snap, err)
		}
		// The fields failback sets; New refused a caller's Extents,
		// Progress and Checkpoint.
		opts := v.opts.Copy
		opts.Verify = true
		opts.Progress = v.progress.For(v.vm.Name, diskName(shape, i))
		if v.mode == CutOver {
			if i >= len(v.t.PreSeedSnapshots) {
				return fmt.Errorf("no pre-seed snapshot for disk %d of %s", i, v.vm.Name)
			}
			exts, err := draas.ChangedExtents(ctx, src, v.t.PreSeedSnapshots[i])
			if err != nil {
				return fmt.Errorf("changes of disk %d since pre-seed snapshot %s: %w", i, v.t.PreSeedSnapshots[i], err)
			}
			opts.Extents = exts
			if exts == nil {
				opts.Extents = []draas.Extent{}
			}
		}
		sink, err := v.hv.OpenDisk(ctx, v.vm.Name, i)
		if err != nil {
			return fmt.Errorf("open disk %d of VM %s: %w", i, v.vm.Name, err)
		}
		st, err := blockcopy.Copy(ctx, sink, src, opts)
		done.Bytes += st.BytesCopied
		done.Blocks += st.BlocksCopied
		if perr := orchestrate.Put(ctx, copiedKey, done); perr != nil && err == nil {
			err = perr
		}
		if err != nil {
			return fmt.Errorf("copy snapshot %s to disk %d of VM %s: %w", snap, i, v.vm.Name, err)
		}
	}
	return nil
}

// diskName names disk i of shape in progress events: its name, or its
// index if it has none.
func diskName(shape draas.Shape, i int) string {
	if n := shape.Disks[i].Name; n != "" {
		return n
	}
	return strconv.Itoa(i)
}

func (v *vmRun) powerOn(ctx context.Context) error {
	if err := v.hv.PowerOn(ctx, v.vm.Name); err != nil {
		return fmt.Errorf("power on VM %s: %w", v.vm.Name, err)
	}
	return nil
}

func (v *vmRun) dns(ctx context.Context) error {
	for _, rec := range v.t.Records {
		if err := v.opts.DNS.Upsert(ctx, rec); err != nil {
			return fmt.Errorf("point %s back: %w", rec.Name, err)
		}
	}
	return nil
}

// cleanup deletes the failback snapshots (and the pre-seed ones).
func (v *vmRun) cleanup(ctx context.Context) error {
	snaps, err := get(ctx, v, stepSnapshot, snapshotsKey)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range append(snaps, v.t.PreSeedSnapshots...) {
		if id == "" {
			continue
		}
		if err := v.cloud.DeleteSnapshot(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
