package config

import "time"

// Defaults that are safe: short token lifetimes, ES256, bounded caches and bodies.
const (
	DefaultAccessTTL        = 5 * time.Minute
	DefaultRefreshTTL       = 720 * time.Hour
	DefaultIntrospectionTTL = time.Minute
	DefaultRotateEvery      = 720 * time.Hour
	DefaultPublishAhead     = 15 * time.Minute
	DefaultOverlap          = 24 * time.Hour
	DefaultAssertionMaxLife = 5 * time.Minute
)

// Default fills every unset field with its default. It is a separate step from decoding so
// that `portcullis check` can show the effective config and tests can build configs in Go.
func (c *Config) Default() {
	if c.Storage.Driver == "" {
		c.Storage.Driver = "sqlite"
	}
	if c.Storage.Driver == "sqlite" && c.Storage.DSN == "" {
		c.Storage.DSN = "file:portcullis.db"
	}
	if c.Storage.QueryTimeout == 0 {
		c.Storage.QueryTimeout = 5 * time.Second
	}
	if c.Storage.MaxOpenConns == 0 {
		c.Storage.MaxOpenConns = 20
	}
	if c.Cache.Driver == "" {
		c.Cache.Driver = "memory"
	}
	if c.Cache.Prefix == "" {
		c.Cache.Prefix = "portcullis:"
	}
	if c.Cache.Timeout == 0 {
		c.Cache.Timeout = 100 * time.Millisecond
	}
	if c.Cache.Fail == "" {
		c.Cache.Fail = "closed"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Issuer != nil {
		c.Issuer.defaults(c)
	}
	if c.Gateway != nil {
		c.Gateway.defaults(c)
	}
}

// inFile reports whether the loaded file sets path, so an explicit zero keeps its meaning.
func (c *Config) inFile(path string) bool {
	_, ok := c.lines[path]
	return ok
}

func (is *Issuer) defaults(c *Config) {
	k := &is.Keys
	if k.Algorithm == "" {
		k.Algorithm = "ES256"
	}
	if k.RotateEvery == 0 && !c.inFile("issuer.keys.rotate_every") { // 0 in the file: by command only
		k.RotateEvery = DefaultRotateEvery
	}
	if k.PublishAhead == 0 {
		k.PublishAhead = DefaultPublishAhead
	}
	if k.Overlap == 0 {
		k.Overlap = DefaultOverlap
	}
	t := &is.Tokens
	if t.AccessTTL == 0 {
		t.AccessTTL = DefaultAccessTTL
	}
	if t.RefreshTTL == 0 {
		t.RefreshTTL = DefaultRefreshTTL
	}
	if t.IntrospectionTTL == 0 {
		t.IntrospectionTTL = DefaultIntrospectionTTL
	}
	if len(t.Audience) == 0 && is.URL != "" {
		t.Audience = []string{is.URL}
	}
	if is.Limits.MaxBodyBytes == 0 {
		is.Limits.MaxBodyBytes = 64 << 10
	}
	if is.SecretCache.TTL == 0 {
		is.SecretCache.TTL = 5 * time.Minute
	}
	if is.SecretCache.MaxSize == 0 {
		is.SecretCache.MaxSize = 10000
	}
	c.defaultRule("issuer.abuse.auth_failures", &is.Abuse.AuthFailures, DefaultAuthFailures)
	if is.Assertions.MaxLifetime == 0 {
		is.Assertions.MaxLifetime = DefaultAssertionMaxLife
	}
	for i := range is.Clients {
		cl := &is.Clients[i]
		if cl.TokenFormat == "" {
			cl.TokenFormat = "opaque"
		}
		if cl.GrantTypes == nil { // absent; an explicit [] means no grant at all
			cl.GrantTypes = []string{"client_credentials"}
		}
		if cl.Owner == "" {
			cl.Owner = "config"
		}
	}
}

func (g *Gateway) defaults(c *Config) {
	if g.Issuer == "" && c.Issuer != nil {
		g.Issuer = c.Issuer.URL
	}
	in := &g.Introspection
	if in.RevocationBound == 0 {
		in.RevocationBound = 5 * time.Second
	}
	if in.CacheMaxTTL == 0 {
		in.CacheMaxTTL = 5 * time.Minute
	}
	if in.NegativeTTL == 0 {
		in.NegativeTTL = 2 * time.Second
	}
	if in.CacheSize == 0 {
		in.CacheSize = 100000
	}
	l := &g.Limits
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = 32 << 10
	}
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = 1 << 20
	}
	if l.ReadHeaderTimeout == 0 {
		l.ReadHeaderTimeout = 5 * time.Second
	}
	if l.ReadTimeout == 0 {
		l.ReadTimeout = 30 * time.Second
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = 60 * time.Second
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = 120 * time.Second
	}
	if l.UpstreamTimeout == 0 {
		l.UpstreamTimeout = 30 * time.Second
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = 100
	}
	g.defaultsLimits(c)
	for i := range g.Routes {
		r := &g.Routes[i]
		if r.Auth.ScopesMode == "" {
			r.Auth.ScopesMode = "all"
		}
	}
}
