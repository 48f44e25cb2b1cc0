// Package blockcopy copies any draas.BlockSource into any draas.VolumeSink:
// in parallel with bounded memory, skipping holes and zero blocks, copying
// only given extents when asked, with SHA-256 per block computed once and
// handed to the sink, retries with backoff, a rate limit, progress events, an
// optional verify pass, and a checkpoint to resume a killed copy.
package blockcopy

import (
	"context"
	"errors"

	"github.com/opendraas/draas"
)

// ErrVerify marks a failed verify pass: the committed sink does not read back
// what the source holds. It comes wrapped together with
// draas.ErrChecksumMismatch.
var ErrVerify = errors.New("blockcopy: verify failed")

// Copy copies src into dst and commits dst. See [Options] for what it can do;
// the zero Options copies every allocated block.
//
// The sink's BlockSize sets the copy's block size. dst must be able to hold
// src.Size() bytes. On success the returned Stats describe the copy and dst is
// committed. On failure dst is aborted, unless opts.Checkpoint is set, in
// which case dst is left open for a later Copy to resume.
func Copy(ctx context.Context, dst draas.VolumeSink, src draas.BlockSource, opts Options) (Stats, error) {
	return copyImpl(ctx, dst, src, opts)
}
