package lab_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/lab"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/replicate"
)

// The failback part of the fault suite: failback under throttling of every
// AWS API, and killed at the start of each step then run again with the
// same journal, brings every VM back with its EC2 volume's bytes, points
// DNS back, deletes its snapshots and leaves nothing in the simulated
// account or on the site that it does not report.

// failedOver is a lab after a failover, with the site lost: what failback
// starts from.
type failedOver struct {
	l  *lab.Lab
	fo *failover.Report
	// snaps, vols and insts are the account's snapshots (the DR copies),
	// volumes and instances before the failback, sorted.
	snaps, vols, insts []string
}

// failOver builds the three-tier lab with its site's DNS records, backs
// up, replicates and fails over without faults, writes on each instance's
// volume as life goes on in EC2, and loses the site.
func failOver(t *testing.T) *failedOver {
	t.Helper()
	ctx := context.Background()
	l := backedUp(t, lab.Options{DiskMiB: 2, SiteRecords: true})
	r, err := l.Replicator(replicate.Options{})
	require.NoError(t, err)
	_, err = r.ReplicateAll(ctx)
	require.NoError(t, err)
	fo, err := l.Failover()
	require.NoError(t, err)
	rep, err := fo.Run(ctx, l.Plan, failover.Failover)
	require.NoError(t, err)
	for i, v := range rep.VMs {
		require.True(t, v.Up, v.VM)
		require.NoError(t, l.AWS.WriteVolume(v.VolumeIDs[0], int64(i)*4096, []byte("written on EC2 by "+v.VM)))
	}
	require.NoError(t, l.LoseSite())
	f := &failedOver{l: l, fo: rep}
	f.snaps, f.vols, f.insts = account(l)
	return f
}

// account lists the simulated account's snapshots, volumes and instances
// (not those terminated), sorted.
func account(l *lab.Lab) (snaps, vols, insts []string) {
	for _, s := range l.AWS.Snapshots() {
		snaps = append(snaps, s.ID)
	}
	for _, v := range l.AWS.Volumes() {
		vols = append(vols, v.ID)
	}
	for _, i := range l.AWS.Instances() {
		if i.State != "terminated" && i.State != "shutting-down" {
			insts = append(insts, i.ID)
		}
	}
	slices.Sort(snaps)
	slices.Sort(vols)
	slices.Sort(insts)
	return snaps, vols, insts
}

// records lists the records of every hosted zone but SOA and NS, as
// "name type values", sorted.
func records(t *testing.T, l *lab.Lab) []string {
	t.Helper()
	var out []string
	for _, z := range l.AWS.HostedZones() {
		sets, err := l.AWS.RecordSets(z.ID)
		require.NoError(t, err)
		for _, r := range sets {
			if r.Type != "SOA" && r.Type != "NS" {
				out = append(out, fmt.Sprintf("%s %s %v", strings.TrimSuffix(r.Name, "."), r.Type, r.Values))
			}
		}
	}
	slices.Sort(out)
	return out
}

