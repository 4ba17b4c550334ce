package issuer_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/issuer"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
	"github.com/portcullis/portcullis/jwtverify"
	"github.com/prometheus/client_golang/prometheus"
)

// The sign-in harness: a real issuer (SQLite store, keys, argon2id, TOTP) behind an httptest
// TLS server, with clients and users for the authorization code flow, and a browser-like
// client (cookie jar, Origin on posts, redirects to clients not followed).

// Clients of the sign-in harness.
const (
	siWeb      = "web"        // public (none), code + refresh, every user scope
	siConf     = "conf"       // client_secret_basic, code + refresh
	siOther    = "other-web"  // public, code only, another redirect URI
	siPARApp   = "par-app"    // client_secret_basic, require_par
	siNoOffln  = "no-refresh" // public, code only, loopback http redirect
	siNative   = "native"     // public, code only, private-use scheme redirect (RFC 8252 §7.1)
	siMachine  = "machine"    // client_credentials with openid (not a user)
	siResource = "resource"   // introspect: true (the gateway's view)
)

const (
	siWebRedirect   = "https://web.example/cb"
	siConfRedirect  = "https://conf.example/callback?tenant=1"
	siOtherRedirect = "https://other.example/cb"
	siPARRedirect   = "https://par.example/cb"
	siNoOfflnRedir  = "http://127.0.0.1:8123/cb"
	siNativeRedir   = "com.example.app:/oauth/cb"
)

// Post-logout redirect URIs: a list apart from the sign-in redirect URIs.
const (
	siWebSignedOut   = "https://web.example/signed-out"
	siOtherSignedOut = "https://other.example/bye"
)

// Users of the sign-in harness.
const (
	siAlice = "alice" // password only; name, email, customer_id
	siCarol = "carol" // password and TOTP
	siDave  = "dave"  // disabled
)

type siClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *siClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *siClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type siHarness struct {
	url       string
	srv       *httptest.Server
	db        *sqlstore.DB
	issuer    *issuer.Server
	clock     *siClock
	bus       *events.Memory
	secrets   map[string]string
	passwords map[string]string
	users     map[string]store.User
	totp      map[string]string // username → base32 secret
	jwks      *jwtverify.RemoteJWKS
	keys      *keys.Manager
	revoked   *siRevocations
}

// siRevocations records the token hashes announced on the bus.
type siRevocations struct {
	mu sync.Mutex
	m  map[string]bool
}

func (r *siRevocations) has(h string) bool { r.mu.Lock(); defer r.mu.Unlock(); return r.m[h] }

type siOptions struct {
	login config.Login
	// wrap, when set, wraps the store the issuer is given (to watch what it stores).
	wrap func(store.Store) store.Store
	// reg, when set, receives the issuer's metrics.
	reg prometheus.Registerer
}

func newSIHarness(tb testing.TB) *siHarness { return buildSIHarness(tb, siOptions{}) }

