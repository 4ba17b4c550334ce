package issuer_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/jwtverify"
)

const mediaIntrospectionJWT = "application/token-introspection+jwt"

// inactive is the only answer for a token the caller may not see as active (RFC 7662 §2.2).
const inactive = `{"active":false}`

func TestIntrospectJSON(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t, basicApp, "orders:read")
	jwtTok := h.token(t, internalSvc, "")
	now := h.clock.Now()

	for _, tt := range []struct {
		name, caller, tok string
		want              map[string]any
	}{
		{"resource server sees any token", resource, tok, map[string]any{
			"active": true, "token_type": "Bearer", "iss": h.url, "sub": basicApp, "aud": h.url,
			"client_id": basicApp, "scope": "orders:read", "customer_id": "acme",
			"iat": float64(now.Unix()), "exp": float64(now.Add(5 * time.Minute).Unix()), "jti": tokenHash(tok),
		}},
		{"a client sees its own token", basicApp, tok, nil},
		{"a JWT access token", resource, jwtTok, map[string]any{
			"active": true, "token_type": "Bearer", "iss": h.url, "sub": internalSvc, "aud": h.url,
			"client_id": internalSvc, "scope": "reports:read", "team": "reports",
			"iat": float64(now.Unix()), "exp": float64(now.Add(5 * time.Minute).Unix()), "jti": tokenHash(jwtTok),
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := h.introspect(t, tt.caller, tt.tok, "")
			if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
			}
			got := r.json(t)
			if got["active"] != true {
				t.Fatalf("not active: %s", r.body)
			}
			if tt.want != nil {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("introspection (-want +got):\n%s", diff)
				}
			}
			if _, ok := got["phantom_jwt"]; ok {
				t.Error("a JSON response carries phantom_jwt")
			}
		})
	}
}

