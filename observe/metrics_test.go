package observe

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/replicate"
)

func newMetrics(t *testing.T) (*prometheus.Registry, *Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	return reg, m
}

// histogram returns the sample count and sum of the histogram name with
// exactly the given labels.
func histogram(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (uint64, float64) {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsOf(m) == fmtLabels(labels) {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

func labelsOf(m *dto.Metric) string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return fmtLabels(l)
}

func fmtLabels(l map[string]string) string {
	var parts []string
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func TestNewMetrics(t *testing.T) {
	_, err := NewMetrics(nil)
	require.Error(t, err, "no default registry behind the caller's back")

	reg, m := newMetrics(t)
	// Every collector is registered: touch one series of each.
	m.ReplicateEvents()(replicate.Event{Kind: replicate.EventProgress, VM: "db", Disk: "d0", Progress: &blockcopy.Progress{Written: 1}})
	m.ReplicateEvents()(replicate.Event{Kind: replicate.EventFinished, VM: "db", Result: &replicate.Result{Action: replicate.ActionFull}})
	m.ObserveStatus([]replicate.VMStatus{{VM: "db", RecoveryPoint: "rp", OK: true}})
	m.OrchestrateEvents("failover")(orchestrate.Event{Kind: orchestrate.EventSucceeded, Step: "s"})
	m.awsCalls.WithLabelValues("EC2", "DescribeVolumes", OutcomeOK).Inc()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	assert.Equal(t, []string{
		"draas_aws_api_calls_total",
		"draas_copy_bytes_total",
		"draas_dr_copy_age_seconds",
		"draas_dr_copy_rpo_ok",
		"draas_replication_duration_seconds",
		"draas_replications_total",
		"draas_step_duration_seconds",
		"draas_steps_total",
	}, names)
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems, "metric names and help follow Prometheus conventions")

	// A second Metrics on the same registry fails and leaves it as it was.
	_, err = NewMetrics(reg)
	var are prometheus.AlreadyRegisteredError
	require.ErrorAs(t, err, &are)
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Positive(t, n)

	// A registry holding only one of the collectors: NewMetrics fails and
	// unregisters what it registered before the clash.
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "draas_dr_copy_rpo_ok", Help: "other"}, []string{"vm"}))
	_, err = NewMetrics(reg2)
	require.Error(t, err)
	m2, err := NewMetrics(prometheus.WrapRegistererWithPrefix("other_", reg2))
	require.NoError(t, err, "the collectors registered before the clash were unregistered")
	m2.replications.WithLabelValues("db", "full").Inc()
	n, err = testutil.GatherAndCount(reg2, "other_draas_replications_total", "draas_replications_total")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

