package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validGateway returns a defaulted config with a gateway that passes validation; files it
// names exist in a temp dir.
func validGateway(t *testing.T) *Config {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"gw.pem", "gw-key.pem", "ca.pem", "clients-ca.pem", "gateway.secret", "up.pem", "up-key.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &Config{
		Dir: dir,
		Gateway: &Gateway{
			Listen:        "127.0.0.1:8443",
			TLS:           TLS{Cert: "gw.pem", Key: "gw-key.pem", ClientCA: "clients-ca.pem"},
			Issuer:        "https://issuer.example",
			IssuerCA:      "ca.pem",
			Introspection: GatewayIntrospection{ClientID: "gateway", SecretFile: "gateway.secret"},
			JWT:           GatewayJWT{Audience: []string{"https://api.example"}},
			Routes: []Route{
				{
					Name:     "orders",
					Match:    RouteMatch{PathPrefix: "/api/orders", Methods: []string{"GET", "POST"}},
					Upstream: Upstream{URL: "https://127.0.0.1:9001", CA: "ca.pem", StripPrefix: "/api"},
					Auth:     RouteAuth{Method: "oauth", Scopes: []string{"orders:read"}, MethodScopes: map[string][]string{"POST": {"orders:write"}}},
					Policies: []string{`claims.sub != ""`},
					CORS:     &CORS{AllowOrigins: []string{"https://app.example"}, AllowMethods: []string{"GET"}, AllowCredentials: true},
				},
				{
					Name:     "reports",
					Match:    RouteMatch{Path: "/internal/reports/{id}"},
					Upstream: Upstream{URL: "https://127.0.0.1:9002/v1"},
					Auth:     RouteAuth{Method: "jwt", Scopes: []string{"reports:read"}},
				},
				{
					Name:     "svc",
					Match:    RouteMatch{PathPrefix: "/svc", Host: "svc.example"},
					Upstream: Upstream{URL: "https://127.0.0.1:9003", ClientCert: "up.pem", ClientKey: "up-key.pem"},
					Auth:     RouteAuth{Method: "mtls", AllowedSubjects: []string{"spiffe://example/reporter"}},
				},
				{
					Name:     "health",
					Match:    RouteMatch{Path: "/healthz", Methods: []string{"GET"}},
					Upstream: Upstream{URL: "http://127.0.0.1:9004", InsecureHTTP: true},
					Auth:     RouteAuth{Method: "public"},
				},
			},
		},
	}
	c.Default()
	return c
}

