package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/jwtverify"
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
	IdentityHeaders []string `yaml:"identity_headers"`
	// ForwardRequestID sends the request id (the X-Request-Id the client gets back and the
	// access log shows) to upstreams as X-Request-Id, so their logs can be joined with the
	// gateway's (default true). Off, a client's X-Request-Id is still dropped; on an HTTP/2
	// upstream connection a value new with every request costs header-compression work
	// (docs/gateway.md has the measurement).
	ForwardRequestID *bool                `yaml:"forward_request_id"`
	Introspection    GatewayIntrospection `yaml:"introspection"`
	JWT              GatewayJWT           `yaml:"jwt"`
	Limits           GatewayLimits        `yaml:"limits"`
	// IPFilter allows and denies client addresses for every route (before routing).
	IPFilter IPFilter `yaml:"ip_filter"`
	// Abuse configures the detectors of authentication-failure bursts and enumeration.
	Abuse  GatewayAbuse `yaml:"abuse"`
	Routes []Route      `yaml:"routes"`
}

// ForwardsRequestID reports whether upstreams get the request id (ForwardRequestID, default
// true).
func (g *Gateway) ForwardsRequestID() bool { return g.ForwardRequestID == nil || *g.ForwardRequestID }

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

// GatewayJWT configures the local validation of at+jwt access tokens on jwt routes.
type GatewayJWT struct {
	// Audience is the default audience a jwt route requires when the route names none.
	// Default: issuer.tokens.audience when the same file configures the issuer.
	Audience []string `yaml:"audience"`
	// Algorithms allowed in the tokens' "alg" (default ES256, EdDSA, PS256: what the issuer
	// can sign with). Symmetric algorithms and "none" are never allowed.
	Algorithms []string `yaml:"algorithms"`
	// CacheSize bounds the cache of verified tokens, kept by hash until their exp (default
	// 100000 entries).
	CacheSize int `yaml:"cache_size"`
}

// Defaults of the gateway that are applied where they are used (so a Config built in Go
// without Default still behaves).
const (
	DefaultJWTCacheSize = 100000
)

// DefaultJWTAlgorithms are what a jwt route accepts unless gateway.jwt.algorithms says otherwise.
var DefaultJWTAlgorithms = []string{"ES256", "EdDSA", "PS256"}

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
	Name     string     `yaml:"name"`
	Match    RouteMatch `yaml:"match"`
	Upstream Upstream   `yaml:"upstream"`
	Auth     RouteAuth  `yaml:"auth"`
	Policies []string   `yaml:"policies"` // CEL expressions; any allows (deny by default when present)
	CORS     *CORS      `yaml:"cors"`
	Cache    string     `yaml:"cache_control"` // response Cache-Control for authenticated responses; default no-store
	MaxBody  ByteSize   `yaml:"max_body"`
	// IPFilter allows and denies client addresses on this route, after gateway.ip_filter.
	IPFilter IPFilter `yaml:"ip_filter"`
	// RateLimit is one limit or a list of them (docs/rate-limits.md).
	RateLimit RateLimits `yaml:"rate_limit"`
	// Enumeration turns on the enumeration detectors (gateway.abuse) for this route.
	Enumeration *Enumeration `yaml:"enumeration"`
}

