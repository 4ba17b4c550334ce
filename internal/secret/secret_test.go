package secret

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func pepper(c byte) []byte { return []byte(strings.Repeat(string(c), 32)) }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func newHasher(t testing.TB, o HasherOptions) *Hasher {
	t.Helper()
	h, err := NewHasher(pepper('p'), o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := Generate()
		body, ok := strings.CutPrefix(s, ClientSecretPrefix)
		if !ok {
			t.Fatalf("%q lacks the prefix", s)
		}
		raw, err := base64.RawURLEncoding.DecodeString(body)
		if err != nil || len(raw) != 32 {
			t.Fatalf("%q: %d bytes, %v; want 32 (256 bits)", s, len(raw), err)
		}
		if seen[s] {
			t.Fatal("Generate repeated a secret")
		}
		seen[s] = true
	}
}

func TestNewHasherNeedsALongPepper(t *testing.T) {
	if _, err := NewHasher(make([]byte, 31), HasherOptions{}); err == nil {
		t.Fatal("31-byte pepper accepted")
	}
}

func TestHMACSecrets(t *testing.T) {
	h := newHasher(t, HasherOptions{})
	other, err := NewHasher(pepper('q'), HasherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := Generate()
	stored := h.HashGenerated(s)
	if !strings.HasPrefix(stored, HMACPrefix) || strings.Contains(stored, strings.TrimPrefix(s, ClientSecretPrefix)) {
		t.Fatalf("stored form %q", stored)
	}
	if stored != h.HashGenerated(s) {
		t.Fatal("HashGenerated is not deterministic")
	}
	tests := []struct {
		name      string
		h         *Hasher
		stored    string
		presented string
		want      bool
		wantErr   bool
	}{
		{"right secret", h, stored, s, true, false},
		{"wrong secret", h, stored, Generate(), false, false},
		{"empty secret", h, stored, "", false, false},
		{"secret with a suffix", h, stored, s + "x", false, false},
		{"another server's pepper", other, stored, s, false, false},
		{"malformed hash", h, HMACPrefix + "!!!", s, false, true},
		{"short hash", h, HMACPrefix + "AAAA", s, false, true},
		{"plain text stored", h, s, s, false, true},
		{"unknown scheme", h, "$bcrypt$2a$10$abc", s, false, true},
		{"empty stored", h, "", "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := tt.h.Verify("client", tt.stored, tt.presented)
			if (err != nil) != tt.wantErr || ok != tt.want {
				t.Fatalf("Verify = %v, %v; want %v, error %v", ok, err, tt.want, tt.wantErr)
			}
		})
	}
	h.DummyVerify(s) // must not panic
}

func TestArgon2id(t *testing.T) {
	const pw = "correct horse battery staple"
	hash := HashArgon2id(pw)
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash %q is not the expected PHC form", hash)
	}
	if HashArgon2id(pw) == hash {
		t.Fatal("two hashes of one password are equal (no salt?)")
	}
	parts := strings.Split(hash, "$")
	tests := []struct {
		name    string
		hash    string
		secret  string
		want    bool
		wantErr bool
	}{
		{"right", hash, pw, true, false},
		{"wrong", hash, pw + "!", false, false},
		{"empty", hash, "", false, false},
		{"not argon2id", strings.Replace(hash, "argon2id", "argon2i", 1), pw, false, true},
		{"other version", strings.Replace(hash, "v=19", "v=16", 1), pw, false, true},
		{"memory too large (a planted hash must not cost gigabytes)", strings.Replace(hash, "m=65536", "m=4194304", 1), pw, false, true},
		{"memory too small", strings.Replace(hash, "m=65536", "m=8", 1), pw, false, true},
		{"too many passes", strings.Replace(hash, "t=3", "t=100", 1), pw, false, true},
		{"zero passes", strings.Replace(hash, "t=3", "t=0", 1), pw, false, true},
		{"zero lanes", strings.Replace(hash, "p=2", "p=0", 1), pw, false, true},
		{"lanes overflow", strings.Replace(hash, "p=2", "p=300", 1), pw, false, true},
		{"short salt", strings.Join([]string{parts[0], parts[1], parts[2], parts[3], "AAAA", parts[5]}, "$"), pw, false, true},
		{"short key", strings.Join([]string{parts[0], parts[1], parts[2], parts[3], parts[4], "AAAA"}, "$"), pw, false, true},
		{"bad base64", strings.Join([]string{parts[0], parts[1], parts[2], parts[3], "!!!!!!!!!!!!", parts[5]}, "$"), pw, false, true},
		{"too few parts", "$argon2id$v=19$m=65536", pw, false, true},
		{"garbage parameters", strings.Replace(hash, "m=65536,t=3,p=2", "x", 1), pw, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := VerifyArgon2id(tt.hash, tt.secret)
			if (err != nil) != tt.wantErr || ok != tt.want {
				t.Fatalf("VerifyArgon2id = %v, %v; want %v, error %v", ok, err, tt.want, tt.wantErr)
			}
		})
	}
}

