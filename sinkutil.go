package draas

import (
	"bytes"
	"fmt"
	"sync"
)

// This file holds the rules every VolumeSink shares, so that each sink (and
// each third-party one) applies them the same way instead of coding them
// again: which blocks a sink accepts ([CheckBlock]), whether a block is all
// zeros ([IsZero]), and the open → committed | aborted lifecycle with
// [ErrClosed] after it ([SinkLifecycle]).

// zeros is compared against by IsZero; 64 KiB keeps it in cache.
var zeros [64 << 10]byte

// IsZero reports whether every byte of p is zero. It compares p with a slab
// of zeros by bytes.Equal, which the runtime vectorises: several times faster
// than a loop over the bytes, and as fast on a block of data, where the first
// bytes already decide.
func IsZero(p []byte) bool {
	for len(p) > len(zeros) {
		if !bytes.Equal(p[:len(zeros)], zeros[:]) {
			return false
		}
		p = p[len(zeros):]
	}
	return bytes.Equal(p, zeros[:len(p)])
}

// CheckBlock returns an error wrapping [ErrInvalid] unless b is a block that
// a sink accepting blocks of blockSize bytes takes for a disk of size bytes:
// b.Offset is a multiple of blockSize in [0, size), b.Index is
// b.Offset/blockSize, and b.Data holds blockSize bytes, or, for the disk's
// last block, the size-b.Offset bytes up to the end. The error names the
// block and the rule; a sink adds what it writes to, as in
//
//	if err := draas.CheckBlock(b, s.blockSize, s.size); err != nil {
//		return fmt.Errorf("mysink: write %s: %w", s.name, err)
//	}
func CheckBlock(b Block, blockSize int, size int64) error {
	return CheckBlockRounded(b, blockSize, size, size)
}

// CheckBlockRounded is [CheckBlock] for a sink that holds more than the disk
// it is given: rounded bytes (rounded >= size), the disk's size rounded up to
// the storage's granularity (whole sectors of a VMDK, whole GiB of an EBS
// snapshot). It also accepts blocks between size and rounded, and a last
// block of the disk that ends anywhere from size to rounded (the copier's
// short last block, or a block padded up to the granularity).
func CheckBlockRounded(b Block, blockSize int, size, rounded int64) error {
	bs := int64(blockSize)
	if bs <= 0 {
		return Invalidf("block %d at offset %d: the sink's block size %d is not positive", b.Index, b.Offset, bs)
	}
	n := int64(len(b.Data))
	switch {
	case b.Offset < 0 || b.Offset%bs != 0:
		return Invalidf("block %d at offset %d is not aligned to the block size %d; write blocks at multiples of BlockSize", b.Index, b.Offset, bs)
	case b.Index != b.Offset/bs:
		return Invalidf("block at offset %d has index %d, want Offset/BlockSize = %d", b.Offset, b.Index, b.Offset/bs)
	case b.Offset >= max(size, rounded):
		return Invalidf("block %d at offset %d starts past the disk's %d bytes", b.Index, b.Offset, max(size, rounded))
	}
	most := min(bs, max(size, rounded)-b.Offset)
	least := max(1, min(bs, size-b.Offset))
	if n < least || n > most {
		want := fmt.Sprint(least)
		if least != most {
			want = fmt.Sprintf("%d to %d", least, most)
		}
		return Invalidf("block %d at offset %d has %d bytes, want %s: blocks are BlockSize (%d) bytes and only the last block of the disk may be shorter", b.Index, b.Offset, n, want, bs)
	}
	return nil
}

// SinkPhase is where a [VolumeSink] is in its lifecycle; see [SinkLifecycle].
type SinkPhase int32

// The phases of a [SinkLifecycle].
const (
	// SinkOpen accepts writes; it is the zero value.
	SinkOpen SinkPhase = iota
	// SinkCommitting means Commit is running.
	SinkCommitting
	// SinkCommitFailed means Commit failed: Abort remains (and Commit again,
	// for a lifecycle with RetryCommit).
	SinkCommitFailed
	// SinkCommitted means Commit succeeded.
	SinkCommitted
	// SinkAborted means Abort was called.
	SinkAborted
	// SinkReleased means the sink let go of its target without Commit or
	// Abort, to be resumed later (a copy stopped with a checkpoint): only
	// Abort remains.
	SinkReleased
)

// String returns "open", "committing", "commit failed", "committed",
// "aborted" or "released".
func (p SinkPhase) String() string {
	switch p {
	case SinkOpen:
		return "open"
	case SinkCommitting:
		return "committing"
	case SinkCommitFailed:
		return "commit failed"
	case SinkCommitted:
		return "committed"
	case SinkAborted:
		return "aborted"
	case SinkReleased:
		return "released"
	}
	return fmt.Sprintf("SinkPhase(%d)", int(p))
}