// RouteMatch selects requests. Exactly one of PathPrefix and Path is given.
type RouteMatch struct {
	// Host is a host name (no port), or *.example.com for any single-label subdomain. Empty
	// matches any host. Compared case-insensitively.
	Host string `yaml:"host"`
	// PathPrefix matches the path itself and everything below it on a segment boundary:
	// /api/orders matches /api/orders and /api/orders/7, never /api/ordersX.
	PathPrefix string `yaml:"path_prefix"`
	// Path is a pattern like /api/orders/{id}: {name} matches one non-empty segment, and a
	// final {name...} matches the rest of the path (possibly nothing).
	Path string `yaml:"path"`
	// Methods allowed (default: all of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS).
	Methods []string `yaml:"methods"`
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
	// Audience the token must carry: for jwt routes, default gateway.jwt.audience; for oauth
	// routes, checked against the introspected aud only when given.
	Audience []string `yaml:"audience"`
	// Method-specific scope requirements, e.g. POST needs orders:write. For a method listed
	// here they replace Scopes; ScopesMode applies to them too.
	MethodScopes map[string][]string `yaml:"method_scopes"`
	// AllowedSubjects (mtls): certificate subject common names or SANs (DNS, URI, e-mail)
	// allowed; empty allows every certificate issued by gateway.tls.client_ca.
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

var routeAuthMethods = []string{"oauth", "jwt", "mtls", "public"}

// RouteMethods are the request methods a route may name. TRACE and CONNECT are never proxied.
var RouteMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// identityHeadersForbidden cannot be configured as identity headers: stripping them would
// break HTTP itself.
var identityHeadersForbidden = []string{"host", "authorization", "content-length", "transfer-encoding", "connection", "te", "trailer", "upgrade", "content-type"}

// ValidRouteName reports whether s is an acceptable route name: it becomes a metric label
// and a log field, so it is short and plain.
func ValidRouteName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '-' || c == '_' || c == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

// JWTAudience is the audience a jwt route requires: the route's own, else gateway.jwt.audience,
// else the issuer's default audience when the same file configures the issuer.
func (c *Config) JWTAudience(r *Route) []string {
	switch {
	case len(r.Auth.Audience) > 0:
		return r.Auth.Audience
	case c.Gateway != nil && len(c.Gateway.JWT.Audience) > 0:
		return c.Gateway.JWT.Audience
	case c.Issuer != nil && len(c.Issuer.Tokens.Audience) > 0:
		return c.Issuer.Tokens.Audience
	case c.Issuer != nil && c.Issuer.URL != "":
		return []string{c.Issuer.URL}
	}
	return nil
}

// IntrospectionSecret reads the gateway's introspection client secret from secret_file or
// secret_env. Surrounding white space (a trailing newline) is not part of the secret.
func (c *Config) IntrospectionSecret() (string, error) {
	if c.Gateway == nil {
		return "", fmt.Errorf("no gateway configured")
	}
	in := c.Gateway.Introspection
	var s string
	switch {
	case in.SecretFile != "":
		b, err := os.ReadFile(c.Path(in.SecretFile))
		if err != nil {
			return "", fmt.Errorf("read gateway.introspection.secret_file: %w", strippedPathErr(err))
		}
		s = string(b)
	case in.SecretEnv != "":
		v, ok := os.LookupEnv(in.SecretEnv)
		if !ok {
			return "", fmt.Errorf("gateway.introspection.secret_env: %s is not set", in.SecretEnv)
		}
		s = v
	default:
		return "", fmt.Errorf("gateway.introspection: secret_file or secret_env is required")
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("gateway.introspection: the secret is empty")
	}
	return s, nil
}

// UsesAuth reports whether some route uses the auth method m.
func (g *Gateway) UsesAuth(m string) bool {
	for i := range g.Routes {
		if g.Routes[i].Auth.Method == m {
			return true
		}
	}
	return false
}

func (g *Gateway) validate(c *Config, ps *Problems) {
	checkListen(ps, "gateway.listen", g.Listen)
	c.checkTLS(ps, "gateway", g.TLS, g.InsecureHTTP)
	g.validateIssuer(c, ps)
	if g.IssuerCA != "" {
		c.checkFile(ps, "gateway.issuer_ca", g.IssuerCA)
	}
	for i, s := range g.TrustedProxies {
		p := fmt.Sprintf("gateway.trusted_proxies[%d]", i)
		pfx, ok := parseTrustedProxy(s)
		switch {
		case !ok:
			ps.add(p, "%q is not a CIDR or an IP address", s)
		case pfx.Addr().Is4() && pfx.Bits() < minTrustedBits4:
			ps.add(p, "%q is too wide: every address in it could forge X-Forwarded-For and pass as any client (past ip_filter, per-ip limits and blocks); list your proxies, /%d or narrower for IPv4", s, minTrustedBits4)
		case pfx.Addr().Is6() && pfx.Bits() < minTrustedBits6:
			ps.add(p, "%q is too wide: every address in it could forge X-Forwarded-For and pass as any client (past ip_filter, per-ip limits and blocks); list your proxies, /%d or narrower for IPv6", s, minTrustedBits6)
		}
	}
	for i, h := range g.IdentityHeaders {
		p := fmt.Sprintf("gateway.identity_headers[%d]", i)
		switch {
		case !validToken(h):
			ps.add(p, "%q is not a header name", h)
		case slices.Contains(identityHeadersForbidden, strings.ToLower(h)):
			ps.add(p, "%s cannot be an identity header", h)
		}
	}
	g.validateIntrospection(c, ps)
	g.validateJWT(ps)
	g.validateLimits(ps)
	g.validateLimitsAndFilters(c, ps)

	names := map[string]bool{}
	groups := map[string][]int{} // match key → route indexes, to find overlapping routes
	for i := range g.Routes {
		r := &g.Routes[i]
		p := fmt.Sprintf("gateway.routes[%d]", i)
		switch {
		case r.Name == "":
			ps.add(p+".name", "required")
		case !ValidRouteName(r.Name):
			ps.add(p+".name", "%q: use 1-64 letters, digits, . _ - (it becomes a metric label)", r.Name)
		case names[r.Name]:
			ps.add(p+".name", "duplicate route name %q", r.Name)
		}
		names[r.Name] = true
		if key, ok := g.validateMatch(ps, p+".match", &r.Match); ok {
			groups[key] = append(groups[key], i)
		}
		g.validateUpstream(c, ps, p+".upstream", r)
		g.validateAuth(c, ps, p, r)
		if r.CORS != nil {
			validateCORS(ps, p+".cors", r.CORS)
		}
		if r.Cache != "" && !validHeaderValue(r.Cache) {
			ps.add(p+".cache_control", "not a valid header value")
		}
		if r.MaxBody < 0 || r.MaxBody > 1<<30 {
			ps.add(p+".max_body", "must be between 0 (the gateway limit) and 1GiB")
		}
	}
	for _, idx := range groups {
		for a := 0; a < len(idx); a++ {
			for b := a + 1; b < len(idx); b++ {
				ra, rb := &g.Routes[idx[a]], &g.Routes[idx[b]]
				if m, ok := methodsOverlap(ra.Match.Methods, rb.Match.Methods); ok {
					ps.add(fmt.Sprintf("gateway.routes[%d].match", idx[b]), "route %q matches the same requests as route %q (method %s): give each method to one route", rb.Name, ra.Name, m)
				}
			}
		}
	}
}

// The widest trusted_proxies prefixes that load: a reverse proxy tier is never larger, and
// 0.0.0.0/0 or ::/0 would let anyone choose the client address the gateway sees.
const (
	minTrustedBits4 = 8
	minTrustedBits6 = 32
)

// privateRanges are the private and loopback networks (RFC 1918, RFC 4193, loopback): where
// the proxies in front of a gateway normally are.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("fc00::/7"), netip.MustParsePrefix("::1/128"),
}

