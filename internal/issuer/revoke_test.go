package issuer_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/internal/events"
)

func TestRevokeThenIntrospect(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var announced []events.Event
	cancel := h.bus.Subscribe(func(e events.Event) {
		mu.Lock()
		defer mu.Unlock()
		announced = append(announced, e)
	})
	defer cancel()

	for _, tt := range []struct {
		name string
		id   string // owner
	}{
		{"opaque token", basicApp},
		{"jwt access token", internalSvc},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := h.token(t, tt.id, "")
			if got := h.introspect(t, resource, tok, "").json(t)["active"]; got != true {
				t.Fatalf("not active before revocation")
			}
			r := h.post(t, "/revoke", url.Values{"token": {tok}, "token_type_hint": {"access_token"}}, h.basic(tt.id))
			if r.status != http.StatusOK || len(r.body) != 0 {
				t.Fatalf("revoke: %d %q", r.status, r.body)
			}
			if r.header.Get("Cache-Control") != "no-store" || r.header.Get("X-Request-Id") == "" {
				t.Errorf("headers: %v", r.header)
			}
			if got := string(h.introspect(t, resource, tok, "").body); got != inactive {
				t.Errorf("after revocation: %s", got)
			}
			mu.Lock()
			seen := append([]events.Event(nil), announced...)
			mu.Unlock()
			found := false
			for _, e := range seen {
				found = found || (e.Kind == events.TokenRevoked && e.TokenHash == tokenHash(tok))
			}
			if !found {
				t.Error("revocation not announced on the event bus")
			}
			// Revoking twice is still 200.
			if r := h.post(t, "/revoke", url.Values{"token": {tok}}, h.basic(tt.id)); r.status != http.StatusOK {
				t.Errorf("second revocation: %d", r.status)
			}
		})
	}
	h.waitAudit(t, "token.revoked", basicApp, nil)
}

func TestRevokeUnknownTokenIs200(t *testing.T) {
	h := newHarness(t)
	for _, tok := range []string{"pcat_" + strings.Repeat("B", 43), "garbage", strings.Repeat("z", 10000)} {
		r := h.post(t, "/revoke", url.Values{"token": {tok}}, h.basic(basicApp))
		if r.status != http.StatusOK || len(r.body) != 0 {
			t.Errorf("revoke unknown %.10s: %d %q", tok, r.status, r.body)
		}
	}
}

// TestRevokeOnlyOwnTokens: another client's revocation is answered like a success (nothing to
// learn) but changes nothing, and is audited as refused. Even a client allowed to introspect
// every token may not revoke them.
func TestRevokeOnlyOwnTokens(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t, basicApp, "")
	for _, tt := range []struct {
		name string
		form url.Values
		hdr  map[string]string
	}{
		{"other client (post)", url.Values{"token": {tok}, "client_id": {postApp}, "client_secret": {h.secrets[postApp]}}, nil},
		{"resource server", url.Values{"token": {tok}}, h.basic(resource)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := h.post(t, "/revoke", tt.form, tt.hdr)
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if got := h.introspect(t, resource, tok, "").json(t)["active"]; got != true {
				t.Fatal("another client revoked the token")
			}
		})
	}
	h.waitAudit(t, "token.revoke_refused", postApp, nil)
}

func TestRevokeErrors(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t, basicApp, "")
	tests := []struct {
		name       string
		form       url.Values
		hdr        map[string]string
		wantStatus int
		wantErr    string
	}{
		{"no client auth", url.Values{"token": {tok}}, nil, 401, "invalid_client"},
		{"wrong secret", url.Values{"token": {tok}}, map[string]string{"Authorization": basicAuth(basicApp, "wrong")}, 401, "invalid_client"},
		{"no token", url.Values{}, h.basic(basicApp), 400, "invalid_request"},
		{"unknown hint", url.Values{"token": {tok}, "token_type_hint": {"id_token"}}, h.basic(basicApp), 400, "unsupported_token_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.post(t, "/revoke", tt.form, tt.hdr)
			if r.status != tt.wantStatus || r.json(t)["error"] != tt.wantErr {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tt.wantStatus, tt.wantErr)
			}
		})
	}
	if got := h.introspect(t, resource, tok, "").json(t)["active"]; got != true {
		t.Fatal("a refused revocation revoked the token")
	}
	// A refresh_token hint on an access token still finds it (RFC 7009 §2.1).
	h.post(t, "/revoke", url.Values{"token": {tok}, "token_type_hint": {"refresh_token"}}, h.basic(basicApp))
	if got := string(h.introspect(t, resource, tok, "").body); got != inactive {
		t.Fatalf("hint refresh_token did not revoke the access token: %s", got)
	}
}

// TestRevokeAnnouncesOnce: revoking an already revoked token changes nothing and publishes
// nothing. Every announcement makes each gateway drop cache state, so a client re-revoking
// its own revoked token in a loop must not be able to stop other clients' answers from
// being cached.
func TestRevokeAnnouncesOnce(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t, basicApp, "")
	var mu sync.Mutex
	announced := 0
	cancel := h.bus.Subscribe(func(e events.Event) {
		if e.Kind == events.TokenRevoked && e.TokenHash == tokenHash(tok) {
			mu.Lock()
			announced++
			mu.Unlock()
		}
	})
	defer cancel()
	for i := range 5 {
		if r := h.post(t, "/revoke", url.Values{"token": {tok}}, h.basic(basicApp)); r.status != http.StatusOK {
			t.Fatalf("revocation %d: %d %s", i, r.status, r.body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if announced != 1 {
		t.Errorf("the revocation was announced %d times, want once", announced)
	}
}
