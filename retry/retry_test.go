package retry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/retry"
)

// noSleep records the backoffs instead of waiting.
func noSleep(waits *[]time.Duration) func(context.Context, time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		return ctx.Err()
	}
}

func TestRetriesRetryableUntilSuccess(t *testing.T) {
	var waits []time.Duration
	p := retry.Policy{Jitter: -1, Sleep: noSleep(&waits)}
	calls := 0
	retries, err := p.Do(context.Background(), func(context.Context) error {
		calls++
		if calls < 4 {
			return fmt.Errorf("put block: %w", draas.ErrThrottled)
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 3, retries)
	assert.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}, waits)
}

func TestNeverRetriesPermanentErrors(t *testing.T) {
	for _, perm := range []error{draas.ErrChecksumMismatch, draas.ErrInvalid, draas.ErrNotFound, draas.ErrConflict, context.Canceled} {
		var waits []time.Duration
		calls := 0
		// Even wrapped together with a retryable error, a permanent one wins.
		err := errors.Join(draas.ErrTransient, perm)
		retries, got := retry.Policy{Sleep: noSleep(&waits)}.Do(context.Background(), func(context.Context) error {
			calls++
			return err
		})
		assert.ErrorIs(t, got, perm)
		assert.Equal(t, 1, calls, "%v is not retried", perm)
		assert.Zero(t, retries)
		assert.Empty(t, waits)
	}
	// An error nobody classified is not retried either.
	calls := 0
	_, err := retry.Policy{}.Do(context.Background(), func(context.Context) error { calls++; return errors.New("disk on fire") })
	require.Error(t, err)
	assert.Equal(t, 1, calls)
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	var waits []time.Duration
	calls := 0
	retries, err := retry.Policy{MaxAttempts: 3, Max: 150 * time.Millisecond, Jitter: -1, Sleep: noSleep(&waits)}.Do(context.Background(), func(context.Context) error {
		calls++
		return draas.ErrTransient
	})
	require.ErrorIs(t, err, draas.ErrTransient)
	assert.Equal(t, 3, calls)
	assert.Equal(t, 2, retries)
	assert.Equal(t, []time.Duration{100 * time.Millisecond, 150 * time.Millisecond}, waits, "backoff is capped at Max")
}

func TestStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := retry.Policy{Initial: time.Hour}.Do(ctx, func(context.Context) error {
		calls++
		cancel()
		return draas.ErrThrottled
	})
	require.ErrorIs(t, err, draas.ErrThrottled)
	assert.Equal(t, 1, calls)
}

func TestJitterStaysInBounds(t *testing.T) {
	var waits []time.Duration
	p := retry.Policy{MaxAttempts: 50, Initial: time.Second, Max: time.Second, Jitter: 0.5, Sleep: noSleep(&waits)}
	_, _ = p.Do(context.Background(), func(context.Context) error { return draas.ErrTransient })
	require.Len(t, waits, 49)
	distinct := map[time.Duration]bool{}
	for _, w := range waits {
		assert.GreaterOrEqual(t, w, 500*time.Millisecond)
		assert.LessOrEqual(t, w, 1500*time.Millisecond)
		distinct[w] = true
	}
	assert.Greater(t, len(distinct), 10, "jitter spreads retries")
}
