package draastest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/opendraas/draas"
)

// BackupStore is an in-memory draas.BackupStore, the reference for the S3
// store in aws/s3: recovery points of VMs, each a set of [Disk]s, visible
// only once committed. A point's disk sink from DiskOnBase starts from the
// same disk of the VM's latest committed point (and then needs zero
// writes), and the sources OpenDisk returns report the blocks changed since
// another point of the same VM (draas.ChangeTracker, the base being a point
// ID), as well as their allocated extents and checksums.
//
// Every method is subject to the store's [Faults] under its own name
// ("Points", "OpenDisk", "BeginPoint", "DiskOnBase", "CommitPoint",
// "AbortPoint"). All methods are safe for concurrent use.
type BackupStore struct {
	bs     int
	faults *Faults

	mu     sync.Mutex
	points map[string][]*storedPoint // by VM, committed, oldest first
	seq    int
}

type storedPoint struct {
	rp    draas.RecoveryPoint
	disks map[string]*Disk
}

var (
	_ draas.BackupStore = (*BackupStore)(nil)
	_ draas.PointWriter = (*PointWriter)(nil)
)

// NewBackupStore returns an empty backup store whose disks have blocks of
// blockSize bytes (0 or less means [DefaultBlockSize], as the S3 store's),
// subject to the faults f; nil means a fresh Faults, available from
// [BackupStore.Faults].
func NewBackupStore(blockSize int, f *Faults) *BackupStore {
	if blockSize <= 0 {
		blockSize = DefaultBlockSize
	}
	if f == nil {
		f = new(Faults)
	}
	return &BackupStore{bs: blockSize, faults: f, points: map[string][]*storedPoint{}}
}

// Faults returns the faults the store is subject to.
func (s *BackupStore) Faults() *Faults { return s.faults }

// Points lists vm's committed recovery points, oldest first.
func (s *BackupStore) Points(ctx context.Context, vm string) ([]draas.RecoveryPoint, error) {
	if err := s.faults.Inject(ctx, "Points"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]draas.RecoveryPoint, 0, len(s.points[vm]))
	for _, p := range s.points[vm] {
		out = append(out, clonePoint(p.rp))
	}
	return out, nil
}

func clonePoint(rp draas.RecoveryPoint) draas.RecoveryPoint {
	rp.Disks = slices.Clone(rp.Disks)
	return rp
}

// point returns vm's committed point id. s.mu is held.
func (s *BackupStore) point(vm, id string) (*storedPoint, bool) {
	i := slices.IndexFunc(s.points[vm], func(p *storedPoint) bool { return p.rp.ID == id })
	if i < 0 {
		return nil, false
	}
	return s.points[vm][i], true
}