func buildSIHarness(tb testing.TB, o siOptions) *siHarness {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	clk := &siClock{t: time.Now().UTC().Truncate(time.Second)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	base := "https://" + ln.Addr().String()
	mk := keys.NewMasterKey()
	for name, content := range map[string]string{"master.key": mk.Encode(), "tls.pem": "x", "tls-key.pem": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	hasher, err := secret.NewHasher(mk.Derive(keys.PurposeSecretPepper), secret.HasherOptions{CacheTTL: time.Hour, CacheSize: 100, Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	secrets := map[string]string{}
	gen := func(id string) string {
		s := secret.Generate()
		secrets[id] = s
		return hasher.HashGenerated(s)
	}
	userScopes := []string{"openid", "profile", "email", "orders:read", "offline_access"}
	cfg := &config.Config{Dir: dir, Issuer: &config.Issuer{
		URL: base, Listen: ln.Addr().String(), TLS: config.TLS{Cert: "tls.pem", Key: "tls-key.pem"},
		Keys: config.Keys{MasterKeyFile: "master.key"},
		Scopes: map[string]config.Scope{
			"orders:read": {Description: "See your orders", Claims: []string{"customer_id"}},
		},
		Login: o.login,
		Clients: []config.Client{
			{ID: siWeb, AuthMethod: "none", GrantTypes: []string{"authorization_code", "refresh_token"}, Scopes: userScopes, RedirectURIs: []string{siWebRedirect}, PostLogoutRedirectURIs: []string{siWebSignedOut}},
			{ID: siConf, SecretHash: gen(siConf), AuthMethod: "client_secret_basic", GrantTypes: []string{"authorization_code", "refresh_token"}, Scopes: userScopes, RedirectURIs: []string{siConfRedirect}},
			{ID: siOther, AuthMethod: "none", GrantTypes: []string{"authorization_code"}, Scopes: userScopes, RedirectURIs: []string{siOtherRedirect}, PostLogoutRedirectURIs: []string{siOtherSignedOut}},
			{ID: siPARApp, SecretHash: gen(siPARApp), AuthMethod: "client_secret_basic", GrantTypes: []string{"authorization_code"}, Scopes: userScopes, RedirectURIs: []string{siPARRedirect}, RequirePAR: true},
			{ID: siNoOffln, AuthMethod: "none", GrantTypes: []string{"authorization_code"}, Scopes: userScopes, RedirectURIs: []string{siNoOfflnRedir}},
			{ID: siNative, AuthMethod: "none", GrantTypes: []string{"authorization_code"}, Scopes: userScopes, RedirectURIs: []string{siNativeRedir}},
			{ID: siMachine, SecretHash: gen(siMachine), AuthMethod: "client_secret_basic", GrantTypes: []string{"client_credentials"}, Scopes: []string{"openid", "orders:read"}},
			{ID: siResource, SecretHash: gen(siResource), AuthMethod: "client_secret_basic", GrantTypes: []string{}, Scopes: []string{}, Introspect: true},
		},
	}}
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("sign-in test config:\n%v", err)
	}
	ic := cfg.Issuer
	db, err := sqlstore.Open(ctx, sqlstore.Options{Driver: "sqlite", DSN: "file:" + filepath.Join(dir, "p.db"), AutoMigrate: true, Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	var cs []store.Client
	for _, c := range ic.Clients {
		cs = append(cs, store.Client{ID: c.ID, Source: "config", SecretHash: c.SecretHash, AuthMethod: c.AuthMethod,
			GrantTypes: c.GrantTypes, Scopes: c.Scopes, TokenFormat: c.TokenFormat, Introspect: c.Introspect,
			RedirectURIs: c.RedirectURIs, PostLogoutRedirectURIs: c.PostLogoutRedirectURIs, RequirePAR: c.RequirePAR})
	}
	if err := db.SyncConfigClients(ctx, cs); err != nil {
		tb.Fatal(err)
	}
	totp, err := login.NewTOTP(mk.Derive(keys.PurposeTOTP))
	if err != nil {
		tb.Fatal(err)
	}
	h := &siHarness{url: base, db: db, clock: clk, secrets: secrets, passwords: map[string]string{}, users: map[string]store.User{}, totp: map[string]string{}}
	for _, u := range []struct {
		name     string
		attrs    map[string]any
		withTOTP bool
		disabled bool
	}{
		{siAlice, map[string]any{"name": "Alice Liddell", "email": "alice@acme.example", "email_verified": true, "customer_id": "acme"}, false, false},
		{siCarol, map[string]any{"name": "Carol Danvers", "customer_id": "globex"}, true, false},
		{siDave, map[string]any{"name": "Dave"}, false, true},
	} {
		pw := "pw-" + secret.Random(9)
		hash, err := login.HashPassword(pw)
		if err != nil {
			tb.Fatal(err)
		}
		usr := store.User{ID: login.NewUserID(), Username: u.name, PasswordHash: hash, Disabled: u.disabled, Attributes: u.attrs, CreatedAt: clk.Now(), UpdatedAt: clk.Now()}
		if u.withTOTP {
			enr, err := totp.Enroll("Portcullis test", usr.ID, u.name)
			if err != nil {
				tb.Fatal(err)
			}
			usr.TOTPSealed = enr.Sealed
			h.totp[u.name] = enr.Secret
		}
		if err := db.CreateUser(ctx, usr); err != nil {
			tb.Fatal(err)
		}
		h.passwords[u.name], h.users[u.name] = pw, usr
	}
	sealer, err := keys.NewSealer(mk.Derive(keys.PurposeKeySealing))
	if err != nil {
		tb.Fatal(err)
	}
	h.bus = &events.Memory{}
	h.revoked = &siRevocations{m: map[string]bool{}}
	h.bus.Subscribe(func(e events.Event) {
		if e.Kind == events.TokenRevoked {
			h.revoked.mu.Lock()
			h.revoked.m[e.TokenHash] = true
			h.revoked.mu.Unlock()
		}
	})
	h.keys, err = keys.New(ctx, keys.Options{Store: db, Sealer: sealer, Algorithm: ic.Keys.Algorithm, RotateEvery: ic.Keys.RotateEvery,
		PublishAhead: ic.Keys.PublishAhead, Overlap: ic.Keys.Overlap, MaxTokenTTL: ic.Tokens.AccessTTL, Events: h.bus, Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	rec := audit.NewRecorder(db, slog.New(slog.DiscardHandler))
	tb.Cleanup(rec.Close)
	var is store.Store = db
	if o.wrap != nil {
		is = o.wrap(db)
	}
	var metrics *issuer.Metrics
	if o.reg != nil {
		if metrics, err = issuer.NewMetrics(o.reg); err != nil {
			tb.Fatal(err)
		}
	}
	h.issuer, err = issuer.New(issuer.Options{Config: ic, Store: is, Keys: h.keys, Secrets: hasher, Events: h.bus, Audit: rec, Now: clk.Now, TOTP: totp, Metrics: metrics})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.issuer.Close)
	ts := httptest.NewUnstartedServer(h.issuer.Handler())
	ts.Listener.Close()
	ts.Listener = ln
	ts.EnableHTTP2 = true
	ts.StartTLS()
	tb.Cleanup(ts.Close)
	h.srv = ts
	h.jwks, err = jwtverify.NewRemoteJWKS(base+issuer.PathJWKS, jwtverify.RemoteOptions{HTTPClient: ts.Client()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.jwks.Close)
	return h
}

// siResp is a finished exchange.
type siResp struct {
	status int
	header http.Header
	body   string
}

func (r siResp) location(tb testing.TB) *url.URL {
	tb.Helper()
	l := r.header.Get("Location")
	if l == "" {
		tb.Fatalf("no Location (status %d): %.300s", r.status, r.body)
	}
	u, err := url.Parse(l)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func (r siResp) jsonMap(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		tb.Fatalf("not JSON (%v): %.300s", err, r.body)
	}
	return m
}

// siBrowser is a browser: a cookie jar, Origin on posts, and redirects followed only within
// the issuer.
type siBrowser struct {
	h      *siHarness
	client *http.Client
	origin string // sent as Origin on posts; "" sends none
}

func (h *siHarness) browser(tb testing.TB) *siBrowser {
	tb.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	c := *h.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &siBrowser{h: h, client: &c, origin: h.url}
}

func (b *siBrowser) do(tb testing.TB, method, rawURL string, form url.Values, hdr map[string]string) siResp {
	tb.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = b.h.url + rawURL
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(context.Background(), method, rawURL, body)
	if err != nil {
		tb.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if b.origin != "" {
			req.Header.Set("Origin", b.origin)
		}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return siResp{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

func (b *siBrowser) get(tb testing.TB, u string) siResp {
	tb.Helper()
	return b.do(tb, http.MethodGet, u, nil, nil)
}
func (b *siBrowser) post(tb testing.TB, u string, form url.Values) siResp {
	tb.Helper()
	return b.do(tb, http.MethodPost, u, form, nil)
}

var (
	siTxField   = regexp.MustCompile(`name="tx" value="([^"]+)"`)
	siCSRFField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// form returns the tx and csrf fields of a page.
func siForm(tb testing.TB, page siResp) (tx, csrf string) {
	tb.Helper()
	m1, m2 := siTxField.FindStringSubmatch(page.body), siCSRFField.FindStringSubmatch(page.body)
	if m1 == nil || m2 == nil {
		tb.Fatalf("no tx/csrf fields in the page (status %d): %.400s", page.status, page.body)
	}
	return m1[1], m2[1]
}

// pkce returns a verifier and its S256 challenge.
func pkce() (verifier, challenge string) { return pkceFrom(secret.Random(32)) }

func pkceFrom(verifier string) (string, string) {
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authParams are the parameters of a good authorization request of client.
func (h *siHarness) authParams(client, redirect, challenge string, scope string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect}, "scope": {scope},
		"state": {"st-" + secret.Random(8)}, "nonce": {"n-" + secret.Random(8)},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
}

// loginPage starts an authorization request and follows to the sign-in page.
func (b *siBrowser) loginPage(tb testing.TB, q url.Values) siResp {
	tb.Helper()
	r := b.get(tb, "/authorize?"+q.Encode())
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), issuer.PathLogin+"?") {
		tb.Fatalf("authorize: %d %s %.300s", r.status, r.header.Get("Location"), r.body)
	}
	return b.get(tb, r.header.Get("Location"))
}

// signIn posts the sign-in form of page.
func (b *siBrowser) signIn(tb testing.TB, page siResp, username, password string) siResp {
	tb.Helper()
	tx, csrf := siForm(tb, page)
	return b.post(tb, issuer.PathLogin, url.Values{"tx": {tx}, "csrf": {csrf}, "username": {username}, "password": {password}})
}

// follow GETs a same-issuer Location.
func (b *siBrowser) follow(tb testing.TB, r siResp) siResp {
	tb.Helper()
	return b.get(tb, r.location(tb).String())
}

// consent follows to the consent page and allows.
func (b *siBrowser) allow(tb testing.TB, afterLogin siResp) siResp {
	tb.Helper()
	if !strings.HasPrefix(afterLogin.header.Get("Location"), issuer.PathConsent+"?") {
		tb.Fatalf("expected the consent page next, got %d %q %.300s", afterLogin.status, afterLogin.header.Get("Location"), afterLogin.body)
	}
	page := b.follow(tb, afterLogin)
	tx, csrf := siForm(tb, page)
	return b.post(tb, issuer.PathConsent, url.Values{"tx": {tx}, "csrf": {csrf}, "decision": {"allow"}})
}

// codeFrom checks a redirect to the client and returns the code after checking state and iss.
func (h *siHarness) codeFrom(tb testing.TB, r siResp, redirect, state string) string {
	tb.Helper()
	u := r.location(tb)
	want, _ := url.Parse(redirect)
	if u.Scheme != want.Scheme || u.Host != want.Host || u.Path != want.Path {
		tb.Fatalf("redirected to %s, want %s", u, redirect)
	}
	q := u.Query()
	if e := q.Get("error"); e != "" {
		tb.Fatalf("authorization error %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state || q.Get("iss") != h.url {
		tb.Fatalf("state %q iss %q, want %q %q", q.Get("state"), q.Get("iss"), state, h.url)
	}
	return q.Get("code")
}

// flow runs a full sign-in for user at client and returns the code and the verifier.
func (h *siHarness) flow(tb testing.TB, b *siBrowser, client, redirect, user, scope string) (code, verifier string, q url.Values) {
	tb.Helper()
	verifier, challenge := pkce()
	q = h.authParams(client, redirect, challenge, scope)
	page := b.loginPage(tb, q)
	r := b.signIn(tb, page, user, h.passwords[user])
	if strings.HasPrefix(r.header.Get("Location"), issuer.PathConsent) {
		r = b.allow(tb, r)
	}
	return h.codeFrom(tb, r, redirect, q.Get("state")), verifier, q
}

// token posts to /token as client (public: client_id in the body; conf: Basic).
func (h *siHarness) token(tb testing.TB, client string, form url.Values) siResp {
	tb.Helper()
	hdr := map[string]string{}
	if s, ok := h.secrets[client]; ok {
		hdr["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(client+":"+s))
	} else {
		form.Set("client_id", client)
	}
	b := &siBrowser{h: h, client: h.srv.Client()}
	return b.do(tb, http.MethodPost, issuer.PathToken, form, hdr)
}

func (h *siHarness) redeem(tb testing.TB, client, code, redirect, verifier string) siResp {
	tb.Helper()
	return h.token(tb, client, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
}

func (h *siHarness) refresh(tb testing.TB, client, rt string) siResp {
	tb.Helper()
	return h.token(tb, client, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// active asks the introspection endpoint, as the gateway would, whether tok is active.
func (h *siHarness) active(tb testing.TB, tok string) bool {
	tb.Helper()
	b := &siBrowser{h: h, client: h.srv.Client()}
	r := b.do(tb, http.MethodPost, issuer.PathIntrospect, url.Values{"token": {tok}},
		map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(siResource+":"+h.secrets[siResource]))})
	if r.status != http.StatusOK {
		tb.Fatalf("introspect: %d %s", r.status, r.body)
	}
	return r.jsonMap(tb)["active"] == true
}

// audits waits for an audit event of typ satisfying ok.
func (h *siHarness) audit(tb testing.TB, typ string, ok func(store.AuditEvent) bool) store.AuditEvent {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		evs, err := h.db.ListAudit(context.Background(), store.AuditFilter{Type: typ})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			tb.Fatal(err)
		}
		for _, e := range evs {
			if ok == nil || ok(e) {
				return e
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("no audit event %s", typ)
	return store.AuditEvent{}
}

func siFindCookie(resp siResp, name string) *http.Cookie {
	for _, c := range (&http.Response{Header: resp.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// idClaims verifies an ID token (typ JWT, aud client) against the served JWKS.
func (h *siHarness) idClaims(tb testing.TB, raw any, client string) *jwtverify.Claims {
	tb.Helper()
	s, _ := raw.(string)
	v, err := jwtverify.New(jwtverify.Config{Issuer: h.url, Audiences: []string{client}, Types: []string{"JWT"}, Keys: h.jwks, Now: h.clock.Now,
		RequiredClaims: []string{"sub", "iat", "auth_time"}})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := v.Verify(context.Background(), s)
	if err != nil {
		tb.Fatalf("ID token: %v", err)
	}
	return c
}
