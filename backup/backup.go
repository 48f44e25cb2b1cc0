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

// Point is a recovery point being written.
type Point interface {
	ID() string
	// DiskOnBase returns the sink of a disk that starts from the same disk
	// of the previous point when the store has one (and then needs zero
	// writes), or empty.
	DiskOnBase(ctx context.Context, name string) (draas.VolumeSink, error)
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}

// Store is the write side of a backup store. Use [StoreOf] to adapt one
// whose methods return concrete types, such as *s3.Store.
type Store interface {
	Points(ctx context.Context, vm string) ([]draas.RecoveryPoint, error)
	Begin(ctx context.Context, vm string, disks []draas.Disk, t time.Time) (Point, error)
}

// StoreOf adapts a backup store whose BeginPoint returns a concrete point
// writer type W (whose DiskOnBase returns a concrete sink type S) to
// [Store]. *s3.Store fits.
func StoreOf[W interface {
	ID() string
	DiskOnBase(ctx context.Context, name string) (S, error)
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}, S draas.VolumeSink](st interface {
	Points(ctx context.Context, vm string) ([]draas.RecoveryPoint, error)
	BeginPoint(ctx context.Context, vm string, disks []draas.Disk, t time.Time) (W, error)
}) Store {
	return storeOf[W, S]{st}
}

type storeOf[W interface {
	ID() string
	DiskOnBase(ctx context.Context, name string) (S, error)
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}, S draas.VolumeSink] struct {
	st interface {
		Points(ctx context.Context, vm string) ([]draas.RecoveryPoint, error)
		BeginPoint(ctx context.Context, vm string, disks []draas.Disk, t time.Time) (W, error)
	}
}

func (s storeOf[W, S]) Points(ctx context.Context, vm string) ([]draas.RecoveryPoint, error) {
	return s.st.Points(ctx, vm)
}

func (s storeOf[W, S]) Begin(ctx context.Context, vm string, disks []draas.Disk, t time.Time) (Point, error) {
	w, err := s.st.BeginPoint(ctx, vm, disks, t)
	if err != nil {
		return nil, err
	}
	return pointOf[W, S]{w}, nil
}

type pointOf[W interface {
	ID() string
	DiskOnBase(ctx context.Context, name string) (S, error)
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}, S draas.VolumeSink] struct{ w W }

func (p pointOf[W, S]) ID() string                       { return p.w.ID() }
func (p pointOf[W, S]) Commit(ctx context.Context) error { return p.w.Commit(ctx) }
func (p pointOf[W, S]) Abort(ctx context.Context) error  { return p.w.Abort(ctx) }
func (p pointOf[W, S]) DiskOnBase(ctx context.Context, name string) (draas.VolumeSink, error) {
	s, err := p.w.DiskOnBase(ctx, name)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Options tunes a backup. The zero value is useful.
type Options struct {
	// Copy tunes the disk copies (Verify is always on; Extents is set per
	// disk).
	Copy blockcopy.Options
	// Now is the clock for the point's time; default time.Now.
	Now func() time.Time
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

// Run backs vm up from hv into store as a new recovery point.
func Run(ctx context.Context, hv Hypervisor, store Store, vm string, opts Options) (res Result, err error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
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
	p, err := store.Begin(ctx, vm, disks, start)
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
		dr, err := backupDisk(ctx, snap, p, i, d, prev[d.Name], opts)
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

func backupDisk(ctx context.Context, snap Snapshot, p Point, i int, d, prev draas.Disk, opts Options) (DiskResult, error) {
	dr := DiskResult{Disk: d}
	src, err := snap.Open(ctx, i)
	if err != nil {
		return dr, err
	}
	sink, err := p.DiskOnBase(ctx, d.Name)
	if err != nil {
		return dr, err
	}
	copts := opts.Copy
	copts.Verify, copts.Extents = true, nil
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
