package failover_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/aws/route53"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
)

// The fault suite: a failover or a drill killed at each step, and right
// after each call that changes the account, then run again with the same
// journal, completes, and leaves nothing in the simulated account that its
// report does not name: no instance, volume, snapshot or DNS record.
//
// The kill is a cancelled context, as SIGINT gives draasctl's runs; a call
// that returned just before it is what a process killed right after the
// call leaves (the journal does not know what the call made).

// killer cancels a run's context right after the at-th call that changes
// the account returns, or when step is started.
type killer struct {
	mu     sync.Mutex
	calls  []string // the changing calls made, in order
	at     int      // 1-based; 0 never
	step   string
	cancel context.CancelFunc
}

func (k *killer) after(op string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, op)
	if len(k.calls) == k.at {
		k.cancel()
	}
}

func (k *killer) events(ev orchestrate.Event) {
	if ev.Kind == orchestrate.EventStarted && ev.Step == k.step {
		k.cancel()
	}
}

// killEC2 is the EC2 client of a process that k kills.
type killEC2 struct {
	*awsec2.Client
	k *killer
}

func (c killEC2) CreateVolume(ctx context.Context, in *awsec2.CreateVolumeInput, o ...func(*awsec2.Options)) (*awsec2.CreateVolumeOutput, error) {
	out, err := c.Client.CreateVolume(ctx, in, o...)
	c.k.after("CreateVolume")
	return out, err
}

func (c killEC2) DeleteVolume(ctx context.Context, in *awsec2.DeleteVolumeInput, o ...func(*awsec2.Options)) (*awsec2.DeleteVolumeOutput, error) {
	out, err := c.Client.DeleteVolume(ctx, in, o...)
	c.k.after("DeleteVolume")
	return out, err
}

func (c killEC2) AttachVolume(ctx context.Context, in *awsec2.AttachVolumeInput, o ...func(*awsec2.Options)) (*awsec2.AttachVolumeOutput, error) {
	out, err := c.Client.AttachVolume(ctx, in, o...)
	c.k.after("AttachVolume")
	return out, err
}

func (c killEC2) DetachVolume(ctx context.Context, in *awsec2.DetachVolumeInput, o ...func(*awsec2.Options)) (*awsec2.DetachVolumeOutput, error) {
	out, err := c.Client.DetachVolume(ctx, in, o...)
	c.k.after("DetachVolume")
	return out, err
}

func (c killEC2) RunInstances(ctx context.Context, in *awsec2.RunInstancesInput, o ...func(*awsec2.Options)) (*awsec2.RunInstancesOutput, error) {
	out, err := c.Client.RunInstances(ctx, in, o...)
	c.k.after("RunInstances")
	return out, err
}

func (c killEC2) StartInstances(ctx context.Context, in *awsec2.StartInstancesInput, o ...func(*awsec2.Options)) (*awsec2.StartInstancesOutput, error) {
	out, err := c.Client.StartInstances(ctx, in, o...)
	c.k.after("StartInstances")
	return out, err
}

func (c killEC2) StopInstances(ctx context.Context, in *awsec2.StopInstancesInput, o ...func(*awsec2.Options)) (*awsec2.StopInstancesOutput, error) {
	out, err := c.Client.StopInstances(ctx, in, o...)
	c.k.after("StopInstances")
	return out, err
}

func (c killEC2) CreateTags(ctx context.Context, in *awsec2.CreateTagsInput, o ...func(*awsec2.Options)) (*awsec2.CreateTagsOutput, error) {
	out, err := c.Client.CreateTags(ctx, in, o...)
	c.k.after("CreateTags")
	return out, err
}

// killR53 is the Route 53 client of a process that k kills.
type killR53 struct {
	*awsr53.Client
	k *killer
}

func (c killR53) ChangeResourceRecordSets(ctx context.Context, in *awsr53.ChangeResourceRecordSetsInput, o ...func(*awsr53.Options)) (*awsr53.ChangeResourceRecordSetsOutput, error) {
	out, err := c.Client.ChangeResourceRecordSets(ctx, in, o...)
	c.k.after("ChangeResourceRecordSets")
	return out, err
}

