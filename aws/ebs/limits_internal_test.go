package ebs

import (
	"testing"

	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
)

// A second WithAdaptiveLimit replaces the first (NewClient's default)
// instead of making every request wait on both.
func TestWithAdaptiveLimitReplacesAnEarlierOne(t *testing.T) {
	first, second := NewAdaptiveLimit(50, 1000), NewAdaptiveLimit(10, 100)
	var o awsebs.Options
	WithAdaptiveLimit(first)(&o)
	WithAdaptiveLimit(second)(&o)
	ar, ok := o.Retryer.(adaptiveRetryer)
	if !ok {
		t.Fatalf("retryer is %T, want the adaptive limit's", o.Retryer)
	}
	if ar.a != second {
		t.Error("the retryer waits on the first limit, want the second")
	}
	if _, nested := ar.RetryerV2.(adaptiveRetryer); nested {
		t.Error("the second limit wraps the first: every request would wait on both")
	}
}
