package issuer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
)

// ccForm is a client_credentials request body plus extra parameters.
func ccForm(kv ...string) url.Values {
	f := url.Values{"grant_type": {"client_credentials"}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

// TestSecretAuthentication covers client_secret_basic, client_secret_post and argon2id
// secrets, and every way to get them wrong.
func TestSecretAuthentication(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name       string
		form       url.Values
		hdr        map[string]string
		wantStatus int
		wantErr    string
	}{
		{"basic", ccForm(), h.basic(basicApp), 200, ""},
		{"basic with matching client_id", ccForm("client_id", basicApp), h.basic(basicApp), 200, ""},
		{"post", ccForm("client_id", postApp, "client_secret", h.secrets[postApp]), nil, 200, ""},
		{"argon2id secret", ccForm(), map[string]string{"Authorization": basicAuth(argonApp, argonSecret)}, 200, ""},
		{"basic: wrong secret", ccForm(), map[string]string{"Authorization": basicAuth(basicApp, h.secrets[postApp])}, 401, "invalid_client"},
		{"basic: empty secret", ccForm(), map[string]string{"Authorization": basicAuth(basicApp, "")}, 401, "invalid_client"},
		{"basic: secret with a character changed", ccForm(), map[string]string{"Authorization": basicAuth(basicApp, flipLast(h.secrets[basicApp]))}, 401, "invalid_client"},
		{"argon2id: wrong secret", ccForm(), map[string]string{"Authorization": basicAuth(argonApp, argonSecret+"!")}, 401, "invalid_client"},
		{"post: wrong secret", ccForm("client_id", postApp, "client_secret", "pcs_wrong"), nil, 401, "invalid_client"},
		{"basic client uses post", ccForm("client_id", basicApp, "client_secret", h.secrets[basicApp]), nil, 401, "invalid_client"},
		{"post client uses basic", ccForm(), h.basic(postApp), 401, "invalid_client"},
		{"two methods at once", ccForm("client_id", basicApp, "client_secret", h.secrets[basicApp]), h.basic(basicApp), 400, "invalid_request"},
		{"client_id differs from basic", ccForm("client_id", postApp), h.basic(basicApp), 401, "invalid_client"},
		{"no authentication", ccForm(), nil, 401, "invalid_client"},
		{"client_id only", ccForm("client_id", basicApp), nil, 401, "invalid_client"},
		{"malformed basic", ccForm(), map[string]string{"Authorization": "Basic !!!"}, 401, "invalid_client"},
		{"basic without colon", ccForm(), map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(basicApp))}, 401, "invalid_client"},
		{"bearer scheme", ccForm(), map[string]string{"Authorization": "Bearer x"}, 401, "invalid_client"},
		{"secret client sends an assertion", ccForm("client_id", basicApp, "client_assertion_type", oauth.AssertionTypeJWT,
			"client_assertion", h.assertion(t, basicApp, nil)), nil, 401, "invalid_client"},
		{"key client sends a secret", ccForm(), map[string]string{"Authorization": basicAuth(inlineKeys, "pcs_anything")}, 401, "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.post(t, "/token", tt.form, tt.hdr)
			checkOutcome(t, r, tt.wantStatus, tt.wantErr)
		})
	}
	h.waitAudit(t, "client.auth_failed", basicApp, func(e store.AuditEvent) bool { return e.Reason == "wrong client secret" })
}

// TestUnknownClientLooksLikeWrongSecret: an attacker cannot tell an unknown client id from a
// wrong secret by status, headers or body.
func TestUnknownClientLooksLikeWrongSecret(t *testing.T) {
	h := newHarness(t)
	wrong := h.post(t, "/token", ccForm(), map[string]string{"Authorization": basicAuth(basicApp, "pcs_"+strings.Repeat("x", 43))})
	unknown := h.post(t, "/token", ccForm(), map[string]string{"Authorization": basicAuth("no-such-client", "pcs_"+strings.Repeat("x", 43))})
	disabledID := postApp
	if _, err := h.db.UpdateClient(t.Context(), disabledID, func(c store.Client) (store.Client, error) { c.Disabled = true; return c, nil }); err != nil {
		t.Fatal(err)
	}
	disabled := h.post(t, "/token", ccForm("client_id", postApp, "client_secret", h.secrets[postApp]), nil)
	for name, r := range map[string]response{"unknown": unknown, "disabled": disabled} {
		if r.status != wrong.status || string(r.body) != string(wrong.body) {
			t.Errorf("%s client: %d %q; wrong secret: %d %q", name, r.status, r.body, wrong.status, wrong.body)
		}
		if r.header.Get("WWW-Authenticate") != wrong.header.Get("WWW-Authenticate") {
			t.Errorf("%s client: WWW-Authenticate differs", name)
		}
	}
}

