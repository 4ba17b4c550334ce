package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Validate reports every problem at once as Problems (nil when there is none). It is pure
// apart from checking that named files exist: it opens no sockets and no databases.
func (c *Config) Validate() error {
	var ps Problems
	if c.Issuer == nil && c.Gateway == nil {
		ps.add("", "nothing to run: configure issuer, gateway or both")
	}
	if c.Issuer != nil {
		c.Issuer.validate(c, &ps)
	}
	if c.Gateway != nil {
		c.Gateway.validate(c, &ps)
	}
	c.validateStorage(&ps)
	switch c.Cache.Driver {
	case "memory":
	case "redis":
		if u, err := url.Parse(c.Cache.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			ps.add("cache.url", "must be a redis:// or rediss:// URL")
		}
		if c.Cache.Timeout < time.Millisecond || c.Cache.Timeout > 10*time.Second {
			ps.add("cache.timeout", "must be between 1ms and 10s")
		}
	default:
		ps.add("cache.driver", "must be memory or redis, not %q", c.Cache.Driver)
	}
	c.validateCacheFail(&ps)
	if a := c.Admin; a != nil {
		checkListen(&ps, "admin.listen", a.Listen)
		c.checkTLS(&ps, "admin", a.TLS, true)
		if a.TLS.Cert == "" && !a.InsecureHTTP && !isLoopback(a.Listen) {
			ps.add("admin.listen", "a non-loopback admin listener needs tls or insecure_http: true")
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		ps.add("log.level", "must be debug, info, warn or error")
	}
	if !slices.Contains([]string{"json", "text"}, c.Log.Format) {
		ps.add("log.format", "must be json or text")
	}
	if len(ps) == 0 {
		return nil
	}
	return ps
}

func (c *Config) validateStorage(ps *Problems) {
	s := c.Storage
	switch s.Driver {
	case "sqlite":
		if !strings.HasPrefix(s.DSN, "file:") {
			ps.add("storage.dsn", "sqlite dsn must start with file:")
		}
	case "postgres":
		u, err := url.Parse(s.DSN)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			ps.add("storage.dsn", "postgres dsn must be a postgres:// URL")
		}
	default:
		ps.add("storage.driver", "must be sqlite or postgres, not %q", s.Driver)
	}
	if s.Schema != "" && (s.Driver != "postgres" || !schemaPattern.MatchString(s.Schema)) {
		ps.add("storage.schema", "postgres only; letters, digits and _, starting with a letter or _")
	}
	if s.QueryTimeout < 0 || s.QueryTimeout > time.Minute {
		ps.add("storage.query_timeout", "must be between 0 and 1m")
	}
	if s.MaxOpenConns < 0 || s.MaxOpenConns > 1000 {
		ps.add("storage.max_open_conns", "must be between 1 and 1000")
	}
}

// Names the issuer knows.
var (
	signingAlgorithms = []string{"ES256", "EdDSA", "PS256"}
	authMethods       = []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
	grantTypes        = []string{"client_credentials", "authorization_code", "refresh_token"}
	// builtinScopes need no entry under issuer.scopes.
	builtinScopes = []string{"openid", "profile", "email", "offline_access"}
	// reservedClaims are set by the issuer itself and cannot be configured.
	reservedClaims  = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "cnf", "typ", "auth_time", "acr", "amr", "nonce", "azp", "sid", "at_hash", "c_hash", "token_type", "active", "username"}
	clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	schemaPattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	claimPattern    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)
)

// ValidScope reports whether s is a scope-token of RFC 6749 §3.3 of sane length.
func ValidScope(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x21 || b == 0x22 || b == 0x5c || b > 0x7e {
			return false
		}
	}
	return true
}

// ValidClientID reports whether id is an acceptable client identifier.
func ValidClientID(id string) bool { return clientIDPattern.MatchString(id) }

