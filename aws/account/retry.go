package account

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go/middleware"

	"github.com/opendraas/draas/retry"
)

// RetryOptions tunes the retryer of an Account's clients ([NewRetryer]).
// The zero value is the one to use against AWS: every request is retried
// for as long as its context allows.
type RetryOptions struct {
	// MaxAttempts bounds the attempts of one request, the first included.
	// 0 means no bound: a throttled or failed request is retried until its
	// context is cancelled or its deadline is nearer than MaxBackoff. Give
	// a run's context a deadline to bound how long it waits for AWS.
	MaxAttempts int
	// MaxBackoff caps the wait between two attempts; 0 means 20s (the
	// SDK's). The waits grow exponentially with full jitter, from up to 1s
	// after a throttling error (50ms after another error) up to MaxBackoff.
	// Tests against a simulator set a few milliseconds.
	MaxBackoff time.Duration
}

// NewRetryer returns the retryer an [Account] gives every client it builds
// (EC2, EBS, Route 53, S3, STS), and diskurl its AWS clients: the SDK's
// standard retryer (its retryable errors, throttling codes, backoff with
// jitter, Retry-After honoured) with these changes:
//
//   - attempts are not bounded (see RetryOptions.MaxAttempts): throttling
//     and transient errors are retried until the request's context is done;
//   - a request whose context's deadline is nearer than MaxBackoff is not
//     retried again: it fails with the last attempt's error (such as
//     RequestLimitExceeded, which draas classifies as draas.ErrThrottled)
//     joined with why it gave up, rather than with a context error that
//     would hide that AWS throttled it (a client built from a configuration
//     that [WithRetries] returned does the same when the deadline comes
//     during the attempt after a retry);
//   - no client-side retry quota: the standard retryer's quota fails
//     requests outright under sustained throttling, which is when patience
//     is needed most;
//   - each retry counts in the [retry.Counter]s of the request's context
//     (see retry.WithCounter), so that workflows report them.
func NewRetryer(o RetryOptions) aws.RetryerV2 {
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = awsretry.DefaultMaxBackoff
	}
	std := awsretry.NewStandard(func(so *awsretry.StandardOptions) {
		so.MaxBackoff = o.MaxBackoff
		so.RateLimiter = ratelimit.None
	})
	return &patientRetryer{RetryerV2: std, opts: o}
}

// WithRetries returns cfg with the retryer its clients are built with:
// cfg's own when it has one (a program or the SDK's configuration set it
// deliberately, e.g. with AWS_MAX_ATTEMPTS), made to count retries like
// NewRetryer's; else a [NewRetryer] with o for each client. Its clients
// also report a request that was being retried when its context's deadline
// came with the error that made it retry (draas.ErrThrottled for
// throttling), not only as a context error. Applying it twice is the same
// as once.
func WithRetries(cfg aws.Config, o RetryOptions) aws.Config {
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), addRetriedError)
	if own := cfg.Retryer; own != nil {
		cfg.Retryer = func() aws.Retryer {
			switch r := own().(type) {
			case *patientRetryer, countingRetryer: // counts already
				return r
			default:
				return countingRetryer{v2(r)}
			}
		}
		return cfg
	}
	cfg.Retryer = func() aws.Retryer { return NewRetryer(o) }
	return cfg
}

// patientRetryer is NewRetryer's: the standard retryer without a bound on
// attempts, up to the context's deadline, counting.
type patientRetryer struct {
	aws.RetryerV2
	opts RetryOptions
}

// MaxAttempts returns RetryOptions.MaxAttempts: 0, no bound, by default.
func (r *patientRetryer) MaxAttempts() int { return r.opts.MaxAttempts }

// GetRetryToken is called once before each retry, with the failed
// attempt's context and error: it refuses a retry that the context's
// deadline would cut short, and counts the others.
func (r *patientRetryer) GetRetryToken(ctx context.Context, opErr error) (func(error) error, error) {
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < r.opts.MaxBackoff {
			return nil, &deadlineError{left: left, backoff: r.opts.MaxBackoff}
		}
	}
	release, err := r.RetryerV2.GetRetryToken(ctx, opErr)
	if err == nil {
		retry.Count(ctx, 1)
		retried(ctx, opErr)
	}
	return release, err
}

// deadlineError is why a patient retryer gave up. The SDK joins it to the
// last attempt's error, which is what the caller classifies: it wraps no
// context error, so that a throttled request reads as throttled.
type deadlineError struct {
	left, backoff time.Duration
}

func (e *deadlineError) Error() string {
	if e.left < 0 {
		return "retried until the context's deadline, which came before another attempt completed"
	}
	return fmt.Sprintf("not retried again: the context's deadline is %s away, less than a backoff may take (up to %s)",
		e.left.Round(time.Millisecond), e.backoff)
}

// retriedErrorID names the middleware of addRetriedError.
const retriedErrorID = "draas.RetriedError"

// lastRetried holds the error of a request's last retried attempt.
type lastRetried struct {
	mu  sync.Mutex
	err error
}

type lastRetriedKey struct{}

// retried records err, the error of an attempt about to be retried, for
// the request of ctx.
func retried(ctx context.Context, err error) {
	if h, ok := ctx.Value(lastRetriedKey{}).(*lastRetried); ok {
		h.mu.Lock()
		h.err = err
		h.mu.Unlock()
	}
}

// addRetriedError adds to a client's stack a middleware that, when a
// request fails because its context's deadline came while it was being
// retried (in a backoff or in the next attempt), joins the error that made
// it retry to the context error: a request AWS throttled until the
// deadline reads as throttled.
func addRetriedError(stack *middleware.Stack) error {
	if _, ok := stack.Initialize.Get(retriedErrorID); ok {
		return nil
	}
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc(retriedErrorID,
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			h := &lastRetried{}
			out, md, err := next.HandleInitialize(context.WithValue(ctx, lastRetriedKey{}, h), in)
			if err != nil && errors.Is(err, context.DeadlineExceeded) {
				h.mu.Lock()
				last := h.err
				h.mu.Unlock()
				if last != nil {
					err = errors.Join(last, &deadlineError{left: -1})
				}
			}
			return out, md, err
		}), middleware.Before)
}

// countingRetryer counts the retries of a retryer a program chose.
type countingRetryer struct{ aws.RetryerV2 }

func (r countingRetryer) GetRetryToken(ctx context.Context, opErr error) (func(error) error, error) {
	release, err := r.RetryerV2.GetRetryToken(ctx, opErr)
	if err == nil {
		retry.Count(ctx, 1)
		retried(ctx, opErr)
	}
	return release, err
}

// v2 returns r as an aws.RetryerV2, adapting a retryer that only has
// GetInitialToken.
func v2(r aws.Retryer) aws.RetryerV2 {
	if r2, ok := r.(aws.RetryerV2); ok {
		return r2
	}
	return retryerV1{r}
}

type retryerV1 struct{ aws.Retryer }

func (r retryerV1) GetAttemptToken(context.Context) (func(error) error, error) {
	return r.GetInitialToken(), nil
}
