package observe

import (
	"context"
	"errors"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// The outcome label values of draas_aws_api_calls_total.
const (
	OutcomeOK        = "ok"        // the attempt succeeded
	OutcomeThrottled = "throttled" // the service throttled it
	OutcomeError     = "error"     // any other error
)

// awsMiddlewareID names the middleware in a client's stack.
const awsMiddlewareID = "draas/observe.APICallMetrics"

// AWSAPIOption returns an aws-sdk-go-v2 API option that counts the client's
// calls in draas_aws_api_calls_total{service,operation,outcome}, where
// service is the SDK's service ID ("EC2", "EBS", "Route 53", "S3") and
// operation the API operation ("DescribeVolumes"). Append it to any client's
// APIOptions:
//
//	ec2.NewFromConfig(cfg, func(o *ec2.Options) {
//		o.APIOptions = append(o.APIOptions, m.AWSAPIOption())
//	})
//
// or to aws.Config.APIOptions for every client made from the config.
//
// The middleware sits at the front of the Deserialize step, below the SDK's
// retry middleware (Finalize step), so it counts every attempt: a call the
// SDK retried twice counts three times, for example throttled, throttled,
// ok. Calls that fail before a request is sent (parameter validation,
// credentials, endpoint resolution) are not counted.
//
// An attempt's outcome is throttled when its error is a smithy.APIError
// whose code is one of Throttling, ThrottlingException,
// RequestLimitExceeded, RequestThrottledException, SlowDown,
// TooManyRequestsException, PriorRequestNotComplete, or the other codes
// draas's AWS packages treat as throttling (ThrottledException,
// RequestThrottled, EC2ThrottledException, BandwidthLimitExceeded,
// ProvisionedThroughputExceededException,
// ConcurrentLimitExceededException); error for any other error, network
// errors and cancellation included; ok otherwise.
//
// Adding the option twice to one client's stack fails the call with an
// error naming the duplicate middleware.
func (m *Metrics) AWSAPIOption() func(*middleware.Stack) error {
	mw := middleware.DeserializeMiddlewareFunc(awsMiddlewareID, func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
		out, md, err := next.HandleDeserialize(ctx, in)
		m.awsCalls.WithLabelValues(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx), outcome(err)).Inc()
		return out, md, err
	})
	return func(s *middleware.Stack) error {
		return s.Deserialize.Add(mw, middleware.Before)
	}
}

// outcome classifies an attempt's error.
func outcome(err error) string {
	if err == nil {
		return OutcomeOK
	}
	if apiErr, ok := errors.AsType[smithy.APIError](err); ok && isThrottle(apiErr.ErrorCode()) {
		return OutcomeThrottled
	}
	return OutcomeError
}

// isThrottle reports whether code is an AWS error code that means the
// request was throttled. The set is aws/internal/awserr's, so that the
// metrics agree with how draas classifies errors for retries.
func isThrottle(code string) bool {
	switch code {
	case "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottledException",
		"SlowDown", "TooManyRequestsException", "PriorRequestNotComplete",
		"ThrottledException", "RequestThrottled", "EC2ThrottledException", "BandwidthLimitExceeded",
		"ProvisionedThroughputExceededException", "ConcurrentLimitExceededException":
		return true
	}
	return false
}
