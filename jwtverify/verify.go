package jwtverify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Verify checks token and returns its claims. It runs every check in the fixed order documented
// on the sentinel errors and returns the first failure, wrapped (use errors.Is). The error text
// may quote short, escaped parts of the token header; it never contains the token.
//
// With a cache (Config.CacheSize > 0) a token verified before is looked up by its SHA-256 and
// only its exp and nbf are checked again. The returned Claims may be shared between callers and
// must not be modified.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > v.maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(token), v.maxBytes)
	}
	now := v.now()
	if v.cache == nil {
		c, _, err := v.verify(ctx, token, now)
		return c, err
	}
	key := hashToken(token)
	if c, signer, ok := v.cache.get(&key, now); ok && v.stillServes(ctx, c, signer) {
		if err := v.checkExpiry(c, now); err != nil {
			return nil, err
		}
		return c, nil
	}
	c, signer, err := v.verify(ctx, token, now)
	if err != nil {
		return nil, err
	}
	v.cache.put(&key, c, signer, now)
	return c, nil
}

// stillServes reports whether the key that verified a cached token is still one the key
// source offers for its kid and alg: a key withdrawn from the JWKS (rotated out early, or
// compromised) ends the cached answers it vouched for at once, not at their exp. An error
// from the source counts as no: the token is then verified afresh, which reports it.
func (v *Verifier) stillServes(ctx context.Context, c *Claims, signer crypto.PublicKey) bool {
	keys, err := v.candidateKeys(ctx, c.KeyID, c.Algorithm)
	if err != nil {
		return false
	}
	for i := range keys {
		if sameKey(keys[i].Key, signer) {
			return true
		}
	}
	return false
}

// sameKey reports whether a and b are the same public key: the same pointer (a key set that
// has not been refreshed since) or, failing that, equal values.
func sameKey(a, b crypto.PublicKey) bool {
	switch x := a.(type) {
	case *ecdsa.PublicKey:
		if y, ok := b.(*ecdsa.PublicKey); ok && x == y {
			return true
		}
	case *rsa.PublicKey:
		if y, ok := b.(*rsa.PublicKey); ok && x == y {
			return true
		}
	}
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// hashBuffers avoids allocating a copy of the token for hashing on the cache's hot path.
var hashBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// hashToken returns the SHA-256 of token, the verified-token cache key.
func hashToken(token string) [32]byte {
	bp := hashBuffers.Get().(*[]byte)
	buf := append((*bp)[:0], token...)
	sum := sha256.Sum256(buf)
	if cap(buf) <= 64<<10 { // do not keep huge buffers alive
		*bp = buf
		hashBuffers.Put(bp)
	}
	return sum
}

// verify runs every check except the size cap, without the cache. It also returns the public
// key the signature verified with.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (*Claims, crypto.PublicKey, error) {
	// Structure: three canonical base64url segments. go-jose would accept more (whitespace,
	// the JSON serialization), so this lexical check comes first.
	signingInput, ok := compactSigningInput(token)
	if !ok {
		return nil, nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	jws, err := jose.ParseSignedCompact(token, v.algs)
	if err != nil {
		if unexpected, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return nil, nil, fmt.Errorf("%w: %q", ErrAlgorithm, quoteShort(string(unexpected.Got)))
		}
		return nil, nil, fmt.Errorf("%w: %s", ErrMalformed, quoteShort(err.Error()))
	}
	if len(jws.Signatures) != 1 {
		return nil, nil, fmt.Errorf("%w: %d signatures", ErrMalformed, len(jws.Signatures))
	}
	sig := &jws.Signatures[0]
	hdr := &sig.Protected

	// Header.
	alg := hdr.Algorithm
	if !containsAlg(v.algs, jose.SignatureAlgorithm(alg)) { // go-jose checked already; keep it local too
		return nil, nil, fmt.Errorf("%w: %q", ErrAlgorithm, quoteShort(alg))
	}
	if err := v.checkType(hdr); err != nil {
		return nil, nil, err
	}
	if _, ok := hdr.ExtraHeaders["crit"]; ok {
		return nil, nil, fmt.Errorf("%w: crit", ErrCritical)
	}
	if _, ok := hdr.ExtraHeaders["b64"]; ok {
		return nil, nil, fmt.Errorf("%w: b64", ErrCritical)
	}
	// "jwk", "jku", "x5u" and "x5c" are deliberately never read: keys come only from v.keys.

	// Key.
	candidates, err := v.candidateKeys(ctx, hdr.KeyID, alg)
	if err != nil {
		return nil, nil, err
	}

	// Signature.
	input := []byte(signingInput)
	var signer crypto.PublicKey
	for i := range candidates {
		if verifySignature(alg, candidates[i].Key, input, sig.Signature) == nil {
			signer = candidates[i].Key
			break
		}
	}
	if signer == nil {
		return nil, nil, fmt.Errorf("%w: alg %s, %d candidate key(s)", ErrSignature, alg, len(candidates))
	}

	// Claims: only now that the payload is authenticated is it decoded. go-jose decoded these
	// bytes from the very payload segment the signature covers (and compactSigningInput made sure
	// that segment has one encoding only), so "Unsafe" no longer applies.
	c, err := parseClaims(jws.UnsafePayloadWithoutVerification())
	if err != nil {
		return nil, nil, err
	}
	c.KeyID = hdr.KeyID
	c.Algorithm = alg
	if t, ok := hdr.ExtraHeaders[jose.HeaderType].(string); ok {
		c.Type = t
	}
	if err := v.checkClaims(c, now); err != nil {
		return nil, nil, err
	}
	return c, signer, nil
}