func (is *Issuer) validate(c *Config, ps *Problems) {
	if u, err := url.Parse(is.URL); is.URL == "" || err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		ps.add("issuer.url", "must be an absolute URL without query, fragment or user info")
	} else {
		switch {
		case u.Scheme == "https":
		case u.Scheme == "http" && is.InsecureHTTP:
		case u.Scheme == "http":
			ps.add("issuer.url", "http:// needs insecure_http: true (tokens would travel in the clear)")
		default:
			ps.add("issuer.url", "scheme must be https")
		}
		if strings.HasSuffix(u.Path, "/") {
			ps.add("issuer.url", "must not end with a slash")
		}
	}
	checkListen(ps, "issuer.listen", is.Listen)
	c.checkTLS(ps, "issuer", is.TLS, is.InsecureHTTP)

	k := is.Keys
	switch {
	case strings.HasPrefix(strings.ToUpper(k.Algorithm), "HS"):
		ps.add("issuer.keys.algorithm", "%s is symmetric: anyone who can verify could forge tokens; use ES256, EdDSA or PS256", k.Algorithm)
	case !slices.Contains(signingAlgorithms, k.Algorithm):
		ps.add("issuer.keys.algorithm", "must be one of %s", strings.Join(signingAlgorithms, ", "))
	}
	if k.RotateEvery < 0 || (k.RotateEvery > 0 && k.RotateEvery < time.Hour) {
		ps.add("issuer.keys.rotate_every", "must be at least 1h (or 0 to rotate only by command)")
	}
	if k.PublishAhead < 5*time.Minute || k.PublishAhead > 7*24*time.Hour {
		ps.add("issuer.keys.publish_ahead", "must be between 5m (the JWKS cache lifetime verifiers are told) and 168h")
	}
	if k.Overlap < 0 {
		ps.add("issuer.keys.overlap", "must not be negative")
	}
	switch {
	case k.MasterKeyFile == "" && k.MasterKeyEnv == "":
		ps.add("issuer.keys", "master_key_file or master_key_env is required (it seals private keys at rest)")
	case k.MasterKeyFile != "" && k.MasterKeyEnv != "":
		ps.add("issuer.keys", "give master_key_file or master_key_env, not both")
	case k.MasterKeyFile != "":
		c.checkFile(ps, "issuer.keys.master_key_file", k.MasterKeyFile)
	case k.MasterKeyEnv != "":
		if _, ok := os.LookupEnv(k.MasterKeyEnv); !ok {
			ps.add("issuer.keys.master_key_env", "environment variable %s is not set", k.MasterKeyEnv)
		}
	}

	t := is.Tokens
	if t.AccessTTL < 10*time.Second || t.AccessTTL > 24*time.Hour {
		ps.add("issuer.tokens.access_ttl", "must be between 10s and 24h")
	}
	if t.RefreshTTL < t.AccessTTL || t.RefreshTTL > 365*24*time.Hour {
		ps.add("issuer.tokens.refresh_ttl", "must be at least access_ttl and at most 8760h")
	}
	if t.IntrospectionTTL < 10*time.Second || t.IntrospectionTTL > time.Hour {
		ps.add("issuer.tokens.introspection_ttl", "must be between 10s and 1h")
	}
	for i, a := range t.Audience {
		if a == "" || strings.ContainsAny(a, " \t\r\n") {
			ps.add(fmt.Sprintf("issuer.tokens.audience[%d]", i), "must be a non-empty string without spaces")
		}
	}

	for name, s := range is.Scopes {
		p := "issuer.scopes." + name
		if !ValidScope(name) {
			ps.add(p, "not a valid scope name (RFC 6749 §3.3)")
		}
		for j, cl := range s.Claims {
			checkClaimName(ps, fmt.Sprintf("%s.claims[%d]", p, j), cl)
		}
	}
	if is.Limits.MaxBodyBytes < 1024 || is.Limits.MaxBodyBytes > 1<<20 {
		ps.add("issuer.limits.max_body", "must be between 1KiB and 1MiB")
	}
	if is.Limits.MaxClientsPerOwner < 0 {
		ps.add("issuer.limits.max_clients_per_owner", "must not be negative")
	}
	if is.SecretCache.TTL < 0 || is.SecretCache.TTL > time.Hour {
		ps.add("issuer.secret_cache.ttl", "must be between 0 and 1h")
	}
	if is.Assertions.MaxLifetime < 10*time.Second || is.Assertions.MaxLifetime > time.Hour {
		ps.add("issuer.client_assertions.max_lifetime", "must be between 10s and 1h")
	}

	is.validateLogin(ps)
	validateRule(ps, "issuer.abuse.auth_failures", is.Abuse.AuthFailures, "block", "report", "off")

	seen := map[string]int{}
	for i, cl := range is.Clients {
		p := fmt.Sprintf("issuer.clients[%d]", i)
		if first, dup := seen[cl.ID]; dup && cl.ID != "" {
			ps.add(p+".id", "duplicate client id %q (first at clients[%d])", cl.ID, first)
		}
		seen[cl.ID] = i
		is.validateClient(ps, p, cl)
	}
}

// ValidateClient checks one client against this issuer's scopes, as loading the file would
// (portcullis clients add uses it). The error is Problems.
func (is *Issuer) ValidateClient(cl Client) error {
	var ps Problems
	is.validateClient(&ps, "client", cl)
	if len(ps) > 0 {
		return ps
	}
	return nil
}

