package s3

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/opendraas/draas"
)

var (
	_ draas.VolumeSink     = (*Sink)(nil)
	_ draas.VerifiableSink = (*Sink)(nil)
	_ draas.ResumableSink  = (*Sink)(nil)
)

// zeroBlockSum is the SHA-256 of BlockSize zero bytes.
var zeroBlockSum = sync.OnceValue(func() [32]byte { return sha256.Sum256(make([]byte, BlockSize)) })

// state of a PointWriter or a Sink.
type state int

const (
	stateOpen state = iota
	stateCommitting
	stateCommitFailed
	stateCommitted
	stateAborted
)

// PointWriter writes one recovery point of a VM: a [Sink] per disk, then
// [PointWriter.Commit]. It is safe for concurrent use; the sinks of
// different disks may be written at the same time.
//
// Until Commit returns nil the point does not exist for readers. A writer
// that is neither committed nor aborted (a killed backup) leaves its chunks,
// manifests and pending marker behind: the next backup of the VM reuses
// those chunks (it finds them with HeadObject before uploading), and
// [Store.GC] removes what no committed point references once it is older
// than the grace period.
type PointWriter struct {
	s     *Store
	vm    string
	id    string
	t     time.Time
	disks []draas.Disk
	base  string // the committed point whose chunks are known, or ""

	markerWritten bool // set by begin once pending.json is ours

	mu        sync.Mutex
	state     state
	known     map[[32]byte]struct{} // chunks known to exist and safe to reference
	sinks     map[string]*Sink      // open or committed sinks by disk name
	committed map[string]*manifest  // committed manifests by disk name
	written   map[string]bool       // manifest keys that may exist, for Abort
}

