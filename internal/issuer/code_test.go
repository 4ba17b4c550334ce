package issuer_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
)

func wantGrantError(t *testing.T, r siResp, code string) {
	t.Helper()
	if r.status != http.StatusBadRequest || r.jsonMap(t)["error"] != code {
		t.Errorf("status %d body %s, want 400 %s", r.status, r.body, code)
	}
	if strings.Contains(r.body, "pcat_") || strings.Contains(r.body, "pcrt_") {
		t.Errorf("an error issued tokens: %s", r.body)
	}
}

// TestCodeReplayRevokesFamily: a code works once; presented again it is refused and every
// token the first exchange issued is revoked and announced (the gateway's introspection says
// inactive at once).
func TestCodeReplayRevokesFamily(t *testing.T) {
	h := newSIHarness(t)
	code, verifier, _ := h.flow(t, h.browser(t), siWeb, siWebRedirect, siAlice, "openid orders:read offline_access")
	first := h.redeem(t, siWeb, code, siWebRedirect, verifier)
	if first.status != http.StatusOK {
		t.Fatalf("first redemption: %d %s", first.status, first.body)
	}
	tok := first.jsonMap(t)
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	if !h.active(t, at) {
		t.Fatal("fresh access token inactive")
	}
	wantGrantError(t, h.redeem(t, siWeb, code, siWebRedirect, verifier), "invalid_grant")
	if h.active(t, at) {
		t.Error("the replay left the first access token active")
	}
	if !h.revoked.has(token.Hash(at)) || !h.revoked.has(token.Hash(rt)) {
		t.Error("the family's revocation was not announced on the bus")
	}
	wantGrantError(t, h.refresh(t, siWeb, rt), "invalid_grant")
	h.audit(t, "token.refused", func(e store.AuditEvent) bool { return strings.Contains(e.Reason, "code replayed") })
}

// TestUsedCodeWithoutProofRevokesNothing: someone who merely saw a used code (in a log, a
// browser history, a Referer) cannot use it to revoke the tokens its exchange issued: a
// replay counts only when the request would otherwise have succeeded — the code's client,
// its redirect_uri and the PKCE verifier. Anything less is invalid_grant and changes
// nothing; the genuine replay still revokes the family.
func TestUsedCodeWithoutProofRevokesNothing(t *testing.T) {
	h := newSIHarness(t)
	code, verifier, _ := h.flow(t, h.browser(t), siWeb, siWebRedirect, siAlice, "openid offline_access")
	first := h.redeem(t, siWeb, code, siWebRedirect, verifier)
	if first.status != http.StatusOK {
		t.Fatalf("first redemption: %d %s", first.status, first.body)
	}
	tok := first.jsonMap(t)
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	wrong, _ := pkce()
	for _, tt := range []struct {
		name    string
		redeem  func() siResp
		wantErr string
	}{
		{"wrong verifier", func() siResp { return h.redeem(t, siWeb, code, siWebRedirect, wrong) }, "invalid_grant"},
		{"malformed verifier", func() siResp { return h.redeem(t, siWeb, code, siWebRedirect, "short") }, "invalid_grant"},
		{"no verifier", func() siResp {
			return h.token(t, siWeb, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {siWebRedirect}})
		}, "invalid_request"},
		{"another redirect_uri", func() siResp { return h.redeem(t, siWeb, code, siWebRedirect+"x", verifier) }, "invalid_grant"},
		{"another client", func() siResp { return h.redeem(t, siOther, code, siWebRedirect, verifier) }, "invalid_grant"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantGrantError(t, tt.redeem(), tt.wantErr)
			if !h.active(t, at) || !h.stored(t, rt).Active(h.clock.Now()) {
				t.Fatal("a failed attempt with a used code revoked the tokens of its exchange")
			}
			if h.revoked.has(token.Hash(at)) {
				t.Fatal("a revocation was announced")
			}
		})
	}
	wantGrantError(t, h.redeem(t, siWeb, code, siWebRedirect, verifier), "invalid_grant")
	if h.active(t, at) || h.stored(t, rt).Active(h.clock.Now()) {
		t.Error("the genuine replay left the tokens active")
	}
}

// stored is the record of tok (introspection says inactive for any refresh token).
func (h *siHarness) stored(tb testing.TB, tok string) store.Token {
	tb.Helper()
	rec, err := h.db.GetToken(tb.Context(), token.Hash(tok))
	if err != nil {
		tb.Fatal(err)
	}
	return rec
}

