package draastest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/opendraas/draas"
)

// Faults injects failures into the calls of a fake or a wrapped source or
// sink, and counts the calls. An operation is named by the method called:
// "ReadAt", "ReadBlock", "AllocatedExtents", "ChangedExtents", "WriteBlock",
// "Flush", "Commit", "Abort", "Committed", or a control-plane method such as
// "CreateVolume", "Launch", "OpenDisk" or "Upsert". The operation "*" matches
// every call, counted across all operations, so FailAfter("*", n, err)
// simulates a process killed after n calls.
//
// Call numbers given to the configuration methods are 1-based and counted
// from the moment the fault is configured: FailNth("WriteBlock", 1, err) fails
// the next WriteBlock. The zero value injects nothing; a nil *Faults injects
// nothing and counts nothing, but cannot be configured. All methods are safe
// for concurrent use.
type Faults struct {
	mu    sync.Mutex
	ops   map[string]*opFaults
	calls map[string]int
}

type opFaults struct {
	failNth       map[int]error // call number -> error
	failAfter     int           // calls after this number fail, when failAfterErr != nil
	failAfterErr  error
	throttleEvery int
	throttleBase  int // call number when Throttle was configured
	latency       time.Duration
	corruptNth    map[int]bool
}

// op returns the configuration for op, creating it. f.mu is held.
func (f *Faults) op(op string) *opFaults {
	if f.ops == nil {
		f.ops = map[string]*opFaults{}
	}
	o := f.ops[op]
	if o == nil {
		o = &opFaults{failNth: map[int]error{}, corruptNth: map[int]bool{}}
		f.ops[op] = o
	}
	return o
}

// FailNth makes the n-th call of op from now fail with an error wrapping err
// (draas.ErrTransient when err is nil). The call does not reach the wrapped
// value.
func (f *Faults) FailNth(op string, n int, err error) {
	if err == nil {
		err = draas.ErrTransient
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.op(op).failNth[f.calls[op]+n] = err
}

// FailAfter makes every call of op after the next n fail with an error
// wrapping err (draas.ErrTransient when err is nil): the n calls pass, the
// ones after them fail. It simulates a process killed or a service gone.
// [Faults.Clear] lifts it.
func (f *Faults) FailAfter(op string, n int, err error) {
	if err == nil {
		err = draas.ErrTransient
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.op(op)
	o.failAfter, o.failAfterErr = f.calls[op]+n, err
}

// Throttle makes every n-th call of op from now fail with an error wrapping
// draas.ErrThrottled, as a rate-limited service does. n of 0 or less stops
// the throttling.
func (f *Faults) Throttle(op string, every int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.op(op)
	o.throttleEvery, o.throttleBase = every, f.calls[op]
}

// Latency delays every call of op by d before it runs. A call whose context
// ends during the delay fails with the context's error.
func (f *Faults) Latency(op string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.op(op).latency = d
}

// CorruptReads makes the n-th call of op from now corrupt its data without
// failing: for a read ("ReadAt", or "ReadBlock" of a block the storage
// holds) the first byte returned is flipped, and for "WriteBlock" the first byte of the data handed to the
// wrapped sink is flipped while its checksum is kept, as corruption on the
// wire would. A copier that checks checksums detects both.
func (f *Faults) CorruptReads(op string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.op(op).corruptNth[f.calls[op]+n] = true
}

// Clear removes every configured fault; the call counts are kept.
func (f *Faults) Clear() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = nil
}

// Calls returns the number of calls of op so far, failed ones included. op
// "*" counts every call.
func (f *Faults) Calls(op string) int {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Inject counts a call of op, waits for its configured latency, and returns
// the error configured for it, or ctx's error if ctx is done. Fakes call it
// at the start of each operation; it is exported so that users' own fakes
// can use a Faults too.
func (f *Faults) Inject(ctx context.Context, op string) error {
	_, err := f.inject(ctx, op)
	return err
}

// inject is Inject that also reports whether the call's data is to be
// corrupted.
func (f *Faults) inject(ctx context.Context, op string) (corrupt bool, err error) {
	if f == nil {
		return false, ctx.Err()
	}
	var latency time.Duration
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
	f.calls["*"]++
	for _, name := range []string{op, "*"} {
		o := f.ops[name]
		if o == nil {
			continue
		}
		n := f.calls[name]
		latency += o.latency
		if err == nil {
			err = o.failure(op, n)
		}
		if o.corruptNth[n] {
			delete(o.corruptNth, n)
			corrupt = true
		}
	}
	f.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, context.Cause(ctx)
		}
	}
	if err != nil {
		return false, err
	}
	return corrupt, ctx.Err()
}

