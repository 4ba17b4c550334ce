package jwtverify

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Defaults and limits applied by New.
const (
	DefaultLeeway        = 30 * time.Second
	MaxLeeway            = 5 * time.Minute
	DefaultMaxTokenBytes = 8192
	DefaultCacheTTL      = time.Minute
	DefaultType          = "at+jwt"
	// maxCandidateKeys caps how many keys are tried for one token (a token without "kid", or a
	// key set that publishes several keys under one kid).
	maxCandidateKeys = 8
)

// supportedAlgorithms are the only values Config.Algorithms may hold: asymmetric signatures.
// "none" and every HMAC algorithm are refused by New, whatever the caller asks for.
var supportedAlgorithms = map[string]jose.SignatureAlgorithm{
	"ES256": jose.ES256, "ES384": jose.ES384, "ES512": jose.ES512,
	"EdDSA": jose.EdDSA,
	"PS256": jose.PS256, "PS384": jose.PS384, "PS512": jose.PS512,
	"RS256": jose.RS256, "RS384": jose.RS384, "RS512": jose.RS512,
}

// Config says what a Verifier accepts. Issuer, Audiences and Keys are required; every other field
// has a safe default, applied by New.
type Config struct {
	// Issuer must equal the token's "iss" exactly.
	Issuer string
	// Audiences must be non-empty; the token's "aud" (a string or an array) must contain at least
	// one of them.
	Audiences []string
	// Algorithms is the "alg" allow-list. Default {"ES256"}. Only ES256, ES384, ES512, EdDSA,
	// PS256, PS384, PS512, RS256, RS384 and RS512 may appear: New fails on "none", any HS*, or an
	// unknown name.
	Algorithms []string
	// Types are the allowed "typ" header values. Default {"at+jwt"} (RFC 9068). They are compared
	// case-insensitively and the "application/" prefix is optional on both sides (RFC 8725 §3.11).
	// An entry "" allows a token without "typ".
	Types []string
	// Leeway is the clock skew allowed for exp, nbf and iat. Zero means the default, 30s; New
	// rejects a negative leeway or one above 5m.
	Leeway time.Duration
	// MaxTokenBytes caps the token length; checked before any parsing. Default 8192.
	MaxTokenBytes int
	// MaxLifetime, when > 0, requires "iat" and "exp" and rejects tokens whose exp-iat exceeds it
	// (client assertions use this).
	MaxLifetime time.Duration
	// RequiredClaims are extra claims that must be present and not null, e.g. "jti", "sub",
	// "iat". "exp" is always required.
	RequiredClaims []string
	// Keys supplies the public keys (required).
	Keys KeySource
	// CacheSize, when > 0, enables a cache of verified tokens holding at most this many entries.
	// A cached token skips parsing and the signature check, but exp and nbf are checked again on
	// every hit. Trade-off: a key removed from the key source keeps validating the tokens it
	// already verified for up to CacheTTL.
	CacheSize int
	// CacheTTL is the longest life of a cache entry (default 1m); an entry never outlives the
	// token's exp.
	CacheTTL time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Logger receives the reason a request was refused by Middleware (never the token itself).
	// Default: discard.
	Logger *slog.Logger
}

// Verifier checks JWTs against a Config. It is safe for concurrent use; build it once with New.
type Verifier struct {
	issuer      string
	audiences   []string
	algs        []jose.SignatureAlgorithm
	types       []string // normalized: lower case, no "application/" prefix
	allowNoType bool
	leeway      time.Duration
	maxBytes    int
	maxLifetime time.Duration
	required    []string
	keys        KeySource
	cache       *tokenCache
	now         func() time.Time
	log         *slog.Logger
}

// New checks cfg, applies the defaults and returns a Verifier. Every problem is reported at once.
func New(cfg Config) (*Verifier, error) {
	var errs []error
	v := &Verifier{
		issuer:      cfg.Issuer,
		leeway:      cfg.Leeway,
		maxBytes:    cfg.MaxTokenBytes,
		maxLifetime: cfg.MaxLifetime,
		keys:        cfg.Keys,
		now:         cfg.Now,
		log:         cfg.Logger,
	}
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	}
	if len(cfg.Audiences) == 0 {
		errs = append(errs, errors.New("at least one audience is required"))
	}
	for _, a := range cfg.Audiences {
		if a == "" {
			errs = append(errs, errors.New("audiences: empty value"))
			continue
		}
		v.audiences = append(v.audiences, a)
	}

	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = []string{"ES256"}
	}
	for _, a := range algs {
		alg, ok := supportedAlgorithms[a]
		switch {
		case !ok && (strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS")):
			errs = append(errs, fmt.Errorf("algorithms: %q can never be allowed (asymmetric signatures only)", a))
		case !ok:
			errs = append(errs, fmt.Errorf("algorithms: unknown algorithm %q", a))
		default:
			if !containsAlg(v.algs, alg) {
				v.algs = append(v.algs, alg)
			}
		}
	}

	types := cfg.Types
	if len(types) == 0 {
		types = []string{DefaultType}
	}
	for _, t := range types {
		if t == "" {
			v.allowNoType = true
			continue
		}
		v.types = append(v.types, strings.ToLower(trimApplication(t)))
	}

	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		errs = append(errs, errors.New("leeway must not be negative"))
	case v.leeway > MaxLeeway:
		errs = append(errs, fmt.Errorf("leeway %v exceeds the maximum %v", v.leeway, MaxLeeway))
	}
	switch {
	case v.maxBytes == 0:
		v.maxBytes = DefaultMaxTokenBytes
	case v.maxBytes < 0:
		errs = append(errs, errors.New("max token bytes must not be negative"))
	}
	if v.maxLifetime < 0 {
		errs = append(errs, errors.New("max lifetime must not be negative"))
	}
	for _, c := range cfg.RequiredClaims {
		if c == "" {
			errs = append(errs, errors.New("required claims: empty name"))
			continue
		}
		v.required = append(v.required, c)
	}
	if cfg.Keys == nil {
		errs = append(errs, errors.New("a key source is required"))
	}
	if cfg.CacheSize < 0 {
		errs = append(errs, errors.New("cache size must not be negative"))
	}
	ttl := cfg.CacheTTL
	switch {
	case ttl == 0:
		ttl = DefaultCacheTTL
	case ttl < 0:
		errs = append(errs, errors.New("cache TTL must not be negative"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("jwtverify: invalid config: %w", errors.Join(errs...))
	}
	if cfg.CacheSize > 0 {
		v.cache = newTokenCache(cfg.CacheSize, ttl)
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	return v, nil
}

func containsAlg(algs []jose.SignatureAlgorithm, alg jose.SignatureAlgorithm) bool {
	for _, a := range algs {
		if a == alg {
			return true
		}
	}
	return false
}

// trimApplication drops a leading "application/" (any case) from a media type.
func trimApplication(t string) string {
	const prefix = "application/"
	if len(t) >= len(prefix) && asciiEqualFold(t[:len(prefix)], prefix) {
		return t[len(prefix):]
	}
	return t
}

// asciiEqualFold compares media type names as RFC 2045 and RFC 7515 §4.1.9 do: case-insensitive
// in ASCII only. strings.EqualFold would also fold Unicode, so "ſ" would pass for "s" and the
// Kelvin sign for "k".
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
