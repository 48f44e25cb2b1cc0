package ebs_test

import (
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/draastest"
)

// TestCopyStoreSuite runs the draas.CopyStore conformance suite, the one
// the in-memory draastest.CopyStore runs too, against EBS snapshots in the
// simulator (the direct-API path).
func TestCopyStoreSuite(t *testing.T) {
	draastest.TestCopyStore(t, func(t *testing.T) draas.CopyStore {
		srv, err := awssim.New(awssim.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		return ebs.NewCopies(srv.EBS(), srv.EC2(), ebs.CopiesOptions{})
	})
}