// failure returns the error for call number n of op, if any.
func (o *opFaults) failure(op string, n int) error {
	if err, ok := o.failNth[n]; ok {
		delete(o.failNth, n)
		return fmt.Errorf("draastest: injected failure of %s call %d: %w", op, n, err)
	}
	if o.failAfterErr != nil && n > o.failAfter {
		return fmt.Errorf("draastest: injected failure of %s call %d (failing after call %d): %w", op, n, o.failAfter, o.failAfterErr)
	}
	if o.throttleEvery > 0 && (n-o.throttleBase)%o.throttleEvery == 0 {
		return fmt.Errorf("draastest: %s call %d throttled: %w", op, n, draas.ErrThrottled)
	}
	return nil
}

// FaultySource returns src with the faults f injected into its calls. The
// result has exactly the optional capabilities (draas.ExtentSource,
// draas.ChangeTracker, draas.ChecksumSource) that draas.As finds in src, and
// injects faults into them too; its Unwrap returns src. A nil f injects
// nothing.
func FaultySource(src draas.BlockSource, f *Faults) draas.BlockSource {
	s := &faultySource{src: src, f: f}
	es, hasE := draas.As[draas.ExtentSource](src)
	ct, hasC := draas.As[draas.ChangeTracker](src)
	cs, hasS := draas.As[draas.ChecksumSource](src)
	e, c, k := faultyExtents{s, es}, faultyChanges{s, ct}, faultyChecksums{s, cs}
	switch {
	case hasE && hasC && hasS:
		return struct {
			*faultySource
			faultyExtents
			faultyChanges
			faultyChecksums
		}{s, e, c, k}
	case hasE && hasC:
		return struct {
			*faultySource
			faultyExtents
			faultyChanges
		}{s, e, c}
	case hasE && hasS:
		return struct {
			*faultySource
			faultyExtents
			faultyChecksums
		}{s, e, k}
	case hasC && hasS:
		return struct {
			*faultySource
			faultyChanges
			faultyChecksums
		}{s, c, k}
	case hasE:
		return struct {
			*faultySource
			faultyExtents
		}{s, e}
	case hasC:
		return struct {
			*faultySource
			faultyChanges
		}{s, c}
	case hasS:
		return struct {
			*faultySource
			faultyChecksums
		}{s, k}
	}
	return s
}

type faultySource struct {
	src draas.BlockSource
	f   *Faults
}

func (s *faultySource) Size() int64    { return s.src.Size() }
func (s *faultySource) BlockSize() int { return s.src.BlockSize() }
func (s *faultySource) Unwrap() any    { return s.src }

func (s *faultySource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	corrupt, err := s.f.inject(ctx, "ReadAt")
	if err != nil {
		return 0, err
	}
	n, err := s.src.ReadAt(ctx, p, off)
	if corrupt && n > 0 {
		p[0] ^= 0xff
	}
	return n, err
}

type faultyExtents struct {
	s  *faultySource
	es draas.ExtentSource
}

func (x faultyExtents) AllocatedExtents(ctx context.Context) ([]draas.Extent, error) {
	if err := x.s.f.Inject(ctx, "AllocatedExtents"); err != nil {
		return nil, err
	}
	return x.es.AllocatedExtents(ctx)
}

type faultyChanges struct {
	s  *faultySource
	ct draas.ChangeTracker
}

func (x faultyChanges) ChangedExtents(ctx context.Context, base string) ([]draas.Extent, error) {
	if err := x.s.f.Inject(ctx, "ChangedExtents"); err != nil {
		return nil, err
	}
	return x.ct.ChangedExtents(ctx, base)
}

