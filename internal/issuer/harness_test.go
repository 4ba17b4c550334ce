package issuer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to drop test schemas

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/issuer"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
	"github.com/portcullis/portcullis/jwtverify"
	"github.com/prometheus/client_golang/prometheus"
)

// clock is a settable time source shared by the issuer, its keys and its store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Client ids of the test issuer.
const (
	basicApp    = "basic-app"    // client_secret_basic, opaque, orders:read orders:write, customer_id=acme
	postApp     = "post-app"     // client_secret_post, opaque, orders:read, customer_id=globex
	internalSvc = "internal-svc" // client_secret_basic, internal, jwt, reports:read, team=reports
	resource    = "resource-rs"  // client_secret_basic, introspect: true, no grants
	argonApp    = "argon-app"    // client_secret_basic with a person-chosen (argon2id) secret
	inlineKeys  = "pkjwt-inline" // private_key_jwt, inline JWKS
	remoteKeys  = "pkjwt-remote" // private_key_jwt, jwks_uri on an httptest TLS server
	codeOnly    = "code-only"    // registered for authorization_code only
)

// argonSecret is the person-chosen secret of argonApp.
const argonSecret = "correct horse battery staple"

// argonHash is its argon2id hash, computed once (64 MiB and a noticeable time each).
var argonHash = sync.OnceValue(func() string { return secret.HashArgon2id(argonSecret) })

// harness is a real issuer (real SQLite store, real keys, real secrets) behind an
// httptest TLS server.
type harness struct {
	srv     *httptest.Server
	url     string
	db      *sqlstore.DB
	dbPath  string
	keys    *keys.Manager
	issuer  *issuer.Server
	cfg     *config.Issuer
	clock   *clock
	bus     *events.Memory
	secrets map[string]string // client id → secret
	// clientKey signs private_key_jwt assertions of inlineKeys and remoteKeys.
	clientKey *ecdsa.PrivateKey
	clientKID string
	http      *http.Client
	jwks      *jwtverify.RemoteJWKS
	audit     *audit.Recorder
}

type harnessOptions struct {
	// accessTTL overrides the default 5m.
	accessTTL time.Duration
	// noAudit leaves the audit recorder out (benchmarks measure it separately).
	noAudit bool
	// postgres, when set, is the DSN of a PostgreSQL server: the store is there, in a schema
	// of its own that is dropped afterwards, instead of SQLite.
	postgres string
	// abuse, when set, is the issuer's abuse detector, with authFailures as its rule.
	abuse        *abuse.Detector
	authFailures config.AbuseRule
	// reg receives the issuer's metrics.
	reg prometheus.Registerer
}

func newHarness(tb testing.TB) *harness { return buildHarness(tb, harnessOptions{}) }

