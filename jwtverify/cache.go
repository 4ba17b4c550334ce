package jwtverify

import (
	"crypto"
	"sync"
	"time"
)

// tokenCache maps the SHA-256 of a verified token to its claims. It is sharded by the first byte
// of the hash (uniform, and not chosen by the token's sender in any useful way), each shard a
// map under its own RWMutex, so concurrent hits on different tokens rarely touch the same lock.
// Each shard holds at most perShard entries; inserting into a full shard first drops expired
// entries it meets, then an arbitrary one (Go's map iteration order), which bounds memory without
// the bookkeeping of an LRU. An entry lives until min(insertion + ttl, exp).
type tokenCache struct {
	shards   []cacheShard
	mask     byte
	perShard int
	ttl      time.Duration
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[[32]byte]cacheEntry
	_       [40]byte // keep shards on separate cache lines
}

type cacheEntry struct {
	claims  *Claims
	signer  crypto.PublicKey // the key the token verified with
	expires int64            // unix nanoseconds
}

// evictScan bounds the work of one insertion into a full shard.
const evictScan = 8

func newTokenCache(size int, ttl time.Duration) *tokenCache {
	n := 1
	for n < 64 && n*2*8 <= size { // at least 8 entries per shard, at most 64 shards
		n *= 2
	}
	c := &tokenCache{shards: make([]cacheShard, n), mask: byte(n - 1), perShard: size / n, ttl: ttl}
	for i := range c.shards {
		c.shards[i].entries = make(map[[32]byte]cacheEntry)
	}
	return c
}

func (c *tokenCache) shard(key *[32]byte) *cacheShard {
	return &c.shards[key[0]&c.mask]
}

// get returns the claims cached for key, and the key they verified with, unless the entry
// has expired.
func (c *tokenCache) get(key *[32]byte, now time.Time) (*Claims, crypto.PublicKey, bool) {
	s := c.shard(key)
	s.mu.RLock()
	e, ok := s.entries[*key]
	s.mu.RUnlock()
	if !ok || now.UnixNano() >= e.expires {
		return nil, nil, false
	}
	return e.claims, e.signer, true
}

// put caches claims for key until min(now+ttl, exp); an entry that would already be expired is
// not stored.
func (c *tokenCache) put(key *[32]byte, claims *Claims, signer crypto.PublicKey, now time.Time) {
	expires := now.Add(c.ttl)
	if claims.Expiry.Before(expires) {
		expires = claims.Expiry
	}
	if !now.Before(expires) {
		return
	}
	exp := expires.UnixNano()
	nowNano := now.UnixNano()
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[*key]; !ok && len(s.entries) >= c.perShard {
		s.evictLocked(nowNano)
	}
	s.entries[*key] = cacheEntry{claims: claims, signer: signer, expires: exp}
}

// evictLocked makes room for one entry: it drops the expired entries among the first evictScan
// it meets, or, if none was expired, the first one.
func (s *cacheShard) evictLocked(now int64) {
	var victim [32]byte
	found, scanned, dropped := false, 0, 0
	for k, e := range s.entries {
		if now >= e.expires {
			delete(s.entries, k)
			dropped++
		} else if !found {
			victim, found = k, true
		}
		if scanned++; scanned >= evictScan {
			break
		}
	}
	if dropped == 0 && found {
		delete(s.entries, victim)
	}
}

// len returns the number of entries (tests).
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}
