package backup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

func TestFullThenCBTIncremental(t *testing.T) {
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	require.NoError(t, err)
	defer srv.Close()
	s3store := s3.New(srv.S3(), "backups", "vsphere", s3.Options{})
	store := backup.StoreOf(s3store)
	hv := &hypervisor{disks: []*draastest.Disk{randomDisk(1, 64<<20, 0.5), randomDisk(2, 16<<20+4096, 0.3)}}
	clock := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	opts := backup.Options{Now: func() time.Time { return clock }}

	first, err := backup.Run(ctx, hv, store, "db", opts)
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
	second, err := backup.Run(ctx, hv, store, "db", opts)
	require.NoError(t, err)
	for _, d := range second.Disks {
		assert.True(t, d.Incremental, d.Disk.Name)
	}
	assert.Equal(t, int64(2*blk), second.Disks[0].Stats.BytesRead, "only the changed areas are read")
	assert.Equal(t, int64(blk), second.Disks[1].Stats.BytesRead)

	pts, err := s3store.Points(ctx, "db")
	require.NoError(t, err)
	require.Len(t, pts, 2)
	assert.Equal(t, "52 2/0", pts[1].Disks[0].ChangeID, "the point records each disk's change ID")
	for i := range hv.disks {
		name := fmt.Sprintf("disk-%d", i)
		src, err := s3store.OpenDisk(ctx, "db", pts[1].ID, name)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(hv.disks[i].Bytes(), readAll(t, src)), "the new point holds the disk's bytes")
		src, err = s3store.OpenDisk(ctx, "db", pts[0].ID, name)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(old[i], readAll(t, src)), "the old point is unchanged")
	}
}

func TestFailedBackupLeavesNoPoint(t *testing.T) {
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	require.NoError(t, err)
	defer srv.Close()
	s3store := s3.New(srv.S3(), "backups", "vsphere", s3.Options{})
	boom := errors.New("datastore went away")
	hv := &hypervisor{disks: []*draastest.Disk{randomDisk(1, 8<<20, 0.5), randomDisk(2, 8<<20, 0.5)}, fail: boom}
	_, err = backup.Run(ctx, hv, backup.StoreOf(s3store), "db", backup.Options{Copy: blockcopy.Options{Concurrency: 1}})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "disk-1")
	pts, err := s3store.Points(ctx, "db")
	require.NoError(t, err)
	assert.Empty(t, pts, "no recovery point is visible")
	assert.Equal(t, 1, hv.closed, "the snapshot is removed after a failure too")
}
