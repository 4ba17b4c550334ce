// Package web is the HTTP plumbing every Portcullis surface shares: servers with timeouts
// and TLS, request ids, panic recovery, security headers, access logs, client IPs and RFC
// 9457 problem+json. It knows nothing about OAuth.
//
// A surface wraps its mux as WithRequestID(Recover(AccessLog(SecurityHeaders(mux)))) so every
// response, even a panic's, carries a request id and says nothing about internals.
package web
