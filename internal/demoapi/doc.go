// Package demoapi is the demo orders API that `portcullis demo` runs behind the gateway. It
// shows what an API behind Portcullis still does itself: it verifies every request's at+jwt
// with jwtverify (so a request that slipped past the gateway fails here too), checks scopes,
// decides per object with a CEL policy who may see an order, validates bodies strictly and
// shares only the fields the caller's scopes allow.
//
// The flow of a request:
//
//	security headers ─► clean path? ─► bearer at+jwt ─► jwtverify.Verifier.Verify ─► route
//	     ─► scope ─► customer_id claim ─► store ─► ownership policy (CEL, per order) ─► view
//
// Every request must carry a valid token, whatever its path: without one the answer is 401
// with `WWW-Authenticate: Bearer` even for a path that does not exist, so the API tells an
// anonymous caller nothing about its routes. Every error is RFC 9457 problem+json.
//
// Routes:
//
//	GET  /api/orders        orders:read   the caller's orders (customer_id claim)
//	GET  /api/orders/{id}   orders:read   one order; another customer's order is a 404,
//	                                      identical to a missing one (no enumeration oracle)
//	POST /api/orders        orders:write  create an order for the caller's customer_id
//	GET  /api/whoami        any scope     the token's claims and the request headers as seen
//	                                      here, credentials (Authorization, Cookie) left out
//	GET  /internal/reports  reports:read  order counts per customer, for internal services
//
// A missing scope is 403 with `Bearer error="insufficient_scope"`; a token without a
// customer_id string claim is 403 on the orders routes. A wrong method is 405 with Allow; any
// other path 404.
//
// # Sharing only what is needed
//
// An order holds customer-facing fields (id, customer, item, quantity, total, currency,
// status, created_at) and internal ones (internal_margin, shipping_address). The rule:
//
//   - Internal fields never leave the API, whatever the scopes: responses are built from view
//     types that do not have them, never from the stored record.
//   - orders:read shows the customer-facing fields of the caller's own orders.
//   - A caller with orders:write but without orders:read gets, for the order it creates, only
//     a receipt: id, item, quantity and status — what it sent plus the id. It may place
//     orders, not read them, so it does not learn the prices (total, currency) or anything
//     else the store knows.
//
// # Bodies
//
// POST /api/orders takes exactly one JSON object `{"item": string, "quantity": integer}`:
// Content-Type application/json (charset utf-8 at most; else 415), at most 16 KiB (413),
// field names exact (case-sensitive) and unique, no unknown fields, no trailing data, item 1 to
// 100 characters without control characters, quantity 1 to 1000. Anything else is a 400 that
// names the field and never echoes the input. The customer always comes from the token: a body
// that names one is refused as an unknown field, so it cannot place an order for someone else.
//
// The store is in memory, safe for concurrent use and bounded: past Options.MaxOrders created
// orders in all, or MaxOrdersPerCustomer for one customer, creating answers 507.
package demoapi