// compactSigningInput reports whether token is three base64url segments without padding,
// whitespace or non-zero trailing bits (one encoding per value, so no two strings carry the same
// signature), with a non-empty header. It returns the JWS signing input "header.payload".
func compactSigningInput(token string) (string, bool) {
	first := strings.IndexByte(token, '.')
	if first <= 0 {
		return "", false
	}
	rest := token[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 {
		return "", false
	}
	second += first + 1
	if !canonicalBase64URL(token[:first]) ||
		!canonicalBase64URL(token[first+1:second]) ||
		!canonicalBase64URL(token[second+1:]) { // also rejects a third '.'
		return "", false
	}
	return token[:second], true
}

// canonicalBase64URL reports whether s is unpadded base64url in its only canonical form.
func canonicalBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		if base64URLValue(s[i]) < 0 {
			return false
		}
	}
	if len(s) == 0 {
		return true
	}
	last := base64URLValue(s[len(s)-1])
	switch len(s) % 4 {
	case 1:
		return false
	case 2:
		return last&0x0f == 0 // 1 byte carried, 4 unused bits
	case 3:
		return last&0x03 == 0 // 2 bytes carried, 2 unused bits
	}
	return true
}

func base64URLValue(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return -1
}

// checkType checks the "typ" header against Config.Types.
func (v *Verifier) checkType(hdr *jose.Header) error {
	raw, present := hdr.ExtraHeaders[jose.HeaderType]
	if !present {
		if v.allowNoType {
			return nil
		}
		return fmt.Errorf("%w: missing typ", ErrType)
	}
	typ, ok := raw.(string)
	if !ok {
		return fmt.Errorf("%w: typ is not a string", ErrType)
	}
	typ = trimApplication(typ)
	for _, t := range v.types {
		if asciiEqualFold(typ, t) {
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrType, quoteShort(typ))
}

// candidateKeys asks the key source for the keys a token may be checked with: those of the
// token's kid (every key when it has none) that are usable public signature keys fitting alg,
// at most maxCandidateKeys of them.
func (v *Verifier) candidateKeys(ctx context.Context, kid, alg string) ([]jose.JSONWebKey, error) {
	keys, err := v.keys.Keys(ctx, kid)
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w: %w", ErrKeyNotFound, ErrKeysUnavailable, err)
	}
	// Common case (one key per kid from a key set that already holds only usable public keys):
	// hand the source's slice on without copying.
	if len(keys) <= maxCandidateKeys && allFit(keys, kid, alg) {
		return keys, nil
	}
	var candidates []jose.JSONWebKey
	matched := 0
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue // a KeySource that ignored kid must not widen the choice
		}
		k, ok := usableKey(keys[i])
		if !ok {
			continue
		}
		matched++
		if !keyFits(&k, alg) {
			continue
		}
		candidates = append(candidates, k)
		if len(candidates) == maxCandidateKeys {
			break
		}
	}
	switch {
	case len(candidates) > 0:
		return candidates, nil
	case kid != "" && matched > 0:
		return nil, fmt.Errorf("%w: key %q does not fit alg %s", ErrAlgorithm, quoteShort(kid), alg)
	case kid != "":
		return nil, fmt.Errorf("%w: kid %q", ErrKeyNotFound, quoteShort(kid))
	default:
		return nil, fmt.Errorf("%w: no kid and no key fits alg %s", ErrKeyNotFound, alg)
	}
}