// parseTrustedProxy reads a trusted_proxies entry: a CIDR or one address. An IPv4-mapped
// IPv6 prefix is read as the IPv4 prefix it names.
func parseTrustedProxy(s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

// trustedProxyWarnings warns about trusted proxies outside private and loopback ranges.
func (g *Gateway) trustedProxyWarnings(ws *Problems) {
	for i, s := range g.TrustedProxies {
		p, ok := parseTrustedProxy(s)
		if !ok {
			continue
		}
		inside := false
		for _, r := range privateRanges {
			inside = inside || (r.Bits() <= p.Bits() && r.Contains(p.Addr()))
		}
		if !inside {
			ws.add(fmt.Sprintf("gateway.trusted_proxies[%d]", i), "%s is outside private and loopback ranges: the gateway believes X-Forwarded-For from it, so whoever sends from there chooses the client address that ip_filter, per-ip limits and blocks see; list only your own proxies", s)
		}
	}
}

func (g *Gateway) validateIssuer(c *Config, ps *Problems) {
	u, err := url.Parse(g.Issuer)
	if g.Issuer == "" || err != nil || u.Host == "" {
		ps.add("gateway.issuer", "required: the issuer URL (defaults to issuer.url in the same file)")
		return
	}
	switch {
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		ps.add("gateway.issuer", "must not carry a query, fragment or user info")
	case u.Scheme == "https":
	case u.Scheme == "http" && c.Issuer != nil && c.Issuer.InsecureHTTP && c.Issuer.URL == g.Issuer:
		// The operator already chose plain HTTP for the issuer in this file.
	case u.Scheme == "http":
		ps.add("gateway.issuer", "http:// is allowed only for the issuer of the same file with insecure_http: true (the gateway's secret and tokens would cross in the clear)")
	default:
		ps.add("gateway.issuer", "scheme must be https")
	}
}

func (g *Gateway) validateIntrospection(c *Config, ps *Problems) {
	in := g.Introspection
	const p = "gateway.introspection"
	if g.UsesAuth("oauth") {
		if !ValidClientID(in.ClientID) {
			ps.add(p+".client_id", "required when a route uses oauth: the gateway's own client id at the issuer")
		}
		switch {
		case in.SecretFile == "" && in.SecretEnv == "":
			ps.add(p, "secret_file or secret_env is required when a route uses oauth")
		case in.SecretFile != "" && in.SecretEnv != "":
			ps.add(p, "give secret_file or secret_env, not both")
		case in.SecretFile != "":
			c.checkFile(ps, p+".secret_file", in.SecretFile)
		default:
			if _, ok := os.LookupEnv(in.SecretEnv); !ok {
				ps.add(p+".secret_env", "environment variable %s is not set", in.SecretEnv)
			}
		}
	}
	if in.RevocationBound < 0 || in.RevocationBound > time.Minute {
		ps.add(p+".revocation_bound", "must be between 0 (default 5s) and 1m")
	}
	if in.CacheMaxTTL < 0 || in.CacheMaxTTL > time.Hour {
		ps.add(p+".cache_max_ttl", "must be between 0 (default 5m) and 1h")
	} else if in.CacheMaxTTL != 0 && in.CacheMaxTTL < in.RevocationBound {
		ps.add(p+".cache_max_ttl", "must be at least revocation_bound")
	}
	if in.NegativeTTL < 0 || in.NegativeTTL > time.Minute {
		ps.add(p+".negative_ttl", "must be between 0 (default 2s) and 1m")
	}
	if in.CacheSize < 0 || in.CacheSize > 10_000_000 {
		ps.add(p+".cache_size", "must be between 0 (default 100000) and 10000000")
	}
}

func (g *Gateway) validateJWT(ps *Problems) {
	j := g.JWT
	for i, a := range j.Audience {
		if a == "" || strings.ContainsAny(a, " \t\r\n") {
			ps.add(fmt.Sprintf("gateway.jwt.audience[%d]", i), "must be a non-empty string without spaces")
		}
	}
	for i, a := range j.Algorithms {
		p := fmt.Sprintf("gateway.jwt.algorithms[%d]", i)
		switch {
		case strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS"):
			ps.add(p, "%s can never be allowed: asymmetric signatures only", a)
		case !slices.Contains([]string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}, a):
			ps.add(p, "unknown algorithm %q", a)
		}
	}
	if j.CacheSize < 0 || j.CacheSize > 10_000_000 {
		ps.add("gateway.jwt.cache_size", "must be between 0 (default 100000) and 10000000")
	}
}

