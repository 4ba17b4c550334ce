package grant

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
)

// memClients is an in-memory client store; err, when set, is returned by GetClient.
type memClients struct {
	mu  sync.Mutex
	m   map[string]store.Client
	err error
}

func (s *memClients) GetClient(_ context.Context, id string) (store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return store.Client{}, s.err
	}
	c, ok := s.m[id]
	if !ok {
		return store.Client{}, store.ErrNotFound
	}
	return c, nil
}

func (s *memClients) put(c store.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]store.Client{}
	}
	s.m[c.ID] = c
}

func (s *memClients) CreateClient(context.Context, store.Client, int) error {
	return errors.ErrUnsupported
}
func (s *memClients) UpdateClient(context.Context, string, func(store.Client) (store.Client, error)) (store.Client, error) {
	return store.Client{}, errors.ErrUnsupported
}
func (s *memClients) DeleteClient(context.Context, string) error { return errors.ErrUnsupported }
func (s *memClients) ListClients(context.Context) ([]store.Client, error) {
	return nil, errors.ErrUnsupported
}
func (s *memClients) SyncConfigClients(context.Context, []store.Client) error {
	return errors.ErrUnsupported
}

// memReplay is an in-memory replay cache.
type memReplay struct {
	mu   sync.Mutex
	seen map[string]time.Time
	err  error
}

func (r *memReplay) MarkUsed(_ context.Context, key string, exp time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return false, r.err
	}
	if r.seen == nil {
		r.seen = map[string]time.Time{}
	}
	if _, ok := r.seen[key]; ok {
		return false, nil
	}
	r.seen[key] = exp
	return true, nil
}

const issuerURL = "https://issuer.test"

var now = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	clients *memClients
	replay  *memReplay
	hasher  *secret.Hasher
	auth    *Authenticator
	secret  string
	key     *ecdsa.PrivateKey
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	h, err := secret.NewHasher([]byte(strings.Repeat("k", 32)), secret.HasherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clients: &memClients{}, replay: &memReplay{}, hasher: h, secret: secret.Generate(), key: key}
	f.clients.put(store.Client{ID: "app", AuthMethod: oauth.AuthSecretBasic, SecretHash: h.HashGenerated(f.secret),
		GrantTypes: []string{"client_credentials"}, Scopes: []string{"orders:read", "orders:write", "openid"},
		Claims: map[string]string{"customer_id": "acme"}})
	f.clients.put(store.Client{ID: "keyed", AuthMethod: oauth.AuthPrivateKey, JWKS: jwksOf(t, key), GrantTypes: []string{"client_credentials"}})
	f.clients.put(store.Client{ID: "broken", AuthMethod: oauth.AuthSecretBasic, SecretHash: "$hmac-sha256$!!", GrantTypes: []string{"client_credentials"}})
	f.clients.put(store.Client{ID: "spa", AuthMethod: oauth.AuthNone, GrantTypes: []string{"authorization_code", "client_credentials"}})
	f.auth = &Authenticator{Clients: f.clients, Secrets: h, Replay: f.replay, Issuer: issuerURL, TokenEndpoint: issuerURL + "/token",
		MaxAssertionLifetime: 5 * time.Minute, HTTPClient: http.DefaultClient, Now: func() time.Time { return now }}
	t.Cleanup(f.auth.Close)
	return f
}

