package draastest_test

import (
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
)

func TestBackupStoreFake(t *testing.T) {
	draastest.TestBackupStore(t, func(t *testing.T) draas.BackupStore { return draastest.NewBackupStore(0, nil) })
	// Small blocks: the suite's changes fall in different blocks.
	t.Run("SmallBlocks", func(t *testing.T) {
		draastest.TestBackupStore(t, func(t *testing.T) draas.BackupStore { return draastest.NewBackupStore(64<<10, nil) })
	})
}

func TestCopyStoreFake(t *testing.T) {
	draastest.TestCopyStore(t, func(t *testing.T) draas.CopyStore {
		return draastest.NewCopyStore(draastest.CopyStoreOptions{})
	})
}
