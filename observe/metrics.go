package observe

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/replicate"
)

// Metrics holds draas's Prometheus collectors, registered with the caller's
// registry by [NewMetrics]. Its methods are safe for concurrent use.
type Metrics struct {
	copyBytes           *prometheus.CounterVec
	replications        *prometheus.CounterVec
	replicationDuration *prometheus.HistogramVec
	copyAge             *prometheus.GaugeVec
	rpoOK               *prometheus.GaugeVec
	steps               *prometheus.CounterVec
	stepDuration        *prometheus.HistogramVec
	awsCalls            *prometheus.CounterVec
}

// The kind label values of draas_copy_bytes_total.
const (
	BytesWritten   = "written"   // written to the DR copy
	BytesZero      = "zero"      // skipped: holes and all-zero blocks
	BytesUnchanged = "unchanged" // skipped: outside the changed extents
)

// NewMetrics creates draas's collectors (see the package documentation for
// the list) and registers them with reg, which must not be nil: pass
// prometheus.NewRegistry() or prometheus.DefaultRegisterer explicitly. If
// one of them cannot be registered (for example because reg already has
// draas's metrics), NewMetrics unregisters those it registered and returns
// the error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("observe: NewMetrics: nil prometheus.Registerer")
	}
	m := &Metrics{
		copyBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "draas_copy_bytes_total",
			Help: "Bytes of disks copied into DR copies, by VM and kind: written, zero (holes and zero blocks skipped) or unchanged (outside the changed extents).",
		}, []string{"vm", "kind"}),
		replications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "draas_replications_total",
			Help: "Replication runs, by VM and action: full, incremental, unchanged, up-to-date or failed.",
		}, []string{"vm", "action"}),
		replicationDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "draas_replication_duration_seconds",
			Help:    "Time of a VM's replication run.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800},
		}, []string{"vm"}),
		copyAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "draas_dr_copy_age_seconds",
			Help: "Age of the recovery point of the VM's newest complete DR copy: the RPO a failover would achieve. Absent while the VM has no complete DR copy.",
		}, []string{"vm"}),
		rpoOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "draas_dr_copy_rpo_ok",
			Help: "1 when the VM has a complete DR copy within the plan's RPO, else 0.",
		}, []string{"vm"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "draas_steps_total",
			Help: "Orchestration step events, by workflow kind (failover, failback, …), step and status (the event kind: started, retried, succeeded, failed, skipped, cancelled, resumed, undo-started, undo-retried, undone, undo-failed, undo-skipped).",
		}, []string{"kind", "step", "status"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "draas_step_duration_seconds",
			Help:    "Time of an orchestration step's Run (status succeeded, failed, cancelled) or Undo (status undone, undo-failed), retries included.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"kind", "step", "status"}),
		awsCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "draas_aws_api_calls_total",
			Help: "AWS API call attempts (each retry counts), by service, operation and outcome: ok, throttled or error.",
		}, []string{"service", "operation", "outcome"}),
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{
		m.copyBytes, m.replications, m.replicationDuration, m.copyAge, m.rpoOK, m.steps, m.stepDuration, m.awsCalls,
	} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, err
		}
		done = append(done, c)
	}
	return m, nil
}

// ReplicateEvents returns a consumer of a [replicate.Replicator]'s events
// that feeds draas_copy_bytes_total while copies progress and, when a VM's
// run finishes, draas_replications_total and
// draas_replication_duration_seconds. The consumer is safe for concurrent
// use. Give each event stream its own consumer: it keeps the last progress
// of each disk copy in flight to count only what is new.
func (m *Metrics) ReplicateEvents() func(replicate.Event) {
	var (
		mu   sync.Mutex
		last = map[diskKey]blockcopy.Progress{} // copies in flight
	)
	// add counts what p adds to the copy's last progress.
	add := func(vm string, p, prev blockcopy.Progress) {
		for _, c := range []struct {
			kind      string
			now, then int64
		}{
			{BytesWritten, p.Written, prev.Written},
			{BytesZero, p.SkippedZero, prev.SkippedZero},
			{BytesUnchanged, p.SkippedUnchanged, prev.SkippedUnchanged},
		} {
			if d := c.now - c.then; d > 0 {
				m.copyBytes.WithLabelValues(vm, c.kind).Add(float64(d))
			}
		}
	}
	return func(e replicate.Event) {
		k := diskKey{e.VM, e.Disk}
		switch e.Kind {
		case replicate.EventCopy:
			// A new copy of the disk: its counts start from zero.
			mu.Lock()
			delete(last, k)
			mu.Unlock()
		case replicate.EventProgress:
			if e.Progress == nil {
				return
			}
			mu.Lock()
			prev := last[k]
			last[k] = *e.Progress
			mu.Unlock()
			add(e.VM, *e.Progress, prev)
		case replicate.EventFinished:
			if e.Result == nil {
				return
			}
			res := e.Result
			// Count what the copies did after their last progress event.
			for _, d := range res.Disks {
				dk := diskKey{e.VM, d.Disk}
				mu.Lock()
				prev := last[dk]
				delete(last, dk)
				mu.Unlock()
				add(e.VM, blockcopy.Progress{
					Written: d.Stats.BytesCopied, SkippedZero: d.Stats.BytesZero, SkippedUnchanged: d.Stats.BytesUnchanged,
				}, prev)
			}
			m.replications.WithLabelValues(e.VM, string(res.Action)).Inc()
			m.replicationDuration.WithLabelValues(e.VM).Observe(res.Duration.Seconds())
		}
	}
}

// ObserveStatus sets draas_dr_copy_age_seconds and draas_dr_copy_rpo_ok
// from a [replicate.Replicator.Status] answer. Call it periodically (ages
// grow between calls). A VM without a complete DR copy has rpo_ok 0 and no
// age series. VMs absent from statuses keep their last values: several
// plans may share one Metrics.
func (m *Metrics) ObserveStatus(statuses []replicate.VMStatus) {
	for _, s := range statuses {
		if s.RecoveryPoint == "" {
			m.copyAge.DeleteLabelValues(s.VM)
		} else {
			m.copyAge.WithLabelValues(s.VM).Set(s.Age.Seconds())
		}
		ok := 0.0
		if s.OK {
			ok = 1
		}
		m.rpoOK.WithLabelValues(s.VM).Set(ok)
	}
}

// OrchestrateEvents returns a consumer of orchestration events that feeds
// draas_steps_total (every event, status = the event kind) and
// draas_step_duration_seconds (events that end a step's Run or Undo), with
// the kind label set to kind: "failover", "failback", "drill", …. The
// consumer is safe for concurrent use.
func (m *Metrics) OrchestrateEvents(kind string) func(orchestrate.Event) {
	return func(e orchestrate.Event) {
		status := string(e.Kind)
		m.steps.WithLabelValues(kind, e.Step, status).Inc()
		switch e.Kind {
		case orchestrate.EventSucceeded, orchestrate.EventFailed, orchestrate.EventUndone, orchestrate.EventUndoFailed:
			m.stepDuration.WithLabelValues(kind, e.Step, status).Observe(e.Duration.Seconds())
		case orchestrate.EventCancelled:
			// A step cancelled before it started has no duration.
			if e.Attempt > 0 {
				m.stepDuration.WithLabelValues(kind, e.Step, status).Observe(e.Duration.Seconds())
			}
		}
	}
}
