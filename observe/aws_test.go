package observe

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/awssim"
)

func TestAWSAPIOption(t *testing.T) {
	srv, err := awssim.New(awssim.Options{})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	_, m := newMetrics(t)
	client := srv.EC2(func(o *ec2.Options) {
		o.APIOptions = append(o.APIOptions, m.AWSAPIOption())
		o.Retryer = awsretry.NewStandard(func(so *awsretry.StandardOptions) {
			so.MaxAttempts = 3
			so.MaxBackoff = time.Millisecond
			so.RateLimiter = ratelimit.None
		})
	})
	ctx := context.Background()
	calls := func(outcome string) float64 {
		return testutil.ToFloat64(m.awsCalls.WithLabelValues("EC2", "DescribeVolumes", outcome))
	}

	_, err = client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{})
	require.NoError(t, err)
	assert.Equal(t, 1.0, calls(OutcomeOK))

	// Every attempt is throttled: the SDK makes 3 and each one counts.
	srv.Throttle("DescribeVolumes", 1)
	_, err = client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{})
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "RequestLimitExceeded", apiErr.ErrorCode())
	assert.Equal(t, 3.0, calls(OutcomeThrottled), "one count per attempt, retries included")
	srv.ClearFaults()

	// The first attempt throttled, the retry succeeds.
	srv.ThrottleNth("DescribeVolumes", 1)
	_, err = client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{})
	require.NoError(t, err)
	assert.Equal(t, 4.0, calls(OutcomeThrottled))
	assert.Equal(t, 2.0, calls(OutcomeOK))

	// A server error is an error, not throttling.
	srv.FailNth("DescribeVolumes", 1)
	_, err = client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{})
	require.NoError(t, err)
	assert.Equal(t, 1.0, calls(OutcomeError))
	assert.Equal(t, 3.0, calls(OutcomeOK))

	// A client error on another operation.
	_, err = client.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{"snap-0123456789abcdef0"}})
	require.Error(t, err)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.awsCalls.WithLabelValues("EC2", "DescribeSnapshots", OutcomeError)))

	assert.Equal(t, float64(srv.Calls("DescribeVolumes")), calls(OutcomeOK)+calls(OutcomeThrottled)+calls(OutcomeError),
		"the metric counts exactly the requests the server received")
	assert.Equal(t, 4, testutil.CollectAndCount(m.awsCalls), "no other series")
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, OutcomeOK},
		{&smithy.GenericAPIError{Code: "ThrottlingException"}, OutcomeThrottled},
		{fmt.Errorf("op: %w", &smithy.GenericAPIError{Code: "SlowDown"}), OutcomeThrottled},
		{&smithy.GenericAPIError{Code: "PriorRequestNotComplete"}, OutcomeThrottled},
		{&smithy.GenericAPIError{Code: "TooManyRequestsException"}, OutcomeThrottled},
		{&smithy.GenericAPIError{Code: "RequestThrottledException"}, OutcomeThrottled},
		{&smithy.GenericAPIError{Code: "Throttling"}, OutcomeThrottled},
		{&smithy.GenericAPIError{Code: "InvalidVolume.NotFound"}, OutcomeError},
		{&smithy.GenericAPIError{Code: "InternalError"}, OutcomeError},
		{errors.New("throttling"), OutcomeError}, // no string matching
		{context.DeadlineExceeded, OutcomeError},
	} {
		assert.Equal(t, tc.want, outcome(tc.err), "%v", tc.err)
	}
}
