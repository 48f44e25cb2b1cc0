// Package draas is the vocabulary of a disaster-recovery library for virtual
// machines between VMware vSphere and AWS.
//
// Every place a disk can live is a [BlockSource] (it can be read), a
// [VolumeSink] (it can be written, then committed or aborted), or both. The
// copy engine in package blockcopy moves any source into any sink; the
// workflows (replicate, failover, failback, backup) are compositions of such
// copies and of control-plane calls on an [InstanceLauncher], a [Hypervisor]
// and a [DNS].
//
// The state of a plan lives with the data: recovery points in a backup
// store ([BackupReader], [BackupWriter], [BackupStore]) and DR copies in a
// [CopyStore], whose sets count only when complete ([CopySets],
// [LatestComplete]).
//
// Some names exist twice on purpose, once here as the vocabulary and once in
// package plan as the YAML plan file a user writes: [Plan] is what
// replication needs (plan.Plan is the whole file; its ReplicationPlan method
// returns this Plan), [VM] is a protected VM's hardware and disks (plan.VM is
// how it fails over), and [Record] is a DNS record set as a [DNS] provider
// stores it (plan.Record is a record the plan points at a VM). A workflow
// that only replicates takes the vocabulary type; failover and failback take
// the plan file's. [DNS] is the provider interface; plan.DNS is the plan's
// zone settings.
//
// Capabilities beyond the core are small optional interfaces discovered by
// type assertion behind helpers with a fallback, in the manner of io.WriterTo:
// [ExtentSource] (allocated extents), [ChangeTracker] (changed extents since a
// base), [ChecksumSource] (checksums recorded by the storage), [ZeroWriteSink]
// (a sink that must be sent zero blocks), [Flusher] and [VerifiableSink].
// Wrappers (retry, rate limit, metrics) implement Unwrap so that they never
// hide a capability; the helpers in this package look through them.
package draas

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Sentinel errors that callers branch on with errors.Is. Implementations wrap
// them together with the underlying SDK error (see [OpError]) so that both
// errors.Is and errors.As work.
var (
	// ErrNotFound means the named resource (snapshot, recovery point, VM,
	// record) does not exist.
	ErrNotFound = errors.New("draas: not found")
	// ErrThrottled means the service refused the request because of a rate
	// limit. It is retryable.
	ErrThrottled = errors.New("draas: throttled")
	// ErrTransient means a failure that may succeed when repeated (a reset
	// connection, a 5xx answer). It is retryable.
	ErrTransient = errors.New("draas: transient failure")
	// ErrChecksumMismatch means data did not match the checksum recorded for
	// it. It is never retried: corruption must surface, not be papered over.
	ErrChecksumMismatch = errors.New("draas: checksum mismatch")
	// ErrInvalid means the input is invalid (a bad size, a misaligned write, a
	// malformed plan). The error message names the input and the fix. It is
	// never retried.
	ErrInvalid = errors.New("draas: invalid input")
	// ErrConflict means the resource exists in a state that forbids the
	// request (a record that already exists, a snapshot still pending).
	ErrConflict = errors.New("draas: conflict")
	// ErrClosed means the sink was already committed or aborted.
	ErrClosed = errors.New("draas: sink closed")
)

// IsRetryable reports whether err may succeed if the same idempotent operation
// is repeated: throttling and transient failures are; checksum mismatches,
// invalid input, missing resources, conflicts and cancellations are not, even
// when wrapped together with a retryable error.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	for _, never := range []error{ErrChecksumMismatch, ErrInvalid, ErrNotFound, ErrConflict, ErrClosed, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, never) {
			return false
		}
	}
	if errors.Is(err, ErrThrottled) || errors.Is(err, ErrTransient) {
		return true
	}
	var t interface{ Timeout() bool }
	if errors.As(err, &t) && t.Timeout() {
		return true
	}
	return false
}

// OpError records an operation on a resource that failed. It wraps both a
// sentinel (Kind) and the underlying cause (Err), so errors.Is matches either
// and errors.As reaches the SDK's own error types.
type OpError struct {
	Op       string // the operation, e.g. "PutSnapshotBlock"
	Resource string // the resource, e.g. "snap-0123 block 17"
	Kind     error  // a sentinel from this package, or nil
	Err      error  // the underlying cause, or nil
}

