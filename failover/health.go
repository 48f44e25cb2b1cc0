package failover

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
)

// ErrUnhealthy is wrapped by the error of a VM whose health checks did not
// all pass before the plan's health timeout; see [HealthError].
var ErrUnhealthy = errors.New("failover: VM not healthy")

// HealthError is the error of a health wait that ended before every health
// check of a VM passed: at the plan's health timeout, or when the run was
// cancelled. It says which check failed last and how. It wraps
// [ErrUnhealthy].
type HealthError struct {
	VM         string
	InstanceID string
	// Check is the health check that failed in the last round.
	Check plan.HealthCheck
	// Attempts is how many rounds of checks ran.
	Attempts int
	// Waited is the time from the first round to the end of the wait.
	Waited time.Duration
	// Err is the failed check's last error.
	Err error
}

func (e *HealthError) Error() string {
	return fmt.Sprintf("VM %s (instance %s) is not healthy after %v and %d attempts: health check %s: %v",
		e.VM, e.InstanceID, e.Waited.Round(time.Millisecond), e.Attempts, CheckName(e.Check), e.Err)
}

// Unwrap returns [ErrUnhealthy]. It leaves Err out: a check's timeout is
// not the wait's.
func (e *HealthError) Unwrap() error { return ErrUnhealthy }

// CheckName names a health check as events and errors do: "ec2",
// "tcp:5432" or "http:http://{ip}:8080/health".
func CheckName(hc plan.HealthCheck) string {
	switch {
	case hc.EC2:
		return "ec2"
	case hc.TCP != 0:
		return "tcp:" + strconv.Itoa(hc.TCP)
	case hc.HTTP != "":
		return "http:" + hc.HTTP
	}
	return "none"
}

// emitter serialises the run's events: orchestrate's and the health
// wait's.
type emitter struct {
	mu sync.Mutex
	f  func(orchestrate.Event)
}

func (e *emitter) emit(ev orchestrate.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.f(ev)
}

type emitterKey struct{}

// healthy waits until the EC2 status checks and every health check pass,
// polling every PollInterval, each check bounded by ProbeTimeout. Each
// failed round is an event; the step's timeout (the plan's health timeout)
// ends the wait with a *HealthError.
func (r *vmRun) healthy(ctx context.Context) error {
	inst, err := get(ctx, r, stepLaunch, instanceKey)
	if err != nil {
		return err
	}
	checks := r.vm.HealthChecks
	if len(checks) == 0 || r.opts.EC2StatusOnly {
		checks = []plan.HealthCheck{{EC2: true}}
	}
	prober := r.opts.Prober
	if prober == nil {
		prober = NetProber{}
	}
	interval := r.opts.PollInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	probeTimeout := r.opts.ProbeTimeout
	if probeTimeout <= 0 {
		probeTimeout = 10 * time.Second
	}
	em, _ := ctx.Value(emitterKey{}).(*emitter)
	check := func(hc plan.HealthCheck) error {
		ctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		if !hc.EC2 {
			return prober.Probe(ctx, inst, hc)
		}
		st, err := r.launcher.Status(ctx, inst.ID)
		if err != nil {
			return err
		}
		if !st.SystemOK || !st.InstanceOK {
			return fmt.Errorf("EC2 status checks of %s: system ok %t, instance ok %t", inst.ID, st.SystemOK, st.InstanceOK)
		}
		return nil
	}
	start := time.Now()
	// The last finished round's failure: a round cut short by the end of
	// the wait failed only because time ran out.
	var failed plan.HealthCheck
	var last error
	unhealthy := func(attempts int) error {
		return &HealthError{VM: r.vm.Name, InstanceID: inst.ID, Check: failed, Attempts: attempts, Waited: time.Since(start), Err: last}
	}
	for attempt := 1; ; attempt++ {
		var hcErr error
		var hcFailed plan.HealthCheck
		for _, hc := range checks {
			if hcErr = check(hc); hcErr != nil {
				hcFailed = hc
				break
			}
		}
		if hcErr == nil {
			return nil
		}
		if ctx.Err() != nil {
			if last == nil {
				failed, last = hcFailed, hcErr
				return unhealthy(attempt)
			}
			return unhealthy(attempt - 1)
		}
		failed, last = hcFailed, hcErr
		if em != nil {
			em.emit(orchestrate.Event{
				Kind: orchestrate.EventRetried, Step: sid(r.vm.Name, stepHealthy),
				Labels: map[string]string{"vm": r.vm.Name, "check": CheckName(failed)}, Time: time.Now(),
				Attempt: attempt, Backoff: interval,
				Err: fmt.Errorf("VM %s (instance %s) not healthy yet: health check %s: %w", r.vm.Name, inst.ID, CheckName(failed), last),
			})
		}
		select {
		case <-ctx.Done():
			return unhealthy(attempt)
		case <-time.After(interval):
		}
	}
}
