package issuer_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/issuer"
)

// TestUserinfoScopes: /userinfo answers sub plus the claims of the token's scopes, from the
// central claims config only; it needs an active user token with openid.
func TestUserinfoScopes(t *testing.T) {
	h := newSIHarness(t)
	alice := h.users[siAlice].ID
	tokenFor := func(scope string) string {
		code, verifier, _ := h.flow(t, h.browser(t), siWeb, siWebRedirect, siAlice, scope)
		return h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)["access_token"].(string)
	}
	get := func(method, tok string) siResp {
		b := &siBrowser{h: h, client: h.srv.Client()}
		hdr := map[string]string{}
		if tok != "" {
			hdr["Authorization"] = "Bearer " + tok
		}
		var form url.Values
		if method == http.MethodPost {
			form = url.Values{}
		}
		return b.do(t, method, issuer.PathUserinfo, form, hdr)
	}
	for _, tt := range []struct {
		name  string
		scope string
		want  map[string]any
	}{
		{"openid only", "openid", map[string]any{"sub": alice}},
		{"profile", "openid profile", map[string]any{"sub": alice, "name": "Alice Liddell", "preferred_username": "alice"}},
		{"email", "openid email", map[string]any{"sub": alice, "email": "alice@acme.example", "email_verified": true}},
		{"configured scope", "openid orders:read", map[string]any{"sub": alice, "customer_id": "acme"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := tokenFor(tt.scope)
			for _, m := range []string{http.MethodGet, http.MethodPost} {
				r := get(m, tok)
				if r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-store" {
					t.Fatalf("%s: %d %s", m, r.status, r.body)
				}
				if diff := cmp.Diff(tt.want, r.jsonMap(t)); diff != "" {
					t.Errorf("%s (-want +got):\n%s", m, diff)
				}
			}
		})
	}
	t.Run("no openid scope", func(t *testing.T) {
		r := get(http.MethodGet, tokenFor("orders:read"))
		if r.status != http.StatusForbidden || !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_scope") {
			t.Errorf("%d %q", r.status, r.header.Get("WWW-Authenticate"))
		}
	})
	t.Run("a client's own token", func(t *testing.T) {
		tok := h.token(t, siMachine, url.Values{"grant_type": {"client_credentials"}, "scope": {"openid orders:read"}}).jsonMap(t)["access_token"].(string)
		if r := get(http.MethodGet, tok); r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	for name, tok := range map[string]string{"no token": "", "unknown token": "pcat_nothing", "a refresh token": "pcrt_x"} {
		t.Run(name, func(t *testing.T) {
			if r := get(http.MethodGet, tok); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%d %q", r.status, r.header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("wrong method", func(t *testing.T) {
		if r := (&siBrowser{h: h, client: h.srv.Client()}).do(t, http.MethodDelete, issuer.PathUserinfo, nil, nil); r.status != http.StatusMethodNotAllowed {
			t.Errorf("%d", r.status)
		}
	})
}
