package s3

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opendraas/draas"
)

// sinkState is what Sink.ResumeState saves.
type sinkState struct {
	Format int       `json:"format"`
	Store  string    `json:"store"` // s3://bucket/prefix
	VM     string    `json:"vm"`
	Point  string    `json:"point"`
	Disk   string    `json:"disk"`
	Size   int64     `json:"size"`
	Blocks blockList `json:"blocks"`
}

func (s *Store) url() string { return "s3://" + s.bucket + "/" + s.pfx }

// ResumeState returns the sink's progress: its store, VM, point and disk and
// every block whose WriteBlock has returned. It implements
// draas.ResumableSink; blockcopy saves it with its checkpoint, and
// [PointWriter.ResumeDisk] takes it back after [Store.ResumePoint].
func (k *Sink) ResumeState() ([]byte, error) {
	k.mu.Lock()
	st := sinkState{Format: formatVersion, Store: k.w.s.url(), VM: k.w.vm, Point: k.w.id, Disk: k.disk.Name, Size: k.disk.Size,
		Blocks: make(blockList, 0, len(k.blocks))}
	for i, sum := range k.blocks {
		st.Blocks = append(st.Blocks, blockRef{Index: i, Sum: sum})
	}
	k.mu.Unlock()
	slices.SortFunc(st.Blocks, func(a, b blockRef) int { return cmp.Compare(a.Index, b.Index) })
	return json.Marshal(st)
}

// Target names the store, VM, point and disk the sink writes. It implements
// draas.ResumableSink.
func (k *Sink) Target() string {
	return k.w.s.url() + "/vms/" + k.w.vm + "/points/" + k.w.id + "/disks/" + k.disk.Name
}

// ResumeStatePoint returns the VM and point ID that a state saved by
// [Sink.ResumeState] belongs to, for [Store.ResumePoint].
func ResumeStatePoint(state []byte) (vm, point string, err error) {
	var st sinkState
	if err := json.Unmarshal(state, &st); err != nil || st.Format != formatVersion || st.VM == "" || st.Point == "" {
		return "", "", draas.Invalidf("resume state is not an s3 backup sink's state (%v); begin a new point instead", err)
	}
	return st.VM, st.Point, nil
}

// ResumePoint reopens a point that was begun but neither committed nor
// aborted, typically by a backup process that was killed: the disks whose
// sinks had committed stay committed (see [PointWriter.CommittedDisks]),
// and the others are continued with [PointWriter.ResumeDisk] from the state
// saved in the copy's checkpoint, or written again with
// [PointWriter.Disk].
//
// A committed point fails with an error wrapping draas.ErrConflict, an
// unknown or aborted one with draas.ErrNotFound. A point begun Grace/2 or
// longer ago also fails with draas.ErrConflict: chunks it uploaded may be
// garbage collected before it could commit, so begin a new point (which
// reuses whatever chunks are still there).
func (s *Store) ResumePoint(ctx context.Context, vm, id string) (*PointWriter, error) {
	if s.err != nil {
		return nil, s.err
	}
	for _, c := range [][2]string{{"vm", vm}, {"point", id}} {
		if err := validName(c[0], c[1]); err != nil {
			return nil, fmt.Errorf("resume point: %w", err)
		}
	}
	res := "vm " + vm + " point " + id
	if _, err := s.head(ctx, "resume point", res, s.pointKey(vm, id)); err == nil {
		return nil, &draas.OpError{Op: "resume point", Resource: res, Kind: draas.ErrConflict, Err: errors.New("the point is already committed")}
	} else if !errors.Is(err, draas.ErrNotFound) {
		return nil, err
	}
	info, err := s.head(ctx, "resume point", res, s.pendingKey(vm, id))
	if err != nil {
		if errors.Is(err, draas.ErrNotFound) {
			return nil, &draas.OpError{Op: "resume point", Resource: res, Kind: draas.ErrNotFound,
				Err: errors.New("no backup of this point is in progress (aborted, or its pending marker was collected); begin a new point")}
		}
		return nil, err
	}
	if age := s.now().Sub(info.LastModified); age >= s.opts.Grace/2 {
		return nil, &draas.OpError{Op: "resume point", Resource: res, Kind: draas.ErrConflict,
			Err: fmt.Errorf("the point was begun %s ago, not less than half the grace period %s; begin a new point", age.Round(time.Second), s.opts.Grace)}
	}
	data, err := s.get(ctx, "resume point", res, s.pendingKey(vm, id), nil, maxPointRecord)
	if err != nil {
		return nil, err
	}
	var rec pendingRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.VM != vm || rec.ID != id || len(rec.Disks) == 0 {
		return nil, &draas.OpError{Op: "resume point", Resource: res, Kind: draas.ErrChecksumMismatch,
			Err: fmt.Errorf("pending marker is damaged (%v)", err)}
	}
	t, err := time.Parse(timeFormat, rec.Time)
	if err != nil {
		return nil, &draas.OpError{Op: "resume point", Resource: res, Kind: draas.ErrChecksumMismatch, Err: err}
	}
	w := &PointWriter{
		s: s, vm: vm, id: id, t: t, disks: rec.Disks,
		known:     make(map[[32]byte]struct{}),
		sinks:     make(map[string]*Sink),
		committed: make(map[string]*manifest),
		written:   make(map[string]bool),
	}
	if rec.Base != "" {
		known, err := w.loadBase(ctx, rec.Base)
		switch {
		case err == nil:
			w.base, w.known = rec.Base, known
		case errors.Is(err, draas.ErrNotFound) || errors.Is(err, draas.ErrChecksumMismatch) || errors.Is(err, draas.ErrInvalid):
			// Continue without a base: unknown chunks are checked with HEAD.
		default:
			return nil, err
		}
	}
	all, err := s.scan(ctx, s.pointDir(vm, id))
	if err != nil {
		return nil, err
	}
	if p := all[vm][id]; p != nil {
		for _, d := range rec.Disks {
			if _, ok := p.manifests[d.Name]; !ok {
				continue
			}
			m, err := s.loadManifest(ctx, vm, id, d.Name, "")
			if err != nil {
				return nil, err
			}
			sk := newSink(w, d)
			sk.man, sk.blocks = m, nil
			sk.life.End(draas.SinkCommitted)
			w.sinks[d.Name] = sk
			w.committed[d.Name] = m
			w.written[s.manifestKey(vm, id, d.Name)] = true
		}
	}
	return w, nil
}