func buildHarness(tb testing.TB, o harnessOptions) *harness {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	clk := newClock()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	base := "https://" + ln.Addr().String()

	// The remote JWKS of remoteKeys lives on its own TLS server.
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	clientJWK := jose.JSONWebKey{Key: clientKey.Public(), KeyID: "client-key-1", Algorithm: "ES256", Use: "sig"}
	clientJWKS, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{clientJWK}})
	if err != nil {
		tb.Fatal(err)
	}
	jwksSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(clientJWKS)
	}))
	tb.Cleanup(jwksSrv.Close)

	mk := keys.NewMasterKey()
	mkFile := filepath.Join(dir, "master.key")
	writeFile(tb, mkFile, mk.Encode())
	writeFile(tb, filepath.Join(dir, "tls.pem"), "unused: httptest serves TLS")
	writeFile(tb, filepath.Join(dir, "tls-key.pem"), "unused")

	hasher, err := secret.NewHasher(mk.Derive(keys.PurposeSecretPepper), secret.HasherOptions{CacheTTL: time.Minute, CacheSize: 100, Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	secrets := map[string]string{}
	gen := func(id string) string {
		s := secret.Generate()
		secrets[id] = s
		return hasher.HashGenerated(s)
	}
	secrets[argonApp] = argonSecret

	cfg := &config.Config{
		Dir: dir,
		Issuer: &config.Issuer{
			URL:    base,
			Listen: ln.Addr().String(),
			TLS:    config.TLS{Cert: "tls.pem", Key: "tls-key.pem"},
			Keys:   config.Keys{MasterKeyFile: "master.key"},
			Tokens: config.Tokens{AccessTTL: o.accessTTL},
			Scopes: map[string]config.Scope{
				"orders:read":  {Claims: []string{"customer_id"}},
				"orders:write": {Claims: []string{"customer_id"}},
				"reports:read": {Claims: []string{"team"}},
			},
			Clients: []config.Client{
				{ID: basicApp, SecretHash: gen(basicApp), AuthMethod: "client_secret_basic", Scopes: []string{"orders:read", "orders:write"},
					Claims: map[string]string{"customer_id": "acme", "tier": "gold"}},
				{ID: postApp, SecretHash: gen(postApp), AuthMethod: "client_secret_post", Scopes: []string{"orders:read"},
					Claims: map[string]string{"customer_id": "globex"}},
				{ID: internalSvc, SecretHash: gen(internalSvc), AuthMethod: "client_secret_basic", Scopes: []string{"reports:read"},
					Internal: true, TokenFormat: "jwt", Claims: map[string]string{"team": "reports"}},
				{ID: resource, SecretHash: gen(resource), AuthMethod: "client_secret_basic", GrantTypes: []string{}, Scopes: []string{}, Introspect: true},
				{ID: argonApp, SecretHash: argonHash(), AuthMethod: "client_secret_basic", Scopes: []string{"orders:read"}},
				{ID: inlineKeys, AuthMethod: "private_key_jwt", JWKS: config.JSONValue(clientJWKS), Scopes: []string{"orders:read"}},
				{ID: remoteKeys, AuthMethod: "private_key_jwt", JWKSURI: jwksSrv.URL + "/jwks.json", Scopes: []string{"orders:read"}},
				{ID: codeOnly, SecretHash: gen(codeOnly), AuthMethod: "client_secret_basic", GrantTypes: []string{"authorization_code"},
					RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"orders:read"}},
			},
		},
	}
	cfg.Issuer.Abuse.AuthFailures = o.authFailures
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("test config does not validate:\n%v", err)
	}
	ic := cfg.Issuer

	dbPath := filepath.Join(dir, "portcullis.db")
	so := sqlstore.Options{Driver: "sqlite", DSN: "file:" + dbPath, AutoMigrate: true, Now: clk.Now}
	if o.postgres != "" {
		so = sqlstore.Options{Driver: "postgres", DSN: o.postgres, Schema: "issuer_test_" + strings.ToLower(secret.Random(6)[:8]), AutoMigrate: true, Now: clk.Now}
		so.Schema = strings.NewReplacer("-", "_").Replace(so.Schema)
		tb.Cleanup(func() { dropSchema(tb, o.postgres, so.Schema) })
	}
	db, err := sqlstore.Open(ctx, so)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := syncClients(ctx, db, ic); err != nil {
		tb.Fatal(err)
	}
	sealer, err := keys.NewSealer(mk.Derive(keys.PurposeKeySealing))
	if err != nil {
		tb.Fatal(err)
	}
	bus := &events.Memory{}
	km, err := keys.New(ctx, keys.Options{
		Store: db, Sealer: sealer, Algorithm: ic.Keys.Algorithm, RotateEvery: ic.Keys.RotateEvery,
		PublishAhead: ic.Keys.PublishAhead, Overlap: ic.Keys.Overlap,
		MaxTokenTTL: max(ic.Tokens.AccessTTL, ic.Tokens.IntrospectionTTL), Events: bus, Now: clk.Now,
	})
	if err != nil {
		tb.Fatal(err)
	}
	var rec *audit.Recorder
	if !o.noAudit {
		rec = audit.NewRecorder(db, discard())
		tb.Cleanup(rec.Close) // registered after db.Close, so it runs first
	}
	var metrics *issuer.Metrics
	if o.reg != nil {
		if metrics, err = issuer.NewMetrics(o.reg); err != nil {
			tb.Fatal(err)
		}
	}
	srv, err := issuer.New(issuer.Options{
		Config: ic, Store: db, Keys: km, Secrets: hasher, Events: bus, Audit: rec,
		HTTPClient: jwksSrv.Client(), Now: clk.Now, Abuse: o.abuse, Metrics: metrics,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)

	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Listener.Close()
	ts.Listener = ln
	ts.EnableHTTP2 = true
	ts.StartTLS()
	tb.Cleanup(ts.Close)

	h := &harness{
		srv: ts, url: base, db: db, dbPath: dbPath, keys: km, issuer: srv, cfg: ic, clock: clk, bus: bus,
		secrets: secrets, clientKey: clientKey, clientKID: clientJWK.KeyID, http: ts.Client(), audit: rec,
	}
	h.jwks, err = jwtverify.NewRemoteJWKS(base+issuer.PathJWKS, jwtverify.RemoteOptions{HTTPClient: ts.Client()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.jwks.Close)
	return h
}

func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// syncClients mirrors app.SyncClients (the issuer package must not import app).
func syncClients(ctx context.Context, db *sqlstore.DB, ic *config.Issuer) error {
	var cs []store.Client
	for _, c := range ic.Clients {
		cs = append(cs, store.Client{
			ID: c.ID, Owner: c.Owner, Source: "config", SecretHash: c.SecretHash, AuthMethod: c.AuthMethod,
			JWKS: string(c.JWKS), JWKSURI: c.JWKSURI, GrantTypes: c.GrantTypes, Scopes: c.Scopes,
			Audience: c.Audience, Claims: c.Claims, TokenFormat: c.TokenFormat, Internal: c.Internal,
			Introspect: c.Introspect, RedirectURIs: c.RedirectURIs, RequirePAR: c.RequirePAR,
		})
	}
	return db.SyncConfigClients(ctx, cs)
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a map.
func (r response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		tb.Fatalf("body is not JSON (%v): %q", err, r.body)
	}
	return m
}

// post sends a form to path with optional headers ("Authorization" etc.).
func (h *harness) post(tb testing.TB, path string, form url.Values, hdr map[string]string) response {
	tb.Helper()
	return h.do(tb, http.MethodPost, path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()), hdr)
}

