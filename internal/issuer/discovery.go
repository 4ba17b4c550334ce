package issuer

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/oauth"
)

// authMethods are the client authentication methods every endpoint accepts.
var authMethods = []string{oauth.AuthSecretBasic, oauth.AuthSecretPost, oauth.AuthPrivateKey}

func (s *Server) buildMetadata() {
	u := s.cfg.URL
	scopes := make([]string, 0, len(s.cfg.Scopes))
	for name := range s.cfg.Scopes {
		scopes = append(scopes, name)
	}
	slices.Sort(scopes)
	s.meta = oauth.Metadata{
		Issuer:                            u,
		TokenEndpoint:                     u + PathToken,
		JWKSURI:                           u + PathJWKS,
		ScopesSupported:                   scopes,
		ResponseTypesSupported:            []string{"code"},
		GrantTypesSupported:               []string{"client_credentials"},
		TokenEndpointAuthMethodsSupported: authMethods,
		TokenEndpointAuthSigningAlgValuesSupported: []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"},
		IntrospectionEndpoint:                      u + PathIntrospect,
		IntrospectionEndpointAuthMethodsSupported:  authMethods,
		IntrospectionSigningAlgValuesSupported:     keys.Algorithms,
		RevocationEndpoint:                         u + PathRevoke,
		RevocationEndpointAuthMethodsSupported:     authMethods,
		SubjectTypesSupported:                      []string{"public"},
		IDTokenSigningAlgValuesSupported:           keys.Algorithms,
	}
	s.metaJSON, _ = json.Marshal(s.meta) // plain strings and slices: cannot fail
}

// Metadata returns the RFC 8414 document.
func (s *Server) Metadata() oauth.Metadata { return s.meta }

// serveMetadata serves RFC 8414 metadata and OpenID Connect Discovery (one document).
func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("Access-Control-Allow-Origin", "*") // public metadata; browsers' OIDC libraries read it
	h.Set("Content-Length", strconv.Itoa(len(s.metaJSON)))
	_, _ = w.Write(s.metaJSON)
}
