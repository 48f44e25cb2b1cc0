package replicate_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/replicate"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

func TestSchedulerRunsEachVMAtItsInterval(t *testing.T) {
	e := newMemEnv(t)
	vms := []string{"db", "app", "web"}
	disks := map[string]*draastest.Disk{}
	for i, vm := range vms {
		disks[vm] = randomDisk(uint64(40+i), 4*mib, 0.5)
		e.backup(vm, map[string]*draastest.Disk{"os": disks[vm]})
	}
	p := plan(vms...)
	p.ReplicationInterval = time.Hour
	clock := &fakeClock{now: e.now}

	var mu sync.Mutex
	var running, maxRunning int
	results := make(chan replicate.Result, 100)
	r := e.replicator(p, replicate.Options{Events: func(ev replicate.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch ev.Kind {
		case replicate.EventStarted:
			running++
			maxRunning = max(maxRunning, running)
		case replicate.EventFinished:
			running--
		}
	}})
	s, err := replicate.NewScheduler(r, replicate.ScheduleOptions{
		Clock: clock, Concurrency: 2, Jitter: 0.1, Rand: rand.New(rand.NewPCG(1, 2)),
		OnResult: func(res replicate.Result) { results <- res },
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()

	collect := func(n int) map[string]replicate.Result {
		t.Helper()
		got := map[string]replicate.Result{}
		for range n {
			select {
			case res := <-results:
				require.NoError(t, res.Err)
				require.NotContains(t, got, res.VM, "one run per VM per interval")
				got[res.VM] = res
			case <-time.After(30 * time.Second):
				t.Fatalf("only %d of %d runs finished", len(got), n)
			}
		}
		return got
	}
	first := collect(3)
	for _, vm := range vms {
		assert.Equal(t, replicate.ActionFull, first[vm].Action)
	}

	// Half an interval later nothing is due.
	clock.Advance(30 * time.Minute)
	select {
	case res := <-results:
		t.Fatalf("%s ran before its interval", res.VM)
	case <-time.After(100 * time.Millisecond):
	}

	// A new backup of db only; after an interval (plus the jitter) every
	// VM runs again, and only db copies anything.
	change(disks["db"], 50, 0.25)
	e.backup("db", map[string]*draastest.Disk{"os": disks["db"]})
	clock.Advance(45 * time.Minute)
	second := collect(3)
	assert.Equal(t, replicate.ActionIncremental, second["db"].Action)
	assert.Equal(t, replicate.ActionUpToDate, second["app"].Action, "skips a VM with nothing new")
	assert.Equal(t, replicate.ActionUpToDate, second["web"].Action)

	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	mu.Lock()
	assert.LessOrEqual(t, maxRunning, 2, "the concurrency limit holds")
	mu.Unlock()

	st, err := r.Status(context.Background())
	require.NoError(t, err)
	require.Len(t, st, 3)
	for _, s := range st {
		assert.Equal(t, 1, s.Copies, s.VM)
		assert.Zero(t, s.Pending, s.VM)
		assert.Equal(t, 2*time.Hour, s.Target)
	}
}

func TestStatusReportsAge(t *testing.T) {
	e := newMemEnv(t)
	e.backup("db", map[string]*draastest.Disk{"os": randomDisk(60, 4*mib, 0.5)})
	p := plan("db", "web")
	p.ReplicationInterval = 15 * time.Minute
	r := e.replicator(p, replicate.Options{})
	_, err := r.ReplicateVM(context.Background(), "db")
	require.NoError(t, err)
	e.now = e.now.Add(20 * time.Minute)
	st, err := r.Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "db", st[0].VM)
	assert.Equal(t, 20*time.Minute, st[0].Age)
	assert.True(t, st[0].OK)
	assert.Equal(t, "web", st[1].VM)
	assert.False(t, st[1].OK, "a VM without a DR copy is not OK")
	e.now = e.now.Add(15 * time.Minute)
	st, err = r.Status(context.Background())
	require.NoError(t, err)
	assert.False(t, st[0].OK, "35 minutes exceed the 30-minute RPO")
}

// TestStatusSaysACopyIsPending: a replication that failed half-way leaves
// a pending copy (kept for the next run to resume): the VM is still
// within its RPO on its previous copy, and its status says a newer copy
// is not complete.
func TestStatusSaysACopyIsPending(t *testing.T) {
	ctx := context.Background()
	e := newMemEnv(t)
	d := randomDisk(61, 8*mib, 0.9)
	e.backup("db", map[string]*draastest.Disk{"os": d})
	p := plan("db")
	p.ReplicationInterval = 2 * time.Hour // each backup here is an hour after the last
	r := e.replicator(p, replicate.Options{})
	_, err := r.ReplicateVM(ctx, "db")
	require.NoError(t, err)
	st, err := r.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, "OK", st[0].Condition())

	change(d, 62, 0.5)
	newer := e.backup("db", map[string]*draastest.Disk{"os": d})
	dir := t.TempDir()
	ckpts := func(vm, disk string) blockcopy.CheckpointStore {
		return blockcopy.FileCheckpoint(dir + "/" + vm + "-" + disk + ".ckpt")
	}
	k := &killer{CopyStore: e.copies, at: "blocks", after: 3}
	killed, err := replicate.New(p, e.store, k, replicate.Options{Checkpoints: ckpts, Copy: blockcopy.Options{Concurrency: 1}})
	require.NoError(t, err)
	_, err = killed.ReplicateVM(ctx, "db")
	require.ErrorIs(t, err, errKilled)

	st, err = r.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st, 1)
	assert.True(t, st[0].OK, "the previous copy is within the RPO")
	assert.Equal(t, 1, st[0].Pending)
	assert.Equal(t, newer, st[0].PendingPoint)
	assert.Equal(t, "OK, COPY PENDING", st[0].Condition())

	// The next run resumes it; nothing is pending any more.
	r = e.replicator(p, replicate.Options{Checkpoints: ckpts})
	_, err = r.ReplicateVM(ctx, "db")
	require.NoError(t, err)
	st, err = r.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, "OK", st[0].Condition())
	assert.Empty(t, st[0].PendingPoint)
	assert.Equal(t, newer, st[0].RecoveryPoint)

	// A copy whose snapshot failed (state error) is said to have failed.
	assert.Equal(t, "NO DR COPY, COPY FAILED", replicate.VMStatus{Failed: 1, PendingPoint: "p"}.Condition())
}
