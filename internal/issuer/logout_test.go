package issuer_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/issuer"
	"github.com/portcullis/portcullis/internal/store"
)

const stateMarker = "st4te-m4rker"

// logoutURL is /logout with the given parameters.
func logoutURL(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return "/logout?" + q.Encode()
}

// checkSignedOutPage: the signed-out page, no redirect, and nothing of the request echoed.
func checkSignedOutPage(t *testing.T, r siResp, echo ...string) {
	t.Helper()
	if r.status != http.StatusOK || r.header.Get("Location") != "" || !strings.Contains(r.body, "You are signed out") {
		t.Errorf("want the signed-out page without redirect; got %d Location %q: %.300s", r.status, r.header.Get("Location"), r.body)
	}
	checkNotEchoed(t, r, echo...)
}

// checkNotEchoed: none of the strings appears in the page or its headers.
func checkNotEchoed(t *testing.T, r siResp, echo ...string) {
	t.Helper()
	for _, s := range echo {
		if strings.Contains(r.body, s) {
			t.Errorf("the page echoes %q: %.400s", s, r.body)
		}
		for k, vs := range r.header {
			for _, v := range vs {
				if strings.Contains(v, s) {
					t.Errorf("header %s echoes %q: %s", k, s, v)
				}
			}
		}
	}
}

// signedIn reports whether the browser's issuer session still works.
func signedIn(t *testing.T, h *siHarness, b *siBrowser) bool {
	t.Helper()
	_, challenge := pkce()
	l := b.get(t, "/authorize?"+h.authParams(siWeb, siWebRedirect, challenge, "openid").Encode()).header.Get("Location")
	return !strings.HasPrefix(l, issuer.PathLogin+"?")
}

// TestLogoutRefusesUnregisteredRedirects: post_logout_redirect_uri is followed only when it is
// exactly one of the client's post_logout_redirect_uris. The client's sign-in redirect_uri,
// another client's post-logout URI, near misses and foreign sites are open-redirect attempts:
// the person still signs out, ends on the signed-out page, and state is not echoed.
func TestLogoutRefusesUnregisteredRedirects(t *testing.T) {
	h := newSIHarness(t)
	targets := map[string]string{
		"the client's sign-in redirect_uri": siWebRedirect,
		"another client's post-logout uri":  siOtherSignedOut,
		"foreign site":                      "https://evil.example/",
		"trailing slash":                    siWebSignedOut + "/",
		"query added":                       siWebSignedOut + "?next=https://evil.example",
		"path extended":                     siWebSignedOut + "/../../evil",
		"scheme in capitals":                "HTTPS://web.example/signed-out",
		"default port spelled out":          "https://web.example:443/signed-out",
		"scheme downgraded":                 "http://web.example/signed-out",
		"javascript":                        "javascript:alert(1)",
	}
	for name, target := range targets {
		t.Run(name+", no session", func(t *testing.T) {
			r := h.browser(t).get(t, logoutURL("client_id", siWeb, "post_logout_redirect_uri", target, "state", stateMarker))
			checkSignedOutPage(t, r, stateMarker, target)
		})
	}

	t.Run("sign-in redirect_uri, with id_token_hint", func(t *testing.T) {
		b := h.browser(t)
		code, verifier, _ := h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid")
		idToken := h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)["id_token"].(string)
		r := b.get(t, logoutURL("id_token_hint", idToken, "post_logout_redirect_uri", siWebRedirect, "state", stateMarker))
		checkSignedOutPage(t, r, stateMarker)
		if signedIn(t, h, b) {
			t.Error("the hint was valid, yet the session survived")
		}
	})
	t.Run("sign-in redirect_uri, confirmed on the page", func(t *testing.T) {
		b := h.browser(t)
		h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid")
		page := b.get(t, logoutURL("client_id", siWeb, "post_logout_redirect_uri", siWebRedirect, "state", stateMarker))
		if page.status != http.StatusOK || !strings.Contains(page.body, `id="sign-out"`) {
			t.Fatalf("confirmation: %d %.300s", page.status, page.body)
		}
		checkNotEchoed(t, page, stateMarker, "web.example")
		tx, csrf := siForm(t, page)
		checkSignedOutPage(t, b.post(t, issuer.PathLogout, url.Values{"tx": {tx}, "csrf": {csrf}}), stateMarker)
		if signedIn(t, h, b) {
			t.Error("confirmed, yet the session survived")
		}
	})
	t.Run("no client named", func(t *testing.T) {
		r := h.browser(t).get(t, logoutURL("post_logout_redirect_uri", siWebSignedOut, "state", stateMarker))
		checkSignedOutPage(t, r, stateMarker)
	})
	t.Run("forged id_token_hint names the client", func(t *testing.T) {
		forged := unsignedJWT(t, map[string]any{"iss": h.url, "aud": siWeb, "sub": "x", "exp": h.clock.Now().Add(time.Hour).Unix()})
		r := h.browser(t).get(t, logoutURL("id_token_hint", forged, "post_logout_redirect_uri", siWebSignedOut, "state", stateMarker))
		checkSignedOutPage(t, r, stateMarker)
	})
	h.audit(t, "logout.redirect_refused", func(e store.AuditEvent) bool { return e.ClientID == siWeb })
}