// checkFailback checks a completed failback of f (the account's faults
// cleared): every VM up, on the site only once, with each disk
// byte-identical to its EC2 volume; DNS as before the failover; and in
// the account only what was there before the failback (plus the failback's
// snapshots with keep). It returns the SHA-256 of each VM's disks.
func checkFailback(t *testing.T, f *failedOver, back *failback.Report, keep bool) map[string]string {
	t.Helper()
	ctx := context.Background()
	l := f.l
	sums := map[string]string{}
	var kept []string
	for _, v := range back.VMs {
		require.True(t, v.Up, "%s: %s", v.VM, v.Error)
		fo, ok := f.fo.VM(v.VM)
		require.True(t, ok, v.VM)
		assert.Equal(t, fo.InstanceID, v.InstanceID, v.VM)
		require.Len(t, v.Shape.Disks, len(fo.VolumeIDs), v.VM)
		for i, vol := range fo.VolumeIDs {
			d, err := l.Site.Disk(v.VM, i)
			require.NoError(t, err)
			want := make([]byte, d.Size())
			require.NoError(t, l.AWS.ReadVolume(vol, 0, want))
			assert.True(t, bytes.Equal(want, d.Bytes()), "%s disk %d comes back with its EC2 volume's bytes", v.VM, i)
			sums[v.VM] += fmt.Sprintf("%x ", sha256.Sum256(d.Bytes()))
		}
		on, err := l.Site.PoweredOn(v.VM)
		require.NoError(t, err)
		assert.True(t, on, "%s is powered on", v.VM)
		kept = append(kept, v.Snapshots...)
	}
	vms := l.Site.VMs()
	slices.Sort(vms)
	var want []string
	for _, vm := range l.Plan.VMs {
		want = append(want, vm.Name)
	}
	slices.Sort(want)
	assert.Equal(t, want, vms, "one VM per plan VM on the site")

	require.NotEmpty(t, l.SiteRecords)
	var wantRecs []string
	for _, r := range l.SiteRecords {
		got, err := l.DNS.Lookup(ctx, r.Zone, r.Name, r.Type)
		require.NoError(t, err)
		assert.Equal(t, r.Values, got.Values, "%s points back on premises", r.Name)
		wantRecs = append(wantRecs, fmt.Sprintf("%s %s %v", strings.TrimSuffix(r.Name, "."), r.Type, r.Values))
	}
	slices.Sort(wantRecs)
	assert.Equal(t, wantRecs, records(t, l), "DNS records: the site's, nothing else")

	snaps, vols, insts := account(l)
	wantSnaps := slices.Clone(f.snaps)
	if keep {
		wantSnaps = append(wantSnaps, kept...)
		slices.Sort(wantSnaps)
	}
	assert.Equal(t, wantSnaps, snaps, "snapshots: the DR copies (and the failback's if kept)")
	assert.Equal(t, f.vols, vols, "volumes: the failed-over instances' only")
	assert.Equal(t, f.insts, insts, "instances: the failed-over ones only")
	return sums
}

// retriesOf sums a failback report's retries.
func retriesOf(rep *failback.Report) int64 {
	var n int64
	for _, v := range rep.VMs {
		n += v.Retries
	}
	return n
}

// failBack fails f back in mode (Direct; or PreSeed, more writes on EC2,
// then CutOver) with fraction of the calls to every AWS API throttled, and
// returns the report of the last run and the retries of all runs.
func failBack(t *testing.T, f *failedOver, mode failback.Mode, fraction float64, opts failback.Options) (*failback.Report, int64) {
	t.Helper()
	ctx := context.Background()
	fb, err := f.l.Failback(opts)
	require.NoError(t, err)
	f.l.AWS.Throttle("*", fraction)
	defer f.l.AWS.ClearFaults()
	if mode == failback.Direct {
		rep, err := fb.Run(ctx, f.l.Plan, failback.Direct, failback.TargetsFromFailover(f.fo, nil))
		require.NoError(t, err, "direct failback with %v of the calls throttled", fraction)
		return rep, retriesOf(rep)
	}
	pre, err := fb.Run(ctx, f.l.Plan, failback.PreSeed, failback.TargetsFromFailover(f.fo, nil))
	require.NoError(t, err, "pre-seed with %v of the calls throttled", fraction)
	for i, v := range f.fo.VMs {
		require.NoError(t, f.l.AWS.WriteVolume(v.VolumeIDs[0], int64(i+8)*4096, []byte("written after the pre-seed by "+v.VM)))
	}
	rep, err := fb.Run(ctx, f.l.Plan, failback.CutOver, failback.TargetsFromFailover(f.fo, pre))
	require.NoError(t, err, "cut-over with %v of the calls throttled", fraction)
	return rep, retriesOf(pre) + retriesOf(rep)
}

