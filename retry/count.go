package retry

import (
	"context"
	"sync/atomic"
)

// Counter counts retries made under a context: [WithCounter] attaches it,
// and the clients' retryers (aws/account's, for every AWS request) call
// [Count] for each retry they make. Workflows give each VM's run a Counter
// and report what it counted. The zero value is ready to use; a Counter is
// safe for concurrent use.
type Counter struct{ n atomic.Int64 }

// Add adds n to the count.
func (c *Counter) Add(n int64) { c.n.Add(n) }

// Load returns the count.
func (c *Counter) Load() int64 { return c.n.Load() }

// counters is the chain of the Counters a context carries, innermost first.
type counters struct {
	c      *Counter
	parent *counters
}

type counterKey struct{}

// WithCounter returns a copy of ctx whose retries count in c, as well as in
// the Counters ctx already carries (a run's and a VM's, say). A nil c
// returns ctx.
func WithCounter(ctx context.Context, c *Counter) context.Context {
	if c == nil {
		return ctx
	}
	parent, _ := ctx.Value(counterKey{}).(*counters)
	return context.WithValue(ctx, counterKey{}, &counters{c: c, parent: parent})
}

// Count adds n retries to every Counter ctx carries; without one it does
// nothing. A retryer calls it once for each retry it is about to make.
func Count(ctx context.Context, n int64) {
	for cs, _ := ctx.Value(counterKey{}).(*counters); cs != nil; cs = cs.parent {
		if cs.c == nil {
			continue
		}
		cs.c.Add(n)
	}
}
