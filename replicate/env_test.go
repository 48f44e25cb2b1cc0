package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/replicate"
)

const (
	blk = 512 << 10
	mib = 1 << 20
)

// env is a backup store and a copy store: either the in-memory fakes of
// package draastest (the unit tests), or a backup store in the simulator's
// S3 and a copy store of EBS snapshots in its EBS and EC2, driven through
// the real SDK clients (the integration tests).
type env struct {
	t      *testing.T
	store  draas.BackupStore
	copies draas.CopyStore
	now    time.Time
	disks  map[string]map[string]*draastest.Disk // vm -> disk -> content of the latest point

	// The simulator's, nil for the in-memory env.
	srv *awssim.Server
	s3  *s3.Store
	ebs *awsebs.Client
	ec2 *awsec2.Client
	// The in-memory copy store, nil for the simulator's.
	mem *draastest.CopyStore
}

// backend names an env: "memory" for the draastest fakes, or an EBS path
// in the simulator.
type backend string

const (
	memory backend = "memory"
	direct backend = "direct"
	volume backend = "volume"
)

// backends are the envs each replication test runs in: the fakes always,
// the simulator's two EBS paths as integration tests (the volume path not
// with -short: it repeats the direct path's checks).
var backends = []backend{memory, direct, volume}

// newEnvOf returns the env b, or skips the test.
func newEnvOf(t *testing.T, b backend) *env {
	t.Helper()
	switch b {
	case memory:
		return newMemEnv(t)
	case volume:
		if testing.Short() {
			t.Skip("the volume path repeats the direct path's checks; the full run covers it")
		}
		return newEnv(t, ebs.PathVolume)
	default:
		return newEnv(t, ebs.PathDirect)
	}
}

// newMemEnv returns an env of the draastest fakes: no simulator.
func newMemEnv(t *testing.T) *env {
	mem := draastest.NewCopyStore(draastest.CopyStoreOptions{})
	return &env{
		t:      t,
		store:  draastest.NewBackupStore(blk, nil),
		copies: mem,
		mem:    mem,
		now:    time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC),
		disks:  map[string]map[string]*draastest.Disk{},
	}
}

func fastSDK[O any](set func(*O, aws.Retryer)) func(*O) {
	return func(o *O) {
		set(o, awsretry.NewStandard(func(so *awsretry.StandardOptions) {
			so.MaxBackoff = 10 * time.Millisecond
			so.RateLimiter = ratelimit.None
		}))
	}
}

func newEnv(t *testing.T, path ebs.Path) *env {
	t.Helper()
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	e := &env{
		t:     t,
		srv:   srv,
		ebs:   srv.EBS(fastSDK(func(o *awsebs.Options, r aws.Retryer) { o.Retryer = r })),
		ec2:   srv.EC2(fastSDK(func(o *awsec2.Options, r aws.Retryer) { o.Retryer = r })),
		now:   time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC),
		disks: map[string]map[string]*draastest.Disk{},
	}
	e.s3 = s3.New(srv.S3(), "backups", "store", s3.Options{})
	e.store = e.s3
	opts := ebs.CopiesOptions{Path: path}
	if path == ebs.PathVolume {
		// The proxy: an instance in the simulator; its "devices" are the
		// simulator's volumes.
		out, err := e.ec2.RunInstances(context.Background(), &awsec2.RunInstancesInput{
			ImageId: aws.String(srv.DefaultImageID()), InstanceType: "m5.large", MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		})
		require.NoError(t, err)
		inst := out.Instances[0]
		require.NoError(t, awsec2.NewInstanceRunningWaiter(e.ec2, func(o *awsec2.InstanceRunningWaiterOptions) { o.MinDelay = time.Millisecond }).
			Wait(context.Background(), &awsec2.DescribeInstancesInput{InstanceIds: []string{aws.ToString(inst.InstanceId)}}, time.Minute))
		opts.Volume = ebs.VolumeSinkOptions{
			ProxyInstanceID:  aws.ToString(inst.InstanceId),
			AvailabilityZone: aws.ToString(inst.Placement.AvailabilityZone),
			PollInterval:     5 * time.Millisecond,
			Devices: ebs.DeviceOpenerFunc(func(ctx context.Context, volumeID, _ string) (ebs.Device, error) {
				return srv.Device(volumeID)
			}),
		}
	}
	e.copies = ebs.NewCopies(e.ebs, e.ec2, opts)
	return e
}

