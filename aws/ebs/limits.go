package ebs

import (
	"context"
	"errors"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	"golang.org/x/time/rate"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/internal/awserr"
)

// Limits caps the request rate to the EBS direct APIs. AWS applies quotas
// per snapshot and per account; set these to stay below them. Nil fields do
// not limit.
type Limits struct {
	// PerSnapshot limits this sink's or source's requests per second: make
	// one *rate.Limiter per snapshot.
	PerSnapshot *rate.Limiter
	// Account is shared by every sink and source of the account.
	Account *rate.Limiter
}

func (l Limits) wait(ctx context.Context) error {
	for _, lim := range []*rate.Limiter{l.PerSnapshot, l.Account} {
		if lim != nil {
			if err := lim.Wait(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// AdaptiveLimit is an additive-increase, multiplicative-decrease request
// rate: every throttling answer multiplies the rate by 0.7 (not below Min),
// every success adds a hundredth of Max (not above Max). Unlike the SDK's
// adaptive retry mode, whose rate can fall to one request every two seconds,
// it keeps a floor that still finishes large copies. It sees every attempt
// the SDK makes, retries included, through [WithAdaptiveLimit]. Safe for
// concurrent use; share one per account.
type AdaptiveLimit struct {
	limiter  *rate.Limiter
	min, max float64

	mu        sync.Mutex
	cur       float64
	throttled int64
}

// NewAdaptiveLimit returns a limit that starts at hi requests per second
// and stays between lo and hi.
func NewAdaptiveLimit(lo, hi float64) *AdaptiveLimit {
	if hi <= 0 {
		hi = 1000
	}
	lo = max(1, min(lo, hi))
	return &AdaptiveLimit{limiter: rate.NewLimiter(rate.Limit(hi), int(hi/10)+1), min: lo, max: hi, cur: hi}
}

// Rate returns the current limit in requests per second.
func (a *AdaptiveLimit) Rate() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur
}

// Throttled returns how many attempts AWS throttled so far.
func (a *AdaptiveLimit) Throttled() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.throttled
}

func (a *AdaptiveLimit) observe(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err == nil:
		a.cur = min(a.max, a.cur+a.max/100)
	case errors.Is(awserr.Wrap("", "", err), draas.ErrThrottled):
		a.cur = max(a.min, a.cur*0.7)
		a.throttled++
	default:
		return
	}
	a.limiter.SetLimit(rate.Limit(a.cur))
}

// WithAdaptiveLimit returns a client option that makes every attempt of
// every operation wait for a, and report to it whether it was throttled. It
// wraps the retryer set so far, so apply it after any option that sets one.
// It replaces a limit applied before (such as [NewClient]'s default) instead
// of adding a second one.
func WithAdaptiveLimit(a *AdaptiveLimit) func(*awsebs.Options) {
	return func(o *awsebs.Options) {
		base, ok := o.Retryer.(aws.RetryerV2)
		if ar, limited := o.Retryer.(adaptiveRetryer); limited {
			base = ar.RetryerV2
		}
		if !ok {
			base = awsretry.NewStandard()
		}
		o.Retryer = adaptiveRetryer{RetryerV2: base, a: a}
	}
}

type adaptiveRetryer struct {
	aws.RetryerV2
	a *AdaptiveLimit
}

func (r adaptiveRetryer) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	if err := r.a.limiter.Wait(ctx); err != nil {
		return nil, err
	}
	release, err := r.RetryerV2.GetAttemptToken(ctx)
	if err != nil {
		return nil, err
	}
	return func(err error) error {
		r.a.observe(err)
		return release(err)
	}, nil
}
