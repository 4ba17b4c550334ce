package jwtverify

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestCacheSkipsSignatureOnHit(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	src := &countingKeys{src: staticKeys(t, k)}
	clk := newClock(testNow)
	v := newTestVerifier(t, src, func(c *Config) { c.CacheSize = 100; c.Now = clk.Now })
	tok := k.mint(t, k.defaultHeader(), baseClaims(testNow))
	first, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("a cache hit must return the cached claims")
	}
	// The hit asks the key source once more, only whether the key still serves.
	if got := src.count(); got != 2 {
		t.Errorf("key source calls = %d, want 2 (verification, then the hit's key check)", got)
	}

	clk.Advance(DefaultCacheTTL) // the entry's TTL is over: full verification again
	third, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if third == first {
		t.Error("an entry past its TTL was served")
	}
	if got := src.count(); got != 3 {
		t.Errorf("key source calls after CacheTTL = %d, want 3", got)
	}
}

func TestCacheNeverStoresFailures(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	src := &countingKeys{src: staticKeys(t, k)}
	v := newTestVerifier(t, src, func(c *Config) { c.CacheSize = 100 })
	tok := k.mint(t, k.defaultHeader(), with(baseClaims(testNow), "iss", "evil"))
	for range 3 {
		if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrIssuer) {
			t.Fatalf("error %v, want ErrIssuer", err)
		}
	}
	if got, want := src.count(), 3; got != want {
		t.Errorf("key source calls = %d, want %d", got, want)
	}
	if n := v.cache.len(); n != 0 {
		t.Errorf("cache holds %d entries after failures", n)
	}
}

func TestCacheEntryNeverOutlivesExp(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	clk := newClock(testNow)
	v := newTestVerifier(t, staticKeys(t, k), func(c *Config) { c.CacheSize = 100; c.CacheTTL = time.Hour; c.Now = clk.Now })
	tok := k.mint(t, k.defaultHeader(), with(baseClaims(testNow), "exp", testNow.Add(10*time.Second).Unix()))
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	key := sha256.Sum256([]byte(tok))
	if _, _, ok := v.cache.get(&key, testNow.Add(9*time.Second)); !ok {
		t.Error("entry missing before exp")
	}
	if _, _, ok := v.cache.get(&key, testNow.Add(10*time.Second)); ok {
		t.Error("entry still served at exp")
	}
	clk.Advance(41 * time.Second) // past exp + leeway
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrExpired) {
		t.Errorf("after exp: %v, want ErrExpired", err)
	}
}

// TestCacheHitChecksTime plants entries that outlive their token's times, which put never does,
// to show that a hit checks exp and nbf by itself.
func TestCacheHitChecksTime(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	clk := newClock(testNow)
	v := newTestVerifier(t, staticKeys(t, k), func(c *Config) { c.CacheSize = 100; c.Now = clk.Now })
	plant := func(tok string, c *Claims) {
		key := sha256.Sum256([]byte(tok))
		s := v.cache.shard(&key)
		s.mu.Lock()
		c.KeyID, c.Algorithm = "k1", "ES256" // as verified by k
		s.entries[key] = cacheEntry{claims: c, signer: k.pub.Key, expires: testNow.Add(time.Hour).UnixNano()}
		s.mu.Unlock()
	}
	plant("expired", &Claims{Expiry: testNow.Add(-time.Minute)})
	plant("early", &Claims{Expiry: testNow.Add(time.Hour), NotBefore: testNow.Add(time.Minute)})
	if _, err := v.Verify(t.Context(), "expired"); !errors.Is(err, ErrExpired) {
		t.Errorf("cached expired token: %v, want ErrExpired", err)
	}
	if _, err := v.Verify(t.Context(), "early"); !errors.Is(err, ErrNotYetValid) {
		t.Errorf("cached not-yet-valid token: %v, want ErrNotYetValid", err)
	}

	// The real scenario: a token accepted within the nbf leeway, then the clock steps back.
	tok := k.mint(t, k.defaultHeader(), with(baseClaims(testNow), "nbf", testNow.Add(20*time.Second).Unix()))
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	clk.Advance(-20 * time.Second)
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrNotYetValid) {
		t.Errorf("cache hit after the clock stepped back: %v, want ErrNotYetValid", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	for _, size := range []int{1, 7, 100, 1000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := newTokenCache(size, time.Hour)
			claims := &Claims{Expiry: testNow.Add(time.Hour)}
			for i := range 5 * size {
				key := sha256.Sum256(fmt.Appendf(nil, "token-%d", i))
				c.put(&key, claims, nil, testNow)
				if n := c.len(); n > size {
					t.Fatalf("after %d inserts the cache holds %d entries, limit %d", i+1, n, size)
				}
			}
			if n := c.len(); n < size/2 {
				t.Errorf("cache holds only %d entries of %d", n, size)
			}
			// The newest entry is always present.
			key := sha256.Sum256(fmt.Appendf(nil, "token-%d", 5*size-1))
			if _, _, ok := c.get(&key, testNow); !ok {
				t.Error("the entry just inserted is missing")
			}
		})
	}
}

