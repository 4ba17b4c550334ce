// Package issuer is the authorization-server surface: the only component that issues tokens
// or asserts claims. One file per endpoint:
//
//	discovery.go   GET  /.well-known/oauth-authorization-server, /.well-known/openid-configuration
//	jwks.go        GET  /jwks
//	(grant)        POST /token        — grant.Dispatcher: client auth → grant → token.Minter
//	introspect.go  POST /introspect   — RFC 7662, RFC 9701 signed responses with the phantom JWT
//	revoke.go      POST /revoke       — RFC 7009, announced on the event bus
//
// Errors on OAuth endpoints are RFC 6749 §5.2 JSON; everything else is problem+json. Neither
// says more than the code: the cause goes to the log with the request id.
package issuer
