package issuer_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/issuer"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
)

// TestRefreshRotationAndReuse: every refresh returns a new refresh token; presenting an old
// one again revokes the whole family (RFC 9700 §4.14.2): the newest refresh token and every
// access token stop working and gateways are told.
func TestRefreshRotationAndReuse(t *testing.T) {
	h := newSIHarness(t)
	code, verifier, _ := h.flow(t, h.browser(t), siWeb, siWebRedirect, siAlice, "openid orders:read offline_access")
	tok := h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)
	rt1, at1 := tok["refresh_token"].(string), tok["access_token"].(string)

	r := h.refresh(t, siWeb, rt1)
	if r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	m := r.jsonMap(t)
	rt2, at2 := m["refresh_token"].(string), m["access_token"].(string)
	if rt2 == rt1 || at2 == at1 || m["id_token"] == nil {
		t.Fatalf("no rotation: %v", m)
	}
	if c := h.idClaims(t, m["id_token"], siWeb); c.Subject != h.users[siAlice].ID || c.Raw["nonce"] != nil {
		t.Errorf("refreshed ID token: sub %q nonce %v", c.Subject, c.Raw["nonce"])
	}
	// Narrowing the scope of the access token keeps the grant.
	narrow := h.token(t, siWeb, map[string][]string{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "scope": {"orders:read"}})
	if narrow.status != http.StatusOK || narrow.jsonMap(t)["scope"] != "orders:read" {
		t.Fatalf("narrowed refresh: %d %s", narrow.status, narrow.body)
	}
	rt3 := narrow.jsonMap(t)["refresh_token"].(string)
	wantGrantError(t, h.token(t, siWeb, map[string][]string{"grant_type": {"refresh_token"}, "refresh_token": {rt3}, "scope": {"orders:read email"}}), "invalid_scope")

	// Reuse of rt1: refused, and the family is gone.
	wantGrantError(t, h.refresh(t, siWeb, rt1), "invalid_grant")
	for name, at := range map[string]string{"first": at1, "second": at2} {
		if h.active(t, at) {
			t.Errorf("the %s access token is still active after reuse", name)
		}
		if !h.revoked.has(token.Hash(at)) {
			t.Errorf("the revocation of the %s access token was not announced", name)
		}
	}
	wantGrantError(t, h.refresh(t, siWeb, rt3), "invalid_grant")
}

// TestRefreshBoundToClient: another client cannot use a refresh token.
func TestRefreshBoundToClient(t *testing.T) {
	h := newSIHarness(t)
	code, verifier, _ := h.flow(t, h.browser(t), siWeb, siWebRedirect, siAlice, "openid offline_access")
	rt := h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)["refresh_token"].(string)
	wantGrantError(t, h.refresh(t, siConf, rt), "invalid_grant")
	if r := h.refresh(t, siWeb, rt); r.status != http.StatusOK {
		t.Errorf("owner after another client's attempt: %d %s", r.status, r.body)
	}
}

// TestConcurrentRefresh: two refreshes with one token at once: exactly one wins. The loser
// is a reuse, so the family is revoked, the winner's new tokens included.
func TestConcurrentRefresh(t *testing.T) {
	h := newSIHarness(t)
	code, verifier, _ := h.flow(t, h.browser(t), siWeb, siWebRedirect, siAlice, "openid offline_access")
	rt := h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)["refresh_token"].(string)
	const n = 2
	var wg sync.WaitGroup
	results := make([]siResp, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() { <-start; results[i] = h.refresh(t, siWeb, rt) })
	}
	close(start)
	wg.Wait()
	wins := 0
	var winner map[string]any
	for _, r := range results {
		switch r.status {
		case http.StatusOK:
			wins++
			winner = r.jsonMap(t)
		case http.StatusBadRequest:
			if r.jsonMap(t)["error"] != "invalid_grant" {
				t.Errorf("loser: %s", r.body)
			}
		default:
			t.Errorf("unexpected %d %s", r.status, r.body)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent refreshes won, want exactly 1", wins, n)
	}
	if h.active(t, winner["access_token"].(string)) {
		t.Error("the reuse did not revoke the winner's access token (family)")
	}
}

// TestCredentialsChangeEndsSignIns: after a user's credentials change (portcullis users
// set-password or disable sets CredentialsChangedAt), every earlier sign-in stops: the
// browser session no longer yields codes (not even with prompt=none), a code issued
// before the change cannot be redeemed, and the refresh tokens of earlier sign-ins fail
// and revoke their family. A sign-in after the change works.
func TestCredentialsChangeEndsSignIns(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	code, verifier, _ := h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid orders:read offline_access")
	tok := h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)
	rt, at := tok["refresh_token"].(string), tok["access_token"].(string)
	_, challenge := pkce()
	q := h.authParams(siWeb, siWebRedirect, challenge, "openid orders:read")
	q.Set("prompt", "none")
	if c := h.codeFrom(t, b.get(t, "/authorize?"+q.Encode()), siWebRedirect, q.Get("state")); c == "" {
		t.Fatal("prompt=none before the change: no code")
	}
	pendingVerifier, pendingChallenge := pkce()
	pq := h.authParams(siWeb, siWebRedirect, pendingChallenge, "openid orders:read")
	pending := h.codeFrom(t, b.get(t, "/authorize?"+pq.Encode()), siWebRedirect, pq.Get("state"))

	h.clock.Advance(10 * time.Second) // the pending code (60 s) is still fresh
	hash, err := login.HashPassword("a brand new password")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.UpdateUser(t.Context(), h.users[siAlice].ID, func(u store.User) (store.User, error) {
		u.PasswordHash, u.CredentialsChangedAt = hash, h.clock.Now()
		return u, nil
	}); err != nil {
		t.Fatal(err)
	}

	q.Set("state", "after-change")
	if got := b.get(t, "/authorize?"+q.Encode()).location(t).Query(); got.Get("error") != "login_required" || got.Get("code") != "" {
		t.Errorf("prompt=none with a session from before the change: %v", got)
	}
	q.Del("prompt")
	if l := b.get(t, "/authorize?"+q.Encode()).header.Get("Location"); !strings.HasPrefix(l, issuer.PathLogin+"?") {
		t.Errorf("an authorization request with the old session went to %q, want the sign-in page", l)
	}
	wantGrantError(t, h.redeem(t, siWeb, pending, siWebRedirect, pendingVerifier), "invalid_grant")
	wantGrantError(t, h.refresh(t, siWeb, rt), "invalid_grant")
	if h.active(t, at) {
		t.Error("the access token of the old sign-in is still active after its refresh was refused")
	}

	// A sign-in with the new password (in the same second as the change) works, and so do
	// its refresh tokens.
	h.passwords[siAlice] = "a brand new password"
	code, verifier, _ = h.flow(t, h.browser(t), siWeb, siWebRedirect, siAlice, "openid orders:read offline_access")
	tok = h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)
	if r := h.refresh(t, siWeb, tok["refresh_token"].(string)); r.status != http.StatusOK {
		t.Errorf("refresh of a sign-in after the change: %d %s", r.status, r.body)
	}
}
