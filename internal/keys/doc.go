// Package keys holds the issuer's key material: the master key (from which every server
// secret is derived), sealing with AES-256-GCM, and the signing-key lifecycle.
//
// Lifecycle of a signing key, all in the store so replicas agree:
//
//	created ──(publish_ahead)──► signs ──(successor signs)──► retired ──(longest token TTL + overlap)──► removed
//
// A key is in the JWKS from creation until removal, so verifiers learn it before the first
// token it signs and keep it until the last such token has expired.
package keys
