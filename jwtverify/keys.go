package jwtverify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3 and §3.5 require 2048).
	minRSABits = 2048
	// maxJWKSKeys caps the entries of one JWKS document.
	maxJWKSKeys = 256
)

// KeySource gives the public keys a token may be checked with.
//
// Verify re-checks every key it is given (public, "use" empty or "sig", a supported type and
// size, fitting the token's alg) and ignores the rest, so a KeySource cannot widen what is
// accepted. The returned slice must not be modified by the caller.
type KeySource interface {
	// Keys returns the usable public signature keys whose kid equals kid (every key when
	// kid == ""). It returns ErrKeyNotFound (wrapped) when there is none; any other error is
	// treated as the source being unavailable (ErrKeysUnavailable).
	Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
}

// KeyFunc adapts a function to KeySource: an in-process source (the issuer feeds its own keys
// this way). A private key it returns is used through its public half; symmetric keys are
// ignored. Returning no keys and a nil error means "not found".
type KeyFunc func(ctx context.Context, kid string) ([]jose.JSONWebKey, error)

var _ KeySource = KeyFunc(nil)

// Keys calls f.
func (f KeyFunc) Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	return f(ctx, kid)
}

// StaticKeySet is a fixed set of public keys. Its zero value holds no key; build it with
// NewStaticKeySet or StaticKeys.
type StaticKeySet struct {
	set *keySet
}

var _ KeySource = (*StaticKeySet)(nil)

// NewStaticKeySet parses a JWKS document (RFC 7517 §5). Symmetric ("oct") keys, keys of an
// unknown kty, keys whose "use" is not "sig", keys whose "key_ops" lacks "verify", invalid keys
// and RSA keys under 2048 bits are skipped. A document containing private key material (d, p,
// q, dp, dq, qi, oth) is refused as a whole: that is a leak at the publisher, and using the
// public half would hide it. Keys may share a kid; Verify tries each that fits the token's alg.
// It fails when no usable key remains.
func NewStaticKeySet(jwksJSON []byte) (*StaticKeySet, error) {
	keys, _, err := parseJWKS(jwksJSON)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("jwtverify: jwks: no usable public signature key")
	}
	return &StaticKeySet{set: newKeySet(keys)}, nil
}

// StaticKeys builds a StaticKeySet from keys. Every key must be a usable public signature key
// (ECDSA P-256/384/521, Ed25519, or RSA of at least 2048 bits; "use" empty or "sig"): private
// and symmetric keys are refused with an error, not silently dropped.
func StaticKeys(keys ...jose.JSONWebKey) (*StaticKeySet, error) {
	if len(keys) == 0 {
		return nil, errors.New("jwtverify: no keys given")
	}
	for i := range keys {
		if !usablePublicKey(&keys[i]) {
			return nil, fmt.Errorf("jwtverify: key %d (kid %q) is not a usable public signature key", i, keys[i].KeyID)
		}
	}
	return &StaticKeySet{set: newKeySet(keys)}, nil
}

// Keys returns the keys with the given kid (all keys when kid is "").
func (s *StaticKeySet) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	if s == nil || s.set == nil {
		return nil, fmt.Errorf("%w: empty key set", ErrKeyNotFound)
	}
	if keys := s.set.lookup(kid); len(keys) > 0 {
		return keys, nil
	}
	return nil, fmt.Errorf("%w: kid %q", ErrKeyNotFound, quoteShort(kid))
}

// keySet indexes usable keys by kid. It is immutable once built.
type keySet struct {
	all   []jose.JSONWebKey
	byKID map[string][]jose.JSONWebKey
}

func newKeySet(keys []jose.JSONWebKey) *keySet {
	s := &keySet{all: keys, byKID: make(map[string][]jose.JSONWebKey, len(keys))}
	for _, k := range keys {
		if k.KeyID != "" {
			s.byKID[k.KeyID] = append(s.byKID[k.KeyID], k)
		}
	}
	return s
}

