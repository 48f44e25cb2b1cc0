package draastest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/opendraas/draas"
)

// SinkOptions configures a [Sink]. The zero value is a fresh sink onto an
// all-zero disk that does not need zero blocks written.
type SinkOptions struct {
	// NeedsZeroWrites is what the sink's NeedsZeroWrites reports. Set it with
	// Base, as an incremental EBS snapshot needs zeros written where its
	// parent holds data.
	NeedsZeroWrites bool
	// Base, when set, is the parent of an incremental sink: the sink's disk
	// starts as a copy of Base's content (cut or extended to the sink's
	// size). Base itself is not modified.
	Base *Disk
}

// SinkState is the lifecycle state of a [Sink].
type SinkState int

// The states of a [Sink].
const (
	SinkOpen      SinkState = iota // accepting writes
	SinkCommitted                  // Commit succeeded
	SinkAborted                    // Abort was called
)

// String returns "open", "committed" or "aborted".
func (s SinkState) String() string {
	switch s {
	case SinkOpen:
		return "open"
	case SinkCommitted:
		return "committed"
	case SinkAborted:
		return "aborted"
	}
	return fmt.Sprintf("SinkState(%d)", int(s))
}

// Sink is an in-memory draas.VolumeSink that writes into a [Disk]. Like EBS
// it checks that each block's Checksum is the SHA-256 of its Data and rejects
// the block with an error wrapping draas.ErrChecksumMismatch otherwise, and it
// rejects misaligned, oversized and wrongly sized blocks with an error wrapping
// draas.ErrInvalid. It records what it was asked to do, for tests to assert.
//
// A Sink is also a draas.ZeroWriteSink, draas.Flusher, draas.VerifiableSink
// and draas.ResumableSink; wrap it in [PlainSink] to hide them. All methods are
// safe for concurrent use.
type Sink struct {
	disk      *Disk
	needsZero bool
	inPlace   bool // the disk is someone else's (a VM disk): Abort keeps it
	target    string

	// life holds off Commit and Abort while WriteBlock and Flush run, so
	// that no write lands after either.
	life       draas.SinkLifecycle
	statsMu    sync.Mutex
	writes     int64
	zeroWrites int64
	flushes    int64
	perBlock   map[int64]int
}

var (
	_ draas.VolumeSink     = (*Sink)(nil)
	_ draas.ZeroWriteSink  = (*Sink)(nil)
	_ draas.Flusher        = (*Sink)(nil)
	_ draas.VerifiableSink = (*Sink)(nil)
	_ draas.ResumableSink  = (*Sink)(nil)
)

// NewSink returns an open sink of size bytes accepting blocks of blockSize
// bytes (0 or less means [DefaultBlockSize]).
func NewSink(size int64, blockSize int, opts SinkOptions) *Sink {
	if blockSize <= 0 {
		blockSize = DefaultBlockSize
	}
	var d *Disk
	if opts.Base != nil {
		d = opts.Base.CloneSize(size)
		if d.bs != blockSize {
			d = DiskFrom(d.Bytes(), blockSize)
		}
	} else {
		d = NewDisk(size, blockSize)
	}
	return newSinkOn(d, opts.NeedsZeroWrites, false, fmt.Sprintf("draastest-sink-%d", sinks.Add(1)))
}

// sinks numbers the sinks NewSink makes, for their targets.
var sinks atomic.Int64

// newSinkOn returns a sink writing into d in place under the given target.
func newSinkOn(d *Disk, needsZero, inPlace bool, target string) *Sink {
	return &Sink{disk: d, needsZero: needsZero, inPlace: inPlace, target: target, perBlock: map[int64]int{}}
}

// Target implements draas.ResumableSink: "draastest-sink-N", unique to each
// sink NewSink makes, or "draastest-vm://VM/disk-I" for a sink from
// [Hypervisor.OpenDisk], which writes the same disk each time. An in-memory
// sink does not outlive the process, so a test resumes a copy by passing the
// same Sink again.
func (s *Sink) Target() string { return s.target }

// ResumeState implements draas.ResumableSink: it returns the target.
func (s *Sink) ResumeState() ([]byte, error) { return []byte(s.target), nil }

// BlockSize returns the size of the blocks the sink accepts.
func (s *Sink) BlockSize() int { return s.disk.bs }

// Size returns the size of the disk the sink writes.
func (s *Sink) Size() int64 { return s.disk.size }

// NeedsZeroWrites reports the SinkOptions.NeedsZeroWrites the sink was made
// with.
func (s *Sink) NeedsZeroWrites() bool { return s.needsZero }