func (g *Gateway) validateLimits(ps *Problems) {
	l := g.Limits
	const p = "gateway.limits"
	if l.MaxHeaderBytes != 0 && (l.MaxHeaderBytes < 1<<10 || l.MaxHeaderBytes > 1<<20) {
		ps.add(p+".max_header_bytes", "must be between 1KiB and 1MiB")
	}
	if l.MaxBodyBytes < 0 || l.MaxBodyBytes > 1<<30 {
		ps.add(p+".max_body", "must be between 0 (default 1MiB) and 1GiB")
	}
	timeouts := []struct {
		name string
		d    time.Duration
		max  time.Duration
	}{
		{"read_header_timeout", l.ReadHeaderTimeout, time.Minute},
		{"read_timeout", l.ReadTimeout, time.Hour},
		{"write_timeout", l.WriteTimeout, time.Hour},
		{"idle_timeout", l.IdleTimeout, time.Hour},
		{"upstream_timeout", l.UpstreamTimeout, time.Hour},
	}
	for _, t := range timeouts {
		if t.d < 0 || t.d > t.max {
			ps.add(p+"."+t.name, "must be between 0 (the default) and %s", t.max)
		}
	}
	if l.ReadHeaderTimeout > 0 && l.ReadTimeout > 0 && l.ReadHeaderTimeout > l.ReadTimeout {
		ps.add(p+".read_header_timeout", "must not exceed read_timeout")
	}
	if l.MaxConcurrentStreams < 0 || l.MaxConcurrentStreams > 1000 {
		ps.add(p+".max_concurrent_streams", "must be between 1 and 1000 (0: default 100)")
	}
}