// allFit reports whether every key has the wanted kid, is a usable public key as it stands and
// fits alg.
func allFit(keys []jose.JSONWebKey, kid, alg string) bool {
	if len(keys) == 0 {
		return false
	}
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			return false
		}
		if !usablePublicKey(&keys[i]) || !keyFits(&keys[i], alg) {
			return false
		}
	}
	return true
}

// checkClaims runs the claim checks in order: issuer, audience, time, required claims.
func (v *Verifier) checkClaims(c *Claims, now time.Time) error {
	if c.Issuer != v.issuer {
		return fmt.Errorf("%w: %q", ErrIssuer, quoteShort(c.Issuer))
	}
	if !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(v.audiences, a) }) {
		return fmt.Errorf("%w: %d audience value(s), none accepted", ErrAudience, len(c.Audience))
	}
	if err := v.checkTimes(c, now); err != nil {
		return err
	}
	for _, name := range v.required {
		if val, ok := c.Raw[name]; !ok || val == nil {
			return fmt.Errorf("%w: %q", ErrMissingClaim, name)
		}
	}
	return nil
}

// checkTimes checks exp (always required), nbf, iat and the lifetime bound.
func (v *Verifier) checkTimes(c *Claims, now time.Time) error {
	if c.Expiry.IsZero() {
		return fmt.Errorf("%w: %q", ErrMissingClaim, "exp")
	}
	if err := v.checkExpiry(c, now); err != nil {
		return err
	}
	if !c.IssuedAt.IsZero() && c.IssuedAt.After(now.Add(v.leeway)) {
		return fmt.Errorf("%w: iat %s, now %s", ErrIssuedInFuture, c.IssuedAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if v.maxLifetime > 0 {
		if c.IssuedAt.IsZero() {
			return fmt.Errorf("%w: %q", ErrMissingClaim, "iat")
		}
		if life := c.Expiry.Sub(c.IssuedAt); life > v.maxLifetime {
			return fmt.Errorf("%w: %v, limit %v", ErrLifetime, life, v.maxLifetime)
		}
	}
	return nil
}

// checkExpiry checks exp and nbf against now with the leeway; it is all a cache hit re-checks.
func (v *Verifier) checkExpiry(c *Claims, now time.Time) error {
	if !now.Before(c.Expiry.Add(v.leeway)) {
		return fmt.Errorf("%w: exp %s, now %s", ErrExpired, c.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !c.NotBefore.IsZero() && now.Add(v.leeway).Before(c.NotBefore) {
		return fmt.Errorf("%w: nbf %s, now %s", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// quoteShort bounds attacker-controlled text before it goes into an error (and so into logs);
// callers quote it with %q, which escapes control characters.
func quoteShort(s string) string {
	const limit = 64
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}
