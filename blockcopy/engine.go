package blockcopy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/opendraas/draas"
)

const (
	defaultConcurrency        = 8
	defaultCheckpointInterval = 2 * time.Second
	defaultProgressInterval   = 500 * time.Millisecond
)

// copier is the state of one Copy.
type copier struct {
	dst  draas.VolumeSink
	src  draas.BlockSource
	opts Options

	size      int64
	bs        int64
	nblocks   int64
	needZero  bool
	changed   bool // opts.Extents given: blocks outside are unchanged, not zero
	runs      []run
	csrc      draas.ChecksumSource // nil unless usable for this block size
	zero      []byte               // bs zero bytes, read-only
	zeroSum   [32]byte
	limiter   *rate.Limiter
	bufs      chan []byte
	vbufs     chan []byte // the verify pass's second buffers
	done      *bitmap
	ckpt      *checkpointer // nil without Options.Checkpoint
	start     time.Time
	verifySrc draas.VerifiableSink

	// counters, updated atomically
	blocksCopied, bytesCopied       atomic.Int64
	blocksZero, bytesZero           atomic.Int64
	blocksUnchanged, bytesUnchanged atomic.Int64
	blocksResumed, bytesResumed     atomic.Int64
	bytesRead                       atomic.Int64
	readReqs, writeReqs, retries    atomic.Int64
	verified                        atomic.Bool
}

// run is a range of blocks [first, end) that is either part of the copy's
// plan (in) or outside it.
type run struct {
	first, end int64
	in         bool
}

func copyImpl(ctx context.Context, dst draas.VolumeSink, src draas.BlockSource, opts Options) (st Stats, err error) {
	c, err := newCopier(ctx, dst, src, opts)
	if err != nil {
		// Nothing was written; a sink we cannot use is still the caller's to
		// abort unless it was handed to us for a copy that never started.
		if opts.Checkpoint == nil {
			_ = abort(ctx, dst)
		}
		return Stats{}, err
	}
	defer func() { st = c.stats() }()

	stopProgress := c.startProgress()
	err = c.copyBlocks(ctx)
	if err == nil {
		err = commit(ctx, dst)
		if err != nil {
			err = fmt.Errorf("commit: %w", err)
		}
	}
	if err == nil && opts.Checkpoint != nil {
		if derr := opts.Checkpoint.Delete(ctx); derr != nil {
			err = fmt.Errorf("delete checkpoint: %w", derr)
		}
	}
	stopProgress(err == nil)
	if err != nil {
		if opts.Checkpoint != nil {
			// Keep the sink for a resume; record what is done.
			if serr := c.saveCheckpoint(context.WithoutCancel(ctx), true); serr != nil {
				err = errors.Join(err, fmt.Errorf("save checkpoint: %w", serr))
			}
		} else if aerr := abort(ctx, dst); aerr != nil {
			err = errors.Join(err, fmt.Errorf("abort sink: %w", aerr))
		}
		return st, err
	}
	if opts.Verify {
		if verr := c.verify(ctx); verr != nil {
			return st, verr
		}
		c.verified.Store(true)
	}
	return st, nil
}