// BeginPoint starts a recovery point of vm with the given disks, taken at t
// (the zero time means now, by Options.Clock). The point's ID is derived
// from t (UTC, to the second) and a random suffix, e.g.
// "20261126T061000.000Z-5f3a9c0e", so that IDs sort in time order.
//
// The chunks of the VM's latest committed point (the base) are treated as
// present, so an incremental backup uploads only new data; BeginPoint reads
// that point's manifests and writes a pending marker naming the base, which
// keeps Prune and GC from removing the base's chunks while the backup runs.
// A base whose manifests are missing or corrupt is not used (every chunk is
// then checked with HeadObject instead).
//
// vm and disk names must be 1-128 letters, digits, '.', '_' or '-' and not
// start with '.'; disk names must be unique and sizes positive. Otherwise
// BeginPoint returns an error wrapping draas.ErrInvalid.
//
// The returned writer is a *[PointWriter] (the return type is the
// draas.PointWriter interface so that *Store is a draas.BackupStore): assert
// it to reach [PointWriter.Disk], [PointWriter.Point] and the resume methods.
func (s *Store) BeginPoint(ctx context.Context, vm string, disks []draas.Disk, t time.Time) (draas.PointWriter, error) {
	w, err := s.beginPoint(ctx, vm, disks, t)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (s *Store) beginPoint(ctx context.Context, vm string, disks []draas.Disk, t time.Time) (*PointWriter, error) {
	if s.err != nil {
		return nil, s.err
	}
	if err := validName("vm", vm); err != nil {
		return nil, fmt.Errorf("begin point: %w", err)
	}
	if len(disks) == 0 {
		return nil, draas.Invalidf("begin point of vm %s: no disks; pass the VM's disks with their names and sizes", vm)
	}
	seen := make(map[string]bool, len(disks))
	for _, d := range disks {
		if err := validName("disk", d.Name); err != nil {
			return nil, fmt.Errorf("begin point of vm %s: %w", vm, err)
		}
		if seen[d.Name] {
			return nil, draas.Invalidf("begin point of vm %s: disk name %q appears twice; give each disk a unique name", vm, d.Name)
		}
		seen[d.Name] = true
		if d.Size <= 0 {
			return nil, draas.Invalidf("begin point of vm %s: disk %s has size %d; pass the disk's size in bytes (positive)", vm, d.Name, d.Size)
		}
	}
	if t.IsZero() {
		t = s.now()
	}
	t = t.UTC()
	w := &PointWriter{
		s:         s,
		vm:        vm,
		id:        newPointID(t),
		t:         t,
		disks:     slices.Clone(disks),
		known:     make(map[[32]byte]struct{}),
		sinks:     make(map[string]*Sink),
		committed: make(map[string]*manifest),
		written:   make(map[string]bool),
	}
	if err := w.begin(ctx); err != nil {
		if w.markerWritten {
			// Best effort: a marker left behind expires after the grace
			// period.
			_, _ = s.deleteKeys(context.WithoutCancel(ctx), "abort point", []string{s.pendingKey(vm, w.id)})
		}
		return nil, err
	}
	return w, nil
}

// begin writes the pending marker and loads the base's chunks. The base is
// re-checked after the marker is written: if it was pruned in between, its
// chunks may already be gone, so another base is chosen.
func (w *PointWriter) begin(ctx context.Context) error {
	s := w.s
	first := true
	for attempt := 0; ; attempt++ {
		base := ""
		if attempt < 3 {
			ids, err := s.committedIDs(ctx, w.vm)
			if err != nil {
				return fmt.Errorf("begin point %s of vm %s: %w", w.id, w.vm, err)
			}
			if len(ids) > 0 {
				base = ids[len(ids)-1]
			}
		}
		if err := w.writePending(ctx, base, first); err != nil {
			return err
		}
		first = false
		if base == "" {
			return nil
		}
		known, err := w.loadBase(ctx, base)
		switch {
		case err == nil:
			w.base, w.known = base, known
			return nil
		case errors.Is(err, draas.ErrNotFound) && attempt < 2:
			continue // pruned meanwhile: pick the new latest
		case errors.Is(err, draas.ErrNotFound) || errors.Is(err, draas.ErrChecksumMismatch) || errors.Is(err, draas.ErrInvalid):
			// No usable base: write without one.
			if err := w.writePending(ctx, "", false); err != nil {
				return err
			}
			return nil
		default:
			return fmt.Errorf("begin point %s of vm %s: load base point %s: %w", w.id, w.vm, base, err)
		}
	}
}

func (w *PointWriter) writePending(ctx context.Context, base string, create bool) error {
	data, err := json.MarshalIndent(pendingRecord{
		Format: formatVersion, VM: w.vm, ID: w.id, Time: w.t.Format(timeFormat), Base: base, Disks: w.disks,
	}, "", "  ")
	if err != nil {
		return err
	}
	key := w.s.pendingKey(w.vm, w.id)
	err = w.s.put(ctx, "begin point", "vm "+w.vm+" point "+w.id, key, data, "application/json", create)
	if err != nil && create && errors.Is(err, draas.ErrConflict) {
		return fmt.Errorf("point ID %s of vm %s is already in use (two backups started in the same second drew the same suffix?); begin the point again: %w", w.id, w.vm, err)
	}
	if err == nil {
		w.markerWritten = true
	}
	return err
}

// loadBase returns the set of chunks the committed point base references.
func (w *PointWriter) loadBase(ctx context.Context, base string) (map[[32]byte]struct{}, error) {
	rec, err := w.s.loadPoint(ctx, w.vm, base)
	if err != nil {
		return nil, err
	}
	mans := make([]*manifest, len(rec.Disks))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.s.opts.Concurrency)
	for i, d := range rec.Disks {
		g.Go(func() error {
			m, err := w.s.loadManifest(gctx, w.vm, base, d.Name, d.Manifest)
			mans[i] = m
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	known := make(map[[32]byte]struct{})
	for _, m := range mans {
		for _, r := range m.Blocks {
			known[r.Sum] = struct{}{}
		}
	}
	return known, nil
}

// newPointID returns an ID for a point taken at t: the UTC time to the
// second and 8 random hex digits.
func newPointID(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	// Milliseconds keep IDs of points begun within one second in time
	// order; the fixed width keeps lexical order equal to time order.
	return fmt.Sprintf("%s-%x", t.UTC().Format("20060102T150405.000Z"), b)
}

// ID returns the point's ID.
func (w *PointWriter) ID() string { return w.id }

// VM returns the name of the point's VM.
func (w *PointWriter) VM() string { return w.vm }

// Base returns the ID of the committed point whose chunks this point
// deduplicates against, or "" when there is none.
func (w *PointWriter) Base() string { return w.base }

// Point returns the recovery point this writer makes, as Points will list it
// once committed.
func (w *PointWriter) Point() draas.RecoveryPoint {
	return draas.RecoveryPoint{VM: w.vm, ID: w.id, Time: w.t, Disks: slices.Clone(w.disks)}
}

// Disk returns the sink that writes the named disk. Each disk has one sink
// at a time: asking again for a disk whose sink is open or committed fails
// with an error wrapping draas.ErrConflict; after that sink's Abort a new
// one may be had. A name that is not one of the point's disks fails with
// draas.ErrInvalid, and a committed or aborted writer with draas.ErrClosed.
func (w *PointWriter) Disk(name string) (*Sink, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != stateOpen {
		return nil, fmt.Errorf("disk %s of point %s of vm %s: point writer is %s: %w", name, w.id, w.vm, w.state, draas.ErrClosed)
	}
	i := slices.IndexFunc(w.disks, func(d draas.Disk) bool { return d.Name == name })
	if i < 0 {
		names := make([]string, len(w.disks))
		for j, d := range w.disks {
			names[j] = d.Name
		}
		return nil, draas.Invalidf("disk %q is not a disk of point %s of vm %s; use one of %q given to BeginPoint", name, w.id, w.vm, names)
	}
	if _, ok := w.sinks[name]; ok {
		return nil, fmt.Errorf("disk %s of point %s of vm %s already has a sink; abort it first to write the disk again: %w", name, w.id, w.vm, draas.ErrConflict)
	}
	sk := newSink(w, w.disks[i])
	w.sinks[name] = sk
	return sk, nil
}

// DiskOnBase is like Disk, but the sink starts with the blocks of the same
// disk in the writer's base point (see Base), so that an incremental
// backup writes only the areas that changed — for example those a
// hypervisor's change tracking reports — and every block it does not write
// keeps the base's content. Zero blocks must then be written too
// (NeedsZeroWrites reports true). Without a base, or when the base has no
// disk of that name and size, it is the same as Disk: NeedsZeroWrites
// reports false and the whole disk must be written.
//
// The returned sink is a *[Sink] (the return type is draas.VolumeSink so
// that *PointWriter is a draas.PointWriter).
func (w *PointWriter) DiskOnBase(ctx context.Context, name string) (draas.VolumeSink, error) {
	sk, err := w.diskOnBase(ctx, name)
	if err != nil {
		return nil, err
	}
	return sk, nil
}

func (w *PointWriter) diskOnBase(ctx context.Context, name string) (*Sink, error) {
	sk, err := w.Disk(name)
	if err != nil || w.base == "" {
		return sk, err
	}
	rec, err := w.s.loadPoint(ctx, w.vm, w.base)
	if err != nil {
		_ = sk.Abort(ctx)
		return nil, fmt.Errorf("disk %s of point %s: read base point %s: %w", name, w.id, w.base, err)
	}
	d, ok := rec.disk(name)
	if !ok || d.Size != sk.disk.Size {
		return sk, nil
	}
	m, err := w.s.loadManifest(ctx, w.vm, w.base, name, d.Manifest)
	if err != nil {
		_ = sk.Abort(ctx)
		return nil, fmt.Errorf("disk %s of point %s: read base manifest: %w", name, w.id, err)
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	sk.onBase = true
	for _, b := range m.Blocks {
		sk.blocks[b.Index] = b.Sum
	}
	return sk, nil
}

// NeedsZeroWrites reports whether zero blocks must be written: true for a
// sink from DiskOnBase that started from a base's blocks.
func (k *Sink) NeedsZeroWrites() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.onBase
}

func newSink(w *PointWriter, d draas.Disk) *Sink {
	sk := &Sink{w: w, disk: d, blocks: make(map[int64][32]byte)}
	sk.life.RetryCommit = true
	sk.nblocks = (d.Size + BlockSize - 1) / BlockSize
	sk.lastLen = int(d.Size - (sk.nblocks-1)*BlockSize)
	if sk.lastLen == BlockSize {
		sk.lastZero = zeroBlockSum()
	} else {
		sk.lastZero = sha256.Sum256(make([]byte, sk.lastLen))
	}
	return sk
}

// Commit makes the point visible: it writes the point record, which lists
// every disk with the checksum of its manifest, and then removes the
// pending marker. Every disk's sink must have been committed; otherwise
// Commit fails with an error wrapping draas.ErrInvalid naming the disks
// still missing, and the writer stays open. A Commit that failed may be
// repeated; the record is written only if absent (a repeat finding its own
// record succeeds).
func (w *PointWriter) Commit(ctx context.Context) error {
	w.mu.Lock()
	if w.state != stateOpen && w.state != stateCommitFailed {
		st := w.state
		w.mu.Unlock()
		return fmt.Errorf("commit point %s of vm %s: point writer is %s: %w", w.id, w.vm, st, draas.ErrClosed)
	}
	var missing []string
	rec := &pointRecord{Format: formatVersion, VM: w.vm, ID: w.id, Time: w.t.Format(timeFormat), Base: w.base}
	for _, d := range w.disks {
		m, ok := w.committed[d.Name]
		if !ok {
			missing = append(missing, d.Name)
			continue
		}
		rec.Disks = append(rec.Disks, pointDisk{Name: d.Name, Size: d.Size, Manifest: m.Checksum, ChangeID: d.ChangeID})
	}
	if len(missing) > 0 {
		w.mu.Unlock()
		return draas.Invalidf("commit point %s of vm %s: disks %q are not committed; Commit each disk's Sink first, or Abort the point", w.id, w.vm, missing)
	}
	w.state = stateCommitting
	w.mu.Unlock()

	err := w.commit(ctx, rec)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.state = stateCommitFailed
		return err
	}
	w.state = stateCommitted
	for _, sk := range w.sinks {
		sk.close(stateCommitted)
	}
	return nil
}

func (w *PointWriter) commit(ctx context.Context, rec *pointRecord) error {
	s := w.s
	res := "vm " + w.vm + " point " + w.id
	data, err := encodePoint(rec)
	if err != nil {
		return err
	}
	key := s.pointKey(w.vm, w.id)
	err = s.put(ctx, "commit point", res, key, data, "application/json", true)
	if errors.Is(err, draas.ErrConflict) {
		// A repeated commit whose first try reached S3, or a stranger.
		got, gerr := s.loadPoint(ctx, w.vm, w.id)
		if gerr != nil || got.Checksum != rec.Checksum {
			return fmt.Errorf("commit point %s of vm %s: a different point record already exists at s3://%s/%s: %w", w.id, w.vm, s.bucket, key, err)
		}
		err = nil
	}
	if err != nil {
		return err
	}
	// The marker only protects the base while the point is uncommitted; a
	// marker left behind expires after the grace period.
	_, _ = s.deleteKeys(ctx, "commit point", []string{s.pendingKey(w.vm, w.id)})
	return nil
}

// Abort discards the point: it closes every sink and deletes the manifests
// written so far and the pending marker. Chunks are left for GC, since
// other points may share them. Abort after Commit succeeded fails with
// draas.ErrClosed; aborting twice is not an error.
func (w *PointWriter) Abort(ctx context.Context) error {
	w.mu.Lock()
	switch w.state {
	case stateCommitted, stateCommitting:
		st := w.state
		w.mu.Unlock()
		return fmt.Errorf("abort point %s of vm %s: point writer is %s: %w", w.id, w.vm, st, draas.ErrClosed)
	}
	w.state = stateAborted
	keys := []string{w.s.pendingKey(w.vm, w.id)}
	for k := range w.written {
		keys = append(keys, k)
	}
	for _, sk := range w.sinks {
		sk.close(stateAborted)
	}
	w.mu.Unlock()
	slices.Sort(keys)
	if _, err := w.s.deleteKeys(ctx, "abort point", keys); err != nil {
		return fmt.Errorf("abort point %s of vm %s: %w", w.id, w.vm, err)
	}
	return nil
}

// ensureChunk makes sure the chunk sum (of data) exists and may be
// referenced by this point: it is in the base, was uploaded or checked by
// this writer, exists and is younger than half the grace period, or is
// uploaded now. An existing chunk that is older is uploaded again, which
// renews its age, so that a concurrent GC cannot delete it before the
// point commits (see docs/backup-store.md).
func (w *PointWriter) ensureChunk(ctx context.Context, sum [32]byte, data []byte, res string) error {
	w.mu.Lock()
	_, ok := w.known[sum]
	w.mu.Unlock()
	if ok {
		return nil
	}
	s := w.s
	key := s.chunkKey(sum)
	info, err := s.head(ctx, "write block", res, key)
	exists := err == nil
	switch {
	case exists && s.now().Sub(info.LastModified) < s.opts.Grace/2:
		// Fresh enough.
	case err != nil && !errors.Is(err, draas.ErrNotFound):
		return err
	default:
		bp := s.bufs.Get().(*[]byte)
		obj := s.encodeChunk(data, *bp)
		err := s.put(ctx, "write block", res, key, obj, "application/octet-stream", !exists)
		*bp = obj[:0]
		s.bufs.Put(bp)
		if err != nil && !(errors.Is(err, draas.ErrConflict) && !exists) {
			return err
		}
		// A conflict means another writer uploaded it just now.
	}
	w.mu.Lock()
	w.known[sum] = struct{}{}
	w.mu.Unlock()
	return nil
}

func (st state) String() string {
	switch st {
	case stateOpen:
		return "open"
	case stateCommitting:
		return "committing"
	case stateCommitFailed:
		return "open after a failed commit"
	case stateCommitted:
		return "committed"
	case stateAborted:
		return "aborted"
	}
	return fmt.Sprintf("state(%d)", int(st))
}

// Sink writes one disk of a recovery point. It is a draas.VolumeSink with
// blocks of [BlockSize] bytes and a draas.VerifiableSink.
//
// WriteBlock verifies the block's checksum, records all-zero blocks as holes
// (nothing is stored), and otherwise uploads the block as a chunk unless
// the chunk is known to exist. It returns when the chunk is durable in S3.
// It is safe for concurrent calls and idempotent: writing a block again
// replaces the earlier write. Commit writes the disk's manifest (the point
// stays invisible until [PointWriter.Commit]).
type Sink struct {
	w        *PointWriter
	disk     draas.Disk
	nblocks  int64
	lastLen  int
	lastZero [32]byte
	// onBase is set for a sink that starts from the base point's blocks
	// (see PointWriter.DiskOnBase).
	onBase bool

	// life holds off Commit and Abort while WriteBlock runs; a failed
	// Commit may be repeated. The point writer ends it with the point.
	life   draas.SinkLifecycle
	mu     sync.Mutex
	blocks map[int64][32]byte
	man    *manifest // after a successful Commit
}

// BlockSize returns [BlockSize].
func (k *Sink) BlockSize() int { return BlockSize }

// Disk returns the disk the sink writes.
func (k *Sink) Disk() draas.Disk { return k.disk }

func (k *Sink) resource(i int64) string {
	return fmt.Sprintf("vm %s point %s disk %s block %d", k.w.vm, k.w.id, k.disk.Name, i)
}

// WriteBlock writes one block; see [Sink]. A block that is misaligned,
// beyond the disk or of the wrong length fails with draas.ErrInvalid; one
// whose Checksum is not the SHA-256 of its Data with
// draas.ErrChecksumMismatch; after Commit or Abort with draas.ErrClosed.
func (k *Sink) WriteBlock(ctx context.Context, b draas.Block) error {
	res := k.resource(b.Index)
	if err := k.life.BeginWrite(); err != nil {
		return &draas.OpError{Op: "write block", Resource: res, Err: err}
	}
	defer k.life.EndWrite()
	if err := draas.CheckBlock(b, BlockSize, k.disk.Size); err != nil {
		return &draas.OpError{Op: "write block", Resource: res, Err: err}
	}
	zero := zeroBlockSum()
	if b.Index == k.nblocks-1 {
		zero = k.lastZero
	}
	if sum := sha256.Sum256(b.Data); sum != b.Checksum {
		return &draas.OpError{Op: "write block", Resource: res, Kind: draas.ErrChecksumMismatch,
			Err: fmt.Errorf("data has SHA-256 %x, the block says %x", sum, b.Checksum)}
	}
	if b.Checksum != zero {
		if err := ctx.Err(); err != nil {
			return &draas.OpError{Op: "write block", Resource: res, Err: context.Cause(ctx)}
		}
		if err := k.w.ensureChunk(ctx, b.Checksum, b.Data, res); err != nil {
			return err
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if st := k.life.Phase(); st != draas.SinkOpen { // the point ended meanwhile
		return &draas.OpError{Op: "write block", Resource: res, Kind: draas.ErrClosed, Err: fmt.Errorf("sink is %s", st)}
	}
	if b.Checksum == zero {
		delete(k.blocks, b.Index)
	} else {
		k.blocks[b.Index] = b.Checksum
	}
	return nil
}

// Commit writes the disk's manifest. It must be called after every
// WriteBlock has returned. A failed Commit may be repeated or followed by
// Abort; a successful one is final for the sink (a later Abort does not undo
// it; PointWriter.Abort does).
func (k *Sink) Commit(ctx context.Context) error {
	if err := k.life.BeginCommit(); err != nil {
		return &draas.OpError{Op: "commit disk", Resource: k.resourceDisk(), Err: err}
	}
	k.mu.Lock()
	m := &manifest{
		Format: formatVersion, VM: k.w.vm, Point: k.w.id, Disk: k.disk.Name,
		Size: k.disk.Size, BlockSize: BlockSize, Blocks: make(blockList, 0, len(k.blocks)),
	}
	for i, sum := range k.blocks {
		m.Blocks = append(m.Blocks, blockRef{Index: i, Sum: sum})
	}
	k.mu.Unlock()
	slices.SortFunc(m.Blocks, func(a, b blockRef) int { return cmp.Compare(a.Index, b.Index) })

	if err := k.commit(ctx, m); err != nil {
		return k.life.EndCommit(err)
	}
	if err := k.life.EndCommit(nil); err != nil {
		// The point was aborted meanwhile.
		return &draas.OpError{Op: "commit disk", Resource: k.resourceDisk(), Err: fmt.Errorf("point was aborted: %w", err)}
	}
	k.mu.Lock()
	k.man = m
	k.mu.Unlock()
	return nil
}

func (k *Sink) commit(ctx context.Context, m *manifest) error {
	w := k.w
	data, err := encodeManifest(m)
	if err != nil {
		return err
	}
	key := w.s.manifestKey(w.vm, w.id, k.disk.Name)
	w.mu.Lock()
	if w.state != stateOpen && w.state != stateCommitFailed {
		st := w.state
		w.mu.Unlock()
		return &draas.OpError{Op: "commit disk", Resource: k.resourceDisk(), Kind: draas.ErrClosed, Err: fmt.Errorf("point writer is %s", st)}
	}
	w.written[key] = true
	w.mu.Unlock()
	if err := w.s.put(ctx, "commit disk", k.resourceDisk(), key, data, "application/json", false); err != nil {
		return err
	}
	w.mu.Lock()
	w.committed[k.disk.Name] = m
	w.mu.Unlock()
	return nil
}

func (k *Sink) resourceDisk() string {
	return fmt.Sprintf("vm %s point %s disk %s", k.w.vm, k.w.id, k.disk.Name)
}

// Abort discards the disk: it deletes the manifest if a failed Commit may
// have written it, and frees the disk for a new sink from
// [PointWriter.Disk]. After a successful Commit, Abort does nothing (to
// discard a committed disk, abort the point); aborting twice is not an
// error.
func (k *Sink) Abort(ctx context.Context) error {
	w := k.w
	if cleanup, err := k.life.BeginAbort(); !cleanup {
		if errors.Is(err, draas.ErrConflict) {
			return &draas.OpError{Op: "abort disk", Resource: k.resourceDisk(), Err: err}
		}
		return nil // committed or aborted before
	}
	k.mu.Lock()
	k.blocks = nil
	k.mu.Unlock()

	w.mu.Lock()
	delete(w.committed, k.disk.Name)
	if w.sinks[k.disk.Name] == k {
		delete(w.sinks, k.disk.Name)
	}
	key := w.s.manifestKey(w.vm, w.id, k.disk.Name)
	wrote := w.written[key] && (w.state == stateOpen || w.state == stateCommitFailed)
	w.mu.Unlock()
	if wrote {
		if _, err := w.s.deleteKeys(ctx, "abort disk", []string{key}); err != nil {
			return err
		}
	}
	return nil
}

// close ends the sink when its point writer commits or aborts.
func (k *Sink) close(st state) {
	if st == stateCommitted {
		k.life.End(draas.SinkCommitted)
	} else {
		k.life.End(draas.SinkAborted)
	}
}

// Committed returns a source that reads back what the disk's Commit wrote,
// for a verify pass. It reads the chunks from S3 and verifies each.
func (k *Sink) Committed(ctx context.Context) (draas.BlockSource, error) {
	k.mu.Lock()
	m := k.man
	k.mu.Unlock()
	if m == nil {
		return nil, &draas.OpError{Op: "read back disk", Resource: k.resourceDisk(), Kind: draas.ErrInvalid, Err: errors.New("the sink is not committed")}
	}
	return newSource(k.w.s, m), nil
}