type faultyChecksums struct {
	s  *faultySource
	cs draas.ChecksumSource
}

func (x faultyChecksums) ReadBlock(ctx context.Context, p []byte, off int64) ([32]byte, bool, error) {
	corrupt, err := x.s.f.inject(ctx, "ReadBlock")
	if err != nil {
		return [32]byte{}, false, err
	}
	sum, ok, err := x.cs.ReadBlock(ctx, p, off)
	if corrupt && ok && err == nil && len(p) > 0 {
		p[0] ^= 0xff
	}
	return sum, ok, err
}

// FaultySink returns dst with the faults f injected into its calls. The
// result has exactly the optional capabilities (draas.ZeroWriteSink,
// draas.Flusher, draas.VerifiableSink) that draas.As finds in dst, and
// injects faults into Flush and Committed too; its Unwrap returns dst, so
// draas.As finds other capabilities, such as draas.ResumableSink, on dst. A
// nil f injects nothing.
func FaultySink(dst draas.VolumeSink, f *Faults) draas.VolumeSink {
	s := &faultySink{dst: dst, f: f}
	zw, hasZ := draas.As[draas.ZeroWriteSink](dst)
	fl, hasF := draas.As[draas.Flusher](dst)
	vs, hasV := draas.As[draas.VerifiableSink](dst)
	z, l, v := faultyZeros{zw}, faultyFlush{s, fl}, faultyVerify{s, vs}
	switch {
	case hasZ && hasF && hasV:
		return struct {
			*faultySink
			faultyZeros
			faultyFlush
			faultyVerify
		}{s, z, l, v}
	case hasZ && hasF:
		return struct {
			*faultySink
			faultyZeros
			faultyFlush
		}{s, z, l}
	case hasZ && hasV:
		return struct {
			*faultySink
			faultyZeros
			faultyVerify
		}{s, z, v}
	case hasF && hasV:
		return struct {
			*faultySink
			faultyFlush
			faultyVerify
		}{s, l, v}
	case hasZ:
		return struct {
			*faultySink
			faultyZeros
		}{s, z}
	case hasF:
		return struct {
			*faultySink
			faultyFlush
		}{s, l}
	case hasV:
		return struct {
			*faultySink
			faultyVerify
		}{s, v}
	}
	return s
}

type faultySink struct {
	dst draas.VolumeSink
	f   *Faults
}

func (s *faultySink) BlockSize() int { return s.dst.BlockSize() }
func (s *faultySink) Unwrap() any    { return s.dst }

func (s *faultySink) WriteBlock(ctx context.Context, b draas.Block) error {
	corrupt, err := s.f.inject(ctx, "WriteBlock")
	if err != nil {
		return err
	}
	if corrupt && len(b.Data) > 0 {
		data := make([]byte, len(b.Data))
		copy(data, b.Data)
		data[0] ^= 0xff
		b.Data = data
	}
	return s.dst.WriteBlock(ctx, b)
}

func (s *faultySink) Commit(ctx context.Context) error {
	if err := s.f.Inject(ctx, "Commit"); err != nil {
		return err
	}
	return s.dst.Commit(ctx)
}

func (s *faultySink) Abort(ctx context.Context) error {
	if err := s.f.Inject(ctx, "Abort"); err != nil {
		return err
	}
	return s.dst.Abort(ctx)
}

type faultyZeros struct{ zw draas.ZeroWriteSink }

func (x faultyZeros) NeedsZeroWrites() bool { return x.zw.NeedsZeroWrites() }

type faultyFlush struct {
	s  *faultySink
	fl draas.Flusher
}

func (x faultyFlush) Flush(ctx context.Context) error {
	if err := x.s.f.Inject(ctx, "Flush"); err != nil {
		return err
	}
	return x.fl.Flush(ctx)
}

type faultyVerify struct {
	s  *faultySink
	vs draas.VerifiableSink
}

func (x faultyVerify) Committed(ctx context.Context) (draas.BlockSource, error) {
	if err := x.s.f.Inject(ctx, "Committed"); err != nil {
		return nil, err
	}
	return x.vs.Committed(ctx)
}