func newCopier(ctx context.Context, dst draas.VolumeSink, src draas.BlockSource, opts Options) (*copier, error) {
	if dst == nil || src == nil {
		return nil, draas.Invalidf("blockcopy: source and sink must not be nil")
	}
	bs := int64(dst.BlockSize())
	if bs <= 0 {
		return nil, draas.Invalidf("blockcopy: sink block size %d: a sink must report a positive BlockSize", bs)
	}
	size := src.Size()
	if size < 0 {
		return nil, draas.Invalidf("blockcopy: source size %d is negative", size)
	}
	c := &copier{
		dst:      dst,
		src:      src,
		opts:     opts,
		size:     size,
		bs:       bs,
		nblocks:  (size + bs - 1) / bs,
		needZero: draas.NeedsZeroWrites(dst),
		changed:  opts.Extents != nil,
		start:    time.Now(),
	}
	if c.opts.Concurrency <= 0 {
		c.opts.Concurrency = defaultConcurrency
	}
	// More blocks in flight than the disk has would only allocate buffers
	// that are never used.
	c.opts.Concurrency = int(max(1, min(int64(c.opts.Concurrency), c.nblocks)))
	if err := c.checkMemory(); err != nil {
		return nil, err
	}
	if c.opts.CheckpointInterval <= 0 {
		c.opts.CheckpointInterval = defaultCheckpointInterval
	}
	if c.opts.ProgressInterval <= 0 {
		c.opts.ProgressInterval = defaultProgressInterval
	}
	if opts.Verify {
		v, ok := draas.As[draas.VerifiableSink](dst)
		if !ok {
			return nil, draas.Invalidf("blockcopy: Options.Verify is set but the sink (%T) cannot be read back (it is no draas.VerifiableSink); unset Verify or verify by other means", dst)
		}
		c.verifySrc = v
	}
	if cs, ok := draas.As[draas.ChecksumSource](src); ok && int64(src.BlockSize()) == bs {
		c.csrc = cs
	}
	if opts.RateLimit > 0 {
		// A burst of one block keeps the rate smooth from the start.
		c.limiter = rate.NewLimiter(rate.Limit(opts.RateLimit), int(bs))
	}

	exts := opts.Extents
	if !c.changed {
		var err error
		exts, err = draas.AllocatedExtents(ctx, src)
		if err != nil {
			return nil, fmt.Errorf("blockcopy: allocated extents of source: %w", err)
		}
	}
	runs, err := planRuns(exts, size, bs)
	if err != nil {
		return nil, err
	}
	c.runs = runs

	c.zero = make([]byte, bs)
	c.zeroSum = sha256.Sum256(c.zero)
	c.bufs = make(chan []byte, c.opts.Concurrency)
	for range c.opts.Concurrency {
		c.bufs <- make([]byte, bs)
	}
	c.done = newBitmap(c.nblocks)
	if opts.Checkpoint != nil {
		if err := c.loadCheckpoint(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// checkMemory fails with draas.ErrInvalid when the copy's block buffers
// would exceed its memory limit.
func (c *copier) checkMemory() error {
	limit := c.opts.MemoryLimit
	if limit <= 0 {
		limit = DefaultMemoryLimit
	}
	perBlock := c.bs
	if c.opts.Verify {
		perBlock *= 2 // the verify pass holds a sink and a source buffer per block
	}
	fit := limit / perBlock
	if int64(c.opts.Concurrency) <= fit {
		return nil
	}
	if fit < 1 {
		return draas.Invalidf("blockcopy: one block of %d bytes (%d with Verify) does not fit in the memory limit of %d bytes; raise Options.MemoryLimit",
			c.bs, perBlock, limit)
	}
	twice := ""
	if c.opts.Verify {
		twice = ", two per block with Verify"
	}
	return draas.Invalidf("blockcopy: concurrency %d needs %d bytes of block buffers (blocks of %d bytes%s), more than the memory limit of %d bytes; use a concurrency of at most %d or raise Options.MemoryLimit",
		c.opts.Concurrency, int64(c.opts.Concurrency)*perBlock, c.bs, twice, limit, fit)
}

// planRuns turns extents into runs of whole blocks covering [0, nblocks).
func planRuns(exts []draas.Extent, size, bs int64) ([]run, error) {
	for _, e := range exts {
		if e.Offset < 0 || e.Length < 0 {
			return nil, draas.Invalidf("blockcopy: extent {offset %d, length %d} is negative", e.Offset, e.Length)
		}
	}
	nblocks := (size + bs - 1) / bs
	var runs []run
	var cur int64
	for _, e := range draas.NormalizeExtents(exts) {
		if e.Offset >= size {
			break
		}
		first := e.Offset / bs
		end := min((min(e.End(), size)+bs-1)/bs, nblocks)
		first = max(first, cur)
		if first >= end {
			continue
		}
		if first > cur {
			runs = append(runs, run{cur, first, false})
		}
		if n := len(runs); n > 0 && runs[n-1].in && runs[n-1].end == first {
			runs[n-1].end = end
		} else {
			runs = append(runs, run{first, end, true})
		}
		cur = end
	}
	if cur < nblocks {
		runs = append(runs, run{cur, nblocks, false})
	}
	return runs, nil
}

func (c *copier) blockLen(i int64) int64 {
	return min(c.bs, c.size-i*c.bs)
}

// copyBlocks walks the plan and copies the blocks in parallel.
func (c *copier) copyBlocks(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)

	stopCkpt := c.startCheckpointing(gctx)
	defer stopCkpt()

	for _, r := range c.runs {
		if !r.in {
			if c.changed || !c.needZero {
				// Outside the plan: unchanged blocks, or holes that read as
				// zeros in a sink that starts zeroed.
				n := r.end - r.first
				bytes := min(r.end*c.bs, c.size) - r.first*c.bs
				if c.changed {
					c.blocksUnchanged.Add(n)
					c.bytesUnchanged.Add(bytes)
				} else {
					c.blocksZero.Add(n)
					c.bytesZero.Add(bytes)
				}
				continue
			}
		}
		for i := r.first; i < r.end; i++ {
			if c.done.get(i) {
				c.blocksResumed.Add(1)
				c.bytesResumed.Add(c.blockLen(i))
				continue
			}
			if gctx.Err() != nil {
				break
			}
			i, hole := i, !r.in
			g.Go(func() error {
				if hole {
					// A hole in a sink that needs zero writes.
					return c.writeZero(gctx, i)
				}
				return c.copyBlock(gctx, i)
			})
		}
	}
	err := g.Wait()
	if err == nil {
		// Also report a cancellation that stopped the producer early.
		err = context.Cause(ctx)
	}
	return err
}

func (c *copier) copyBlock(ctx context.Context, i int64) error {
	buf := <-c.bufs
	defer func() { c.bufs <- buf }()
	off := i * c.bs
	p := buf[:c.blockLen(i)]

	if c.limiter != nil {
		if err := c.limiter.WaitN(ctx, len(p)); err != nil {
			return err
		}
	}
	var stored [32]byte
	var haveStored bool
	retries, err := c.opts.Retry.Do(ctx, func(ctx context.Context) error {
		c.readReqs.Add(1)
		if c.csrc != nil {
			sum, ok, err := c.csrc.ReadBlock(ctx, p, off)
			stored, haveStored = sum, ok
			if err == nil && !ok {
				clear(p)
			}
			return err
		}
		n, err := c.src.ReadAt(ctx, p, off)
		if err == io.EOF && n == len(p) {
			err = nil
		} else if err == nil && n < len(p) {
			err = io.ErrUnexpectedEOF
		}
		return err
	})
	c.retries.Add(int64(retries))
	if err != nil {
		return &draas.OpError{Op: "read source", Resource: blockName(i, off), Err: err}
	}
	c.bytesRead.Add(int64(len(p)))

	if draas.IsZero(p) {
		if haveStored && stored != sha256.Sum256(p) {
			return &draas.OpError{Op: "read source", Resource: blockName(i, off), Kind: draas.ErrChecksumMismatch,
				Err: fmt.Errorf("data read as zeros but the source recorded SHA-256 %x", stored)}
		}
		if !c.needZero {
			c.blocksZero.Add(1)
			c.bytesZero.Add(int64(len(p)))
			c.done.set(i)
			return nil
		}
	}
	sum := sha256.Sum256(p)
	if haveStored && sum != stored {
		return &draas.OpError{Op: "read source", Resource: blockName(i, off), Kind: draas.ErrChecksumMismatch,
			Err: fmt.Errorf("data has SHA-256 %x, the source recorded %x", sum, stored)}
	}
	return c.write(ctx, draas.Block{Index: i, Offset: off, Data: p, Checksum: sum})
}

func (c *copier) writeZero(ctx context.Context, i int64) error {
	p := c.zero[:c.blockLen(i)]
	sum := c.zeroSum
	if len(p) != len(c.zero) {
		sum = sha256.Sum256(p)
	}
	return c.write(ctx, draas.Block{Index: i, Offset: i * c.bs, Data: p, Checksum: sum})
}

func (c *copier) write(ctx context.Context, b draas.Block) error {
	retries, err := c.opts.Retry.Do(ctx, func(ctx context.Context) error {
		c.writeReqs.Add(1)
		return c.dst.WriteBlock(ctx, b)
	})
	c.retries.Add(int64(retries))
	if err != nil {
		return &draas.OpError{Op: "write sink", Resource: blockName(b.Index, b.Offset), Err: err}
	}
	c.blocksCopied.Add(1)
	c.bytesCopied.Add(int64(len(b.Data)))
	c.done.set(b.Index)
	return nil
}

func blockName(i, off int64) string {
	return fmt.Sprintf("block %d (offset %d)", i, off)
}

func commit(ctx context.Context, dst draas.VolumeSink) error {
	return dst.Commit(ctx)
}

// abort aborts dst even when ctx is already cancelled.
func abort(ctx context.Context, dst draas.VolumeSink) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return dst.Abort(actx)
}

func (c *copier) stats() Stats {
	return Stats{
		Size:            c.size,
		BlockSize:       int(c.bs),
		BlocksCopied:    c.blocksCopied.Load(),
		BytesCopied:     c.bytesCopied.Load(),
		BlocksZero:      c.blocksZero.Load(),
		BytesZero:       c.bytesZero.Load(),
		BlocksUnchanged: c.blocksUnchanged.Load(),
		BytesUnchanged:  c.bytesUnchanged.Load(),
		BlocksResumed:   c.blocksResumed.Load(),
		BytesRead:       c.bytesRead.Load(),
		ReadRequests:    c.readReqs.Load(),
		WriteRequests:   c.writeReqs.Load(),
		Retries:         c.retries.Load(),
		Verified:        c.verified.Load(),
		Duration:        time.Since(c.start),
	}
}

// progress returns the current progress event.
func (c *copier) progress(rate float64, done bool) Progress {
	p := Progress{
		Total:            c.size,
		Read:             c.bytesRead.Load(),
		Written:          c.bytesCopied.Load(),
		SkippedZero:      c.bytesZero.Load(),
		SkippedUnchanged: c.bytesUnchanged.Load(),
		Resumed:          c.bytesResumed.Load(),
		Rate:             rate,
		Elapsed:          time.Since(c.start),
		Done:             done,
	}
	if left := p.Total - c.processed(); rate > 0 && left > 0 && !done {
		p.ETA = time.Duration(float64(left) / rate * float64(time.Second))
	}
	return p
}

// processed is the number of bytes of the disk the copy has dealt with.
func (c *copier) processed() int64 {
	// Blocks read and then skipped as zero count in both bytesRead and
	// bytesZero; count them once.
	return c.bytesCopied.Load() + c.bytesZero.Load() + c.bytesUnchanged.Load() + c.bytesResumed.Load()
}

// startProgress emits progress events until the returned function is called,
// which emits the final event.
func (c *copier) startProgress() func(ok bool) {
	if c.opts.Progress == nil {
		return func(bool) {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(c.opts.ProgressInterval)
		defer t.Stop()
		last, lastT := c.processed(), time.Now()
		var ewma float64
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				cur := c.processed()
				inst := float64(cur-last) / now.Sub(lastT).Seconds()
				if ewma == 0 {
					ewma = inst
				} else {
					ewma = 0.7*ewma + 0.3*inst
				}
				last, lastT = cur, now
				c.opts.Progress(c.progress(ewma, false))
			}
		}
	}()
	return func(ok bool) {
		close(stop)
		wg.Wait()
		var avg float64
		if s := time.Since(c.start).Seconds(); s > 0 {
			avg = float64(c.processed()-c.bytesResumed.Load()) / s
		}
		c.opts.Progress(c.progress(avg, ok))
	}
}

