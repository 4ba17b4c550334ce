// Package jwtverify validates JWTs (RFC 7519) signed with asymmetric keys, and decides with CEL
// policies what a verified caller may do. It is the one JWT validation library of Portcullis —
// the gateway, the issuer (client assertions, JWT introspection responses), the demo API and any
// Go service use it — and it imports nothing of Portcullis.
//
// The flow:
//
//	token ─► Verifier.Verify ─► *Claims ─► Policy / PolicySet.Allow ─► allow | deny
//	             │
//	             └─ KeySource: StaticKeySet (a JWKS document or keys), RemoteJWKS (a JWKS URL,
//	                cached, refreshed in the background, rate-limited refetch on an unknown kid),
//	                or KeyFunc (keys fed in process)
//
// Verify runs every check in a fixed order and returns the first failure as a wrapped sentinel
// error (ErrTooLarge, ErrMalformed, ErrAlgorithm, …): size, compact structure, header (alg in an
// asymmetric allow-list, typ, no crit), key (looked up by kid only; jwk, jku, x5u and x5c header
// parameters are never used), signature, issuer, audience, exp/nbf/iat with leeway, lifetime and
// required claims. An optional cache of verified tokens, keyed by SHA-256 of the token, makes a
// repeated token cost a hash and a map lookup.
//
// For net/http, Verifier.Middleware authenticates bearer tokens and RequireScopes and
// PolicyMiddleware authorize; handlers call PolicySet.Allow for per-object decisions with the
// object's attributes as the policy's resource.
package jwtverify
