package ebs_test

import (
	"context"
	"testing"
	"time"

	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
)

// TestCopyUnderEnforcedRateLimitsNeverFails copies into a snapshot, with the
// verify pass reading it back, while awssim enforces AWS's quotas (scaled
// down to 100 requests per second per snapshot, so that a short copy with
// many blocks in flight is throttled): throttled requests are retried and
// the copy succeeds.
func TestCopyUnderEnforcedRateLimitsNeverFails(t *testing.T) {
	ctx := context.Background()
	// The client retries as aws/account builds it: until the context ends,
	// not 5 attempts. With 32 copies sharing 100 requests per second, a
	// request may be throttled many times in a row on a loaded machine.
	srv, client := newSim(t, func(o *awsebs.Options) {
		o.Retryer = account.NewRetryer(account.RetryOptions{MaxBackoff: 20 * time.Millisecond})
	}, ebs.WithAdaptiveLimit(ebs.NewAdaptiveLimit(50, 1000)))
	limits := awssim.AWSEBSRateLimits()
	limits.PerSnapshot["PutSnapshotBlock"] = 100
	limits.PerSnapshot["GetSnapshotBlock"] = 100
	srv.LimitEBSRates(limits)

	src := disk(3, 0.1)
	sink, err := ebs.NewSink(ctx, client, src.Size(), ebs.SinkOptions{})
	require.NoError(t, err)
	st, err := blockcopy.Copy(ctx, sink, src, blockcopy.Options{Concurrency: 32, Verify: true, Retry: fast})
	require.NoError(t, err, "throttling is retried, never fatal")
	assert.True(t, st.Verified)
	assert.Equal(t, int64(src.StoredBlocks()), st.BlocksCopied)
	t.Logf("%d blocks: %d puts and %d gets throttled, %d retries by the copier, %v",
		st.BlocksCopied, srv.EBSThrottled("PutSnapshotBlock"), srv.EBSThrottled("GetSnapshotBlock"), st.Retries, st.Duration)
	assert.Positive(t, srv.EBSThrottled("PutSnapshotBlock"), "the quota was reached")
}

// TestAdaptiveLimitPerAPI: throttling of one API slows that API only, and
// the list operations are capped at their own, lower quota.
func TestAdaptiveLimitPerAPI(t *testing.T) {
	ctx := context.Background()
	limit := ebs.NewAdaptiveLimit(50, 1000)
	assert.Equal(t, 50.0, limit.RateOf("ListChangedBlocks"))
	assert.Equal(t, 1000.0, limit.Rate())
	srv, client := newSim(t, ebs.WithAdaptiveLimit(limit))

	sink, err := ebs.NewSink(ctx, client, 1<<30, ebs.SinkOptions{})
	require.NoError(t, err)
	srv.ThrottleNth("PutSnapshotBlock", 1)
	srv.ThrottleNth("PutSnapshotBlock", 2)
	src := disk(5, 0.01)
	_, err = blockcopy.Copy(ctx, sink, src, blockcopy.Options{Retry: fast})
	require.NoError(t, err)
	assert.Equal(t, int64(2), limit.Throttled())
	assert.Less(t, limit.RateOf("PutSnapshotBlock"), 1000.0, "the throttled API slowed down")
	assert.Equal(t, 1000.0, limit.RateOf("GetSnapshotBlock"), "the other APIs did not")
	assert.Equal(t, 1000.0, limit.RateOf("StartSnapshot"))
}