// TestArgon2idCheckIsCached: a successful argon2id check is remembered, so a busy client does
// not pay a slow hash per request; a wrong secret is never remembered.
func TestArgon2idCheckIsCached(t *testing.T) {
	h := newHarness(t)
	for range 3 {
		r := h.post(t, "/token", ccForm(), map[string]string{"Authorization": basicAuth(argonApp, argonSecret)})
		checkOutcome(t, r, 200, "")
	}
	// The cache is keyed by secret too: a wrong secret after a right one still fails.
	r := h.post(t, "/token", ccForm(), map[string]string{"Authorization": basicAuth(argonApp, "correct horse battery stapleX")})
	checkOutcome(t, r, 401, "invalid_client")
}

func flipLast(s string) string {
	b := []byte(s)
	if b[len(b)-1] == 'A' {
		b[len(b)-1] = 'B'
	} else {
		b[len(b)-1] = 'A'
	}
	return string(b)
}

func checkOutcome(t *testing.T, r response, wantStatus int, wantErr string) {
	t.Helper()
	if r.status != wantStatus {
		t.Fatalf("status %d, want %d: %s", r.status, wantStatus, r.body)
	}
	body := r.json(t)
	if wantErr == "" {
		if body["access_token"] == nil {
			t.Fatalf("no access_token: %s", r.body)
		}
		return
	}
	if body["error"] != wantErr {
		t.Fatalf("error %v, want %s", body["error"], wantErr)
	}
	if wantStatus == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("401 with WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	if body["access_token"] != nil {
		t.Error("error response carries a token")
	}
}