// randomDisk returns a disk of size bytes with data in the given fraction
// of its blocks.
func randomDisk(seed uint64, size int64, fraction float64) *draastest.Disk {
	r := rand.New(rand.NewPCG(seed, 3))
	d := draastest.NewDisk(size, blk)
	buf := make([]byte, blk)
	for off := int64(0); off < size; off += blk {
		if r.Float64() < fraction {
			for i := range buf {
				buf[i] = byte(r.Uint32())
			}
			d.WriteAt(buf[:min(blk, size-off)], off)
		}
	}
	return d
}

// change rewrites the given fraction of d's blocks with new data and
// returns how many blocks now differ.
func change(d *draastest.Disk, seed uint64, fraction float64) int {
	r := rand.New(rand.NewPCG(seed, 4))
	n := int((d.Size() + blk - 1) / blk)
	picked := map[int]bool{}
	for len(picked) < int(float64(n)*fraction) {
		picked[r.IntN(n)] = true
	}
	buf := make([]byte, blk)
	for i := range picked {
		for j := range buf {
			buf[j] = byte(r.Uint32()) | 1
		}
		off := int64(i) * blk
		d.WriteAt(buf[:min(blk, d.Size()-off)], off)
	}
	return len(picked)
}

// backup writes the disks as a new recovery point of vm and remembers them
// as its latest content.
func (e *env) backup(vm string, disks map[string]*draastest.Disk) string {
	e.t.Helper()
	ctx := context.Background()
	e.now = e.now.Add(time.Hour)
	names := make([]string, 0, len(disks))
	for name := range disks {
		names = append(names, name)
	}
	sort.Strings(names)
	var spec []draas.Disk
	for _, name := range names {
		spec = append(spec, draas.Disk{Name: name, Size: disks[name].Size()})
	}
	w, err := e.store.BeginPoint(ctx, vm, spec, e.now)
	require.NoError(e.t, err)
	snap := map[string]*draastest.Disk{}
	for _, name := range names {
		var sink draas.VolumeSink
		if pw, ok := w.(*s3.PointWriter); ok {
			sink, err = pw.Disk(name) // an empty sink: the whole disk is written
		} else {
			sink, err = w.DiskOnBase(ctx, name)
		}
		require.NoError(e.t, err)
		_, err = blockcopy.Copy(ctx, sink, disks[name], blockcopy.Options{})
		require.NoError(e.t, err)
		snap[name] = disks[name].Clone()
	}
	require.NoError(e.t, w.Commit(ctx))
	e.disks[vm] = snap
	return w.ID()
}

func (e *env) replicator(plan draas.Plan, opts replicate.Options) *replicate.Replicator {
	e.t.Helper()
	opts.Now = func() time.Time { return e.now }
	opts.Copy.Retry.Initial = time.Millisecond
	r, err := replicate.New(plan, e.store, e.copies, opts)
	require.NoError(e.t, err)
	return r
}

// snapshot is a DR copy's snapshot as the store holds it.
type snapshot struct {
	ID    string
	State string
	Tags  map[string]string
}

// snapshotsOf returns the snapshots of vm's DR copies: the simulator's
// snapshots tagged with vm, or the in-memory store's copies with the tags
// the EBS store would give them.
func (e *env) snapshotsOf(vm string) []snapshot {
	var out []snapshot
	if e.mem != nil {
		for _, c := range e.mem.All() {
			if c.VM == vm {
				tags := map[string]string{draas.TagVM: c.VM, draas.TagDisk: c.Disk, draas.TagRecoveryPoint: c.RecoveryPoint}
				if c.Complete {
					tags[draas.TagComplete] = "true"
				}
				out = append(out, snapshot{ID: c.SnapshotID, State: string(c.State), Tags: tags})
			}
		}
		return out
	}
	for _, s := range e.srv.Snapshots() {
		if s.Tags[draas.TagVM] == vm {
			out = append(out, snapshot{ID: s.ID, State: s.State, Tags: s.Tags})
		}
	}
	return out
}

