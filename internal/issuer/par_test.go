package issuer_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/issuer"
)

func (h *siHarness) push(tb testing.TB, client string, form url.Values) siResp {
	tb.Helper()
	hdr := map[string]string{}
	if s, ok := h.secrets[client]; ok {
		hdr["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(client+":"+s))
	} else {
		form.Set("client_id", client)
	}
	return (&siBrowser{h: h, client: h.srv.Client()}).do(tb, http.MethodPost, issuer.PathPAR, form, hdr)
}

// TestPAR: a pushed request (client authenticated as at /token) gives a request_uri that
// /authorize accepts once, within 60 s, from the same client; require_par clients must use it.
func TestPAR(t *testing.T) {
	h := newSIHarness(t)
	verifier, challenge := pkce()
	q := h.authParams(siPARApp, siPARRedirect, challenge, "openid")
	q.Del("client_id")
	r := h.push(t, siPARApp, q)
	if r.status != http.StatusCreated || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("push: %d %s", r.status, r.body)
	}
	m := r.jsonMap(t)
	uri, _ := m["request_uri"].(string)
	if !strings.HasPrefix(uri, "urn:ietf:params:oauth:request_uri:") || m["expires_in"] != float64(60) {
		t.Fatalf("push answer %v", m)
	}
	b := h.browser(t)
	front := url.Values{"client_id": {siPARApp}, "request_uri": {uri}, "redirect_uri": {"https://evil.example/cb"}, "scope": {"openid email"}}
	page := b.get(t, "/authorize?"+front.Encode())
	// The pushed parameters win: the front-channel redirect_uri and scope are ignored.
	after := b.allow(t, b.signIn(t, b.follow(t, page), siAlice, h.passwords[siAlice]))
	code := h.codeFrom(t, after, siPARRedirect, q.Get("state"))
	tok := h.redeem(t, siPARApp, code, siPARRedirect, verifier)
	if tok.status != http.StatusOK || tok.jsonMap(t)["scope"] != "openid" {
		t.Fatalf("redeem: %d %s", tok.status, tok.body)
	}

	t.Run("single use", func(t *testing.T) {
		checkErrorPage(t, h.browser(t).get(t, "/authorize?"+front.Encode()), http.StatusBadRequest)
	})
	t.Run("expires after 60s", func(t *testing.T) {
		uri := h.push(t, siPARApp, h.authParams(siPARApp, siPARRedirect, challenge, "openid")).jsonMap(t)["request_uri"].(string)
		h.clock.Advance(61 * time.Second)
		checkErrorPage(t, h.browser(t).get(t, "/authorize?"+url.Values{"client_id": {siPARApp}, "request_uri": {uri}}.Encode()), http.StatusBadRequest)
	})
	t.Run("another client's request_uri", func(t *testing.T) {
		uri := h.push(t, siConf, h.authParams(siConf, siConfRedirect, challenge, "openid")).jsonMap(t)["request_uri"].(string)
		checkErrorPage(t, h.browser(t).get(t, "/authorize?"+url.Values{"client_id": {siWeb}, "request_uri": {uri}}.Encode()), http.StatusBadRequest)
	})
	t.Run("foreign request_uri", func(t *testing.T) {
		checkErrorPage(t, h.browser(t).get(t, "/authorize?"+url.Values{"client_id": {siPARApp}, "request_uri": {"https://evil.example/req"}}.Encode()), http.StatusBadRequest)
	})
	for _, tt := range []struct {
		name   string
		client string
		edit   func(url.Values)
		hdr    bool
		status int
		err    string
	}{
		{"unregistered redirect_uri", siPARApp, func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }, true, 400, "invalid_request"},
		{"plain PKCE", siPARApp, func(q url.Values) { q.Set("code_challenge_method", "plain") }, true, 400, "invalid_request"},
		{"request_uri inside", siPARApp, func(q url.Values) { q.Set("request_uri", "urn:ietf:params:oauth:request_uri:x") }, true, 400, "invalid_request"},
		{"wrong client secret", siPARApp, func(url.Values) {}, false, 401, "invalid_client"},
		{"repeated parameter", siPARApp, func(q url.Values) { q.Add("scope", "email") }, true, 400, "invalid_request"},
		{"request object", siPARApp, func(q url.Values) { q.Set("request", "a.b.c") }, true, 400, "request_not_supported"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := h.authParams(tt.client, siPARRedirect, challenge, "openid")
			q.Del("client_id")
			tt.edit(q)
			var r siResp
			if tt.hdr {
				r = h.push(t, tt.client, q)
			} else {
				q.Set("client_id", tt.client)
				r = (&siBrowser{h: h, client: h.srv.Client()}).do(t, http.MethodPost, issuer.PathPAR, q,
					map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(tt.client+":wrong"))})
			}
			if r.status != tt.status || r.jsonMap(t)["error"] != tt.err {
				t.Errorf("%d %s, want %d %s", r.status, r.body, tt.status, tt.err)
			}
		})
	}
}
