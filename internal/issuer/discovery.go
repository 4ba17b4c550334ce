package issuer

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/oauth"
)

// authMethods are the client authentication methods every endpoint accepts; /token,
// /revoke and /par also accept none (public clients), /introspect never does.
var authMethods = []string{oauth.AuthSecretBasic, oauth.AuthSecretPost, oauth.AuthPrivateKey}

func (s *Server) buildMetadata() {
	u := s.cfg.URL
	scopes := make([]string, 0, len(s.scopes))
	claims := []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "at_hash"}
	for name, sc := range s.scopes {
		scopes = append(scopes, name)
		for _, c := range sc.Claims {
			if !slices.Contains(claims, c) {
				claims = append(claims, c)
			}
		}
	}
	slices.Sort(scopes)
	slices.Sort(claims)
	s.meta = oauth.Metadata{
		Issuer:                            u,
		AuthorizationEndpoint:             u + PathAuthorize,
		TokenEndpoint:                     u + PathToken,
		JWKSURI:                           u + PathJWKS,
		UserinfoEndpoint:                  u + PathUserinfo,
		ScopesSupported:                   scopes,
		ResponseTypesSupported:            []string{"code"},
		ResponseModesSupported:            []string{"query"},
		GrantTypesSupported:               []string{"authorization_code", "client_credentials", "refresh_token"},
		TokenEndpointAuthMethodsSupported: append(slices.Clone(authMethods), oauth.AuthNone),
		TokenEndpointAuthSigningAlgValuesSupported: []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"},
		IntrospectionEndpoint:                      u + PathIntrospect,
		IntrospectionEndpointAuthMethodsSupported:  authMethods,
		IntrospectionSigningAlgValuesSupported:     keys.Algorithms,
		RevocationEndpoint:                         u + PathRevoke,
		RevocationEndpointAuthMethodsSupported:     append(slices.Clone(authMethods), oauth.AuthNone),
		SubjectTypesSupported:                      []string{"public"},
		IDTokenSigningAlgValuesSupported:           keys.Algorithms,
		CodeChallengeMethodsSupported:              []string{"S256"},
		PushedAuthorizationRequestEndpoint:         u + PathPAR,
		AuthorizationResponseIssParameterSupported: true,
		EndSessionEndpoint:                         u + PathLogout,
		ClaimsSupported:                            claims,
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
