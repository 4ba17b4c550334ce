package tokencheck

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/jwtverify"
)

// SharedStore keeps sealed introspection answers that gateway replicas share (Redis in
// production: package tokencheck/rediscache). It stores bytes under token hashes (the
// events.TokenHash form); the Checker seals, opens and verifies them, so a store needs no
// trust: what it returns is checked as if an attacker had written it.
type SharedStore interface {
	// Get returns the value stored under hash, or nil when there is none.
	Get(ctx context.Context, hash string) ([]byte, error)
	// Put stores value under hash for ttl, unless hash was revoked (Revoke) less than its
	// tombstone time ago: an answer fetched before a revocation must not be stored after it.
	Put(ctx context.Context, hash string, value []byte, ttl time.Duration) error
	// Revoke deletes the value under hash and refuses Puts for it during tombstone.
	Revoke(ctx context.Context, hash string, tombstone time.Duration) error
}

const (
	// DefaultSharedTimeout bounds one call to the shared store.
	DefaultSharedTimeout = 100 * time.Millisecond
	// sharedBackoff is how long the shared store is skipped after a failure, so an outage
	// costs each request nothing rather than a timeout.
	sharedBackoff = time.Second
	// revokeQueue bounds the revocations waiting to be applied to the shared store.
	revokeQueue = 4096
	// minSharedTTL: answers that would live less are not worth a round trip.
	minSharedTTL = 50 * time.Millisecond
)

// sharedCache is the second level behind the local cache: on a local miss the answer is
// looked up in the shared store before the issuer is asked, and a fresh answer is stored for
// the other replicas. A value read back is used only if it opens under the presented token,
// carries the issuer's valid signature for this gateway, is bound to this token (an active
// answer's jti is the token's hash, as the issuer mints it), was decided after the last
// Resync, and is younger than the bound the local cache would apply.
type sharedCache struct {
	store   SharedStore
	cfg     CacheConfig
	timeout time.Duration
	in      *introspector
	live    func() bool
	revoked func(token string) bool // revoked here: never read from or written to the store
	m       *Metrics
	log     *slog.Logger
	now     func() time.Time

	// notBefore is the unix second of the last Resync: answers the issuer gave at or before
	// it may predate a revocation this process never heard of.
	notBefore atomic.Int64
	downUntil atomic.Int64 // unix ns: skip the store until then
	down      atomic.Bool  // an outage is being logged

	revokes   chan string
	done      chan struct{}
	closeOnce sync.Once
}

func newSharedCache(store SharedStore, cfg CacheConfig, timeout time.Duration, in *introspector, live func() bool, revoked func(string) bool, m *Metrics, log *slog.Logger, now func() time.Time) *sharedCache {
	cfg.defaults()
	if timeout <= 0 {
		timeout = DefaultSharedTimeout
	}
	s := &sharedCache{
		store: store, cfg: cfg, timeout: timeout, in: in, live: live, revoked: revoked, m: m, log: log, now: now,
		revokes: make(chan string, revokeQueue), done: make(chan struct{}),
	}
	go s.applyRevocations()
	return s
}

// fetch is the local cache's fetch: shared store first, then the issuer.
func (s *sharedCache) fetch(ctx context.Context, token string) (Principal, bool, error) {
	k := hashToken(token)
	hash := base64.RawURLEncoding.EncodeToString(k[:])
	use := !s.revoked(token)
	if use && !s.up() {
		s.m.shared.WithLabelValues("skipped").Inc()
		use = false
	}
	if use {
		if p, active, ok := s.load(ctx, token, hash); ok {
			return p, active, nil
		}
	}
	p, active, answer, claims, err := s.in.introspectAnswer(ctx, token)
	if err != nil {
		return p, active, err
	}
	if use && s.up() && !s.revoked(token) {
		s.save(ctx, token, hash, answer, claims, p, active)
	}
	return p, active, nil
}

// up reports whether the store may be tried now (it is skipped for a moment after a failure).
func (s *sharedCache) up() bool { return s.now().UnixNano() >= s.downUntil.Load() }

func (s *sharedCache) failed(op string, err error) {
	s.downUntil.Store(s.now().Add(sharedBackoff).UnixNano())
	if !s.down.Swap(true) {
		s.log.Warn("shared introspection cache unreachable; asking the issuer directly", "op", op, "err", err)
	}
}

func (s *sharedCache) succeeded() {
	if s.down.Swap(false) {
		s.log.Info("shared introspection cache reachable again")
	}
}