// validateMatch checks a route's match and returns the key that identifies the requests it
// selects (host + path), so routes selecting the same requests can be compared.
func (g *Gateway) validateMatch(ps *Problems, p string, m *RouteMatch) (string, bool) {
	ok := true
	if m.Host != "" && !validRouteHost(m.Host) {
		ps.add(p+".host", "%q is not a host name (no port, no scheme; *.example.com for subdomains)", m.Host)
		ok = false
	}
	var pathKey string
	switch {
	case m.PathPrefix == "" && m.Path == "":
		ps.add(p, "path_prefix or path is required")
		ok = false
	case m.PathPrefix != "" && m.Path != "":
		ps.add(p, "give path_prefix or path, not both")
		ok = false
	case m.PathPrefix != "":
		if msg := checkCleanPath(m.PathPrefix); msg != "" {
			ps.add(p+".path_prefix", "%s", msg)
			ok = false
		}
		pathKey = "prefix " + m.PathPrefix
	default:
		key, msg := checkPathPattern(m.Path)
		if msg != "" {
			ps.add(p+".path", "%s", msg)
			ok = false
		}
		pathKey = "path " + key
	}
	seen := map[string]bool{}
	for i, meth := range m.Methods {
		mp := fmt.Sprintf("%s.methods[%d]", p, i)
		switch {
		case meth == "TRACE" || meth == "CONNECT":
			ps.add(mp, "%s is never proxied", meth)
		case !slices.Contains(RouteMethods, meth):
			ps.add(mp, "unknown method %q (use upper case: %s)", meth, strings.Join(RouteMethods, ", "))
		case seen[meth]:
			ps.add(mp, "duplicate method %s", meth)
		}
		seen[meth] = true
	}
	return strings.ToLower(m.Host) + " " + pathKey, ok
}

// checkCleanPath returns why p is not a clean absolute path ("" when it is): what the gateway
// compares requests with must itself be unambiguous.
func checkCleanPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "must start with /"
	}
	if len(p) > 1 && strings.HasSuffix(p, "/") {
		return "must not end with / (a prefix matches on segment boundaries)"
	}
	if len(p) > 1024 {
		return "too long"
	}
	for i := 0; i < len(p); i++ {
		if !pathByteOK(p[i]) {
			return fmt.Sprintf("character %q is not allowed (no %%, \\, ;, ?, #, spaces or controls)", p[i])
		}
	}
	if p == "/" {
		return ""
	}
	for _, seg := range strings.Split(p[1:], "/") {
		switch seg {
		case "":
			return "must not contain //"
		case ".", "..":
			return "must not contain . or .. segments"
		}
	}
	return ""
}

// pathByteOK reports whether c may appear in a configured path: RFC 3986 pchar without
// percent-encoding and without ';' (path parameters are refused at the gateway).
func pathByteOK(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,=:@/", c) >= 0
}

