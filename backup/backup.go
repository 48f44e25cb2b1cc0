// Package backup copies a VM's disks into a backup store as a new recovery
// point, so that a plan can run from nothing but a hypervisor and AWS: the
// first backup of a VM copies every allocated block; later ones copy only
// the areas the hypervisor's change tracking (vSphere CBT) reports changed
// since the previous point, onto a point that starts from that point's
// blocks.
//
// A backup reads a snapshot of the VM, so the point is crash-consistent
// across its disks, and removes the snapshot when done. The point becomes
// visible only when every disk is written and verified (the store's
// commit); a failed or cancelled backup leaves no point.
package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/blockcopy"
)

// Snapshot is a consistent snapshot of a VM's disks, readable until Close.
type Snapshot interface {
	// Disks returns the VM's disks at the snapshot, boot disk first, each
	// with its change-tracking ID at the snapshot ("" without tracking).
	Disks() []draas.Disk
	// Open returns a source reading disk i at the snapshot. If it is a
	// draas.ChangeTracker, its bases are change IDs of earlier snapshots.
	Open(ctx context.Context, i int) (draas.BlockSource, error)
	// Close removes the snapshot.
	Close(ctx context.Context) error
}

// Hypervisor takes snapshots of VMs for backup.
type Hypervisor interface {
	Snapshot(ctx context.Context, vm string) (Snapshot, error)
}

// Options tunes a [Runner]. The zero value is useful.
type Options struct {
	// Copy tunes the disk copies: Concurrency, RateLimit, Retry and
	// ProgressInterval are used as given. The workflow sets the other
	// fields itself for every disk: Verify is always on, Extents is the
	// areas changed since the previous point (nil for a full copy), and
	// Progress feeds Options.Progress. A backup does not resume a killed
	// copy (a failed backup leaves no point), so Checkpoint must stay nil.
	// [New] fails with draas.ErrInvalid when Copy.Extents, Copy.Checkpoint
	// or Copy.Progress is set, rather than overwrite it.
	Copy blockcopy.Options
	// Progress, when set, receives the disk copies' progress, tagged with
	// VM and disk, one call at a time (also when Run is called for several
	// VMs at once). It must not block for long.
	Progress func(blockcopy.DiskProgress)
	// Now is the clock for the point's time; default time.Now.
	Now func() time.Time
}

// Runner backs VMs up from a hypervisor into a backup store. It is safe for
// concurrent use: Run may back up several VMs at once (but not the same VM
// twice at once).
type Runner struct {
	hv       Hypervisor
	store    draas.BackupWriter
	opts     Options
	progress *blockcopy.ProgressMux
}

