package failback_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"math/rand/v2"
	"path/filepath"
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
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/failback"
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

func (e *env) options(mode failback.Mode) failback.Options {
	targets := map[string]failback.Target{}
	for vm, inst := range e.inst {
		targets[vm] = failback.Target{InstanceID: inst.ID, Records: []draas.Record{
			{Zone: "example.com.", Name: vm + ".example.com.", Type: "A", TTL: time.Minute, Values: []string{"192.168.10." + map[string]string{"db": "10", "app": "20"}[vm]}},
		}}
	}
	ebsc := e.srv.EBS()
	return failback.Options{
		Mode: mode, Cloud: e.launcher, Hypervisor: e.hv, DNS: e.dns, Targets: targets,
		OpenSnapshot: func(ctx context.Context, id string) (draas.BlockSource, error) {
			return ebs.OpenSnapshot(ctx, ebsc, id, ebs.SourceOptions{})
		},
	}
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
	rep, err := failback.Run(ctx, e.plan, e.options(failback.Direct))
	require.NoError(t, err)
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
	pre, err := failback.Run(ctx, e.plan, e.options(failback.PreSeed))
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
	opts := e.options(failback.CutOver)
	for name, t := range opts.Targets {
		v, _ := pre.VM(name)
		t.PreSeedSnapshots = v.Snapshots
		opts.Targets[name] = t
	}
	rep, err := failback.Run(ctx, e.plan, opts)
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
	opts := e.options(failback.Direct)
	opts.Journal = orchestrate.NewFileJournal(filepath.Join(t.TempDir(), "failback.journal"))
	cctx, cancel := context.WithCancel(ctx)
	opts.Events = func(ev orchestrate.Event) {
		if ev.Kind == orchestrate.EventSucceeded && ev.Step == "db/copy" {
			cancel()
		}
	}
	_, err := failback.Run(cctx, e.plan, opts)
	require.ErrorIs(t, err, context.Canceled)
	opts.Events = nil
	rep, err := failback.Run(ctx, e.plan, opts)
	require.NoError(t, err)
	for _, v := range rep.VMs {
		assert.True(t, v.Up, v.VM)
	}
	assert.ElementsMatch(t, []string{"db", "app"}, e.hv.(*draastest.Hypervisor).VMs(), "no duplicate VM")
	e.checkVM("db")
	e.checkVM("app")
}

func TestMissingTarget(t *testing.T) {
	e := newEnv(t)
	opts := e.options(failback.Direct)
	delete(opts.Targets, "app")
	_, err := failback.Run(context.Background(), e.plan, opts)
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Contains(t, err.Error(), `Targets["app"]`)
}
