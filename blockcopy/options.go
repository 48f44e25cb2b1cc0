package blockcopy

import (
	"context"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/retry"
)

// Options tunes a [Copy]. The zero value is useful: 8 blocks in flight, all
// allocated extents, no verify pass, no rate limit, the default retry policy,
// no checkpoint, no progress events.
type Options struct {
	// Concurrency is the number of blocks read, hashed and written at once;
	// 0 means 8, and more than the disk has blocks means one per block.
	// Peak memory is about (Concurrency+1) × the sink's block size, twice
	// that during the verify pass, and must fit in MemoryLimit.
	Concurrency int
	// MemoryLimit bounds the block buffers a copy allocates: Concurrency ×
	// the sink's block size, twice that with Verify. 0 means
	// [DefaultMemoryLimit]. A copy that would need more fails with
	// draas.ErrInvalid before it starts, saying the largest Concurrency that
	// fits.
	MemoryLimit int64
	// Extents, when non-nil, restricts the copy to these byte ranges (for
	// example the extents changed since the sink's parent); blocks outside
	// them are counted as unchanged and not read. They are rounded out to
	// the sink's block size. Nil means the source's allocated extents (see
	// draas.AllocatedExtents).
	Extents []draas.Extent
	// Verify adds a pass after Commit that reads every copied extent back
	// from the sink (which must be a draas.VerifiableSink) and from the
	// source, and fails with an error wrapping [ErrVerify] and
	// draas.ErrChecksumMismatch when they differ.
	Verify bool
	// RateLimit caps the bytes read per second; 0 means no limit.
	RateLimit int64
	// Retry is the policy for reads and writes that fail with a retryable
	// error (throttling, transient failures). Checksum and validation errors
	// are never retried.
	Retry retry.Policy
	// Checkpoint, when set, records which blocks are done so that a copy that
	// is cancelled or killed resumes where it stopped: a later Copy with the
	// same source, sink and extents writes only the blocks not yet recorded.
	// With a checkpoint, a failed copy leaves the sink open for that resume
	// (the caller calls Abort when it gives up); without one, a failed or
	// cancelled copy aborts the sink.
	Checkpoint CheckpointStore
	// CheckpointInterval is how often the checkpoint is saved; 0 means 2s.
	CheckpointInterval time.Duration
	// Progress, when set, receives progress events from one goroutine every
	// ProgressInterval and once at the end. It must not block for long.
	// To watch several copies running at once through one callback, tagged
	// with VM and disk, set it from a [ProgressMux].
	Progress func(Progress)
	// ProgressInterval is the time between progress events; 0 means 500ms.
	ProgressInterval time.Duration
}

// DefaultMemoryLimit is the block buffer budget of a copy whose
// Options.MemoryLimit is 0: room for 2,048 blocks of 512 KiB in flight,
// enough for an EBS copy at 150 ms per call to reach its per-snapshot
// ceiling, and far more than the default Concurrency needs.
const DefaultMemoryLimit = 1 << 30

// CheckpointStore keeps a copy's checkpoint: an opaque byte string.
// Implementations must make Save atomic (a reader sees the old or the new
// checkpoint, never a mix).
type CheckpointStore interface {
	// Load returns the saved checkpoint, or nil and no error if there is none.
	Load(ctx context.Context) ([]byte, error)
	// Save replaces the checkpoint.
	Save(ctx context.Context, data []byte) error
	// Delete removes the checkpoint; deleting a missing one is not an error.
	Delete(ctx context.Context) error
}

// Progress is a snapshot of a running copy. Byte counts are cumulative.
type Progress struct {
	// Total is the number of bytes the copy covers: the disk size.
	Total int64 `json:"total"`
	// Read counts bytes read from the source.
	Read int64 `json:"read"`
	// Written counts bytes written to the sink.
	Written int64 `json:"written"`
	// SkippedZero counts bytes not written because they were zero (holes and
	// all-zero blocks).
	SkippedZero int64 `json:"skippedZero"`
	// SkippedUnchanged counts bytes outside the copy's extents.
	SkippedUnchanged int64 `json:"skippedUnchanged"`
	// Resumed counts bytes a checkpoint recorded as already done.
	Resumed int64 `json:"resumed"`
	// Rate is the recent processing rate in bytes per second (read + skipped).
	Rate float64 `json:"rate"`
	// Elapsed is the time since the copy started; ETA the estimate of the
	// time left, 0 when unknown.
	Elapsed time.Duration `json:"elapsed"`
	ETA     time.Duration `json:"eta"`
	// Done is true in the last event.
	Done bool `json:"done"`
}

// Stats is what a finished (or failed) [Copy] did.
type Stats struct {
	Size      int64 `json:"size"`
	BlockSize int   `json:"blockSize"`
	// BlocksCopied and BytesCopied count the blocks written to the sink.
	BlocksCopied int64 `json:"blocksCopied"`
	BytesCopied  int64 `json:"bytesCopied"`
	// BlocksZero and BytesZero count blocks skipped because they were holes
	// or all zeros.
	BlocksZero int64 `json:"blocksZero"`
	BytesZero  int64 `json:"bytesZero"`
	// BlocksUnchanged and BytesUnchanged count blocks outside the extents.
	BlocksUnchanged int64 `json:"blocksUnchanged"`
	BytesUnchanged  int64 `json:"bytesUnchanged"`
	// BlocksResumed counts blocks a checkpoint recorded as already done.
	BlocksResumed int64 `json:"blocksResumed"`
	// BytesRead counts bytes read from the source, verify pass excluded.
	BytesRead int64 `json:"bytesRead"`
	// ReadRequests and WriteRequests count calls to the source and sink,
	// retries included.
	ReadRequests  int64 `json:"readRequests"`
	WriteRequests int64 `json:"writeRequests"`
	// Retries counts retried reads and writes.
	Retries int64 `json:"retries"`
	// Verified is true when the verify pass ran and matched.
	Verified bool `json:"verified"`
	// Duration is the wall time of the whole copy, verify pass included.
	Duration time.Duration `json:"duration"`
}
