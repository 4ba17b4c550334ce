package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// issuerDir makes a directory holding the files a valid issuer config names.
func issuerDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, f := range []string{"issuer.pem", "issuer-key.pem", "master.key"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

const validIssuerYAML = `# a complete issuer
issuer:
  url: https://auth.example.com
  listen: 127.0.0.1:9443
  tls: { cert: issuer.pem, key: issuer-key.pem }
  keys: { algorithm: ES256, rotate_every: 720h, overlap: 24h, master_key_file: master.key }
  tokens: { access_ttl: 5m }
  scopes:
    orders:read: { description: "See orders", claims: [customer_id] }
  clients:
    - id: orders-app
      secret_hash: "$hmac-sha256$AAAA"
      auth_method: client_secret_basic
      scopes: [orders:read]
      claims: { customer_id: acme }
storage: { driver: sqlite, dsn: "file:portcullis.db" }
`

func noEnv(string) (string, bool) { return "", false }

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseValid(t *testing.T) {
	dir := issuerDir(t)
	c, err := Parse([]byte(validIssuerYAML), dir, noEnv)
	if err != nil {
		t.Fatalf("valid config refused:\n%v", err)
	}
	is := c.Issuer
	if is.URL != "https://auth.example.com" || is.TLS.Cert != "issuer.pem" || c.Dir != dir {
		t.Errorf("decoded %+v", is)
	}
	// Defaults fill what the file leaves out.
	if is.Keys.PublishAhead != DefaultPublishAhead || is.Tokens.RefreshTTL != DefaultRefreshTTL ||
		is.Tokens.IntrospectionTTL != DefaultIntrospectionTTL || is.Assertions.MaxLifetime != DefaultAssertionMaxLife {
		t.Errorf("defaults not applied: %+v %+v", is.Keys, is.Tokens)
	}
	if diff := cmp.Diff([]string{"https://auth.example.com"}, is.Tokens.Audience); diff != "" {
		t.Errorf("default audience (-want +got):\n%s", diff)
	}
	cl := is.Clients[0]
	if cl.TokenFormat != "opaque" || !slices.Equal(cl.GrantTypes, []string{"client_credentials"}) || cl.Owner != "config" {
		t.Errorf("client defaults: %+v", cl)
	}
	if c.Storage.QueryTimeout != 5*time.Second || c.Cache.Driver != "memory" || c.Log.Level != "info" || c.Log.Format != "json" {
		t.Errorf("top-level defaults: %+v %+v %+v", c.Storage, c.Cache, c.Log)
	}
	if c.Path("issuer.pem") != filepath.Join(dir, "issuer.pem") || c.Path("/abs/x") != "/abs/x" {
		t.Error("Path does not resolve against the file's directory")
	}
	if ws := c.Warnings(); len(ws) != 0 {
		t.Errorf("a safe config has warnings: %v", ws)
	}
}

func TestLoad(t *testing.T) {
	dir := issuerDir(t)
	path := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(path, []byte(validIssuerYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Dir != dir {
		t.Errorf("Dir = %q, want %q", c.Dir, dir)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || errors.As(err, new(Problems)) {
		t.Errorf("missing file: %v", err)
	}
}

// problemsOf parses yaml and returns its problems (failing if it loads).
func problemsOf(t *testing.T, yaml string, lookup func(string) (string, bool)) Problems {
	t.Helper()
	_, err := Parse([]byte(yaml), issuerDir(t), lookup)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want Problems, got %v", err)
	}
	return ps
}

func has(ps Problems, path string, line int, msg string) bool {
	for _, p := range ps {
		if p.Path == path && (line == 0 || p.Line == line) && strings.Contains(p.Message, msg) {
			return true
		}
	}
	return false
}

func TestStrictDecoding(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		path string
		line int
		msg  string
	}{
		{"unknown top-level key", validIssuerYAML + "extra: 1\n", "extra", 17, "unknown key"},
		{"unknown nested key", strings.Replace(validIssuerYAML, "  tokens: { access_ttl: 5m }", "  tokens: { access_ttl: 5m, acess_ttl: 1m }", 1), "issuer.tokens.acess_ttl", 7, "unknown key"},
		{"unknown client key", strings.Replace(validIssuerYAML, "      scopes: [orders:read]\n", "      scopes: [orders:read]\n      secret: hunter2\n", 1), "issuer.clients[0].secret", 15, "unknown key"},
		{"duplicate key", strings.Replace(validIssuerYAML, "  listen: 127.0.0.1:9443\n", "  listen: 127.0.0.1:9443\n  listen: 0.0.0.0:9443\n", 1), "issuer.listen", 5, "duplicate key"},
		{"list where a mapping belongs", strings.Replace(validIssuerYAML, "  tokens: { access_ttl: 5m }", "  tokens: [5m]", 1), "issuer.tokens", 7, "must be a mapping"},
		{"mapping where a list belongs", strings.Replace(validIssuerYAML, "scopes: [orders:read]", "scopes: { a: b }", 1), "issuer.clients[0].scopes", 14, "must be a list"},
		{"alias", "x: &a 1\n" + validIssuerYAML + "storage2: *a\n", "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, tt.yaml, noEnv)
			if tt.msg == "" {
				return // refused is enough
			}
			if !has(ps, tt.path, tt.line, tt.msg) {
				t.Errorf("want %s at line %d (%q); got:\n%v", tt.path, tt.line, tt.msg, ps)
			}
		})
	}
}

func TestEnvExpansion(t *testing.T) {
	yaml := strings.NewReplacer(
		"url: https://auth.example.com", "url: https://${HOST}",
		`storage: { driver: sqlite, dsn: "file:portcullis.db" }`, "storage:\n  dsn: file:${DB:-portcullis.db}\n  max_open_conns: ${CONNS}",
		"description: \"See orders\"", "description: \"costs $$5 ${NOTE}\"",
	).Replace(validIssuerYAML)
	c, err := Parse([]byte(yaml), issuerDir(t), env(map[string]string{"HOST": "auth.example.org", "CONNS": "7", "NOTE": "a: b\nc: [d]"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer.URL != "https://auth.example.org" || c.Storage.DSN != "file:portcullis.db" || c.Storage.MaxOpenConns != 7 {
		t.Errorf("expanded: url %q dsn %q conns %d", c.Issuer.URL, c.Storage.DSN, c.Storage.MaxOpenConns)
	}
	// A value from the environment stays one scalar: it cannot add keys.
	if d := c.Issuer.Scopes["orders:read"].Description; d != "costs $5 a: b\nc: [d]" {
		t.Errorf("description = %q", d)
	}

	for _, tt := range []struct {
		name, from, to string
		lookup         map[string]string
		msg            string
	}{
		{"unset variable", "listen: 127.0.0.1:9443", "listen: ${LISTEN}", nil, "LISTEN is not set"},
		{"unterminated", "listen: 127.0.0.1:9443", "listen: ${LISTEN", nil, "unterminated"},
		{"invalid name", "listen: 127.0.0.1:9443", "listen: ${1X}", nil, "invalid environment variable name"},
		{"empty value is not a default", "listen: 127.0.0.1:9443", "listen: ${LISTEN}", map[string]string{"LISTEN": ""}, "required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, strings.Replace(validIssuerYAML, tt.from, tt.to, 1), env(tt.lookup))
			if !has(ps, "issuer.listen", 4, tt.msg) {
				t.Errorf("want issuer.listen line 4 %q; got:\n%v", tt.msg, ps)
			}
		})
	}
}

// TestEveryProblemAtOnce: validation reports all problems, each with path and line, in file
// order.
func TestEveryProblemAtOnce(t *testing.T) {
	yaml := `issuer:
  url: http://auth.example.com/
  listen: nowhere
  keys: { algorithm: HS256, master_key_file: missing.key }
  tokens: { access_ttl: 1s }
  scopes:
    "bad scope": {}
  clients:
    - id: a
      secret_hash: plaintext-secret
      auth_method: client_secret_basic
      scopes: [nope]
      token_format: jwt
    - id: a
      auth_method: private_key_jwt
storage: { driver: mysql }
log: { level: loud }
`
	ps := problemsOf(t, yaml, noEnv)
	want := []struct {
		path string
		line int
		msg  string
	}{
		{"issuer.url", 2, "insecure_http"},
		{"issuer.url", 2, "slash"},
		{"issuer.listen", 3, "host:port"},
		{"issuer.tls", 2, "cert and key are required"}, // no tls key: the issuer mapping's line
		{"issuer.keys.algorithm", 4, "symmetric"},
		{"issuer.keys.master_key_file", 4, "cannot read"},
		{"issuer.tokens.access_ttl", 5, "between 10s and 24h"},
		{"issuer.scopes.bad scope", 7, "not a valid scope"},
		{"issuer.clients[0].secret_hash", 10, "never the secret itself"},
		{"issuer.clients[0].scopes[0]", 12, "not defined"},
		{"issuer.clients[0].token_format", 13, "internal"},
		{"issuer.clients[1].id", 14, "duplicate client id"},
		{"issuer.clients[1]", 14, "needs jwks or jwks_uri"},
		{"storage.driver", 16, "sqlite or postgres"},
		{"log.level", 17, "debug, info"},
	}
	for _, w := range want {
		if !has(ps, w.path, w.line, w.msg) {
			t.Errorf("missing %s (line %d): %q", w.path, w.line, w.msg)
		}
	}
	if t.Failed() {
		t.Logf("problems:\n%v", ps)
	}
	for i, p := range ps {
		if p.Line == 0 {
			t.Errorf("problem without a line: %v", p)
		}
		if i > 0 && p.Line < ps[i-1].Line {
			t.Errorf("problems not in file order: %v before %v", ps[i-1], p)
		}
	}
	if s := ps.Error(); !strings.Contains(s, "line 4: issuer.keys.algorithm: ") {
		t.Errorf("Error() does not read 'line N: path: message':\n%s", s)
	}
}

func TestIssuerValidation(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
		path string
		msg  string
	}{
		{"plain http without the switch", func(c *Config) { c.Issuer.URL = "http://a.example" }, "issuer.url", "insecure_http"},
		{"url with a query", func(c *Config) { c.Issuer.URL = "https://a.example?x=1" }, "issuer.url", "without query"},
		{"url with user info", func(c *Config) { c.Issuer.URL = "https://u:p@a.example" }, "issuer.url", "user info"},
		{"ftp url", func(c *Config) { c.Issuer.URL = "ftp://a.example" }, "issuer.url", "https"},
		{"no tls", func(c *Config) { c.Issuer.TLS = TLS{} }, "issuer.tls", "required"},
		{"cert without key", func(c *Config) { c.Issuer.TLS.Key = "" }, "issuer.tls", "both cert and key"},
		{"unknown algorithm", func(c *Config) { c.Issuer.Keys.Algorithm = "RS1" }, "issuer.keys.algorithm", "one of"},
		{"rotation too often", func(c *Config) { c.Issuer.Keys.RotateEvery = 10 * time.Minute }, "issuer.keys.rotate_every", "1h"},
		{"publish ahead shorter than the JWKS cache", func(c *Config) { c.Issuer.Keys.PublishAhead = time.Minute }, "issuer.keys.publish_ahead", "5m"},
		{"no master key", func(c *Config) { c.Issuer.Keys.MasterKeyFile = "" }, "issuer.keys", "required"},
		{"two master keys", func(c *Config) { c.Issuer.Keys.MasterKeyEnv = "MK" }, "issuer.keys", "not both"},
		{"refresh shorter than access", func(c *Config) { c.Issuer.Tokens.RefreshTTL = time.Second }, "issuer.tokens.refresh_ttl", "at least access_ttl"},
		{"audience with a space", func(c *Config) { c.Issuer.Tokens.Audience = []string{"a b"} }, "issuer.tokens.audience[0]", "without spaces"},
		{"reserved claim in a scope", func(c *Config) { c.Issuer.Scopes["orders:read"] = Scope{Claims: []string{"sub"}} }, "issuer.scopes.orders:read.claims[0]", "set by the issuer"},
		{"reserved claim on a client", func(c *Config) { c.Issuer.Clients[0].Claims = map[string]string{"scope": "admin"} }, "issuer.clients[0].claims.scope", "set by the issuer"},
		{"NUL in a claim value", func(c *Config) { c.Issuer.Clients[0].Claims = map[string]string{"customer_id": "acme\x00x"} }, "issuer.clients[0].claims.customer_id", "control characters"},
		{"escape in a claim value", func(c *Config) { c.Issuer.Clients[0].Claims = map[string]string{"customer_id": "\x1b[2J"} }, "issuer.clients[0].claims.customer_id", "control characters"},
		{"invalid UTF-8 in a claim value", func(c *Config) { c.Issuer.Clients[0].Claims = map[string]string{"customer_id": "\xff"} }, "issuer.clients[0].claims.customer_id", "UTF-8"},
		{"overlong claim value", func(c *Config) {
			c.Issuer.Clients[0].Claims = map[string]string{"customer_id": strings.Repeat("a", MaxClaimValue+1)}
		}, "issuer.clients[0].claims.customer_id", "longer than"},
		{"body limit too large", func(c *Config) { c.Issuer.Limits.MaxBodyBytes = 10 << 20 }, "issuer.limits.max_body", "1MiB"},
		{"bad client id", func(c *Config) { c.Issuer.Clients[0].ID = "a b" }, "issuer.clients[0].id", "required"},
		{"no auth method", func(c *Config) { c.Issuer.Clients[0].AuthMethod = "" }, "issuer.clients[0].auth_method", "exactly one"},
		{"unknown auth method", func(c *Config) { c.Issuer.Clients[0].AuthMethod = "tls_client_auth_v9" }, "issuer.clients[0].auth_method", "one of"},
		{"secret method without a hash", func(c *Config) { c.Issuer.Clients[0].SecretHash = "" }, "issuer.clients[0].secret_hash", "required"},
		{"key method with a secret", func(c *Config) {
			c.Issuer.Clients[0].AuthMethod = "private_key_jwt"
			c.Issuer.Clients[0].JWKSURI = "https://keys.example/jwks"
		}, "issuer.clients[0].secret_hash", "one authentication method"},
		{"jwks with a secret method", func(c *Config) { c.Issuer.Clients[0].JWKSURI = "https://keys.example/jwks" }, "issuer.clients[0]", "only for private_key_jwt"},
		{"jwks_uri over http", func(c *Config) {
			c.Issuer.Clients[0].AuthMethod, c.Issuer.Clients[0].SecretHash = "private_key_jwt", ""
			c.Issuer.Clients[0].JWKSURI = "http://keys.example/jwks"
		}, "issuer.clients[0].jwks_uri", "https"},
		{"jwks and jwks_uri", func(c *Config) {
			c.Issuer.Clients[0].AuthMethod, c.Issuer.Clients[0].SecretHash = "private_key_jwt", ""
			c.Issuer.Clients[0].JWKSURI, c.Issuer.Clients[0].JWKS = "https://keys.example/jwks", JSONValue(`{"keys":[]}`)
		}, "issuer.clients[0]", "not both"},
		{"public client with client_credentials", func(c *Config) {
			c.Issuer.Clients[0].AuthMethod, c.Issuer.Clients[0].SecretHash = "none", ""
		}, "issuer.clients[0].grant_types", "public client"},
		{"unknown grant", func(c *Config) { c.Issuer.Clients[0].GrantTypes = []string{"password"} }, "issuer.clients[0].grant_types[0]", "unsupported"},
		{"code flow without redirect uris", func(c *Config) { c.Issuer.Clients[0].GrantTypes = []string{"authorization_code"} }, "issuer.clients[0].redirect_uris", "required"},
		{"wildcard redirect", func(c *Config) {
			c.Issuer.Clients[0].RedirectURIs = []string{"https://*.example/cb"}
		}, "issuer.clients[0].redirect_uris[0]", "wildcards"},
		{"http redirect off loopback", func(c *Config) {
			c.Issuer.Clients[0].RedirectURIs = []string{"http://app.example/cb"}
		}, "issuer.clients[0].redirect_uris[0]", "loopback"},
		{"redirect with fragment", func(c *Config) {
			c.Issuer.Clients[0].RedirectURIs = []string{"https://app.example/cb#x"}
		}, "issuer.clients[0].redirect_uris[0]", "fragment"},
		{"javascript redirect", func(c *Config) {
			c.Issuer.Clients[0].RedirectURIs = []string{"javascript:alert(1)"}
		}, "issuer.clients[0].redirect_uris[0]", ""},
		{"wildcard post-logout redirect", func(c *Config) {
			c.Issuer.Clients[0].PostLogoutRedirectURIs = []string{"https://app.example/bye", "https://*.example/bye"}
		}, "issuer.clients[0].post_logout_redirect_uris[1]", "wildcards"},
		{"http post-logout redirect off loopback", func(c *Config) {
			c.Issuer.Clients[0].PostLogoutRedirectURIs = []string{"http://app.example/bye"}
		}, "issuer.clients[0].post_logout_redirect_uris[0]", "loopback"},
		{"post-logout redirect with fragment", func(c *Config) {
			c.Issuer.Clients[0].PostLogoutRedirectURIs = []string{"https://app.example/bye#x"}
		}, "issuer.clients[0].post_logout_redirect_uris[0]", "fragment"},
		{"relative post-logout redirect", func(c *Config) {
			c.Issuer.Clients[0].PostLogoutRedirectURIs = []string{"/bye"}
		}, "issuer.clients[0].post_logout_redirect_uris[0]", "absolute"},
		{"jwt for an external client", func(c *Config) { c.Issuer.Clients[0].TokenFormat = "jwt" }, "issuer.clients[0].token_format", "internal"},
		{"unknown token format", func(c *Config) { c.Issuer.Clients[0].TokenFormat = "paseto" }, "issuer.clients[0].token_format", "opaque or jwt"},
		{"postgres dsn not a url", func(c *Config) { c.Storage = Storage{Driver: "postgres", DSN: "host=x", QueryTimeout: time.Second} }, "storage.dsn", "postgres://"},
		{"redis cache without url", func(c *Config) { c.Cache.Driver = "redis" }, "cache.url", "redis://"},
		{"admin off loopback in plain http", func(c *Config) { c.Admin = &Admin{Listen: "0.0.0.0:9090"} }, "admin.listen", "non-loopback"},
		{"nothing to run", func(c *Config) { c.Issuer = nil }, "", "nothing to run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(validIssuerYAML), issuerDir(t), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(c)
			err = c.Validate()
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Validate = %v, want Problems", err)
			}
			if !has(ps, tt.path, 0, tt.msg) {
				t.Errorf("want %s %q; got:\n%v", tt.path, tt.msg, ps)
			}
		})
	}
}