func TestGatewayValid(t *testing.T) {
	c := validGateway(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestGatewayProblems(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		path   string // the problem must be reported at this path
		text   string // and its message must contain this
	}{
		{"duplicate route name", func(c *Config) { c.Gateway.Routes[1].Name = "orders" }, "gateway.routes[1].name", "duplicate"},
		{"route name as label", func(c *Config) { c.Gateway.Routes[0].Name = "orders route" }, "gateway.routes[0].name", "letters"},
		{"missing auth", func(c *Config) { c.Gateway.Routes[3].Auth.Method = "" }, "gateway.routes[3].auth.method", "deny by default"},
		{"two auth methods", func(c *Config) { c.Gateway.Routes[0].Auth.Method = "oauth,jwt" }, "gateway.routes[0].auth.method", "exactly one"},
		{"unknown auth", func(c *Config) { c.Gateway.Routes[0].Auth.Method = "basic" }, "gateway.routes[0].auth.method", "exactly one"},
		{"no path", func(c *Config) { c.Gateway.Routes[0].Match.PathPrefix = "" }, "gateway.routes[0].match", "required"},
		{"prefix and path", func(c *Config) { c.Gateway.Routes[0].Match.Path = "/x" }, "gateway.routes[0].match", "not both"},
		{"relative prefix", func(c *Config) { c.Gateway.Routes[0].Match.PathPrefix = "api" }, "gateway.routes[0].match.path_prefix", "start with /"},
		{"dotdot prefix", func(c *Config) { c.Gateway.Routes[0].Match.PathPrefix = "/api/../admin" }, "gateway.routes[0].match.path_prefix", ".."},
		{"encoded prefix", func(c *Config) { c.Gateway.Routes[0].Match.PathPrefix = "/api%2forders" }, "gateway.routes[0].match.path_prefix", "not allowed"},
		{"double slash prefix", func(c *Config) { c.Gateway.Routes[0].Match.PathPrefix = "/api//orders" }, "gateway.routes[0].match.path_prefix", "//"},
		{"trailing slash prefix", func(c *Config) { c.Gateway.Routes[0].Match.PathPrefix = "/api/" }, "gateway.routes[0].match.path_prefix", "end with /"},
		{"semicolon prefix", func(c *Config) { c.Gateway.Routes[0].Match.PathPrefix = "/api;x" }, "gateway.routes[0].match.path_prefix", "not allowed"},
		{"pattern half param", func(c *Config) { c.Gateway.Routes[1].Match.Path = "/internal/r{id}" }, "gateway.routes[1].match.path", "whole segment"},
		{"pattern bad name", func(c *Config) { c.Gateway.Routes[1].Match.Path = "/internal/{1d}" }, "gateway.routes[1].match.path", "parameter names"},
		{"pattern duplicate name", func(c *Config) { c.Gateway.Routes[1].Match.Path = "/internal/{id}/{id}" }, "gateway.routes[1].match.path", "twice"},
		{"pattern rest not last", func(c *Config) { c.Gateway.Routes[1].Match.Path = "/internal/{rest...}/x" }, "gateway.routes[1].match.path", "last segment"},
		{"bad host", func(c *Config) { c.Gateway.Routes[2].Match.Host = "svc.example:443" }, "gateway.routes[2].match.host", "no port"},
		{"unknown method", func(c *Config) { c.Gateway.Routes[0].Match.Methods = []string{"get"} }, "gateway.routes[0].match.methods[0]", "unknown method"},
		{"trace method", func(c *Config) { c.Gateway.Routes[0].Match.Methods = []string{"TRACE"} }, "gateway.routes[0].match.methods[0]", "never proxied"},
		{"duplicate method", func(c *Config) { c.Gateway.Routes[0].Match.Methods = []string{"GET", "GET"} }, "gateway.routes[0].match.methods[1]", "duplicate"},
		{"overlapping routes", func(c *Config) {
			r := c.Gateway.Routes[0]
			r.Name = "orders2"
			r.Match.Methods = []string{"POST", "PUT"}
			r.Auth.MethodScopes = nil
			c.Gateway.Routes = append(c.Gateway.Routes, r)
		}, "gateway.routes[4].match", "same requests"},
		{"overlapping patterns", func(c *Config) {
			r := c.Gateway.Routes[1]
			r.Name = "reports2"
			r.Match.Path = "/internal/reports/{other}"
			c.Gateway.Routes = append(c.Gateway.Routes, r)
		}, "gateway.routes[4].match", "same requests"},
		{"plain upstream", func(c *Config) { c.Gateway.Routes[3].Upstream.InsecureHTTP = false }, "gateway.routes[3].upstream.url", "insecure_http"},
		{"upstream scheme", func(c *Config) { c.Gateway.Routes[0].Upstream.URL = "ftp://x" }, "gateway.routes[0].upstream.url", "https"},
		{"upstream query", func(c *Config) { c.Gateway.Routes[0].Upstream.URL = "https://x/?a=b" }, "gateway.routes[0].upstream.url", "query"},
		{"upstream userinfo", func(c *Config) { c.Gateway.Routes[0].Upstream.URL = "https://u:p@x/" }, "gateway.routes[0].upstream.url", "user info"},
		{"upstream ca missing", func(c *Config) { c.Gateway.Routes[0].Upstream.CA = "nope.pem" }, "gateway.routes[0].upstream.ca", "cannot read"},
		{"client cert without key", func(c *Config) { c.Gateway.Routes[2].Upstream.ClientKey = "" }, "gateway.routes[2].upstream", "both"},
		{"strip not a prefix", func(c *Config) { c.Gateway.Routes[0].Upstream.StripPrefix = "/ap" }, "gateway.routes[0].upstream.strip_prefix", "not a prefix"},
		{"strip prefix pattern", func(c *Config) { c.Gateway.Routes[1].Upstream.StripPrefix = "/internal/reports/x" }, "gateway.routes[1].upstream.strip_prefix", "not a prefix"},
		{"add prefix dirty", func(c *Config) { c.Gateway.Routes[0].Upstream.AddPrefix = "/v1/../" }, "gateway.routes[0].upstream.add_prefix", ""},
		{"bad scope", func(c *Config) { c.Gateway.Routes[0].Auth.Scopes = []string{"orders read"} }, "gateway.routes[0].auth.scopes[0]", "not a valid scope"},
		{"duplicate scope", func(c *Config) { c.Gateway.Routes[0].Auth.Scopes = []string{"a", "a"} }, "gateway.routes[0].auth.scopes[1]", "duplicate"},
		{"scopes mode", func(c *Config) { c.Gateway.Routes[0].Auth.ScopesMode = "some" }, "gateway.routes[0].auth.scopes_mode", "all or any"},
		{"method scopes unknown method", func(c *Config) { c.Gateway.Routes[0].Auth.MethodScopes = map[string][]string{"FETCH": {"a"}} }, "gateway.routes[0].auth.method_scopes.FETCH", "unknown method"},
		{"method scopes unmatched method", func(c *Config) { c.Gateway.Routes[0].Auth.MethodScopes = map[string][]string{"DELETE": {"a"}} }, "gateway.routes[0].auth.method_scopes.DELETE", "does not match"},
		{"method scopes bad scope", func(c *Config) { c.Gateway.Routes[0].Auth.MethodScopes = map[string][]string{"POST": {"a\"b"}} }, "gateway.routes[0].auth.method_scopes.POST[0]", "not a valid scope"},
		{"method scopes leave GET unscoped", func(c *Config) { c.Gateway.Routes[0].Auth.Scopes = nil }, "gateway.routes[0].auth.method_scopes", "no entry for GET, HEAD while auth.scopes is empty"},
		{"method scopes leave methods unscoped", func(c *Config) {
			c.Gateway.Routes[0].Auth.Scopes = nil
			c.Gateway.Routes[0].Match.Methods = nil
			c.Gateway.Routes[0].Auth.MethodScopes = map[string][]string{"GET": {"a"}, "POST": {"b"}, "PUT": {"b"}}
		}, "gateway.routes[0].auth.method_scopes", "no entry for PATCH, DELETE, OPTIONS while"},
		{"scopes on public", func(c *Config) { c.Gateway.Routes[3].Auth.Scopes = []string{"a"} }, "gateway.routes[3].auth.scopes", "only to oauth and jwt"},
		{"scopes on mtls", func(c *Config) { c.Gateway.Routes[2].Auth.Scopes = []string{"a"} }, "gateway.routes[2].auth.scopes", "only to oauth and jwt"},
		{"policies on public", func(c *Config) { c.Gateway.Routes[3].Policies = []string{"true"} }, "gateway.routes[3].policies", "only to oauth and jwt"},
		{"empty policy", func(c *Config) { c.Gateway.Routes[0].Policies = []string{" "} }, "gateway.routes[0].policies[0]", "empty"},
		{"policy syntax", func(c *Config) { c.Gateway.Routes[0].Policies = []string{"claims.sub =="} }, "gateway.routes[0].policies[0]", `route "orders"`},
		{"policy not bool", func(c *Config) { c.Gateway.Routes[0].Policies = []string{"claims.sub"} }, "gateway.routes[0].policies[0]", "bool"},
		{"subjects on oauth", func(c *Config) { c.Gateway.Routes[0].Auth.AllowedSubjects = []string{"x"} }, "gateway.routes[0].auth.allowed_subjects", "only to mtls"},
		{"mtls without client ca", func(c *Config) { c.Gateway.TLS.ClientCA = "" }, "gateway.routes[2].auth.method", "client_ca"},
		{"jwt without audience", func(c *Config) { c.Gateway.JWT.Audience = nil }, "gateway.routes[1].auth.audience", "needs an audience"},
		{"oauth without introspection client", func(c *Config) { c.Gateway.Introspection.ClientID = "" }, "gateway.introspection.client_id", "required"},
		{"oauth without secret", func(c *Config) { c.Gateway.Introspection.SecretFile = "" }, "gateway.introspection", "secret_file or secret_env"},
		{"two secrets", func(c *Config) { c.Gateway.Introspection.SecretEnv = "X" }, "gateway.introspection", "not both"},
		{"secret env unset", func(c *Config) {
			c.Gateway.Introspection.SecretFile = ""
			c.Gateway.Introspection.SecretEnv = "PORTCULLIS_TEST_UNSET_SECRET_VAR"
		}, "gateway.introspection.secret_env", "not set"},
		{"secret file missing", func(c *Config) { c.Gateway.Introspection.SecretFile = "nope" }, "gateway.introspection.secret_file", "cannot read"},
		{"revocation bound", func(c *Config) { c.Gateway.Introspection.RevocationBound = time.Hour }, "gateway.introspection.revocation_bound", "between"},
		{"cache ttl below bound", func(c *Config) { c.Gateway.Introspection.CacheMaxTTL = time.Second }, "gateway.introspection.cache_max_ttl", "revocation_bound"},
		{"negative ttl", func(c *Config) { c.Gateway.Introspection.NegativeTTL = -1 }, "gateway.introspection.negative_ttl", "between"},
		{"cache size", func(c *Config) { c.Gateway.Introspection.CacheSize = -1 }, "gateway.introspection.cache_size", "between"},
		{"jwt hmac", func(c *Config) { c.Gateway.JWT.Algorithms = []string{"HS256"} }, "gateway.jwt.algorithms[0]", "asymmetric"},
		{"jwt none", func(c *Config) { c.Gateway.JWT.Algorithms = []string{"none"} }, "gateway.jwt.algorithms[0]", "asymmetric"},
		{"cors wildcard with credentials", func(c *Config) { c.Gateway.Routes[0].CORS.AllowOrigins = []string{"*"} }, "gateway.routes[0].cors.allow_origins[0]", "wildcard"},
		{"cors null origin", func(c *Config) { c.Gateway.Routes[0].CORS.AllowOrigins = []string{"null"} }, "gateway.routes[0].cors.allow_origins[0]", "not an origin"},
		{"cors origin with path", func(c *Config) { c.Gateway.Routes[0].CORS.AllowOrigins = []string{"https://app.example/x"} }, "gateway.routes[0].cors.allow_origins[0]", "not an origin"},
		{"cors no origins", func(c *Config) { c.Gateway.Routes[0].CORS.AllowOrigins = nil }, "gateway.routes[0].cors.allow_origins", "required"},
		{"cors bad header", func(c *Config) { c.Gateway.Routes[0].CORS.AllowHeaders = []string{"X Bad"} }, "gateway.routes[0].cors.allow_headers[0]", "header name"},
		{"cors max age", func(c *Config) { c.Gateway.Routes[0].CORS.MaxAge = 48 * time.Hour }, "gateway.routes[0].cors.max_age", "between"},
		{"cache control injection", func(c *Config) { c.Gateway.Routes[0].Cache = "public\r\nSet-Cookie: x=y" }, "gateway.routes[0].cache_control", "header value"},
		{"route max body", func(c *Config) { c.Gateway.Routes[0].MaxBody = 2 << 30 }, "gateway.routes[0].max_body", "between"},
		{"trusted proxy", func(c *Config) { c.Gateway.TrustedProxies = []string{"10.0.0.0/33"} }, "gateway.trusted_proxies[0]", "CIDR"},
		{"trusted proxy everyone v4", func(c *Config) { c.Gateway.TrustedProxies = []string{"10.0.0.1", "0.0.0.0/0"} }, "gateway.trusted_proxies[1]", "too wide"},
		{"trusted proxy everyone v6", func(c *Config) { c.Gateway.TrustedProxies = []string{"::/0"} }, "gateway.trusted_proxies[0]", "too wide"},
		{"trusted proxy /7", func(c *Config) { c.Gateway.TrustedProxies = []string{"10.0.0.0/7"} }, "gateway.trusted_proxies[0]", "/8"},
		{"trusted proxy /31 v6", func(c *Config) { c.Gateway.TrustedProxies = []string{"2001:db8::/31"} }, "gateway.trusted_proxies[0]", "/32"},
		{"trusted proxy mapped everyone", func(c *Config) { c.Gateway.TrustedProxies = []string{"::ffff:0.0.0.0/96"} }, "gateway.trusted_proxies[0]", "too wide"},
		{"identity header host", func(c *Config) { c.Gateway.IdentityHeaders = []string{"Host"} }, "gateway.identity_headers[0]", "cannot be"},
		{"identity header syntax", func(c *Config) { c.Gateway.IdentityHeaders = []string{"X User"} }, "gateway.identity_headers[0]", "header name"},
		{"issuer plain http", func(c *Config) { c.Gateway.Issuer = "http://issuer.example" }, "gateway.issuer", "http://"},
		{"issuer missing", func(c *Config) { c.Gateway.Issuer = "" }, "gateway.issuer", "required"},
		{"max header bytes", func(c *Config) { c.Gateway.Limits.MaxHeaderBytes = 10 }, "gateway.limits.max_header_bytes", "between"},
		{"max body", func(c *Config) { c.Gateway.Limits.MaxBodyBytes = -1 }, "gateway.limits.max_body", "between"},
		{"read header above read", func(c *Config) { c.Gateway.Limits.ReadHeaderTimeout = time.Minute }, "gateway.limits.read_header_timeout", "read_timeout"},
		{"negative timeout", func(c *Config) { c.Gateway.Limits.UpstreamTimeout = -time.Second }, "gateway.limits.upstream_timeout", "between"},
		{"streams", func(c *Config) { c.Gateway.Limits.MaxConcurrentStreams = 5000 }, "gateway.limits.max_concurrent_streams", "between"},
		{"upstream timeout", func(c *Config) { c.Gateway.Routes[0].Upstream.Timeout = 2 * time.Hour }, "gateway.routes[0].upstream.timeout", "between"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validGateway(t)
			tt.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted the config; want a problem at %s", tt.path)
			}
			ps, ok := err.(Problems)
			if !ok {
				t.Fatalf("Validate error is %T, want Problems", err)
			}
			for _, p := range ps {
				if p.Path == tt.path && strings.Contains(p.Message, tt.text) {
					return
				}
			}
			t.Errorf("no problem at %s containing %q; got:\n%v", tt.path, tt.text, err)
		})
	}
}

