package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// testSetup is an issuer config in a temp dir with real certificates, a master key and a
// listener already bound for it.
type testSetup struct {
	dir    string
	config string // path of portcullis.yaml
	ln     net.Listener
	url    string
	caFile string
}

const testConfig = `issuer:
  url: %[1]s
  listen: %[2]s
  tls: { cert: issuer.pem, key: issuer-key.pem }
  keys: { master_key_file: master.key }
  scopes:
    orders:read: { claims: [customer_id] }
    orders:write: {}
  clients:
    - id: cfg-app
      secret_hash: "%[3]s"
      auth_method: client_secret_basic
      scopes: [orders:read]
storage: { driver: sqlite, dsn: "file:portcullis.db" }
log: { level: debug, format: text }
`

// cfgAppSecret is the secret of cfg-app in every test config (hashed with each config's
// own pepper).
var cfgAppSecret = secret.Generate()

func newSetup(t *testing.T) *testSetup {
	t.Helper()
	dir := t.TempDir()
	ca, err := loadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.issue(dir, "issuer", "portcullis test issuer"); err != nil {
		t.Fatal(err)
	}
	mk := keys.NewMasterKey()
	if err := writeFile(filepath.Join(dir, "master.key"), []byte(mk.Encode()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := secret.NewHasher(mk.Derive(keys.PurposeSecretPepper), secret.HasherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &testSetup{dir: dir, config: filepath.Join(dir, "portcullis.yaml"), ln: ln, url: "https://" + ln.Addr().String(), caFile: filepath.Join(dir, "ca.pem")}
	yaml := fmt.Sprintf(testConfig, s.url, ln.Addr().String(), h.HashGenerated(cfgAppSecret))
	if err := os.WriteFile(s.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// cli runs Main in process.
func cli(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestEveryCommandHasHelp: --help of every command prints its usage to stdout and exits 0.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"serve", "--help"}, {"demo", "--help"}, {"check", "--help"},
		{"keys", "--help"}, {"keys", "rotate", "--help"}, {"keys", "list", "--help"},
		{"clients", "--help"}, {"clients", "add", "--help"},
		{"hash-secret", "--help"}, {"migrate", "--help"}, {"version", "--help"},
		{"serve", "-h"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := cli(t, "", args...)
			if code != ExitOK {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			if !strings.Contains(stdout, "Usage") {
				t.Errorf("no usage on stdout:\n%s", stdout)
			}
		})
	}
}

func TestBadUsage(t *testing.T) {
	s := newSetup(t)
	for _, tt := range []struct {
		args  []string
		stdin string
		want  string // in stderr
	}{
		{nil, "", "Usage"},
		{[]string{"frobnicate"}, "", "unknown command"},
		{[]string{"serve", "--bogus"}, "", "flag provided but not defined"},
		{[]string{"check", "stray-argument"}, "", "unexpected argument"},
		{[]string{"keys"}, "", "Usage"},
		{[]string{"keys", "spin"}, "", "Usage"},
		{[]string{"keys", "rotate", "--retire-old", "--config", s.config}, "", "needs --immediate"},
		{[]string{"clients"}, "", "Usage"},
		{[]string{"clients", "remove"}, "", "Usage"},
		{[]string{"clients", "add", "--config", s.config, "--id", "x"}, "", "--scopes is required"},
		{[]string{"clients", "add", "--config", s.config, "--id", "x", "--scopes", "orders:read", "--auth-method", "private_key_jwt"}, "", "auth-method"},
		{[]string{"clients", "add", "--config", s.config, "--id", "x", "--scopes", "admin"}, "", "not defined"},
		{[]string{"clients", "add", "--config", s.config, "--id", "bad id", "--scopes", "orders:read"}, "", "client.id"},
		{[]string{"clients", "add", "--config", s.config, "--id", "x", "--scopes", "orders:read", "--token-format", "jwt"}, "", "internal"},
		{[]string{"clients", "add", "--config", s.config, "--id", "x", "--scopes", "orders:read", "--claim", "novalue"}, "", "NAME=VALUE"},
		{[]string{"clients", "add", "--config", s.config, "--id", "cfg-app", "--scopes", "orders:read"}, "", "defined in the config file"},
		{[]string{"hash-secret", "--generate", "--argon2id"}, "", "exclude each other"},
		{[]string{"hash-secret", "--config", s.config}, "", "no secret on stdin"},
		{[]string{"hash-secret", "--config", s.config}, "short-secret\n", "too short"},
		{[]string{"hash-secret", "--argon2id"}, "short\n", "too weak"},
		{[]string{"demo", "--ports", "some"}, "", "--ports must be fixed or auto"},
		{[]string{"check", "--config", filepath.Join(s.dir, "missing.yaml")}, "", ""},
		{[]string{"version", "extra"}, "", "unexpected argument"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := cli(t, tt.stdin, tt.args...)
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, ExitUsage, stdout, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, stderr)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	s := newSetup(t)
	code, stdout, _ := cli(t, "", "check", "--config", s.config)
	if code != ExitOK || strings.TrimSpace(stdout) != "ok" {
		t.Fatalf("clean config: exit %d\n%s", code, stdout)
	}

	risky := strings.Replace(readFile(t, s.config), "      scopes: [orders:read]\n", "      scopes: [orders:read]\n    - id: svc\n      secret_hash: \"$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5\"\n      auth_method: client_secret_basic\n      internal: true\n      token_format: jwt\n", 1)
	risky = strings.Replace(risky, "keys: { master_key_file: master.key }", "keys: { master_key_file: master.key, rotate_every: 0s }\n  tokens: { access_ttl: 2h }", 1)
	if err := os.WriteFile(s.config, []byte(risky), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = cli(t, "", "check", "--config", s.config)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != ExitOK || lines[0] != "ok" {
		t.Fatalf("risky config: exit %d\n%s", code, stdout)
	}
	for _, w := range []string{"issuer.tokens.access_ttl", "issuer.keys.rotate_every", "issuer.clients[1].secret_hash", "issuer.clients[1].token_format"} {
		if !strings.Contains(stdout, "warning: "+w) {
			t.Errorf("no warning for %s:\n%s", w, stdout)
		}
	}

	broken := strings.Replace(readFile(t, s.config), "auth_method: client_secret_basic\n      scopes: [orders:read]", "auth_method: client_secret_basic\n      scopes: [orders:admin]\n      colour: blue", 1)
	broken = strings.Replace(broken, "  url: https://", "  url: http://", 1)
	if err := os.WriteFile(s.config, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = cli(t, "", "check", "--config", s.config)
	if code != ExitUsage {
		t.Fatalf("broken config: exit %d\n%s", code, stdout)
	}
	for _, want := range []string{`line 2: issuer.url: http:// needs insecure_http`, `issuer.clients[0].colour: unknown key`, `issuer.clients[0].scopes[0]: scope "orders:admin"`, "problem(s)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^  line \d+: issuer\.clients\[0\]\.colour`).MatchString(stdout) {
		t.Errorf("problems are not 'line N: path: message':\n%s", stdout)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hasherOf returns the secret hasher of the setup's issuer (the server's pepper).
func hasherOf(t *testing.T, s *testSetup) *secret.Hasher {
	t.Helper()
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := keys.LoadMasterKey(cfg.Path(cfg.Issuer.Keys.MasterKeyFile), "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHasher(cfg.Issuer, mk)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashSecret(t *testing.T) {
	s := newSetup(t)
	h := hasherOf(t, s)

	sec := secret.Generate()
	code, stdout, stderr := cli(t, sec+"\n", "hash-secret", "--config", s.config)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	hash := strings.TrimSpace(stdout)
	if ok, err := h.Verify("any", hash, sec); !ok || err != nil || !strings.HasPrefix(hash, "$hmac-sha256$") {
		t.Fatalf("stdin secret: hash %q does not verify (%v)", hash, err)
	}
	if strings.Contains(stdout+stderr, sec) {
		t.Error("the secret was echoed")
	}

	code, stdout, stderr = cli(t, "", "hash-secret", "--generate", "--config", s.config)
	m := regexp.MustCompile(`(?m)^secret: (pcs_\S+)\nsecret_hash: (\S+)$`).FindStringSubmatch(stdout)
	if code != ExitOK || m == nil {
		t.Fatalf("--generate: exit %d\n%s%s", code, stdout, stderr)
	}
	if ok, _ := h.Verify("any", m[2], m[1]); !ok {
		t.Error("--generate: the printed hash does not verify the printed secret")
	}

	code, stdout, _ = cli(t, "a person's long passphrase\r\n", "hash-secret", "--argon2id")
	if ok, err := secret.VerifyArgon2id(strings.TrimSpace(stdout), "a person's long passphrase"); code != ExitOK || !ok || err != nil {
		t.Fatalf("--argon2id: exit %d, %q (%v)", code, stdout, err)
	}
}

// TestClientsAddThenToken: the printed secret works at /token on a running issuer.
func TestClientsAddThenToken(t *testing.T) {
	s := newSetup(t)
	code, stdout, stderr := cli(t, "", "clients", "add", "--config", s.config, "--id", "cli-app", "--scopes", "orders:read,orders:write",
		"--claim", "customer_id=acme", "--auth-method", "client_secret_post")
	m := regexp.MustCompile(`(?m)^client_id: cli-app\nclient_secret: (pcs_\S+)$`).FindStringSubmatch(stdout)
	if code != ExitOK || m == nil {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	sec := m[1]
	if code, _, stderr := cli(t, "", "clients", "add", "--config", s.config, "--id", "cli-app", "--scopes", "orders:read"); code != ExitUsage || !strings.Contains(stderr, "already exists") {
		t.Errorf("adding cli-app twice: exit %d %s", code, stderr)
	}
	if !strings.Contains(stderr, "shown only now") {
		t.Errorf("no warning that the secret is shown once: %s", stderr)
	}

	c := startIssuer(t, s)
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"cli-app"}, "client_secret": {sec}, "scope": {"orders:read"}}
	status, body := c.post(t, "/token", form, "")
	if status != http.StatusOK {
		t.Fatalf("token with the printed secret: %d %s", status, body)
	}
	tok := jsonField(t, body, "access_token")
	status, body = c.post(t, "/introspect", url.Values{"token": {tok}, "client_id": {"cli-app"}, "client_secret": {sec}}, "")
	if status != 200 || !strings.Contains(body, `"customer_id":"acme"`) {
		t.Errorf("introspection: %d %s", status, body)
	}
	form.Set("client_secret", secret.Generate())
	if status, _ := c.post(t, "/token", form, ""); status != http.StatusUnauthorized {
		t.Errorf("a wrong secret got %d", status)
	}
}

func jsonField(t *testing.T, body, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	v, _ := m[name].(string)
	return v
}

func TestKeysRotateAndList(t *testing.T) {
	s := newSetup(t)
	list := func() [][]string {
		t.Helper()
		code, stdout, stderr := cli(t, "", "keys", "list", "--config", s.config)
		if code != ExitOK {
			t.Fatalf("keys list: exit %d: %s", code, stderr)
		}
		var rows [][]string
		for i, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
			if i == 0 {
				if !strings.HasPrefix(l, "KID") {
					t.Fatalf("no header: %q", l)
				}
				continue
			}
			rows = append(rows, strings.Fields(l))
		}
		return rows
	}
	// keys list on a fresh store creates nothing; rotate creates the first key and a successor.
	code, stdout, stderr := cli(t, "", "keys", "rotate", "--config", s.config)
	if code != ExitOK || !strings.Contains(stdout, "published now, signs from") {
		t.Fatalf("rotate: exit %d\n%s%s", code, stdout, stderr)
	}
	rows := list()
	if len(rows) != 2 || rows[0][2] != "signing" || rows[1][2] != "pending" || rows[0][1] != "ES256" {
		t.Fatalf("after rotate: %v", rows)
	}
	if rows[0][4] == "-" {
		t.Errorf("the old key has no unpublish time: %v", rows[0])
	}
	if code, _, stderr := cli(t, "", "keys", "rotate", "--config", s.config); code != ExitFailure || !strings.Contains(stderr, "already pending") {
		t.Errorf("second rotate: exit %d %s", code, stderr)
	}
	code, stdout, _ = cli(t, "", "keys", "rotate", "--config", s.config, "--immediate", "--retire-old")
	if code != ExitOK {
		t.Fatalf("compromise rotation: exit %d", code)
	}
	rows = list()
	if len(rows) != 1 || rows[0][2] != "signing" || !strings.Contains(stdout, rows[0][0]) {
		t.Fatalf("after --immediate --retire-old: %v\n%s", rows, stdout)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := cli(t, "", "version")
	if code != ExitOK || !regexp.MustCompile(`^portcullis \S+`).MatchString(stdout) {
		t.Fatalf("exit %d: %q", code, stdout)
	}
}

func TestMigrateSQLite(t *testing.T) {
	s := newSetup(t)
	code, stdout, stderr := cli(t, "", "migrate", "--config", s.config)
	if code != ExitOK {
		t.Fatalf("migrate: exit %d %s", code, stderr)
	}
	code, stdout2, _ := cli(t, "", "migrate", "--config", s.config, "--status")
	if code != ExitOK || !strings.Contains(stdout2, "0 pending") {
		t.Fatalf("status: exit %d\n%s\n%s", code, stdout, stdout2)
	}
}

// runningIssuer is an issuer started with Run on the setup's listener.
type runningIssuer struct {
	base   string
	client *http.Client
}

func (c *runningIssuer) post(t *testing.T, path string, form url.Values, basic string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != "" {
		req.Header.Set("Authorization", basic)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startIssuer runs the setup's config until the test ends and waits until it is ready.
func startIssuer(t *testing.T, s *testSetup) *runningIssuer {
	t.Helper()
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: telemetry.Discard(), Listeners: map[string]net.Listener{RoleIssuer: s.ln}, Ready: func() { close(ready) }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not ready in 30s")
	}
	return &runningIssuer{base: s.url, client: tlsClient(t, s.caFile)}
}

func tlsClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(readFile(t, caFile))) {
		t.Fatal("no CA")
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
