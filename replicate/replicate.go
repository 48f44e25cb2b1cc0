// Package replicate turns a VM's recovery points in a backup store into DR
// copies in a [draas.CopyStore] (EBS snapshots): the first copy in full,
// later ones incremental on the previous copy, only the blocks that changed
// between the two recovery points, verified before the previous copy is
// deleted.
//
// Every decision is made from state that lives with the data: the backup
// store's recovery points and the DR copies' tags. A run killed at any point
// leaves the previous complete copy intact; the next run resumes the pending
// copy from its checkpoint (when [Options.Checkpoints] keeps them) or deletes
// it and copies again.
package replicate

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/retry"
)

// Options tunes a [Replicator]. The zero value is useful.
type Options struct {
	// Copy tunes each disk's copy: Concurrency, RateLimit, Retry,
	// CheckpointInterval and ProgressInterval are used as given. The
	// workflow sets the other fields itself for every copy: Verify is
	// always on, Extents is the blocks changed since the previous copy (nil
	// for a full copy), Checkpoint comes from Checkpoints, and Progress
	// feeds EventProgress events. [New] fails with draas.ErrInvalid when
	// Copy.Extents, Copy.Checkpoint or Copy.Progress is set, rather than
	// overwrite it.
	Copy blockcopy.Options
	// Checkpoints, when set, returns where to keep the checkpoint of a
	// VM's disk copy, so that a killed run resumes its pending copy. Nil
	// means no checkpoints: a pending copy left by a killed run is deleted
	// and copied again.
	Checkpoints func(vm, disk string) blockcopy.CheckpointStore
	// Events, when set, receives events from every VM's run, one call at a
	// time (never concurrently, also when VMs run in parallel), so it needs
	// no locking of its own. It must not block for long: the runs wait for
	// it.
	Events func(Event)
	// Now is the clock for ages and RPOs; default time.Now.
	Now func() time.Time
	// VMConcurrency bounds the VMs [Replicator.ReplicateAll] runs at once;
	// 0 means 2.
	VMConcurrency int
}

// Replicator replicates the VMs of one plan. One Replicator (one process)
// per plan: two replicating the same VM at once would delete each other's
// pending copies.
type Replicator struct {
	plan     draas.Plan
	backups  draas.BackupReader
	copies   draas.CopyStore
	opts     Options
	progress *blockcopy.ProgressMux // nil without Events

	emitMu sync.Mutex // serializes Events

	mu      sync.Mutex
	running map[string]bool
	sinks   map[[2]string]draas.SnapshotSink // the copy running per VM and disk, for progress events
}

// ErrPointSkipped marks a VM's run that skipped recovery points the backup
// store could not read (a damaged or unknown point record) and replicated
// the newest readable one instead: Result.Action says what it did with
// that one, and the error names each skipped point. It wraps the store's
// error too (draas.ErrChecksumMismatch or draas.ErrInvalid).
var ErrPointSkipped = errors.New("replicate: unreadable recovery point skipped")

// ErrBusy is returned when a VM is already being replicated by this
// Replicator.
var ErrBusy = errors.New("replicate: VM is already being replicated")