func (is *Issuer) validateClient(ps *Problems, p string, cl Client) {
	if !ValidClientID(cl.ID) {
		ps.add(p+".id", "required: 1-128 characters of letters, digits, . _ : -")
	}
	switch {
	case cl.AuthMethod == "":
		ps.add(p+".auth_method", "required: exactly one of %s", strings.Join(authMethods, ", "))
	case !slices.Contains(authMethods, cl.AuthMethod):
		ps.add(p+".auth_method", "must be one of %s", strings.Join(authMethods, ", "))
	}
	usesSecret := cl.AuthMethod == "client_secret_basic" || cl.AuthMethod == "client_secret_post"
	switch {
	case usesSecret && cl.SecretHash == "":
		ps.add(p+".secret_hash", "required for %s (make one with portcullis hash-secret)", cl.AuthMethod)
	case usesSecret && !strings.HasPrefix(cl.SecretHash, "$hmac-sha256$") && !strings.HasPrefix(cl.SecretHash, "$argon2id$"):
		ps.add(p+".secret_hash", "must be a $hmac-sha256$ or $argon2id$ hash from portcullis hash-secret, never the secret itself")
	case !usesSecret && cl.SecretHash != "":
		ps.add(p+".secret_hash", "not allowed with %s: one authentication method per client", cl.AuthMethod)
	}
	if cl.AuthMethod == "private_key_jwt" {
		switch {
		case len(cl.JWKS) == 0 && cl.JWKSURI == "":
			ps.add(p, "private_key_jwt needs jwks or jwks_uri")
		case len(cl.JWKS) > 0 && cl.JWKSURI != "":
			ps.add(p, "give jwks or jwks_uri, not both")
		}
	} else if len(cl.JWKS) > 0 || cl.JWKSURI != "" {
		ps.add(p, "jwks and jwks_uri are only for private_key_jwt")
	}
	if cl.JWKSURI != "" {
		if u, err := url.Parse(cl.JWKSURI); err != nil || u.Scheme != "https" || u.Host == "" {
			ps.add(p+".jwks_uri", "must be an https:// URL")
		}
	}
	for j, g := range cl.GrantTypes {
		if !slices.Contains(grantTypes, g) {
			ps.add(fmt.Sprintf("%s.grant_types[%d]", p, j), "unsupported grant type %q", g)
		}
	}
	if cl.AuthMethod == "none" && slices.Contains(cl.GrantTypes, "client_credentials") {
		ps.add(p+".grant_types", "a public client (auth_method none) cannot use client_credentials")
	}
	if cl.AuthMethod == "none" && cl.Introspect {
		ps.add(p+".introspect", "a public client (auth_method none) proves nothing about itself and cannot introspect tokens")
	}
	if slices.Contains(cl.GrantTypes, "authorization_code") && len(cl.RedirectURIs) == 0 {
		ps.add(p+".redirect_uris", "required for authorization_code")
	}
	for j, r := range cl.RedirectURIs {
		checkRedirectURI(ps, fmt.Sprintf("%s.redirect_uris[%d]", p, j), r)
	}
	for j, r := range cl.PostLogoutRedirectURIs {
		checkRedirectURI(ps, fmt.Sprintf("%s.post_logout_redirect_uris[%d]", p, j), r)
	}
	for j, s := range cl.Scopes {
		if _, ok := is.Scopes[s]; !ok && !slices.Contains(builtinScopes, s) {
			ps.add(fmt.Sprintf("%s.scopes[%d]", p, j), "scope %q is not defined under issuer.scopes", s)
		}
	}
	switch cl.TokenFormat {
	case "opaque":
	case "jwt":
		if !cl.Internal {
			ps.add(p+".token_format", "jwt access tokens are only for internal: true clients; external clients get opaque tokens")
		}
	default:
		ps.add(p+".token_format", "must be opaque or jwt")
	}
	for name, v := range cl.Claims {
		checkClaimName(ps, p+".claims."+name, name)
		if err := CheckClaimValue(v); err != nil {
			ps.add(p+".claims."+name, "%v", err)
		}
	}
	for j, a := range cl.Audience {
		if a == "" || strings.ContainsAny(a, " \t\r\n") {
			ps.add(fmt.Sprintf("%s.audience[%d]", p, j), "must be a non-empty string without spaces")
		}
	}
}

// MaxClaimValue bounds a configured claim value: every token of the client carries it.
const MaxClaimValue = 1024

// CheckClaimValue reports what is wrong with a claim value a client is configured with (in
// the file or by `portcullis clients add`): tokens assert it, so it is text of at most
// MaxClaimValue bytes, without control characters (a NUL or an escape sequence has no place
// in an access token or a log line).
func CheckClaimValue(v string) error {
	switch {
	case !utf8.ValidString(v):
		return errors.New("the value is not valid UTF-8")
	case len(v) > MaxClaimValue:
		return fmt.Errorf("the value is longer than %d bytes", MaxClaimValue)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return errors.New("the value must be text without control characters")
	}
	return nil
}