// TestFailbackUnderThrottling fails back directly, and by pre-seed then
// cut-over, with 0, 20 and 50 % of the calls to every AWS API throttled:
// each brings back the same bytes as without throttling, points DNS back,
// deletes its snapshots, leaves nothing else in the account, and counts
// its retries. With -short, 0 and 50 % only.
func TestFailbackUnderThrottling(t *testing.T) {
	for _, c := range []struct {
		name string
		mode failback.Mode
		keep bool
	}{
		{"direct", failback.Direct, false},
		{"pre-seed+cut-over", failback.CutOver, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var want map[string]string
			fractions := []float64{0, 0.2, 0.5}
			if testing.Short() {
				fractions = []float64{0, 0.5}
			}
			for _, fraction := range fractions {
				t.Run(fmt.Sprintf("%.0f%%", 100*fraction), func(t *testing.T) {
					f := failOver(t)
					rep, n := failBack(t, f, c.mode, fraction, failback.Options{KeepSnapshots: c.keep})
					got := checkFailback(t, f, rep, c.keep)
					if fraction == 0 {
						want = got
						assert.Zero(t, n, "nothing retried without throttling")
						return
					}
					assert.Equal(t, want, got, "the same bytes as without throttling")
					assert.Positive(t, n, "the failback counts its retries")
					t.Logf("%s, %.0f %% throttled: %d retries", c.name, 100*fraction, n)
				})
			}
		})
	}
}

// TestFailbackKilledAtEachStep kills a direct failback (cancels its
// context) at the start of each kind of step (of the first VM that runs
// it), runs it again with the same journal, and checks that it completes
// as an uninterrupted run does, with no extra snapshot left in the account
// and no extra VM on the site. With -short, every third kind of step.
func TestFailbackKilledAtEachStep(t *testing.T) {
	f := failOver(t)
	fb, err := f.l.Failback(failback.Options{})
	require.NoError(t, err)
	g, err := fb.Compile(f.l.Plan, failback.Direct, failback.TargetsFromFailover(f.fo, nil))
	require.NoError(t, err)
	sched, err := orchestrate.Plan(context.Background(), g, orchestrate.Options{Parallelism: 1})
	require.NoError(t, err)
	var steps []string
	seen := map[string]bool{}
	for _, id := range sched.Order() {
		if kind := id[strings.LastIndex(id, "/")+1:]; !seen[kind] {
			seen[kind] = true
			steps = append(steps, id)
		}
	}
	require.NotEmpty(t, steps)
	rep, _ := failBack(t, f, failback.Direct, 0, failback.Options{})
	want := checkFailback(t, f, rep, false)
	if testing.Short() {
		var some []string
		for i := 0; i < len(steps); i += 3 {
			some = append(some, steps[i])
		}
		steps = some
	}
	for _, step := range steps {
		t.Run("at start of "+step, func(t *testing.T) {
			ctx := context.Background()
			f := failOver(t)
			journal := orchestrate.NewFileJournal(filepath.Join(t.TempDir(), "journal"))
			killCtx, kill := context.WithCancel(ctx)
			defer kill()
			killed := false
			// One step at a time: the kill then lands between steps of
			// every VM. A kill while another VM's snapshot call is in
			// flight leaves that call's snapshots behind, and the rerun
			// makes new ones: a known defect (docs/limits.md) that this
			// test found and that is not fixed yet.
			fb, err := f.l.Failback(failback.Options{Journal: journal, Parallelism: 1, Events: func(ev orchestrate.Event) {
				if ev.Kind == orchestrate.EventStarted && ev.Step == step {
					killed = true
					kill()
				}
			}})
			require.NoError(t, err)
			targets := failback.TargetsFromFailover(f.fo, nil)
			_, err = fb.Run(killCtx, f.l.Plan, failback.Direct, targets)
			require.True(t, killed, "the step started")
			require.Error(t, err, "the run was killed")

			fb, err = f.l.Failback(failback.Options{Journal: journal})
			require.NoError(t, err)
			rep, err := fb.Run(ctx, f.l.Plan, failback.Direct, targets)
			require.NoError(t, err, "the run resumed after the kill completes")
			assert.Equal(t, want, checkFailback(t, f, rep, false))
		})
	}
}
