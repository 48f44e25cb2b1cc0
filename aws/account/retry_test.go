package account_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/retry"
)

var quick = account.RetryOptions{MaxBackoff: 2 * time.Millisecond}

// Every client of an account retries a throttled request more often than
// the SDK's default of three attempts, and counts the retries in the
// request's context.
func TestClientsRetryPastThreeAttemptsAndCount(t *testing.T) {
	srv := sim(t, awssim.Options{})
	limit := ebs.NewAdaptiveLimit(10, 100)
	a, err := account.New(srv.Config(), account.Options{Retry: quick, EBSLimit: limit})
	require.NoError(t, err)
	var c retry.Counter
	ctx := retry.WithCounter(context.Background(), &c)

	for i := 1; i <= 6; i++ {
		srv.ThrottleNth("DescribeVolumes", i)
	}
	_, err = a.EC2.DescribeVolumes(ctx, &awsec2.DescribeVolumesInput{})
	require.NoError(t, err, "EC2")
	assert.Equal(t, 7, srv.Calls("DescribeVolumes"))
	assert.Equal(t, int64(6), c.Load(), "six retries counted")

	for i := 1; i <= 4; i++ {
		srv.ThrottleNth("StartSnapshot", i)
	}
	sink, err := ebs.NewSink(ctx, a.EBS, 1<<20, ebs.SinkOptions{})
	require.NoError(t, err, "EBS, through the account's adaptive limit")
	require.NoError(t, sink.Abort(context.Background()))
	assert.Equal(t, int64(10), c.Load())
	assert.Equal(t, int64(4), limit.Throttled(), "the limit still sees every throttled attempt")

	for i := 1; i <= 4; i++ {
		srv.ThrottleNth("ListHostedZones", i)
	}
	_, err = a.Route53.ListHostedZones(ctx, &awsr53.ListHostedZonesInput{})
	require.NoError(t, err, "Route 53")
	assert.Equal(t, int64(14), c.Load())
}

// A request AWS throttles until the context's deadline fails as throttled
// (draas.ErrThrottled once classified), before the deadline, and not with
// a context error that would hide why.
func TestThrottledUntilTheDeadline(t *testing.T) {
	srv := sim(t, awssim.Options{})
	a, err := account.New(srv.Config(), account.Options{Retry: account.RetryOptions{MaxBackoff: 20 * time.Millisecond}})
	require.NoError(t, err)
	srv.Throttle("DescribeSubnets", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var c retry.Counter
	start := time.Now()
	_, err = a.Resolver.Subnet(retry.WithCounter(ctx, &c), "app")
	require.Error(t, err)
	assert.Less(t, time.Since(start), 300*time.Millisecond, "gave up before the deadline")
	assert.ErrorIs(t, err, draas.ErrThrottled)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "RequestLimitExceeded")
	assert.Greater(t, c.Load(), int64(3), "retried more than the SDK's default")
	assert.Equal(t, int(c.Load())+1, srv.Calls("DescribeSubnets"))
}

// MaxAttempts bounds the attempts when set.
func TestRetryMaxAttempts(t *testing.T) {
	srv := sim(t, awssim.Options{})
	a, err := account.New(srv.Config(), account.Options{Retry: account.RetryOptions{MaxAttempts: 2, MaxBackoff: time.Millisecond}})
	require.NoError(t, err)
	srv.Throttle("DescribeVolumes", 1)
	_, err = a.EC2.DescribeVolumes(context.Background(), &awsec2.DescribeVolumesInput{})
	var maxErr *awsretry.MaxAttemptsError
	require.True(t, errors.As(err, &maxErr), "%v", err)
	assert.Equal(t, 2, srv.Calls("DescribeVolumes"))
}

// A retryer the configuration sets is kept, and counts too; WithRetries
// applied twice counts each retry once.
func TestWithRetriesKeepsTheConfigurationsRetryer(t *testing.T) {
	srv := sim(t, awssim.Options{})
	cfg := srv.Config()
	cfg.Retryer = func() aws.Retryer {
		return awsretry.NewStandard(func(o *awsretry.StandardOptions) { o.MaxAttempts = 2; o.MaxBackoff = time.Millisecond })
	}
	cfg = account.WithRetries(account.WithRetries(cfg, account.RetryOptions{}), account.RetryOptions{})
	var c retry.Counter
	srv.Throttle("DescribeVolumes", 1)
	_, err := awsec2.NewFromConfig(cfg).DescribeVolumes(retry.WithCounter(context.Background(), &c), &awsec2.DescribeVolumesInput{})
	require.ErrorContains(t, err, "RequestLimitExceeded")
	assert.Equal(t, 2, srv.Calls("DescribeVolumes"), "the configuration's two attempts")
	assert.Equal(t, int64(1), c.Load())

	d := account.WithRetries(account.WithRetries(srv.Config(), quick), quick)
	srv.ClearFaults()
	srv.ThrottleNth("DescribeVolumes", 1)
	_, err = awsec2.NewFromConfig(d).DescribeVolumes(retry.WithCounter(context.Background(), &c), &awsec2.DescribeVolumesInput{})
	require.NoError(t, err)
	assert.Equal(t, int64(2), c.Load(), "one retry counted once")
}

// A deadline that comes during an attempt after a retry (here every
// attempt takes 40ms) still reads as the throttling that made the request
// retry.
func TestThrottledUntilTheDeadlineDuringAnAttempt(t *testing.T) {
	srv := sim(t, awssim.Options{})
	a, err := account.New(srv.Config(), account.Options{Retry: account.RetryOptions{MaxBackoff: time.Millisecond}})
	require.NoError(t, err)
	srv.Throttle("DescribeSubnets", 1)
	srv.Latency("DescribeSubnets", 40*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	_, err = a.Resolver.Subnet(ctx, "app")
	require.Error(t, err)
	assert.ErrorIs(t, err, draas.ErrThrottled)
	assert.ErrorContains(t, err, "RequestLimitExceeded")
	assert.ErrorContains(t, err, "deadline")

	// Cancelled, not timed out: an interruption stays one.
	srv.ClearFaults()
	srv.Throttle("DescribeSubnets", 1)
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = a.Resolver.Subnet(ctx, "app")
	assert.ErrorIs(t, err, context.Canceled)
}
