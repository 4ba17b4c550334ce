package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/abuse/ipfilter"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/tokencheck"
	"github.com/portcullis/portcullis/internal/web"
	"github.com/portcullis/portcullis/jwtverify"
)

type authMethod uint8

const (
	authPublic authMethod = iota
	authOAuth
	authJWT
	authMTLS
)

func parseAuthMethod(s string) (authMethod, error) {
	switch s {
	case "public":
		return authPublic, nil
	case "oauth":
		return authOAuth, nil
	case "jwt":
		return authJWT, nil
	case "mtls":
		return authMTLS, nil
	case "":
		return 0, errors.New("no auth method: say public explicitly (deny by default)")
	}
	return 0, fmt.Errorf("auth method %q: must be exactly one of oauth, jwt, mtls, public", s)
}

// scopeReq is a compiled scope requirement.
type scopeReq struct {
	scopes []string
	any    bool
	// challenge is the WWW-Authenticate value of a 403 for this requirement.
	challenge []string
}

func newScopeReq(scopes []string, mode string) *scopeReq {
	if len(scopes) == 0 {
		return nil
	}
	return &scopeReq{
		scopes:    scopes,
		any:       mode == "any",
		challenge: []string{`Bearer error="insufficient_scope", scope="` + strings.Join(scopes, " ") + `"`},
	}
}

// satisfied reports whether p holds the scopes: all of them, or one for "any".
func (s *scopeReq) satisfied(p *tokencheck.Principal) bool {
	for _, want := range s.scopes {
		has := p.HasScope(want)
		if s.any && has {
			return true
		}
		if !s.any && !has {
			return false
		}
	}
	return !s.any
}

// route is a compiled, immutable route.
type route struct {
	name    string
	host    hostSpec
	path    pathSpec
	methods uint8

	auth         authMethod
	scopes       *scopeReq
	methodScopes [numMethods]*scopeReq
	audiences    []string // oauth: the introspected aud must contain one (when set)
	jwt          *tokencheck.JWTVerifier
	policies     jwtverify.PolicySet
	subjects     []string // mtls: allowed subjects (empty: any certificate from client_ca)

	cors         *corsPolicy
	cacheControl []string // Cache-Control of authenticated responses
	publicCache  []string // Cache-Control a public route sets explicitly (nil: the upstream's)
	maxBody      int64

	upstream *url.URL
	strip    string // removed from the front of the path
	prefix   string // upstream base path + add_prefix, no trailing slash
	proxy    *httputil.ReverseProxy

	filter *ipfilter.Filter // ip_filter; nil when it filters nothing
	limits *routeLimits     // rate_limit; nil without limits
	enum   *enumeration     // nil without enumeration detection

	m *routeMetrics
}

// upstreamPath maps a normalised request path to the upstream's.
func (rt *route) upstreamPath(p string) string {
	if rt.strip != "" && hasSegmentPrefix(p, rt.strip) {
		p = p[len(rt.strip):]
		if p == "" {
			p = "/"
		}
	}
	if rt.prefix != "" {
		p = rt.prefix + p
	}
	return p
}

