package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// limitsYAML is a gateway with two routes; ROUTE is replaced by the orders route's extra keys
// (indented by six spaces) and TOP by extra top-level text.
const limitsYAML = `gateway:
  listen: 127.0.0.1:8443
  tls: { cert: gw.pem, key: gw-key.pem }
  issuer: https://issuer.example
  introspection: { client_id: gateway, secret_file: gateway.secret }
  routes:
    - name: orders
      match: { path: "/api/orders/{id}", methods: [GET] }
      upstream: { url: "https://127.0.0.1:9001" }
      auth: { method: oauth }
ROUTE
    - name: health
      match: { path_prefix: /health }
      upstream: { url: "https://127.0.0.1:9002" }
      auth: { method: public }
TOP
`

func gatewayDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, f := range []string{"gw.pem", "gw-key.pem", "gateway.secret"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

func parseLimits(t *testing.T, route, top string) (*Config, error) {
	t.Helper()
	y := strings.Replace(strings.Replace(limitsYAML, "ROUTE", route, 1), "TOP", top, 1)
	return Parse([]byte(y), gatewayDir(t), noEnv)
}

// lineOf returns the 1-based line of the first line of route text in the whole document.
func lineOf(route, needle string) int {
	doc := strings.Replace(limitsYAML, "ROUTE", route, 1)
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, needle) {
			return i + 1
		}
	}
	return -1
}

