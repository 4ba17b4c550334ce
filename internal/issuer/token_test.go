package issuer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/jwtverify"
)

// TestClientCredentialsWithXOAuth2 gets tokens with golang.org/x/oauth2, a client nobody
// here wrote, with both secret-based methods.
func TestClientCredentialsWithXOAuth2(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name   string
		id     string
		style  oauth2.AuthStyle
		scopes []string
	}{
		{"basic", basicApp, oauth2.AuthStyleInHeader, []string{"orders:read"}},
		{"basic all scopes", basicApp, oauth2.AuthStyleInHeader, nil},
		{"post", postApp, oauth2.AuthStyleInParams, []string{"orders:read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := clientcredentials.Config{
				ClientID: tt.id, ClientSecret: h.secrets[tt.id], TokenURL: h.url + "/token",
				Scopes: tt.scopes, AuthStyle: tt.style,
			}
			ctx := context.WithValue(t.Context(), oauth2.HTTPClient, h.http)
			tok, err := cc.Token(ctx)
			if err != nil {
				t.Fatalf("x/oauth2 could not get a token: %v", err)
			}
			if tok.TokenType != "Bearer" {
				t.Errorf("token_type = %q, want Bearer", tok.TokenType)
			}
			if d := time.Until(tok.Expiry); d < 4*time.Minute || d > 6*time.Minute {
				t.Errorf("expires in %v, want the default 5m", d)
			}
			checkOpaque(t, tok.AccessToken)
			// The token works: its owner may introspect it.
			r := h.introspect(t, resource, tok.AccessToken, "")
			if got := r.json(t)["active"]; got != true {
				t.Errorf("fresh token not active: %s", r.body)
			}
			// The client sees the scope it got; without a scope parameter, all of its own.
			want := strings.Join(tt.scopes, " ")
			if tt.scopes == nil {
				want = "orders:read orders:write"
			}
			if got, _ := tok.Extra("scope").(string); got != want {
				t.Errorf("scope = %q, want %q", got, want)
			}
		})
	}
}

// checkOpaque checks the opaque token format: pcat_ then base64url of exactly 32 random
// bytes (256 bits), and nothing that parses as a JWT.
func checkOpaque(t *testing.T, tok string) {
	t.Helper()
	rest, ok := strings.CutPrefix(tok, "pcat_")
	if !ok {
		t.Fatalf("token %.10s... lacks the pcat_ prefix", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		t.Fatalf("token body is not base64url: %v", err)
	}
	if len(raw)*8 < 256 {
		t.Fatalf("token carries %d bits, want at least 256", len(raw)*8)
	}
	if strings.Count(tok, ".") != 0 {
		t.Fatalf("opaque token looks like a JWT")
	}
}

// TestOpaqueTokensStoredOnlyAsHash checks that the store holds the SHA-256 of each token and
// never the token: the raw database files do not contain it.
func TestOpaqueTokensStoredOnlyAsHash(t *testing.T) {
	h := newHarness(t)
	seen := map[string]bool{}
	var toks []string
	for range 20 {
		tok := h.token(t, basicApp, "orders:read")
		checkOpaque(t, tok)
		if seen[tok] {
			t.Fatalf("token issued twice")
		}
		seen[tok] = true
		toks = append(toks, tok)
	}
	var raw []byte
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(h.dbPath + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	if len(raw) == 0 {
		t.Fatal("no database bytes to inspect")
	}
	for _, tok := range toks {
		hash := tokenHash(tok)
		rec, err := h.db.GetToken(t.Context(), hash)
		if err != nil {
			t.Fatalf("record by SHA-256 of the token: %v", err)
		}
		if rec.ClientID != basicApp || rec.Kind != store.KindAccess || rec.Format != "opaque" {
			t.Errorf("record = %+v", rec)
		}
		if !bytes.Contains(raw, []byte(hash)) {
			t.Errorf("database files do not hold the token hash (test inspects the wrong files?)")
		}
		rest := strings.TrimPrefix(tok, "pcat_")
		if bytes.Contains(raw, []byte(rest)) {
			t.Errorf("database files contain the token itself")
		}
	}
}

// tokenHash recomputes the store's name for a token independently: unpadded base64url SHA-256.
func tokenHash(tok string) string { return events.TokenHash(tok) }

// TestJWTAccessTokens checks RFC 9068 tokens for internal clients, verified with jwtverify
// against the JWKS the issuer serves.
func TestJWTAccessTokens(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t, internalSvc, "")
	parsed, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("internal client did not get a JWS: %v", err)
	}
	hdr := parsed.Signatures[0].Header
	if typ, _ := hdr.ExtraHeaders["typ"].(string); typ != "at+jwt" {
		t.Errorf("typ = %q, want at+jwt", typ)
	}
	if hdr.KeyID == "" || hdr.KeyID != h.keys.SigningKeyID() {
		t.Errorf("kid = %q, want the current key %q", hdr.KeyID, h.keys.SigningKeyID())
	}
	claims, err := h.verifier(t, h.url).Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("jwtverify against the served JWKS: %v", err)
	}
	now := h.clock.Now()
	if claims.Issuer != h.url || claims.Subject != internalSvc || claims.ClientID != internalSvc {
		t.Errorf("iss/sub/client_id = %q/%q/%q", claims.Issuer, claims.Subject, claims.ClientID)
	}
	if diff := cmp.Diff([]string{h.url}, claims.Audience); diff != "" {
		t.Errorf("aud (-want +got):\n%s", diff)
	}
	if !claims.IssuedAt.Equal(now) || !claims.Expiry.Equal(now.Add(5*time.Minute)) {
		t.Errorf("iat/exp = %v/%v, want %v and 5m later", claims.IssuedAt, claims.Expiry, now)
	}
	if len(claims.ID) < 16 {
		t.Errorf("jti %q too short", claims.ID)
	}
	if diff := cmp.Diff([]string{"reports:read"}, claims.Scopes); diff != "" {
		t.Errorf("scope (-want +got):\n%s", diff)
	}
	if v, _ := claims.String("team"); v != "reports" {
		t.Errorf("team claim = %q, want reports (from the per-scope config)", v)
	}
	// The record is kept by hash like every other token, so it can be revoked and introspected.
	if _, err := h.db.GetToken(t.Context(), tokenHash(tok)); err != nil {
		t.Errorf("no record for the JWT: %v", err)
	}
	// Two tokens never share a jti.
	other, err := h.verifier(t, h.url).Verify(t.Context(), h.token(t, internalSvc, ""))
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == claims.ID {
		t.Errorf("two tokens share jti %q", claims.ID)
	}
}