// CommittedDisks returns the names of the disks whose sinks have committed,
// in the order given to BeginPoint.
func (w *PointWriter) CommittedDisks() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, d := range w.disks {
		if _, ok := w.committed[d.Name]; ok {
			out = append(out, d.Name)
		}
	}
	return out
}

// ResumeDisk returns a sink that continues writing a disk from the state a
// previous sink's ResumeState returned (blockcopy.SinkState reads it from a
// checkpoint). The blocks the state lists count as written; their chunks
// were uploaded before WriteBlock returned. A state of another store, VM,
// point or disk size fails with draas.ErrInvalid; a disk that already has a
// sink (or committed) with draas.ErrConflict.
func (w *PointWriter) ResumeDisk(state []byte) (*Sink, error) {
	var st sinkState
	if err := json.Unmarshal(state, &st); err != nil || st.Format != formatVersion {
		return nil, draas.Invalidf("resume disk of point %s of vm %s: the state is not an s3 backup sink's state (%v); write the disk with Disk instead", w.id, w.vm, err)
	}
	if st.Store != w.s.url() || st.VM != w.vm || st.Point != w.id {
		return nil, draas.Invalidf("resume disk: the state belongs to %s vm %s point %s, not to %s vm %s point %s; resume that point instead",
			st.Store, st.VM, st.Point, w.s.url(), w.vm, w.id)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != stateOpen && w.state != stateCommitFailed {
		return nil, fmt.Errorf("resume disk %s of point %s of vm %s: point writer is %s: %w", st.Disk, w.id, w.vm, w.state, draas.ErrClosed)
	}
	i := slices.IndexFunc(w.disks, func(d draas.Disk) bool { return d.Name == st.Disk })
	if i < 0 || w.disks[i].Size != st.Size {
		return nil, draas.Invalidf("resume disk %s (%d bytes) of point %s of vm %s: the point has no such disk of that size", st.Disk, st.Size, w.id, w.vm)
	}
	if _, ok := w.sinks[st.Disk]; ok {
		return nil, fmt.Errorf("resume disk %s of point %s of vm %s: the disk already has a sink or is committed: %w", st.Disk, w.id, w.vm, draas.ErrConflict)
	}
	sk := newSink(w, w.disks[i])
	for j, b := range st.Blocks {
		if b.Index < 0 || b.Index >= sk.nblocks || j > 0 && b.Index <= st.Blocks[j-1].Index {
			return nil, draas.Invalidf("resume disk %s of point %s of vm %s: the state's block %d is out of order or beyond the disk", st.Disk, w.id, w.vm, b.Index)
		}
		sk.blocks[b.Index] = b.Sum
		w.known[b.Sum] = struct{}{}
	}
	w.sinks[st.Disk] = sk
	return sk, nil
}