func jwksOf(t *testing.T, keys ...*ecdsa.PrivateKey) string {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), Algorithm: "ES256", Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func assertion(t *testing.T, key *ecdsa.PrivateKey, id, jti string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(s).Claims(map[string]any{"iss": id, "sub": id, "aud": issuerURL + "/token", "jti": jti,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func code(err error) string {
	if err == nil {
		return ""
	}
	return oauth.AsError(err).Code
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name  string
		creds oauth.ClientCredentials
		setup func()
		want  string // OAuth error code, "" for success
	}{
		{"basic", oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "app", Secret: f.secret}, nil, ""},
		{"wrong secret", oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "app", Secret: "nope"}, nil, oauth.CodeInvalidClient},
		{"other method", oauth.ClientCredentials{Method: oauth.AuthSecretPost, ClientID: "app", Secret: f.secret}, nil, oauth.CodeInvalidClient},
		{"unknown client", oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "ghost", Secret: f.secret}, nil, oauth.CodeInvalidClient},
		{"malformed stored hash is a server fault", oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "broken", Secret: "x"}, nil, oauth.CodeServerError},
		{"public client proves nothing but is known", oauth.ClientCredentials{Method: oauth.AuthNone, ClientID: "spa"}, nil, ""},
		{"public client claims a secret method", oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "spa", Secret: "x"}, nil, oauth.CodeInvalidClient},
		{"private_key_jwt", oauth.ClientCredentials{Method: oauth.AuthPrivateKey, ClientID: "keyed", Assertion: assertion(t, f.key, "keyed", "j1")}, nil, ""},
		{"replayed jti", oauth.ClientCredentials{Method: oauth.AuthPrivateKey, ClientID: "keyed", Assertion: assertion(t, f.key, "keyed", "j1")}, nil, oauth.CodeInvalidClient},
		{"store down", oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "app", Secret: f.secret},
			func() { f.clients.err = store.ErrUnavailable }, oauth.CodeTemporarilyUnavailable},
		{"store broken", oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "app", Secret: f.secret},
			func() { f.clients.err = errors.New("disk on fire") }, oauth.CodeServerError},
		{"replay cache down", oauth.ClientCredentials{Method: oauth.AuthPrivateKey, ClientID: "keyed", Assertion: assertion(t, f.key, "keyed", "j2")},
			func() { f.clients.err = nil; f.replay.err = store.ErrUnavailable }, oauth.CodeTemporarilyUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			cl, err := f.auth.Authenticate(t.Context(), tt.creds)
			if got := code(err); got != tt.want {
				t.Fatalf("error %q (%v), want %q", got, err, tt.want)
			}
			if tt.want == "" && cl.ID != tt.creds.ClientID {
				t.Errorf("authenticated %q", cl.ID)
			}
			if tt.want != "" && cl.ID != "" {
				t.Errorf("a failure returned client %q", cl.ID)
			}
			if tt.want == oauth.CodeInvalidClient && oauth.AsError(err).Description != "client authentication failed" {
				t.Errorf("description %q tells the reason", oauth.AsError(err).Description)
			}
		})
	}
	f.clients.put(store.Client{ID: "off", AuthMethod: oauth.AuthSecretBasic, SecretHash: f.hasher.HashGenerated(f.secret), Disabled: true})
	if _, err := f.auth.Authenticate(t.Context(), oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "off", Secret: f.secret}); code(err) != oauth.CodeInvalidClient {
		t.Errorf("disabled client: %v", err)
	}
}

// TestChangedKeysReplaceTheSource: a client whose registered keys change is verified with the
// new keys at once, and the old ones stop working.
func TestChangedKeysReplaceTheSource(t *testing.T) {
	f := newFixture(t)
	creds := func(k *ecdsa.PrivateKey, jti string) oauth.ClientCredentials {
		return oauth.ClientCredentials{Method: oauth.AuthPrivateKey, ClientID: "keyed", Assertion: assertion(t, k, "keyed", jti)}
	}
	if _, err := f.auth.Authenticate(t.Context(), creds(f.key, "a")); err != nil {
		t.Fatal(err)
	}
	newKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.clients.put(store.Client{ID: "keyed", AuthMethod: oauth.AuthPrivateKey, JWKS: jwksOf(t, newKey), GrantTypes: []string{"client_credentials"}})
	if _, err := f.auth.Authenticate(t.Context(), creds(newKey, "b")); err != nil {
		t.Fatalf("new key refused: %v", err)
	}
	if _, err := f.auth.Authenticate(t.Context(), creds(f.key, "c")); code(err) != oauth.CodeInvalidClient {
		t.Fatalf("old key still accepted: %v", err)
	}
}

func TestRequestedScopes(t *testing.T) {
	d := &Dispatcher{Scopes: map[string]config.Scope{"orders:read": {}, "orders:write": {}, "admin": {}}}
	cl := store.Client{Scopes: []string{"orders:read", "orders:write", "openid"}}
	tests := []struct {
		param   string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"orders:read", []string{"orders:read"}, false},
		{"orders:write orders:read", []string{"orders:write", "orders:read"}, false},
		{"orders:read orders:read", []string{"orders:read"}, false},
		{"openid", []string{"openid"}, false},
		{"admin", nil, true},         // known, not the client's
		{"profile", nil, true},       // builtin, not the client's
		{"orders:delete", nil, true}, // unknown
		{"orders:read ", nil, true},  // trailing space
		{"orders:read\torders:write", nil, true},
		{`orders"read`, nil, true},
		{strings.Repeat("s", 200), nil, true},
	}
	for _, tt := range tests {
		got, err := d.requestedScopes(cl, tt.param)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: err = %v", tt.param, err)
			continue
		}
		if err != nil {
			if code(err) != oauth.CodeInvalidScope {
				t.Errorf("%q: code %s", tt.param, code(err))
			}
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.param, diff)
		}
	}
}

