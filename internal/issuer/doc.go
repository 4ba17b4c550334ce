// Package issuer is the authorization-server surface: the only component that issues tokens
// or asserts claims. One file per endpoint:
//
//	discovery.go   GET  /.well-known/oauth-authorization-server, /.well-known/openid-configuration
//	jwks.go        GET  /jwks
//	(grant)        POST /token        — grant.Dispatcher: client auth → grant → token.Minter
//	introspect.go  POST /introspect   — RFC 7662, RFC 9701 signed responses with the phantom JWT
//	revoke.go      POST /revoke       — RFC 7009, announced on the event bus
//	par.go         POST /par          — RFC 9126 pushed authorization requests
//	userinfo.go    GET|POST /userinfo — OpenID Connect UserInfo
//
// User sign-in runs on the browser pages, which have their own mux and middleware (pages.go:
// CSP, CSRF, __Host- cookies, templates):
//
//	authorize.go   /authorize  — authrequest.go parses strictly; exact redirect_uri; PKCE S256
//	signin.go      /login → /login/otp → /consent → 303 redirect_uri?code&state&iss
//	logout.go      /logout     — RP-initiated logout (end_session_endpoint)
//
// Errors on OAuth endpoints are RFC 6749 §5.2 JSON; pages show an error page; everything else
// is problem+json. None says more than the code: the cause goes to the log with the request
// id.
package issuer
