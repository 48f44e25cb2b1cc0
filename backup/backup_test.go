package backup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
)

const blk = 512 << 10

// hypervisor is a VM whose disks are draastest Disks; a snapshot records a
// named version of each disk, which serves as its change ID.
type hypervisor struct {
	disks  []*draastest.Disk
	n      int
	closed int
	fail   error
}

type snapshot struct {
	h   *hypervisor
	ids []string
}

func (h *hypervisor) Snapshot(ctx context.Context, vm string) (backup.Snapshot, error) {
	h.n++
	s := &snapshot{h: h}
	for i, d := range h.disks {
		id := fmt.Sprintf("52 %d/%d", h.n, i)
		d.Version(id)
		s.ids = append(s.ids, id)
	}
	return s, nil
}

func (s *snapshot) Disks() []draas.Disk {
	var out []draas.Disk
	for i, d := range s.h.disks {
		out = append(out, draas.Disk{Name: fmt.Sprintf("disk-%d", i), Size: d.Size(), ChangeID: s.ids[i]})
	}
	return out
}

func (s *snapshot) Open(ctx context.Context, i int) (draas.BlockSource, error) {
	if s.h.fail != nil && i == 1 {
		f := &draastest.Faults{}
		f.FailNth("ReadBlock", 2, s.h.fail)
		return draastest.FaultySource(s.h.disks[i], f), nil
	}
	return s.h.disks[i], nil
}

func (s *snapshot) Close(context.Context) error { s.h.closed++; return nil }

func randomDisk(seed uint64, size int64, fraction float64) *draastest.Disk {
	r := rand.New(rand.NewPCG(seed, 1))
	d := draastest.NewDisk(size, blk)
	p := make([]byte, blk)
	for off := int64(0); off < size; off += blk {
		if r.Float64() < fraction {
			for i := range p {
				p[i] = byte(r.Uint32())
			}
			d.WriteAt(p[:min(blk, size-off)], off)
		}
	}
	return d
}

func readAll(t *testing.T, src draas.BlockSource) []byte {
	t.Helper()
	p := make([]byte, src.Size())
	_, err := src.ReadAt(context.Background(), p, 0)
	require.NoError(t, err)
	return p
}

// stores are the backup stores each test runs against: the in-memory fake
// (the unit test) and the S3 store in the AWS simulator (the integration
// test).
var stores = []struct {
	name string
	open func(t *testing.T) draas.BackupStore
}{
	{"memory", func(t *testing.T) draas.BackupStore { return draastest.NewBackupStore(blk, nil) }},
	{"s3", func(t *testing.T) draas.BackupStore {
		srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
		require.NoError(t, err)
		t.Cleanup(srv.Close)
		return s3.New(srv.S3(), "backups", "vsphere", s3.Options{})
	}},
}

func TestFullThenCBTIncremental(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { testFullThenCBTIncremental(t, s.open(t)) })
	}
}

func testFullThenCBTIncremental(t *testing.T, store draas.BackupStore) {
	ctx := context.Background()
	hv := &hypervisor{disks: []*draastest.Disk{randomDisk(1, 64<<20, 0.5), randomDisk(2, 16<<20+4096, 0.3)}}
	clock := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	b, err := backup.New(hv, store, backup.Options{Now: func() time.Time { return clock }})
	require.NoError(t, err)

	first, err := b.Run(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, 1, hv.closed, "the snapshot is removed")
	require.Len(t, first.Disks, 2)
	for _, d := range first.Disks {
		assert.False(t, d.Incremental)
	}
	old := [][]byte{hv.disks[0].Bytes(), hv.disks[1].Bytes()}

	// The guest writes; the next backup reads only what CBT reports.
	p := bytes.Repeat([]byte{7}, 4096)
	hv.disks[0].WriteAt(p, 10*blk+100)
	zeroed := 20
	for ; bytes.Count(old[0][zeroed*blk:(zeroed+1)*blk], []byte{0}) == blk; zeroed++ {
	}
	hv.disks[0].WriteAt(make([]byte, blk), int64(zeroed)*blk) // a block with data zeroed
	hv.disks[1].WriteAt(p, 3*blk)
	clock = clock.Add(time.Hour)
	second, err := b.Run(ctx, "db")
	require.NoError(t, err)
	for _, d := range second.Disks {
		assert.True(t, d.Incremental, d.Disk.Name)
	}
	assert.Equal(t, int64(2*blk), second.Disks[0].Stats.BytesRead, "only the changed areas are read")
	assert.Equal(t, int64(blk), second.Disks[1].Stats.BytesRead)

	pts, err := store.Points(ctx, "db")
	require.NoError(t, err)
	require.Len(t, pts, 2)
	assert.Equal(t, "52 2/0", pts[1].Disks[0].ChangeID, "the point records each disk's change ID")
	for i := range hv.disks {
		name := fmt.Sprintf("disk-%d", i)
		src, err := store.OpenDisk(ctx, "db", pts[1].ID, name)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(hv.disks[i].Bytes(), readAll(t, src)), "the new point holds the disk's bytes")
		src, err = store.OpenDisk(ctx, "db", pts[0].ID, name)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(old[i], readAll(t, src)), "the old point is unchanged")
	}
}