// verifyWithoutArgon runs h.Verify while every argon2id slot is taken, so it can succeed only
// from the cache: a real argon2id computation would wait for a slot. It reports the result
// and whether Verify returned within wait (a cache hit needs microseconds; a computation
// never returns while the slots are held, however long the wait).
func verifyWithoutArgon(t *testing.T, h *Hasher, wait time.Duration, scope, stored, presented string) (ok, returned bool) {
	t.Helper()
	for range cap(h.argonSlots) {
		h.argonSlots <- struct{}{}
	}
	done := make(chan bool, 1)
	go func() {
		ok, err := h.Verify(scope, stored, presented)
		if err != nil {
			t.Errorf("Verify: %v", err)
		}
		done <- ok
	}()
	select {
	case ok = <-done:
		returned = true
	case <-time.After(wait):
	}
	for range cap(h.argonSlots) {
		<-h.argonSlots
	}
	if !returned {
		ok = <-done // the slots are free again; let it finish
	}
	return ok, returned
}

// TestArgon2idCache: a successful check is remembered (the second check computes no argon2id
// at all); the memory is per client, per secret and per stored hash, expires, never holds a
// failure, and is bounded.
func TestArgon2idCache(t *testing.T) {
	const pw = "a person chose this secret"
	stored := HashArgon2id(pw)
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	h := newHasher(t, HasherOptions{CacheTTL: time.Minute, CacheSize: 100, Now: clk.Now})

	if ok, err := h.Verify("client-a", stored, pw+"x"); ok || err != nil {
		t.Fatalf("wrong secret: %v, %v", ok, err)
	}
	if n := len(h.cache.m); n != 0 {
		t.Fatalf("a failed check was cached (%d entries)", n)
	}
	if ok, err := h.Verify("client-a", stored, pw); !ok || err != nil {
		t.Fatalf("first check: %v, %v", ok, err)
	}
	if ok, returned := verifyWithoutArgon(t, h, 10*time.Second, "client-a", stored, pw); !returned || !ok {
		t.Fatalf("second check was not served by the cache (returned %v, ok %v)", returned, ok)
	}

	for _, tt := range []struct {
		name, scope, stored, presented string
	}{
		{"another client with the same hash", "client-b", stored, pw},
		{"another secret", "client-a", stored, pw + "!"},
		{"another stored hash", "client-a", strings.Replace(stored, "$m=", "$m=0", 1), pw}, // only the cache key is checked
	} {
		if h.cache.ok(h.mac("argon2-ok", tt.scope, tt.stored, tt.presented), clk.Now()) {
			t.Errorf("%s: the cached success vouches for it", tt.name)
		}
	}

	clk.Add(time.Minute)
	if h.cache.ok(h.mac("argon2-ok", "client-a", stored, pw), clk.Now()) {
		t.Error("the cached success outlived its TTL")
	}
	// After expiry a real check runs again and succeeds.
	if ok, err := h.Verify("client-a", stored, pw); !ok || err != nil {
		t.Fatalf("check after expiry: %v, %v", ok, err)
	}
}

func TestArgon2idCacheOff(t *testing.T) {
	h := newHasher(t, HasherOptions{})
	if h.cache != nil {
		t.Fatal("cache built with TTL 0")
	}
	stored := HashArgon2id("another person chose this")
	if ok, _ := h.Verify("c", stored, "another person chose this"); !ok {
		t.Fatal("check failed")
	}
	if _, returned := verifyWithoutArgon(t, h, 200*time.Millisecond, "c", stored, "another person chose this"); returned {
		t.Fatal("with the cache off a check returned without computing argon2id")
	}
}

func TestCacheBounded(t *testing.T) {
	c := &okCache{ttl: time.Minute, max: 3, m: map[[32]byte]time.Time{}}
	now := time.Now()
	for i := range 10 {
		c.put([32]byte{byte(i)}, now)
		if len(c.m) > 3 {
			t.Fatalf("cache grew to %d entries (max 3)", len(c.m))
		}
	}
	if !c.ok([32]byte{9}, now) {
		t.Error("the latest entry is missing")
	}
}

