package lab_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/lab"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
)

// TestWholeCycle backs up the three-tier plan's VMs, replicates them,
// drills, fails over, changes data on EC2, fails back to a rebuilt site and
// checks every disk byte for byte.
func TestWholeCycle(t *testing.T) {
	ctx := context.Background()
	l := backedUp(t, lab.Options{DiskMiB: 16})
	r, err := l.Replicator(replicate.Options{})
	require.NoError(t, err)
	_, err = r.ReplicateAll(ctx)
	require.NoError(t, err)

	fo, err := l.Failover()
	require.NoError(t, err)
	drill, err := fo.Run(ctx, l.Plan, failover.Drill)
	require.NoError(t, err)
	require.NoError(t, fo.Cleanup(ctx, drill))

	rep, err := fo.Run(ctx, l.Plan, failover.Failover)
	require.NoError(t, err)
	for _, v := range rep.VMs {
		require.True(t, v.Up, v.VM)
		// The instance boots from the VM's backed-up bytes.
		d, err := l.Site.Disk(v.VM, 0)
		require.NoError(t, err)
		got := make([]byte, d.Size())
		require.NoError(t, l.AWS.ReadVolume(v.VolumeIDs[0], 0, got))
		assert.True(t, bytes.Equal(d.Bytes(), got), "%s fails over with its own bytes", v.VM)
	}

	// Life goes on in EC2, then the site is rebuilt and everything comes back.
	for i, v := range rep.VMs {
		require.NoError(t, l.AWS.WriteVolume(v.VolumeIDs[0], int64(i)*4096, []byte("written on EC2")))
	}
	l.LoseSite()
	fb, err := l.Failback(failback.Options{})
	require.NoError(t, err)
	back, err := fb.Run(ctx, l.Plan, failback.Direct, failback.TargetsFromFailover(rep, nil))
	require.NoError(t, err)
	for _, v := range back.VMs {
		require.True(t, v.Up, v.VM)
		fo, _ := rep.VM(v.VM)
		d, err := l.Site.Disk(v.VM, 0)
		require.NoError(t, err)
		want := make([]byte, d.Size())
		require.NoError(t, l.AWS.ReadVolume(fo.VolumeIDs[0], 0, want))
		assert.True(t, bytes.Equal(want, d.Bytes()), "%s comes back with the EC2 volume's bytes", v.VM)
	}
}

// TestVSphereSite builds the site on vcsim, with disk data in the process
// and over TLS: the VMs hold their generated disks, backups go through
// package fromvsphere, guests write behind the API, powered-off VMs read
// back through vCenter what the guests wrote, and LoseSite leaves an empty
// vCenter.
func TestVSphereSite(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "in-process", true: "over-TLS"}[overTLS], func(t *testing.T) {
			ctx := t.Context()
			p, err := plan.Load("../examples/plans/three-tier.yaml")
			require.NoError(t, err)
			l, err := lab.Start(ctx, p, lab.Options{DiskMiB: 4, VSphere: true, DatastoreOverTLS: overTLS, SiteRecords: true})
			require.NoError(t, err)
			defer l.Close()
			require.Nil(t, l.Site)
			h := l.VCenter.Hypervisor

			require.Len(t, l.SiteRecords, 3)
			for _, r := range l.SiteRecords {
				got, err := l.DNS.Lookup(ctx, r.Zone, r.Name, r.Type)
				require.NoError(t, err)
				assert.Equal(t, r.Values, got.Values, r.Name)
			}

			vm := l.Plan.VMs[0].Name
			shape, err := h.VMShape(ctx, vm)
			require.NoError(t, err)
			require.Len(t, shape.Disks, 1)
			assert.Equal(t, int64(4<<20), shape.Disks[0].Size)

			b, err := backup.New(l.Snapshotter(), l.Store, backup.Options{})
			require.NoError(t, err)
			res, err := b.Run(ctx, vm)
			require.NoError(t, err)
			require.Len(t, res.Disks, 1)
			assert.Equal(t, "scsi0-0", res.Disks[0].Disk.Name)
			assert.False(t, res.Disks[0].Incremental, "vcsim has no CBT")

			before := guestBytes(t, l, vm)
			n, err := l.Change(vm, 0.25, 3)
			require.NoError(t, err)
			after := guestBytes(t, l, vm)
			changed := 0
			for off := 0; off < len(after); off += lab.BlockSize {
				if !bytes.Equal(before[off:off+lab.BlockSize], after[off:off+lab.BlockSize]) {
					changed++
				}
			}
			assert.Positive(t, changed)
			assert.LessOrEqual(t, changed, n)

			// What the guest wrote is what vCenter reads, and what a backup
			// stores.
			require.NoError(t, h.PowerOff(ctx, vm))
			src, err := h.ReadDisk(ctx, vm, 0)
			require.NoError(t, err)
			got := make([]byte, len(after))
			_, err = src.ReadAt(ctx, got, 0)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(after, got), "ReadDisk returns the guest's bytes")

			// A disk written through package vsphere with zeros after its data
			// reads back whole.
			require.NoError(t, h.CreateVM(ctx, draas.VMRequest{Name: "sparse", Shape: draas.Shape{CPUs: 1, MemoryMiB: 512, Firmware: "bios", Disks: []draas.Disk{{Size: 3 << 20}}}}))
			disk := draastest.NewDisk(3<<20, lab.BlockSize)
			disk.WriteAt(bytes.Repeat([]byte("draas"), 1000), 4096)
			sink, err := h.OpenDisk(ctx, "sparse", 0)
			require.NoError(t, err)
			_, err = blockcopy.Copy(ctx, sink, disk, blockcopy.Options{Verify: true})
			require.NoError(t, err)
			g, err := l.VCenter.GuestDisk(ctx, "sparse", 0)
			require.NoError(t, err)
			back := make([]byte, disk.Size())
			_, err = g.ReadAt(back, 0)
			require.NoError(t, g.Close())
			require.NoError(t, err)
			assert.True(t, bytes.Equal(disk.Bytes(), back), "the datastore file holds the disk's bytes")

			old := l.VCenter.URL
			require.NoError(t, l.LoseSite())
			assert.NotEqual(t, old, l.VCenter.URL)
			_, err = l.VCenter.Hypervisor.VMShape(ctx, vm)
			assert.ErrorIs(t, err, draas.ErrNotFound, "the rebuilt site is empty")
		})
	}
}

// guestBytes reads a VM's first disk as its guest sees it.
func guestBytes(t *testing.T, l *lab.Lab, vm string) []byte {
	t.Helper()
	g, err := l.VCenter.GuestDisk(t.Context(), vm, 0)
	require.NoError(t, err)
	defer g.Close()
	p := make([]byte, g.Size())
	_, err = g.ReadAt(p, 0)
	require.NoError(t, err)
	return p
}