func TestReplicateEventsBytes(t *testing.T) {
	reg, m := newMetrics(t)
	feed := m.ReplicateEvents()
	progress := func(vm, disk string, written, zero, unchanged int64) {
		feed(replicate.Event{Kind: replicate.EventProgress, VM: vm, Disk: disk,
			Progress: &blockcopy.Progress{Written: written, SkippedZero: zero, SkippedUnchanged: unchanged, Resumed: 999}}) // Resumed is never counted
	}
	feed(replicate.Event{Kind: replicate.EventStarted, VM: "db"})
	feed(replicate.Event{Kind: replicate.EventCopy, VM: "db", Disk: "d0"})
	progress("db", "d0", 100, 10, 1000)
	progress("db", "d0", 300, 10, 1000)
	feed(replicate.Event{Kind: replicate.EventCopy, VM: "db", Disk: "d1"})
	progress("db", "d1", 50, 0, 0)
	progress("web", "d0", 7, 0, 0) // another VM's disk of the same name
	assert.Equal(t, 350.0, testutil.ToFloat64(m.copyBytes.WithLabelValues("db", BytesWritten)), "counted while the copies run")
	assert.Equal(t, 10.0, testutil.ToFloat64(m.copyBytes.WithLabelValues("db", BytesZero)))
	assert.Equal(t, 1000.0, testutil.ToFloat64(m.copyBytes.WithLabelValues("db", BytesUnchanged)))

	// The run ends; d1's copy did more after its last progress event.
	feed(replicate.Event{Kind: replicate.EventFinished, VM: "db", Result: &replicate.Result{
		VM: "db", Action: replicate.ActionIncremental, Duration: 90 * time.Second,
		Disks: []replicate.DiskResult{
			{Disk: "d0", Stats: blockcopy.Stats{BytesCopied: 300, BytesZero: 10, BytesUnchanged: 1000}},
			{Disk: "d1", Stats: blockcopy.Stats{BytesCopied: 80, BytesZero: 20, BytesUnchanged: 0}},
		},
	}})
	// The next run copies d0 again: its progress counts from zero.
	feed(replicate.Event{Kind: replicate.EventCopy, VM: "db", Disk: "d0"})
	progress("db", "d0", 5, 0, 0)
	// A run of db refused as busy must not disturb the copy in flight.
	feed(replicate.Event{Kind: replicate.EventFinished, VM: "db", Result: &replicate.Result{VM: "db", Action: replicate.ActionFailed, Err: replicate.ErrBusy}})
	progress("db", "d0", 6, 0, 0)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP draas_copy_bytes_total Bytes of disks copied into DR copies, by VM and kind: written, zero (holes and zero blocks skipped) or unchanged (outside the changed extents).
# TYPE draas_copy_bytes_total counter
draas_copy_bytes_total{kind="written",vm="db"} 386
draas_copy_bytes_total{kind="zero",vm="db"} 30
draas_copy_bytes_total{kind="unchanged",vm="db"} 1000
draas_copy_bytes_total{kind="written",vm="web"} 7
# HELP draas_replications_total Replication runs, by VM and action: full, incremental, unchanged, up-to-date or failed.
# TYPE draas_replications_total counter
draas_replications_total{action="failed",vm="db"} 1
draas_replications_total{action="incremental",vm="db"} 1
`), "draas_copy_bytes_total", "draas_replications_total"))

	count, sum := histogram(t, reg, "draas_replication_duration_seconds", map[string]string{"vm": "db"})
	assert.Equal(t, uint64(2), count)
	assert.Equal(t, 90.0, sum)
}

func TestReplicateEventsConcurrent(t *testing.T) {
	_, m := newMetrics(t)
	feed := m.ReplicateEvents()
	var wg sync.WaitGroup
	for _, vm := range []string{"a", "b", "c", "d"} {
		wg.Go(func() {
			feed(replicate.Event{Kind: replicate.EventCopy, VM: vm, Disk: "d0"})
			for i := range int64(100) {
				feed(replicate.Event{Kind: replicate.EventProgress, VM: vm, Disk: "d0", Progress: &blockcopy.Progress{Written: i * 10}})
			}
			feed(replicate.Event{Kind: replicate.EventFinished, VM: vm, Result: &replicate.Result{
				Action: replicate.ActionFull, Disks: []replicate.DiskResult{{Disk: "d0", Stats: blockcopy.Stats{BytesCopied: 1000}}},
			}})
		})
	}
	wg.Wait()
	for _, vm := range []string{"a", "b", "c", "d"} {
		assert.Equal(t, 1000.0, testutil.ToFloat64(m.copyBytes.WithLabelValues(vm, BytesWritten)))
	}
}

func TestObserveStatus(t *testing.T) {
	reg, m := newMetrics(t)
	m.ObserveStatus([]replicate.VMStatus{
		{VM: "db", RecoveryPoint: "rp-1", Age: 90 * time.Minute, Target: time.Hour, OK: false},
		{VM: "web", RecoveryPoint: "rp-2", Age: 10 * time.Minute, Target: time.Hour, OK: true},
		{VM: "new", Target: time.Hour}, // no complete copy yet
	})
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP draas_dr_copy_age_seconds Age of the recovery point of the VM's newest complete DR copy: the RPO a failover would achieve. Absent while the VM has no complete DR copy.
# TYPE draas_dr_copy_age_seconds gauge
draas_dr_copy_age_seconds{vm="db"} 5400
draas_dr_copy_age_seconds{vm="web"} 600
# HELP draas_dr_copy_rpo_ok 1 when the VM has a complete DR copy within the plan's RPO, else 0.
# TYPE draas_dr_copy_rpo_ok gauge
draas_dr_copy_rpo_ok{vm="db"} 0
draas_dr_copy_rpo_ok{vm="new"} 0
draas_dr_copy_rpo_ok{vm="web"} 1
`), "draas_dr_copy_age_seconds", "draas_dr_copy_rpo_ok"))

	// Later: db caught up; web's copies are gone.
	m.ObserveStatus([]replicate.VMStatus{
		{VM: "db", RecoveryPoint: "rp-3", Age: time.Minute, OK: true},
		{VM: "web"},
	})
	assert.Equal(t, 60.0, testutil.ToFloat64(m.copyAge.WithLabelValues("db")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.rpoOK.WithLabelValues("db")))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.rpoOK.WithLabelValues("web")))
	assert.Equal(t, 1, testutil.CollectAndCount(m.copyAge), "web has no age any more")
}