// TestLogoutUnknownClient: a client_id that names no client, or a disabled one, gets a
// generic error page before anything else: no client text, address or state is shown, nothing
// redirects, and the session is untouched.
func TestLogoutUnknownClient(t *testing.T) {
	h := newSIHarness(t)
	err := h.db.CreateClient(context.Background(), store.Client{ID: "disabled-app", Source: "cli", AuthMethod: "none",
		GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"https://disabled.example/cb"},
		PostLogoutRedirectURIs: []string{"https://disabled.example/bye"}, Disabled: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := h.browser(t)
	h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid")
	for name, tt := range map[string]struct{ clientID, redirect string }{
		"unknown":                 {"Your-Bank-Security-Team", "https://evil.example/bye"},
		"markup":                  {`"><b>Call 555-0100 now</b>`, ""},
		"unknown with web's uri":  {"ghost-app", siWebSignedOut},
		"disabled":                {"disabled-app", "https://disabled.example/bye"},
		"disabled, no redirect":   {"disabled-app", ""},
		"longer than any id":      {strings.Repeat("Z", 300), ""},
		"unknown, no redirect":    {"ghost-app", ""},
		"control characters":      {"ghost\r\nSet-Cookie: x=1", ""},
		"unknown with state only": {"ghost-app", ""},
	} {
		t.Run(name, func(t *testing.T) {
			q := []string{"client_id", tt.clientID, "state", stateMarker}
			if tt.redirect != "" {
				q = append(q, "post_logout_redirect_uri", tt.redirect)
			}
			r := b.get(t, logoutURL(q...))
			checkErrorPage(t, r, http.StatusBadRequest)
			echo := []string{stateMarker, "Bank", "555-0100", "ghost", "disabled-app", "ZZZZ"}
			if tt.redirect != "" {
				echo = append(echo, tt.redirect)
			}
			checkNotEchoed(t, r, echo...)
			if strings.Contains(r.body, `id="sign-out"`) {
				t.Error("a sign-out form for an unknown client")
			}
		})
	}
	if !signedIn(t, h, b) {
		t.Error("a refused sign-out request ended the session")
	}
	h.audit(t, "logout.refused", nil)
}

// TestLogoutRedirectsWithState: a registered post-logout URI is followed with state, whether
// the session ends at once (no session left), or after the person confirmed; the confirmation
// page names the client it looked up.
func TestLogoutRedirectsWithState(t *testing.T) {
	h := newSIHarness(t)
	t.Run("no session", func(t *testing.T) {
		state := "a&b=c d"
		r := h.browser(t).get(t, logoutURL("client_id", siWeb, "post_logout_redirect_uri", siWebSignedOut, "state", state))
		if r.status != http.StatusSeeOther {
			t.Fatalf("status %d: %.300s", r.status, r.body)
		}
		u := r.location(t)
		if got := u.Scheme + "://" + u.Host + u.Path; got != siWebSignedOut || u.Query().Get("state") != state || len(u.Query()) != 1 {
			t.Errorf("went to %s", u)
		}
	})
	t.Run("no state", func(t *testing.T) {
		r := h.browser(t).get(t, logoutURL("client_id", siOther, "post_logout_redirect_uri", siOtherSignedOut))
		if l := r.header.Get("Location"); l != siOtherSignedOut {
			t.Errorf("went to %q, want %q", l, siOtherSignedOut)
		}
	})
	t.Run("confirmed", func(t *testing.T) {
		b := h.browser(t)
		h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid")
		page := b.get(t, logoutURL("client_id", siWeb, "post_logout_redirect_uri", siWebSignedOut, "state", stateMarker))
		if page.status != http.StatusOK || !strings.Contains(page.body, "<strong>"+siWeb+"</strong>") {
			t.Fatalf("confirmation: %d %.300s", page.status, page.body)
		}
		if !strings.Contains(page.header.Get("Content-Security-Policy"), "form-action 'self' https://web.example;") {
			t.Errorf("logout CSP: %s", page.header.Get("Content-Security-Policy"))
		}
		tx, csrf := siForm(t, page)
		r := b.post(t, issuer.PathLogout, url.Values{"tx": {tx}, "csrf": {csrf}})
		if u := r.location(t); u.Host != "web.example" || u.Path != "/signed-out" || u.Query().Get("state") != stateMarker {
			t.Errorf("after logout: %s", u)
		}
		if signedIn(t, h, b) {
			t.Error("still signed in")
		}
	})
}

// TestLogoutPostRechecksRedirect: an address unregistered while the confirmation page was
// open is not followed when the person confirms.
func TestLogoutPostRechecksRedirect(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid")
	page := b.get(t, logoutURL("client_id", siWeb, "post_logout_redirect_uri", siWebSignedOut, "state", stateMarker))
	tx, csrf := siForm(t, page)
	_, err := h.db.UpdateClient(context.Background(), siWeb, func(c store.Client) (store.Client, error) {
		c.PostLogoutRedirectURIs = nil
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Minute) // past the issuer's client cache
	checkSignedOutPage(t, b.post(t, issuer.PathLogout, url.Values{"tx": {tx}, "csrf": {csrf}}), stateMarker)
	if signedIn(t, h, b) {
		t.Error("still signed in")
	}
}
