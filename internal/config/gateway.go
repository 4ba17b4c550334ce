package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Gateway configures the edge proxy.
type Gateway struct {
	Listen string `yaml:"listen"`
	TLS    TLS    `yaml:"tls"`
	// InsecureHTTP serves plain HTTP to clients. Never in production.
	InsecureHTTP bool `yaml:"insecure_http"`
	// Issuer is the issuer URL the gateway trusts (metadata, JWKS, introspection). Default:
	// issuer.url when the same file configures the issuer.
	Issuer string `yaml:"issuer"`
	// IssuerCA is a PEM file of CAs for the issuer's certificate (default: system roots).
	IssuerCA string `yaml:"issuer_ca"`
	// TrustedProxies are CIDRs whose X-Forwarded-For / Forwarded headers are believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// IdentityHeaders are internal identity headers that upstreams trust; inbound copies are
	// always stripped.
	IdentityHeaders []string             `yaml:"identity_headers"`
	Introspection   GatewayIntrospection `yaml:"introspection"`
	Limits          GatewayLimits        `yaml:"limits"`
	Routes          []Route              `yaml:"routes"`
}

// GatewayIntrospection is how the gateway turns opaque tokens into phantom JWTs.
type GatewayIntrospection struct {
	ClientID   string `yaml:"client_id"`
	SecretFile string `yaml:"secret_file"`
	SecretEnv  string `yaml:"secret_env"`
	// RevocationBound is the longest a revoked token may keep working at this gateway when no
	// live revocation feed reaches it (default 5s).
	RevocationBound time.Duration `yaml:"revocation_bound"`
	// CacheMaxTTL caps a cached introspection result when a live revocation feed is
	// connected (default 5m); entries never outlive the token.
	CacheMaxTTL time.Duration `yaml:"cache_max_ttl"`
	NegativeTTL time.Duration `yaml:"negative_ttl"` // default 2s
	CacheSize   int           `yaml:"cache_size"`   // default 100000 entries
}

// GatewayLimits bounds what a client may send and how long things may take.
type GatewayLimits struct {
	MaxHeaderBytes       ByteSize      `yaml:"max_header_bytes"` // default 32KiB
	MaxBodyBytes         ByteSize      `yaml:"max_body"`         // default 1MiB
	ReadHeaderTimeout    time.Duration `yaml:"read_header_timeout"`
	ReadTimeout          time.Duration `yaml:"read_timeout"`
	WriteTimeout         time.Duration `yaml:"write_timeout"`
	IdleTimeout          time.Duration `yaml:"idle_timeout"`
	UpstreamTimeout      time.Duration `yaml:"upstream_timeout"`
	MaxConcurrentStreams int           `yaml:"max_concurrent_streams"`
}

// Route is one way through the gateway.
type Route struct {
	Name      string     `yaml:"name"`
	Match     RouteMatch `yaml:"match"`
	Upstream  Upstream   `yaml:"upstream"`
	Auth      RouteAuth  `yaml:"auth"`
	Policies  []string   `yaml:"policies"` // CEL expressions; any allows (deny by default when present)
	CORS      *CORS      `yaml:"cors"`
	Cache     string     `yaml:"cache_control"` // response Cache-Control for authenticated responses; default no-store
	MaxBody   ByteSize   `yaml:"max_body"`
	RateLimit *RateLimit `yaml:"rate_limit"`
}

// RouteMatch selects requests.
type RouteMatch struct {
	Host       string   `yaml:"host"`
	PathPrefix string   `yaml:"path_prefix"`
	Path       string   `yaml:"path"` // a pattern like /api/orders/{id}
	Methods    []string `yaml:"methods"`
}

