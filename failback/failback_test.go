package failback_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/vsphere"
)

const blk = 512 << 10

type env struct {
	t        *testing.T
	srv      *awssim.Server
	launcher *ec2.Launcher
	hv       draas.Hypervisor
	dns      *draastest.DNS
	plan     *plan.Plan
	inst     map[string]draas.Instance
}

// newEnv runs a two-VM application on EC2, as a failover left it, with
// data written on the EC2 side since.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	client := srv.EC2()
	subnets, err := client.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{})
	require.NoError(t, err)
	e := &env{t: t, srv: srv, hv: draastest.NewHypervisor(nil), dns: draastest.NewDNS(nil, "example.com."), inst: map[string]draas.Instance{}}
	e.launcher = ec2.New(client, ec2.Options{ImageID: srv.DefaultImageID(), SubnetID: aws.ToString(subnets.Subnets[0].SubnetId),
		AvailabilityZone: aws.ToString(subnets.Subnets[0].AvailabilityZone), PollInterval: time.Millisecond})
	e.plan, err = plan.Parse("p.yaml", []byte("name: shop\ndefaults: {instanceType: m5.large, subnet: s}\nvms:\n  - name: db\n    instanceType: r5.large\n  - name: app\n    dependsOn: [db]\n"))
	require.NoError(t, err)
	for i, vm := range []string{"db", "app"} {
		snap, err := srv.SeedSnapshot(bytes.Repeat([]byte(vm), 3<<20), nil)
		require.NoError(t, err)
		root, err := e.launcher.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap})
		require.NoError(t, err)
		var data []string
		if vm == "db" {
			dsnap, err := srv.SeedSnapshot(bytes.Repeat([]byte("rows"), 1<<20), nil)
			require.NoError(t, err)
			d, err := e.launcher.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: dsnap})
			require.NoError(t, err)
			data = append(data, d)
		}
		it := map[int]string{0: "r5.large", 1: "m5.large"}[i]
		inst, err := e.launcher.Launch(ctx, draas.LaunchRequest{Name: vm, InstanceType: it, RootVolumeID: root, DataVolumeIDs: data})
		require.NoError(t, err)
		e.inst[vm] = inst
		e.write(vm, 0.02, uint64(i))
	}
	return e
}

// write changes a fraction of the blocks of every volume of vm, as the
// guest does while it runs on EC2.
func (e *env) write(vm string, fraction float64, seed uint64) int {
	r := rand.New(rand.NewPCG(seed, 9))
	n := 0
	for _, v := range e.inst[vm].VolumeIDs {
		blocks := (1 << 30) / blk
		for range int(float64(blocks) * fraction) {
			p := make([]byte, 4096)
			for i := range p {
				p[i] = byte(r.Uint32()) | 1
			}
			require.NoError(e.t, e.srv.WriteVolume(v, int64(r.IntN(blocks))*blk+int64(r.IntN(blk-4096)), p))
			n++
		}
	}
	return n
}

// targets are where the env's VMs come back to, with their on-premises
// records.
func (e *env) targets() map[string]failback.Target {
	targets := map[string]failback.Target{}
	for vm, inst := range e.inst {
		targets[vm] = failback.Target{InstanceID: inst.ID, Records: []draas.Record{
			{Zone: "example.com.", Name: vm + ".example.com.", Type: "A", TTL: time.Minute, Values: []string{"192.168.10." + map[string]string{"db": "10", "app": "20"}[vm]}},
		}}
	}
	return targets
}

// openSnapshot reads the env's EBS snapshots.
func (e *env) openSnapshot(ctx context.Context, id string) (draas.BlockSource, error) {
	return ebs.OpenSnapshot(ctx, e.srv.EBS(), id, ebs.SourceOptions{})
}