func (e *OpError) Error() string {
	msg := e.Op
	if e.Resource != "" {
		msg += " " + e.Resource
	}
	switch {
	case e.Err != nil:
		msg += ": " + e.Err.Error()
	case e.Kind != nil:
		msg += ": " + e.Kind.Error()
	}
	return msg
}

// Unwrap returns the sentinel and the cause.
func (e *OpError) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Invalidf returns an error wrapping [ErrInvalid] with a formatted message.
// The message should name the bad input and say how to fix it.
func Invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Extent is a byte range of a disk: Length bytes starting at Offset.
type Extent struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// End returns the offset just past the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// NormalizeExtents returns the extents sorted by offset, with empty extents
// dropped and overlapping or adjacent ones merged. The input is not modified.
func NormalizeExtents(exts []Extent) []Extent {
	out := make([]Extent, 0, len(exts))
	for _, e := range exts {
		if e.Length > 0 {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	merged := out[:0]
	for _, e := range out {
		if n := len(merged); n > 0 && e.Offset <= merged[n-1].End() {
			if e.End() > merged[n-1].End() {
				merged[n-1].Length = e.End() - merged[n-1].Offset
			}
			continue
		}
		merged = append(merged, e)
	}
	return merged
}

// BlockSource is a disk that can be read: Size bytes, read with ReadAt.
//
// ReadAt reads len(p) bytes starting at byte offset off. It returns the number
// of bytes read; when n < len(p) it returns a non-nil error, which is io.EOF
// when the read reached Size. Reads of regions that were never written
// (holes) return zeros. ReadAt MUST be safe for concurrent calls, MUST NOT
// retain p after it returns, and MUST honour ctx. A source reads the same
// bytes each time unless the underlying disk changes.
type BlockSource interface {
	// Size returns the disk's size in bytes. It does not change.
	Size() int64
	// BlockSize returns the source's natural read granularity in bytes (a
	// VMDK grain, an EBS block), or 0 when any size reads equally well.
	// Readers may use any size; this is a hint for efficiency.
	BlockSize() int
	ReadAt(ctx context.Context, p []byte, off int64) (n int, err error)
}

// Block is one block handed to a [VolumeSink].
type Block struct {
	// Index is Offset / BlockSize of the sink.
	Index int64
	// Offset is the block's byte offset in the disk.
	Offset int64
	// Data holds the block's bytes. Its length is the sink's BlockSize,
	// except for the last block of a disk whose size is not a multiple of the
	// block size, which is shorter. The sink MUST NOT retain Data after
	// WriteBlock returns.
	Data []byte
	// Checksum is the SHA-256 of Data, computed once by the copier.
	Checksum [32]byte
}

// VolumeSink is a disk being written: blocks are written, then the result is
// committed (made durable and visible, e.g. an EBS snapshot completed) or
// aborted (nothing left that looks complete).
//
// WriteBlock MUST be safe for concurrent calls with different blocks and
// idempotent: writing the same block twice with the same data leaves the same
// result, so that retried and resumed copies are correct. Blocks are aligned
// to BlockSize. Commit and Abort are each called at most once, after all
// WriteBlock calls have returned; after either, WriteBlock returns
// [ErrClosed]. A sink that was never committed MUST be aborted by its user;
// Abort after a failed Commit is allowed and cleans up what it can.
type VolumeSink interface {
	// BlockSize returns the size of the blocks the sink accepts, in bytes. It
	// is positive and constant.
	BlockSize() int
	WriteBlock(ctx context.Context, b Block) error
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}

// ExtentSource is a [BlockSource] that knows which parts of the disk are
// allocated. Everything outside the returned extents reads as zeros; inside
// them data may still be zero. The extents are sorted and do not overlap.
type ExtentSource interface {
	BlockSource
	AllocatedExtents(ctx context.Context) ([]Extent, error)
}

// ChangeTracker is a [BlockSource] that can tell which extents changed since
// an earlier version of the same disk, named by base (a snapshot ID, a
// recovery point, a CBT change ID). Everything outside the returned extents is
// identical in both versions. It returns an error wrapping [ErrNotFound] when
// base is unknown, and the caller then falls back to a full copy.
type ChangeTracker interface {
	BlockSource
	ChangedExtents(ctx context.Context, base string) ([]Extent, error)
}

// ChecksumSource is a [BlockSource] whose storage records a SHA-256 per block
// (an EBS snapshot, a content-addressed backup store). ReadBlock reads the
// block at off, which is aligned to BlockSize, into p and returns the
// checksum the storage recorded for it. The copier compares it with the
// SHA-256 of the bytes it got, so corruption anywhere between storage and
// copier fails with [ErrChecksumMismatch]. For blocks the storage does not
// hold (holes), ok is false and p is zeroed.
type ChecksumSource interface {
	BlockSource
	ReadBlock(ctx context.Context, p []byte, off int64) (sum [32]byte, ok bool, err error)
}

// ZeroWriteSink is a [VolumeSink] that may need all-zero blocks written, for
// example an incremental EBS snapshot whose parent holds data where the new
// disk has zeros, or an existing block device. When NeedsZeroWrites returns
// false (and for sinks that do not implement this interface) unwritten blocks
// read as zeros and the copier skips zero blocks.
type ZeroWriteSink interface {
	VolumeSink
	NeedsZeroWrites() bool
}

// Flusher is a [VolumeSink] whose written blocks become durable only when
// flushed (fsync). The copier flushes before it records blocks as done in a
// checkpoint.
type Flusher interface {
	Flush(ctx context.Context) error
}

// ResumableSink is a [VolumeSink] that can describe what it has written so
// far, so that a copy killed half-way continues into the same target: the
// copier saves ResumeState with its checkpoint (after a flush), and the
// sink's package offers a constructor that takes the state back. The state
// covers at least every block whose WriteBlock returned before the call.
//
// Target names what the sink writes (a snapshot ID, a point and disk, a
// volume ID): the same for a sink and a sink resumed from its state, and
// different for any other target. The copier applies a checkpoint only to a
// sink with the Target it recorded, so blocks recorded as done are never
// skipped on a new, empty target.
type ResumableSink interface {
	VolumeSink
	ResumeState() ([]byte, error)
	Target() string
}

// VerifiableSink is a [VolumeSink] whose committed result can be read back,
// for the copier's verify pass. Committed is called only after Commit
// returned nil. When the returned source is also an io.Closer, the caller
// closes it.
type VerifiableSink interface {
	VolumeSink
	Committed(ctx context.Context) (BlockSource, error)
}

// Wrapper is implemented by wrappers (retry, rate limit, metrics) around a
// source or sink, so that helpers can find capabilities of the wrapped value.
//
// [As] returns the outermost value in the chain that has a capability. A
// wrapper that intercepts data (faults, rate limits, metrics) therefore
// implements the data-path capabilities it wraps ([ChecksumSource.ReadBlock],
// [Flusher], [VerifiableSink]) itself, or they would bypass it; metadata
// capabilities ([ExtentSource], [ChangeTracker], [ZeroWriteSink]) are safely
// found on the inner value.
type Wrapper interface {
	Unwrap() any
}

// As finds the first value in the chain of [Wrapper]s starting at v that
// implements T, and returns it.
func As[T any](v any) (T, bool) {
	for v != nil {
		if t, ok := v.(T); ok {
			return t, true
		}
		w, ok := v.(Wrapper)
		if !ok {
			break
		}
		v = w.Unwrap()
	}
	var zero T
	return zero, false
}

// AllocatedExtents returns the allocated extents of src: those its
// [ExtentSource] reports, or the whole disk when it has no such capability.
func AllocatedExtents(ctx context.Context, src BlockSource) ([]Extent, error) {
	if es, ok := As[ExtentSource](src); ok {
		exts, err := es.AllocatedExtents(ctx)
		if err != nil {
			return nil, err
		}
		return NormalizeExtents(exts), nil
	}
	if src.Size() == 0 {
		return nil, nil
	}
	return []Extent{{Offset: 0, Length: src.Size()}}, nil
}

// ChangedExtents returns the extents of src that changed since base, or an
// error wrapping [ErrNotFound] when src cannot tell (no [ChangeTracker], or an
// unknown base); callers then copy the allocated extents instead.
func ChangedExtents(ctx context.Context, src BlockSource, base string) ([]Extent, error) {
	ct, ok := As[ChangeTracker](src)
	if !ok {
		return nil, fmt.Errorf("changed extents since %q: source tracks no changes: %w", base, ErrNotFound)
	}
	exts, err := ct.ChangedExtents(ctx, base)
	if err != nil {
		return nil, err
	}
	return NormalizeExtents(exts), nil
}

// NeedsZeroWrites reports whether the copier must write all-zero blocks to
// sink (see [ZeroWriteSink]).
func NeedsZeroWrites(sink VolumeSink) bool {
	z, ok := As[ZeroWriteSink](sink)
	return ok && z.NeedsZeroWrites()
}

// Tag keys that draas puts on the AWS resources it creates, so that state
// lives with the data: a DR copy is found by its tags, and a drill's resources
// are found for cleanup.
const (
	TagVM            = "draas:vm"
	TagPlan          = "draas:plan"
	TagDisk          = "draas:disk"
	TagDiskIndex     = "draas:disk-index"
	TagRecoveryPoint = "draas:recovery-point"
	TagChecksum      = "draas:checksum"
	TagDrill         = "draas:drill"
	TagRole          = "draas:role"
	TagPointTime     = "draas:point-time"
	TagSize          = "draas:size"
	TagComplete      = "draas:complete"
)

// VM is a protected virtual machine as replication and backups know it: a
// name and its hardware and disks. (plan.VM, in a plan file, says how the VM
// fails over; plan.Plan.ReplicationPlan turns it into this VM.)
type VM struct {
	// Name identifies the VM within its plan; it is the key for backups and
	// DR copies.
	Name string `json:"name" yaml:"name"`
	// CPUs and MemoryMiB describe its shape.
	CPUs      int   `json:"cpus,omitempty" yaml:"cpus,omitempty"`
	MemoryMiB int64 `json:"memoryMiB,omitempty" yaml:"memoryMiB,omitempty"`
	// Firmware is "bios" or "efi".
	Firmware string `json:"firmware,omitempty" yaml:"firmware,omitempty"`
	// Disks in controller order; the first is the boot disk.
	Disks []Disk `json:"disks" yaml:"disks"`
	// Networks the VM's NICs connect to, in order.
	Networks []string `json:"networks,omitempty" yaml:"networks,omitempty"`
}

// Disk is one virtual disk of a VM.
type Disk struct {
	// Name is stable across backups, e.g. "disk-0" or a vSphere disk key.
	Name string `json:"name" yaml:"name"`
	// Size in bytes.
	Size int64 `json:"size" yaml:"size"`
	// ChangeID, in a recovery point, is the hypervisor's change-tracking ID
	// of the disk at that point (a vSphere CBT change ID): the base from
	// which the next backup reads only changed areas.
	ChangeID string `json:"changeId,omitempty" yaml:"-"`
}

// RecoveryPoint is a consistent backup of all disks of a VM at one time,
// stored in a backup store.
type RecoveryPoint struct {
	VM string `json:"vm"`
	// ID is unique per VM and sorts in time order.
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Disks   []Disk    `json:"disks"`
	Comment string    `json:"comment,omitempty"`
}

// BackupReader is the read side of a backup store: what replication and
// restores need. Implementations MUST be safe for concurrent use.
type BackupReader interface {
	// Points lists a VM's committed recovery points, oldest first. A VM
	// without any has none (an empty list, no error). Points still being
	// written or aborted are never listed. A store MAY skip a point whose
	// record is damaged ([ErrChecksumMismatch]) or unreadable by this
	// version ([ErrInvalid]): it then returns the other points together
	// with an error wrapping that sentinel and naming each skipped point.
	// Callers that cannot use a partial list treat any error as failure.
	Points(ctx context.Context, vm string) ([]RecoveryPoint, error)
	// OpenDisk opens a disk of a committed recovery point, or returns an
	// error wrapping [ErrNotFound] when the VM, point or disk does not
	// exist. The source should be a [ChangeTracker] whose bases are
	// recovery point IDs of the same VM and disk, so that incremental
	// copies read only changed blocks. When it is also an io.Closer the
	// caller closes it.
	OpenDisk(ctx context.Context, vm, point, disk string) (BlockSource, error)
}

// BackupWriter is the write side of a backup store: what a backup needs.
// Implementations MUST be safe for concurrent use.
type BackupWriter interface {
	// Points is as in [BackupReader]: a backup reads the previous point's
	// disks (their change IDs) to copy only what changed since.
	Points(ctx context.Context, vm string) ([]RecoveryPoint, error)
	// BeginPoint starts a new recovery point of vm at time t with the given
	// disks. The point is invisible to Points until its Commit returns nil.
	BeginPoint(ctx context.Context, vm string, disks []Disk, t time.Time) (PointWriter, error)
}

// BackupStore is a backup store: both sides. Providers (the S3 store in
// aws/s3, the in-memory store in draastest) implement it directly.
type BackupStore interface {
	BackupReader
	BackupWriter
}

// PointWriter writes one recovery point, begun by [BackupWriter.BeginPoint].
// Every disk named at the start must be written and its sink committed
// before Commit. Commit and Abort are each called at most once; a point
// that was never committed MUST be aborted by its user, and then leaves
// nothing that Points lists.
type PointWriter interface {
	// ID returns the point's ID, as Points will list it.
	ID() string
	// DiskOnBase returns the sink of the named disk. When the store has an
	// earlier point of the VM with the same disk, the sink starts from that
	// disk's blocks (and is a [ZeroWriteSink] that needs zero writes), so
	// that writing only the changed extents gives the new disk; otherwise
	// it starts empty. The sink is committed before the point.
	DiskOnBase(ctx context.Context, name string) (VolumeSink, error)
	// Commit makes the point visible, atomically: Points lists it with all
	// its disks, or not at all.
	Commit(ctx context.Context) error
	// Abort discards the point; aborting after a failed Commit is allowed.
	Abort(ctx context.Context) error
}

// CopyState is the state of a DR copy's snapshot.
type CopyState string

// The states of a DR copy. Only a [CopyCompleted] copy marked Complete
// counts (see [CopySet.Complete]).
const (
	// CopyPending: the snapshot is being written or finalised.
	CopyPending CopyState = "pending"
	// CopyCompleted: the snapshot is complete and usable.
	CopyCompleted CopyState = "completed"
	// CopyError: the snapshot failed and can never complete.
	CopyError CopyState = "error"
	// CopyWriting: a copy still being written through a volume (the
	// proxy-volume path); it has no snapshot yet.
	CopyWriting CopyState = "writing"
)

// DRCopy is one disk's DR copy: an EBS snapshot made from a recovery point.
// A VM's DR copy is the set of its disks' DRCopy values with the same
// RecoveryPoint ([CopySet]); the set is complete (every member Complete and
// [CopyCompleted]) or it does not count.
type DRCopy struct {
	VM   string `json:"vm"`
	Plan string `json:"plan"`
	Disk string `json:"disk"`
	// DiskIndex is the disk's position in the VM (0 is the boot disk).
	DiskIndex     int       `json:"diskIndex"`
	RecoveryPoint string    `json:"recoveryPoint"`
	PointTime     time.Time `json:"pointTime"`
	SnapshotID    string    `json:"snapshotId"`
	// VolumeID is set instead of SnapshotID for a copy still being written
	// through a volume (the proxy-volume path): it has no snapshot yet.
	VolumeID string `json:"volumeId,omitempty"`
	// Parent is the snapshot the copy is incremental on, if any.
	Parent string `json:"parent,omitempty"`
	// Size is the disk's size in bytes (the snapshot holds whole GiB).
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	// State is the snapshot's state.
	State CopyState `json:"state"`
	// Complete is set once the whole set was copied and verified.
	Complete bool `json:"complete"`
	// Checksum summarises the blocks the copy wrote, for audits.
	Checksum string `json:"checksum,omitempty"`
}

// ID returns the copy's snapshot ID, or its volume ID while it has no
// snapshot.
func (c DRCopy) ID() string {
	if c.SnapshotID != "" {
		return c.SnapshotID
	}
	return c.VolumeID
}

// CopySet is a VM's DR copies of one recovery point, one per disk, in disk
// order (DiskIndex, then name).
type CopySet struct {
	RecoveryPoint string
	PointTime     time.Time
	Copies        []DRCopy
}

// Complete reports whether the set counts as a DR copy: it has copies and
// every one is marked Complete and its snapshot is [CopyCompleted]. A
// CopyStore marks copies complete only once every disk of the point was
// copied and verified, so a set whose every member is marked covers every
// disk of the VM.
func (s CopySet) Complete() bool {
	if len(s.Copies) == 0 {
		return false
	}
	for _, c := range s.Copies {
		if !c.Complete || c.State != CopyCompleted {
			return false
		}
	}
	return true
}

// Disk returns the set's copy of the named disk.
func (s CopySet) Disk(name string) (DRCopy, bool) {
	for _, c := range s.Copies {
		if c.Disk == name {
			return c, true
		}
	}
	return DRCopy{}, false
}

// SnapshotIDs returns the snapshots of the set's copies, in disk order.
func (s CopySet) SnapshotIDs() []string {
	ids := make([]string, len(s.Copies))
	for i, c := range s.Copies {
		ids[i] = c.SnapshotID
	}
	return ids
}

// CopySets groups a VM's DR copies (as [CopyStore.Copies] lists them) into
// sets by recovery point, oldest point first (by point time, then ID). When
// a disk has two copies for one point (a retried run), a complete one
// stands in the set and the other is an orphan, left out.
func CopySets(copies []DRCopy) []CopySet {
	byPoint := map[string]int{}
	var sets []CopySet
	for _, c := range copies {
		i, ok := byPoint[c.RecoveryPoint]
		if !ok {
			i = len(sets)
			byPoint[c.RecoveryPoint] = i
			sets = append(sets, CopySet{RecoveryPoint: c.RecoveryPoint, PointTime: c.PointTime})
		}
		s := &sets[i]
		if j := slices.IndexFunc(s.Copies, func(o DRCopy) bool { return o.Disk == c.Disk }); j >= 0 {
			if old := s.Copies[j]; !old.counts() && c.counts() {
				s.Copies[j] = c
			}
			continue
		}
		s.Copies = append(s.Copies, c)
	}
	for _, s := range sets {
		slices.SortStableFunc(s.Copies, func(a, b DRCopy) int {
			return cmp.Or(cmp.Compare(a.DiskIndex, b.DiskIndex), strings.Compare(a.Disk, b.Disk))
		})
	}
	slices.SortStableFunc(sets, func(a, b CopySet) int {
		return cmp.Or(a.PointTime.Compare(b.PointTime), strings.Compare(a.RecoveryPoint, b.RecoveryPoint))
	})
	return sets
}

// counts reports whether the copy may stand in a complete set.
func (c DRCopy) counts() bool { return c.Complete && c.State == CopyCompleted }

// LatestComplete returns the newest complete set among a VM's DR copies
// (see [CopySets] and [CopySet.Complete]), or false when there is none.
func LatestComplete(copies []DRCopy) (CopySet, bool) {
	sets := CopySets(copies)
	for i := len(sets) - 1; i >= 0; i-- {
		if sets[i].Complete() {
			return sets[i], true
		}
	}
	return CopySet{}, false
}

// CopyRequest asks a [CopyStore] for a new DR copy of one disk.
type CopyRequest struct {
	Plan, VM, Disk, RecoveryPoint string
	// DiskIndex is the disk's position in the VM (0 is the boot disk).
	DiskIndex int
	PointTime time.Time
	// Size of the disk in bytes.
	Size int64
	// Parent, when set, is the snapshot of the previous DR copy of this
	// disk: the new copy starts as its content, so only changed blocks (zero
	// ones included) need writing.
	Parent string
	// ClientToken makes creating the copy idempotent within one attempt.
	ClientToken string
}

// SnapshotSink is a [VolumeSink] whose committed result is a snapshot.
// SnapshotID returns its ID once known (before Commit for the EBS direct
// APIs, after Commit for the volume path).
type SnapshotSink interface {
	VolumeSink
	SnapshotID() string
}

// CopyStore keeps DR copies: EBS snapshots found by their tags, so that no
// other database is needed. Implementations tag every copy with the
// request's plan, VM, disk, recovery point and time when they create it.
type CopyStore interface {
	// Copies lists the DR copies of a VM in a plan in any state, oldest
	// first, including copies still being written (and those a killed
	// process left behind).
	Copies(ctx context.Context, plan, vm string) ([]DRCopy, error)
	// NewCopy starts a DR copy and returns the sink that writes it.
	NewCopy(ctx context.Context, req CopyRequest) (SnapshotSink, error)
	// ResumeCopy continues a copy from the state its sink saved (see
	// [ResumableSink]).
	ResumeCopy(ctx context.Context, req CopyRequest, state []byte) (SnapshotSink, error)
	// MarkComplete marks a set of copies, one per disk of a VM, complete,
	// recording each one's checksum summary, recovery point and point time
	// (a complete copy may be moved to a newer point of identical content).
	MarkComplete(ctx context.Context, copies []DRCopy) error
	// DeleteCopy deletes a copy by its ID (see [DRCopy.ID]): its snapshot,
	// or the volume of a copy still being written. A missing one is not an
	// error.
	DeleteCopy(ctx context.Context, id string) error
}

// Plan is the part of a DR plan that replication needs: the VMs it
// protects, how often they are replicated and how many copies to keep.
// The full plan file, with failover, DNS and drill settings, is plan.Plan
// (package plan), which failover and failback take; plan.Plan's
// ReplicationPlan method returns this Plan for replicate.New.
type Plan struct {
	Name string `json:"name" yaml:"name"`
	VMs  []VM   `json:"vms" yaml:"vms"`
	// ReplicationInterval is the replication frequency.
	ReplicationInterval time.Duration `json:"replicationInterval" yaml:"replicationInterval"`
	// KeepCopies is how many DR copies to keep per VM; 0 means 1 (latest).
	KeepCopies int `json:"keepCopies,omitempty" yaml:"keepCopies,omitempty"`
	// RPO is the recovery point objective that status reports compare
	// against; 0 means twice the replication interval.
	RPO time.Duration `json:"rpo,omitempty" yaml:"rpo,omitempty"`
}

// Shape is the hardware shape of a machine: what failback reads from an EC2
// instance and creates in vSphere.
type Shape struct {
	CPUs      int    `json:"cpus"`
	MemoryMiB int64  `json:"memoryMiB"`
	Firmware  string `json:"firmware,omitempty"`
	// Disks in device order, the boot disk first.
	Disks []Disk `json:"disks"`
}

// VolumeRequest asks an [InstanceLauncher] for a volume made from a snapshot.
type VolumeRequest struct {
	SnapshotID       string
	AvailabilityZone string
	// VolumeType such as "gp3"; empty lets the implementation choose.
	VolumeType string
	// SizeGiB, when larger than the snapshot, grows the volume.
	SizeGiB int32
	Tags    map[string]string
	// ClientToken makes the request idempotent: a retried request with the
	// same token returns the same volume.
	ClientToken string
}

// LaunchRequest asks an [InstanceLauncher] for an instance.
type LaunchRequest struct {
	Name             string
	InstanceType     string
	ImageID          string
	SubnetID         string
	SecurityGroupIDs []string
	PrivateIP        string
	UserData         []byte
	Tags             map[string]string
	// RootVolumeID, when set, is swapped in as the root volume before the
	// instance is started.
	RootVolumeID string
	// DataVolumeIDs are attached in order after the root volume.
	DataVolumeIDs []string
	ClientToken   string
}

// Instance is a launched instance.
type Instance struct {
	ID           string
	InstanceType string
	State        string
	PrivateIP    string
	SubnetID     string
	VolumeIDs    []string
}

// InstanceStatus is the health of an instance as the cloud reports it.
type InstanceStatus struct {
	State string
	// SystemOK and InstanceOK are the two EC2 status checks.
	SystemOK   bool
	InstanceOK bool
}

// InstanceLauncher turns DR copies into running instances (EC2). All create
// calls are idempotent through client tokens. Implementations wait for the
// state the method promises before returning.
type InstanceLauncher interface {
	// CreateVolume makes a volume from a snapshot and waits until it is
	// available; it returns the volume ID.
	CreateVolume(ctx context.Context, req VolumeRequest) (string, error)
	// DeleteVolume deletes a volume; a missing volume is not an error.
	DeleteVolume(ctx context.Context, volumeID string) error
	// Launch creates an instance, swaps in the requested volumes, starts it
	// and waits until it runs.
	Launch(ctx context.Context, req LaunchRequest) (Instance, error)
	// Status returns an instance's state and status checks.
	Status(ctx context.Context, instanceID string) (InstanceStatus, error)
	// Stop stops an instance and waits until it is stopped.
	Stop(ctx context.Context, instanceID string) error
	// Terminate terminates an instance; a missing instance is not an error.
	Terminate(ctx context.Context, instanceID string) error
	// Shape returns an instance's CPUs, memory and volumes.
	Shape(ctx context.Context, instanceID string) (Shape, error)
}

// InstanceSnapshotter is an [InstanceLauncher] that can snapshot all of an
// instance's volumes at one instant (crash-consistent), for failback.
type InstanceSnapshotter interface {
	// SnapshotInstance snapshots every volume of the instance at once,
	// waits until the snapshots are completed, and returns their IDs in the
	// instance's disk order (boot disk first).
	SnapshotInstance(ctx context.Context, instanceID string, tags map[string]string) ([]string, error)
	// DeleteSnapshot deletes a snapshot; a missing one is not an error.
	DeleteSnapshot(ctx context.Context, snapshotID string) error
}

// VMRequest asks a [Hypervisor] for a new VM.
type VMRequest struct {
	Name       string
	Shape      Shape
	Datacenter string
	Cluster    string
	Host       string
	Folder     string
	Datastore  string
	Network    string
}

// Hypervisor is the on-premises side (vSphere): read a VM's shape and disks,
// create a VM of a shape, write its disks, and power it.
type Hypervisor interface {
	// VMShape returns the shape of the named VM.
	VMShape(ctx context.Context, name string) (Shape, error)
	// CreateVM creates a powered-off VM with empty disks of the requested
	// shape. Creating a VM that already exists with the same shape returns
	// it unchanged.
	CreateVM(ctx context.Context, req VMRequest) error
	// OpenDisk returns a sink that writes the VM's i-th disk in place:
	// blocks not written keep their content (the sink needs zero writes once
	// the disk holds data), so an incremental copy onto an earlier full one
	// is correct. The VM must be powered off.
	OpenDisk(ctx context.Context, vm string, disk int) (VolumeSink, error)
	// ReadDisk returns a source that reads the VM's i-th disk.
	ReadDisk(ctx context.Context, vm string, disk int) (BlockSource, error)
	// PowerOn and PowerOff change the VM's power state and wait for it.
	PowerOn(ctx context.Context, vm string) error
	PowerOff(ctx context.Context, vm string) error
}

// Record is one DNS resource record set as a [DNS] provider stores it,
// with its zone and values. (plan.Record is what a plan file asks for: a
// name pointed at a VM, turned into this Record when the VM fails over.)
type Record struct {
	Zone string `json:"zone"`
	// Name is the fully qualified name, e.g. "db.example.com.".
	Name string `json:"name"`
	// Type is "A" or "CNAME".
	Type   string        `json:"type"`
	TTL    time.Duration `json:"ttl"`
	Values []string      `json:"values"`
}

// DNS points names at addresses: Route53 in AWS, RFC 2136 on premises. It
// is the provider interface; plan.DNS is a plan file's zone settings.
type DNS interface {
	// Upsert creates or replaces the record and waits until the change is
	// in effect.
	Upsert(ctx context.Context, r Record) error
	// Lookup returns the record set with the given zone, name and type, or
	// an error wrapping [ErrNotFound].
	Lookup(ctx context.Context, zone, name, typ string) (Record, error)
	// Delete removes the record set; a missing record is not an error.
	Delete(ctx context.Context, r Record) error
}