// load returns the shared answer for token, if there is a usable one.
func (s *sharedCache) load(ctx context.Context, token, hash string) (Principal, bool, bool) {
	sctx, cancel := context.WithTimeout(ctx, s.timeout)
	v, err := s.store.Get(sctx, hash)
	cancel()
	if err != nil {
		s.m.shared.WithLabelValues("error").Inc()
		s.failed("get", err)
		return Principal{}, false, false
	}
	s.succeeded()
	if v == nil {
		s.m.shared.WithLabelValues("miss").Inc()
		return Principal{}, false, false
	}
	answer, ok := unseal(token, hash, v)
	if !ok {
		s.reject("the value does not open under this token")
		return Principal{}, false, false
	}
	claims, err := s.in.verifier.Verify(ctx, string(answer))
	switch {
	case errors.Is(err, jwtverify.ErrExpired):
		s.m.shared.WithLabelValues("stale").Inc()
		return Principal{}, false, false
	case errors.Is(err, jwtverify.ErrKeysUnavailable):
		// Not the entry's fault: the issuer's keys cannot be fetched (the issuer will most
		// likely not answer an introspection either).
		s.m.shared.WithLabelValues("unverifiable").Inc()
		return Principal{}, false, false
	case err != nil:
		s.reject("the answer does not verify: " + err.Error())
		return Principal{}, false, false
	}
	p, active, err := s.in.fromClaims(claims)
	if err != nil {
		s.reject(err.Error())
		return Principal{}, false, false
	}
	if active && subtle.ConstantTimeCompare([]byte(p.Claims.ID), []byte(hash)) != 1 {
		s.reject("the answer is about another token")
		return Principal{}, false, false
	}
	decided := claims.IssuedAt
	now := s.now()
	if decided.After(now) {
		decided = now
	}
	bound := s.cfg.NegativeTTL
	if active {
		bound = s.cfg.RevocationBound
		if s.live() {
			bound = s.cfg.MaxTTL
		}
	}
	if decided.Unix() <= s.notBefore.Load() || !now.Before(decided.Add(bound)) {
		s.m.shared.WithLabelValues("stale").Inc()
		return Principal{}, false, false
	}
	p.decided = decided
	if active {
		s.m.shared.WithLabelValues("hit").Inc()
	} else {
		s.m.shared.WithLabelValues("negative_hit").Inc()
	}
	return p, active, true
}

// reject counts a shared value that was not used because it failed a check. Such a value
// was written by something other than a gateway of this deployment, or is corrupt.
func (s *sharedCache) reject(why string) {
	s.m.shared.WithLabelValues("rejected").Inc()
	s.log.Warn("ignored a shared introspection cache entry that failed its checks", "reason", why)
}

// save stores a fresh answer for the other replicas, for as long as the local cache would
// keep it: a positive answer until the token's exp and at most MaxTTL while the event bus is
// live (RevocationBound while it is not); a negative one for NegativeTTL. Never beyond the
// signed answer's own exp, after which no replica could verify it.
func (s *sharedCache) save(ctx context.Context, token, hash, answer string, claims *jwtverify.Claims, p Principal, active bool) {
	now := s.now()
	ttl := s.cfg.NegativeTTL
	if active {
		if subtle.ConstantTimeCompare([]byte(p.Claims.ID), []byte(hash)) != 1 {
			return // not bound to the token: no replica would accept it
		}
		ttl = s.cfg.RevocationBound
		if s.live() {
			ttl = s.cfg.MaxTTL
		}
		ttl = min(ttl, p.Claims.Expiry.Sub(now))
	}
	if !claims.Expiry.IsZero() {
		ttl = min(ttl, claims.Expiry.Sub(now))
	}
	if ttl < minSharedTTL {
		return
	}
	v, err := seal(token, hash, []byte(answer))
	if err != nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, s.timeout)
	err = s.store.Put(sctx, hash, v, ttl)
	cancel()
	if err != nil {
		s.m.sharedWrites.WithLabelValues("put", "error").Inc()
		s.failed("put", err)
		return
	}
	s.succeeded()
	s.m.sharedWrites.WithLabelValues("put", "ok").Inc()
}

// revoke queues the removal of hash from the shared store. It never blocks: events arrive
// on the revoking request's goroutine. A full queue drops the removal (counted); this
// process still refuses the token (its own list of revoked hashes), and every other replica
// that hears the event removes it too.
func (s *sharedCache) revoke(hash string) {
	select {
	case s.revokes <- hash:
	default:
		s.m.sharedWrites.WithLabelValues("revoke", "dropped").Inc()
	}
}

// tombstone is how long a revoked hash refuses Puts: longer than any introspection in
// flight when the revocation happened.
func (s *sharedCache) tombstone() time.Duration { return max(s.cfg.MaxTTL, 2*flightTimeout) }

func (s *sharedCache) applyRevocations() {
	for {
		select {
		case <-s.done:
			return
		case hash := <-s.revokes:
			ctx, cancel := context.WithTimeout(context.Background(), 2*s.timeout)
			err := s.store.Revoke(ctx, hash, s.tombstone())
			cancel()
			if err != nil {
				s.m.sharedWrites.WithLabelValues("revoke", "error").Inc()
				s.failed("revoke", err)
				continue
			}
			s.m.sharedWrites.WithLabelValues("revoke", "ok").Inc()
		}
	}
}

// resync stops trusting every answer given until now.
func (s *sharedCache) resync() { s.notBefore.Store(s.now().Unix()) }

func (s *sharedCache) close() { s.closeOnce.Do(func() { close(s.done) }) }
