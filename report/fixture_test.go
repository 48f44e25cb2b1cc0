package report

import (
	"errors"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/replicate"
)

var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

const hostile = `<script>alert("pwned")</script>`

// drillReport is a drill of three VMs: db and web came up (web after db),
// evil's health check failed with a hostile message.
func drillReport() *failover.Report {
	ok := orchestrate.Succeeded
	step := func(name string, from, to time.Duration, attempts int) failover.Step {
		return failover.Step{Name: name, Status: ok, Start: at(from), End: at(to), Duration: to - from, Attempts: attempts}
	}
	return &failover.Report{
		Plan: "shop", Mode: "drill", RunID: "run-42", Start: t0, End: at(5 * time.Minute),
		RTO: 4*time.Minute + 30*time.Second,
		CriticalPath: []string{"run", "db/select", "db/volumes", "db/prepare", "db/launch", "db/healthy",
			"web/launch", "web/healthy", "web/dns"},
		VMs: []failover.VMReport{
			{
				VM: "db", RecoveryPoint: "rp-db-7", PointTime: t0.Add(-40 * time.Minute),
				InstanceID: "i-db", PrivateIP: "10.9.0.10", VolumeIDs: []string{"vol-db1", "vol-db2"},
				Up: true, Ready: 2 * time.Minute,
				Steps: []failover.Step{
					step("select", 0, 2*time.Second, 1),
					step("volumes", 2*time.Second, 40*time.Second, 1),
					step("prepare", 40*time.Second, 70*time.Second, 2),
					step("launch", 70*time.Second, 100*time.Second, 1),
					step("healthy", 100*time.Second, 120*time.Second, 3),
				},
			},
			{
				VM: "web", RecoveryPoint: "rp-web-9", PointTime: t0.Add(-25 * time.Minute),
				InstanceID: "i-web", PrivateIP: "10.9.0.11", VolumeIDs: []string{"vol-web1"},
				Records: []draas.Record{{Name: "www.drill.example.", Type: "A", Values: []string{"10.9.0.11"}}},
				Up:      true, Ready: 4*time.Minute + 30*time.Second,
				Steps: []failover.Step{
					step("select", 0, time.Second, 1),
					step("volumes", time.Second, 30*time.Second, 1),
					step("prepare", 30*time.Second, 50*time.Second, 1),
					step("launch", 120*time.Second, 150*time.Second, 1),
					step("healthy", 150*time.Second, 250*time.Second, 1),
					step("dns", 250*time.Second, 270*time.Second, 1),
				},
			},
			{
				VM: "evil", RecoveryPoint: "rp-evil-1", PointTime: t0.Add(-10 * time.Minute),
				InstanceID: "i-evil", VolumeIDs: []string{"vol-evil"},
				Error: "healthy: " + hostile,
				Steps: []failover.Step{
					step("select", 0, time.Second, 1),
					step("volumes", time.Second, 20*time.Second, 1),
					step("prepare", 20*time.Second, 30*time.Second, 1),
					step("launch", 30*time.Second, 60*time.Second, 1),
					{Name: "healthy", Status: orchestrate.Failed, Start: at(60 * time.Second), End: at(300 * time.Second),
						Attempts: 4, Error: hostile},
				},
			},
		},
	}
}

// failbackReport is a direct failback of two VMs; b's copy failed and its
// power-on was skipped.
func failbackReport() *failback.Report {
	sr := func(id string, from, to time.Duration, st orchestrate.Status, attempts int, err error) orchestrate.StepReport {
		r := orchestrate.StepReport{ID: id, Labels: map[string]string{"vm": id[:1]}, Status: st, Attempts: attempts, Err: err}
		if to > 0 {
			r.Start, r.End = at(from), at(to)
		}
		return r
	}
	ok := orchestrate.Succeeded
	return &failback.Report{
		Plan: "shop", Mode: "direct", Start: t0, End: at(10 * time.Minute),
		VMs: []failback.VMReport{
			{VM: "a", InstanceID: "i-a", Snapshots: []string{"snap-a"}, BytesCopied: 3 << 30, BlocksCopied: 6144,
				Downtime: 8 * time.Minute, Up: true},
			{VM: "b", InstanceID: "i-b", Snapshots: []string{"snap-b"}, BytesCopied: 1 << 20, BlocksCopied: 2,
				Error: "copy: read snap-b: throttled"},
		},
		Steps: []orchestrate.StepReport{
			sr("a/shape", 0, time.Second, ok, 1, nil),
			sr("a/snapshot", time.Second, time.Minute, ok, 1, nil),
			sr("a/create-vm", time.Second, 30*time.Second, ok, 1, nil),
			sr("a/copy", time.Minute, 8*time.Minute, ok, 2, nil),
			sr("a/power-on", 8*time.Minute, 9*time.Minute, ok, 1, nil),
			sr("b/shape", 0, time.Second, ok, 1, nil),
			sr("b/snapshot", time.Second, 2*time.Minute, ok, 1, nil),
			sr("b/create-vm", time.Second, 20*time.Second, ok, 1, nil),
			sr("b/copy", 2*time.Minute, 3*time.Minute, orchestrate.Failed, 3, errors.New("read snap-b: throttled")),
			sr("b/power-on", 0, 0, orchestrate.Skipped, 0, errors.New("dependency b/copy failed")),
		},
	}
}

// replicateResults are one incremental, one full and one failed run.
func replicateResults() []replicate.Result {
	return []replicate.Result{
		{
			VM: "db", Action: replicate.ActionIncremental, RecoveryPoint: "rp-db-8", PointTime: at(-5 * time.Minute),
			BytesSent: 64 << 20, BlocksSent: 128, BlocksSkipped: 8064,
			Disks: []replicate.DiskResult{
				{Disk: "disk0", SnapshotID: "snap-2", Parent: "snap-1", Stats: blockcopy.Stats{BytesCopied: 64 << 20, Retries: 2, Verified: true}},
			},
			Start: t0, Duration: 90 * time.Second, RPO: 6*time.Minute + 30*time.Second,
		},
		{
			VM: "web", Action: replicate.ActionFull, RecoveryPoint: "rp-web-3", PointTime: at(-2 * time.Minute),
			BytesSent: 1 << 30, BlocksSent: 2048, BlocksSkipped: 100,
			Disks: []replicate.DiskResult{
				{Disk: "disk0", SnapshotID: "snap-9", Stats: blockcopy.Stats{BytesCopied: 1 << 30, Retries: 1}},
			},
			Warnings: []string{"old copy snap-0 not deleted yet"},
			Start:    at(10 * time.Second), Duration: 4 * time.Minute, RPO: 6 * time.Minute,
		},
		{
			VM: "mail", Action: replicate.ActionFailed, Start: at(5 * time.Second), Duration: 3 * time.Second,
			Err: errors.New("list recovery points: access denied"), Error: "list recovery points: access denied",
		},
	}
}