// runner returns a Runner failing back into the env's site, with DNS and
// opts.
func (e *env) runner(opts failback.Options) *failback.Runner {
	e.t.Helper()
	opts.DNS = e.dns
	r, err := failback.New(e.launcher, e.hv, e.openSnapshot, opts)
	require.NoError(e.t, err)
	return r
}

// checkVM asserts the vSphere VM has the instance's shape and its volumes'
// bytes.
func (e *env) checkVM(vm string) {
	e.t.Helper()
	ctx := context.Background()
	shape, err := e.hv.VMShape(ctx, vm)
	require.NoError(e.t, err)
	want := map[string][2]int64{"db": {2, 16384}, "app": {2, 8192}}[vm]
	assert.Equal(e.t, int(want[0]), shape.CPUs, vm)
	assert.Equal(e.t, want[1], shape.MemoryMiB, vm)
	require.Len(e.t, shape.Disks, len(e.inst[vm].VolumeIDs))
	// vSphere reads the disks of a powered-off VM only.
	require.NoError(e.t, e.hv.PowerOff(ctx, vm))
	defer func() { require.NoError(e.t, e.hv.PowerOn(ctx, vm)) }()
	for i, v := range e.inst[vm].VolumeIDs {
		assert.Equal(e.t, int64(1<<30), shape.Disks[i].Size)
		d, err := e.hv.ReadDisk(ctx, vm, i)
		require.NoError(e.t, err)
		got, want := make([]byte, 8<<20), make([]byte, 8<<20)
		for off := int64(0); off < d.Size(); off += int64(len(got)) {
			_, err := d.ReadAt(ctx, got, off)
			require.NoError(e.t, err)
			require.NoError(e.t, e.srv.ReadVolume(v, off, want))
			require.True(e.t, bytes.Equal(want, got), "disk %d of %s holds the EC2 volume's bytes at %d", i, vm, off)
		}
		if c, ok := d.(interface{ Close() error }); ok {
			c.Close()
		}
	}
}

func TestDirectFailback(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	var progress []blockcopy.DiskProgress
	inCall := false
	opts := failback.Options{Progress: func(p blockcopy.DiskProgress) {
		assert.False(t, inCall, "progress calls never overlap")
		inCall = true
		progress = append(progress, p)
		inCall = false
	}}
	rep, err := e.runner(opts).Run(ctx, e.plan, failback.Direct, e.targets())
	require.NoError(t, err)
	disks := map[string]int64{}
	for _, p := range progress {
		disks[p.VM+" "+p.Disk] = max(disks[p.VM+" "+p.Disk], p.Written)
	}
	assert.Len(t, disks, 3, "progress names each VM's disks: %v", disks)
	for _, vm := range []string{"db", "app"} {
		e.checkVM(vm)
		on, err := e.hv.(*draastest.Hypervisor).PoweredOn(vm)
		require.NoError(t, err)
		assert.True(t, on, vm)
		rec, err := e.dns.Lookup(ctx, "example.com.", vm+".example.com.", "A")
		require.NoError(t, err)
		assert.Contains(t, rec.Values[0], "192.168.10.", "DNS points back on premises")
		v, _ := rep.VM(vm)
		assert.True(t, v.Up)
		assert.Positive(t, v.Downtime)
		assert.Positive(t, v.BytesCopied)
		var written int64
		for d, n := range disks {
			if strings.HasPrefix(d, vm+" ") {
				written += n
			}
		}
		assert.Equal(t, v.BytesCopied, written, "%s: the progress events add up to the bytes copied", vm)
	}
	st, err := e.launcher.Status(ctx, e.inst["db"].ID)
	require.NoError(t, err)
	assert.Equal(t, "stopped", st.State, "the EC2 instance is stopped, not terminated, so it can take over again")
}

func TestPreSeedThenCutOverCopiesOnlyChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB volumes; the full run covers it")
	}
	testPreSeedThenCutOver(t, newEnv(t))
}