func (s *keySet) lookup(kid string) []jose.JSONWebKey {
	if kid == "" {
		return s.all
	}
	return s.byKID[kid]
}

// jwkMeta is what parseJWKS reads of a key before go-jose parses it.
type jwkMeta struct {
	Kty    string          `json:"kty"`
	Use    string          `json:"use"`
	KeyOps []string        `json:"key_ops"`
	D      json.RawMessage `json:"d"`
	P      json.RawMessage `json:"p"`
	Q      json.RawMessage `json:"q"`
	DP     json.RawMessage `json:"dp"`
	DQ     json.RawMessage `json:"dq"`
	QI     json.RawMessage `json:"qi"`
	Oth    json.RawMessage `json:"oth"`
	Priv   json.RawMessage `json:"priv"`
}

// hasPrivate reports whether the key carries any private member (present, even if null).
func (m *jwkMeta) hasPrivate() bool {
	return m.D != nil || m.P != nil || m.Q != nil || m.DP != nil || m.DQ != nil || m.QI != nil ||
		m.Oth != nil || m.Priv != nil
}

// parseJWKS returns the usable public signature keys of a JWKS document and how many entries it
// skipped. See NewStaticKeySet for the rules.
func parseJWKS(data []byte) (keys []jose.JSONWebKey, skipped int, err error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, 0, fmt.Errorf("jwtverify: jwks: %w", err)
	}
	if doc.Keys == nil {
		return nil, 0, errors.New(`jwtverify: jwks: no "keys" array`)
	}
	if len(doc.Keys) > maxJWKSKeys {
		return nil, 0, fmt.Errorf("jwtverify: jwks: %d keys, limit %d", len(doc.Keys), maxJWKSKeys)
	}
	for i, raw := range doc.Keys {
		var meta jwkMeta
		if err := json.Unmarshal(raw, &meta); err != nil {
			skipped++
			continue
		}
		if meta.Kty == "oct" {
			skipped++ // symmetric keys are never used, whatever they claim
			continue
		}
		if meta.hasPrivate() {
			return nil, 0, fmt.Errorf("jwtverify: jwks: key %d contains private key material; refusing the document", i)
		}
		switch {
		case meta.Kty != "EC" && meta.Kty != "RSA" && meta.Kty != "OKP",
			meta.Use != "" && meta.Use != "sig",
			meta.KeyOps != nil && !slices.Contains(meta.KeyOps, "verify"):
			skipped++
			continue
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || !usablePublicKey(&k) {
			skipped++
			continue
		}
		keys = append(keys, k)
	}
	return keys, skipped, nil
}

// usableKey returns the public signature key k stands for, if any: k itself when it is a usable
// public key, or the public half of an asymmetric private key (only KeyFunc sources can hand one
// in; JWKS documents with private material are refused at parse).
func usableKey(k jose.JSONWebKey) (jose.JSONWebKey, bool) {
	switch k.Key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		k = k.Public()
	}
	return k, usablePublicKey(&k)
}

// usablePublicKey reports whether k is a public signature key Verify may use: "use" empty or
// "sig", and an ECDSA P-256/384/521, Ed25519, or RSA (at least 2048 bits, odd e ≥ 3, without
// the ROCA fingerprint) key.
func usablePublicKey(k *jose.JSONWebKey) bool {
	if k.Use != "" && k.Use != "sig" {
		return false
	}
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		if pub == nil || pub.X == nil || pub.Y == nil {
			return false
		}
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return true
		}
	case ed25519.PublicKey:
		return len(pub) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		return pub != nil && pub.N != nil && pub.N.BitLen() >= minRSABits && pub.E >= 3 && pub.E%2 == 1 && !rocaFingerprintOnce(pub.N)
	}
	return false
}

// keyFits reports whether the usable public key k may check an alg signature: its type, curve
// or size match alg, and the "alg" it declares, if any, is alg.
func keyFits(k *jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return pub.Curve == elliptic.P256()
		case "ES384":
			return pub.Curve == elliptic.P384()
		case "ES512":
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	}
	return false
}
