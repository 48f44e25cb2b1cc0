package draastest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/opendraas/draas"
)

// CopyStore is an in-memory draas.CopyStore, the reference for the EBS copy
// store in aws/ebs: DR copies are snapshots with the lifecycle of EBS ones.
// NewCopy starts a copy in state draas.CopyPending; committing its sink
// makes it draas.CopyCompleted, aborting it deletes it. A copy with a
// Parent starts as the parent's content and needs zero writes, like an
// incremental EBS snapshot. MarkComplete sets the Complete mark (the
// draas:complete tag) and moves a copy to another recovery point. A copy
// left pending by a "killed" run can be resumed with ResumeCopy from its
// sink's ResumeState, as long as the store lives.
//
// When [CopyStoreOptions.Cloud] is set, every completed copy is also added
// to that Cloud as a snapshot, so that failover tests launch from it.
//
// Every method is subject to the store's [Faults] under its own name
// ("Copies", "NewCopy", "ResumeCopy", "MarkComplete", "DeleteCopy"). All
// methods are safe for concurrent use.
type CopyStore struct {
	opts CopyStoreOptions

	mu     sync.Mutex
	copies []*storedCopy // in creation order
	tokens map[string]string
	seq    int
}

// CopyStoreOptions configures a [CopyStore]. The zero value is useful.
type CopyStoreOptions struct {
	// BlockSize of the copies' sinks; 0 means [DefaultBlockSize] (EBS's
	// 512 KiB).
	BlockSize int
	// Faults the store is subject to; nil means a fresh Faults.
	Faults *Faults
	// Cloud, when set, receives every completed copy as a snapshot.
	Cloud *Cloud
}

type storedCopy struct {
	c    draas.DRCopy
	sink *CopySink
}

var _ draas.CopyStore = (*CopyStore)(nil)

// NewCopyStore returns an empty copy store.
func NewCopyStore(opts CopyStoreOptions) *CopyStore {
	if opts.BlockSize <= 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.Faults == nil {
		opts.Faults = new(Faults)
	}
	return &CopyStore{opts: opts, tokens: map[string]string{}}
}

// Faults returns the faults the store is subject to.
func (s *CopyStore) Faults() *Faults { return s.opts.Faults }

// Copies lists the DR copies of vm in plan in any state, oldest first.
func (s *CopyStore) Copies(ctx context.Context, plan, vm string) ([]draas.DRCopy, error) {
	if err := s.opts.Faults.Inject(ctx, "Copies"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []draas.DRCopy
	for _, c := range s.copies {
		if c.c.Plan == plan && c.c.VM == vm {
			out = append(out, c.c)
		}
	}
	return out, nil
}

// All returns every copy in the store, oldest first, for tests to assert.
func (s *CopyStore) All() []draas.DRCopy {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]draas.DRCopy, len(s.copies))
	for i, c := range s.copies {
		out[i] = c.c
	}
	return out
}

// Disk returns the content of copy id (written so far, for a pending one),
// for tests to compare.
func (s *CopyStore) Disk(id string) (*Disk, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.find(id)
	if c == nil {
		return nil, false
	}
	return c.sink.Disk().Clone(), true
}

// find returns copy id. s.mu is held.
func (s *CopyStore) find(id string) *storedCopy {
	i := slices.IndexFunc(s.copies, func(c *storedCopy) bool { return c.c.SnapshotID == id })
	if i < 0 {
		return nil
	}
	return s.copies[i]
}

