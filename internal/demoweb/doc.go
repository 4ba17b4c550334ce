// Package demoweb is the web application of `portcullis demo`: a confidential-looking but
// public client (demo-web, auth_method none) that signs people in with the authorization
// code flow and PKCE, entirely server-side, and shows who signed in and the orders they may
// see through the gateway.
//
//	GET  /app/          signed out: a sign-in button; signed in: name, orders, sign-out
//	GET  /app/login     state, nonce and PKCE verifier → 303 to the issuer's /authorize
//	GET  /app/callback  checks iss (RFC 9207) and state, redeems the code, verifies the ID
//	                    token with jwtverify (typ JWT or absent, aud demo-web, nonce), reads
//	                    /userinfo (same sub) → 303 /app/
//	POST /app/logout    ends the local session → the issuer's end_session_endpoint
//
// Tokens never reach the browser: it holds only an opaque session cookie. State lives in
// memory (bounded): this is a demo, not a token handler.
package demoweb
