package replicate_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/replicate"
)

func plan(vms ...string) draas.Plan {
	p := draas.Plan{Name: "shop"}
	for _, vm := range vms {
		p.VMs = append(p.VMs, draas.VM{Name: vm})
	}
	return p
}

func TestFullThenIncrementalKeepsLatest(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			testFullThenIncremental(t, b)
		})
	}
}

func testFullThenIncremental(t *testing.T, b backend) {
	ctx := context.Background()
	e := newEnvOf(t, b)
	os := randomDisk(1, 64*mib, 0.6)
	data := randomDisk(2, 32*mib+12345, 0.3)
	disks := map[string]*draastest.Disk{"os": os, "data": data}
	p1 := e.backup("db", disks)
	var ev events
	r := e.replicator(plan("db"), replicate.Options{Events: ev.add})

	res, err := r.ReplicateVM(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, replicate.ActionFull, res.Action)
	assert.Equal(t, p1, res.RecoveryPoint)
	full := res.BlocksSent
	assert.Equal(t, int64(os.StoredBlocks()+data.StoredBlocks()), full, "a full copy sends every non-zero block")
	e.checkCopy("shop", "db")
	assert.Equal(t, 1, ev.kinds()[replicate.EventCompleted])

	for i, frac := range []float64{0.01, 0.10} {
		changed := change(os, uint64(10+i), frac) + change(data, uint64(20+i), frac)
		point := e.backup("db", disks)
		var puts int
		if b == direct {
			puts = e.srv.Calls("PutSnapshotBlock")
		}
		res, err = r.ReplicateVM(ctx, "db")
		require.NoError(t, err, "%.0f%% change", frac*100)
		assert.Equal(t, replicate.ActionIncremental, res.Action)
		assert.Equal(t, point, res.RecoveryPoint)
		assert.Equal(t, int64(changed), res.BlocksSent, "an incremental copy sends only the changed blocks")
		if b == direct {
			assert.Equal(t, changed, e.srv.Calls("PutSnapshotBlock")-puts)
		}
		assert.Len(t, res.Deleted, 2, "the previous copy (two disks) is deleted")
		e.checkCopy("shop", "db")
	}

	// A new recovery point with no change: nothing sent, no snapshot made,
	// and the copy now stands for the new point.
	before := e.snapshotsOf("db")
	point := e.backup("db", disks)
	res, err = r.ReplicateVM(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, replicate.ActionUnchanged, res.Action)
	assert.Zero(t, res.BlocksSent)
	after := e.snapshotsOf("db")
	require.Len(t, after, len(before))
	for _, s := range after {
		assert.Equal(t, point, s.Tags[draas.TagRecoveryPoint])
	}
	e.checkCopy("shop", "db")

	// No new recovery point: up to date, nothing at all.
	res, err = r.ReplicateVM(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, replicate.ActionUpToDate, res.Action)
	assert.Equal(t, len(before), len(e.snapshotsOf("db")))
}

func TestKeepCopies(t *testing.T) {
	for _, b := range []backend{memory, direct} {
		t.Run(string(b), func(t *testing.T) { testKeepCopies(t, b) })
	}
}

func testKeepCopies(t *testing.T, b backend) {
	ctx := context.Background()
	e := newEnvOf(t, b)
	d := randomDisk(3, 8*mib, 0.5)
	p := plan("web")
	p.KeepCopies = 2
	r := e.replicator(p, replicate.Options{})
	for i := range 4 {
		change(d, uint64(i), 0.1)
		e.backup("web", map[string]*draastest.Disk{"os": d})
		_, err := r.ReplicateVM(ctx, "web")
		require.NoError(t, err)
		assert.Len(t, e.snapshotsOf("web"), min(i+1, 2), "keeps the two newest copies")
	}
}