// NewCopy starts a pending copy and returns its sink, a *[CopySink]. A
// request repeated with the same ClientToken returns the same copy's sink.
// An unknown or incomplete Parent is an error wrapping draas.ErrNotFound; a
// request without plan, VM, disk or recovery point, or with a size that is
// not positive, draas.ErrInvalid.
func (s *CopyStore) NewCopy(ctx context.Context, req draas.CopyRequest) (draas.SnapshotSink, error) {
	if err := s.opts.Faults.Inject(ctx, "NewCopy"); err != nil {
		return nil, err
	}
	if req.Plan == "" || req.VM == "" || req.Disk == "" || req.RecoveryPoint == "" || req.Size <= 0 {
		return nil, draas.Invalidf("draastest: new copy %+v: plan, VM, disk, recovery point and a positive size are required", req)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.tokens[req.ClientToken]; ok && req.ClientToken != "" {
		if c := s.find(id); c != nil {
			return c.sink, nil
		}
	}
	opts := SinkOptions{}
	if req.Parent != "" {
		p := s.find(req.Parent)
		if p == nil || p.c.State != draas.CopyCompleted {
			return nil, &draas.OpError{Op: "NewCopy", Resource: "parent snapshot " + req.Parent, Kind: draas.ErrNotFound}
		}
		opts = SinkOptions{NeedsZeroWrites: true, Base: p.sink.Disk()}
	}
	s.seq++
	id := fmt.Sprintf("snap-draastest-%06d", s.seq)
	c := &storedCopy{c: draas.DRCopy{
		VM: req.VM, Plan: req.Plan, Disk: req.Disk, DiskIndex: req.DiskIndex,
		RecoveryPoint: req.RecoveryPoint, PointTime: req.PointTime,
		SnapshotID: id, Parent: req.Parent, Size: req.Size, State: draas.CopyPending,
	}}
	sk := NewSink(req.Size, s.opts.BlockSize, opts)
	c.sink = &CopySink{Sink: sk, store: s, id: id}
	s.copies = append(s.copies, c)
	if req.ClientToken != "" {
		s.tokens[req.ClientToken] = id
	}
	return c.sink, nil
}

// ResumeCopy returns the sink of the pending copy whose sink's ResumeState
// is state. A copy that is gone, or no longer pending, is an error wrapping
// draas.ErrNotFound.
func (s *CopyStore) ResumeCopy(ctx context.Context, req draas.CopyRequest, state []byte) (draas.SnapshotSink, error) {
	if err := s.opts.Faults.Inject(ctx, "ResumeCopy"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.find(string(state))
	if c == nil || c.c.State != draas.CopyPending || c.c.VM != req.VM || c.c.Disk != req.Disk {
		return nil, &draas.OpError{Op: "ResumeCopy", Resource: "snapshot " + string(state), Kind: draas.ErrNotFound, Err: fmt.Errorf("no pending copy of %s/%s", req.VM, req.Disk)}
	}
	return c.sink, nil
}

// MarkComplete marks each copy (found by its SnapshotID) complete and
// records its checksum, recovery point and point time. A copy that is not
// completed is an error wrapping draas.ErrConflict, a missing one
// draas.ErrNotFound; then no copy is marked.
func (s *CopyStore) MarkComplete(ctx context.Context, copies []draas.DRCopy) error {
	if err := s.opts.Faults.Inject(ctx, "MarkComplete"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	found := make([]*storedCopy, len(copies))
	for i, want := range copies {
		c := s.find(want.SnapshotID)
		switch {
		case c == nil:
			return &draas.OpError{Op: "MarkComplete", Resource: "snapshot " + want.SnapshotID, Kind: draas.ErrNotFound}
		case c.c.State != draas.CopyCompleted:
			return &draas.OpError{Op: "MarkComplete", Resource: "snapshot " + want.SnapshotID, Kind: draas.ErrConflict, Err: fmt.Errorf("snapshot is %s", c.c.State)}
		}
		found[i] = c
	}
	for i, c := range found {
		c.c.Complete = true
		c.c.Checksum = copies[i].Checksum
		c.c.RecoveryPoint, c.c.PointTime = copies[i].RecoveryPoint, copies[i].PointTime
	}
	return nil
}

// DeleteCopy deletes copy id, aborting its sink if it is pending. A missing
// copy is not an error.
func (s *CopyStore) DeleteCopy(ctx context.Context, id string) error {
	if err := s.opts.Faults.Inject(ctx, "DeleteCopy"); err != nil {
		return err
	}
	s.mu.Lock()
	c := s.find(id)
	s.copies = slices.DeleteFunc(s.copies, func(c *storedCopy) bool { return c.c.SnapshotID == id })
	s.mu.Unlock()
	if c != nil {
		_ = c.sink.Sink.Abort(ctx)
	}
	return nil
}

// CopySink writes a [CopyStore]'s DR copy: a [Sink] whose Commit completes
// the copy's snapshot and whose Abort deletes the copy. Its Target and
// ResumeState are the snapshot ID.
type CopySink struct {
	*Sink
	store *CopyStore
	id    string
}

var (
	_ draas.SnapshotSink  = (*CopySink)(nil)
	_ draas.ResumableSink = (*CopySink)(nil)
)

// SnapshotID returns the copy's snapshot ID.
func (k *CopySink) SnapshotID() string { return k.id }

// Target returns the snapshot ID.
func (k *CopySink) Target() string { return k.id }

// ResumeState returns the snapshot ID, which ResumeCopy takes.
func (k *CopySink) ResumeState() ([]byte, error) { return []byte(k.id), nil }

// Commit commits the sink and completes the copy.
func (k *CopySink) Commit(ctx context.Context) error {
	if err := k.Sink.Commit(ctx); err != nil {
		return err
	}
	s := k.store
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.find(k.id)
	if c == nil {
		return &draas.OpError{Op: "CompleteSnapshot", Resource: "snapshot " + k.id, Kind: draas.ErrNotFound, Err: fmt.Errorf("the copy was deleted")}
	}
	c.c.State = draas.CopyCompleted
	if s.opts.Cloud != nil {
		s.opts.Cloud.AddSnapshot(k.id, k.Disk().Clone())
	}
	return nil
}

// Abort aborts the sink and deletes the copy.
func (k *CopySink) Abort(ctx context.Context) error {
	err := k.Sink.Abort(ctx)
	s := k.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.find(k.id); c != nil && c.c.State == draas.CopyPending {
		s.copies = slices.DeleteFunc(s.copies, func(c *storedCopy) bool { return c.c.SnapshotID == k.id })
	}
	return err
}
