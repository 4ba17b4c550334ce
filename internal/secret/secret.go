// Package secret makes and checks client secrets and passwords.
//
// Secrets Portcullis generates carry 256 random bits, so a fast keyed hash (HMAC-SHA-256
// under a server pepper derived from the master key) protects them at rest: nobody can guess
// one, and a stolen database alone does not let anyone test guesses. Secrets people choose are
// accepted only as argon2id hashes; a successful argon2id check is remembered in memory, by
// keyed hash, for a bounded time so that a busy client does not cost a slow hash per request.
// Every comparison is constant-time.
package secret

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// Prefixes of the stored hash formats.
const (
	HMACPrefix   = "$hmac-sha256$"
	Argon2Prefix = "$argon2id$"
)

// ClientSecretPrefix marks generated client secrets so secret scanners can find leaked ones.
const ClientSecretPrefix = "pcs_"

// Random returns n random bytes, base64url without padding.
func Random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// Generate returns a new client secret with 256 bits of entropy.
func Generate() string { return ClientSecretPrefix + Random(32) }

// Hasher makes and checks secret hashes. Its zero value is unusable: use NewHasher.
type Hasher struct {
	pepper []byte
	cache  *okCache
	now    func() time.Time
	// argonSlots bounds concurrent argon2id computations (each takes 64 MiB): a flood of
	// wrong passwords must not exhaust memory.
	argonSlots chan struct{}
	// waiting counts checks waiting for a slot; at most maxWaiting may, so a flood of wrong
	// secrets makes later checks fail fast (ErrBusy) instead of stalling every sign-in.
	waiting    atomic.Int32
	maxWaiting int32
}

// ErrBusy reports that an argon2id check did not run: every slot was busy and the bounded
// queue of waiting checks full, or the caller's context ended first. Nothing was learnt
// about the secret: callers answer "try again" (503) and count no failure.
var ErrBusy = errors.New("secret: too many slow checks at once")

// DefaultMaxWaiting is how many argon2id checks may wait for a slot by default: with two
// slots and ~100-200 ms per check, a waiting check starts within about a second.
const DefaultMaxWaiting = 8

// HasherOptions configures NewHasher.
type HasherOptions struct {
	CacheTTL  time.Duration // how long a successful argon2id check is remembered; 0 disables
	CacheSize int           // bound on remembered checks
	// MaxWaiting bounds the argon2id checks waiting for a slot (default DefaultMaxWaiting);
	// beyond it a check fails at once with ErrBusy.
	MaxWaiting int
	Now        func() time.Time
}

