// Package observe turns draas's event streams into structured logs and
// Prometheus metrics.
//
// The events are the single source: a [replicate.Replicator] reports on
// replicate.Options.Events, failover and failback report on their
// Options.Events (an [orchestrate.Event] stream), and this package offers
// consumers for both. [Tee] fans one stream out to several consumers, so that
// the same events feed a log, metrics and a progress bar:
//
//	events := observe.Tee(observe.ReplicateLogger(logger), metrics.ReplicateEvents())
//	r, err := replicate.New(plan, backups, copies, replicate.Options{Events: events})
//
// The package keeps no global state: logs go to the caller's [slog.Logger]
// and metrics are registered with the caller's [prometheus.Registerer]
// (never the default registry).
//
// # Logs
//
// [ReplicateLogger] and [OrchestrateLogger] (or a [Logger] built with
// [NewLogger] to tune them) write one record per event, with stable messages
// and attribute keys (the Key constants): Info for the lifecycle, Debug for
// copy progress (at most one record per disk per
// [LogOptions.ProgressInterval]), Warn for retries and warnings, Error for
// failures. Events carry no credentials and neither do the records.
//
// # Metrics
//
// [NewMetrics] registers these collectors:
//
//	draas_copy_bytes_total{vm,kind}                 counter: bytes of DR copies, kind written|zero|unchanged
//	draas_replications_total{vm,action}             counter: replication runs by replicate.Action
//	draas_replication_duration_seconds{vm}          histogram: replication run time
//	draas_dr_copy_age_seconds{vm}                   gauge: age of the newest complete DR copy's recovery point
//	draas_dr_copy_rpo_ok{vm}                        gauge: 1 when that age is within the plan's RPO, else 0
//	draas_steps_total{kind,step,status}             counter: orchestration step events
//	draas_step_duration_seconds{kind,step,status}   histogram: time of a step's Run or Undo
//	draas_aws_api_calls_total{service,operation,outcome}  counter: AWS API attempts, outcome ok|throttled|error
//
// Feed them with [Metrics.ReplicateEvents], [Metrics.OrchestrateEvents],
// [Metrics.ObserveStatus] and, on every AWS SDK client,
// [Metrics.AWSAPIOption].
package observe