// TestJWTOnlyForInternalClients: a client that is not internal gets an opaque token even if
// its stored record asks for JWTs (config validation refuses that; the minter must too).
func TestJWTOnlyForInternalClients(t *testing.T) {
	h := newHarness(t)
	_, err := h.db.UpdateClient(t.Context(), basicApp, func(c store.Client) (store.Client, error) {
		c.TokenFormat = "jwt"
		c.Internal = false
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkOpaque(t, h.token(t, basicApp, "orders:read"))
}

// TestRequestedScopes: scopes must be known and a subset of the client's, else invalid_scope.
func TestRequestedScopes(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name      string
		id        string
		scope     string
		wantScope string // granted, when wantErr is ""
		wantErr   string
	}{
		{"one of its scopes", basicApp, "orders:read", "orders:read", ""},
		{"both of its scopes", basicApp, "orders:write orders:read", "orders:write orders:read", ""},
		{"repeated scope once", basicApp, "orders:read orders:read", "orders:read", ""},
		{"none means all of its own", basicApp, "", "orders:read orders:write", ""},
		{"superset", basicApp, "orders:read reports:read", "", "invalid_scope"},
		{"another client's scope", postApp, "orders:write", "", "invalid_scope"},
		{"unknown scope", basicApp, "orders:admin", "", "invalid_scope"},
		{"builtin scope not registered", basicApp, "openid", "", "invalid_scope"},
		{"double space", basicApp, "orders:read  orders:write", "", "invalid_scope"},
		{"leading space", basicApp, " orders:read", "", "invalid_scope"},
		{"invalid characters", basicApp, `orders:"read"`, "", "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}}
			if tt.scope != "" {
				form.Set("scope", tt.scope)
			}
			var hdr map[string]string
			if tt.id == postApp {
				form.Set("client_id", postApp)
				form.Set("client_secret", h.secrets[postApp])
			} else {
				hdr = h.basic(tt.id)
			}
			r := h.post(t, "/token", form, hdr)
			body := r.json(t)
			if tt.wantErr != "" {
				if r.status != http.StatusBadRequest || body["error"] != tt.wantErr {
					t.Fatalf("got %d %s, want 400 %s", r.status, r.body, tt.wantErr)
				}
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			if body["scope"] != tt.wantScope {
				t.Errorf("scope = %v, want %q", body["scope"], tt.wantScope)
			}
			intro := h.introspect(t, resource, body["access_token"].(string), "").json(t)
			if intro["scope"] != tt.wantScope {
				t.Errorf("introspected scope = %v, want %q", intro["scope"], tt.wantScope)
			}
		})
	}
}

// TestClaimsOnlyFromConfig: a token asserts the claims its scopes name, with values from the
// client's config, and nothing a request sends.
func TestClaimsOnlyFromConfig(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name  string
		id    string
		scope string
		extra url.Values // parameters an attacker adds to the token request
		want  map[string]any
	}{
		{"scope names customer_id", basicApp, "orders:read", nil, map[string]any{"customer_id": "acme"}},
		{"other client, other value", postApp, "orders:read", nil, map[string]any{"customer_id": "globex"}},
		{"request tries to set claims", basicApp, "orders:write",
			url.Values{"customer_id": {"globex"}, "claims": {`{"customer_id":"globex"}`}, "sub": {"admin"}, "tier": {"platinum"}},
			map[string]any{"customer_id": "acme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {tt.scope}}
			for k, v := range tt.extra {
				form[k] = v
			}
			var hdr map[string]string
			if tt.id == postApp {
				form.Set("client_id", postApp)
				form.Set("client_secret", h.secrets[postApp])
			} else {
				hdr = h.basic(tt.id)
			}
			r := h.post(t, "/token", form, hdr)
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			got := h.introspect(t, resource, r.json(t)["access_token"].(string), "").json(t)
			for _, std := range []string{"active", "iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "token_type"} {
				delete(got, std)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("asserted claims (-want +got):\n%s", diff)
			}
		})
	}
	// basic-app's "tier" claim is configured but no scope names it: it never appears.
	tok := h.token(t, basicApp, "")
	if got := h.introspect(t, resource, tok, "").json(t); got["tier"] != nil || got["sub"] != basicApp {
		t.Errorf("introspection = %v", got)
	}
}

