package issuer_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/portcullis/portcullis/internal/issuer"
)

// TestCodeFlowWithGoOIDC: clients nobody here wrote (coreos/go-oidc discovery and ID token
// verification, golang.org/x/oauth2 with PKCE) complete the code flow against the real
// issuer over TLS; the forms are driven like a browser, parsing the CSRF field.
func TestCodeFlowWithGoOIDC(t *testing.T) {
	h := newSIHarness(t)
	ctx := oidc.ClientContext(t.Context(), h.srv.Client())
	provider, err := oidc.NewProvider(ctx, h.url)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, client, redirect string
	}{
		{"confidential client, client_secret_basic", siConf, siConfRedirect},
		{"public client, PKCE only", siWeb, siWebRedirect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oauth2.Config{ClientID: tc.client, ClientSecret: h.secrets[tc.client], Endpoint: provider.Endpoint(),
				RedirectURL: tc.redirect, Scopes: []string{oidc.ScopeOpenID, "profile", "email", "orders:read", oidc.ScopeOfflineAccess}}
			verifier, state, nonce := oauth2.GenerateVerifier(), "state-"+tc.client, "nonce-"+tc.client
			authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))
			if !strings.HasPrefix(authURL, h.url+issuer.PathAuthorize+"?") {
				t.Fatalf("discovery named authorization endpoint %s", authURL)
			}
			b := h.browser(t)
			r := b.get(t, authURL)
			page := b.follow(t, r)
			r = b.allow(t, b.signIn(t, page, siAlice, h.passwords[siAlice]))
			code := h.codeFrom(t, r, tc.redirect, state)
			// The registered redirect's own query survives next to code, state and iss.
			if want, _ := url.Parse(tc.redirect); want.RawQuery != "" && r.location(t).Query().Get("tenant") != "1" {
				t.Errorf("redirect lost its query: %s", r.location(t))
			}

			tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := provider.Verifier(&oidc.Config{ClientID: tc.client}).Verify(ctx, raw)
			if err != nil {
				t.Fatalf("go-oidc refused the ID token: %v", err)
			}
			if idt.Nonce != nonce || idt.Subject != h.users[siAlice].ID {
				t.Errorf("nonce %q sub %q", idt.Nonce, idt.Subject)
			}
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Errorf("at_hash: %v", err)
			}
			var c struct {
				AMR      []string `json:"amr"`
				ACR      string   `json:"acr"`
				AZP      string   `json:"azp"`
				AuthTime int64    `json:"auth_time"`
				Name     string   `json:"name"`
			}
			if err := idt.Claims(&c); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"pwd"}, c.AMR); diff != "" || c.ACR != "aal1" || c.AZP != tc.client || c.AuthTime != h.clock.Now().Unix() {
				t.Errorf("amr %v acr %q azp %q auth_time %d", c.AMR, c.ACR, c.AZP, c.AuthTime)
			}
			if c.Name != "" {
				t.Errorf("the ID token of the code flow carries profile claims (%q): they belong to /userinfo", c.Name)
			}
			if !strings.HasPrefix(tok.AccessToken, "pcat_") || !strings.HasPrefix(tok.RefreshToken, "pcrt_") {
				t.Errorf("tokens %.8s… %.8s…", tok.AccessToken, tok.RefreshToken)
			}

			info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatal(err)
			}
			var claims map[string]any
			if err := info.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"sub": h.users[siAlice].ID, "name": "Alice Liddell", "preferred_username": "alice",
				"email": "alice@acme.example", "email_verified": true, "customer_id": "acme"}
			if diff := cmp.Diff(want, claims); diff != "" {
				t.Errorf("userinfo (-want +got):\n%s", diff)
			}

			// x/oauth2 refreshes through the rotation: a new refresh token every time.
			old := *tok
			old.Expiry = h.clock.Now().Add(-1) // force a refresh
			next, err := cfg.TokenSource(ctx, &old).Token()
			if err != nil {
				t.Fatal(err)
			}
			if next.RefreshToken == tok.RefreshToken || next.AccessToken == tok.AccessToken {
				t.Error("refresh did not rotate")
			}
		})
	}
}

// TestDiscoveryForSignIn: the metadata names every sign-in endpoint and capability.
func TestDiscoveryForSignIn(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	m := b.get(t, "/.well-known/openid-configuration").jsonMap(t)
	for k, v := range map[string]string{
		"authorization_endpoint":                h.url + "/authorize",
		"userinfo_endpoint":                     h.url + "/userinfo",
		"end_session_endpoint":                  h.url + "/logout",
		"pushed_authorization_request_endpoint": h.url + "/par",
	} {
		if m[k] != v {
			t.Errorf("%s = %v, want %s", k, m[k], v)
		}
	}
	list := func(k string) []string {
		var out []string
		for _, x := range m[k].([]any) {
			out = append(out, x.(string))
		}
		return out
	}
	for k, want := range map[string][]string{
		"code_challenge_methods_supported": {"S256"},
		"response_types_supported":         {"code"},
		"response_modes_supported":         {"query"},
		"subject_types_supported":          {"public"},
	} {
		if diff := cmp.Diff(want, list(k)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", k, diff)
		}
	}
	for k, need := range map[string][]string{
		"grant_types_supported":                 {"authorization_code", "refresh_token", "client_credentials"},
		"scopes_supported":                      {"openid", "profile", "email", "offline_access", "orders:read"},
		"claims_supported":                      {"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "at_hash", "name", "email", "customer_id"},
		"id_token_signing_alg_values_supported": {"ES256"},
		"token_endpoint_auth_methods_supported": {"none", "client_secret_basic"},
	} {
		for _, n := range need {
			if !slices.Contains(list(k), n) {
				t.Errorf("%s lacks %s: %v", k, n, list(k))
			}
		}
	}
	if m["authorization_response_iss_parameter_supported"] != true {
		t.Error("authorization_response_iss_parameter_supported is not true")
	}
	if r := b.get(t, "/.well-known/oauth-authorization-server"); r.status != http.StatusOK || !strings.Contains(r.body, `"authorization_endpoint"`) {
		t.Errorf("RFC 8414 document: %d", r.status)
	}
}
