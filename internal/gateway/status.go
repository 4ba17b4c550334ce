package gateway

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/prometheus/client_golang/prometheus"
)

// sanction is what the block and throttle lists hold against a subject (Unix ns; zero:
// nothing).
type sanction struct {
	blockUntil    int64
	throttleUntil int64
	blockReason   string
}

func (s sanction) blocked(now time.Time) bool   { return s.blockUntil > now.UnixNano() }
func (s sanction) throttled(now time.Time) bool { return s.throttleUntil > now.UnixNano() }

func statusOf(st abuse.Status) sanction {
	var s sanction
	if st.Blocked {
		s.blockUntil, s.blockReason = st.Block.Until.UnixNano(), st.Block.Reason
	}
	if st.Throttled {
		s.throttleUntil = st.Throttle.Until.UnixNano()
	}
	return s
}

// maxStatusEntries bounds a statusCache; when full it starts over (a flood of new keys costs
// look-ups, never memory).
const maxStatusEntries = 1 << 16

// statusCache remembers for statusTTL what the shared lists said about a key (an address's
// prefix or a client id), so a request usually pays a map look-up instead of a round trip to
// the shared backend. Looking up a key allocates nothing. Safe for concurrent use; the zero
// value is not usable (newStatusCache).
type statusCache[K comparable] struct {
	mu sync.Mutex
	m  map[K]cachedStatus
}

type cachedStatus struct {
	sanction
	checked int64 // Unix ns
}

func newStatusCache[K comparable]() *statusCache[K] {
	return &statusCache[K]{m: make(map[K]cachedStatus)}
}

// get returns the remembered status of k, if it was checked within statusTTL of now.
func (c *statusCache[K]) get(k K, now time.Time) (sanction, bool) {
	n := now.UnixNano()
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok || n < e.checked || n-e.checked >= int64(statusTTL) {
		return sanction{}, false
	}
	return e.sanction, true
}

// put remembers s for k as of now.
func (c *statusCache[K]) put(k K, s sanction, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= maxStatusEntries {
		clear(c.m)
	}
	c.m[k] = cachedStatus{sanction: s, checked: now.UnixNano()}
}

// sanction records a sanction this gateway just imposed, so it holds here at once.
func (c *statusCache[K]) sanction(k K, v abuse.Verdict, now time.Time) {
	if v.Until.IsZero() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[k]
	switch v.Action {
	case abuse.ActionBlock:
		e.blockUntil, e.blockReason = max(e.blockUntil, v.Until.UnixNano()), v.Rule
	case abuse.ActionThrottle:
		e.throttleUntil = max(e.throttleUntil, v.Until.UnixNano())
	default:
		return
	}
	if len(c.m) >= maxStatusEntries {
		clear(c.m)
	}
	e.checked = now.UnixNano()
	c.m[k] = e
}

// Audit bounds: an event per kind and key at most once per auditEvery, and at most
// auditRate events per second in all; the rest are counted in
// portcullis_gateway_audit_suppressed_total. A flood of 429s is one audit row per client and
// minute, not one per request.
const (
	auditEvery     = time.Minute
	auditRate      = 100
	maxAuditKeys   = 1 << 16
	auditRateBurst = 200
)

// auditGate decides which of many alike events reach the audit trail.
type auditGate struct {
	mu         sync.Mutex
	next       map[string]int64 // key → Unix ns before which it is not audited again
	budget     *rate.Limiter
	suppressed prometheus.Counter
}

func newAuditGate(suppressed prometheus.Counter) *auditGate {
	return &auditGate{next: map[string]int64{}, budget: rate.NewLimiter(auditRate, auditRateBurst), suppressed: suppressed}
}

// allow reports whether the event keyed key is audited now.
func (a *auditGate) allow(key string, now time.Time) bool {
	n := now.UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	if until, ok := a.next[key]; ok && n < until {
		a.suppressed.Inc()
		return false
	}
	if !a.budget.AllowN(now, 1) {
		a.suppressed.Inc()
		return false
	}
	if len(a.next) >= maxAuditKeys {
		for k, until := range a.next {
			if until <= n {
				delete(a.next, k)
			}
		}
		if len(a.next) >= maxAuditKeys {
			clear(a.next)
		}
	}
	a.next[key] = n + int64(auditEvery)
	return true
}
