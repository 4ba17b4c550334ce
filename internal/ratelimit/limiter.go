package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Limiter decides requests against limits. Implementations are safe for concurrent use.
type Limiter interface {
	// Allow decides one request against every check together, atomically: the request is
	// admitted only when every check allows it, and only then is one request counted against
	// each. Result.Decisions has one entry per check, in order. An error means the decision
	// could not be made (a shared backend is unreachable): the caller refuses the request
	// (503), or wraps the limiter in a Failover.
	Allow(ctx context.Context, checks []Check, now time.Time) (Result, error)
}

// Pinger is a shared backend that can report whether it is reachable.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Check is one limit applied to one partition of traffic: Key is the client id, token
// subject, client IP (see IPKey) or header value the limit counts by.
type Check struct {
	Limit Limit
	Key   string
}

// Decision is the outcome of one check.
type Decision struct {
	Limit Limit
	// Allowed reports whether this check alone would admit the request. The request passes
	// only when every check allows it.
	Allowed bool
	// Remaining is how many more requests would pass right now: the rest of the burst for a
	// rate limit, the rest of the period for a quota.
	Remaining int
	// RetryAfter is how long until this check admits a request again (zero when Allowed).
	RetryAfter time.Duration
	// ResetAfter is how long until the limit is back to its full burst or the quota rolls
	// over.
	ResetAfter time.Duration
}

// Result is the outcome of one request against all its checks.
type Result struct {
	Allowed   bool
	Decisions []Decision
	// Local reports that a Failover made the decision with its local limiter because the
	// shared backend was unreachable.
	Local bool
	// At is the instant the rate limits were decided at: the caller's now, or the shared
	// backend's clock (ratelimit/redis decides at Redis's).
	At time.Time
}

// RetryAfter is how long the caller should wait: the longest RetryAfter among the checks
// that refused (zero when allowed).
func (r Result) RetryAfter() time.Duration {
	var d time.Duration
	for _, x := range r.Decisions {
		if !x.Allowed {
			d = max(d, x.RetryAfter)
		}
	}
	return d
}

// Denied returns the checks that refused the request (nil when allowed): what the caller
// audits and counts.
func (r Result) Denied() []Decision {
	var out []Decision
	for _, x := range r.Decisions {
		if !x.Allowed {
			out = append(out, x)
		}
	}
	return out
}

// Allow is a convenience for one check.
func Allow(ctx context.Context, lim Limiter, l Limit, key string, now time.Time) (Decision, error) {
	res, err := lim.Allow(ctx, []Check{{Limit: l, Key: key}}, now)
	if err != nil {
		return Decision{}, err
	}
	return res.Decisions[0], nil
}

// ErrUnavailable is returned (wrapped) when a shared backend cannot decide and the limiter
// fails closed: answer 503.
var ErrUnavailable = errors.New("rate limit backend unavailable")

// ErrBusy marks an error of a shared backend that is overloaded locally (no free
// connection within the timeout) rather than unreachable: a Failover applies its fail mode
// to that request without marking the backend down for everyone.
var ErrBusy = errors.New("rate limit backend busy")

// MaxChecks bounds the checks of one request.
const MaxChecks = 16

// ValidateChecks reports a malformed call: no checks, too many, an invalid limit or the
// same limit twice. Backends call it before touching state.
func ValidateChecks(checks []Check) error {
	if len(checks) == 0 || len(checks) > MaxChecks {
		return fmt.Errorf("ratelimit: %d checks: want 1 to %d", len(checks), MaxChecks)
	}
	for i, c := range checks {
		if err := c.Limit.Validate(); err != nil {
			return fmt.Errorf("ratelimit: check %d: %w", i, err)
		}
		for _, o := range checks[:i] {
			if o.Limit.Name == c.Limit.Name {
				return fmt.Errorf("ratelimit: limit %q appears twice in one request", c.Limit.Name)
			}
		}
	}
	return nil
}

// maxKeyLen is the longest key stored as given; longer keys (header values, say) are stored
// as their SHA-256, so an attacker cannot make each entry large.
const maxKeyLen = 64

// StorageKey is the key's form in storage: the key itself when it is short and plain, else
// "~" and its SHA-256 in base64url. The tilde cannot start a stored plain key, so a chosen
// plain key never collides with a hashed one.
func StorageKey(key string) string {
	if len(key) <= maxKeyLen && (key == "" || key[0] != '~') {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "~" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// IPKey is the key of a client address for a per-IP limit: the address itself for IPv4, its
// /64 for IPv6 (one subscriber usually holds a whole /64 and could otherwise rotate through
// 2^64 keys). IPv4-mapped IPv6 addresses count as IPv4. The invalid address maps to "-".
func IPKey(a netip.Addr) string {
	return IPKeyPrefix(a, 64)
}

// IPKeyPrefix is IPKey with a chosen IPv6 prefix length (1-128).
func IPKeyPrefix(a netip.Addr, v6bits int) string {
	if !a.IsValid() {
		return "-"
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(min(max(v6bits, 1), 128))
	if err != nil {
		return "-"
	}
	return p.String()
}
