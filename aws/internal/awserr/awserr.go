// Package awserr translates errors from aws-sdk-go-v2 into draas's
// vocabulary without losing them: the result is a *draas.OpError whose Kind
// is a draas sentinel (ErrThrottled, ErrNotFound, ...) and whose Err is the
// SDK's error, so errors.Is matches the sentinel and errors.As still reaches
// smithy.APIError and the service's typed exceptions.
package awserr

import (
	"context"
	"errors"
	"net"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/opendraas/draas"
)

var throttleCodes = map[string]bool{
	"Throttling":                             true,
	"ThrottlingException":                    true,
	"ThrottledException":                     true,
	"RequestThrottledException":              true,
	"RequestThrottled":                       true,
	"RequestLimitExceeded":                   true,
	"TooManyRequestsException":               true,
	"SlowDown":                               true,
	"PriorRequestNotComplete":                true,
	"ProvisionedThroughputExceededException": true,
	"BandwidthLimitExceeded":                 true,
	"EC2ThrottledException":                  true,
	"ConcurrentLimitExceededException":       true,
}

var conflictCodes = map[string]bool{
	"ConflictException":           true,
	"IncorrectState":              true,
	"IncorrectInstanceState":      true,
	"VolumeInUse":                 true,
	"IdempotentParameterMismatch": true,
	"HostedZoneNotEmpty":          true,
	"HostedZoneAlreadyExists":     true,
	"InvalidSnapshot.InUse":       true,
	"InvalidIPAddress.InUse":      true,
	"ResourceAlreadyExists":       true,
	"BucketAlreadyOwnedByYou":     true,
	"PreconditionFailed":          true,
	"ConditionalRequestConflict":  true,
	"InvalidVolume.ZoneMismatch":  false,
	"OperationAborted":            true,
	"DependencyViolation":         true,
	"InvalidGroup.InUse":          true,
	"InvalidAttachment.NotFound":  false,
}

// Kind returns the draas sentinel that err belongs to, or nil.
func Kind(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		code := api.ErrorCode()
		switch {
		case throttleCodes[code]:
			return draas.ErrThrottled
		case strings.HasSuffix(code, ".NotFound") || strings.HasPrefix(code, "NoSuch") ||
			code == "NotFound" || code == "ResourceNotFoundException":
			return draas.ErrNotFound
		case conflictCodes[code]:
			return draas.ErrConflict
		case code == "ValidationException" || code == "InvalidChangeBatch" || code == "InvalidInput" ||
			strings.HasPrefix(code, "InvalidParameter") || code == "MissingParameter" || code == "UnknownParameter" ||
			strings.HasSuffix(code, ".Malformed") || code == "InvalidArgument":
			return draas.ErrInvalid
		case code == "InternalError" || code == "InternalFailure" || code == "InternalServerException" ||
			code == "ServiceUnavailable" || code == "Unavailable" || code == "RequestTimeout":
			return draas.ErrTransient
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch sc := re.HTTPStatusCode(); {
		case sc == 404:
			return draas.ErrNotFound
		case sc == 429:
			return draas.ErrThrottled
		case sc >= 500:
			return draas.ErrTransient
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return draas.ErrTransient
	}
	return nil
}

// Wrap returns err as a *draas.OpError for op on resource, with Kind set
// from the SDK error's code and HTTP status. It returns nil for nil.
func Wrap(op, resource string, err error) error {
	if err == nil {
		return nil
	}
	return &draas.OpError{Op: op, Resource: resource, Kind: Kind(err), Err: err}
}
