package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"encoding/json"
	"fmt"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/demoapi"
	"github.com/portcullis/portcullis/internal/demoweb"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/web"
	"github.com/portcullis/portcullis/jwtverify"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// DemoInfo is demo.json: what scripts and tests need to drive a running demo.
type DemoInfo struct {
	Issuer   string       `json:"issuer"`
	Gateway  string       `json:"gateway,omitempty"`
	Upstream string       `json:"upstream,omitempty"`
	Admin    string       `json:"admin,omitempty"`
	CAFile   string       `json:"ca_file"`
	Clients  []DemoClient `json:"clients"`
	Users    []DemoUser   `json:"users"`
	Routes   []DemoRoute  `json:"routes"`
}

// DemoClient is a demo client with its secret (demo only: real secrets are shown once).
type DemoClient struct {
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret"`
	Scopes       []string `json:"scopes"`
	TokenFormat  string   `json:"token_format"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	Role         string   `json:"role,omitempty"`
}

// DemoUser is a demo user.
type DemoUser struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// DemoRoute is a gateway route of the demo.
type DemoRoute struct {
	Path      string   `json:"path"`
	Scopes    []string `json:"scopes"`
	Auth      string   `json:"auth,omitempty"`
	RateLimit string   `json:"rate_limit,omitempty"` // e.g. "20/s burst 20 per client"
}

// Demo rate limit of /api/orders: low enough to see in a loop of requests.
const (
	demoOrdersRate  = "20/s"
	demoOrdersBurst = 20
)

// demoRoutes are the routes of the demo config, for demo.json.
var demoRoutes = []DemoRoute{
	{Path: "/api/orders", Scopes: []string{"orders:read", "orders:write"}, Auth: "oauth", RateLimit: fmt.Sprintf("%s burst %d per client", demoOrdersRate, demoOrdersBurst)},
	{Path: "/api/whoami", Scopes: []string{}, Auth: "oauth"},
	{Path: "/internal/reports", Scopes: []string{"reports:read"}, Auth: "jwt"},
}

// demoAudience is the aud of the demo's access tokens: the demo API checks it.
const demoAudience = "demo-api"

// demoPorts are the fixed ports of a default demo.
var demoPorts = map[string]int{RoleIssuer: 9443, RoleGateway: 8443, RoleAdmin: 9090, "upstream": 9001}

// demoClients are created on the first run; their secrets live in demo.json afterwards.
var demoClients = []DemoClient{
	{ClientID: "acme-app", Scopes: []string{"orders:read", "orders:write"}, TokenFormat: "opaque"},
	{ClientID: "globex-app", Scopes: []string{"orders:read"}, TokenFormat: "opaque"},
	{ClientID: "reports-svc", Scopes: []string{"reports:read"}, TokenFormat: "jwt"},
	{ClientID: "gateway", Scopes: []string{}, TokenFormat: "opaque", Role: "the gateway's introspection client"},
	{ClientID: demoWebClient, Scopes: demoweb.Scopes, TokenFormat: "opaque", Role: "public web client (authorization code + PKCE) of the demo page /app/"},
}

// demoWebClient is the demo's public web client; its pages are served on the demo API's
// listener under /app/.
const demoWebClient = "demo-web"

// demoUsers sign in at the issuer; their passwords are made on the first run and kept in
// demo.json.
var demoUsers = []struct {
	username string
	attrs    map[string]any
}{
	{"alice", map[string]any{"name": "Alice Liddell", "given_name": "Alice", "family_name": "Liddell",
		"email": "alice@acme.example", "email_verified": true, "customer_id": "acme"}},
	{"bob", map[string]any{"name": "Bob Smith", "given_name": "Bob", "family_name": "Smith",
		"email": "bob@globex.example", "email_verified": true, "customer_id": "globex"}},
}

func (e env) demo(args []string) int {
	fs := e.flags("demo", "[--dir DIR] [--ports auto|fixed]",
		"Runs Portcullis on loopback with nothing to set up: it writes a config, a master key,\n"+
			"signing keys and a local CA into DIR (a new temporary directory by default), starts\n"+
			"the issuer and the admin listener over HTTPS, and prints a walkthrough of curl\n"+
			"commands that work as printed. DIR/demo.json lists the URLs, the CA file, the\n"+
			"demo clients with their secrets and the demo users (alice, bob) with their passwords\n"+
			"for scripts and tests; a web page on the demo API's port (/app/) signs them in with\n"+
			"the authorization code flow. Running it again with the same --dir keeps the keys,\n"+
			"clients, users and tokens. Ctrl-C stops it.")
	dir := fs.String("dir", "", "directory for the demo's files (default: a new temporary directory)")
	ports := fs.String("ports", "fixed", "fixed (issuer 9443, gateway 8443, API 9001, admin 9090) or auto (free ports)")
	storageURL := fs.String("storage", "", "a postgres:// URL to keep the demo's data in PostgreSQL (its own schema) instead of SQLite in DIR")
	cacheURL := fs.String("cache", "", "a redis:// URL for the event bus, shared caches and limits (its own key prefix) instead of memory")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if *storageURL != "" && !strings.HasPrefix(*storageURL, "postgres://") && !strings.HasPrefix(*storageURL, "postgresql://") {
		fmt.Fprintln(e.stderr, "portcullis demo: --storage must be a postgres:// URL")
		return ExitUsage
	}
	if *cacheURL != "" && !strings.HasPrefix(*cacheURL, "redis://") && !strings.HasPrefix(*cacheURL, "rediss://") {
		fmt.Fprintln(e.stderr, "portcullis demo: --cache must be a redis:// URL")
		return ExitUsage
	}
	if *ports != "fixed" && *ports != "auto" {
		fmt.Fprintln(e.stderr, "portcullis demo: --ports must be fixed or auto")
		return ExitUsage
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "portcullis-demo-")
		if err != nil {
			fmt.Fprintf(e.stderr, "portcullis demo: %v\n", err)
			return ExitFailure
		}
		*dir = d
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis demo: %v\n", err)
		return ExitFailure
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		fmt.Fprintf(e.stderr, "portcullis demo: %v\n", err)
		return ExitFailure
	}
	lns, err := bindDemo(*ports == "auto")
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis demo: %v\n", err)
		if *ports == "fixed" {
			fmt.Fprintln(e.stderr, "Another program holds a demo port; try: portcullis demo --ports auto")
		}
		return ExitFailure
	}
	info, err := prepareDemo(abs, lns, demoBackends{storage: *storageURL, cache: *cacheURL})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		fmt.Fprintf(e.stderr, "portcullis demo: %v\n", err)
		return ExitFailure
	}
	cfg, code, ok := e.loadConfig(filepath.Join(abs, "portcullis.yaml"))
	if !ok {
		return code
	}
	logFile, err := os.OpenFile(filepath.Join(abs, "portcullis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis demo: %v\n", err)
		return ExitFailure
	}
	defer logFile.Close()
	log := telemetry.NewLogger(logFile, cfg.Log.SlogLevel(), cfg.Log.Format)
	if err := ensureDemoUsers(e.ctx, cfg, info, log); err != nil {
		fmt.Fprintf(e.stderr, "portcullis demo: users: %v\n", err)
		return ExitFailure
	}
	stopAPI, err := startDemoAPI(e.ctx, abs, info, lns["upstream"], log)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis demo: %v\n", err)
		return ExitFailure
	}
	defer stopAPI()
	ready := func() {
		if err := writeJSON(filepath.Join(abs, "demo.json"), info); err != nil {
			fmt.Fprintf(e.stderr, "portcullis demo: %v\n", err)
			return
		}
		printWalkthrough(e.stdout, abs, info)
	}
	if err := Run(e.ctx, cfg, Options{Logger: log, Listeners: lns, Ready: ready, AccessLog: logFile}); err != nil {
		fmt.Fprintf(e.stderr, "portcullis demo: %v (log: %s)\n", err, logFile.Name())
		return ExitFailure
	}
	return ExitOK
}

// bindDemo binds every demo listener on loopback, on fixed ports or free ones.
func bindDemo(auto bool) (map[string]net.Listener, error) {
	lns := map[string]net.Listener{}
	for _, role := range []string{RoleIssuer, RoleGateway, RoleAdmin, "upstream"} {
		port := demoPorts[role]
		if auto {
			port = 0
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listen for %s: %w", role, err)
		}
		lns[role] = ln
	}
	return lns, nil
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// prepareDemo writes (or reuses) the demo's key material, certificates and secrets, then
// writes portcullis.yaml for the bound ports.
func prepareDemo(dir string, lns map[string]net.Listener, be demoBackends) (*DemoInfo, error) {
	mkPath := filepath.Join(dir, "master.key")
	mk, err := keys.LoadMasterKey(mkPath, "")
	if err != nil {
		if _, statErr := os.Stat(mkPath); statErr == nil {
			return nil, fmt.Errorf("existing %s: %w", mkPath, err)
		}
		mk = keys.NewMasterKey()
		if err := writeFile(mkPath, []byte(mk.Encode()+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	ca, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	for _, name := range []string{"issuer", "gateway", "upstream", "admin"} {
		if err := ca.issue(dir, name, "portcullis demo "+name); err != nil {
			return nil, err
		}
	}
	// Secrets: reuse those of an earlier run in this directory (the store has their hashes).
	prev, prevPasswords := map[string]string{}, map[string]string{}
	if b, err := os.ReadFile(filepath.Join(dir, "demo.json")); err == nil {
		var old DemoInfo
		if json.Unmarshal(b, &old) == nil {
			for _, c := range old.Clients {
				prev[c.ClientID] = c.ClientSecret
			}
			for _, u := range old.Users {
				prevPasswords[u.Username] = u.Password
			}
		}
	}
	pepper := mk.Derive(keys.PurposeSecretPepper)
	h, err := secret.NewHasher(pepper, secret.HasherOptions{})
	if err != nil {
		return nil, err
	}
	info := &DemoInfo{
		Issuer:   fmt.Sprintf("https://127.0.0.1:%d", portOf(lns[RoleIssuer])),
		Upstream: fmt.Sprintf("https://127.0.0.1:%d", portOf(lns["upstream"])),
		Gateway:  fmt.Sprintf("https://127.0.0.1:%d", portOf(lns[RoleGateway])),
		Admin:    fmt.Sprintf("https://127.0.0.1:%d", portOf(lns[RoleAdmin])),
		CAFile:   filepath.Join(dir, "ca.pem"),
		Users:    []DemoUser{},
		Routes:   demoRoutes,
	}
	for _, u := range demoUsers {
		p := prevPasswords[u.username]
		if login.CheckNewPassword(p) != nil {
			p = secret.Random(12)
		}
		info.Users = append(info.Users, DemoUser{Username: u.username, Password: p})
	}
	webBase := fmt.Sprintf("https://127.0.0.1:%d", portOf(lns["upstream"]))
	hashes := map[string]string{}
	for _, c := range demoClients {
		if c.ClientID == demoWebClient { // public: no secret; PKCE protects its codes
			c.RedirectURIs = demoweb.RedirectURIs(webBase)
			info.Clients = append(info.Clients, c)
			continue
		}
		sec := prev[c.ClientID]
		if !strings.HasPrefix(sec, secret.ClientSecretPrefix) {
			sec = secret.Generate()
		}
		c.ClientSecret = sec
		hashes[c.ClientID] = h.HashGenerated(sec)
		info.Clients = append(info.Clients, c)
		if c.ClientID == "gateway" {
			if err := writeFile(filepath.Join(dir, "gateway.secret"), []byte(sec+"\n"), 0o600); err != nil {
				return nil, err
			}
		}
	}
	id, err := demoID(dir)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = demoConfig.Execute(&buf, map[string]any{
		"Storage":      be.storage,
		"Cache":        be.cache,
		"ID":           id,
		"IssuerPort":   portOf(lns[RoleIssuer]),
		"GatewayPort":  portOf(lns[RoleGateway]),
		"UpstreamPort": portOf(lns["upstream"]),
		"AdminPort":    portOf(lns[RoleAdmin]),
		"Hashes":       hashes,
		"Audience":     demoAudience,
		"WebRedirects": demoweb.RedirectURIs(webBase),
		"WebHome":      webBase + "/app/",
		"OrdersRate":   demoOrdersRate,
		"OrdersBurst":  demoOrdersBurst,
	})
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, "portcullis.yaml"), buf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	return info, nil
}

var demoConfig = template.Must(template.New("demo").Parse(`# Written by 'portcullis demo'. Every connection is HTTPS under the local CA in ca.pem.
# Secrets appear here only as keyed hashes; demo.json has the demo clients' secrets.
issuer:
  url: https://127.0.0.1:{{.IssuerPort}}
  listen: 127.0.0.1:{{.IssuerPort}}
  tls: { cert: issuer.pem, key: issuer-key.pem }
  keys: { algorithm: ES256, master_key_file: master.key }
  tokens: { access_ttl: 5m, audience: [{{.Audience}}] }
  scopes:
    orders:read:  { description: "See your orders", claims: [customer_id] }
    orders:write: { description: "Place orders for you", claims: [customer_id] }
    reports:read: { description: "Read internal reports" }
  clients:
    - id: acme-app
      secret_hash: "{{index .Hashes "acme-app"}}"
      auth_method: client_secret_basic
      grant_types: [client_credentials]
      scopes: [orders:read, orders:write]
      claims: { customer_id: acme }
    - id: globex-app
      secret_hash: "{{index .Hashes "globex-app"}}"
      auth_method: client_secret_basic
      grant_types: [client_credentials]
      scopes: [orders:read]
      claims: { customer_id: globex }
    - id: reports-svc
      secret_hash: "{{index .Hashes "reports-svc"}}"
      auth_method: client_secret_basic
      grant_types: [client_credentials]
      scopes: [reports:read]
      internal: true
      token_format: jwt
    - id: gateway
      secret_hash: "{{index .Hashes "gateway"}}"
      auth_method: client_secret_basic
      grant_types: []
      scopes: []
      introspect: true
    - id: demo-web
      auth_method: none
      grant_types: [authorization_code, refresh_token]
      scopes: [openid, profile, email, orders:read, offline_access]
      redirect_uris: [{{range $i, $u := .WebRedirects}}{{if $i}}, {{end}}"{{$u}}"{{end}}]
      post_logout_redirect_uris: ["{{.WebHome}}"]
gateway:
  listen: 127.0.0.1:{{.GatewayPort}}
  tls: { cert: gateway.pem, key: gateway-key.pem }
  issuer_ca: ca.pem
  identity_headers: [X-User-Id, X-Customer-Id]
  introspection: { client_id: gateway, secret_file: gateway.secret, revocation_bound: 5s }
  routes:
    - name: orders
      match: { path_prefix: /api/orders, methods: [GET, POST] }
      upstream: { url: "https://127.0.0.1:{{.UpstreamPort}}", ca: ca.pem }
      auth: { method: oauth, method_scopes: { GET: [orders:read], POST: [orders:write] } }
      rate_limit: { per: client, rate: {{.OrdersRate}}, burst: {{.OrdersBurst}} }
    - name: whoami
      match: { path: /api/whoami, methods: [GET] }
      upstream: { url: "https://127.0.0.1:{{.UpstreamPort}}", ca: ca.pem }
      auth: { method: oauth }
    - name: reports
      match: { path_prefix: /internal/reports, methods: [GET] }
      upstream: { url: "https://127.0.0.1:{{.UpstreamPort}}", ca: ca.pem }
      auth: { method: jwt, scopes: [reports:read] }
{{- if .Storage}}
storage: { driver: postgres, dsn: {{printf "%q" .Storage}}, schema: portcullis_demo_{{.ID}}, auto_migrate: true }
{{- else}}
storage: { driver: sqlite, dsn: "file:portcullis.db" }
{{- end}}
{{- if .Cache}}
cache: { driver: redis, url: {{printf "%q" .Cache}}, prefix: "portcullis:demo-{{.ID}}:" }
{{- end}}
admin: { listen: 127.0.0.1:{{.AdminPort}}, tls: { cert: admin.pem, key: admin-key.pem } }
log: { level: info, format: json }
`))

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'), 0o600)
}

// printWalkthrough prints curl commands that work as printed, in a POSIX shell.
func printWalkthrough(w io.Writer, dir string, info *DemoInfo) {
	secretOf := map[string]string{}
	for _, c := range info.Clients {
		secretOf[c.ClientID] = c.ClientSecret
	}
	ca := info.CAFile
	token := func(id string) string {
		return fmt.Sprintf(`$(curl -s --cacert %s -u %s:%s -d grant_type=client_credentials %s/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')`,
			ca, id, secretOf[id], info.Issuer)
	}
	fmt.Fprintf(w, `Portcullis demo is running. Files, config and log: %[1]s

  gateway   %[2]s   the only door: clients call this
  issuer    %[3]s   OAuth server (/token, /introspect, /revoke, /jwks)
  demo API  %[4]s   behind the gateway; verifies every JWT itself
  admin     %[5]s   /metrics, /healthz, /readyz

1. The phantom token in one line. acme-app gets an opaque token from the issuer and calls the
   API through the gateway; the API answers with the verified JWT claims it received and the
   headers it saw. The opaque token never reaches it, and the spoofed X-Forwarded-For and
   X-User-Id headers never arrive as sent:

curl -s --cacert %[6]s -H "Authorization: Bearer %[7]s" -H "X-Forwarded-For: 6.6.6.6" -H "X-User-Id: admin" %[2]s/api/whoami

2. Keep a token per client for the next steps:

ACME=%[7]s; GLOBEX=%[8]s; REPORTS=%[9]s

3. Scopes at the gateway, claims at the API. acme sees only its own orders; globex cannot read
   acme's order (404, exactly like a missing one) and cannot create one (no orders:write: 403):

curl -s --cacert %[6]s -H "Authorization: Bearer $ACME" %[2]s/api/orders
curl -s --cacert %[6]s -H "Authorization: Bearer $GLOBEX" %[2]s/api/orders/A-1001
curl -s --cacert %[6]s -H "Authorization: Bearer $GLOBEX" -H "Content-Type: application/json" -d '{"item":"anvil","quantity":1}' %[2]s/api/orders
curl -s --cacert %[6]s -H "Authorization: Bearer $ACME" -H "Content-Type: application/json" -d '{"item":"anvil","quantity":1}' %[2]s/api/orders

4. The internal route takes only JWT access tokens, verified at the gateway against the JWKS:
   the internal reports-svc client's JWT works, acme's opaque token is refused (401):

curl -s --cacert %[6]s -H "Authorization: Bearer $REPORTS" %[2]s/internal/reports
curl -s --cacert %[6]s -H "Authorization: Bearer $ACME" %[2]s/internal/reports

5. Rate limits. Each client may call /api/orders %[13]s, in bursts of up to %[14]d.
   Thirty requests at once over one connection: the first %[14]d or so pass, the rest get 429 with
   Retry-After, and every answer carries RateLimit-Policy and RateLimit headers (add -i to
   see them). Each client has its own budget: acme is not slowed by globex's burst.

echo "30 requests at once:"; curl -s -o /dev/null -w '%%{http_code} ' --cacert %[6]s -H "Authorization: Bearer $GLOBEX" "%[2]s/api/orders?n=[1-30]"; echo

6. Revoke acme's token; the gateway refuses it at once (401):

curl -s --cacert %[6]s -u acme-app:%[10]s -d "token=$ACME" %[3]s/revoke; curl -s -o /dev/null -w '%%{http_code}\n' --cacert %[6]s -H "Authorization: Bearer $ACME" %[2]s/api/orders

7. Sign in as a person. Open %[4]s/app/ in a browser (the certificate is from the demo's
   own CA, %[6]s: import it, or accept the warning) and sign in as
       alice   password %[11]s   (customer acme)
       bob     password %[12]s   (customer globex)
   The page runs the authorization code flow with PKCE, verifies the ID token, and lists the
   orders she may see, read through the gateway with her access token.

Press Ctrl-C to stop.
`, dir, info.Gateway, info.Issuer, info.Upstream, info.Admin, ca,
		token("acme-app"), token("globex-app"), token("reports-svc"), secretOf["acme-app"],
		passwordOf(info, "alice"), passwordOf(info, "bob"), demoRateWords(demoOrdersRate), demoOrdersBurst)
}