func TestFailedBackupLeavesNoPoint(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { testFailedBackupLeavesNoPoint(t, s.open(t)) })
	}
}

func testFailedBackupLeavesNoPoint(t *testing.T, store draas.BackupStore) {
	ctx := context.Background()
	boom := errors.New("datastore went away")
	hv := &hypervisor{disks: []*draastest.Disk{randomDisk(1, 8<<20, 0.5), randomDisk(2, 8<<20, 0.5)}, fail: boom}
	b, err := backup.New(hv, store, backup.Options{Copy: blockcopy.Options{Concurrency: 1}})
	require.NoError(t, err)
	_, err = b.Run(ctx, "db")
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "disk-1")
	pts, err := store.Points(ctx, "db")
	require.NoError(t, err)
	assert.Empty(t, pts, "no recovery point is visible")
	assert.Equal(t, 1, hv.closed, "the snapshot is removed after a failure too")
}

// TestNewRejectsMissingAndWorkflowOwnedInput checks the constructor's
// errors: a nil collaborator, or an Options.Copy field the workflow sets,
// is an ErrInvalid naming what to do, never a panic later.
func TestNewRejectsMissingAndWorkflowOwnedInput(t *testing.T) {
	store := draastest.NewBackupStore(blk, nil)
	hv := &hypervisor{}
	for _, c := range []struct {
		name  string
		hv    backup.Hypervisor
		store draas.BackupWriter
		opts  backup.Options
		want  string
	}{
		{"nil hv", nil, store, backup.Options{}, "hv is nil"},
		{"nil store", hv, nil, backup.Options{}, "store is nil"},
		{"Copy.Extents", hv, store, backup.Options{Copy: blockcopy.Options{Extents: []draas.Extent{}}}, "Copy.Extents"},
		{"Copy.Checkpoint", hv, store, backup.Options{Copy: blockcopy.Options{Checkpoint: blockcopy.FileCheckpoint(t.TempDir() + "/c")}}, "Copy.Checkpoint"},
		{"Copy.Progress", hv, store, backup.Options{Copy: blockcopy.Options{Progress: func(blockcopy.Progress) {}}}, "Options.Progress"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := backup.New(c.hv, c.store, c.opts)
			require.ErrorIs(t, err, draas.ErrInvalid)
			assert.Contains(t, err.Error(), c.want)
			assert.Nil(t, b)
		})
	}
	var nilRunner *backup.Runner
	_, err := nilRunner.Run(context.Background(), "db")
	require.ErrorIs(t, err, draas.ErrInvalid, "a nil Runner fails instead of panicking")
}

// TestProgressTaggedAndSerialized backs up two VMs at once through one
// Runner: progress names VM and disk, and the callback never runs twice at
// the same time.
func TestProgressTaggedAndSerialized(t *testing.T) {
	ctx := context.Background()
	store := draastest.NewBackupStore(blk, nil)
	var inside atomic.Int32
	overlaps := 0
	last := map[string]blockcopy.DiskProgress{} // the callback needs no lock
	b, err := backup.New(multiVM{
		"web": &hypervisor{disks: []*draastest.Disk{randomDisk(3, 8<<20, 0.5)}},
		"db":  &hypervisor{disks: []*draastest.Disk{randomDisk(4, 8<<20, 0.5), randomDisk(5, 4<<20, 0.5)}},
	}, store, backup.Options{
		Copy: blockcopy.Options{ProgressInterval: time.Millisecond, Concurrency: 2},
		Progress: func(p blockcopy.DiskProgress) {
			if inside.Add(1) != 1 {
				overlaps++
			}
			last[p.VM+"/"+p.Disk] = p
			inside.Add(-1)
		},
	})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for _, vm := range []string{"web", "db"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.Run(ctx, vm)
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	assert.Zero(t, overlaps, "the progress callback ran concurrently")
	for _, key := range []string{"web/disk-0", "db/disk-0", "db/disk-1"} {
		p, ok := last[key]
		require.True(t, ok, "progress of %s", key)
		assert.True(t, p.Done, key)
		assert.Equal(t, key, p.VM+"/"+p.Disk)
	}
}

// multiVM is a hypervisor of several VMs by name.
type multiVM map[string]*hypervisor

func (m multiVM) Snapshot(ctx context.Context, vm string) (backup.Snapshot, error) {
	h, ok := m[vm]
	if !ok {
		return nil, draas.ErrNotFound
	}
	return h.Snapshot(ctx, vm)
}