func TestAudience(t *testing.T) {
	d := &Dispatcher{DefaultAudience: []string{issuerURL}}
	own := store.Client{Audience: []string{"https://api-a.test", "https://api-b.test"}}
	tests := []struct {
		name               string
		cl                 store.Client
		resource, audience string
		want               []string
		wantCode           string
	}{
		{"default", store.Client{}, "", "", []string{issuerURL}, ""},
		{"client's own", own, "", "", []string{"https://api-a.test", "https://api-b.test"}, ""},
		{"resource narrows", own, "https://api-b.test", "", []string{"https://api-b.test"}, ""},
		{"audience parameter", own, "", "https://api-a.test", []string{"https://api-a.test"}, ""},
		{"same in both", own, "https://api-a.test", "https://api-a.test", []string{"https://api-a.test"}, ""},
		{"not registered", own, "https://evil.test", "", nil, oauth.CodeInvalidTarget},
		{"issuer is not the client's", own, issuerURL, "", nil, oauth.CodeInvalidTarget},
		{"they differ", own, "https://api-a.test", "https://api-b.test", nil, oauth.CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.audience(tt.cl, tt.resource, tt.audience)
			if code(err) != tt.wantCode {
				t.Fatalf("err = %v, want %q", err, tt.wantCode)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("audience (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAssertClaims(t *testing.T) {
	cfg := map[string]config.Scope{"orders:read": {Claims: []string{"customer_id"}}, "reports:read": {Claims: []string{"team", "region"}}, "plain": {}}
	values := map[string]any{"customer_id": "acme", "team": "blue", "secret_flag": "x"}
	tests := []struct {
		scopes []string
		want   map[string]any
	}{
		{nil, nil},
		{[]string{"plain"}, nil},
		{[]string{"orders:read"}, map[string]any{"customer_id": "acme"}},
		{[]string{"reports:read"}, map[string]any{"team": "blue"}}, // region has no value: omitted
		{[]string{"orders:read", "reports:read", "unknown"}, map[string]any{"customer_id": "acme", "team": "blue"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, AssertClaims(tt.scopes, cfg, values)); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tt.scopes, diff)
		}
	}
}

// recordingGrant remembers the requests it is given.
type recordingGrant struct{ got []*Request }

func (g *recordingGrant) Type() string { return "client_credentials" }
func (g *recordingGrant) Handle(_ context.Context, req *Request) (*Response, error) {
	g.got = append(g.got, req)
	return &Response{AccessToken: "tok", TokenType: "Bearer", ExpiresIn: 300, Scope: strings.Join(req.Scopes, " "), Subject: req.Client.ID}, nil
}

// TestDispatcherGuardsGrants: a grant runs only after authentication, grant-type and scope
// checks, and the outcome is counted with bounded labels.
func TestDispatcherGuardsGrants(t *testing.T) {
	f := newFixture(t)
	g := &recordingGrant{}
	issued := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t"}, []string{"grant_type", "outcome"})
	d := &Dispatcher{Auth: f.auth, Grants: []Grant{g}, Scopes: map[string]config.Scope{"orders:read": {}, "orders:write": {}},
		DefaultAudience: []string{issuerURL}, MaxBodyBytes: 4096, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return now }, Issued: issued}
	post := func(body string, auth bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth {
			r.SetBasicAuth("app", f.secret)
		}
		w := httptest.NewRecorder()
		d.ServeHTTP(w, r)
		return w
	}
	for _, tt := range []struct {
		body string
		auth bool
		want int
	}{
		{"grant_type=client_credentials", false, 401},
		{"grant_type=client_credentials&scope=admin", true, 400},
		{"grant_type=password", true, 400},
		{"grant_type=x" + strings.Repeat("y", 100), true, 400},
		{"scope=orders:read", true, 400},
	} {
		if w := post(tt.body, tt.auth); w.Code != tt.want {
			t.Errorf("%.40s: %d %s", tt.body, w.Code, w.Body)
		}
	}
	if len(g.got) != 0 {
		t.Fatalf("the grant ran for %d refused requests", len(g.got))
	}
	w := post("grant_type=client_credentials&scope=orders:write", true)
	if w.Code != 200 || len(g.got) != 1 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	req := g.got[0]
	if req.Client.ID != "app" || !cmp.Equal(req.Scopes, []string{"orders:write"}) || !cmp.Equal(req.Audience, []string{issuerURL}) || !req.Now.Equal(now) {
		t.Errorf("grant got %+v", req)
	}
	counts := collect(t, issued)
	want := map[string]float64{
		"client_credentials/ok": 1, "client_credentials/invalid_client": 1, "client_credentials/invalid_scope": 1,
		"other/unsupported_grant_type": 2, "/invalid_request": 1,
	}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("metrics by grant_type/outcome (-want +got):\n%s", diff)
	}
}

// TestPublicClientCannotUseClientCredentials: even if its record lists the grant.
func TestPublicClientCannotUseClientCredentials(t *testing.T) {
	g := ClientCredentials{}
	_, err := g.Handle(t.Context(), &Request{Client: store.Client{ID: "spa", AuthMethod: oauth.AuthNone}})
	if code(err) != oauth.CodeUnauthorizedClient {
		t.Fatalf("err = %v", err)
	}
}

// collect reads a counter vector as "grant_type/outcome" → value.
func collect(t *testing.T, cv *prometheus.CounterVec) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 100)
	cv.Collect(ch)
	close(ch)
	out := map[string]float64{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		for _, l := range pb.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		out[labels["grant_type"]+"/"+labels["outcome"]] = pb.GetCounter().GetValue()
	}
	return out
}