// TestPreSeedThenCutOverIntoVCSim fails back into govmomi's vCenter
// simulator through package vsphere.
func TestPreSeedThenCutOverIntoVCSim(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads whole 1 GiB disks to vcsim")
	}
	e := newEnv(t)
	model := simulator.VPX()
	t.Cleanup(model.Remove)
	require.NoError(t, model.Create())
	model.Service.TLS = new(tls.Config)
	server := model.Service.NewServer()
	t.Cleanup(server.Close)
	h, err := vsphere.Dial(context.Background(), server.URL.String(), vsphere.Options{Thumbprint: soap.ThumbprintSHA256(server.Certificate())})
	require.NoError(t, err)
	t.Cleanup(func() { h.Close(context.Background()) })
	e.hv = h
	// One VM keeps the test short: every vSphere commit uploads a whole
	// 1 GiB disk.
	app := e.plan.VMs[1]
	app.DependsOn = nil
	e.plan.VMs = []plan.VM{app}
	testPreSeedThenCutOver(t, e)
}

func testPreSeedThenCutOver(t *testing.T, e *env) {
	ctx := context.Background()
	vm := e.plan.VMs[0].Name
	r := e.runner(failback.Options{})
	pre, err := r.Run(ctx, e.plan, failback.PreSeed, e.targets())
	require.NoError(t, err)
	st, err := e.launcher.Status(ctx, e.inst[vm].ID)
	require.NoError(t, err)
	assert.Equal(t, "running", st.State, "pre-seeding does not stop the instance")
	if site, ok := e.hv.(*draastest.Hypervisor); ok {
		on, _ := site.PoweredOn(vm)
		assert.False(t, on)
	}

	// The guest keeps writing; the cut-over copies only that.
	changed := e.write(vm, 0.01, 99)
	targets := e.targets()
	for name, t := range targets {
		v, _ := pre.VM(name)
		t.PreSeedSnapshots = v.Snapshots
		targets[name] = t
	}
	rep, err := r.Run(ctx, e.plan, failback.CutOver, targets)
	require.NoError(t, err)
	got, _ := rep.VM(vm)
	preVM, _ := pre.VM(vm)
	// Each write touched one 512 KiB EBS block, which is all that is
	// copied of it (rounded up to the sink's blocks: 1 MiB for vSphere).
	sinkBlock := int64(blk)
	if _, ok := e.hv.(*vsphere.Hypervisor); ok {
		sinkBlock = vsphere.SinkBlockSize
	}
	assert.LessOrEqual(t, got.BytesCopied, int64(changed)*sinkBlock, "the cut-over copies only blocks changed since the pre-seed")
	assert.Positive(t, got.BytesCopied)
	for _, v := range e.plan.VMs {
		if v.Name != vm {
			other, _ := rep.VM(v.Name)
			assert.Zero(t, other.BlocksCopied, "%s did not change after the pre-seed", v.Name)
		}
		e.checkVM(v.Name)
	}
	t.Logf("pre-seed copied %d bytes; cut-over copied %d, downtime %v", preVM.BytesCopied, got.BytesCopied, got.Downtime)
}

func TestKillMidFailbackResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB volumes; the full run covers it")
	}
	ctx := context.Background()
	e := newEnv(t)
	opts := failback.Options{Journal: orchestrate.NewFileJournal(filepath.Join(t.TempDir(), "failback.journal"))}
	cctx, cancel := context.WithCancel(ctx)
	opts.Events = func(ev orchestrate.Event) {
		if ev.Kind == orchestrate.EventSucceeded && ev.Step == "db/copy" {
			cancel()
		}
	}
	first, err := e.runner(opts).Run(cctx, e.plan, failback.Direct, e.targets())
	require.ErrorIs(t, err, context.Canceled)
	firstDB, _ := first.VM("db")
	require.Positive(t, firstDB.BytesCopied)
	opts.Events = nil
	rep, err := e.runner(opts).Run(ctx, e.plan, failback.Direct, e.targets())
	require.NoError(t, err)
	for _, v := range rep.VMs {
		assert.True(t, v.Up, v.VM)
	}
	db, _ := rep.VM("db")
	copyStep, _ := findStep(rep, "db/copy")
	assert.Equal(t, orchestrate.Resumed, copyStep.Status)
	assert.Equal(t, firstDB.BytesCopied, db.BytesCopied, "a resumed failback reports the bytes the first run copied")
	assert.Equal(t, firstDB.BlocksCopied, db.BlocksCopied)
	assert.Equal(t, firstDB.Shape, db.Shape, "and the shape it read")
	assert.ElementsMatch(t, []string{"db", "app"}, e.hv.(*draastest.Hypervisor).VMs(), "no duplicate VM")
	e.checkVM("db")
	e.checkVM("app")
}