// snapshotBytes returns the content of snapshot id.
func (e *env) snapshotBytes(id string, size int64) []byte {
	e.t.Helper()
	if e.mem != nil {
		d, ok := e.mem.Disk(id)
		require.True(e.t, ok, "snapshot %s exists", id)
		return d.Bytes()
	}
	got := make([]byte, size)
	_, err := e.srv.ReadSnapshotAt(id, got, 0)
	require.NoError(e.t, err)
	return got
}

// checkCopy asserts that vm has exactly one DR copy set, complete, whose
// snapshots hold the bytes of the VM's latest backup.
func (e *env) checkCopy(plan, vm string) {
	e.t.Helper()
	snaps := e.snapshotsOf(vm)
	want := e.disks[vm]
	require.Len(e.t, snaps, len(want), "exactly one DR copy per disk of %s, no orphan", vm)
	for _, s := range snaps {
		require.Equal(e.t, "completed", s.State)
		require.Equal(e.t, "true", s.Tags[draas.TagComplete], "snapshot %s is marked complete", s.ID)
		d := want[s.Tags[draas.TagDisk]]
		require.NotNil(e.t, d, "snapshot %s is of a known disk", s.ID)
		got := e.snapshotBytes(s.ID, d.Size())
		require.True(e.t, bytes.Equal(d.Bytes(), got), "DR copy %s of %s/%s holds the latest backup's bytes", s.ID, vm, s.Tags[draas.TagDisk])
	}
}

var errKilled = errors.New("killed")

// killer is a CopyStore that dies at a chosen point, like a process killed
// there: from then on every call fails, and nothing gets to clean up.
type killer struct {
	draas.CopyStore
	at     string // "start", "blocks", "commit", "delete"
	after  int64  // for "blocks": writes before the kill
	dead   atomic.Bool
	writes atomic.Int64
}

func (k *killer) check() error {
	if k.dead.Load() {
		return errKilled
	}
	return nil
}

func (k *killer) Copies(ctx context.Context, plan, vm string) ([]draas.DRCopy, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.CopyStore.Copies(ctx, plan, vm)
}

func (k *killer) NewCopy(ctx context.Context, req draas.CopyRequest) (draas.SnapshotSink, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	s, err := k.CopyStore.NewCopy(ctx, req)
	if err != nil {
		return nil, err
	}
	if k.at == "start" {
		k.dead.Store(true)
		return nil, errKilled
	}
	return &killSink{SnapshotSink: s, k: k}, nil
}

func (k *killer) MarkComplete(ctx context.Context, copies []draas.DRCopy) error {
	if err := k.check(); err != nil {
		return err
	}
	err := k.CopyStore.MarkComplete(ctx, copies)
	if k.at == "delete" {
		k.dead.Store(true)
	}
	return err
}

func (k *killer) DeleteCopy(ctx context.Context, id string) error {
	if err := k.check(); err != nil {
		return err
	}
	return k.CopyStore.DeleteCopy(ctx, id)
}

type killSink struct {
	draas.SnapshotSink
	k *killer
}

func (s *killSink) WriteBlock(ctx context.Context, b draas.Block) error {
	if err := s.k.check(); err != nil {
		return err
	}
	if s.k.at == "blocks" && s.k.writes.Add(1) > s.k.after {
		s.k.dead.Store(true)
		return errKilled
	}
	return s.SnapshotSink.WriteBlock(ctx, b)
}

func (s *killSink) Commit(ctx context.Context) error {
	if err := s.k.check(); err != nil {
		return err
	}
	if s.k.at == "commit" {
		s.k.dead.Store(true)
		return errKilled
	}
	return s.SnapshotSink.Commit(ctx)
}

func (s *killSink) Abort(ctx context.Context) error {
	if err := s.k.check(); err != nil {
		return err
	}
	return s.SnapshotSink.Abort(ctx)
}

func (s *killSink) Unwrap() any { return s.SnapshotSink }

// events collects replication events.
type events struct {
	mu sync.Mutex
	ev []replicate.Event
}

func (c *events) add(e replicate.Event) {
	c.mu.Lock()
	c.ev = append(c.ev, e)
	c.mu.Unlock()
}

func (c *events) kinds() map[replicate.EventKind]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := map[replicate.EventKind]int{}
	for _, e := range c.ev {
		n[e.Kind]++
	}
	return n
}
