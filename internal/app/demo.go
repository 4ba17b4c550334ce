package app

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	Path   string   `json:"path"`
	Scopes []string `json:"scopes"`
	Auth   string   `json:"auth,omitempty"`
}

// demoPorts are the fixed ports of a default demo.
var demoPorts = map[string]int{RoleIssuer: 9443, RoleGateway: 8443, RoleAdmin: 9090, "upstream": 9001}

// demoClients are created on the first run; their secrets live in demo.json afterwards.
var demoClients = []DemoClient{
	{ClientID: "acme-app", Scopes: []string{"orders:read", "orders:write"}, TokenFormat: "opaque"},
	{ClientID: "globex-app", Scopes: []string{"orders:read"}, TokenFormat: "opaque"},
	{ClientID: "reports-svc", Scopes: []string{"reports:read"}, TokenFormat: "jwt"},
	{ClientID: "gateway", Scopes: []string{}, TokenFormat: "opaque", Role: "the gateway's introspection client"},
}

func (e env) demo(args []string) int {
	fs := e.flags("demo", "[--dir DIR] [--ports auto|fixed]",
		"Runs Portcullis on loopback with nothing to set up: it writes a config, a master key,\n"+
			"signing keys and a local CA into DIR (a new temporary directory by default), starts\n"+
			"the issuer and the admin listener over HTTPS, and prints a walkthrough of curl\n"+
			"commands that work as printed. DIR/demo.json lists the URLs, the CA file and the\n"+
			"demo clients with their secrets for scripts and tests. Running it again with the\n"+
			"same --dir keeps the keys, clients and tokens. Ctrl-C stops it.")
	dir := fs.String("dir", "", "directory for the demo's files (default: a new temporary directory)")
	ports := fs.String("ports", "fixed", "fixed (issuer 9443, gateway 8443, API 9001, admin 9090) or auto (free ports)")
	if code, ok := e.parse(fs, args); !ok {
		return code
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
	info, err := prepareDemo(abs, lns)
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
	ready := func() {
		if err := writeJSON(filepath.Join(abs, "demo.json"), info); err != nil {
			fmt.Fprintf(e.stderr, "portcullis demo: %v\n", err)
			return
		}
		printWalkthrough(e.stdout, abs, info)
	}
	if err := Run(e.ctx, cfg, Options{Logger: log, Listeners: lns, Ready: ready}); err != nil {
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
func prepareDemo(dir string, lns map[string]net.Listener) (*DemoInfo, error) {
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
	prev := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(dir, "demo.json")); err == nil {
		var old DemoInfo
		if json.Unmarshal(b, &old) == nil {
			for _, c := range old.Clients {
				prev[c.ClientID] = c.ClientSecret
			}
		}
	}
	pepper := mk.Derive(keys.PurposeSecretPepper)
	h, err := secret.NewHasher(pepper, secret.HasherOptions{})
	if err != nil {
		return nil, err
	}
	info := &DemoInfo{
		Issuer: fmt.Sprintf("https://127.0.0.1:%d", portOf(lns[RoleIssuer])),
		Admin:  fmt.Sprintf("https://127.0.0.1:%d", portOf(lns[RoleAdmin])),
		CAFile: filepath.Join(dir, "ca.pem"),
		Users:  []DemoUser{},
		Routes: []DemoRoute{},
	}
	hashes := map[string]string{}
	for _, c := range demoClients {
		sec := prev[c.ClientID]
		if !strings.HasPrefix(sec, secret.ClientSecretPrefix) {
			sec = secret.Generate()
		}
		c.ClientSecret = sec
		hashes[c.ClientID] = h.HashGenerated(sec)
		info.Clients = append(info.Clients, c)
	}
	var buf bytes.Buffer
	err = demoConfig.Execute(&buf, map[string]any{
		"IssuerPort": portOf(lns[RoleIssuer]),
		"AdminPort":  portOf(lns[RoleAdmin]),
		"Hashes":     hashes,
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
  tokens: { access_ttl: 5m }
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
storage: { driver: sqlite, dsn: "file:portcullis.db" }
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

// printWalkthrough prints curl commands that work as printed.
func printWalkthrough(w io.Writer, dir string, info *DemoInfo) {
	client := func(id string) DemoClient {
		for _, c := range info.Clients {
			if c.ClientID == id {
				return c
			}
		}
		return DemoClient{}
	}
	acme, gw := client("acme-app"), client("gateway")
	ca := info.CAFile
	fmt.Fprintf(w, `Portcullis demo is running. Files, config and log: %s

  issuer   %s   (metadata: %s/.well-known/oauth-authorization-server)
  admin    %s   (/metrics, /healthz, /readyz)

1. Get an opaque access token for acme-app (client credentials):

TOKEN=$(curl -s --cacert %s -u %s:%s -d grant_type=client_credentials -d scope=orders:read %s/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/'); echo "$TOKEN"

2. Introspect it as the gateway would (RFC 7662):

curl -s --cacert %s -u %s:%s -d "token=$TOKEN" %s/introspect

3. Revoke it (RFC 7009) and introspect again: {"active":false}

curl -s --cacert %s -u %s:%s -d "token=$TOKEN" %s/revoke && curl -s --cacert %s -u %s:%s -d "token=$TOKEN" %s/introspect

Press Ctrl-C to stop.
`,
		dir, info.Issuer, info.Issuer, info.Admin,
		ca, acme.ClientID, acme.ClientSecret, info.Issuer,
		ca, gw.ClientID, gw.ClientSecret, info.Issuer,
		ca, acme.ClientID, acme.ClientSecret, info.Issuer, ca, gw.ClientID, gw.ClientSecret, info.Issuer)
}