func TestRateLimitForms(t *testing.T) {
	tests := []struct {
		name  string
		route string
		want  RateLimits
	}{
		{"none", "", nil},
		{"one mapping", "      rate_limit: { per: client, rate: 100/s, burst: 50 }", RateLimits{{Per: "client", Rate: "100/s", Burst: 50}}},
		{"a list", `      rate_limit:
        - { per: client, rate: 20/s, burst: 20 }
        - { per: ip, rate: 100/s, burst: 200 }
        - { name: orders.daily, per: client, quota: 100000/day }
        - { per: "header:X-Api-Key", rate: 10/s }`, RateLimits{
			{Per: "client", Rate: "20/s", Burst: 20}, {Per: "ip", Rate: "100/s", Burst: 200},
			{Name: "orders.daily", Per: "client", Quota: "100000/day"}, {Per: "header:X-Api-Key", Rate: "10/s"},
		}},
		{"null", "      rate_limit: null", nil},
		{"from the environment", "      rate_limit: { per: client, rate: \"${RATE:-7/m}\" }", RateLimits{{Per: "client", Rate: "7/m"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseLimits(t, tt.route, "")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.Gateway.Routes[0].RateLimit); diff != "" {
				t.Errorf("rate_limit (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRateLimitNamesAndBursts(t *testing.T) {
	tests := []struct {
		l     RateLimit
		name  string
		burst int
	}{
		{RateLimit{Per: "client", Rate: "100/s"}, "orders.client", 100},
		{RateLimit{Per: "ip", Rate: "6000/m"}, "orders.ip", 100},
		{RateLimit{Per: "subject", Rate: "10/h"}, "orders.subject", 1},
		{RateLimit{Per: "header:X-Api-Key", Rate: "20/10s", Burst: 3}, "orders.header", 3},
		{RateLimit{Per: "client", Quota: "1000/day"}, "orders.client.day", 0},
		{RateLimit{Name: "api.monthly", Per: "client", Quota: "5/month"}, "api.monthly", 0},
	}
	for _, tt := range tests {
		if got := tt.l.EffectiveName("orders"); got != tt.name {
			t.Errorf("%+v: name %q, want %q", tt.l, got, tt.name)
		}
		if tt.l.Rate != "" {
			if got := tt.l.EffectiveBurst(); got != tt.burst {
				t.Errorf("%+v: burst %d, want %d", tt.l, got, tt.burst)
			}
		}
	}
}

func TestLimitProblems(t *testing.T) {
	const r0 = "gateway.routes[0]"
	tests := []struct {
		name  string
		route string
		top   string
		path  string
		msg   string
		line  string // the problem's line is this text's line (when set)
	}{
		{"unknown per", "      rate_limit: { per: user, rate: 1/s }", "", r0 + ".rate_limit[0].per", "unknown", "per: user"},
		{"no per", "      rate_limit: { rate: 1/s }", "", r0 + ".rate_limit[0].per", "required", ""},
		{"bad rate", "      rate_limit: { per: client, rate: 10/x }", "", r0 + ".rate_limit[0].rate", "unit", "10/x"},
		{"rate without a window", "      rate_limit: { per: client, rate: \"100\" }", "", r0 + ".rate_limit[0].rate", "want N/s", ""},
		{"zero rate", "      rate_limit: { per: client, rate: 0/s }", "", r0 + ".rate_limit[0].rate", "count", ""},
		{"rate too fast", "      rate_limit: { per: client, rate: 2000000/s }", "", r0 + ".rate_limit[0].rate", "microsecond", ""},
		{"explicit zero burst", "      rate_limit: { per: client, rate: 1/s, burst: 0 }", "", r0 + ".rate_limit[0].burst", "at least 1", ""},
		{"negative burst", "      rate_limit: { per: client, rate: 1/s, burst: -5 }", "", r0 + ".rate_limit[0].burst", "at least 1", ""},
		{"burst refills over a year", "      rate_limit: { per: client, rate: 1/d, burst: 400 }", "", r0 + ".rate_limit[0].burst", "year", ""},
		{"bad quota", "      rate_limit: { per: client, quota: 100/week }", "", r0 + ".rate_limit[0].quota", "day or month", ""},
		{"quota with a burst", "      rate_limit: { per: client, quota: 100/day, burst: 5 }", "", r0 + ".rate_limit[0].burst", "no burst", ""},
		{"rate and quota", "      rate_limit: { per: client, rate: 1/s, quota: 100/day }", "", r0 + ".rate_limit[0]", "not both", ""},
		{"neither", "      rate_limit: { per: client }", "", r0 + ".rate_limit[0]", "give rate", ""},
		{"unknown key", "      rate_limit: { per: client, rate: 1/s, brust: 5 }", "", r0 + ".rate_limit[0].brust", "unknown key", ""},
		{"unknown key in a list", "      rate_limit:\n        - { per: client, rate: 1/s }\n        - { per: ip, rates: 1/s }", "", r0 + ".rate_limit[1].rates", "unknown key", "rates: 1/s"},
		{"scalar", "      rate_limit: 100/s", "", "", "mapping or a list", ""},
		{"bad name", "      rate_limit: { name: \"a b\", per: client, rate: 1/s }", "", r0 + ".rate_limit[0].name", "use 1-64", ""},
		{"reserved name", "      rate_limit: { name: portcullis.login.ip, per: ip, rate: 1/s }", "", r0 + ".rate_limit[0].name", "belong to Portcullis", "portcullis.login.ip"},
		{"reserved default name", "", "    - name: portcullis\n      match: { path_prefix: /pc }\n      upstream: { url: \"https://127.0.0.1:9003\" }\n      auth: { method: oauth }\n      rate_limit: { per: ip, rate: 1/s }", "gateway.routes[2].rate_limit[0].name", "belong to Portcullis", ""},
		{"two default names alike", "      rate_limit: [{ per: client, rate: 1/s }, { per: client, rate: 100/h }]", "", r0 + ".rate_limit[1].name", "name them", ""},
		{"credential header", "      rate_limit: { per: \"header:Authorization\", rate: 1/s }", "", r0 + ".rate_limit[0].per", "credentials", ""},
		{"bad header", "      rate_limit: { per: \"header:X Y\", rate: 1/s }", "", r0 + ".rate_limit[0].per", "not a header name", ""},
		{"too many", "      rate_limit: [" + strings.Repeat("{ per: ip, rate: 1/s },", MaxRouteLimits) + "{ per: ip, rate: 1/s }]", "", r0 + ".rate_limit", "at most", ""},
		{"per client on a public route", "", "    - name: pub\n      match: { path_prefix: /pub }\n      upstream: { url: \"https://127.0.0.1:9003\" }\n      auth: { method: public }\n      rate_limit: { per: client, rate: 1/s }", "gateway.routes[2].rate_limit[0].per", "public route", ""},
		{"shared name defined twice differently", "      rate_limit: { name: shared, per: client, rate: 1/s }", "    - name: more\n      match: { path_prefix: /more }\n      upstream: { url: \"https://127.0.0.1:9003\" }\n      auth: { method: oauth }\n      rate_limit: { name: shared, per: client, rate: 2/s }", "gateway.routes[2].rate_limit[0].name", "differently", ""},
		{"bad CIDR", "      ip_filter: { deny: [10.0.0.0/33] }", "", r0 + ".ip_filter.deny[0]", "not a CIDR", "10.0.0.0/33"},
		{"host bits", "      ip_filter: { allow: [10.0.0.1/8] }", "", r0 + ".ip_filter.allow[0]", "did you mean 10.0.0.0/8", ""},
		{"zone", "      ip_filter: { allow: [\"fe80::1%eth0\"] }", "", r0 + ".ip_filter.allow[0]", "zones", ""},
		{"global bad entry", "", "  ip_filter: { deny: [not-an-ip] }", "gateway.ip_filter.deny[0]", "not an address", ""},
		{"zero threshold", "", "  abuse: { auth_failures: { threshold: 0 } }", "gateway.abuse.auth_failures.threshold", "between 1", ""},
		{"negative threshold", "", "  abuse: { enumeration_ids: { threshold: -1 } }", "gateway.abuse.enumeration_ids.threshold", "between 1", ""},
		{"short window", "", "  abuse: { enumeration_errors: { window: 10ms } }", "gateway.abuse.enumeration_errors.window", "between 1s", ""},
		{"unknown action", "", "  abuse: { auth_failures: { action: ban } }", "gateway.abuse.auth_failures.action", "block, throttle", ""},
		{"zero for", "", "  abuse: { auth_failures: { for: 0s } }", "gateway.abuse.auth_failures.for", "between 1s", ""},
		{"bad throttle rate", "", "  abuse: { throttle_rate: fast }", "gateway.abuse.throttle_rate", "want N/s", ""},
		{"id_param not in the path", "      enumeration: { id_param: order }", "", r0 + ".enumeration.id_param", "not a parameter", ""},
		{"id_after_prefix on a pattern", "      enumeration: { id_after_prefix: true }", "", r0 + ".enumeration.id_after_prefix", "path_prefix", ""},
		{"enumeration on a public route", "", "    - name: pub\n      match: { path_prefix: /pub }\n      upstream: { url: \"https://127.0.0.1:9003\" }\n      auth: { method: public }\n      enumeration: {}", "gateway.routes[2].enumeration", "not public", ""},
		{"cache fail", "", "cache: { fail: open }", "cache.fail", "closed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseLimits(t, tt.route, tt.top)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			line := 0
			if tt.line != "" {
				line = lineOf(tt.route, tt.line)
			}
			if !has(ps, tt.path, line, tt.msg) {
				t.Errorf("want a problem at %s (line %d) saying %q; got:\n%v", tt.path, line, tt.msg, ps)
			}
			for _, p := range ps {
				if p.Line == 0 && p.Path != "" {
					t.Errorf("problem without a line: %v", p)
				}
			}
		})
	}
}

func TestLimitDefaults(t *testing.T) {
	c, err := parseLimits(t, "      rate_limit: { per: client, rate: 5/s }\n      enumeration: { id_param: id }", "  abuse: { auth_failures: { threshold: 5 } }\ncache: { driver: redis, url: \"redis://127.0.0.1:6379/0\" }")
	if err != nil {
		t.Fatal(err)
	}
	a := c.Gateway.Abuse
	want := GatewayAbuse{
		AuthFailures:      AbuseRule{Threshold: 5, Window: time.Minute, Action: "block", For: 15 * time.Minute},
		EnumerationIDs:    DefaultEnumerationIDs,
		EnumerationErrors: DefaultEnumerationErrors,
		ThrottleRate:      "1/s",
	}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("gateway.abuse (-want +got):\n%s", diff)
	}
	if c.Cache.Fail != "closed" {
		t.Errorf("cache.fail = %q, want closed", c.Cache.Fail)
	}
	if ws := limitWarningsOf(c); len(ws) != 0 {
		t.Errorf("warnings: %v", ws)
	}
	ic, err := Parse([]byte(validIssuerYAML), issuerDir(t), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DefaultAuthFailures, ic.Issuer.Abuse.AuthFailures); diff != "" {
		t.Errorf("issuer.abuse.auth_failures (-want +got):\n%s", diff)
	}
}

func TestIssuerAbuseProblems(t *testing.T) {
	for _, tt := range []struct{ name, abuse, path, msg string }{
		{"throttle means nothing at the issuer", "{ auth_failures: { action: throttle } }", "issuer.abuse.auth_failures.action", "block, report, off"},
		{"zero threshold", "{ auth_failures: { threshold: 0 } }", "issuer.abuse.auth_failures.threshold", "between 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			y := strings.Replace(validIssuerYAML, "  tokens: { access_ttl: 5m }\n", "  tokens: { access_ttl: 5m }\n  abuse: "+tt.abuse+"\n", 1)
			ps := problemsOf(t, y, noEnv)
			if !has(ps, tt.path, 0, tt.msg) {
				t.Errorf("want %s: %s; got\n%v", tt.path, tt.msg, ps)
			}
		})
	}
}

func TestLimitWarnings(t *testing.T) {
	tests := []struct {
		name, route, top, path string
	}{
		{"fail local weakens shared limits", "      rate_limit: { per: client, rate: 5/s }", "cache: { driver: redis, url: \"redis://127.0.0.1:6379/0\", fail: local }", "cache.fail"},
		{"header limit alone", "      rate_limit: { per: \"header:X-Api-Key\", rate: 5/s }", "", "gateway.routes[0].rate_limit[0].per"},
		{"auth failures off", "", "  abuse: { auth_failures: { action: off } }", "gateway.abuse.auth_failures.action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseLimits(t, tt.route, tt.top)
			if err != nil {
				t.Fatal(err)
			}
			ws := c.Warnings()
			if !has(Problems(ws), tt.path, 0, "") {
				t.Errorf("want a warning at %s; got %v", tt.path, ws)
			}
		})
	}
	// A header limit next to a per-ip limit is fine; fail: local without limits says nothing.
	c, err := parseLimits(t, "      rate_limit: [{ per: \"header:X-Api-Key\", rate: 5/s }, { per: ip, rate: 50/s }]", "cache: { driver: redis, url: \"redis://127.0.0.1:6379/0\", fail: local }")
	if err != nil {
		t.Fatal(err)
	}
	if ws := limitWarningsOf(c); len(ws) != 1 || ws[0].Path != "cache.fail" {
		t.Errorf("warnings: %v", ws)
	}
}

// limitWarningsOf is c's warnings but the one about the test's public route.
func limitWarningsOf(c *Config) []Problem {
	var out []Problem
	for _, w := range c.Warnings() {
		if w.Path != "gateway.routes[1].auth" {
			out = append(out, w)
		}
	}
	return out
}