// SinkLifecycle is the lifecycle that the [VolumeSink] contract gives every
// sink, in one place: writes are accepted while it is open; Commit and Abort
// wait until no write is in flight, so that no block lands after either; and
// afterwards WriteBlock (and Flush, and a second Commit) fail with an error
// wrapping [ErrClosed]. A sink holds one, and brackets its methods with it:
//
//	func (s *Sink) WriteBlock(ctx context.Context, b draas.Block) error {
//		if err := s.life.BeginWrite(); err != nil {
//			return fmt.Errorf("mysink: write block %d: %w", b.Index, err)
//		}
//		defer s.life.EndWrite()
//		...
//	}
//
//	func (s *Sink) Commit(ctx context.Context) error {
//		if err := s.life.BeginCommit(); err != nil {
//			return fmt.Errorf("mysink: commit: %w", err)
//		}
//		return s.life.EndCommit(s.commit(ctx))
//	}
//
//	func (s *Sink) Abort(ctx context.Context) error {
//		if cleanup, err := s.life.BeginAbort(); !cleanup {
//			return err // nil when already aborted; ErrClosed after Commit
//		}
//		return s.removeTemporaryData(ctx)
//	}
//
// The zero value is an open lifecycle. All methods are safe for concurrent
// use; a SinkLifecycle must not be copied after first use. BeginWrite is not
// reentrant: a method holding a write must not begin another one.
type SinkLifecycle struct {
	// RetryCommit lets Commit run again after a failed Commit, for a sink
	// whose commit may be repeated. Without it a failed Commit leaves only
	// Abort, as the VolumeSink contract requires of its callers. Set it
	// before the sink is used.
	RetryCommit bool

	// gate is held shared by writes in flight and exclusively, for a moment,
	// by the transitions out of SinkOpen, so that they wait for the writes.
	gate  sync.RWMutex
	mu    sync.Mutex // guards phase
	phase SinkPhase
}

// Phase returns the current phase. It does not wait for writes in flight.
func (l *SinkLifecycle) Phase() SinkPhase {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.phase
}

func (l *SinkLifecycle) closedError() error {
	return fmt.Errorf("sink is %s: %w", l.phase, ErrClosed)
}

// BeginWrite starts a write (WriteBlock, Flush): it returns an error wrapping
// [ErrClosed] unless the lifecycle is open; otherwise the write is in flight,
// holding off Commit and Abort, until the caller calls EndWrite.
func (l *SinkLifecycle) BeginWrite() error {
	l.gate.RLock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase != SinkOpen {
		l.gate.RUnlock()
		return l.closedError()
	}
	return nil
}

// EndWrite ends a write that BeginWrite started without error.
func (l *SinkLifecycle) EndWrite() { l.gate.RUnlock() }

// BeginCommit starts Commit: once no write is in flight it moves the
// lifecycle to [SinkCommitting], and further writes fail. It returns an error
// wrapping [ErrClosed] unless the lifecycle is open (or its Commit failed and
// RetryCommit is set). The caller must then call EndCommit.
func (l *SinkLifecycle) BeginCommit() error {
	l.gate.Lock()
	defer l.gate.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase != SinkOpen && !(l.phase == SinkCommitFailed && l.RetryCommit) {
		return l.closedError()
	}
	l.phase = SinkCommitting
	return nil
}

// EndCommit ends the Commit that BeginCommit started, with its result: when
// err is nil the lifecycle is committed, otherwise its commit failed. It
// returns err, or an error wrapping [ErrClosed] when the lifecycle was ended
// meanwhile by End (its container was aborted).
func (l *SinkLifecycle) EndCommit(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase != SinkCommitting {
		if err == nil {
			err = l.closedError()
		}
		return err
	}
	if err != nil {
		l.phase = SinkCommitFailed
		return err
	}
	l.phase = SinkCommitted
	return nil
}

// BeginAbort starts Abort: once no write is in flight it moves an open,
// released or failed-commit lifecycle to [SinkAborted] and reports true, and
// the caller then removes what the sink wrote. Otherwise it reports false
// with the reason: nil when the sink was already aborted (aborting twice is
// not an error), an error wrapping [ErrClosed] when it is committed (a sink
// whose stray Abort after Commit is a no-op drops it), and an error wrapping
// [ErrConflict] while Commit runs.
func (l *SinkLifecycle) BeginAbort() (cleanup bool, err error) {
	l.gate.Lock()
	defer l.gate.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.phase {
	case SinkAborted:
		return false, nil
	case SinkCommitted:
		return false, l.closedError()
	case SinkCommitting:
		return false, fmt.Errorf("sink is committing: Abort must wait for Commit to return: %w", ErrConflict)
	}
	l.phase = SinkAborted
	return true, nil
}

// Release moves an open lifecycle, or one whose Commit failed, to
// [SinkReleased] once no write is in flight, and reports whether it did; the
// caller then lets go of its target (closes its file) and keeps what it wrote
// for a later resume. Afterwards only Abort remains.
func (l *SinkLifecycle) Release() bool {
	l.gate.Lock()
	defer l.gate.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase != SinkOpen && l.phase != SinkCommitFailed {
		return false
	}
	l.phase = SinkReleased
	return true
}

// End moves the lifecycle to phase p (committed or aborted) at once, without
// waiting for writes in flight, unless it is already aborted: for a sink
// that is part of a larger unit ended as a whole (a disk of a backup point
// that is committed or aborted). A write in flight keeps running; the sink
// should check Phase before it records the write's result.
func (l *SinkLifecycle) End(p SinkPhase) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase != SinkAborted {
		l.phase = p
	}
}