// New returns a Replicator for plan, reading recovery points from backups
// (e.g. an *s3.Store) and writing DR copies to copies (e.g. an
// *ebs.Copies). A plan without a name or with unnamed or repeated VMs, a nil
// backups or copies, or an Options.Copy field the workflow sets (see
// [Options]) is an error wrapping draas.ErrInvalid.
func New(plan draas.Plan, backups draas.BackupReader, copies draas.CopyStore, opts Options) (*Replicator, error) {
	if backups == nil {
		return nil, draas.Invalidf("replicate.New: backups is nil: pass a draas.BackupReader, e.g. an *s3.Store from aws/s3")
	}
	if copies == nil {
		return nil, draas.Invalidf("replicate.New: copies is nil: pass a draas.CopyStore, e.g. an *ebs.Copies from aws/ebs")
	}
	if plan.Name == "" {
		return nil, draas.Invalidf("replicate: the plan has no name: set Plan.Name (DR copies are tagged with it)")
	}
	seen := map[string]bool{}
	for i, vm := range plan.VMs {
		if vm.Name == "" {
			return nil, draas.Invalidf("replicate: plan %s: VM %d has no name", plan.Name, i+1)
		}
		if seen[vm.Name] {
			return nil, draas.Invalidf("replicate: plan %s: VM %s is listed twice", plan.Name, vm.Name)
		}
		seen[vm.Name] = true
	}
	switch {
	case opts.Copy.Extents != nil:
		return nil, draas.Invalidf("replicate.New: Options.Copy.Extents is set by the workflow (the blocks changed since the previous copy): leave it nil")
	case opts.Copy.Checkpoint != nil:
		return nil, draas.Invalidf("replicate.New: Options.Copy.Checkpoint is set by the workflow per disk: set Options.Checkpoints instead")
	case opts.Copy.Progress != nil:
		return nil, draas.Invalidf("replicate.New: Options.Copy.Progress is set by the workflow: set Options.Events and watch EventProgress (tagged with VM and disk) instead")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.VMConcurrency <= 0 {
		opts.VMConcurrency = 2
	}
	r := &Replicator{plan: plan, backups: backups, copies: copies, opts: opts, running: map[string]bool{}, sinks: map[[2]string]draas.SnapshotSink{}}
	if opts.Events != nil {
		r.progress = blockcopy.NewProgressMux(func(p blockcopy.DiskProgress) {
			r.emit(Event{Kind: EventProgress, VM: p.VM, Disk: p.Disk, SnapshotID: r.snapshotID(p.VM, p.Disk), Progress: &p.Progress})
		})
	}
	return r, nil
}

// Plan returns the replicator's plan (the zero Plan for a nil Replicator).
func (r *Replicator) Plan() draas.Plan {
	if r == nil {
		return draas.Plan{}
	}
	return r.plan
}

// errNotNew is what the methods of a Replicator not made by New return.
var errNotNew = draas.Invalidf("replicate: the Replicator was not made by replicate.New")

// snapshotID returns the snapshot of the copy of vm's disk now running.
func (r *Replicator) snapshotID(vm, disk string) string {
	r.mu.Lock()
	s := r.sinks[[2]string{vm, disk}]
	r.mu.Unlock()
	if s == nil {
		return ""
	}
	return s.SnapshotID()
}

// check returns errNotNew for a nil or zero Replicator.
func (r *Replicator) check() error {
	if r == nil || r.backups == nil || r.copies == nil {
		return errNotNew
	}
	return nil
}

// Action says what a run did for a VM.
type Action string

// The actions of a run.
const (
	// ActionFull made a full copy: there was no previous complete copy, or
	// its changes could not be known.
	ActionFull Action = "full"
	// ActionIncremental copied the blocks changed since the previous copy.
	ActionIncremental Action = "incremental"
	// ActionUnchanged found a new recovery point identical to the copy's:
	// nothing was sent, no snapshot made, and the copy now stands for the
	// new point.
	ActionUnchanged Action = "unchanged"
	// ActionUpToDate found the newest recovery point already copied.
	ActionUpToDate Action = "up-to-date"
	// ActionFailed means the run failed; Result.Err says why.
	ActionFailed Action = "failed"
)

// DiskResult is one disk's part of a run.
type DiskResult struct {
	Disk       string          `json:"disk"`
	SnapshotID string          `json:"snapshotId,omitempty"`
	Parent     string          `json:"parent,omitempty"`
	Resumed    bool            `json:"resumed,omitempty"`
	Stats      blockcopy.Stats `json:"stats"`
}

// Result is what a run did for one VM.
type Result struct {
	VM            string       `json:"vm"`
	Action        Action       `json:"action"`
	RecoveryPoint string       `json:"recoveryPoint,omitempty"`
	PointTime     time.Time    `json:"pointTime,omitzero"`
	Disks         []DiskResult `json:"disks,omitempty"`
	BytesSent     int64        `json:"bytesSent"`
	BlocksSent    int64        `json:"blocksSent"`
	BlocksSkipped int64        `json:"blocksSkipped"`
	Deleted       []string     `json:"deleted,omitempty"`
	// Warnings report what went wrong without failing the run, such as an
	// old copy that could not be deleted yet (the next run retries).
	Warnings []string      `json:"warnings,omitempty"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	// RPO is the age of the recovery point of the VM's newest complete DR
	// copy at the end of the run (0 if there is none).
	RPO time.Duration `json:"rpo"`
	// Retries counts the requests of the run that the clients retried
	// (AWS throttled them or failed them transiently; see retry.Counter),
	// the copies' included; the copies' own retried reads and writes are
	// in their Stats.Retries.
	Retries int64 `json:"retries"`
	// Err is the run's error, nil on success.
	Err error `json:"-"`
	// Error is Err's text, for JSON.
	Error string `json:"error,omitempty"`
}

// EventKind names an [Event].
type EventKind string

// The kinds of events.
const (
	EventStarted   EventKind = "started"   // a VM's run began
	EventCopy      EventKind = "copy"      // a disk copy began
	EventProgress  EventKind = "progress"  // a disk copy progressed
	EventCopied    EventKind = "copied"    // a disk copy committed and verified
	EventCompleted EventKind = "completed" // the VM's new DR copy set is complete
	EventDeleted   EventKind = "deleted"   // an old or orphaned copy was deleted
	EventFinished  EventKind = "finished"  // a VM's run ended (Result set)
)

// Event reports a run's progress.
type Event struct {
	Time time.Time
	Kind EventKind
	// VM is set in every event; Disk in the events of one disk's copy.
	VM   string
	Disk string
	// SnapshotID is the DR copy's snapshot in EventCopy, EventProgress
	// (once known: the volume path has none until the copy commits),
	// EventCopied and EventDeleted.
	SnapshotID string
	// Progress is set in EventProgress: the progress of the copy of Disk
	// of VM.
	Progress *blockcopy.Progress
	// Result is set in EventFinished.
	Result *Result
}

func (r *Replicator) emit(e Event) {
	if r.opts.Events != nil {
		r.emitMu.Lock()
		defer r.emitMu.Unlock()
		e.Time = r.opts.Now()
		r.opts.Events(e)
	}
}

// ReplicateAll replicates every VM of the plan, VMConcurrency at a time.
// One VM's failure does not stop the others; the error joins every VM's.
func (r *Replicator) ReplicateAll(ctx context.Context) ([]Result, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	results := make([]Result, len(r.plan.VMs))
	var g errgroup.Group
	g.SetLimit(r.opts.VMConcurrency)
	for i, vm := range r.plan.VMs {
		g.Go(func() error {
			results[i], _ = r.ReplicateVM(ctx, vm.Name)
			return nil
		})
	}
	_ = g.Wait()
	var errs []error
	for _, res := range results {
		if res.Err != nil {
			errs = append(errs, res.Err)
		}
	}
	return results, errors.Join(errs...)
}

// ReplicateVM brings one VM's DR copy up to its newest recovery point. The
// returned Result also carries the error. When the backup store skips
// points it cannot read, the newest readable point is replicated and the
// error wraps [ErrPointSkipped] (Result.Action is not ActionFailed then,
// unless the copy failed too).
func (r *Replicator) ReplicateVM(ctx context.Context, vm string) (res Result, err error) {
	if err := r.check(); err != nil {
		return Result{VM: vm, Action: ActionFailed, Err: err, Error: err.Error()}, err
	}
	res = Result{VM: vm, Start: r.opts.Now()}
	var retries retry.Counter
	ctx = retry.WithCounter(ctx, &retries)
	partial := false // err only says which broken points were skipped
	defer func() {
		res.Duration = r.opts.Now().Sub(res.Start)
		if err != nil {
			res.Err, res.Error = err, err.Error()
			if !partial {
				res.Action = ActionFailed
			}
		}
		res.RPO = r.rpo(context.WithoutCancel(ctx), vm)
		res.Retries = retries.Load()
		r.emit(Event{Kind: EventFinished, VM: vm, Result: &res})
	}()
	if !slices.ContainsFunc(r.plan.VMs, func(v draas.VM) bool { return v.Name == vm }) {
		return res, draas.Invalidf("replicate: VM %q is not in plan %s", vm, r.plan.Name)
	}
	r.mu.Lock()
	if r.running[vm] {
		r.mu.Unlock()
		return res, fmt.Errorf("%w: %s", ErrBusy, vm)
	}
	r.running[vm] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.running, vm)
		r.mu.Unlock()
	}()
	r.emit(Event{Kind: EventStarted, VM: vm})

	points, err := r.backups.Points(ctx, vm)
	var skipped error
	switch {
	case err == nil:
	case len(points) > 0 && (errors.Is(err, draas.ErrChecksumMismatch) || errors.Is(err, draas.ErrInvalid)):
		// The store skipped broken points: the readable ones replicate.
		skipped = fmt.Errorf("replicate %s: %w: %w", vm, ErrPointSkipped, err)
	default:
		return res, fmt.Errorf("replicate %s: list recovery points: %w", vm, err)
	}
	if len(points) == 0 {
		return res, fmt.Errorf("replicate %s: the backup store has no recovery point for it: back it up first: %w", vm, draas.ErrNotFound)
	}
	latest := points[len(points)-1]
	res.RecoveryPoint, res.PointTime = latest.ID, latest.Time

	all, err := r.copies.Copies(ctx, r.plan.Name, vm)
	if err != nil {
		return res, fmt.Errorf("replicate %s: list DR copies: %w", vm, err)
	}
	var current *draas.CopySet
	if s, ok := draas.LatestComplete(all); ok {
		current = &s
	}

	var keep map[string]bool // snapshots the cleanup must not delete
	switch {
	case current != nil && current.RecoveryPoint == latest.ID:
		res.Action = ActionUpToDate
	default:
		resumable, err := r.copyPoint(ctx, vm, latest, current, &res)
		if err != nil {
			// Leave the previous copy and any resumable pending copy; delete
			// the rest of what this or earlier runs left behind.
			keep = resumable
			r.cleanup(context.WithoutCancel(ctx), vm, keep, &res)
			return res, errors.Join(err, skipped)
		}
	}
	r.cleanup(ctx, vm, keep, &res)
	partial = skipped != nil
	return res, skipped
}

// copyPoint copies recovery point p of vm, incremental on current when it
// can, and marks the new set complete; when nothing needed copying, the
// current set now stands for p. On failure it returns the pending snapshots
// a later run can resume.
func (r *Replicator) copyPoint(ctx context.Context, vm string, p draas.RecoveryPoint, current *draas.CopySet, res *Result) (map[string]bool, error) {
	if len(p.Disks) == 0 {
		return nil, fmt.Errorf("replicate %s: recovery point %s lists no disks", vm, p.ID)
	}
	type plan struct {
		disk   draas.Disk
		src    draas.BlockSource
		parent draas.DRCopy
		exts   []draas.Extent // nil: full copy
	}
	plans := make([]plan, 0, len(p.Disks))
	// The new point is unchanged when the current set has a copy of every
	// disk and no disk changed.
	unchanged := current != nil && len(current.Copies) == len(p.Disks)
	for _, d := range p.Disks {
		src, err := r.backups.OpenDisk(ctx, vm, p.ID, d.Name)
		if err != nil {
			return nil, fmt.Errorf("replicate %s: open disk %s of recovery point %s: %w", vm, d.Name, p.ID, err)
		}
		pl := plan{disk: d, src: src}
		if current != nil {
			if parent, ok := current.Disk(d.Name); ok && parent.Size <= d.Size {
				exts, err := draas.ChangedExtents(ctx, src, current.RecoveryPoint)
				switch {
				case err == nil:
					pl.parent, pl.exts = parent, exts
					if exts == nil {
						pl.exts = []draas.Extent{}
					}
				case errors.Is(err, draas.ErrNotFound):
					// The base point is gone from the backup store: copy in full.
				default:
					return nil, fmt.Errorf("replicate %s: changes of disk %s since %s: %w", vm, d.Name, current.RecoveryPoint, err)
				}
			}
		}
		if pl.parent.SnapshotID == "" || len(pl.exts) > 0 {
			unchanged = false
		}
		plans = append(plans, pl)
	}

	if unchanged {
		// Same disks, no block changed: the current copy holds the new
		// point's content. Let it stand for the new point.
		retag := make([]draas.DRCopy, 0, len(current.Copies))
		for _, c := range current.Copies {
			c.RecoveryPoint, c.PointTime = p.ID, p.Time
			retag = append(retag, c)
		}
		if err := r.copies.MarkComplete(ctx, retag); err != nil {
			return nil, fmt.Errorf("replicate %s: retag DR copy for recovery point %s: %w", vm, p.ID, err)
		}
		res.Action = ActionUnchanged
		for _, pl := range plans {
			bs := int64(cmp.Or(pl.src.BlockSize(), 512<<10))
			res.BlocksSkipped += (pl.disk.Size + bs - 1) / bs
		}
		return nil, nil
	}

	res.Action = ActionIncremental
	run := runID()
	var newSet []draas.DRCopy
	resumable := map[string]bool{}
	for i, pl := range plans {
		if pl.parent.SnapshotID == "" {
			res.Action = ActionFull
		}
		req := draas.CopyRequest{
			Plan: r.plan.Name, VM: vm, Disk: pl.disk.Name, DiskIndex: i, RecoveryPoint: p.ID, PointTime: p.Time,
			Size: pl.disk.Size, Parent: pl.parent.SnapshotID,
			ClientToken: token(r.plan.Name, vm, pl.disk.Name, p.ID, run),
		}
		dr, snap, err := r.copyDisk(ctx, req, pl.src, pl.exts, res)
		if err != nil {
			if snap != "" {
				resumable[snap] = true
			}
			return resumable, err
		}
		newSet = append(newSet, dr)
	}
	if err := r.copies.MarkComplete(ctx, newSet); err != nil {
		return nil, fmt.Errorf("replicate %s: mark DR copy of %s complete: %w", vm, p.ID, err)
	}
	r.emit(Event{Kind: EventCompleted, VM: vm})
	return nil, nil
}

// copyDisk copies one disk into a new (or resumed) DR copy. On failure it
// returns the snapshot ID left pending for a resume, if any.
func (r *Replicator) copyDisk(ctx context.Context, req draas.CopyRequest, src draas.BlockSource, exts []draas.Extent, res *Result) (draas.DRCopy, string, error) {
	var ckpt blockcopy.CheckpointStore
	if r.opts.Checkpoints != nil {
		ckpt = r.opts.Checkpoints(req.VM, req.Disk)
	}
	var sink draas.SnapshotSink
	resumed := false
	if ckpt != nil {
		if state, err := blockcopy.SinkState(ctx, ckpt); err == nil && state != nil {
			if s, err := r.copies.ResumeCopy(ctx, req, state); err == nil {
				sink, resumed = s, true
			}
		}
	}
	if sink == nil {
		if ckpt != nil {
			// A checkpoint we cannot resume belongs to another copy.
			if err := ckpt.Delete(ctx); err != nil {
				return draas.DRCopy{}, "", fmt.Errorf("replicate %s: clear checkpoint of disk %s: %w", req.VM, req.Disk, err)
			}
		}
		s, err := r.copies.NewCopy(ctx, req)
		if err != nil {
			return draas.DRCopy{}, "", fmt.Errorf("replicate %s: start DR copy of disk %s: %w", req.VM, req.Disk, err)
		}
		sink = s
	}
	r.emit(Event{Kind: EventCopy, VM: req.VM, Disk: req.Disk, SnapshotID: sink.SnapshotID()})

	// The fields Options.Copy leaves to the workflow (New checked them).
	opts := r.opts.Copy
	opts.Extents, opts.Verify, opts.Checkpoint = exts, true, ckpt
	opts.Progress = r.progress.For(req.VM, req.Disk)
	key := [2]string{req.VM, req.Disk}
	r.mu.Lock()
	r.sinks[key] = sink
	r.mu.Unlock()
	st, err := blockcopy.Copy(ctx, sink, src, opts)
	r.mu.Lock()
	delete(r.sinks, key)
	r.mu.Unlock()
	res.Disks = append(res.Disks, DiskResult{Disk: req.Disk, SnapshotID: sink.SnapshotID(), Parent: req.Parent, Resumed: resumed, Stats: st})
	res.BytesSent += st.BytesCopied
	res.BlocksSent += st.BlocksCopied
	res.BlocksSkipped += st.BlocksZero + st.BlocksUnchanged + st.BlocksResumed
	if err != nil {
		pending := ""
		if ckpt != nil {
			// The pending copy a later run resumes: its snapshot, or on the
			// volume path its volume.
			pending = sink.SnapshotID()
			if v, ok := draas.As[interface{ VolumeID() string }](sink); ok && pending == "" {
				pending = v.VolumeID()
			}
		}
		return draas.DRCopy{}, pending, fmt.Errorf("replicate %s: copy disk %s of recovery point %s: %w", req.VM, req.Disk, req.RecoveryPoint, err)
	}
	dr := draas.DRCopy{
		VM: req.VM, Plan: req.Plan, Disk: req.Disk, DiskIndex: req.DiskIndex, RecoveryPoint: req.RecoveryPoint, PointTime: req.PointTime,
		SnapshotID: sink.SnapshotID(), Parent: req.Parent, Size: req.Size, Created: r.opts.Now(), State: draas.CopyCompleted,
	}
	if c, ok := sink.(interface{ Checksum() string }); ok {
		dr.Checksum = c.Checksum()
	}
	r.emit(Event{Kind: EventCopied, VM: req.VM, Disk: req.Disk, SnapshotID: dr.SnapshotID})
	return dr, "", nil
}

// cleanup deletes what the VM's newest KeepCopies complete sets do not
// need: older complete sets, incomplete sets and orphans, except the
// snapshots in keep (pending copies a later run resumes).
func (r *Replicator) cleanup(ctx context.Context, vm string, keep map[string]bool, res *Result) {
	all, err := r.copies.Copies(ctx, r.plan.Name, vm)
	if err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("list DR copies for cleanup (the next run retries): %v", err))
		return
	}
	sets := draas.CopySets(all)
	n := max(r.plan.KeepCopies, 1)
	live := map[string]bool{}
	kept := 0
	for i := len(sets) - 1; i >= 0 && kept < n; i-- {
		if sets[i].Complete() {
			for _, c := range sets[i].Copies {
				live[c.ID()] = true
			}
			kept++
		}
	}
	if kept == 0 {
		// No complete copy: delete only what can never become one.
		for _, c := range all {
			if c.Complete {
				live[c.ID()] = true
			}
		}
	}
	for _, c := range all {
		if live[c.ID()] || keep[c.ID()] {
			continue
		}
		if err := r.copies.DeleteCopy(ctx, c.ID()); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("delete DR copy %s (the next run retries): %v", c.ID(), err))
			continue
		}
		res.Deleted = append(res.Deleted, c.ID())
		r.emit(Event{Kind: EventDeleted, VM: vm, Disk: c.Disk, SnapshotID: c.ID()})
	}
}

func runID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// token derives a client token (at most 64 characters) from what a copy is
// for and the run making it.
func token(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "draas-" + hex.EncodeToString(h.Sum(nil))[:48]
}

// rpo returns the age of the recovery point of vm's newest complete copy.
func (r *Replicator) rpo(ctx context.Context, vm string) time.Duration {
	all, err := r.copies.Copies(ctx, r.plan.Name, vm)
	if err != nil {
		return 0
	}
	if s, ok := draas.LatestComplete(all); ok {
		return r.opts.Now().Sub(s.PointTime)
	}
	return 0
}