// Upstream is where a route forwards.
type Upstream struct {
	URL         string        `yaml:"url"`
	CA          string        `yaml:"ca"`
	ClientCert  string        `yaml:"client_cert"`
	ClientKey   string        `yaml:"client_key"`
	StripPrefix string        `yaml:"strip_prefix"`
	AddPrefix   string        `yaml:"add_prefix"`
	Timeout     time.Duration `yaml:"timeout"`
	// InsecureHTTP allows an http:// upstream. The phantom JWT then crosses the network in the
	// clear; use only inside one host.
	InsecureHTTP bool `yaml:"insecure_http"`
}

// RouteAuth is the one authentication method of a route.
type RouteAuth struct {
	Method     string   `yaml:"method"` // oauth | jwt | mtls | public
	Scopes     []string `yaml:"scopes"`
	ScopesMode string   `yaml:"scopes_mode"` // all (default) | any
	// Audience the JWT must carry (jwt routes); default: the issuer's default audience.
	Audience []string `yaml:"audience"`
	// Method-specific scope requirements, e.g. POST needs orders:write.
	MethodScopes map[string][]string `yaml:"method_scopes"`
	// AllowedSubjects (mtls): certificate subjects/SANs allowed.
	AllowedSubjects []string `yaml:"allowed_subjects"`
}

// CORS configures cross-origin access for a route.
type CORS struct {
	AllowOrigins     []string      `yaml:"allow_origins"`
	AllowMethods     []string      `yaml:"allow_methods"`
	AllowHeaders     []string      `yaml:"allow_headers"`
	ExposeHeaders    []string      `yaml:"expose_headers"`
	AllowCredentials bool          `yaml:"allow_credentials"`
	MaxAge           time.Duration `yaml:"max_age"`
}

// RateLimit is a route's limits (filled in by the rate-limit work).
type RateLimit struct {
	Per   string `yaml:"per"`   // client | subject | ip | header:NAME
	Rate  string `yaml:"rate"`  // 100/s, 6000/m
	Burst int    `yaml:"burst"` // default: the rate per second
}

var routeAuthMethods = []string{"oauth", "jwt", "mtls", "public"}

func (g *Gateway) validate(c *Config, ps *Problems) {
	checkListen(ps, "gateway.listen", g.Listen)
	c.checkTLS(ps, "gateway", g.TLS, g.InsecureHTTP)
	if u, err := url.Parse(g.Issuer); g.Issuer == "" || err != nil || u.Host == "" {
		ps.add("gateway.issuer", "required: the issuer URL (defaults to issuer.url in the same file)")
	}
	if g.IssuerCA != "" {
		c.checkFile(ps, "gateway.issuer_ca", g.IssuerCA)
	}
	names := map[string]bool{}
	for i, r := range g.Routes {
		p := fmt.Sprintf("gateway.routes[%d]", i)
		if r.Name == "" {
			ps.add(p+".name", "required")
		} else if names[r.Name] {
			ps.add(p+".name", "duplicate route name %q", r.Name)
		}
		names[r.Name] = true
		switch {
		case r.Auth.Method == "":
			ps.add(p+".auth.method", "required: exactly one of %s (deny by default; say public explicitly)", strings.Join(routeAuthMethods, ", "))
		case !slices.Contains(routeAuthMethods, r.Auth.Method):
			ps.add(p+".auth.method", "must be exactly one of %s", strings.Join(routeAuthMethods, ", "))
		}
		if r.Match.PathPrefix == "" && r.Match.Path == "" {
			ps.add(p+".match", "path_prefix or path is required")
		}
		u, err := url.Parse(r.Upstream.URL)
		switch {
		case r.Upstream.URL == "" || err != nil || u.Host == "":
			ps.add(p+".upstream.url", "required: an absolute https:// URL")
		case u.Scheme == "http" && !r.Upstream.InsecureHTTP:
			ps.add(p+".upstream.url", "http:// upstream needs insecure_http: true (the phantom JWT would cross in the clear)")
		case u.Scheme != "https" && u.Scheme != "http":
			ps.add(p+".upstream.url", "scheme must be https")
		}
	}
}