func findStep(rep *failback.Report, id string) (orchestrate.StepReport, bool) {
	for _, s := range rep.Steps {
		if s.ID == id {
			return s, true
		}
	}
	return orchestrate.StepReport{}, false
}

// flakyOpener fails the first opening of the second disk of each run with a
// retryable error, once, after the first disk was copied: the copy step is
// retried.
type flakyOpener struct {
	open   failback.SnapshotOpener
	mu     sync.Mutex
	opened int
	failed bool
}

func (f *flakyOpener) Open(ctx context.Context, id string) (draas.BlockSource, error) {
	f.mu.Lock()
	f.opened++
	fail := f.opened == 2 && !f.failed
	f.failed = f.failed || fail
	f.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("open snapshot %s: %w", id, draas.ErrTransient)
	}
	return f.open(ctx, id)
}

// TestRetriedCopyCountsOnce: the copy step of db (two disks) fails after its
// first disk and is retried; the bytes copied are those of the attempt that
// succeeded (its last progress event of each disk), not that plus what the
// failed attempt wrote. (The retry writes more than a first copy would: the
// disk it copies into again is no longer blank, so its holes are written as
// zeros.)
func TestRetriedCopyCountsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a whole 1 GiB disk of zeros")
	}
	ctx := context.Background()
	e := newEnv(t)
	e.plan.VMs = e.plan.VMs[:1] // db, with two disks
	flaky := &flakyOpener{open: e.openSnapshot}
	last := map[string]int64{}
	r, err := failback.New(e.launcher, e.hv, flaky.Open, failback.Options{Progress: func(p blockcopy.DiskProgress) {
		assert.Equal(t, "db", p.VM)
		last[p.Disk] = p.Written
	}})
	require.NoError(t, err)
	rep, err := r.Run(ctx, e.plan, failback.PreSeed, e.targets())
	require.NoError(t, err)
	copyStep, _ := findStep(rep, "db/copy")
	require.Equal(t, 2, copyStep.Attempts, "the copy step was retried")
	got, _ := rep.VM("db")
	require.Len(t, last, 2, "progress names both disks: %v", last)
	var want int64
	for _, n := range last {
		want += n
	}
	assert.Equal(t, want, got.BytesCopied, "a retried copy counts its last attempt only")
	assert.Positive(t, got.BytesCopied)
}

func TestMissingTarget(t *testing.T) {
	e := newEnv(t)
	targets := e.targets()
	delete(targets, "app")
	_, err := e.runner(failback.Options{}).Run(context.Background(), e.plan, failback.Direct, targets)
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Contains(t, err.Error(), `targets["app"]`)
}

