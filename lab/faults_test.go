package lab_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/lab"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
	"github.com/opendraas/draas/report"
)

// outcome is what a run of the workflows achieved, to compare with and
// without throttling.
type outcome struct {
	// Replicated is each VM's replication action; Copies the SHA-256 of
	// each of its DR copies' snapshots, by disk.
	Replicated map[string]replicate.Action
	Copies     map[string][]string
	// DrillUp and FailoverUp say which VMs came up; DrillCleanup whether
	// the drill's clean-up proof is complete.
	DrillUp, FailoverUp map[string]bool
	// Volumes is the SHA-256 of each VM's failed-over root volume, and
	// Site of its disk at the site.
	Volumes, Site map[string]string
}

// retries counts what each workflow's report says was retried.
type retries struct{ replicate, drill, failover int }

// runWorkflows backs the three-tier plan up, then, with fraction of the
// calls to every AWS API throttled, replicates, drills (and removes the
// drill) and fails over.
func runWorkflows(t *testing.T, fraction float64) (outcome, retries) {
	t.Helper()
	ctx := context.Background()
	l := backedUp(t, lab.Options{DiskMiB: 4})

	l.AWS.Throttle("*", fraction)
	out := outcome{Replicated: map[string]replicate.Action{}, Copies: map[string][]string{},
		DrillUp: map[string]bool{}, FailoverUp: map[string]bool{}, Volumes: map[string]string{}, Site: map[string]string{}}
	var n retries

	r, err := l.Replicator(replicate.Options{})
	require.NoError(t, err)
	results, err := r.ReplicateAll(ctx)
	require.NoError(t, err, "replicate with %v of the calls throttled", fraction)
	for _, res := range results {
		out.Replicated[res.VM] = res.Action
		for _, d := range res.Disks {
			data, err := l.AWS.SnapshotBytes(d.SnapshotID)
			require.NoError(t, err)
			out.Copies[res.VM] = append(out.Copies[res.VM], fmt.Sprintf("%s %x", d.Disk, sha256.Sum256(data)))
		}
	}
	n.replicate = report.FromReplicate(l.Plan.Name, results, report.Targets{}).Totals().Retries

	fo, err := l.Failover()
	require.NoError(t, err)
	drill, err := fo.Run(ctx, l.Plan, failover.Drill)
	require.NoError(t, err, "drill with %v of the calls throttled", fraction)
	for _, v := range drill.VMs {
		out.DrillUp[v.VM] = v.Up
		n.drill += int(v.Retries)
	}
	require.NoError(t, fo.Cleanup(ctx, drill))

	rep, err := fo.Run(ctx, l.Plan, failover.Failover)
	require.NoError(t, err, "failover with %v of the calls throttled", fraction)
	for _, v := range rep.VMs {
		out.FailoverUp[v.VM] = v.Up
		n.failover += int(v.Retries)
		d, err := l.Site.Disk(v.VM, 0)
		require.NoError(t, err)
		data := make([]byte, d.Size())
		require.NoError(t, l.AWS.ReadVolume(v.VolumeIDs[0], 0, data))
		out.Volumes[v.VM] = fmt.Sprintf("%x", sha256.Sum256(data))
		out.Site[v.VM] = fmt.Sprintf("%x", sha256.Sum256(d.Bytes()))
	}
	assert.Equal(t, n.failover, report.FromFailover(rep, report.Targets{}).Totals().Retries-stepRetries(rep),
		"the failover's report.Run counts the requests retried")
	return out, n
}

// stepRetries counts a failover's repeated step attempts.
func stepRetries(rep *failover.Report) int {
	n := 0
	for _, v := range rep.VMs {
		for _, s := range v.Steps {
			n += max(s.Attempts-1, 0)
		}
	}
	return n
}

// TestWorkflowsUnderThrottling runs replication, a drill and a failover
// with 20 % and then 50 % of the calls to every AWS API throttled: each
// completes with the same DR copies and the same VMs up as without
// throttling, and its report counts the retried requests.
func TestWorkflowsUnderThrottling(t *testing.T) {
	want, n := runWorkflows(t, 0)
	assert.Equal(t, retries{}, n, "nothing retried without throttling")
	for vm, sum := range want.Site {
		assert.Equal(t, sum, want.Volumes[vm], "%s fails over with its own bytes", vm)
	}
	for _, fraction := range []float64{0.2, 0.5} {
		t.Run(fmt.Sprintf("%.0f%%", 100*fraction), func(t *testing.T) {
			got, n := runWorkflows(t, fraction)
			assert.Equal(t, want, got)
			assert.Positive(t, n.replicate, "replication counts its retries")
			assert.Positive(t, n.drill, "the drill counts its retries")
			assert.Positive(t, n.failover, "the failover counts its retries")
			t.Logf("%.0f %% throttled: retries: replicate %d, drill %d, failover %d", 100*fraction, n.replicate, n.drill, n.failover)
		})
	}
}

// TestReplicateKeepsACopyWhoseTagsAreThrottled: the tags that mark a
// verified copy complete are written last; AWS throttling that CreateTags
// more often than the SDK's default three attempts must not throw the copy
// away.
func TestReplicateKeepsACopyWhoseTagsAreThrottled(t *testing.T) {
	ctx := context.Background()
	p, err := plan.Load("../examples/plans/three-tier.yaml")
	require.NoError(t, err)
	l, err := lab.Start(ctx, p, lab.Options{DiskMiB: 1})
	require.NoError(t, err)
	defer l.Close()
	vm := l.Plan.VMs[0].Name
	b, err := backup.New(l.Snapshotter(), l.Store, backup.Options{})
	require.NoError(t, err)
	_, err = b.Run(ctx, vm)
	require.NoError(t, err)

	for i := 1; i <= 5; i++ {
		l.AWS.ThrottleNth("CreateTags", i)
	}
	r, err := l.Replicator(replicate.Options{})
	require.NoError(t, err)
	res, err := r.ReplicateVM(ctx, vm)
	require.NoError(t, err)
	assert.Equal(t, replicate.ActionFull, res.Action)
	assert.GreaterOrEqual(t, res.Retries, int64(5), "the throttled CreateTags retried")
	assert.Empty(t, res.Deleted)
	st, err := r.Status(ctx)
	require.NoError(t, err)
	for _, s := range st {
		if s.VM == vm {
			assert.Equal(t, res.RecoveryPoint, s.RecoveryPoint, "the copy counts")
		}
	}
}