// TestPrivateKeyJWT covers RFC 7523 client assertions with inline and remote (jwks_uri) keys,
// and the attacks on them.
func TestPrivateKeyJWT(t *testing.T) {
	h := newHarness(t)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := h.clock.Now()
	set := func(k string, v any) func(*assertionSpec) {
		return func(s *assertionSpec) { s.claims[k] = v }
	}
	tests := []struct {
		name     string
		id       string
		edit     func(*assertionSpec)
		raw      string // a hand-made assertion instead
		noID     bool   // omit client_id (the issuer reads iss)
		wantCode string // "" for success
	}{
		{name: "inline keys", id: inlineKeys},
		{name: "inline keys, no client_id parameter", id: inlineKeys, noID: true},
		{name: "remote keys (jwks_uri)", id: remoteKeys},
		{name: "audience is the issuer", id: inlineKeys, edit: set("aud", h.url)},
		{name: "audience array of one value, the token endpoint", id: inlineKeys, edit: set("aud", []string{h.url + "/token"})},
		{name: "audience array of one value, the issuer", id: inlineKeys, edit: set("aud", []string{h.url})},
		// RFC 7523bis: aud is exactly one value; an assertion naming other audiences too
		// could be replayed by any of them.
		{name: "audience array with the token endpoint and another", id: inlineKeys, edit: set("aud", []string{"https://other.example", h.url + "/token"}), wantCode: "invalid_client"},
		{name: "audience array of the issuer and the token endpoint", id: inlineKeys, edit: set("aud", []string{h.url, h.url + "/token"}), wantCode: "invalid_client"},
		{name: "audience array of the issuer twice", id: inlineKeys, edit: set("aud", []string{h.url, h.url}), wantCode: "invalid_client"},
		{name: "empty audience array", id: inlineKeys, edit: set("aud", []string{}), wantCode: "invalid_client"},
		{name: "typ JWT", id: inlineKeys, edit: func(s *assertionSpec) { s.typ = "JWT" }},
		{name: "expired", id: inlineKeys, edit: func(s *assertionSpec) {
			s.claims["iat"], s.claims["exp"] = now.Add(-10*time.Minute).Unix(), now.Add(-6*time.Minute).Unix()
		}, wantCode: "invalid_client"},
		{name: "lifetime too long", id: inlineKeys, edit: set("exp", now.Add(time.Hour).Unix()), wantCode: "invalid_client"},
		{name: "no exp", id: inlineKeys, edit: func(s *assertionSpec) { delete(s.claims, "exp") }, wantCode: "invalid_client"},
		{name: "no iat", id: inlineKeys, edit: func(s *assertionSpec) { delete(s.claims, "iat") }, wantCode: "invalid_client"},
		{name: "no jti", id: inlineKeys, edit: func(s *assertionSpec) { delete(s.claims, "jti") }, wantCode: "invalid_client"},
		{name: "wrong audience", id: inlineKeys, edit: set("aud", "https://evil.example/token"), wantCode: "invalid_client"},
		{name: "audience is the introspection endpoint of another server", id: inlineKeys, edit: set("aud", "https://evil.example"), wantCode: "invalid_client"},
		{name: "iss is another client", id: inlineKeys, edit: set("iss", remoteKeys), wantCode: "invalid_client"},
		{name: "sub is another client", id: inlineKeys, edit: set("sub", basicApp), wantCode: "invalid_client"},
		{name: "signed by another key", id: inlineKeys, edit: func(s *assertionSpec) { s.key = otherKey }, wantCode: "invalid_client"},
		{name: "signed by another key, no kid", id: inlineKeys, edit: func(s *assertionSpec) { s.key, s.kid = otherKey, "" }, wantCode: "invalid_client"},
		{name: "typ at+jwt (an access token is no assertion)", id: inlineKeys, edit: func(s *assertionSpec) { s.typ = "at+jwt" }, wantCode: "invalid_client"},
		{name: "alg none", id: inlineKeys, raw: unsignedJWT(t, map[string]any{"iss": inlineKeys, "sub": inlineKeys, "aud": h.url + "/token",
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "none-1"}), wantCode: "invalid_client"},
		{name: "alg none, no client_id", id: inlineKeys, noID: true, raw: unsignedJWT(t, map[string]any{"iss": inlineKeys, "sub": inlineKeys,
			"aud": h.url + "/token", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "none-2"}), wantCode: "invalid_client"},
		{name: "HS256 keyed with the public key", id: inlineKeys, raw: hmacJWT(t, h, now), wantCode: "invalid_client"},
		{name: "not a JWT", id: inlineKeys, raw: "not.a.jwt", wantCode: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.raw
			if a == "" {
				a = h.assertion(t, tt.id, tt.edit)
			}
			form := ccForm("client_assertion_type", oauth.AssertionTypeJWT, "client_assertion", a)
			if !tt.noID {
				form.Set("client_id", tt.id)
			}
			r := h.post(t, "/token", form, nil)
			if tt.wantCode == "" {
				checkOutcome(t, r, 200, "")
				return
			}
			checkOutcome(t, r, 401, tt.wantCode)
		})
	}
}

// TestPrivateKeyJWTReplay: a jti is accepted once, at any endpoint.
func TestPrivateKeyJWTReplay(t *testing.T) {
	h := newHarness(t)
	for _, id := range []string{inlineKeys, remoteKeys} {
		t.Run(id, func(t *testing.T) {
			a := h.assertion(t, id, nil)
			form := ccForm("client_id", id, "client_assertion_type", oauth.AssertionTypeJWT, "client_assertion", a)
			checkOutcome(t, h.post(t, "/token", form, nil), 200, "")
			checkOutcome(t, h.post(t, "/token", form, nil), 401, "invalid_client")
			// The same assertion at the introspection endpoint is a replay too.
			r := h.post(t, "/introspect", url.Values{"token": {"x"}, "client_id": {id}, "client_assertion_type": {oauth.AssertionTypeJWT}, "client_assertion": {a}}, nil)
			if r.status != http.StatusUnauthorized {
				t.Errorf("replay at /introspect: %d %s", r.status, r.body)
			}
			// A new jti is fine again.
			form.Set("client_assertion", h.assertion(t, id, nil))
			checkOutcome(t, h.post(t, "/token", form, nil), 200, "")
		})
	}
	h.waitAudit(t, "client.auth_failed", inlineKeys, func(e store.AuditEvent) bool { return strings.Contains(e.Reason, "replayed") })
}