func TestNewChecksCollaboratorsAndCopyOptions(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name string
		new  func() (*failback.Runner, error)
		want string
	}{
		{"cloud", func() (*failback.Runner, error) { return failback.New(nil, e.hv, e.openSnapshot, failback.Options{}) }, "failback.New: cloud is nil"},
		{"hypervisor", func() (*failback.Runner, error) {
			return failback.New(e.launcher, nil, e.openSnapshot, failback.Options{})
		}, "failback.New: hypervisor is nil"},
		{"openSnapshot", func() (*failback.Runner, error) { return failback.New(e.launcher, e.hv, nil, failback.Options{}) }, "failback.New: openSnapshot is nil"},
		{"Copy.Extents", func() (*failback.Runner, error) {
			return failback.New(e.launcher, e.hv, e.openSnapshot, failback.Options{Copy: blockcopy.Options{Extents: []draas.Extent{}}})
		}, "Options.Copy.Extents is set by failback"},
		{"Copy.Progress", func() (*failback.Runner, error) {
			return failback.New(e.launcher, e.hv, e.openSnapshot, failback.Options{Copy: blockcopy.Options{Progress: func(blockcopy.Progress) {}}})
		}, "use Options.Progress"},
	} {
		r, err := c.new()
		require.ErrorIs(t, err, draas.ErrInvalid, c.name)
		assert.Nil(t, r, c.name)
		assert.Contains(t, err.Error(), c.want, c.name)
	}
	var r *failback.Runner
	_, err := r.Run(context.Background(), e.plan, failback.Direct, e.targets())
	require.ErrorIs(t, err, draas.ErrInvalid, "a nil Runner is an error, not a panic")
	_, err = new(failback.Runner).Compile(e.plan, failback.Direct, e.targets())
	require.ErrorIs(t, err, draas.ErrInvalid, "so is a zero one")
	_, err = e.runner(failback.Options{}).Compile(e.plan, failback.Mode(9), e.targets())
	require.ErrorIs(t, err, draas.ErrInvalid)
}

// TestCompileIsTheDryRun: Compile gives the graph Run runs, for
// orchestrate.Plan.
func TestCompileIsTheDryRun(t *testing.T) {
	e := newEnv(t)
	g, err := e.runner(failback.Options{}).Compile(e.plan, failback.Direct, e.targets())
	require.NoError(t, err)
	sched, err := orchestrate.Plan(context.Background(), g, orchestrate.Options{Parallelism: 1})
	require.NoError(t, err)
	order := strings.Join(sched.Order(), " ")
	assert.Less(t, strings.Index(order, "db/power-on"), strings.Index(order, "app/power-on"), "app powers on after db")
	assert.Equal(t, 14, g.Len(), "7 steps per VM: shape, snapshot, create-vm, copy, power-on, dns, cleanup")
	pre, err := e.runner(failback.Options{}).Compile(e.plan, failback.PreSeed, e.targets())
	require.NoError(t, err)
	assert.Equal(t, 8, pre.Len(), "a pre-seed only copies")
	assert.Empty(t, e.hv.(*draastest.Hypervisor).VMs(), "compiling runs nothing")
}

func TestTargetsFromFailover(t *testing.T) {
	rec := draas.Record{Zone: "example.com.", Name: "db.example.com.", Type: "A", Values: []string{"192.168.10.10"}}
	fo := &failover.Report{VMs: []failover.VMReport{{VM: "db", InstanceID: "i-1", PreviousRecords: []draas.Record{rec}}, {VM: "app", InstanceID: "i-2"}}}
	got := failback.TargetsFromFailover(fo, nil)
	assert.Equal(t, map[string]failback.Target{
		"db":  {InstanceID: "i-1", Records: []draas.Record{rec}},
		"app": {InstanceID: "i-2"},
	}, got)
	pre := &failback.Report{VMs: []failback.VMReport{{VM: "db", Snapshots: []string{"snap-1", "snap-2"}}, {VM: "other", Snapshots: []string{"snap-9"}}}}
	got = failback.TargetsFromFailover(fo, pre)
	assert.Equal(t, []string{"snap-1", "snap-2"}, got["db"].PreSeedSnapshots)
	assert.Empty(t, got["app"].PreSeedSnapshots)
	assert.NotContains(t, got, "other", "only the failover's VMs are failed back")
	assert.Empty(t, failback.TargetsFromFailover(nil, nil))
}