func TestOrchestrateEvents(t *testing.T) {
	reg, m := newMetrics(t)
	fo := m.OrchestrateEvents("failover")
	fb := m.OrchestrateEvents("failback")
	boom := errors.New("boom")
	for _, e := range []orchestrate.Event{
		{Kind: orchestrate.EventStarted, Step: "db/launch"},
		{Kind: orchestrate.EventRetried, Step: "db/launch", Attempt: 1, Err: boom, Backoff: time.Second},
		{Kind: orchestrate.EventSucceeded, Step: "db/launch", Attempt: 2, Duration: 40 * time.Second},
		{Kind: orchestrate.EventStarted, Step: "web/launch"},
		{Kind: orchestrate.EventFailed, Step: "web/launch", Attempt: 1, Err: boom, Duration: 2 * time.Second},
		{Kind: orchestrate.EventSkipped, Step: "web/dns", Err: boom},
		{Kind: orchestrate.EventCancelled, Step: "app/launch", Err: context.Canceled}, // never started
		{Kind: orchestrate.EventStarted, Step: "app/volumes"},
		{Kind: orchestrate.EventCancelled, Step: "app/volumes", Attempt: 1, Err: context.Canceled, Duration: time.Second},
		{Kind: orchestrate.EventUndoStarted, Step: "db/launch"},
		{Kind: orchestrate.EventUndone, Step: "db/launch", Attempt: 1, Duration: 5 * time.Second},
	} {
		fo(e)
	}
	fb(orchestrate.Event{Kind: orchestrate.EventResumed, Step: "db/copy"})

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP draas_steps_total Orchestration step events, by workflow kind (failover, failback, …), step and status (the event kind: started, retried, succeeded, failed, skipped, cancelled, resumed, undo-started, undo-retried, undone, undo-failed, undo-skipped).
# TYPE draas_steps_total counter
draas_steps_total{kind="failback",status="resumed",step="db/copy"} 1
draas_steps_total{kind="failover",status="cancelled",step="app/launch"} 1
draas_steps_total{kind="failover",status="cancelled",step="app/volumes"} 1
draas_steps_total{kind="failover",status="started",step="app/volumes"} 1
draas_steps_total{kind="failover",status="retried",step="db/launch"} 1
draas_steps_total{kind="failover",status="started",step="db/launch"} 1
draas_steps_total{kind="failover",status="succeeded",step="db/launch"} 1
draas_steps_total{kind="failover",status="undo-started",step="db/launch"} 1
draas_steps_total{kind="failover",status="undone",step="db/launch"} 1
draas_steps_total{kind="failover",status="skipped",step="web/dns"} 1
draas_steps_total{kind="failover",status="failed",step="web/launch"} 1
draas_steps_total{kind="failover",status="started",step="web/launch"} 1
`), "draas_steps_total"))

	for _, tc := range []struct {
		step, status string
		count        uint64
		sum          float64
	}{
		{"db/launch", "succeeded", 1, 40},
		{"db/launch", "undone", 1, 5},
		{"web/launch", "failed", 1, 2},
		{"app/volumes", "cancelled", 1, 1},
		{"app/launch", "cancelled", 0, 0}, // cancelled before it started: no duration
		{"db/launch", "retried", 0, 0},
	} {
		count, sum := histogram(t, reg, "draas_step_duration_seconds", map[string]string{"kind": "failover", "step": tc.step, "status": tc.status})
		assert.Equal(t, tc.count, count, "%s %s", tc.step, tc.status)
		assert.Equal(t, tc.sum, sum, "%s %s", tc.step, tc.status)
	}
}