// TestAssertionTypeMustBeJWTBearer: another client_assertion_type is refused.
func TestAssertionTypeMustBeJWTBearer(t *testing.T) {
	h := newHarness(t)
	for _, typ := range []string{"urn:ietf:params:oauth:client-assertion-type:saml2-bearer", ""} {
		form := ccForm("client_id", inlineKeys, "client_assertion", h.assertion(t, inlineKeys, nil))
		if typ != "" {
			form.Set("client_assertion_type", typ)
		}
		checkOutcome(t, h.post(t, "/token", form, nil), 401, "invalid_client")
	}
}

func unsignedJWT(t *testing.T, claims map[string]any) string {
	t.Helper()
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return hdr + "." + base64.RawURLEncoding.EncodeToString(body) + "."
}

// hmacJWT is the classic key-confusion attack: HS256 keyed with the client's public key.
func hmacJWT(t *testing.T, h *harness, now time.Time) string {
	t.Helper()
	pub, err := json.Marshal(jose.JSONWebKey{Key: h.clientKey.Public()})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pub}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"iss": inlineKeys, "sub": inlineKeys, "aud": h.url + "/token",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "hs-1"})
	jws, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// floodArgon2id sends n wrong argon2id secrets of argonApp to /token at once and counts the
// answers by status.
func floodArgon2id(t *testing.T, h *harness, n int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := h.post(t, "/token", ccForm(), map[string]string{"Authorization": basicAuth(argonApp, fmt.Sprintf("guess number %d", i))})
			mu.Lock()
			statuses[r.status]++
			mu.Unlock()
			if r.status == http.StatusServiceUnavailable && (r.json(t)["error"] != "temporarily_unavailable" || r.header.Get("Retry-After") == "") {
				t.Errorf("busy answer: %s %v", r.body, r.header)
			}
		})
	}
	wg.Wait()
	return statuses
}

// TestArgon2idFloodFailsFast: a flood of wrong person-chosen secrets does not queue without
// bound in front of the two argon2id slots (which every sign-in shares): checks beyond the
// waiting queue are refused at once with 503 temporarily_unavailable, and nothing is
// counted or audited as a wrong secret for them.
func TestArgon2idFloodFailsFast(t *testing.T) {
	h := newHarness(t)
	const n = 40
	statuses := floodArgon2id(t, h, n)
	if statuses[http.StatusUnauthorized]+statuses[http.StatusServiceUnavailable] != n {
		t.Fatalf("answers by status: %v", statuses)
	}
	if statuses[http.StatusServiceUnavailable] == 0 {
		t.Errorf("all %d wrong argon2id secrets were hashed (answers %v): the queue is unbounded", n, statuses)
	}
	// Once the flood is over a right secret works at once.
	if r := h.post(t, "/token", ccForm(), map[string]string{"Authorization": basicAuth(argonApp, argonSecret)}); r.status != http.StatusOK {
		t.Errorf("after the flood: %d %s", r.status, r.body)
	}
}

// TestArgon2idFloodCountedBeforeHashing: with abuse detection on, each argon2id check is
// counted against the address before it is computed, so a flood is blocked after
// threshold attempts however many arrive at once, instead of every request already in
// flight costing a hash first.
func TestArgon2idFloodCountedBeforeHashing(t *testing.T) {
	const threshold = 5
	h := buildHarness(t, harnessOptions{
		abuse:        newAbuseDetector(t, nil),
		authFailures: config.AbuseRule{Threshold: threshold, Window: time.Minute, Action: "block", For: 10 * time.Minute},
	})
	// A right secret counts once, then is served from the cache without counting.
	for range 3 {
		if r := h.post(t, "/token", ccForm(), map[string]string{"Authorization": basicAuth(argonApp, argonSecret)}); r.status != http.StatusOK {
			t.Fatalf("right secret: %d %s", r.status, r.body)
		}
	}
	statuses := floodArgon2id(t, h, 40)
	// The right secret counted once; threshold-2 more attempts pass, the next one fires.
	if hashed := statuses[http.StatusUnauthorized]; hashed > threshold-2 {
		t.Errorf("%d wrong secrets were hashed (answers %v); at most %d may be before the block", hashed, statuses, threshold-2)
	}
	if statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("the flood was never blocked: %v", statuses)
	}
	h.waitAudit(t, "abuse.fired", "", nil)
}
