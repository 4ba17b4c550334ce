// Package tokencheck answers the gateway's question "who is this bearer?".
//
// Two ways, one per route auth method:
//
//	opaque token ─► Cache (by SHA-256) ─hit─► Principal (phantom JWT + claims)
//	                   │ miss (concurrent misses share one call)
//	                   ▼
//	              Introspector ─► POST {issuer}/introspect as the gateway's client,
//	                              Accept: application/token-introspection+jwt (RFC 9701);
//	                              the signed answer is verified with jwtverify against the
//	                              issuer's JWKS, found through its RFC 8414 metadata
//
//	at+jwt ─► JWTVerifier (jwtverify, verified tokens cached by hash until exp) ─► Principal
//	          (a phantom JWT, marked "phantom": true, is refused; so is a JWT whose hash
//	          or jti a revocation named)
//
// A Principal carries the verified claims and the JWT the gateway forwards upstream: the
// phantom JWT for an opaque token, the token itself for a JWT. The opaque token never leaves
// the gateway.
//
// With a SharedStore (Redis, tokencheck/rediscache) a local miss first asks the cache that
// replicas share, then the issuer; fresh answers are stored there for the others:
//
//	local cache ─miss─► shared store ─miss─► issuer ─► store the sealed answer
//
// The shared store holds the issuer's signed answer, sealed (AES-GCM) under a key derived
// from the opaque token, which the store never sees. A read is used only if it opens under
// the presented token, its signature verifies, an active answer's jti is the token's hash,
// it was given after the last Resync, and it is younger than the local cache's bound. So
// write access to Redis can make a gateway ask the issuer again, never accept a token the
// issuer did not vouch for.
//
// Cached decisions end at the token's exp, at cache_max_ttl while the revocation feed (an
// events.Bus) is live, and at revocation_bound while it is not; a TokenRevoked event evicts
// at once and a Resync event flushes everything. Failures to reach the issuer are
// ErrUnavailable (the gateway answers 503), never a pass.
package tokencheck