// TestKillAtEachStep kills a run at each step and checks that a rerun ends
// with one correct, verified DR copy and no orphan, and that the previous
// copy survived the kill.
func TestKillAtEachStep(t *testing.T) {
	for _, b := range backends {
		for _, at := range []string{"start", "blocks", "commit", "delete"} {
			t.Run(string(b)+"/"+at, func(t *testing.T) {
				ctx := context.Background()
				e := newEnvOf(t, b)
				d := randomDisk(5, 16*mib, 0.7)
				disks := map[string]*draastest.Disk{"os": d}
				e.backup("app", disks)
				r := e.replicator(plan("app"), replicate.Options{})
				_, err := r.ReplicateVM(ctx, "app")
				require.NoError(t, err)
				prev := e.snapshotsOf("app")
				require.Len(t, prev, 1)

				change(d, 6, 0.2)
				e.backup("app", disks)
				k := &killer{CopyStore: e.copies, at: at, after: 3}
				killed, err := replicate.New(plan("app"), e.store, k, replicate.Options{})
				require.NoError(t, err)
				res, err := killed.ReplicateVM(ctx, "app")
				if at == "delete" {
					// The new copy is complete; only the old one's deletion
					// was lost, and the run says so.
					require.NoError(t, err)
					assert.NotEmpty(t, res.Warnings)
				} else {
					require.ErrorIs(t, err, errKilled)
				}
				// The previous complete copy is still there and intact.
				infos := map[string]bool{}
				for _, s := range e.snapshotsOf("app") {
					infos[s.ID] = true
				}
				if at != "delete" {
					assert.True(t, infos[prev[0].ID], "the previous DR copy survives a kill at %s", at)
				}

				_, err = r.ReplicateVM(ctx, "app")
				require.NoError(t, err)
				e.checkCopy("shop", "app")
			})
		}
	}
}

func TestResumeFromCheckpoint(t *testing.T) {
	for _, b := range []backend{memory, direct} {
		t.Run(string(b), func(t *testing.T) { testResumeFromCheckpoint(t, b) })
	}
}

func testResumeFromCheckpoint(t *testing.T, b backend) {
	ctx := context.Background()
	e := newEnvOf(t, b)
	d := randomDisk(7, 32*mib, 0.9)
	e.backup("db", map[string]*draastest.Disk{"os": d})
	dir := t.TempDir()
	ckpts := func(vm, disk string) blockcopy.CheckpointStore {
		return blockcopy.FileCheckpoint(dir + "/" + vm + "-" + disk + ".ckpt")
	}
	k := &killer{CopyStore: e.copies, at: "blocks", after: 30}
	killed, err := replicate.New(plan("db"), e.store, k, replicate.Options{Checkpoints: ckpts, Copy: blockcopy.Options{Concurrency: 2}})
	require.NoError(t, err)
	_, err = killed.ReplicateVM(ctx, "db")
	require.ErrorIs(t, err, errKilled)
	pending := e.snapshotsOf("db")
	require.Len(t, pending, 1)
	assert.Equal(t, "pending", pending[0].State)

	r := e.replicator(plan("db"), replicate.Options{Checkpoints: ckpts})
	res, err := r.ReplicateVM(ctx, "db")
	require.NoError(t, err)
	require.Len(t, res.Disks, 1)
	assert.True(t, res.Disks[0].Resumed, "the pending copy was resumed")
	assert.Equal(t, pending[0].ID, res.Disks[0].SnapshotID)
	assert.Less(t, res.BlocksSent, int64(d.StoredBlocks()), "the resume sends only what was missing")
	assert.Positive(t, res.Disks[0].Stats.BlocksResumed)
	e.checkCopy("shop", "db")
}

func TestCorruptRecoveryPointFailsThatVMOnly(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, ebs.PathDirect)
	a := randomDisk(8, 8*mib, 0.5)
	b := randomDisk(9, 8*mib, 0.5)
	e.backup("db", map[string]*draastest.Disk{"os": a})
	e.backup("web", map[string]*draastest.Disk{"os": b})
	r := e.replicator(plan("db", "web"), replicate.Options{})
	_, err := r.ReplicateAll(ctx)
	require.NoError(t, err)
	good := e.snapshotsOf("db")

	change(a, 1, 0.25)
	change(b, 2, 0.25)
	point := e.backup("db", map[string]*draastest.Disk{"os": a})
	e.backup("web", map[string]*draastest.Disk{"os": b})
	// Corrupt a chunk of db's new point in the bucket.
	s3c := e.srv.S3()
	list, err := s3c.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: aws.String("backups"), Prefix: aws.String("store/chunks/")})
	require.NoError(t, err)
	src, err := e.s3.OpenDisk(ctx, "db", point, "os")
	require.NoError(t, err)
	changed, err := draas.ChangedExtents(ctx, src, e.mustPoints("db")[0].ID)
	require.NoError(t, err)
	sum, ok, err := src.(draas.ChecksumSource).ReadBlock(ctx, make([]byte, blk), changed[0].Offset/blk*blk)
	require.NoError(t, err)
	require.True(t, ok)
	key := ""
	for _, o := range list.Contents {
		if strings.HasSuffix(aws.ToString(o.Key), hexSum(sum)) {
			key = aws.ToString(o.Key)
		}
	}
	require.NotEmpty(t, key)
	_, err = s3c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("backups"), Key: aws.String(key), Body: strings.NewReader("\x00garbage")})
	require.NoError(t, err)

	results, err := r.ReplicateAll(ctx)
	require.ErrorIs(t, err, draas.ErrChecksumMismatch)
	assert.Contains(t, err.Error(), "db")
	assert.Equal(t, replicate.ActionFailed, results[0].Action)
	assert.Equal(t, replicate.ActionIncremental, results[1].Action, "the other VM is replicated")
	// db keeps its previous, complete DR copy and nothing else.
	now := e.snapshotsOf("db")
	require.Len(t, now, 1)
	assert.Equal(t, good[0].ID, now[0].ID)
	assert.Equal(t, "true", now[0].Tags[draas.TagComplete])
}