func TestValidateClient(t *testing.T) {
	c, err := Parse([]byte(validIssuerYAML), issuerDir(t), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	ok := Client{ID: "cli-app", SecretHash: "$hmac-sha256$x", AuthMethod: "client_secret_post", Scopes: []string{"orders:read"}, TokenFormat: "opaque"}
	if err := c.Issuer.ValidateClient(ok); err != nil {
		t.Fatalf("valid client: %v", err)
	}
	bad := ok
	bad.Scopes = []string{"admin"}
	var ps Problems
	if err := c.Issuer.ValidateClient(bad); !errors.As(err, &ps) || !has(ps, "client.scopes[0]", 0, "not defined") {
		t.Fatalf("undefined scope: %v", err)
	}
}

func TestWarnings(t *testing.T) {
	c, err := Parse([]byte(validIssuerYAML), issuerDir(t), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	c.Issuer.InsecureHTTP = true
	c.Issuer.Tokens.AccessTTL = 2 * time.Hour
	c.Issuer.Tokens.RefreshTTL = 3000 * time.Hour
	c.Issuer.Keys.RotateEvery = 0
	c.Issuer.Clients[0].SecretHash = "$argon2id$v=19$..."
	c.Issuer.Clients = append(c.Issuer.Clients, Client{ID: "svc", TokenFormat: "jwt", Internal: true})
	c.Admin = &Admin{InsecureHTTP: true}
	var got []string
	for _, w := range c.Warnings() {
		got = append(got, w.Path)
	}
	want := []string{"issuer.insecure_http", "issuer.tokens.access_ttl", "issuer.tokens.refresh_ttl", "issuer.keys.rotate_every",
		"issuer.clients[0].secret_hash", "issuer.clients[1].token_format", "admin.insecure_http"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestInsecureHTTPIsExplicit(t *testing.T) {
	yaml := strings.NewReplacer("url: https://", "url: http://", "  tls: { cert: issuer.pem, key: issuer-key.pem }\n", "  insecure_http: true\n").Replace(validIssuerYAML)
	c, err := Parse([]byte(yaml), issuerDir(t), noEnv)
	if err != nil {
		t.Fatalf("explicit insecure_http refused: %v", err)
	}
	if len(c.Warnings()) == 0 {
		t.Error("plain HTTP loads without a warning")
	}
}

func TestDecodeLimits(t *testing.T) {
	for name, data := range map[string]string{
		"too large":      "# " + strings.Repeat("x", maxConfigBytes) + "\n",
		"not yaml":       "issuer: [\n",
		"wrong type":     "issuer: { tokens: { access_ttl: soon } }\n",
		"document array": "- a\n- b\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(data), t.TempDir(), noEnv); err == nil {
				t.Fatal("loaded")
			}
		})
	}
	if _, err := Parse(nil, t.TempDir(), noEnv); err == nil || !strings.Contains(err.Error(), "nothing to run") {
		t.Errorf("empty file: %v", err)
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr bool
	}{
		{"512", 512, false},
		{"64KiB", 64 << 10, false},
		{"1 MiB", 1 << 20, false},
		{"10KB", 10000, false},
		{"2GB", 2e9, false},
		{"7B", 7, false},
		{"-1", 0, true},
		{"1.5MiB", 0, true},
		{"lots", 0, true},
		{"9999999999999GiB", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v", tt.in, got, err)
		}
	}
}

// FuzzParse: no input panics the loader; problems are well-formed; and a config that loads
// re-validates clean (and still does after Default runs again).
func FuzzParse(f *testing.F) {
	dir := issuerDir(f)
	lookup := env(map[string]string{"HOST": "auth.example.com", "PORT": "9443", "EMPTY": ""})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, dir, lookup)
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error %v is not Problems", err)
			}
			if len(ps) == 0 {
				t.Fatal("empty Problems")
			}
			for _, p := range ps {
				if p.Message == "" || p.Line < 0 {
					t.Fatalf("malformed problem %+v", p)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a loaded config does not re-validate:\n%v", err)
		}
		c.Default()
		if err := c.Validate(); err != nil {
			t.Fatalf("Default is not idempotent:\n%v", err)
		}
		_ = c.Warnings()
	})
}

// TestRotateEveryZeroTurnsRotationOff: "rotate_every: 0" in the file means rotation by
// command only (and is warned about); an absent key gets the default.
func TestRotateEveryZeroTurnsRotationOff(t *testing.T) {
	off := strings.Replace(validIssuerYAML, "rotate_every: 720h", "rotate_every: 0s", 1)
	c, err := Parse([]byte(off), issuerDir(t), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer.Keys.RotateEvery != 0 {
		t.Fatalf("rotate_every: 0s became %v", c.Issuer.Keys.RotateEvery)
	}
	c.Default()
	if c.Issuer.Keys.RotateEvery != 0 {
		t.Fatalf("a second Default turned rotation back on: %v", c.Issuer.Keys.RotateEvery)
	}
	if ws := c.Warnings(); len(ws) != 1 || ws[0].Path != "issuer.keys.rotate_every" {
		t.Errorf("warnings = %v", ws)
	}
	absent := strings.Replace(validIssuerYAML, "rotate_every: 720h, ", "", 1)
	c, err = Parse([]byte(absent), issuerDir(t), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer.Keys.RotateEvery != DefaultRotateEvery {
		t.Errorf("absent rotate_every = %v, want the default", c.Issuer.Keys.RotateEvery)
	}
}