// demoRateWords says a rate like "20/s" in words.
func demoRateWords(rate string) string {
	n, unit, _ := strings.Cut(rate, "/")
	words := map[string]string{"s": "second", "m": "minute", "h": "hour", "d": "day"}
	return n + " times a " + words[unit]
}

// ensureDemoUsers creates the demo users, or brings them back to their demo.json password
// and attributes (enabled) on a later run.
func ensureDemoUsers(ctx context.Context, cfg *config.Config, info *DemoInfo, log *slog.Logger) error {
	db, err := OpenStore(ctx, cfg, log.With("component", "store"))
	if err != nil {
		return err
	}
	defer db.Close()
	for i, du := range demoUsers {
		hash, err := login.HashPassword(info.Users[i].Password)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		u, err := db.GetUserByName(ctx, du.username)
		switch {
		case errors.Is(err, store.ErrNotFound):
			err = db.CreateUser(ctx, store.User{ID: login.NewUserID(), Username: du.username, PasswordHash: hash, Attributes: du.attrs, CreatedAt: now, UpdatedAt: now})
		case err == nil:
			_, err = db.UpdateUser(ctx, u.ID, func(u store.User) (store.User, error) {
				u.PasswordHash, u.Attributes, u.Disabled, u.UpdatedAt = hash, du.attrs, false, now
				return u, nil
			})
		}
		if err != nil {
			return fmt.Errorf("%s: %w", du.username, err)
		}
	}
	return nil
}