// killedRun runs mode on a new env with k's clients until k kills it, then
// again with the same journal and the env's own clients, and returns the
// env, the second run's report and the snapshots that existed before.
func killedRun(t *testing.T, mode failover.Mode, k *killer) (*env, *failover.Report, []string) {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t)
	var snaps []string
	for _, s := range e.srv.Snapshots() {
		snaps = append(snaps, s.ID)
	}
	journal := orchestrate.NewFileJournal(filepath.Join(t.TempDir(), "journal"))
	opts := e.opts
	opts.Journal = journal
	opts.Events = k.events
	opts.DNS = route53.New(killR53{e.srv.Route53(), k}, route53.Options{PollInterval: time.Millisecond})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	k.cancel = cancel
	r, err := failover.New(ec2.New(killEC2{e.ec2, k}, e.launcherOpts), e.copies, opts)
	require.NoError(t, err)
	_, err = r.Run(cctx, e.plan, mode)
	if k.at != 0 || k.step != "" {
		require.Error(t, err, "the run was killed")
	}
	// While the process is down, what it started finishes: volumes detach,
	// instances stop.
	require.Eventually(t, func() bool {
		vols, err := e.ec2.DescribeVolumes(ctx, &awsec2.DescribeVolumesInput{})
		if err != nil {
			return false
		}
		for _, v := range vols.Volumes {
			if v.State == "creating" || (len(v.Attachments) > 0 && v.Attachments[0].State != "attached") {
				return false
			}
		}
		out, err := e.ec2.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{})
		if err != nil {
			return false
		}
		for _, r := range out.Reservations {
			for _, i := range r.Instances {
				if s := i.State.Name; s == "pending" || s == "stopping" || s == "shutting-down" {
					return false
				}
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)

	opts = e.opts
	opts.Journal = journal
	rep, err := e.runner(opts).Run(ctx, e.plan, mode)
	require.NoError(t, err, "the run resumed after the kill completes")
	for _, v := range rep.VMs {
		require.True(t, v.Up, v.VM)
		assert.Empty(t, v.Leftover, v.VM)
	}
	return e, rep, snaps
}

// assertOnlyReported checks, by listing the simulated account, that every
// instance, volume, snapshot and DNS record left is one the report names
// (or a DR copy, or a record that was there before).
func assertOnlyReported(t *testing.T, e *env, rep *failover.Report, snaps []string) {
	t.Helper()
	var wantInst, wantVols, wantRecs []string
	for _, v := range rep.VMs {
		wantInst = append(wantInst, v.InstanceID)
		wantVols = append(wantVols, v.VolumeIDs...)
		for _, r := range v.Records {
			wantRecs = append(wantRecs, fmt.Sprintf("%s %s %v", r.Name, r.Type, r.Values))
		}
	}
	var inst []string
	for _, i := range instancesOf(e.srv) {
		if i.State != "shutting-down" {
			inst = append(inst, i.ID)
		}
	}
	live, _ := liveVolumes(e)
	var gotSnaps []string
	for _, s := range e.srv.Snapshots() {
		gotSnaps = append(gotSnaps, s.ID)
	}
	var recs []string
	sets, err := e.srv.RecordSets(e.zoneID)
	require.NoError(t, err)
	for _, r := range sets {
		if r.Type != "SOA" && r.Type != "NS" {
			recs = append(recs, fmt.Sprintf("%s %s %v", r.Name, r.Type, r.Values))
		}
	}
	for _, s := range [][]string{wantInst, wantVols, wantRecs, inst, live, gotSnaps, recs, snaps} {
		slices.Sort(s)
	}
	assert.Equal(t, wantInst, inst, "instances")
	assert.Equal(t, wantVols, live, "volumes")
	assert.Equal(t, snaps, gotSnaps, "snapshots: the DR copies only")
	assert.Equal(t, wantRecs, recs, "DNS records")
}

// killPoints returns the kill points of a run of mode: each step's start,
// and after each call that changes the account, counted in a run that is
// not killed. With -short, every third.
func killPoints(t *testing.T, mode failover.Mode) []killPoint {
	k := &killer{}
	e, rep, snaps := killedRun(t, mode, k)
	assertOnlyReported(t, e, rep, snaps)
	g, err := e.runner(e.opts).Compile(e.plan, mode)
	require.NoError(t, err)
	sched, err := orchestrate.Plan(context.Background(), g, orchestrate.Options{Parallelism: 1})
	require.NoError(t, err)
	var points []killPoint
	for _, id := range sched.Order() {
		points = append(points, killPoint{step: id})
	}
	for i := range k.calls {
		points = append(points, killPoint{at: i + 1})
	}
	if testing.Short() {
		var some []killPoint
		for i := 0; i < len(points); i += 3 {
			some = append(some, points[i])
		}
		points = some
	}
	return points
}

// killPoint is where a killer kills: right after the at-th call that
// changes the account, or when step starts.
type killPoint struct {
	at   int
	step string
}

func (p killPoint) String() string {
	if p.step != "" {
		return "at start of " + p.step
	}
	return fmt.Sprintf("after change %d", p.at)
}

func TestFailoverKilledAnywhereLeavesOnlyWhatItReports(t *testing.T) {
	for _, p := range killPoints(t, failover.Failover) {
		t.Run(p.String(), func(t *testing.T) {
			k := &killer{at: p.at, step: p.step}
			e, rep, snaps := killedRun(t, failover.Failover, k)
			if k.at > 0 {
				t.Logf("killed after %s", k.calls[k.at-1])
			}
			assertOnlyReported(t, e, rep, snaps)
		})
	}
}

func TestDrillKilledAnywhereLeavesOnlyWhatItReports(t *testing.T) {
	ctx := context.Background()
	for _, p := range killPoints(t, failover.Drill) {
		t.Run(p.String(), func(t *testing.T) {
			k := &killer{at: p.at, step: p.step}
			e, rep, snaps := killedRun(t, failover.Drill, k)
			assertOnlyReported(t, e, rep, snaps)
			require.NoError(t, e.runner(e.opts).Cleanup(ctx, rep))
			live, _ := liveVolumes(e)
			assert.Empty(t, live, "no volume left after the clean-up")
			assert.Empty(t, instancesOf(e.srv), "no instance left after the clean-up")
		})
	}
}