// checkPathPattern validates a pattern like /api/orders/{id} or /files/{rest...} and returns
// its key with parameter names erased (two patterns with the same key select the same paths).
func checkPathPattern(pat string) (string, string) {
	if !strings.HasPrefix(pat, "/") {
		return "", "must start with /"
	}
	if len(pat) > 1024 {
		return "", "too long"
	}
	if pat == "/" {
		return "/", ""
	}
	segs := strings.Split(pat[1:], "/")
	names := map[string]bool{}
	key := make([]string, len(segs))
	for i, seg := range segs {
		if strings.HasPrefix(seg, "{") {
			if !strings.HasSuffix(seg, "}") {
				return "", fmt.Sprintf("segment %q: a parameter is a whole segment {name}", seg)
			}
			name := seg[1 : len(seg)-1]
			rest := strings.HasSuffix(name, "...")
			name = strings.TrimSuffix(name, "...")
			if !validParamName(name) {
				return "", fmt.Sprintf("segment %q: parameter names are letters, digits and _", seg)
			}
			if names[name] {
				return "", fmt.Sprintf("parameter %q appears twice", name)
			}
			names[name] = true
			if rest {
				if i != len(segs)-1 {
					return "", fmt.Sprintf("segment %q: {name...} must be the last segment", seg)
				}
				key[i] = "{...}"
			} else {
				key[i] = "{}"
			}
			continue
		}
		if strings.ContainsAny(seg, "{}") {
			return "", fmt.Sprintf("segment %q: a parameter is a whole segment {name}", seg)
		}
		if msg := checkCleanPath("/" + seg); msg != "" && !(seg == "" && i == len(segs)-1) {
			return "", fmt.Sprintf("segment %q: %s", seg, msg)
		}
		key[i] = seg
	}
	return "/" + strings.Join(key, "/"), ""
}

func validParamName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0) {
			return false
		}
	}
	return true
}

