package awserr

import (
	"context"
	"errors"
	"net/http"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/opendraas/draas"
)

func TestKind(t *testing.T) {
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }
	status := func(code int) error {
		return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: errors.New("x")}}
	}
	for _, c := range []struct {
		err  error
		want error
	}{
		{api("RequestLimitExceeded"), draas.ErrThrottled},
		{api("ThrottlingException"), draas.ErrThrottled},
		{api("SlowDown"), draas.ErrThrottled},
		{api("InvalidSnapshot.NotFound"), draas.ErrNotFound},
		{api("NoSuchKey"), draas.ErrNotFound},
		{api("ResourceNotFoundException"), draas.ErrNotFound},
		{api("VolumeInUse"), draas.ErrConflict},
		{api("IdempotentParameterMismatch"), draas.ErrConflict},
		{api("ValidationException"), draas.ErrInvalid},
		{api("InvalidParameterValue"), draas.ErrInvalid},
		{api("InternalError"), draas.ErrTransient},
		{status(503), draas.ErrTransient},
		{status(429), draas.ErrThrottled},
		{status(404), draas.ErrNotFound},
		{context.Canceled, nil},
		{errors.New("something else"), nil},
	} {
		if got := Kind(c.err); got != c.want {
			t.Errorf("Kind(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestWrapKeepsBoth(t *testing.T) {
	cause := &smithy.GenericAPIError{Code: "RequestLimitExceeded", Message: "slow down"}
	err := Wrap("RunInstances", "db", cause)
	if !errors.Is(err, draas.ErrThrottled) || !draas.IsRetryable(err) {
		t.Errorf("%v: want ErrThrottled and retryable", err)
	}
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "RequestLimitExceeded" {
		t.Errorf("%v: the SDK error is lost", err)
	}
	if Wrap("x", "y", nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
}
