// Package gateway is the edge proxy: the only door from outside. Every request takes the same
// path, deny by default:
//
//	Listener: TLS handshake; h2 → http.Server as is; HTTP/1.x (and plain HTTP) through a
//	  strict framing validator that holds each head back until it has judged it
//	→ refused framing (CL+TE, duplicate CL, obs-fold, TE other than chunked, bad chunk,
//	  bare LF/CR, space before colon, ...) → 400 and the connection closed
//	→ request headers whose names contain '_' dropped (CGI servers fold '_' and '-')
//	→ gateway.ip_filter and the block list of addresses (403)
//	→ normalise path (ambiguous → 400) → match host, path, method (404, 405 + Allow)
//	→ the route's ip_filter (403) → CORS preflight (answered here) → body limit (413)
//	→ per-ip and per-header rate limits (429; 503 when shared limits are down, fail closed)
//	→ authenticate with the route's one method: oauth (opaque token → phantom JWT via
//	  tokencheck), jwt (at+jwt verified locally), mtls (client certificate) or public;
//	  credentials of another kind are refused; a 401 feeds the auth-failure detector
//	→ scopes (403 insufficient_scope) → CEL policies (403)
//	→ blocked client (403) → per-client and per-subject limits and quotas (429)
//	→ rewrite (strip/add prefix, hygiene headers, Authorization: Bearer <JWT>)
//	→ httputil.ReverseProxy (Rewrite, never Director) → upstream over HTTPS
//	→ response hygiene (Server/X-Powered-By and upstream CORS removed, nosniff, HSTS,
//	  no-store; RateLimit-Policy and RateLimit on limited routes), access log, metrics
//	→ on routes with enumeration: 404s/403s and object ids feed the enumeration detectors
//
// limits.go has the limits stage; the limiter and the abuse detector come from Options
// (memory, or Redis shared by replicas) and outlive reloads, so a reload forgets no count.
//
// Refusals, all RFC 9457 problem+json with the request id and nothing about internals:
//
//	400  ambiguous HTTP/1.x framing (request smuggling; the connection is closed);
//	     ambiguous or malformed path; on oauth/jwt routes a client certificate, two
//	     Authorization headers or access_token in the URL (Bearer error="invalid_request");
//	     on mtls routes any Authorization header
//	401  oauth/jwt: no bearer token or another scheme (Bearer), a bad, unknown, expired or
//	     revoked token, a JWT on an oauth route, an opaque token or a phantom JWT on a jwt
//	     route, a token for another audience (Bearer error="invalid_token")
//	403  missing scope (Bearer error="insufficient_scope", scope="..."), a policy said no,
//	     mtls without an allowed client certificate, a refused CORS preflight, an address
//	     denied or blocked, a blocked client (the last three with the policy's body)
//	404  no route; 405 no route for the method (Allow lists those that exist)
//	413  body over the route's max_body, declared or streamed
//	429  a rate limit or quota (Retry-After, RateLimit-Policy, RateLimit)
//	431  request head too large
//	502  upstream failed; 503 the issuer or the shared limits cannot be consulted;
//	504  upstream timeout
//
// Routes are compiled once per configuration into an immutable table held by an atomic
// pointer: Reload swaps it whole, and a request in flight finishes on the table it started
// with.
package gateway
