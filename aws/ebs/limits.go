package ebs

import (
	"context"
	"errors"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
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
// rate per EBS direct API, as AWS sets its quotas per API: PutSnapshotBlock,
// GetSnapshotBlock, the two list operations (ListChangedBlocks and
// ListSnapshotBlocks, whose quota is 50 requests per second per account)
// and the control operations (StartSnapshot, CompleteSnapshot) each have
// their own rate, so that a copy that reads and writes EBS, or a verify pass
// next to a copy, does not run at half rate. Every throttling answer
// multiplies that API's rate by 0.7 (not below its floor), every success
// adds a hundredth of its ceiling. Unlike the SDK's adaptive retry mode,
// whose rate can fall to one request every two seconds, it keeps a floor
// that still finishes large copies. It sees every attempt the SDK makes,
// retries included, through [WithAdaptiveLimit]. Safe for concurrent use;
// share one per account (every copy of the process through one client).
type AdaptiveLimit struct {
	classes [numClasses]*aimd

	mu        sync.Mutex
	throttled int64
}

// API classes of an AdaptiveLimit.
const (
	classPut = iota
	classGet
	classList
	classControl
	numClasses
)

// listQuota is AWS's quota of ListChangedBlocks and ListSnapshotBlocks
// requests per second per account.
const listQuota = 50

func classOf(op string) int {
	switch op {
	case "PutSnapshotBlock":
		return classPut
	case "GetSnapshotBlock":
		return classGet
	case "ListChangedBlocks", "ListSnapshotBlocks":
		return classList
	}
	return classControl
}

// aimd is one API's adaptive rate. Its fields are guarded by the
// AdaptiveLimit's mu.
type aimd struct {
	limiter       *rate.Limiter
	min, max, cur float64
}

func newAIMD(lo, hi float64) *aimd {
	return &aimd{limiter: rate.NewLimiter(rate.Limit(hi), int(hi/10)+1), min: lo, max: hi, cur: hi}
}

// NewAdaptiveLimit returns a limit whose PutSnapshotBlock, GetSnapshotBlock
// and control rates each start at hi requests per second and stay between
// lo and hi; the list operations' rate stays between min(lo, 50) and
// min(hi, 50).
func NewAdaptiveLimit(lo, hi float64) *AdaptiveLimit {
	if hi <= 0 {
		hi = 1000
	}
	lo = max(1, min(lo, hi))
	a := &AdaptiveLimit{}
	for c := range a.classes {
		if c == classList {
			a.classes[c] = newAIMD(min(lo, listQuota), min(hi, listQuota))
		} else {
			a.classes[c] = newAIMD(lo, hi)
		}
	}
	return a
}

// Rate returns the lowest current limit, in requests per second, of
// PutSnapshotBlock, GetSnapshotBlock and the control operations (the list
// operations, capped lower, are left out).
func (a *AdaptiveLimit) Rate() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return min(a.classes[classPut].cur, a.classes[classGet].cur, a.classes[classControl].cur)
}

// RateOf returns the current limit of the operation op ("PutSnapshotBlock",
// "GetSnapshotBlock", "ListChangedBlocks", ...), in requests per second.
func (a *AdaptiveLimit) RateOf(op string) float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.classes[classOf(op)].cur
}

// Throttled returns how many attempts AWS throttled so far.
func (a *AdaptiveLimit) Throttled() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.throttled
}

func (a *AdaptiveLimit) observe(class int, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.classes[class]
	switch {
	case err == nil:
		c.cur = min(c.max, c.cur+c.max/100)
	case errors.Is(awserr.Wrap("", "", err), draas.ErrThrottled):
		c.cur = max(c.min, c.cur*0.7)
		a.throttled++
	default:
		return
	}
	c.limiter.SetLimit(rate.Limit(c.cur))
}

// WithAdaptiveLimit returns a client option that makes every attempt of
// every operation wait for a's rate of that operation's API, and report to
// it whether it was throttled. It
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
	class := classOf(awsmiddleware.GetOperationName(ctx))
	if err := r.a.classes[class].limiter.Wait(ctx); err != nil {
		return nil, err
	}
	release, err := r.RetryerV2.GetAttemptToken(ctx)
	if err != nil {
		return nil, err
	}
	return func(err error) error {
		r.a.observe(class, err)
		return release(err)
	}, nil
}
