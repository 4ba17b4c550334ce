// Package oauth is the protocol vocabulary the issuer speaks: RFC 6749 error codes and the
// two-faced Error (public code and description, private cause), strict form parsing,
// client-authentication parsing, and the RFC 8414 metadata document. Pure values and
// parsing; no storage and no key material.
package oauth
