package awssim

import (
	"fmt"
	"maps"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// EBSRateLimits are request-rate quotas of the EBS direct APIs, in requests
// per second, keyed by operation name ("PutSnapshotBlock", ...). A request
// beyond a quota fails as AWS fails it: RequestThrottledException (HTTP
// 400) with Reason RESOURCE_LEVEL_THROTTLE for a per-snapshot quota and
// ACCOUNT_THROTTLED for a per-account one. Each quota is a token bucket
// holding a tenth of a second of requests (at least one), so a client that
// keeps under the rate on average but sends in bursts is throttled too.
// The simulator is one account in one Region.
type EBSRateLimits struct {
	// PerSnapshot limits the requests of an operation to one snapshot (for
	// ListChangedBlocks, the second snapshot).
	PerSnapshot map[string]float64
	// PerAccount limits the requests of an operation to the whole simulator.
	PerAccount map[string]float64
}

// AWSEBSRateLimits returns the default quotas AWS documents for the EBS
// direct APIs ("Quotas for Amazon EBS"): PutSnapshotBlock and
// GetSnapshotBlock 1,000 requests per second per snapshot and 5,000 per
// account; ListChangedBlocks and ListSnapshotBlocks 50 per account;
// StartSnapshot 25 and CompleteSnapshot 10 per account. At 512 KiB a block,
// 1,000 requests per second is the 500 MiB/s ceiling of one snapshot.
func AWSEBSRateLimits() EBSRateLimits {
	return EBSRateLimits{
		PerSnapshot: map[string]float64{
			"PutSnapshotBlock": 1000,
			"GetSnapshotBlock": 1000,
		},
		PerAccount: map[string]float64{
			"PutSnapshotBlock":   5000,
			"GetSnapshotBlock":   5000,
			"ListChangedBlocks":  50,
			"ListSnapshotBlocks": 50,
			"StartSnapshot":      25,
			"CompleteSnapshot":   10,
		},
	}
}

// ebsRates enforces EBSRateLimits.
type ebsRates struct {
	mu        sync.Mutex
	limits    EBSRateLimits
	buckets   map[string]*rate.Limiter // "op" (account) or "op/snapshot"
	throttled map[string]int
}

// LimitEBSRates makes the server enforce l from now on, replacing any
// earlier limits (and their counts); the zero EBSRateLimits enforces none.
// Options.EBSRateLimits sets the limits at the start.
func (s *Server) LimitEBSRates(l EBSRateLimits) {
	r := &s.faults.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limits = EBSRateLimits{PerSnapshot: maps.Clone(l.PerSnapshot), PerAccount: maps.Clone(l.PerAccount)}
	r.buckets = map[string]*rate.Limiter{}
}

// EBSThrottled returns how many requests of op the EBS rate limits refused.
// Requests failed by Server.Throttle are not counted (see Server.Calls).
func (s *Server) EBSThrottled(op string) int {
	r := &s.faults.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.throttled[op]
}

// allow takes a token from the buckets of op (on snapshot, if not empty)
// and says which quota refused it, if any.
func (r *ebsRates) allow(op, snapshot string) *ebsError {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.limits.PerSnapshot) == 0 && len(r.limits.PerAccount) == 0 {
		return nil
	}
	bucket := func(key string, limit float64) *rate.Limiter {
		b := r.buckets[key]
		if b == nil {
			b = rate.NewLimiter(rate.Limit(limit), max(1, int(limit/10)))
			r.buckets[key] = b
		}
		return b
	}
	var snapB, acctB *rate.Limiter
	if l, ok := r.limits.PerSnapshot[op]; ok && snapshot != "" {
		snapB = bucket(op+"/"+snapshot, l)
	}
	if l, ok := r.limits.PerAccount[op]; ok {
		acctB = bucket(op, l)
	}
	// Take from both or neither, so that a refused request does not use up
	// the other quota.
	now := time.Now()
	if snapB != nil && snapB.TokensAt(now) < 1 {
		return r.refuse(op, "RESOURCE_LEVEL_THROTTLE", "for the snapshot")
	}
	if acctB != nil && !acctB.AllowN(now, 1) {
		return r.refuse(op, reasonAccountThrottled, "for the account")
	}
	if snapB != nil {
		snapB.AllowN(now, 1)
	}
	return nil
}

func (r *ebsRates) refuse(op, reason, scope string) *ebsError {
	if r.throttled == nil {
		r.throttled = map[string]int{}
	}
	r.throttled[op]++
	return &ebsError{http.StatusBadRequest, ebsThrottled, reason,
		fmt.Sprintf("The number of API requests has exceeded the maximum allowed API request throttling limit %s.", scope)}
}

// ebsRateSnapshot returns the snapshot a routed EBS request's quotas count
// against: its first path label, except for StartSnapshot (none).
func ebsRateSnapshot(op string, args []string) string {
	if op == "StartSnapshot" || len(args) == 0 {
		return ""
	}
	return args[0]
}
