package s3_test

import (
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/draastest"
)

// TestBackupStoreSuite runs the draas.BackupStore conformance suite, the
// one the in-memory draastest.BackupStore runs too.
func TestBackupStoreSuite(t *testing.T) {
	draastest.TestBackupStore(t, func(t *testing.T) draas.BackupStore {
		return newEnv(t).store("suite", s3.Options{})
	})
}
