// Package gateway is the edge proxy: the only door from outside. Every request takes the same
// path, deny by default:
//
//	normalise path (ambiguous → 400) → match host, path, method (404, 405 + Allow)
//	→ CORS preflight (answered here) → body limit (413)
//	→ authenticate with the route's one method: oauth (opaque token → phantom JWT via
//	  tokencheck), jwt (at+jwt verified locally), mtls (client certificate) or public;
//	  credentials of another kind are refused (400/401)
//	→ scopes (403 insufficient_scope) → CEL policies (403)
//	→ rewrite (strip/add prefix, hygiene headers, Authorization: Bearer <JWT>)
//	→ httputil.ReverseProxy (Rewrite, never Director) → upstream over HTTPS
//	→ response hygiene (Server/X-Powered-By removed, nosniff, HSTS, no-store), access log,
//	  metrics
//
// Errors the gateway makes are RFC 9457 problem+json with the request id and nothing about
// internals; upstream failures are 502/504. Routes are compiled once per configuration into
// an immutable table held by an atomic pointer: Reload swaps it whole, and a request in flight
// finishes on the table it started with.
package gateway