func passwordOf(info *DemoInfo, username string) string {
	for _, u := range info.Users {
		if u.Username == username {
			return u.Password
		}
	}
	return ""
}

// startDemoAPI serves the demo orders API on ln over HTTPS. It verifies every JWT itself
// against the issuer's JWKS, fetched over HTTPS like any separate service would.
func startDemoAPI(ctx context.Context, dir string, info *DemoInfo, ln net.Listener, log *slog.Logger) (stop func(), err error) {
	tlsClient, err := web.ClientTLS(info.CAFile)
	if err != nil {
		return nil, err
	}
	jwks, err := jwtverify.NewRemoteJWKS(info.Issuer+"/jwks", jwtverify.RemoteOptions{
		HTTPClient: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsClient}},
		Logger:     log.With("component", "demo-api"),
	})
	if err != nil {
		return nil, err
	}
	api, err := demoapi.New(demoapi.Options{Issuer: info.Issuer, Audience: []string{demoAudience}, Keys: jwks, Logger: log.With("component", "demo-api")})
	if err != nil {
		jwks.Close()
		return nil, err
	}
	tlsServer, err := web.ServerTLS(filepath.Join(dir, "upstream.pem"), filepath.Join(dir, "upstream-key.pem"), "")
	if err != nil {
		jwks.Close()
		return nil, err
	}
	// The demo's web client shares the listener: /app/ is the page a person signs in from.
	app, err := demoweb.New(demoweb.Options{
		Issuer: info.Issuer, ClientID: demoWebClient, BaseURL: info.Upstream, Gateway: info.Gateway,
		HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsClient}},
		Keys:       jwks, Logger: log.With("component", "demo-web"),
	})
	if err != nil {
		jwks.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/app/", app.Handler())
	mux.Handle("/", api.Handler())
	srv := web.NewServer(web.ServerOptions{Handler: mux, TLS: tlsServer, Logger: log.With("component", "demo-api")})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := web.Serve(ctx, srv, ln, 5*time.Second); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo API stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done; jwks.Close() }, nil
}

// demoBackends are the demo's optional shared backends (empty: SQLite in DIR, memory).
type demoBackends struct{ storage, cache string }

// demoID names this demo directory's PostgreSQL schema and Redis prefix, so demos sharing a
// server never see each other's data and a rerun in the same DIR finds its own again.
func demoID(dir string) (string, error) {
	p := filepath.Join(dir, "demo.id")
	if b, err := os.ReadFile(p); err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) == 16 && strings.Trim(id, "0123456789abcdef") == "" {
			return id, nil
		}
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	return id, writeFile(p, []byte(id+"\n"), 0o600)
}