// validRouteHost accepts a DNS name or IP literal without port, optionally *.-prefixed.
func validRouteHost(h string) bool {
	if strings.HasPrefix(h, "*.") {
		h = h[2:]
	}
	if h == "" || len(h) > 253 {
		return false
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		return err == nil && a.Is6()
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

func methodsOverlap(a, b []string) (string, bool) {
	switch {
	case len(a) == 0 && len(b) == 0:
		return "any", true
	case len(a) == 0:
		return b[0], true
	case len(b) == 0:
		return a[0], true
	}
	for _, m := range a {
		if slices.Contains(b, m) {
			return m, true
		}
	}
	return "", false
}

func (g *Gateway) validateUpstream(c *Config, ps *Problems, p string, r *Route) {
	up := r.Upstream
	u, err := url.Parse(up.URL)
	switch {
	case up.URL == "" || err != nil || u.Host == "":
		ps.add(p+".url", "required: an absolute https:// URL")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Contains(up.URL, "?") || strings.Contains(up.URL, "#"):
		ps.add(p+".url", "must not carry user info, a query or a fragment")
	case u.Scheme == "http" && !up.InsecureHTTP:
		ps.add(p+".url", "http:// upstream needs insecure_http: true (the phantom JWT would cross in the clear)")
	case u.Scheme != "https" && u.Scheme != "http":
		ps.add(p+".url", "scheme must be https")
	case u.EscapedPath() != "" && u.EscapedPath() != "/" && checkCleanPath(strings.TrimSuffix(u.EscapedPath(), "/")) != "":
		ps.add(p+".url", "path: %s", checkCleanPath(strings.TrimSuffix(u.EscapedPath(), "/")))
	case u.Scheme == "http" && (up.CA != "" || up.ClientCert != ""):
		ps.add(p, "ca and client_cert need an https:// upstream")
	}
	if up.CA != "" {
		c.checkFile(ps, p+".ca", up.CA)
	}
	switch {
	case (up.ClientCert == "") != (up.ClientKey == ""):
		ps.add(p, "give both client_cert and client_key, or neither")
	case up.ClientCert != "":
		c.checkFile(ps, p+".client_cert", up.ClientCert)
		c.checkFile(ps, p+".client_key", up.ClientKey)
	}
	if up.StripPrefix != "" {
		if msg := checkCleanPath(up.StripPrefix); msg != "" {
			ps.add(p+".strip_prefix", "%s", msg)
		} else if head := literalHead(r.Match); !hasSegmentPrefix(head, up.StripPrefix) {
			ps.add(p+".strip_prefix", "%q is not a prefix (on segment boundaries) of every path the route matches", up.StripPrefix)
		}
	}
	if up.AddPrefix != "" {
		if msg := checkCleanPath(up.AddPrefix); msg != "" {
			ps.add(p+".add_prefix", "%s", msg)
		}
	}
	if up.Timeout < 0 || up.Timeout > time.Hour {
		ps.add(p+".timeout", "must be between 0 (gateway.limits.upstream_timeout) and 1h")
	}
}

// literalHead is the part of the route's path that every matched request starts with.
func literalHead(m RouteMatch) string {
	if m.PathPrefix != "" {
		return m.PathPrefix
	}
	head := "/"
	if m.Path == "" || m.Path == "/" {
		return head
	}
	var segs []string
	for _, s := range strings.Split(m.Path[1:], "/") {
		if strings.HasPrefix(s, "{") {
			break
		}
		segs = append(segs, s)
	}
	return "/" + strings.Join(segs, "/")
}

// hasSegmentPrefix reports whether path starts with prefix on a segment boundary.
func hasSegmentPrefix(path, prefix string) bool {
	if prefix == "/" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func (g *Gateway) validateAuth(c *Config, ps *Problems, route string, r *Route) {
	p := route + ".auth"
	a := r.Auth
	switch {
	case a.Method == "":
		ps.add(p+".method", "required: exactly one of %s (deny by default; say public explicitly)", strings.Join(routeAuthMethods, ", "))
		return
	case !slices.Contains(routeAuthMethods, a.Method):
		ps.add(p+".method", "must be exactly one of %s", strings.Join(routeAuthMethods, ", "))
		return
	}
	bearer := a.Method == "oauth" || a.Method == "jwt"
	if !bearer && (len(a.Scopes) > 0 || len(a.MethodScopes) > 0) {
		ps.add(p+".scopes", "scopes apply only to oauth and jwt routes")
	}
	if !bearer && len(a.Audience) > 0 {
		ps.add(p+".audience", "audience applies only to oauth and jwt routes")
	}
	if !bearer && len(r.Policies) > 0 {
		ps.add(route+".policies", "policies apply only to oauth and jwt routes (they read token claims)")
	}
	if a.Method != "mtls" && len(a.AllowedSubjects) > 0 {
		ps.add(p+".allowed_subjects", "allowed_subjects applies only to mtls routes")
	}
	if a.Method == "mtls" {
		switch {
		case g.TLS.ClientCA == "":
			ps.add(p+".method", "mtls routes need gateway.tls.client_ca (the CA client certificates must chain to)")
		case g.InsecureHTTP:
			ps.add(p+".method", "mtls routes need a TLS listener")
		}
		for i, s := range a.AllowedSubjects {
			if s == "" {
				ps.add(fmt.Sprintf("%s.allowed_subjects[%d]", p, i), "must not be empty")
			}
		}
	}
	if a.Method == "jwt" && len(c.JWTAudience(r)) == 0 {
		ps.add(p+".audience", "a jwt route needs an audience (here, or gateway.jwt.audience, or an issuer in the same file)")
	}
	for i, aud := range a.Audience {
		if aud == "" || strings.ContainsAny(aud, " \t\r\n") {
			ps.add(fmt.Sprintf("%s.audience[%d]", p, i), "must be a non-empty string without spaces")
		}
	}
	switch a.ScopesMode {
	case "", "all", "any":
	default:
		ps.add(p+".scopes_mode", "must be all or any")
	}
	checkScopes(ps, p+".scopes", a.Scopes)
	for m, scopes := range a.MethodScopes {
		mp := p + ".method_scopes." + m
		switch {
		case !slices.Contains(RouteMethods, m):
			ps.add(mp, "unknown method %q", m)
		case len(r.Match.Methods) > 0 && !slices.Contains(r.Match.Methods, m):
			ps.add(mp, "the route does not match %s", m)
		}
		if len(scopes) == 0 {
			ps.add(mp, "list at least one scope (or remove the entry)")
		}
		checkScopes(ps, mp, scopes)
	}
	if len(a.MethodScopes) > 0 && len(a.Scopes) == 0 {
		if missing := unscopedMethods(r); len(missing) > 0 {
			ps.add(p+".method_scopes", "no entry for %s while auth.scopes is empty: those requests would need no scope; add entries (HEAD uses GET's), narrow match.methods, or set auth.scopes", strings.Join(missing, ", "))
		}
	}
	for i, pol := range r.Policies {
		pp := fmt.Sprintf("%s.policies[%d]", route, i)
		if strings.TrimSpace(pol) == "" {
			ps.add(pp, "empty policy")
			continue
		}
		if _, err := jwtverify.CompilePolicy(pol); err != nil {
			ps.add(pp, "route %q: %v", r.Name, err)
		}
	}
}

// unscopedMethods lists the methods the route serves that method_scopes gives no entry:
// every method when match.methods is empty, and HEAD when GET is served (the gateway serves
// HEAD through the GET route), unless GET or HEAD has an entry.
func unscopedMethods(r *Route) []string {
	served := r.Match.Methods
	if len(served) == 0 {
		served = RouteMethods
	}
	var missing []string
	for _, m := range RouteMethods {
		serves := slices.Contains(served, m) || (m == "HEAD" && slices.Contains(served, "GET"))
		_, has := r.Auth.MethodScopes[m]
		if m == "HEAD" {
			_, get := r.Auth.MethodScopes["GET"]
			has = has || get
		}
		if serves && !has {
			missing = append(missing, m)
		}
	}
	return missing
}

func checkScopes(ps *Problems, p string, scopes []string) {
	seen := map[string]bool{}
	for i, s := range scopes {
		switch {
		case !ValidScope(s):
			ps.add(fmt.Sprintf("%s[%d]", p, i), "%q is not a valid scope (RFC 6749 §3.3)", s)
		case seen[s]:
			ps.add(fmt.Sprintf("%s[%d]", p, i), "duplicate scope %q", s)
		}
		seen[s] = true
	}
}

func validateCORS(ps *Problems, p string, cors *CORS) {
	if len(cors.AllowOrigins) == 0 {
		ps.add(p+".allow_origins", "required: the origins allowed (or remove cors)")
	}
	for i, o := range cors.AllowOrigins {
		op := fmt.Sprintf("%s.allow_origins[%d]", p, i)
		if o == "*" {
			if cors.AllowCredentials {
				ps.add(op, "a wildcard origin cannot be combined with allow_credentials: any site could act as the user")
			}
			continue
		}
		if !ValidOrigin(o) {
			ps.add(op, "%q is not an origin (scheme://host[:port], no path; null is never allowed)", o)
		}
	}
	for i, m := range cors.AllowMethods {
		if !slices.Contains(RouteMethods, m) {
			ps.add(fmt.Sprintf("%s.allow_methods[%d]", p, i), "unknown method %q", m)
		}
	}
	for i, h := range cors.AllowHeaders {
		if !validToken(h) {
			ps.add(fmt.Sprintf("%s.allow_headers[%d]", p, i), "%q is not a header name", h)
		}
	}
	for i, h := range cors.ExposeHeaders {
		if !validToken(h) {
			ps.add(fmt.Sprintf("%s.expose_headers[%d]", p, i), "%q is not a header name", h)
		}
	}
	if cors.MaxAge < 0 || cors.MaxAge > 24*time.Hour {
		ps.add(p+".max_age", "must be between 0 and 24h")
	}
}

// ValidOrigin reports whether o is a serialized origin (RFC 6454): an http or https scheme,
// a host, an optional port and nothing else.
func ValidOrigin(o string) bool {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(o, "?#*") {
		return false
	}
	return o == u.Scheme+"://"+u.Host && strings.ToLower(o) == o
}

// validToken reports whether s is an RFC 9110 token (a header name).
func validToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	if len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