func (e *env) mustPoints(vm string) []draas.RecoveryPoint {
	pts, err := e.store.Points(context.Background(), vm)
	require.NoError(e.t, err)
	return pts
}

func hexSum(sum [32]byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 64)
	for i, b := range sum {
		out[2*i], out[2*i+1] = digits[b>>4], digits[b&15]
	}
	return string(out)
}

func TestBadInput(t *testing.T) {
	e := newMemEnv(t)
	_, err := replicate.New(draas.Plan{}, e.store, e.copies, replicate.Options{})
	require.ErrorIs(t, err, draas.ErrInvalid)
	_, err = replicate.New(draas.Plan{Name: "p", VMs: []draas.VM{{Name: "a"}, {Name: "a"}}}, e.store, e.copies, replicate.Options{})
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Contains(t, err.Error(), "twice")

	r := e.replicator(plan("db"), replicate.Options{})
	_, err = r.ReplicateVM(context.Background(), "nope")
	require.ErrorIs(t, err, draas.ErrInvalid)
	res, err := r.ReplicateVM(context.Background(), "db")
	require.ErrorIs(t, err, draas.ErrNotFound, "a VM without backups")
	assert.Contains(t, err.Error(), "back it up first")
	assert.Equal(t, replicate.ActionFailed, res.Action)
}

// TestNewRejectsMissingAndWorkflowOwnedInput checks the constructor's
// errors: a nil collaborator, or an Options.Copy field the workflow sets,
// is an ErrInvalid naming what to do, never a panic later.
func TestNewRejectsMissingAndWorkflowOwnedInput(t *testing.T) {
	e := newMemEnv(t)
	for _, c := range []struct {
		name    string
		backups draas.BackupReader
		copies  draas.CopyStore
		opts    replicate.Options
		want    string
	}{
		{"nil backups", nil, e.copies, replicate.Options{}, "backups is nil"},
		{"nil copies", e.store, nil, replicate.Options{}, "copies is nil"},
		{"Copy.Extents", e.store, e.copies, replicate.Options{Copy: blockcopy.Options{Extents: []draas.Extent{}}}, "Copy.Extents"},
		{"Copy.Checkpoint", e.store, e.copies, replicate.Options{Copy: blockcopy.Options{Checkpoint: blockcopy.FileCheckpoint(t.TempDir() + "/c")}}, "Options.Checkpoints"},
		{"Copy.Progress", e.store, e.copies, replicate.Options{Copy: blockcopy.Options{Progress: func(blockcopy.Progress) {}}}, "EventProgress"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := replicate.New(plan("db"), c.backups, c.copies, c.opts)
			require.ErrorIs(t, err, draas.ErrInvalid)
			assert.Contains(t, err.Error(), c.want)
			assert.Nil(t, r)
		})
	}
}