func BenchmarkVerifyGenerated(b *testing.B) {
	h := newHasher(b, HasherOptions{})
	s := Generate()
	stored := h.HashGenerated(s)
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := h.Verify("c", stored, s); !ok {
			b.Fatal("mismatch")
		}
	}
}

func BenchmarkVerifyArgon2idCached(b *testing.B) {
	h := newHasher(b, HasherOptions{CacheTTL: time.Hour, CacheSize: 10})
	stored := HashArgon2id("a person chose this secret")
	if ok, _ := h.Verify("c", stored, "a person chose this secret"); !ok { // fills the cache
		b.Fatal("mismatch")
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := h.Verify("c", stored, "a person chose this secret"); !ok {
			b.Fatal("mismatch")
		}
	}
}

func BenchmarkVerifyArgon2idUncached(b *testing.B) {
	stored := HashArgon2id("a person chose this secret")
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := VerifyArgon2id(stored, "a person chose this secret"); !ok {
			b.Fatal("mismatch")
		}
	}
}

// TestArgon2idWaitIsBounded: while every argon2id slot is busy, at most MaxWaiting checks
// wait for one (each until a slot frees or its context ends); one more is refused at once
// with ErrBusy, and so is a check whose context ends while it waits or before it starts.
// The waiters finish normally once the slots free up.
func TestArgon2idWaitIsBounded(t *testing.T) {
	h := newHasher(t, HasherOptions{MaxWaiting: 3})
	stored := HashArgon2id("the secret of someone")
	for range cap(h.argonSlots) {
		h.argonSlots <- struct{}{}
	}
	waited := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := h.VerifyContext(context.Background(), "c", stored, "a wrong guess")
			waited <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.waiting.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d checks wait", h.waiting.Load())
		}
		time.Sleep(time.Millisecond)
	}

	start := time.Now()
	if _, err := h.VerifyContext(context.Background(), "c", stored, "one guess too many"); !errors.Is(err, ErrBusy) {
		t.Fatalf("a check beyond the waiting bound: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing a check beyond the bound took %v", d)
	}

	for range cap(h.argonSlots) {
		<-h.argonSlots
	}
	for range 3 {
		if err := <-waited; err != nil {
			t.Errorf("a waiting check: %v", err)
		}
	}

	t.Run("context ends while waiting", func(t *testing.T) {
		for range cap(h.argonSlots) {
			h.argonSlots <- struct{}{}
		}
		defer func() {
			for range cap(h.argonSlots) {
				<-h.argonSlots
			}
		}()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := h.VerifyContext(ctx, "c", stored, "a wrong guess")
			done <- err
		}()
		for h.waiting.Load() < 1 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, ErrBusy) || !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled wait: %v, want ErrBusy and context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a cancelled check kept waiting for a slot")
		}
		if n := h.waiting.Load(); n != 0 {
			t.Errorf("%d checks still counted as waiting", n)
		}
	})

	t.Run("context ended before the check", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := h.VerifyContext(ctx, "c", stored, "a wrong guess"); !errors.Is(err, ErrBusy) {
			t.Errorf("check with an ended context: %v, want ErrBusy", err)
		}
	})

	t.Run("generated secrets never wait", func(t *testing.T) {
		for range cap(h.argonSlots) {
			h.argonSlots <- struct{}{}
		}
		defer func() {
			for range cap(h.argonSlots) {
				<-h.argonSlots
			}
		}()
		s := Generate()
		if ok, err := h.VerifyContext(context.Background(), "c", h.HashGenerated(s), s); !ok || err != nil {
			t.Errorf("hmac check while argon2id is busy: %v, %v", ok, err)
		}
	})
}

// TestNeedsArgon2id: true exactly when VerifyContext would compute argon2id.
func TestNeedsArgon2id(t *testing.T) {
	const pw = "a person chose this secret"
	h := newHasher(t, HasherOptions{CacheTTL: time.Minute, CacheSize: 10})
	stored := HashArgon2id(pw)
	s := Generate()
	if h.NeedsArgon2id("c", h.HashGenerated(s), s) {
		t.Error("a generated secret needs argon2id")
	}
	if !h.NeedsArgon2id("c", stored, pw) {
		t.Error("an uncached argon2id check does not need argon2id")
	}
	if ok, err := h.VerifyContext(t.Context(), "c", stored, pw); !ok || err != nil {
		t.Fatalf("check: %v %v", ok, err)
	}
	if h.NeedsArgon2id("c", stored, pw) {
		t.Error("a cached success needs argon2id")
	}
	if !h.NeedsArgon2id("c", stored, pw+"!") {
		t.Error("another secret is served from the cache")
	}
}
