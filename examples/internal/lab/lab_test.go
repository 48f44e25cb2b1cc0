package lab_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/examples/internal/lab"
	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
)

// TestWholeCycle backs up the three-tier plan's VMs, replicates them,
// drills, fails over, changes data on EC2, fails back to a rebuilt site and
// checks every disk byte for byte.
func TestWholeCycle(t *testing.T) {
	ctx := context.Background()
	p, err := plan.Load("../../plans/three-tier.yaml")
	require.NoError(t, err)
	l, err := lab.Start(ctx, p, lab.Options{DiskMiB: 16})
	require.NoError(t, err)
	defer l.Close()

	for _, vm := range l.Plan.VMs {
		_, err := backup.Run(ctx, l.Snapshotter(), l.BackupStore(), vm.Name, backup.Options{})
		require.NoError(t, err)
	}
	r, err := l.Replicator(replicate.Options{})
	require.NoError(t, err)
	_, err = r.ReplicateAll(ctx)
	require.NoError(t, err)

	drill, err := failover.Run(ctx, l.Plan, l.Failover(failover.Drill))
	require.NoError(t, err)
	require.NoError(t, failover.Cleanup(ctx, drill, l.Failover(failover.Drill)))

	rep, err := failover.Run(ctx, l.Plan, l.Failover(failover.Failover))
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
	back, err := failback.Run(ctx, l.Plan, l.Failback(failback.Direct, rep))
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
