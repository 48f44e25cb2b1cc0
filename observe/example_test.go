package observe_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opendraas/draas"
	awsebs "github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/observe"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/replicate"
)

// Example wires a Replicator's events through Tee to a logger and to
// Prometheus metrics, and counts the AWS API calls of its EBS and EC2
// clients. It runs against awssim on loopback.
func Example() {
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	store, err := backupOf(ctx, srv, "db")
	if err != nil {
		log.Fatal(err)
	}

	// The caller's logger and registry: nothing global.
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: repeatable}))
	reg := prometheus.NewRegistry() // serve it with promhttp.HandlerFor(reg, …)
	metrics, err := observe.NewMetrics(reg)
	if err != nil {
		log.Fatal(err)
	}

	copies := awsebs.NewCopies(
		srv.EBS(func(o *ebs.Options) { o.APIOptions = append(o.APIOptions, metrics.AWSAPIOption()) }),
		srv.EC2(func(o *ec2.Options) { o.APIOptions = append(o.APIOptions, metrics.AWSAPIOption()) }),
		awsebs.CopiesOptions{})
	plan := draas.Plan{Name: "demo", VMs: []draas.VM{{Name: "db"}}, ReplicationInterval: time.Hour}
	r, err := replicate.New(plan, store, copies, replicate.Options{
		Events: observe.Tee(observe.ReplicateLogger(logger), metrics.ReplicateEvents()),
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := r.ReplicateVM(ctx, "db"); err != nil {
		log.Fatal(err)
	}
	status, err := r.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	metrics.ObserveStatus(status)

	printMetrics(reg,
		"draas_copy_bytes_total", "draas_replications_total", "draas_dr_copy_rpo_ok",
		// One call per 512 KiB block of data written into the snapshot.
		`draas_aws_api_calls_total{operation="PutSnapshotBlock"`)
	// Output:
	// level=INFO msg="replication started" event=started vm=db
	// level=INFO msg="disk copy started" event=copy vm=db disk=disk0
	// level=INFO msg="disk copied" event=copied vm=db disk=disk0 bytes=1048576
	// level=INFO msg="DR copy complete" event=completed vm=db
	// level=INFO msg="replication finished" event=finished vm=db action=full bytes=1048576
	// draas_aws_api_calls_total{operation="PutSnapshotBlock",outcome="ok",service="EBS"} 2
	// draas_copy_bytes_total{kind="written",vm="db"} 1.048576e+06
	// draas_copy_bytes_total{kind="zero",vm="db"} 3.145728e+06
	// draas_dr_copy_rpo_ok{vm="db"} 1
	// draas_replications_total{action="full",vm="db"} 1
}

// backupOf writes a recovery point of vm, one 4 MiB disk with 1 MiB of
// data, an hour old, into a backup store in srv's S3.
func backupOf(ctx context.Context, srv *awssim.Server, vm string) (*s3.Store, error) {
	store := s3.New(srv.S3(), "backups", "store", s3.Options{})
	disk := draastest.NewDisk(4<<20, 512<<10)
	if _, err := disk.WriteAt(bytes.Repeat([]byte{7}, 1<<20), 0); err != nil {
		return nil, err
	}
	w, err := store.BeginPoint(ctx, vm, []draas.Disk{{Name: "disk0", Size: disk.Size()}}, time.Now().Add(-time.Hour))
	if err != nil {
		return nil, err
	}
	sink, err := w.DiskOnBase(ctx, "disk0") // the first point: an empty sink
	if err != nil {
		return nil, err
	}
	if _, err := blockcopy.Copy(ctx, sink, disk, blockcopy.Options{}); err != nil {
		return nil, err
	}
	return store, w.Commit(ctx)
}

// repeatable drops the attributes that change from run to run (times,
// durations, generated IDs), for the example's output.
func repeatable(_ []string, a slog.Attr) slog.Attr {
	switch a.Key {
	case slog.TimeKey, observe.KeyDuration, observe.KeyRPO, observe.KeyPoint, observe.KeySnapshot:
		return slog.Attr{}
	}
	return a
}

// printMetrics prints the counter and gauge samples that start with one of
// the prefixes, in the exposition format's order.
func printMetrics(g prometheus.Gatherer, prefixes ...string) {
	mfs, err := g.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			line := fmt.Sprintf("%s{%s} %g", mf.GetName(), strings.Join(labels, ","), m.GetCounter().GetValue()+m.GetGauge().GetValue())
			if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(line, p) }) {
				fmt.Println(line)
			}
		}
	}
}

// ExampleNewLogger logs a failover's step events with a "kind" attribute and
// counts them in metrics: the consumer to pass as failover.Options.Events.
func ExampleNewLogger() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: repeatable}))
	metrics, err := observe.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		log.Fatal(err)
	}
	l := observe.NewLogger(logger.With("kind", "failover"), observe.LogOptions{ProgressInterval: time.Minute})
	events := observe.Tee(l.Orchestrate, metrics.OrchestrateEvents("failover"))

	events(orchestrate.Event{
		Kind: orchestrate.EventRetried, Step: "db/launch", Labels: map[string]string{"vm": "db"},
		Attempt: 1, Err: errors.New("RequestLimitExceeded: rate exceeded"), Backoff: 200 * time.Millisecond,
	})
	events(orchestrate.Event{
		Kind: orchestrate.EventSucceeded, Step: "db/launch", Labels: map[string]string{"vm": "db"},
		Attempt: 2, Duration: 41 * time.Second,
	})
	// Output:
	// level=WARN msg="step retried" kind=failover event=retried step=db/launch vm=db attempt=1 backoff=200ms error="RequestLimitExceeded: rate exceeded"
	// level=INFO msg="step succeeded" kind=failover event=succeeded step=db/launch vm=db attempt=2
}