func hasSegmentPrefix(path, prefix string) bool {
	if prefix == "/" {
		return false // stripping "/" would leave a relative path
	}
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// requiredScopes returns the scope requirement for method index mi.
func (rt *route) requiredScopes(mi int) *scopeReq {
	if mi >= 0 && rt.methodScopes[mi] != nil {
		return rt.methodScopes[mi]
	}
	return rt.scopes
}

// compileRoute builds a route from its config. Errors name the route.
func (b *builder) compileRoute(rc *config.Route) (*route, error) {
	fail := func(format string, args ...any) (*route, error) {
		return nil, fmt.Errorf("gateway route %q: "+format, append([]any{rc.Name}, args...)...)
	}
	if !config.ValidRouteName(rc.Name) {
		return fail("invalid name")
	}
	rt := &route{name: rc.Name}
	var err error
	if rt.auth, err = parseAuthMethod(rc.Auth.Method); err != nil {
		return fail("%v", err)
	}
	if h := rc.Match.Host; h != "" {
		rt.host = hostSpec{name: strings.ToLower(h)}
		if strings.HasPrefix(h, "*.") {
			rt.host = hostSpec{name: strings.ToLower(h[1:]), wildcard: true}
		}
	}
	switch {
	case rc.Match.PathPrefix != "" && rc.Match.Path != "":
		return fail("give path_prefix or path, not both")
	case rc.Match.PathPrefix != "":
		rt.path, err = compilePath(rc.Match.PathPrefix, true)
	case rc.Match.Path != "":
		rt.path, err = compilePath(rc.Match.Path, false)
	default:
		return fail("path_prefix or path is required")
	}
	if err != nil {
		return fail("%v", err)
	}
	if len(rc.Match.Methods) == 0 {
		rt.methods = allMethods
	}
	for _, m := range rc.Match.Methods {
		i := methodIndex(m)
		if i < 0 {
			return fail("method %q is not proxied", m)
		}
		rt.methods |= 1 << i
	}

	bearer := rt.auth == authOAuth || rt.auth == authJWT
	if !bearer && (len(rc.Auth.Scopes) > 0 || len(rc.Auth.MethodScopes) > 0 || len(rc.Policies) > 0) {
		return fail("scopes and policies apply only to oauth and jwt routes")
	}
	rt.scopes = newScopeReq(rc.Auth.Scopes, rc.Auth.ScopesMode)
	for m, scopes := range rc.Auth.MethodScopes {
		i := methodIndex(m)
		if i < 0 {
			return fail("method_scopes: unknown method %q", m)
		}
		rt.methodScopes[i] = newScopeReq(scopes, rc.Auth.ScopesMode)
	}
	// HEAD is GET without the body: it needs what GET needs unless it has its own entry
	// (the table serves HEAD through the GET route).
	if rt.methodScopes[1] == nil {
		rt.methodScopes[1] = rt.methodScopes[0]
	}
	for i, expr := range rc.Policies {
		p, err := jwtverify.CompilePolicy(expr)
		if err != nil {
			return fail("policies[%d]: %v", i, err)
		}
		rt.policies = append(rt.policies, p)
	}
	switch rt.auth {
	case authOAuth:
		if b.checker == nil {
			return fail("oauth needs gateway.introspection")
		}
		rt.audiences = rc.Auth.Audience
	case authJWT:
		auds := b.cfg.JWTAudience(rc)
		if len(auds) == 0 {
			return fail("a jwt route needs an audience")
		}
		if rt.jwt, err = b.jwtVerifier(auds); err != nil {
			return fail("%v", err)
		}
	case authMTLS:
		if b.cfg.Gateway.TLS.ClientCA == "" {
			return fail("mtls needs gateway.tls.client_ca")
		}
		rt.subjects = rc.Auth.AllowedSubjects
	}

	if rc.CORS != nil {
		if rt.cors, err = newCORSPolicy(rc.CORS, rt.methods); err != nil {
			return fail("cors: %v", err)
		}
	}
	cc := rc.Cache
	if cc == "" {
		cc = "no-store"
	}
	rt.cacheControl = []string{cc}
	if rt.auth == authPublic && rc.Cache != "" {
		rt.publicCache = []string{rc.Cache}
	}
	rt.maxBody = int64(rc.MaxBody)
	if rt.maxBody <= 0 {
		rt.maxBody = int64(b.cfg.Gateway.Limits.MaxBodyBytes)
	}
	if rt.maxBody <= 0 {
		rt.maxBody = 1 << 20
	}

	if err := b.compileUpstream(rt, rc); err != nil {
		return fail("upstream: %v", err)
	}
	if err := b.compileLimits(rt, rc); err != nil {
		return fail("%v", err)
	}
	rt.m = b.g.metrics.forRoute(rt.name)
	return rt, nil
}

func (b *builder) compileUpstream(rt *route, rc *config.Route) error {
	up := rc.Upstream
	u, err := url.Parse(up.URL)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("url must be an absolute URL without user info, query or fragment")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && up.InsecureHTTP:
	case u.Scheme == "http":
		return errors.New("http:// needs insecure_http: true")
	default:
		return errors.New("scheme must be https")
	}
	base := strings.TrimSuffix(u.Path, "/")
	if up.AddPrefix != "" {
		if !strings.HasPrefix(up.AddPrefix, "/") {
			return errors.New("add_prefix must start with /")
		}
		base += strings.TrimSuffix(up.AddPrefix, "/")
	}
	if base != "" {
		if _, err := NormalizePath(base); err != nil {
			return fmt.Errorf("upstream path %q: %v", base, err)
		}
	}
	rt.upstream = &url.URL{Scheme: u.Scheme, Host: u.Host}
	rt.prefix = base
	rt.strip = up.StripPrefix

	timeout := up.Timeout
	if timeout <= 0 {
		timeout = b.cfg.Gateway.Limits.UpstreamTimeout
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tr, err := b.transport(u, up, timeout)
	if err != nil {
		return err
	}
	rt.proxy = &httputil.ReverseProxy{
		Rewrite:        b.g.rewrite,
		Transport:      tr,
		ModifyResponse: b.g.modifyResponse,
		ErrorHandler:   b.g.proxyError,
		BufferPool:     proxyBuffers,
		ErrorLog:       b.g.errorLog,
	}
	return nil
}

// transport returns a transport for the upstream, shared with other routes (and with the
// previous configuration) when its settings are the same, so connections stay warm.
func (b *builder) transport(u *url.URL, up config.Upstream, timeout time.Duration) (*http.Transport, error) {
	// The key holds the files' contents, not only their names: a reload after a certificate
	// rotation must not keep the old one.
	key := strings.Join([]string{u.Scheme, u.Host, b.fileDigest(up.CA), b.fileDigest(up.ClientCert), b.fileDigest(up.ClientKey), strconv.FormatInt(int64(timeout), 10)}, "\x00")
	if tr, ok := b.transports[key]; ok {
		return tr, nil
	}
	if tr, ok := b.oldTransports[key]; ok {
		b.transports[key] = tr
		return tr, nil
	}
	var tlsCfg *tls.Config
	if u.Scheme == "https" {
		var err error
		ca := ""
		if up.CA != "" {
			ca = b.cfg.Path(up.CA)
		}
		if tlsCfg, err = web.ClientTLS(ca); err != nil {
			return nil, err
		}
		if up.ClientCert != "" {
			cert, err := tls.LoadX509KeyPair(b.cfg.Path(up.ClientCert), b.cfg.Path(up.ClientKey))
			if err != nil {
				return nil, fmt.Errorf("client certificate: %w", err)
			}
			tlsCfg.Certificates = []tls.Certificate{cert}
		}
	}
	tr := &http.Transport{
		Proxy: nil, // never an environment proxy: the upstream is what the config says
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:        tlsCfg,
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    512,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      tlsCfg != nil,
		DisableCompression:     true, // pass Accept-Encoding and bodies through untouched
		MaxResponseHeaderBytes: 1 << 20,
	}
	b.transports[key] = tr
	return tr, nil
}

// subjectAllowed reports whether a verified client certificate's leaf names an allowed
// subject, and returns the name to log.
func (rt *route) subjectAllowed(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := r.TLS.VerifiedChains[0][0]
	names := make([]string, 0, 1+len(leaf.DNSNames)+len(leaf.URIs)+len(leaf.EmailAddresses))
	if leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	names = append(names, leaf.DNSNames...)
	for _, u := range leaf.URIs {
		names = append(names, u.String())
	}
	names = append(names, leaf.EmailAddresses...)
	if len(rt.subjects) == 0 {
		if len(names) == 0 {
			return "", true
		}
		return names[0], true
	}
	for _, n := range names {
		if slices.Contains(rt.subjects, n) {
			return n, true
		}
	}
	if len(names) > 0 {
		return names[0], false
	}
	return "", false
}