// verify reads the committed sink back and compares it with the source over
// the copy's extents, plus everything the committed sink holds outside them
// for a full copy.
func (c *copier) verify(ctx context.Context) error {
	got, err := c.verifySrc.Committed(ctx)
	if err != nil {
		return fmt.Errorf("%w: open committed sink: %w", ErrVerify, err)
	}
	if cl, ok := got.(io.Closer); ok {
		defer cl.Close()
	}
	if got.Size() < c.size {
		return fmt.Errorf("%w: committed sink holds %d bytes, source %d: %w", ErrVerify, got.Size(), c.size, draas.ErrChecksumMismatch)
	}
	var exts []draas.Extent
	for _, r := range c.runs {
		if r.in {
			exts = append(exts, draas.Extent{Offset: r.first * c.bs, Length: min(r.end*c.bs, c.size) - r.first*c.bs})
		}
	}
	if !c.changed {
		more, err := draas.AllocatedExtents(ctx, got)
		if err != nil {
			return fmt.Errorf("%w: allocated extents of committed sink: %w", ErrVerify, err)
		}
		exts = append(exts, more...)
	}
	runs, err := planRuns(exts, c.size, c.bs)
	if err != nil {
		return err
	}
	// A second pool: each verify needs a source and a sink buffer.
	c.vbufs = make(chan []byte, c.opts.Concurrency)
	for range c.opts.Concurrency {
		c.vbufs <- make([]byte, c.bs)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for _, r := range runs {
		if !r.in {
			continue
		}
		for i := r.first; i < r.end && gctx.Err() == nil; i++ {
			g.Go(func() error { return c.verifyBlock(gctx, got, i) })
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return context.Cause(ctx)
}

func (c *copier) verifyBlock(ctx context.Context, got draas.BlockSource, i int64) error {
	a := <-c.bufs
	defer func() { c.bufs <- a }()
	b := <-c.vbufs
	defer func() { c.vbufs <- b }()
	off := i * c.bs
	a, b = a[:c.blockLen(i)], b[:c.blockLen(i)]
	read := func(src draas.BlockSource, p []byte, what string) error {
		_, err := c.opts.Retry.Do(ctx, func(ctx context.Context) error {
			n, err := src.ReadAt(ctx, p, off)
			if err == io.EOF && n == len(p) {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("%w: read %s %s: %w", ErrVerify, what, blockName(i, off), err)
		}
		return nil
	}
	if err := read(c.src, a, "source"); err != nil {
		return err
	}
	if err := read(got, b, "committed sink"); err != nil {
		return err
	}
	if !bytes.Equal(a, b) {
		return &draas.OpError{Op: "verify", Resource: blockName(i, off), Kind: draas.ErrChecksumMismatch,
			Err: fmt.Errorf("%w: sink has SHA-256 %x, source %x", ErrVerify, sha256.Sum256(b), sha256.Sum256(a))}
	}
	return nil
}