func checkClaimName(ps *Problems, p, name string) {
	switch {
	case !claimPattern.MatchString(name):
		ps.add(p, "%q is not a valid claim name", name)
	case slices.Contains(reservedClaims, name):
		ps.add(p, "%q is set by the issuer itself and cannot be configured", name)
	}
}

// checkRedirectURI applies RFC 9700 §2.1: absolute, no fragment, https except loopback.
func checkRedirectURI(ps *Problems, p, r string) {
	u, err := url.Parse(r)
	if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(r, "#") {
		ps.add(p, "must be an absolute URI without fragment")
		return
	}
	if strings.ContainsAny(r, "*") {
		ps.add(p, "wildcards are not allowed: redirect URIs match exactly")
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		ps.add(p, "http is allowed only for loopback redirect URIs")
	}
	if u.Scheme == "javascript" || u.Scheme == "data" || u.Scheme == "file" {
		ps.add(p, "scheme %s is not allowed", u.Scheme)
	}
}

func checkListen(ps *Problems, p, addr string) {
	if addr == "" {
		ps.add(p, "required (host:port)")
		return
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		ps.add(p, "must be host:port")
	}
}

// checkTLS requires a certificate and key unless plain HTTP was asked for explicitly.
func (c *Config) checkTLS(ps *Problems, section string, t TLS, insecure bool) {
	if t.Cert == "" && t.Key == "" {
		if !insecure {
			ps.add(section+".tls", "cert and key are required (or insecure_http: true, never in production)")
		}
	} else {
		if t.Cert == "" || t.Key == "" {
			ps.add(section+".tls", "give both cert and key")
		}
		if t.Cert != "" {
			c.checkFile(ps, section+".tls.cert", t.Cert)
		}
		if t.Key != "" {
			c.checkFile(ps, section+".tls.key", t.Key)
		}
	}
	if t.ClientCA != "" {
		c.checkFile(ps, section+".tls.client_ca", t.ClientCA)
	}
}

func (c *Config) checkFile(ps *Problems, p, name string) {
	st, err := os.Stat(c.Path(name))
	switch {
	case err != nil:
		ps.add(p, "cannot read %s: %v", name, strippedPathErr(err))
	case st.IsDir():
		ps.add(p, "%s is a directory", name)
	}
}

func strippedPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopbackHost(host)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Warnings lists what loads but weakens security; portcullis check prints them.
func (c *Config) Warnings() []Problem {
	var ws Problems
	if is := c.Issuer; is != nil {
		if is.InsecureHTTP {
			ws.add("issuer.insecure_http", "plain HTTP: tokens and client secrets travel in the clear")
		}
		if is.Tokens.AccessTTL > time.Hour {
			ws.add("issuer.tokens.access_ttl", "%s is long for an access token (a stolen one works that long); 5m is the default", is.Tokens.AccessTTL)
		}
		if is.Tokens.RefreshTTL > 90*24*time.Hour {
			ws.add("issuer.tokens.refresh_ttl", "%s is long for a refresh token", is.Tokens.RefreshTTL)
		}
		if is.Keys.RotateEvery == 0 {
			ws.add("issuer.keys.rotate_every", "scheduled key rotation is off")
		}
		for i, cl := range is.Clients {
			p := fmt.Sprintf("issuer.clients[%d]", i)
			if strings.HasPrefix(cl.SecretHash, "$argon2id$") {
				ws.add(p+".secret_hash", "client %q uses a person-chosen secret (argon2id): slower, and weaker than a generated one; prefer portcullis clients add", cl.ID)
			}
			if cl.TokenFormat == "jwt" {
				ws.add(p+".token_format", "client %q gets readable JWT access tokens: keep it internal", cl.ID)
			}
		}
	}
	if g := c.Gateway; g != nil {
		if g.InsecureHTTP {
			ws.add("gateway.insecure_http", "plain HTTP to clients: bearer tokens travel in the clear")
		}
		g.trustedProxyWarnings(&ws)
		for i, r := range g.Routes {
			if r.Upstream.InsecureHTTP {
				ws.add(fmt.Sprintf("gateway.routes[%d].upstream.insecure_http", i), "route %q sends tokens to its upstream over plain HTTP", r.Name)
			}
			if r.Auth.Method == "public" {
				ws.add(fmt.Sprintf("gateway.routes[%d].auth", i), "route %q is public: anyone may call it", r.Name)
			}
			if r.Auth.Method == "mtls" && len(r.Auth.AllowedSubjects) == 0 {
				ws.add(fmt.Sprintf("gateway.routes[%d].auth.allowed_subjects", i), "route %q accepts every client certificate that gateway.tls.client_ca issued; list the subjects it serves", r.Name)
			}
		}
	}
	if a := c.Admin; a != nil && a.InsecureHTTP {
		ws.add("admin.insecure_http", "the admin listener is plain HTTP off loopback")
	}
	c.limitWarnings(&ws)
	return ws
}