// TestConcurrentCodeRedemption: of concurrent redemptions of one code exactly one succeeds.
func TestConcurrentCodeRedemption(t *testing.T) {
	h := newSIHarness(t)
	code, verifier, _ := h.flow(t, h.browser(t), siWeb, siWebRedirect, siAlice, "openid")
	const n = 6
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() { statuses[i] = h.redeem(t, siWeb, code, siWebRedirect, verifier).status })
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d redemptions succeeded (%v), want exactly 1", ok, statuses)
	}
}

// TestCodeBindings: a code is bound to its client, its redirect_uri and its PKCE verifier,
// and lives 60 seconds. A failed attempt by another client does not burn it.
func TestCodeBindings(t *testing.T) {
	h := newSIHarness(t)
	tests := []struct {
		name    string
		redeem  func(code, verifier string) siResp
		wantErr string
	}{
		{"another public client", func(c, v string) siResp { return h.redeem(t, siOther, c, siWebRedirect, v) }, "invalid_grant"},
		{"another confidential client", func(c, v string) siResp { return h.redeem(t, siConf, c, siWebRedirect, v) }, "invalid_grant"},
		{"another redirect_uri", func(c, v string) siResp { return h.redeem(t, siWeb, c, siWebRedirect+"x", v) }, "invalid_grant"},
		{"no redirect_uri", func(c, v string) siResp {
			return h.token(t, siWeb, url.Values{"grant_type": {"authorization_code"}, "code": {c}, "code_verifier": {v}})
		}, "invalid_grant"},
		{"wrong verifier", func(c, v string) siResp { w, _ := pkce(); return h.redeem(t, siWeb, c, siWebRedirect, w) }, "invalid_grant"},
		{"the challenge as verifier (plain)", func(c, v string) siResp { return h.redeem(t, siWeb, c, siWebRedirect, challengeOf(v)) }, "invalid_grant"},
		{"no verifier", func(c, v string) siResp {
			return h.token(t, siWeb, url.Values{"grant_type": {"authorization_code"}, "code": {c}, "redirect_uri": {siWebRedirect}})
		}, "invalid_request"},
		{"malformed verifier", func(c, v string) siResp { return h.redeem(t, siWeb, c, siWebRedirect, "short") }, "invalid_grant"},
		{"a refresh token as code", func(c, v string) siResp { return h.redeem(t, siWeb, "pcrt_"+c[5:], siWebRedirect, v) }, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, verifier, _ := h.flow(t, h.browser(t), siWeb, siWebRedirect, siAlice, "openid")
			wantGrantError(t, tt.redeem(code, verifier), tt.wantErr)
			if r := h.redeem(t, siWeb, code, siWebRedirect, verifier); r.status != http.StatusOK {
				t.Errorf("the genuine redemption after the attempt: %d %s", r.status, r.body)
			}
		})
	}
	t.Run("expired after 60s", func(t *testing.T) {
		code, verifier, _ := h.flow(t, h.browser(t), siWeb, siWebRedirect, siAlice, "openid")
		h.clock.Advance(61 * time.Second)
		wantGrantError(t, h.redeem(t, siWeb, code, siWebRedirect, verifier), "invalid_grant")
	})
}

func challengeOf(verifier string) string {
	_, c := pkceFrom(verifier)
	return c
}

// TestOfflineAccessGovernsRefresh: a refresh token only with offline_access granted and the
// refresh_token grant registered.
func TestOfflineAccessGovernsRefresh(t *testing.T) {
	h := newSIHarness(t)
	for _, tt := range []struct {
		name, client, redirect, scope string
		want                          bool
	}{
		{"offline_access", siWeb, siWebRedirect, "openid offline_access", true},
		{"without offline_access", siWeb, siWebRedirect, "openid orders:read", false},
		{"client without the refresh_token grant", siNoOffln, siNoOfflnRedir, "openid offline_access", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, verifier, _ := h.flow(t, h.browser(t), tt.client, tt.redirect, siAlice, tt.scope)
			m := h.redeem(t, tt.client, code, tt.redirect, verifier).jsonMap(t)
			if _, got := m["refresh_token"]; got != tt.want {
				t.Errorf("refresh_token present %v, want %v: %v", got, tt.want, m)
			}
			if m["scope"] != tt.scope || m["token_type"] != "Bearer" {
				t.Errorf("scope %v token_type %v", m["scope"], m["token_type"])
			}
		})
	}
}
