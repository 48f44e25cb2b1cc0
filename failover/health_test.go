package failover_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
)

// sickProber fails the checks named in sick (db's is tcp:5432, app's
// http:…, web's tcp:443) and passes the others on to next.
type sickProber struct {
	next  failover.Prober
	mu    sync.Mutex
	sick  map[string]int // check name → rounds left to fail (-1: forever)
	block bool           // a sick check blocks until its context ends
	calls int
}

func (p *sickProber) Probe(ctx context.Context, inst draas.Instance, hc plan.HealthCheck) error {
	p.mu.Lock()
	p.calls++
	name := failover.CheckName(hc)
	left, ok := p.sick[name]
	if ok && left > 0 {
		p.sick[name] = left - 1
	}
	p.mu.Unlock()
	if !ok || left == 0 {
		return p.next.Probe(ctx, inst, hc)
	}
	if p.block {
		<-ctx.Done()
		return fmt.Errorf("dial tcp %s:%d: %w", inst.PrivateIP, hc.TCP, ctx.Err())
	}
	return fmt.Errorf("dial tcp %s:%d: connection refused", inst.PrivateIP, hc.TCP)
}

// retried collects the Retried events of healthy steps.
type retried struct {
	mu     sync.Mutex
	events []orchestrate.Event
}

func (r *retried) add(ev orchestrate.Event) {
	if ev.Kind == orchestrate.EventRetried && strings.HasSuffix(ev.Step, "/healthy") {
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	}
}

// TestHealthWaitReportsEachRound: while a check fails, each round is an
// event naming the VM, the check and the attempt; the VM comes up once the
// check passes.
func TestHealthWaitReportsEachRound(t *testing.T) {
	e := newEnv(t)
	p := &sickProber{next: e.opts.Prober, sick: map[string]int{"tcp:5432": 3}}
	var got retried
	opts := e.opts
	opts.Prober, opts.Events = p, got.add
	rep, err := e.runner(opts).Run(t.Context(), e.plan, failover.Drill)
	require.NoError(t, err)
	for _, v := range rep.VMs {
		assert.True(t, v.Up, v.VM)
	}
	// The simulator's status checks may fail a first round too; db's TCP
	// check fails three rounds in a row.
	var tcp []orchestrate.Event
	prev := 0
	for _, ev := range got.events {
		assert.Equal(t, opts.PollInterval, ev.Backoff)
		assert.Equal(t, ev.Labels["vm"]+"/healthy", ev.Step)
		assert.ErrorContains(t, ev.Err, "VM "+ev.Labels["vm"]+" (instance i-")
		assert.ErrorContains(t, ev.Err, "health check "+ev.Labels["check"]+": ")
		if ev.Step == "db/healthy" {
			assert.Equal(t, prev+1, ev.Attempt, "attempts count the rounds")
			prev = ev.Attempt
		}
		if ev.Labels["check"] == "tcp:5432" {
			tcp = append(tcp, ev)
		}
	}
	require.Len(t, tcp, 3)
	for _, ev := range tcp {
		assert.ErrorContains(t, ev.Err, "health check tcp:5432: dial tcp")
		assert.ErrorContains(t, ev.Err, "connection refused")
		assert.Contains(t, ev.String(), `step "db/healthy" retried: attempt `+fmt.Sprint(ev.Attempt))
	}
}

// TestHealthTimeoutSaysWhichCheckFailed: a check that never passes ends the
// wait at the plan's health timeout with a HealthError naming the VM, the
// check, the attempts and the check's last error; a check that hangs is cut
// at ProbeTimeout, so rounds (and events) go on.
func TestHealthTimeoutSaysWhichCheckFailed(t *testing.T) {
	for _, block := range []bool{false, true} {
		t.Run(map[bool]string{false: "refused", true: "hangs"}[block], func(t *testing.T) {
			e := newEnv(t)
			for i := range e.plan.VMs {
				e.plan.VMs[i].HealthTimeout = plan.Duration(300 * time.Millisecond)
			}
			p := &sickProber{next: e.opts.Prober, sick: map[string]int{"tcp:5432": -1}, block: block}
			var got retried
			opts := e.opts
			opts.Prober, opts.Events, opts.ProbeTimeout = p, got.add, 20*time.Millisecond
			start := time.Now()
			rep, err := e.runner(opts).Run(t.Context(), e.plan, failover.Drill)
			assert.Less(t, time.Since(start), 10*time.Second, "the wait ends at the health timeout")
			require.ErrorIs(t, err, failover.ErrFailed)
			require.ErrorIs(t, err, failover.ErrUnhealthy)
			var he *failover.HealthError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, "db", he.VM)
			assert.Equal(t, plan.HealthCheck{TCP: 5432}, he.Check)
			assert.Greater(t, he.Attempts, 1)
			assert.GreaterOrEqual(t, he.Waited, 250*time.Millisecond)
			assert.NotEmpty(t, he.InstanceID)
			assert.ErrorContains(t, err, "VM db (instance "+he.InstanceID+") is not healthy after ")
			assert.ErrorContains(t, err, "attempts: health check tcp:5432: dial tcp ")
			if block {
				assert.ErrorIs(t, he.Err, context.DeadlineExceeded, "the check was cut at ProbeTimeout")
			} else {
				assert.ErrorContains(t, he.Err, "connection refused")
			}
			assert.NotErrorIs(t, err, orchestrate.ErrTimeout, "the wait's error says which check failed, not only that time ran out")
			assert.GreaterOrEqual(t, len(got.events), he.Attempts-1)
			v, _ := rep.VM("db")
			assert.False(t, v.Up)
			for _, st := range v.Steps {
				if st.Name == "healthy" {
					assert.Equal(t, 1, st.Attempts, "the health timeout bounds the whole wait: the step is not retried")
				}
			}
		})
	}
}

// TestEC2StatusOnly: with EC2StatusOnly, the EC2 status checks alone judge
// health: the prober is never called, so unreachable guests do not matter.
func TestEC2StatusOnly(t *testing.T) {
	e := newEnv(t)
	p := &sickProber{next: e.opts.Prober, sick: map[string]int{"tcp:5432": -1, "tcp:443": -1, "http:http://{ip}:8080/health": -1}}
	opts := e.opts
	opts.Prober, opts.EC2StatusOnly = p, true
	rep, err := e.runner(opts).Run(t.Context(), e.plan, failover.Drill)
	require.NoError(t, err)
	for _, v := range rep.VMs {
		assert.True(t, v.Up, v.VM)
	}
	assert.Zero(t, p.calls, "no TCP or HTTP check ran")
	assert.False(t, errors.Is(err, failover.ErrUnhealthy))
}

func TestCheckName(t *testing.T) {
	for hc, want := range map[plan.HealthCheck]string{
		{EC2: true}:                  "ec2",
		{TCP: 22}:                    "tcp:22",
		{HTTP: "http://{ip}/health"}: "http:http://{ip}/health",
		{}:                           "none",
	} {
		assert.Equal(t, want, failover.CheckName(hc))
	}
}