func TestGatewayNoIntrospectionWithoutOAuth(t *testing.T) {
	c := validGateway(t)
	c.Gateway.Routes = c.Gateway.Routes[1:] // no oauth route left
	c.Gateway.Introspection = GatewayIntrospection{}
	c.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestGatewayIssuerInSameFile(t *testing.T) {
	c := validGateway(t)
	c.Gateway.JWT.Audience = nil
	c.Gateway.Issuer = ""
	c.Issuer = &Issuer{URL: "https://issuer.example"}
	c.Default()
	if c.Gateway.Issuer != "https://issuer.example" {
		t.Fatalf("gateway issuer default = %q", c.Gateway.Issuer)
	}
	r := &c.Gateway.Routes[1]
	if got := c.JWTAudience(r); len(got) != 1 || got[0] != "https://issuer.example" {
		t.Errorf("JWTAudience = %v, want the issuer default audience", got)
	}
	r.Auth.Audience = []string{"reports"}
	if got := c.JWTAudience(r); len(got) != 1 || got[0] != "reports" {
		t.Errorf("JWTAudience = %v, want the route's own", got)
	}
}

func TestIntrospectionSecret(t *testing.T) {
	c := validGateway(t)
	if err := os.WriteFile(c.Path("gateway.secret"), []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := c.IntrospectionSecret()
	if err != nil || got != "s3cret" {
		t.Fatalf("IntrospectionSecret = %q, %v", got, err)
	}
	c.Gateway.Introspection.SecretFile = ""
	c.Gateway.Introspection.SecretEnv = "PORTCULLIS_TEST_GW_SECRET"
	t.Setenv("PORTCULLIS_TEST_GW_SECRET", "from-env")
	if got, err := c.IntrospectionSecret(); err != nil || got != "from-env" {
		t.Fatalf("IntrospectionSecret = %q, %v", got, err)
	}
	t.Setenv("PORTCULLIS_TEST_GW_SECRET", " ")
	if _, err := c.IntrospectionSecret(); err == nil {
		t.Fatal("an empty secret was accepted")
	}
}

func TestGatewayYAML(t *testing.T) {
	c := validGateway(t)
	doc := `
gateway:
  listen: 127.0.0.1:8443
  tls: { cert: gw.pem, key: gw-key.pem }
  issuer: https://issuer.example
  introspection: { client_id: gateway, secret_file: gateway.secret }
  routes:
    - name: orders
      match: { path_prefix: /api/orders, methods: [GET, POST] }
      upstream: { url: https://127.0.0.1:9001 }
      auth:
        method: oauth
        scopes: [orders:read]
        method_scopes: { POST: [orders:write] }
    - name: orders
      match: { path_prefix: /api/orders }
      upstream: { url: https://127.0.0.1:9001 }
      auth: { method: public }
`
	_, err := Parse([]byte(doc), c.Dir, func(string) (string, bool) { return "", false })
	if err == nil {
		t.Fatal("Parse accepted duplicate names and overlapping routes")
	}
	for _, want := range []string{"gateway.routes[1].name: duplicate", "gateway.routes[1].match: route \"orders\" matches the same requests"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if !strings.Contains(err.Error(), "line 15:") {
		t.Errorf("problems carry no line: %v", err)
	}
}

// TestTrustedProxies: the widest prefixes that load, and the warning about proxies outside
// private and loopback ranges (a public address's X-Forwarded-For is believed).
func TestTrustedProxies(t *testing.T) {
	tests := []struct {
		name    string
		proxies []string
		warn    []string // paths of warnings
	}{
		{"private and loopback", []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.1.0/24", "127.0.0.1", "::1", "fd12:3456::/48"}, nil},
		{"public addresses", []string{"10.1.2.3", "203.0.113.7", "2001:db8::/32", "11.0.0.0/8"}, []string{"gateway.trusted_proxies[1]", "gateway.trusted_proxies[2]", "gateway.trusted_proxies[3]"}},
		{"wider than a private range", []string{"10.0.0.0/8", "172.0.0.0/8"}, []string{"gateway.trusted_proxies[1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validGateway(t)
			c.Gateway.TrustedProxies = tt.proxies
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			var got []string
			for _, w := range c.Warnings() {
				if strings.HasPrefix(w.Path, "gateway.trusted_proxies") {
					got = append(got, w.Path)
					if !strings.Contains(w.Message, "X-Forwarded-For") {
						t.Errorf("warning %q does not say what is at stake", w.Message)
					}
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.warn, " ") {
				t.Errorf("warnings at %v, want %v", got, tt.warn)
			}
		})
	}
}