// WriteBlock stores b after checking it: after Commit or Abort it returns
// draas.ErrClosed; a block that is misaligned, whose Index does not match its
// Offset, that ends past the disk, or that is short without being the last
// block fails with draas.ErrInvalid; a block whose Checksum is not the SHA-256
// of its Data fails with draas.ErrChecksumMismatch. Rejected blocks are not
// counted. WriteBlock does not retain b.Data.
func (s *Sink) WriteBlock(ctx context.Context, b draas.Block) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.life.BeginWrite(); err != nil {
		return fmt.Errorf("draastest: write block at offset %d: %w", b.Offset, err)
	}
	defer s.life.EndWrite()
	if err := draas.CheckBlock(b, s.disk.bs, s.disk.size); err != nil {
		return fmt.Errorf("draastest: write: %w", err)
	}
	if sha256.Sum256(b.Data) != b.Checksum {
		return fmt.Errorf("draastest: write block %d at offset %d: SHA-256 of the data does not match the block's checksum: %w", b.Index, b.Offset, draas.ErrChecksumMismatch)
	}
	s.disk.writeBlock(b.Index, b.Data, b.Checksum)
	s.statsMu.Lock()
	s.writes++
	s.perBlock[b.Index]++
	if draas.IsZero(b.Data) {
		s.zeroWrites++
	}
	s.statsMu.Unlock()
	return nil
}

// Flush implements draas.Flusher; it only counts the call. It returns
// draas.ErrClosed after Commit or Abort.
func (s *Sink) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.life.BeginWrite(); err != nil {
		return fmt.Errorf("draastest: flush: %w", err)
	}
	defer s.life.EndWrite()
	s.statsMu.Lock()
	s.flushes++
	s.statsMu.Unlock()
	return nil
}

// Commit makes the written disk the committed result. It returns
// draas.ErrClosed when the sink was already committed or aborted.
func (s *Sink) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.life.BeginCommit(); err != nil {
		return fmt.Errorf("draastest: commit: %w", err)
	}
	return s.life.EndCommit(nil)
}

// Abort discards the sink: nothing is committed, and further writes fail
// with draas.ErrClosed. (A sink returned by [Hypervisor.OpenDisk] writes in
// place, so the written blocks stay on the VM's disk, as on a real one.)
// Aborting twice is not an error; aborting a committed sink changes nothing
// and returns draas.ErrClosed.
func (s *Sink) Abort(ctx context.Context) error {
	if _, err := s.life.BeginAbort(); err != nil {
		return fmt.Errorf("draastest: abort: %w", err)
	}
	return nil
}

// Committed implements draas.VerifiableSink: it returns the committed disk,
// or an error wrapping draas.ErrNotFound before a successful Commit.
func (s *Sink) Committed(ctx context.Context) (draas.BlockSource, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if st := s.State(); st != SinkCommitted {
		return nil, fmt.Errorf("draastest: committed result of a sink that is %s: %w", st, draas.ErrNotFound)
	}
	return s.disk, nil
}

// Disk returns the disk the sink writes into, in whatever state it is.
func (s *Sink) Disk() *Disk { return s.disk }

// State returns the sink's lifecycle state.
func (s *Sink) State() SinkState {
	switch s.life.Phase() {
	case draas.SinkCommitted:
		return SinkCommitted
	case draas.SinkAborted:
		return SinkAborted
	}
	return SinkOpen
}

// Writes returns the number of blocks the sink accepted (rejected calls are
// not counted; wrap the sink in [FaultySink] to count every call).
func (s *Sink) Writes() int64 {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.writes
}

// WritesOf returns the number of times the block with the given index was
// accepted.
func (s *Sink) WritesOf(index int64) int {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.perBlock[index]
}

// ZeroWrites returns the number of accepted blocks that were all zeros.
func (s *Sink) ZeroWrites() int64 {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.zeroWrites
}

// Flushes returns the number of successful Flush calls.
func (s *Sink) Flushes() int64 {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.flushes
}

// PlainSink returns a draas.VolumeSink that writes into dst but has none of
// its optional capabilities (no NeedsZeroWrites, Flush or Committed, and no
// Unwrap through which draas.As could find them), so that tests exercise the
// fallback paths of code that looks for them.
func PlainSink(dst draas.VolumeSink) draas.VolumeSink {
	return plainSink{dst}
}

type plainSink struct{ dst draas.VolumeSink }

func (s plainSink) BlockSize() int { return s.dst.BlockSize() }
func (s plainSink) WriteBlock(ctx context.Context, b draas.Block) error {
	return s.dst.WriteBlock(ctx, b)
}
func (s plainSink) Commit(ctx context.Context) error { return s.dst.Commit(ctx) }
func (s plainSink) Abort(ctx context.Context) error  { return s.dst.Abort(ctx) }