// OpenDisk returns a source reading a disk of a committed point: a
// [PointSource], or an error wrapping draas.ErrNotFound.
func (s *BackupStore) OpenDisk(ctx context.Context, vm, point, disk string) (draas.BlockSource, error) {
	if err := s.faults.Inject(ctx, "OpenDisk"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.point(vm, point)
	if !ok {
		return nil, &draas.OpError{Op: "OpenDisk", Resource: vm + "/" + point, Kind: draas.ErrNotFound}
	}
	d, ok := p.disks[disk]
	if !ok {
		return nil, &draas.OpError{Op: "OpenDisk", Resource: vm + "/" + point + "/" + disk, Kind: draas.ErrNotFound}
	}
	return &PointSource{Disk: d.Clone(), store: s, vm: vm, disk: disk}, nil
}

// Disk returns the content of a disk of a committed point, for tests to
// compare (a copy: changing it changes nothing in the store).
func (s *BackupStore) Disk(vm, point, disk string) (*Disk, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.point(vm, point)
	if !ok || p.disks[disk] == nil {
		return nil, false
	}
	return p.disks[disk].Clone(), true
}

// PointSource is a disk of a committed recovery point of a [BackupStore]:
// a [Disk] (with its allocated extents and checksums) whose ChangedExtents
// compares it with the same disk of another point of the VM.
type PointSource struct {
	*Disk
	store    *BackupStore
	vm, disk string
}

// ChangedExtents implements draas.ChangeTracker: base is the ID of another
// committed point of the same VM. An unknown base, or one without this disk
// at the same size, is an error wrapping draas.ErrNotFound.
func (p *PointSource) ChangedExtents(ctx context.Context, base string) ([]draas.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.store.mu.Lock()
	bp, ok := p.store.point(p.vm, base)
	var old *Disk
	if ok {
		old = bp.disks[p.disk]
	}
	p.store.mu.Unlock()
	if old == nil || old.Size() != p.Size() || old.BlockSize() != p.BlockSize() {
		return nil, fmt.Errorf("draastest: changes of %s/%s since point %q: no such disk of that size: %w", p.vm, p.disk, base, draas.ErrNotFound)
	}
	return changedBetween(old, p.Disk), nil
}

// changedBetween returns the extents of the blocks of cur whose content
// differs from old's. The disks have the same size and block size.
func changedBetween(old, cur *Disk) []draas.Extent {
	old.mu.RLock()
	defer old.mu.RUnlock()
	cur.mu.RLock()
	defer cur.mu.RUnlock()
	union := maps.Clone(old.blocks)
	maps.Copy(union, cur.blocks)
	return cur.extents(func(i int64) bool {
		a, b := old.blocks[i], cur.blocks[i]
		switch {
		case a == nil || b == nil:
			return a != b
		default:
			return a.sum != b.sum
		}
	}, union)
}

// BeginPoint starts a recovery point of vm with disks at t (the zero time
// means now). IDs sort in time order. An empty VM name, no disks, a disk
// without a name or size, or a name given twice is an error wrapping
// draas.ErrInvalid. The writer is a *[PointWriter].
func (s *BackupStore) BeginPoint(ctx context.Context, vm string, disks []draas.Disk, t time.Time) (draas.PointWriter, error) {
	if err := s.faults.Inject(ctx, "BeginPoint"); err != nil {
		return nil, err
	}
	if vm == "" {
		return nil, draas.Invalidf("draastest: begin point: no VM name")
	}
	if len(disks) == 0 {
		return nil, draas.Invalidf("draastest: begin point of %s: no disks", vm)
	}
	seen := map[string]bool{}
	for _, d := range disks {
		if d.Name == "" || d.Size <= 0 || seen[d.Name] {
			return nil, draas.Invalidf("draastest: begin point of %s: disk %q of size %d: names must be unique and non-empty, sizes positive", vm, d.Name, d.Size)
		}
		seen[d.Name] = true
	}
	if t.IsZero() {
		t = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	w := &PointWriter{
		store: s,
		rp:    draas.RecoveryPoint{VM: vm, ID: fmt.Sprintf("%s-%06d", t.UTC().Format("20060102T150405.000Z"), s.seq), Time: t, Disks: slices.Clone(disks)},
		sinks: map[string]*Sink{},
	}
	if ps := s.points[vm]; len(ps) > 0 {
		w.base = ps[len(ps)-1]
	}
	return w, nil
}

// PointWriter writes a recovery point of a [BackupStore].
type PointWriter struct {
	store *BackupStore
	rp    draas.RecoveryPoint
	base  *storedPoint // the VM's latest committed point when begun, or nil

	mu    sync.Mutex
	state SinkState
	sinks map[string]*Sink
}

// ID returns the point's ID.
func (w *PointWriter) ID() string { return w.rp.ID }

// DiskOnBase returns the *[Sink] of the named disk: it starts from the same
// disk of the VM's latest committed point when that has one of the same
// size (and then needs zero writes), otherwise empty. A name that is not one
// of the point's disks is an error wrapping draas.ErrInvalid; a disk that
// already has an open or committed sink, draas.ErrConflict; a committed or
// aborted point, draas.ErrClosed.
func (w *PointWriter) DiskOnBase(ctx context.Context, name string) (draas.VolumeSink, error) {
	if err := w.store.faults.Inject(ctx, "DiskOnBase"); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != SinkOpen {
		return nil, fmt.Errorf("draastest: disk %s of point %s: point is %s: %w", name, w.rp.ID, w.state, draas.ErrClosed)
	}
	i := slices.IndexFunc(w.rp.Disks, func(d draas.Disk) bool { return d.Name == name })
	if i < 0 {
		return nil, draas.Invalidf("draastest: %q is not a disk of point %s", name, w.rp.ID)
	}
	if old, ok := w.sinks[name]; ok && old.State() != SinkAborted {
		return nil, fmt.Errorf("draastest: disk %s of point %s already has a sink: %w", name, w.rp.ID, draas.ErrConflict)
	}
	size := w.rp.Disks[i].Size
	var opts SinkOptions
	if w.base != nil {
		if b := w.base.disks[name]; b != nil && b.Size() == size && b.BlockSize() == w.store.bs {
			opts = SinkOptions{NeedsZeroWrites: true, Base: b}
		}
	}
	sk := NewSink(size, w.store.bs, opts)
	w.sinks[name] = sk
	return sk, nil
}

// Commit makes the point visible with all its disks, each of which must
// have a committed sink (draas.ErrInvalid otherwise).
func (w *PointWriter) Commit(ctx context.Context) error {
	if err := w.store.faults.Inject(ctx, "CommitPoint"); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != SinkOpen {
		return fmt.Errorf("draastest: commit point %s: point is %s: %w", w.rp.ID, w.state, draas.ErrClosed)
	}
	p := &storedPoint{rp: clonePoint(w.rp), disks: map[string]*Disk{}}
	for _, d := range w.rp.Disks {
		sk := w.sinks[d.Name]
		if sk == nil || sk.State() != SinkCommitted {
			return draas.Invalidf("draastest: commit point %s: disk %s was not written and committed", w.rp.ID, d.Name)
		}
		p.disks[d.Name] = sk.Disk().Clone()
	}
	w.state = SinkCommitted
	s := w.store
	s.mu.Lock()
	defer s.mu.Unlock()
	s.points[w.rp.VM] = append(s.points[w.rp.VM], p)
	slices.SortStableFunc(s.points[w.rp.VM], func(a, b *storedPoint) int { return a.rp.Time.Compare(b.rp.Time) })
	return nil
}

// Abort discards the point and its open sinks. Aborting twice, or after a
// failed Commit, is allowed; aborting a committed point is draas.ErrClosed.
func (w *PointWriter) Abort(ctx context.Context) error {
	if err := w.store.faults.Inject(ctx, "AbortPoint"); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == SinkCommitted {
		return fmt.Errorf("draastest: abort point %s: point is committed: %w", w.rp.ID, draas.ErrClosed)
	}
	w.state = SinkAborted
	for _, sk := range w.sinks {
		_ = sk.Abort(ctx)
	}
	return nil
}