func TestCachePrefersEvictingExpiredEntries(t *testing.T) {
	c := newTokenCache(4, time.Hour)
	short := &Claims{Expiry: testNow.Add(time.Second)}
	long := &Claims{Expiry: testNow.Add(time.Hour)}
	keys := make([][32]byte, 5)
	for i := range keys {
		keys[i] = sha256.Sum256(fmt.Appendf(nil, "t%d", i))
	}
	c.put(&keys[0], short, nil, testNow)
	for i := 1; i < 4; i++ {
		c.put(&keys[i], long, nil, testNow)
	}
	c.put(&keys[4], long, nil, testNow.Add(2*time.Second))
	for i := 1; i < 5; i++ {
		if _, _, ok := c.get(&keys[i], testNow.Add(2*time.Second)); !ok {
			t.Errorf("live entry %d evicted while an expired one was available", i)
		}
	}
}

func TestCacheConcurrentUse(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newTestVerifier(t, staticKeys(t, k), func(c *Config) { c.CacheSize = 16 })
	var tokens []string
	for i := range 32 {
		tokens = append(tokens, k.mint(t, k.defaultHeader(), with(baseClaims(testNow), "jti", fmt.Sprint(i))))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				tok := tokens[(g*7+i)%len(tokens)]
				c, err := v.Verify(t.Context(), tok)
				if err != nil {
					t.Error(err)
					return
				}
				if want := fmt.Sprint((g*7 + i) % len(tokens)); c.ID != want {
					t.Errorf("claims of another token: jti %q, want %q", c.ID, want)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := v.cache.len(); n > 16 {
		t.Errorf("cache holds %d entries, limit 16", n)
	}
}

// TestCacheEndsWithTheKey: a key withdrawn from the key source (rotated out early, or
// compromised) stops vouching for the tokens it verified at once: a cached token whose
// signing key is gone is verified afresh, and refused, rather than served until its exp.
// A different key under the same kid does not keep it alive either.
func TestCacheEndsWithTheKey(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	impostor := newTestKey(t, "ES256", "k1")
	var mu sync.Mutex
	current := []jose.JSONWebKey{k.pub}
	src := KeyFunc(func(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
		mu.Lock()
		defer mu.Unlock()
		var out []jose.JSONWebKey
		for _, j := range current {
			if kid == "" || j.KeyID == kid {
				out = append(out, j)
			}
		}
		return out, nil
	})
	set := func(keys ...jose.JSONWebKey) { mu.Lock(); current = keys; mu.Unlock() }
	v := newTestVerifier(t, src, func(c *Config) { c.CacheSize = 100; c.CacheTTL = time.Hour })
	tok := k.mint(t, k.defaultHeader(), baseClaims(testNow))
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("cached, key still there: %v", err)
	}
	set(impostor.pub)
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrSignature) {
		t.Fatalf("the kid now names another key: err %v, want ErrSignature", err)
	}
	set()
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("key withdrawn: err %v, want ErrKeyNotFound", err)
	}
	set(k.pub)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("key back: %v", err)
	}
}