// TestEventsSerializedAndTagged replicates several VMs at once: Events is
// never called concurrently, and every progress event names its VM and
// disk.
func TestEventsSerializedAndTagged(t *testing.T) {
	ctx := context.Background()
	e := newMemEnv(t)
	vms := []string{"a", "b", "c", "d"}
	for i, vm := range vms {
		e.backup(vm, map[string]*draastest.Disk{"os": randomDisk(uint64(30+i), 8*mib, 0.5), "data": randomDisk(uint64(40+i), 4*mib, 0.5)})
	}
	var inside atomic.Int32
	overlaps := 0
	progress := map[string]blockcopy.Progress{} // last progress by vm/disk; the callback needs no lock
	r := e.replicator(plan(vms...), replicate.Options{
		VMConcurrency: len(vms),
		Copy:          blockcopy.Options{ProgressInterval: time.Millisecond, Concurrency: 2},
		Events: func(ev replicate.Event) {
			if inside.Add(1) != 1 {
				overlaps++
			}
			defer inside.Add(-1)
			if ev.Kind == replicate.EventProgress {
				require.NotNil(t, ev.Progress)
				assert.NotEmpty(t, ev.SnapshotID, "a progress event names the copy's snapshot")
				progress[ev.VM+"/"+ev.Disk] = *ev.Progress
			}
		},
	})
	_, err := r.ReplicateAll(ctx)
	require.NoError(t, err)
	assert.Zero(t, overlaps, "Events ran concurrently")
	for _, vm := range vms {
		for _, disk := range []string{"os", "data"} {
			p, ok := progress[vm+"/"+disk]
			require.True(t, ok, "progress of %s/%s", vm, disk)
			assert.True(t, p.Done, "the last progress event of %s/%s is Done", vm, disk)
		}
	}
}

// TestZeroReplicator checks that a Replicator not made by New fails with
// ErrInvalid instead of panicking.
func TestZeroReplicator(t *testing.T) {
	ctx := context.Background()
	for _, r := range []*replicate.Replicator{nil, {}} {
		_, err := r.ReplicateVM(ctx, "db")
		require.ErrorIs(t, err, draas.ErrInvalid)
		_, err = r.ReplicateAll(ctx)
		require.ErrorIs(t, err, draas.ErrInvalid)
		_, err = r.Status(ctx)
		require.ErrorIs(t, err, draas.ErrInvalid)
		_, err = replicate.NewScheduler(r, replicate.ScheduleOptions{})
		require.ErrorIs(t, err, draas.ErrInvalid)
		assert.Empty(t, r.Plan().Name)
	}
}

// TestBrokenPointRecordIsSkipped: a recovery point whose point.json is
// damaged is skipped with an error naming the VM, the point and its key,
// and the newest readable point is still replicated.
func TestBrokenPointRecordIsSkipped(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, ebs.PathDirect)
	a := randomDisk(8, 8*mib, 0.5)
	e.backup("db", map[string]*draastest.Disk{"os": a})
	r := e.replicator(plan("db"), replicate.Options{})
	_, err := r.ReplicateAll(ctx)
	require.NoError(t, err)

	change(a, 1, 0.25)
	readable := e.backup("db", map[string]*draastest.Disk{"os": a})
	change(a, 2, 0.25)
	broken := e.backup("db", map[string]*draastest.Disk{"os": a})
	s3c := e.srv.S3()
	list, err := s3c.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: aws.String("backups"), Prefix: aws.String("store/")})
	require.NoError(t, err)
	key := ""
	for _, o := range list.Contents {
		if k := aws.ToString(o.Key); strings.Contains(k, broken) && strings.HasSuffix(k, "/point.json") {
			key = k
		}
	}
	require.NotEmpty(t, key)
	_, err = s3c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("backups"), Key: aws.String(key), Body: strings.NewReader(`{"format": 1, "vm": "db"`)})
	require.NoError(t, err)

	results, err := r.ReplicateAll(ctx)
	require.ErrorIs(t, err, replicate.ErrPointSkipped)
	require.ErrorIs(t, err, draas.ErrChecksumMismatch)
	for _, want := range []string{"db", broken, key} {
		assert.Contains(t, err.Error(), want)
	}
	require.Len(t, results, 1)
	assert.Equal(t, replicate.ActionIncremental, results[0].Action, "the older, readable point is replicated")
	assert.Equal(t, readable, results[0].RecoveryPoint)
	assert.NotEmpty(t, results[0].Error)
	snaps := e.snapshotsOf("db")
	require.Len(t, snaps, 1)
	assert.Equal(t, readable, snaps[0].Tags[draas.TagRecoveryPoint])
	assert.Equal(t, "true", snaps[0].Tags[draas.TagComplete])

}
