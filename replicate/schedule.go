package replicate

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opendraas/draas"
)

// Clock is the time source of a [Scheduler]. Tests drive a fake one.
type Clock interface {
	Now() time.Time
	// After waits for d like time.After.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ScheduleOptions tunes a [Scheduler]. The zero value is useful.
type ScheduleOptions struct {
	// Clock is the time source; default the real clock.
	Clock Clock
	// Concurrency bounds the VMs replicated at once across the plan; 0
	// means the Replicator's VMConcurrency.
	Concurrency int
	// Jitter spreads each VM's runs by up to this fraction of its
	// interval, earlier or later, so that VMs do not all start at once;
	// 0 means 0.1, negative means none.
	Jitter float64
	// OnResult, when set, receives every run's result, from the goroutine
	// that ran it.
	OnResult func(Result)
	// Rand seeds the jitter, for tests; nil means a random seed.
	Rand *rand.Rand
}

// Scheduler replicates every VM of a plan at the plan's replication
// interval: runs of different VMs overlap up to a concurrency limit, runs of
// the same VM never do, and a VM whose newest recovery point is already
// copied costs two list calls and is skipped. The first run of every VM is
// due at once.
type Scheduler struct {
	r    *Replicator
	opts ScheduleOptions
}

// NewScheduler returns a scheduler for r's plan. The plan's
// ReplicationInterval must be positive.
func NewScheduler(r *Replicator, opts ScheduleOptions) (*Scheduler, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	if r.plan.ReplicationInterval <= 0 {
		return nil, draas.Invalidf("replicate: plan %s has no replication interval: set ReplicationInterval (e.g. 15m)", r.plan.Name)
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = r.opts.VMConcurrency
	}
	if opts.Jitter == 0 {
		opts.Jitter = 0.1
	}
	if opts.Jitter < 0 {
		opts.Jitter = 0
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Scheduler{r: r, opts: opts}, nil
}

// Run replicates until ctx is done, then waits for the runs in progress
// (which see the cancellation) and returns ctx's error.
func (s *Scheduler) Run(ctx context.Context) error {
	interval := s.r.plan.ReplicationInterval
	now := s.opts.Clock.Now()
	next := map[string]time.Time{}
	for _, vm := range s.r.plan.VMs {
		next[vm.Name] = now
	}
	running := map[string]bool{}
	done := make(chan string)
	sem := make(chan struct{}, s.opts.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()

	for {
		now = s.opts.Clock.Now()
		// Start every due VM that is not running, earliest first, while
		// there is room.
		var due []string
		for vm, t := range next {
			if !running[vm] && !t.After(now) {
				due = append(due, vm)
			}
		}
		slices.SortFunc(due, func(a, b string) int {
			if c := next[a].Compare(next[b]); c != 0 {
				return c
			}
			return strings.Compare(a, b)
		})
		waiting := false
		for _, vm := range due {
			select {
			case sem <- struct{}{}:
			default:
				waiting = true // full: wait for a run to finish
				continue
			}
			running[vm] = true
			next[vm] = now.Add(s.jittered(interval))
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, _ := s.r.ReplicateVM(ctx, vm)
				<-sem
				if s.opts.OnResult != nil {
					s.opts.OnResult(res)
				}
				select {
				case done <- vm:
				case <-ctx.Done():
				}
			}()
		}

		// Sleep until the next VM is due, a run finishes, or ctx ends.
		var wake time.Time
		for vm, t := range next {
			if !running[vm] && (wake.IsZero() || t.Before(wake)) {
				wake = t
			}
		}
		var timer <-chan time.Time
		if !wake.IsZero() && !waiting {
			timer = s.opts.Clock.After(max(wake.Sub(now), 0))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case vm := <-done:
			delete(running, vm)
		case <-timer:
		}
	}
}

func (s *Scheduler) jittered(d time.Duration) time.Duration {
	if s.opts.Jitter == 0 {
		return d
	}
	f := 1 + s.opts.Jitter*(2*s.opts.Rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// VMStatus is how fresh one VM's DR copy is.
type VMStatus struct {
	VM string `json:"vm"`
	// RecoveryPoint and PointTime identify the newest complete DR copy's
	// recovery point; empty when the VM has no complete copy.
	RecoveryPoint string    `json:"recoveryPoint,omitempty"`
	PointTime     time.Time `json:"pointTime,omitzero"`
	// Age is how old that point is now: the RPO a failover would achieve.
	Age time.Duration `json:"age"`
	// Target is the plan's RPO (twice the replication interval by default).
	Target time.Duration `json:"target"`
	// OK is true when a complete copy exists and Age is within Target.
	OK bool `json:"ok"`
	// Copies counts the VM's complete DR copy sets.
	Copies int `json:"copies"`
	// Pending counts copies that are not part of a complete set (being
	// written, or left by a failed or interrupted run until the next
	// resumes or deletes them).
	Pending int `json:"pending"`
	// PendingPoint is the recovery point of the newest set that is not
	// complete, when it is newer than the complete copy: a copy in
	// progress, or one a run left unfinished. Empty otherwise.
	PendingPoint string `json:"pendingPoint,omitempty"`
	// Failed counts the copies newer than the complete copy whose snapshot
	// failed (draas.CopyError): they can never complete, and the next run
	// deletes them.
	Failed int `json:"failed"`
}

// Condition says in words what a VM's status means: "OK", "OVER RPO" or
// "NO DR COPY", followed by ", COPY FAILED" when a copy failed or ", COPY
// PENDING" when a newer copy is not complete (being written, or left by a
// run that failed or was interrupted).
func (s VMStatus) Condition() string {
	out := "OK"
	if !s.OK {
		out = "OVER RPO"
		if s.RecoveryPoint == "" {
			out = "NO DR COPY"
		}
	}
	switch {
	case s.Failed > 0:
		out += ", COPY FAILED"
	case s.PendingPoint != "":
		out += ", COPY PENDING"
	}
	return out
}

// Status answers "how old is each VM's DR copy", from the copy store alone.
func (r *Replicator) Status(ctx context.Context) ([]VMStatus, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	target := r.plan.RPO
	if target <= 0 {
		target = 2 * r.plan.ReplicationInterval
	}
	now := r.opts.Now()
	out := make([]VMStatus, 0, len(r.plan.VMs))
	for _, vm := range r.plan.VMs {
		all, err := r.copies.Copies(ctx, r.plan.Name, vm.Name)
		if err != nil {
			return nil, err
		}
		st := VMStatus{VM: vm.Name, Target: target}
		for _, s := range draas.CopySets(all) {
			if s.Complete() {
				st.Copies++
				st.RecoveryPoint, st.PointTime = s.RecoveryPoint, s.PointTime
				st.PendingPoint, st.Failed = "", 0
				continue
			}
			st.Pending += len(s.Copies)
			st.PendingPoint = s.RecoveryPoint
			for _, c := range s.Copies {
				if c.State == draas.CopyError {
					st.Failed++
				}
			}
		}
		if st.RecoveryPoint != "" {
			st.Age = now.Sub(st.PointTime)
			st.OK = target <= 0 || st.Age <= target
		}
		out = append(out, st)
	}
	return out, nil
}
