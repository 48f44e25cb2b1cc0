// Package retry is draas's one retry mechanism: exponential backoff with
// jitter for errors that [draas.IsRetryable] (or a caller's classifier)
// accepts, and never for checksum, validation or not-found errors.
package retry

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/opendraas/draas"
)

// Policy says how often and how patiently to retry. The zero value is
// useful: 8 attempts, backoff from 100ms doubling up to 10s, ±50 % jitter,
// retrying what draas.IsRetryable accepts.
type Policy struct {
	// MaxAttempts is the total number of attempts, the first included;
	// 0 means 8, 1 means no retry.
	MaxAttempts int
	// Initial is the first backoff; 0 means 100ms.
	Initial time.Duration
	// Max caps a backoff; 0 means 10s.
	Max time.Duration
	// Multiplier grows the backoff after each attempt; 0 means 2.
	Multiplier float64
	// Jitter is the random fraction of each backoff (0..1) added or taken
	// away, so that parallel workers do not retry in lockstep; 0 means 0.5,
	// negative means none.
	Jitter float64
	// Retryable classifies errors; nil means draas.IsRetryable.
	Retryable func(error) bool
	// Sleep waits for d or until ctx is done; nil means a real timer. Tests
	// inject a fake to run without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnRetry, when set, is called before each retry with the attempt that
	// failed (1-based), its error and the backoff about to be waited.
	OnRetry func(attempt int, err error, backoff time.Duration)
}

func (p Policy) withDefaults() Policy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 8
	}
	if p.Initial <= 0 {
		p.Initial = 100 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 10 * time.Second
	}
	if p.Multiplier <= 0 {
		p.Multiplier = 2
	}
	if p.Jitter == 0 {
		p.Jitter = 0.5
	}
	if p.Jitter < 0 {
		p.Jitter = 0
	}
	if p.Retryable == nil {
		p.Retryable = draas.IsRetryable
	}
	if p.Sleep == nil {
		p.Sleep = sleep
	}
	return p
}

// Backoff returns the wait before retry number n (1-based) without jitter.
func (p Policy) Backoff(n int) time.Duration {
	p = p.withDefaults()
	d := float64(p.Initial)
	for i := 1; i < n; i++ {
		d *= p.Multiplier
		if d >= float64(p.Max) {
			return p.Max
		}
	}
	return time.Duration(d)
}

// Do calls fn until it succeeds, returns an error the policy does not retry,
// the attempts run out, or ctx is done. It returns the number of retries made
// (attempts after the first) and fn's last error. fn MUST be idempotent.
func (p Policy) Do(ctx context.Context, fn func(ctx context.Context) error) (retries int, err error) {
	p = p.withDefaults()
	for attempt := 1; ; attempt++ {
		err = fn(ctx)
		if err == nil || attempt >= p.MaxAttempts || !p.Retryable(err) || ctx.Err() != nil {
			return attempt - 1, err
		}
		d := p.Backoff(attempt)
		if p.Jitter > 0 {
			d = time.Duration(float64(d) * (1 + p.Jitter*(2*rand.Float64()-1)))
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, err, d)
		}
		if serr := p.Sleep(ctx, d); serr != nil {
			return attempt - 1, err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
