package awssim_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/opendraas/draas/awssim"
)

// TestEBSRateLimitsEnforced: requests beyond a per-snapshot quota fail with
// RequestThrottledException (RESOURCE_LEVEL_THROTTLE), each snapshot has
// its own budget, and a per-account quota counts every snapshot's requests
// (ACCOUNT_THROTTLED).
func TestEBSRateLimitsEnforced(t *testing.T) {
	limits := awssim.EBSRateLimits{
		PerSnapshot: map[string]float64{"PutSnapshotBlock": 20},
		PerAccount:  map[string]float64{"ListSnapshotBlocks": 20},
	}
	srv, c := newEBS(t, awssim.Options{EBSRateLimits: &limits}, noRetries)
	a := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId
	b := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId

	data := pattern(1)
	var ok, throttled atomic.Int64
	var g errgroup.Group
	began := time.Now()
	for w := range 16 {
		g.Go(func() error {
			for i := range 6 {
				_, err := putBlock(context.Background(), c, a, int32(w*6+i), data)
				var te *types.RequestThrottledException
				switch {
				case err == nil:
					ok.Add(1)
				case errors.As(err, &te):
					throttled.Add(1)
					if te.Reason != "RESOURCE_LEVEL_THROTTLE" {
						return err
					}
				default:
					return err
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	elapsed := time.Since(began)
	t.Logf("96 puts in %v: %d accepted, %d throttled", elapsed, ok.Load(), throttled.Load())
	assert.Positive(t, throttled.Load(), "a burst above the quota is throttled")
	assert.LessOrEqual(t, float64(ok.Load()), 2+20*elapsed.Seconds()+1, "no more than the quota (plus its burst of 2) is accepted")
	assert.Equal(t, int(throttled.Load()), srv.EBSThrottled("PutSnapshotBlock"))

	// Another snapshot has its own budget.
	_, err := putBlock(context.Background(), c, b, 0, data)
	require.NoError(t, err)

	// The account quota counts both snapshots.
	var acct int
	for i := range 40 {
		id := []string{a, b}[i%2]
		_, err := c.ListSnapshotBlocks(context.Background(), &ebs.ListSnapshotBlocksInput{SnapshotId: aws.String(id)})
		var te *types.RequestThrottledException
		if errors.As(err, &te) {
			assert.Equal(t, types.RequestThrottledExceptionReasonAccountThrottled, te.Reason)
			acct++
			continue
		}
		require.Error(t, err, "a pending snapshot cannot be listed") // not throttled: passed the quota
	}
	assert.Positive(t, acct)
	assert.Equal(t, acct, srv.EBSThrottled("ListSnapshotBlocks"))

	// Limits can be lifted.
	srv.LimitEBSRates(awssim.EBSRateLimits{})
	for i := range 50 {
		_, err := putBlock(context.Background(), c, a, int32(i), data)
		require.NoError(t, err)
	}
}

func TestAWSEBSRateLimits(t *testing.T) {
	l := awssim.AWSEBSRateLimits()
	assert.Equal(t, 1000.0, l.PerSnapshot["PutSnapshotBlock"])
	assert.Equal(t, 1000.0, l.PerSnapshot["GetSnapshotBlock"])
	assert.Less(t, l.PerAccount["ListChangedBlocks"], l.PerSnapshot["GetSnapshotBlock"])
	assert.Less(t, l.PerAccount["ListSnapshotBlocks"], l.PerSnapshot["GetSnapshotBlock"])
}

// TestLatencyAppliesToS3: Server.Latency slows S3 operations too, so that a
// benchmark can model the backup store's round trips as well as EBS's.
func TestLatencyAppliesToS3(t *testing.T) {
	srv, err := awssim.New(awssim.Options{Buckets: []string{"bkt"}})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	c := srv.S3()
	srv.Latency("HeadBucket", 100*time.Millisecond)
	began := time.Now()
	_, err = c.HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: aws.String("bkt")})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(began), 100*time.Millisecond)
}