// NewHasher returns a Hasher keyed by pepper (at least 32 bytes).
func NewHasher(pepper []byte, o HasherOptions) (*Hasher, error) {
	if len(pepper) < 32 {
		return nil, errors.New("secret: pepper must be at least 32 bytes")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxWaiting <= 0 {
		o.MaxWaiting = DefaultMaxWaiting
	}
	h := &Hasher{pepper: append([]byte(nil), pepper...), now: o.Now, argonSlots: make(chan struct{}, 2), maxWaiting: int32(min(o.MaxWaiting, 1<<20))}
	if o.CacheTTL > 0 && o.CacheSize > 0 {
		h.cache = &okCache{ttl: o.CacheTTL, max: o.CacheSize, m: map[[32]byte]time.Time{}}
	}
	return h, nil
}

func (h *Hasher) mac(parts ...string) [32]byte {
	m := hmac.New(sha256.New, h.pepper)
	for _, p := range parts {
		fmt.Fprintf(m, "%d:%s;", len(p), p) // length-prefixed: no two part lists collide
	}
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// HashGenerated returns the stored form of a generated (high-entropy) secret.
func (h *Hasher) HashGenerated(secret string) string {
	sum := h.mac("client-secret", secret)
	return HMACPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// Verify is VerifyContext without a context: an argon2id check waits for a slot only while
// the waiting queue has room.
func (h *Hasher) Verify(scope, stored, presented string) (bool, error) {
	return h.VerifyContext(context.Background(), scope, stored, presented)
}

// VerifyContext reports whether presented matches stored. scope names what the secret
// belongs to (the client id, the user) so a cached argon2id success for one never vouches
// for another. An unknown hash format is an error; a mismatch is (false, nil).
//
// An argon2id check runs in one of two slots. When both are busy it waits, unless
// MaxWaiting checks already wait or ctx ends first: then it returns an error wrapping
// ErrBusy at once, without computing anything.
func (h *Hasher) VerifyContext(ctx context.Context, scope, stored, presented string) (bool, error) {
	switch {
	case strings.HasPrefix(stored, HMACPrefix):
		want, err := base64.RawURLEncoding.DecodeString(stored[len(HMACPrefix):])
		if err != nil || len(want) != sha256.Size {
			return false, errors.New("secret: malformed hmac-sha256 hash")
		}
		got := h.mac("client-secret", presented)
		return hmac.Equal(got[:], want), nil
	case strings.HasPrefix(stored, Argon2Prefix):
		key := h.mac("argon2-ok", scope, stored, presented)
		if h.cache != nil && h.cache.ok(key, h.now()) {
			return true, nil
		}
		if err := h.acquire(ctx); err != nil {
			return false, err
		}
		ok, err := VerifyArgon2id(stored, presented)
		<-h.argonSlots
		if ok && err == nil && h.cache != nil {
			h.cache.put(key, h.now())
		}
		return ok, err
	}
	return false, errors.New("secret: unknown hash format")
}

// NeedsArgon2id reports whether VerifyContext would compute argon2id for these arguments:
// stored is an argon2id hash and no recent success with them is remembered. Callers count
// such an attempt (abuse detection) before it costs anything.
func (h *Hasher) NeedsArgon2id(scope, stored, presented string) bool {
	if !strings.HasPrefix(stored, Argon2Prefix) {
		return false
	}
	return h.cache == nil || !h.cache.ok(h.mac("argon2-ok", scope, stored, presented), h.now())
}

// acquire takes an argon2id slot: at once when one is free, else after waiting in the
// bounded queue until one frees or ctx ends.
func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	select {
	case h.argonSlots <- struct{}{}:
		return nil
	default:
	}
	if h.waiting.Add(1) > h.maxWaiting {
		h.waiting.Add(-1)
		return fmt.Errorf("%w: %d checks already wait for a slot", ErrBusy, h.maxWaiting)
	}
	defer h.waiting.Add(-1)
	select {
	case h.argonSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
}

// DummyVerify spends about the time of a real HMAC check, for unknown clients, so response
// times do not reveal which client ids exist.
func (h *Hasher) DummyVerify(presented string) {
	got := h.mac("client-secret", presented)
	_ = subtle.ConstantTimeCompare(got[:], got[:])
}

// okCache remembers successful slow checks by keyed hash until they expire. Bounded: when full
// it drops expired entries, then, if still full, everything (a cache, not a store).
type okCache struct {
	mu  sync.Mutex
	ttl time.Duration
	max int
	m   map[[32]byte]time.Time
}

func (c *okCache) ok(k [32]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, found := c.m[k]
	if found && now.Before(exp) {
		return true
	}
	if found {
		delete(c.m, k)
	}
	return false
}

func (c *okCache) put(k [32]byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for key, exp := range c.m {
			if !now.Before(exp) {
				delete(c.m, key)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	c.m[k] = now.Add(c.ttl)
}

// argon2id parameters: RFC 9106's second recommended option, scaled to 64 MiB.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// HashArgon2id returns a PHC-format argon2id hash of a person-chosen secret or password.
func HashArgon2id(secret string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(secret), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key))
}

// VerifyArgon2id checks secret against a PHC-format argon2id hash. It refuses parameters
// outside sane bounds, so a planted hash cannot make a check cost gigabytes.
func VerifyArgon2id(hash, secret string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("secret: malformed argon2id hash")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errors.New("secret: unsupported argon2id version")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, errors.New("secret: malformed argon2id parameters")
	}
	if m < 8*1024 || m > 256*1024 || t < 1 || t > 10 || p < 1 || p > 8 {
		return false, errors.New("secret: argon2id parameters out of bounds")
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, errors.New("secret: malformed argon2id salt")
	}
	want, err := enc.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errors.New("secret: malformed argon2id key")
	}
	got := argon2.IDKey([]byte(secret), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
