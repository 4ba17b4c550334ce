// Package ratelimit decides whether a request may pass the limits of its route: GCRA rate
// limits with a burst, and calendar quotas (per UTC day or month).
//
// The flow of one request:
//
//	checks := []Check{{Limit: perClient, Key: clientID}, {Limit: perIP, Key: IPKey(ip)}}
//	res, err := limiter.Allow(ctx, checks, now)   // all or nothing, atomically
//	res.SetHeaders(w.Header())                     // RateLimit-Policy, RateLimit, Retry-After
//	if err != nil → 503 (backend unavailable, fail closed); if !res.Allowed → 429
//
// A request is admitted only when every check allows it, and only then does it consume from
// every check: a refused request costs nothing. So a client over its daily quota does not
// burn its burst, a request refused by the per-client limit does not count against the
// per-IP limit of everybody behind the same NAT, and 429s never eat into a paid quota.
//
// Backends: [Memory] (one process, a bounded sharded map) and the redis sub-package (many
// replicas share exact counters through one Lua script). Both compute with the same integer
// microsecond arithmetic (decide.go), so they agree to the microsecond. [Failover] wraps a
// shared backend and either fails closed or falls back to a local limiter while the shared
// one is unreachable, probing it for recovery.
//
// Time is a parameter: callers pass now, tests pass a fake clock.
package ratelimit