// New returns a Runner that snapshots VMs through hv and writes their
// recovery points to store (e.g. an *s3.Store from aws/s3). A nil hv or
// store, or an Options.Copy field the workflow sets (see [Options]), is an
// error wrapping draas.ErrInvalid.
func New(hv Hypervisor, store draas.BackupWriter, opts Options) (*Runner, error) {
	switch {
	case hv == nil:
		return nil, draas.Invalidf("backup.New: hv is nil: pass a backup.Hypervisor, e.g. fromvsphere.New(h, vsphere.BackupOptions{})")
	case store == nil:
		return nil, draas.Invalidf("backup.New: store is nil: pass a draas.BackupWriter, e.g. an *s3.Store from aws/s3")
	case opts.Copy.Extents != nil:
		return nil, draas.Invalidf("backup.New: Options.Copy.Extents is set by the workflow (the areas changed since the previous point): leave it nil")
	case opts.Copy.Checkpoint != nil:
		return nil, draas.Invalidf("backup.New: Options.Copy.Checkpoint must be nil: a backup does not resume copies (a failed backup leaves no point)")
	case opts.Copy.Progress != nil:
		return nil, draas.Invalidf("backup.New: Options.Copy.Progress is set by the workflow: set Options.Progress (tagged with VM and disk) instead")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Runner{hv: hv, store: store, opts: opts, progress: blockcopy.NewProgressMux(opts.Progress)}, nil
}

// DiskResult is one disk's part of a backup.
type DiskResult struct {
	Disk draas.Disk `json:"disk"`
	// Incremental is true when only changed areas were read.
	Incremental bool            `json:"incremental"`
	Stats       blockcopy.Stats `json:"stats"`
}

// Result is what a backup did.
type Result struct {
	VM       string        `json:"vm"`
	Point    string        `json:"point"`
	Time     time.Time     `json:"time"`
	Disks    []DiskResult  `json:"disks"`
	Duration time.Duration `json:"duration"`
}

// Run backs vm up as a new recovery point: it snapshots the VM, copies
// each disk (only the changed areas when the previous point's change IDs
// allow), commits the point and removes the snapshot. On failure the point
// is aborted and the Result says what was done.
func (r *Runner) Run(ctx context.Context, vm string) (res Result, err error) {
	if r == nil || r.hv == nil || r.store == nil {
		return Result{VM: vm}, draas.Invalidf("backup: Run on a Runner not made by backup.New")
	}
	hv, store, now := r.hv, r.store, r.opts.Now
	start := now()
	res = Result{VM: vm, Time: start}
	defer func() { res.Duration = now().Sub(start) }()

	snap, err := hv.Snapshot(ctx, vm)
	if err != nil {
		return res, fmt.Errorf("backup %s: snapshot: %w", vm, err)
	}
	defer func() {
		if cerr := snap.Close(context.WithoutCancel(ctx)); cerr != nil {
			err = errors.Join(err, fmt.Errorf("backup %s: remove snapshot: %w", vm, cerr))
		}
	}()
	disks := snap.Disks()
	if len(disks) == 0 {
		return res, fmt.Errorf("backup %s: the VM has no disks: %w", vm, draas.ErrInvalid)
	}
	prev := map[string]draas.Disk{}
	points, err := store.Points(ctx, vm)
	if err != nil {
		return res, fmt.Errorf("backup %s: list recovery points: %w", vm, err)
	}
	if len(points) > 0 {
		for _, d := range points[len(points)-1].Disks {
			prev[d.Name] = d
		}
	}
	p, err := store.BeginPoint(ctx, vm, disks, start)
	if err != nil {
		return res, fmt.Errorf("backup %s: begin recovery point: %w", vm, err)
	}
	res.Point = p.ID()
	committed := false
	defer func() {
		if !committed {
			if aerr := p.Abort(context.WithoutCancel(ctx)); aerr != nil {
				err = errors.Join(err, fmt.Errorf("backup %s: abort point %s: %w", vm, res.Point, aerr))
			}
		}
	}()
	for i, d := range disks {
		dr, err := r.backupDisk(ctx, vm, snap, p, i, d, prev[d.Name])
		res.Disks = append(res.Disks, dr)
		if err != nil {
			return res, fmt.Errorf("backup %s: disk %s: %w", vm, d.Name, err)
		}
	}
	if err := p.Commit(ctx); err != nil {
		return res, fmt.Errorf("backup %s: commit point %s: %w", vm, res.Point, err)
	}
	committed = true
	return res, nil
}

func (r *Runner) backupDisk(ctx context.Context, vm string, snap Snapshot, p draas.PointWriter, i int, d, prev draas.Disk) (DiskResult, error) {
	dr := DiskResult{Disk: d}
	src, err := snap.Open(ctx, i)
	if err != nil {
		return dr, err
	}
	sink, err := p.DiskOnBase(ctx, d.Name)
	if err != nil {
		return dr, err
	}
	// The fields Options.Copy leaves to the workflow (New checked them).
	copts := r.opts.Copy
	copts.Verify, copts.Extents = true, nil
	copts.Progress = r.progress.For(vm, d.Name)
	// Only a sink that starts from the previous point's blocks can take
	// just the changes, and only if the hypervisor knows them.
	if draas.NeedsZeroWrites(sink) && prev.ChangeID != "" && prev.Size == d.Size {
		exts, err := draas.ChangedExtents(ctx, src, prev.ChangeID)
		switch {
		case err == nil:
			copts.Extents, dr.Incremental = exts, true
			if exts == nil {
				copts.Extents = []draas.Extent{}
			}
		case errors.Is(err, draas.ErrNotFound):
			// Tracking was reset (or the source has none): copy everything.
		default:
			return dr, fmt.Errorf("changed areas since %q: %w", prev.ChangeID, err)
		}
	}
	dr.Stats, err = blockcopy.Copy(ctx, sink, src, copts)
	return dr, err
}