func (h *harness) do(tb testing.TB, method, path, contentType string, body io.Reader, hdr map[string]string) response {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, h.url+path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// basic returns the Authorization header of client_secret_basic for id.
func (h *harness) basic(id string) map[string]string {
	return map[string]string{"Authorization": basicAuth(id, h.secrets[id])}
}

func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// token gets an access token for id with client_secret_basic (or post for postApp).
func (h *harness) token(tb testing.TB, id string, scope string) string {
	tb.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	var hdr map[string]string
	if id == postApp {
		form.Set("client_id", id)
		form.Set("client_secret", h.secrets[id])
	} else {
		hdr = h.basic(id)
	}
	r := h.post(tb, "/token", form, hdr)
	if r.status != http.StatusOK {
		tb.Fatalf("token for %s: %d %s", id, r.status, r.body)
	}
	tok, _ := r.json(tb)["access_token"].(string)
	if tok == "" {
		tb.Fatalf("no access_token in %s", r.body)
	}
	return tok
}

// introspect asks about tok as caller (client_secret_basic) and returns the response.
func (h *harness) introspect(tb testing.TB, caller, tok string, accept string) response {
	tb.Helper()
	hdr := h.basic(caller)
	if accept != "" {
		hdr["Accept"] = accept
	}
	return h.post(tb, "/introspect", url.Values{"token": {tok}}, hdr)
}

// assertion signs a private_key_jwt client assertion for id; edit may change the claims or
// return a different signing key.
type assertionSpec struct {
	claims map[string]any
	key    any    // default: the harness client key
	kid    string // default: the harness client kid
	typ    string // header typ; default none
	alg    jose.SignatureAlgorithm
}

func (h *harness) assertion(tb testing.TB, id string, edit func(*assertionSpec)) string {
	tb.Helper()
	now := h.clock.Now()
	s := &assertionSpec{
		claims: map[string]any{
			"iss": id, "sub": id, "aud": h.url + issuer.PathToken,
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": secret.Random(16),
		},
		key: h.clientKey, kid: h.clientKID, alg: jose.ES256,
	}
	if edit != nil {
		edit(s)
	}
	opts := &jose.SignerOptions{}
	if s.typ != "" {
		opts = opts.WithType(jose.ContentType(s.typ))
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := jwt.Signed(sig).Claims(s.claims).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// verifier returns a jwtverify.Verifier over the served JWKS.
func (h *harness) verifier(tb testing.TB, aud string, types ...string) *jwtverify.Verifier {
	tb.Helper()
	v, err := jwtverify.New(jwtverify.Config{
		Issuer: h.url, Audiences: []string{aud}, Types: types, Keys: h.jwks, Now: h.clock.Now,
		RequiredClaims: []string{"iat", "jti", "sub"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// waitAudit polls the audit trail (written in batches in the background) until an event of
// typ for clientID satisfies ok, and fails after a few seconds.
func (h *harness) waitAudit(tb testing.TB, typ, clientID string, ok func(store.AuditEvent) bool) store.AuditEvent {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, err := h.db.ListAudit(context.Background(), store.AuditFilter{Type: typ, ClientID: clientID})
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range evs {
			if ok == nil || ok(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no audit event %s for %q; have %+v", typ, clientID, evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dropSchema removes a PostgreSQL test schema.
func dropSchema(tb testing.TB, dsn, schema string) {
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Errorf("drop schema: %v", err)
		return
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		tb.Errorf("drop schema %s: %v", schema, err)
	}
}
