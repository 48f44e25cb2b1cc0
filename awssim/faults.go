package awssim

import (
	"math/rand/v2"
	"sync"
	"time"
)

// faultKind says how a request fails.
type faultKind int

const (
	faultNone     faultKind = iota
	faultThrottle           // the service's real throttling error
	faultInternal           // an HTTP 500 InternalError / InternalFailure
)

type opFaults struct {
	throttleFraction float64
	latency          time.Duration
	failNth          map[int]faultKind // 1-based call number -> fault
	calls            int
}

// faultSet holds the faults configured per operation name ("PutSnapshotBlock",
// "RunInstances", "ChangeResourceRecordSets", "GetObject", or "*" for every
// operation of every service).
type faultSet struct {
	mu    sync.Mutex
	rng   *rand.Rand
	ops   map[string]*opFaults
	calls map[string]int // every call counted, faulted or not
	rates ebsRates       // ebs_limits.go; its own lock
}

func (f *faultSet) op(name string) *opFaults {
	if f.ops == nil {
		f.ops = map[string]*opFaults{}
	}
	o := f.ops[name]
	if o == nil {
		o = &opFaults{failNth: map[int]faultKind{}}
		f.ops[name] = o
	}
	return o
}

// Throttle makes the given fraction (0..1) of calls to op fail with the
// service's throttling error (EBS RequestThrottledException, EC2
// RequestLimitExceeded, Route53 Throttling, S3 SlowDown). op is an
// operation name as in the AWS API; "*" applies to every operation of every
// service, S3 included. The choice is pseudo-random with a fixed seed, so
// runs repeat.
func (s *Server) Throttle(op string, fraction float64) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.op(op).throttleFraction = fraction
}

// Latency adds d to every call of op ("*" for all).
func (s *Server) Latency(op string, d time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.op(op).latency = d
}

// FailNth makes the n-th call (1-based, counted from now) of op fail with an
// internal server error (HTTP 500), which SDKs retry.
func (s *Server) FailNth(op string, n int) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	o := s.faults.op(op)
	o.failNth[o.calls+n] = faultInternal
}

// ThrottleNth makes the n-th call (1-based, counted from now) of op fail with
// the service's throttling error.
func (s *Server) ThrottleNth(op string, n int) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	o := s.faults.op(op)
	o.failNth[o.calls+n] = faultThrottle
}

// ClearFaults removes every configured fault.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.ops = nil
}

// Calls returns how many requests for op the server has received, faulted
// ones included.
func (s *Server) Calls(op string) int {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return s.faults.calls[op]
}

// fault counts a call of op, sleeps for its latency and says whether it fails.
func (s *Server) fault(op string) faultKind {
	f := &s.faults
	f.mu.Lock()
	if f.rng == nil {
		f.rng = rand.New(rand.NewPCG(1, 2))
	}
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
	var lat time.Duration
	kind := faultNone
	for _, name := range []string{"*", op} {
		o := f.ops[name]
		if o == nil {
			continue
		}
		o.calls++
		lat += o.latency
		if k, ok := o.failNth[o.calls]; ok {
			kind = k
			delete(o.failNth, o.calls)
		} else if kind == faultNone && o.throttleFraction > 0 && f.rng.Float64() < o.throttleFraction {
			kind = faultThrottle
		}
	}
	f.mu.Unlock()
	if lat > 0 {
		time.Sleep(lat)
	}
	return kind
}