// TestIntrospectInactive: everything that is not an active access token the caller may see
// gets exactly {"active":false}, byte for byte, whatever the reason.
func TestIntrospectInactive(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	revoked := h.token(t, basicApp, "")
	if r := h.post(t, "/revoke", url.Values{"token": {revoked}}, h.basic(basicApp)); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	globex := h.token(t, postApp, "")
	expiring := h.token(t, basicApp, "")
	// Records of other kinds with known hashes: a refresh token and an authorization code.
	now := h.clock.Now()
	for _, k := range []struct{ tok, kind string }{{"pcrt_refresh-token-for-test", store.KindRefresh}, {"pcac_code-for-test", store.KindCode}} {
		err := h.db.CreateToken(ctx, store.Token{Hash: tokenHash(k.tok), Kind: k.kind, Format: "opaque", ClientID: basicApp,
			Subject: "alice", IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
	}
	h.clock.Advance(5 * time.Minute) // expiring (and every token above) reaches exp
	fresh := h.token(t, postApp, "")

	tests := []struct{ name, caller, tok string }{
		{"unknown", resource, "pcat_" + strings.Repeat("A", 43)},
		{"garbage", resource, "not a token at all"},
		{"too long", resource, strings.Repeat("x", 10000)},
		{"revoked", resource, revoked},
		{"expired", resource, expiring},
		{"another client's token", basicApp, fresh},
		{"another client's expired token", basicApp, globex},
		{"refresh token", resource, "pcrt_refresh-token-for-test"},
		{"authorization code", resource, "pcac_code-for-test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.introspect(t, tt.caller, tt.tok, "")
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if got := strings.TrimSpace(string(r.body)); got != inactive {
				t.Errorf("body = %q, want %q", got, inactive)
			}
			if string(r.body) != inactive {
				t.Errorf("body = %q, want exactly %q", r.body, inactive)
			}
		})
	}
	// The owner itself may still ask about the fresh one.
	if got := h.post(t, "/introspect", url.Values{"token": {fresh}, "client_id": {postApp}, "client_secret": {h.secrets[postApp]}}, nil); got.json(t)["active"] != true {
		t.Errorf("owner's own fresh token: %s", got.body)
	}
}

// TestIntrospectJWT: with Accept: application/token-introspection+jwt the answer is an RFC
// 9701 JWT signed by the issuer for the caller; an introspect: true caller also gets the
// phantom at+jwt of an active opaque token.
func TestIntrospectJWT(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t, basicApp, "orders:read")
	revoked := h.token(t, basicApp, "")
	h.post(t, "/revoke", url.Values{"token": {revoked}}, h.basic(basicApp))

	tests := []struct {
		name        string
		caller, tok string
		accept      string
		wantActive  bool
		wantPhantom bool
	}{
		{"resource server gets the phantom token", resource, tok, mediaIntrospectionJWT, true, true},
		{"accept list with quality", resource, tok, "application/json;q=0.5, application/token-introspection+jwt", true, true},
		{"owner gets no phantom token", basicApp, tok, mediaIntrospectionJWT, true, false},
		{"inactive: no phantom token", resource, revoked, mediaIntrospectionJWT, false, false},
		{"another client's token", postApp, tok, mediaIntrospectionJWT, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r response
			if tt.caller == postApp { // post-app authenticates in the body
				r = h.post(t, "/introspect", url.Values{"token": {tt.tok}, "client_id": {postApp}, "client_secret": {h.secrets[postApp]}},
					map[string]string{"Accept": tt.accept})
			} else {
				r = h.introspect(t, tt.caller, tt.tok, tt.accept)
			}
			if r.status != http.StatusOK || r.header.Get("Content-Type") != mediaIntrospectionJWT {
				t.Fatalf("%d %q %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
			}
			// Verified with the one JWT library against the served JWKS: typ and aud = caller.
			v, err := jwtverify.New(jwtverify.Config{
				Issuer: h.url, Audiences: []string{tt.caller}, Types: []string{"token-introspection+jwt"},
				Keys: h.jwks, Now: h.clock.Now, RequiredClaims: []string{"iat"},
			})
			if err != nil {
				t.Fatal(err)
			}
			claims, err := v.Verify(t.Context(), string(r.body))
			if err != nil {
				t.Fatalf("introspection JWT does not verify: %v", err)
			}
			if claims.Type != "token-introspection+jwt" {
				t.Errorf("typ = %q", claims.Type)
			}
			// Another audience must not accept it (it is addressed to the caller only).
			other, _ := jwtverify.New(jwtverify.Config{Issuer: h.url, Audiences: []string{"someone-else"},
				Types: []string{"token-introspection+jwt"}, Keys: h.jwks, Now: h.clock.Now})
			if _, err := other.Verify(t.Context(), string(r.body)); err == nil {
				t.Error("introspection JWT verifies for another audience")
			}
			ti, ok := claims.Raw["token_introspection"].(map[string]any)
			if !ok {
				t.Fatalf("no token_introspection object: %v", claims.Raw)
			}
			if !tt.wantActive {
				if diff := cmp.Diff(map[string]any{"active": false}, ti); diff != "" {
					t.Errorf("token_introspection (-want +got):\n%s", diff)
				}
				return
			}
			if ti["active"] != true || ti["client_id"] != basicApp || ti["scope"] != "orders:read" || ti["customer_id"] != "acme" {
				t.Errorf("token_introspection = %v", ti)
			}
			phantom, has := ti["phantom_jwt"].(string)
			if has != tt.wantPhantom {
				t.Fatalf("phantom_jwt present = %v, want %v", has, tt.wantPhantom)
			}
			if !has {
				return
			}
			pc, err := h.verifier(t, h.url).Verify(t.Context(), phantom)
			if err != nil {
				t.Fatalf("phantom JWT does not verify as at+jwt: %v", err)
			}
			if pc.Type != "at+jwt" || pc.ClientID != basicApp || pc.Subject != basicApp || pc.ID != tokenHash(tok) {
				t.Errorf("phantom claims = %+v", pc)
			}
			if v, _ := pc.String("customer_id"); v != "acme" {
				t.Errorf("phantom customer_id = %q", v)
			}
			if !pc.Expiry.Equal(h.clock.Now().Add(5 * time.Minute)) {
				t.Errorf("phantom exp %v is not the opaque token's", pc.Expiry)
			}
		})
	}
}