// TestTokenResponseHeaders: token responses are never cached and carry a request id.
func TestTokenResponseHeaders(t *testing.T) {
	h := newHarness(t)
	r := h.post(t, "/token", url.Values{"grant_type": {"client_credentials"}}, h.basic(basicApp))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for k, want := range map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Type": "application/json"} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if r.header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if diff := cmp.Diff([]string{"access_token", "expires_in", "scope", "token_type"}, keys); diff != "" {
		t.Errorf("response fields (-want +got):\n%s", diff)
	}
	h.waitAudit(t, "token.issued", basicApp, nil)
}

// TestRotationKeepsOldTokensVerifiable: after a rotation the old key stays in the JWKS, so a
// token it signed still verifies, while new tokens are signed by the new key once it signs.
func TestRotationKeepsOldTokensVerifiable(t *testing.T) {
	h := buildHarness(t, harnessOptions{accessTTL: time.Hour})
	oldKID := h.keys.SigningKeyID()
	oldTok := h.token(t, internalSvc, "")

	nk, err := h.keys.Rotate(t.Context(), keys.RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !servedKIDs(t, h)[nk.ID] {
		t.Fatalf("new key %s not in the JWKS right after rotation", nk.ID)
	}
	if kid := kidOf(t, h.token(t, internalSvc, "")); kid != oldKID {
		t.Fatalf("new key signs before publish_ahead passed (kid %s)", kid)
	}
	h.clock.Advance(h.cfg.Keys.PublishAhead)
	newTok := h.token(t, internalSvc, "")
	if kid := kidOf(t, newTok); kid != nk.ID {
		t.Fatalf("after publish_ahead the token is signed by %s, want the new key %s", kid, nk.ID)
	}
	kids := servedKIDs(t, h)
	if !kids[oldKID] || !kids[nk.ID] {
		t.Fatalf("JWKS %v must hold both keys", kids)
	}
	// A verifier that fetches the JWKS now accepts both tokens.
	v := freshVerifier(t, h)
	for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Errorf("%s token does not verify after rotation: %v", name, err)
		}
	}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	p, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	return p.Signatures[0].Header.KeyID
}

// servedKIDs fetches the JWKS over HTTPS and returns its key ids.
func servedKIDs(t *testing.T, h *harness) map[string]bool {
	t.Helper()
	r := h.do(t, http.MethodGet, "/jwks", "", nil, nil)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.body, &set); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Errorf("JWKS key %s is not public", k.KeyID)
		}
		out[k.KeyID] = true
	}
	return out
}

// freshVerifier is a verifier with its own, newly fetched copy of the JWKS.
func freshVerifier(t *testing.T, h *harness) *jwtverify.Verifier {
	t.Helper()
	r, err := jwtverify.NewRemoteJWKS(h.url+"/jwks", jwtverify.RemoteOptions{HTTPClient: h.http})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	v, err := jwtverify.New(jwtverify.Config{Issuer: h.url, Audiences: []string{h.url}, Keys: r, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
