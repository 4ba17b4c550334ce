package tokencheck

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/events"
)

// CacheConfig bounds the introspection cache. Zero fields get the defaults of
// config.GatewayIntrospection.
type CacheConfig struct {
	// Size is the most entries kept (default 100000).
	Size int
	// MaxTTL caps a positive entry while the revocation feed is live (default 5m).
	MaxTTL time.Duration
	// RevocationBound caps a positive entry while the feed is not live, and whenever there is
	// no feed (default 5s): a revoked token works at most this long.
	RevocationBound time.Duration
	// NegativeTTL is how long "inactive" is remembered (default 2s).
	NegativeTTL time.Duration
}

func (c *CacheConfig) defaults() {
	if c.Size <= 0 {
		c.Size = 100000
	}
	if c.MaxTTL <= 0 {
		c.MaxTTL = 5 * time.Minute
	}
	if c.RevocationBound <= 0 {
		c.RevocationBound = 5 * time.Second
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = 2 * time.Second
	}
	if c.MaxTTL < c.RevocationBound {
		c.MaxTTL = c.RevocationBound
	}
}

const (
	cacheShards = 64
	// evictScan bounds the work of one insertion into a full shard.
	evictScan = 16
	// flightTimeout bounds one shared introspection call, whoever waits for it.
	flightTimeout = 10 * time.Second
)

type tokenKey = [32]byte

// cache holds introspection decisions by token hash. It is sharded (64 maps, each under its
// own lock) and bounded; a full shard drops expired entries it meets and then an arbitrary
// one, which bounds memory without LRU bookkeeping. Concurrent misses for one token share
// one call (a flight). A revocation evicts the token's entry and unregisters its flight in
// progress: later callers start a new one, and the old flight's result is not stored. A
// flight stores its result only while it is still registered, so a revocation affects only
// lookups of the token it names: revoking other tokens (any client may revoke its own, as
// often as it likes) never keeps an answer out of the cache.
type cache struct {
	cfg    CacheConfig
	shards [cacheShards]cacheShard
	bus    events.Bus // may be nil: never live
	now    func() time.Time
	m      *Metrics
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[tokenKey]cacheEntry
	flights map[tokenKey]*flight
	max     int
}

type cacheEntry struct {
	p        Principal // zero when negative
	negative bool
	inserted int64 // unix ns
	expires  int64 // unix ns: token exp (positive) or inserted + NegativeTTL
}

// flight is one introspection call shared by every concurrent miss of one token.
type flight struct {
	done chan struct{}
	p    Principal
	ok   bool // the token is active
	err  error
}

func newCache(cfg CacheConfig, bus events.Bus, now func() time.Time, m *Metrics) *cache {
	cfg.defaults()
	c := &cache{cfg: cfg, bus: bus, now: now, m: m}
	per := max(cfg.Size/cacheShards, 1)
	for i := range c.shards {
		c.shards[i] = cacheShard{entries: map[tokenKey]cacheEntry{}, flights: map[tokenKey]*flight{}, max: per}
	}
	return c
}

// hashToken returns the SHA-256 of token without allocating for tokens of usual size.
func hashToken(token string) tokenKey {
	var buf [256]byte
	if len(token) <= len(buf) {
		b := append(buf[:0], token...)
		return sha256.Sum256(b)
	}
	return sha256.Sum256([]byte(token))
}

func (c *cache) shard(k *tokenKey) *cacheShard { return &c.shards[k[0]%cacheShards] }

// live reports whether revocations reach this process now.
func (c *cache) live() bool { return c.bus != nil && c.bus.Live() }

// valid reports whether e may answer at now.
func (c *cache) valid(e *cacheEntry, now int64, live bool) bool {
	if now >= e.expires {
		return false
	}
	if e.negative {
		return true
	}
	bound := c.cfg.RevocationBound
	if live {
		bound = c.cfg.MaxTTL
	}
	return now < e.inserted+int64(bound)
}

// get returns the principal for token, introspecting through fetch on a miss.
func (c *cache) get(ctx context.Context, token string, fetch func(context.Context, string) (Principal, bool, error)) (Principal, error) {
	k := hashToken(token)
	s := c.shard(&k)
	live := c.live()
	now := c.now().UnixNano()
	s.mu.RLock()
	e, ok := s.entries[k]
	s.mu.RUnlock()
	if ok && c.valid(&e, now, live) {
		if e.negative {
			c.m.cacheNegativeHits.Inc()
			return Principal{}, ErrInvalidToken
		}
		c.m.cacheHits.Inc()
		return e.p, nil
	}
	c.m.cacheMisses.Inc()

	s.mu.Lock()
	f := s.flights[k]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		s.flights[k] = f
		// The flight serves every caller of this token, so it runs on its own context: one
		// caller leaving must not fail the others.
		go c.run(context.Background(), s, k, f, token, fetch)
	}
	s.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		return Principal{}, ctx.Err()
	}
	switch {
	case f.err != nil:
		return Principal{}, f.err
	case !f.ok:
		return Principal{}, ErrInvalidToken
	}
	return f.p, nil
}

// run performs one flight and stores its result unless a revocation of this token or a
// flush happened since the flight began (either unregistered it).
func (c *cache) run(ctx context.Context, s *cacheShard, k tokenKey, f *flight, token string, fetch func(context.Context, string) (Principal, bool, error)) {
	ctx, cancel := context.WithTimeout(ctx, flightTimeout)
	defer cancel()
	f.p, f.ok, f.err = fetch(ctx, token)
	now := c.now().UnixNano()
	s.mu.Lock()
	current := s.flights[k] == f
	if current {
		delete(s.flights, k)
	}
	if f.err == nil && current {
		e := cacheEntry{inserted: now}
		if d := f.p.decided; !d.IsZero() && d.UnixNano() < now {
			e.inserted = d.UnixNano() // an answer from the shared cache is already that old
		}
		if f.ok {
			e.p = f.p
			e.expires = f.p.Claims.Expiry.UnixNano()
		} else {
			e.negative = true
			e.expires = e.inserted + int64(c.cfg.NegativeTTL)
		}
		if e.expires > now {
			s.putLocked(k, e, now)
		}
	}
	s.mu.Unlock()
	close(f.done)
}

func (s *cacheShard) putLocked(k tokenKey, e cacheEntry, now int64) {
	if _, exists := s.entries[k]; !exists && len(s.entries) >= s.max {
		n := 0
		for key, old := range s.entries {
			if now >= old.expires {
				delete(s.entries, key)
			}
			if n++; n >= evictScan {
				break
			}
		}
		if len(s.entries) >= s.max {
			for key := range s.entries {
				delete(s.entries, key)
				break
			}
		}
	}
	s.entries[k] = e
}

// revoke drops what is known about the token with the given hash (events.TokenHash form).
func (c *cache) revoke(hash string) {
	k, ok := decodeHash(hash) // checks the length first: Decode would overrun k on a longer one
	if !ok {
		return // not a hash we could hold
	}
	s := c.shard(&k)
	s.mu.Lock()
	if _, ok := s.entries[k]; ok {
		delete(s.entries, k)
		c.m.evictions.Inc()
	}
	delete(s.flights, k) // callers from now on start a fresh one; its result is not stored
	s.mu.Unlock()
}

// flush drops every entry and stops sharing every flight in progress.
func (c *cache) flush() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n := len(s.entries)
		clear(s.entries)
		clear(s.flights)
		s.mu.Unlock()
		c.m.evictions.Add(float64(n))
	}
}

// len returns the number of entries, expired ones included.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}
