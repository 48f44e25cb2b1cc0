package lab_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/lab"
	"github.com/opendraas/draas/plan"
)

// backedUp starts a lab for examples/plans/three-tier.yaml, closed when the
// test ends, and backs up every VM of its site once.
func backedUp(t *testing.T, opts lab.Options) *lab.Lab {
	t.Helper()
	ctx := context.Background()
	p, err := plan.Load("../examples/plans/three-tier.yaml")
	require.NoError(t, err)
	l, err := lab.Start(ctx, p, opts)
	require.NoError(t, err)
	t.Cleanup(l.Close)
	b, err := backup.New(l.Snapshotter(), l.Store, backup.Options{})
	require.NoError(t, err)
	for _, vm := range l.Plan.VMs {
		_, err := b.Run(ctx, vm.Name)
		require.NoError(t, err)
	}
	return l
}
