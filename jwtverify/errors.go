package jwtverify

import "errors"

// Sentinel errors, one per check. Verify returns them wrapped with a short detail, so compare with
// errors.Is. Verify reports the first failing check in this fixed order:
//
//	size → structure → header (alg, typ, crit) → key → signature → claims decoding →
//	issuer → audience → time (exp, nbf, iat, lifetime) → required claims
//
// The payload is decoded only after its signature has been verified, so a signed payload that is
// not a JSON object, or a registered claim of the wrong JSON type, is reported as ErrMalformed at
// the "claims decoding" step, after the signature.
var (
	// ErrTooLarge: the token is longer than Config.MaxTokenBytes. Checked before any parsing.
	ErrTooLarge = errors.New("jwtverify: token too large")
	// ErrMalformed: not a JWS in compact serialization (three canonical base64url segments, a JSON
	// header go-jose accepts), or a signed payload that is not a JSON object with well-typed
	// registered claims.
	ErrMalformed = errors.New("jwtverify: malformed token")
	// ErrAlgorithm: the header "alg" is not in Config.Algorithms, or the key named by "kid" does
	// not fit it (key type, curve or size, or the key declares another "alg").
	ErrAlgorithm = errors.New("jwtverify: algorithm not allowed")
	// ErrType: the header "typ" is not one of Config.Types.
	ErrType = errors.New("jwtverify: token type not allowed")
	// ErrCritical: the header carries "crit" (no extension is understood) or the RFC 7797 "b64"
	// parameter.
	ErrCritical = errors.New("jwtverify: unsupported critical header")
	// ErrKeyNotFound: the key source has no usable key for the token. Also wrapped (together with
	// ErrKeysUnavailable) when the key source could not be consulted.
	ErrKeyNotFound = errors.New("jwtverify: no matching key")
	// ErrSignature: no candidate key verifies the signature.
	ErrSignature = errors.New("jwtverify: invalid signature")
	// ErrIssuer: "iss" is missing or differs from Config.Issuer.
	ErrIssuer = errors.New("jwtverify: issuer mismatch")
	// ErrAudience: "aud" is missing or names none of Config.Audiences.
	ErrAudience = errors.New("jwtverify: audience mismatch")
	// ErrExpired: "exp" is at or before now minus the leeway.
	ErrExpired = errors.New("jwtverify: token expired")
	// ErrNotYetValid: "nbf" is after now plus the leeway.
	ErrNotYetValid = errors.New("jwtverify: token not yet valid")
	// ErrIssuedInFuture: "iat" is after now plus the leeway.
	ErrIssuedInFuture = errors.New("jwtverify: token issued in the future")
	// ErrLifetime: "exp" minus "iat" exceeds Config.MaxLifetime.
	ErrLifetime = errors.New("jwtverify: token lifetime too long")
	// ErrMissingClaim: a claim that must be present is absent ("exp" always; "iat" when
	// Config.MaxLifetime is set; every name in Config.RequiredClaims).
	ErrMissingClaim = errors.New("jwtverify: required claim missing")

	// ErrKeysUnavailable is wrapped together with ErrKeyNotFound when a key source could not be
	// consulted (a JWKS that was never fetched, or is stale beyond RemoteOptions.MaxStale, or a
	// KeyFunc that failed). It marks a server-side failure, not a bad token: the middleware answers
	// 503 for it instead of 401.
	ErrKeysUnavailable = errors.New("jwtverify: key source unavailable")
)

// errClaims marks a payload that failed to decode after its signature was verified. It is always
// wrapped together with ErrMalformed; tests use it to tell "signature accepted" apart.
var errClaims = errors.New("claims")
