package issuer

import (
	"net/http"
	"strconv"
)

// jwksMaxAge is how long verifiers may cache the JWKS. It must stay well below the keys'
// publish_ahead so every verifier has fetched a new key before it signs; config validation
// keeps publish_ahead at least this long.
const jwksMaxAge = 300

// serveJWKS serves the public signing keys with Cache-Control and an ETag.
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	body, etag := s.o.Keys.JWKS()
	h := w.Header()
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(jwksMaxAge))
	h.Set("ETag", etag)
	h.Set("Access-Control-Allow-Origin", "*")
	if match := r.Header.Get("If-None-Match"); match != "" && match == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}