// TestIntrospectJWTHeader checks the RFC 9701 JOSE header directly.
func TestIntrospectJWTHeader(t *testing.T) {
	h := newHarness(t)
	r := h.introspect(t, resource, h.token(t, basicApp, ""), mediaIntrospectionJWT)
	p, err := jose.ParseSigned(string(r.body), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	hdr := p.Signatures[0].Header
	if typ := hdr.ExtraHeaders["typ"]; typ != "token-introspection+jwt" {
		t.Errorf("typ = %v", typ)
	}
	if hdr.KeyID != h.keys.SigningKeyID() {
		t.Errorf("kid = %q", hdr.KeyID)
	}
	var payload map[string]json.RawMessage
	if err := json.Unmarshal(p.UnsafePayloadWithoutVerification(), &payload); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"iss", "aud", "iat", "token_introspection"} {
		if _, ok := payload[k]; !ok {
			t.Errorf("claim %s missing", k)
		}
	}
}

func TestIntrospectRequiresClientAuth(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t, basicApp, "")
	tests := []struct {
		name       string
		form       url.Values
		hdr        map[string]string
		wantStatus int
		wantErr    string
	}{
		{"no credentials", url.Values{"token": {tok}}, nil, 401, "invalid_client"},
		{"wrong secret", url.Values{"token": {tok}}, map[string]string{"Authorization": basicAuth(resource, "nope")}, 401, "invalid_client"},
		{"bearer token as credentials", url.Values{"token": {tok}}, map[string]string{"Authorization": "Bearer " + tok}, 401, "invalid_client"},
		{"client_id only", url.Values{"token": {tok}, "client_id": {resource}}, nil, 401, "invalid_client"},
		{"no token", url.Values{}, h.basic(resource), 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.post(t, "/introspect", tt.form, tt.hdr)
			if r.status != tt.wantStatus || r.json(t)["error"] != tt.wantErr {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tt.wantStatus, tt.wantErr)
			}
			if tt.wantStatus == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if strings.Contains(string(r.body), "active") {
				t.Errorf("refusal tells about the token: %s", r.body)
			}
		})
	}
	h.waitAudit(t, "client.auth_failed", resource, nil)
}

// TestIntrospectRefusesPublicClients: a public client (auth_method none) proves nothing
// about itself, so it cannot authenticate at /introspect — not even about its own tokens,
// and not when its stored registration says introspect: true (config validation refuses
// that, but a store may hold it). /revoke keeps accepting it for its own tokens (RFC 7009
// §2.1), and the metadata says which endpoint accepts none.
func TestIntrospectRefusesPublicClients(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	code, verifier, _ := h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid orders:read")
	own := h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)["access_token"].(string)
	code, verifier, _ = h.flow(t, h.browser(t), siConf, siConfRedirect, siAlice, "openid orders:read")
	other := h.redeem(t, siConf, code, siConfRedirect, verifier).jsonMap(t)["access_token"].(string)
	if _, err := h.db.UpdateClient(t.Context(), siOther, func(c store.Client) (store.Client, error) {
		c.Introspect = true
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	anon := &siBrowser{h: h, client: h.srv.Client()}
	for _, tt := range []struct{ name, client, token string }{
		{"public client, its own token", siWeb, own},
		{"public client with introspect: true, another client's token", siOther, other},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, accept := range []string{"", mediaIntrospectionJWT} {
				r := anon.do(t, http.MethodPost, "/introspect", url.Values{"client_id": {tt.client}, "token": {tt.token}}, map[string]string{"Accept": accept})
				if r.status != http.StatusUnauthorized || r.jsonMap(t)["error"] != "invalid_client" || strings.Contains(r.body, "active") {
					t.Errorf("Accept %q: %d %.300s", accept, r.status, r.body)
				}
			}
		})
	}
	t.Run("revocation keeps none", func(t *testing.T) {
		r := anon.do(t, http.MethodPost, "/revoke", url.Values{"client_id": {siWeb}, "token": {own}}, nil)
		if r.status != http.StatusOK {
			t.Fatalf("revoke as a public client: %d %s", r.status, r.body)
		}
		if h.active(t, own) {
			t.Error("the public client's token is still active after it revoked it")
		}
	})
	t.Run("metadata", func(t *testing.T) {
		m := anon.get(t, "/.well-known/openid-configuration").jsonMap(t)
		has := func(k, v string) bool {
			for _, x := range m[k].([]any) {
				if x == v {
					return true
				}
			}
			return false
		}
		if has("introspection_endpoint_auth_methods_supported", "none") {
			t.Error("introspection_endpoint_auth_methods_supported lists none")
		}
		if !has("revocation_endpoint_auth_methods_supported", "none") {
			t.Error("revocation_endpoint_auth_methods_supported lacks none")
		}
	})
}
