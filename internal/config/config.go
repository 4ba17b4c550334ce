package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole portcullis.yaml. A nil section means that role does not run.
type Config struct {
	Issuer  *Issuer  `yaml:"issuer"`
	Gateway *Gateway `yaml:"gateway"`
	Storage Storage  `yaml:"storage"`
	Cache   Cache    `yaml:"cache"`
	Admin   *Admin   `yaml:"admin"`
	Log     Log      `yaml:"log"`

	// Dir is the directory relative paths in the file are resolved against (not in YAML).
	Dir string `yaml:"-"`

	// lines maps each path the loaded file sets to its line; Default uses it to tell an
	// explicit zero (rotate_every: 0 turns scheduled rotation off) from an absent key.
	lines map[string]int
}

// Issuer configures the central OAuth server.
type Issuer struct {
	URL    string `yaml:"url"`    // the issuer identifier, https://host[:port][/path]
	Listen string `yaml:"listen"` // host:port
	TLS    TLS    `yaml:"tls"`
	// InsecureHTTP serves plain HTTP. Never in production: tokens and secrets cross the wire
	// in the clear. portcullis check reports it.
	InsecureHTTP bool              `yaml:"insecure_http"`
	Keys         Keys              `yaml:"keys"`
	Tokens       Tokens            `yaml:"tokens"`
	Scopes       map[string]Scope  `yaml:"scopes"`
	Clients      []Client          `yaml:"clients"`
	Limits       IssuerLimits      `yaml:"limits"`
	SecretCache  SecretCache       `yaml:"secret_cache"`
	Assertions   AssertionSettings `yaml:"client_assertions"`
	// Login configures user sign-in (authorization endpoint, sessions, throttling).
	Login Login `yaml:"login"`
	// Abuse configures the detection of client-authentication failures.
	Abuse IssuerAbuse `yaml:"abuse"`
}

// TLS names a certificate and key in PEM files.
type TLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"` // CA for client certificates (mTLS), optional
}

// Keys configures signing keys.
type Keys struct {
	Algorithm     string        `yaml:"algorithm"`       // ES256 (default) | EdDSA | PS256
	RotateEvery   time.Duration `yaml:"rotate_every"`    // scheduled rotation; 0 disables it
	PublishAhead  time.Duration `yaml:"publish_ahead"`   // a new key is in the JWKS this long before it signs
	Overlap       time.Duration `yaml:"overlap"`         // an old key stays published this long after its last token expired
	MasterKeyFile string        `yaml:"master_key_file"` // 32 random bytes, base64; seals private keys and derives the secret pepper
	MasterKeyEnv  string        `yaml:"master_key_env"`  // or the name of an environment variable holding them
}

// Tokens configures lifetimes and audiences.
type Tokens struct {
	AccessTTL  time.Duration `yaml:"access_ttl"`  // default 5m
	RefreshTTL time.Duration `yaml:"refresh_ttl"` // default 720h
	Audience   []string      `yaml:"audience"`    // default aud of access tokens; default: the issuer URL
	// IntrospectionTTL is the lifetime of a signed (RFC 9701) introspection response.
	IntrospectionTTL time.Duration `yaml:"introspection_ttl"`
}

// Scope describes one scope: its plain-words description and the claims a token carrying it
// asserts (values come from the client's or user's claims).
type Scope struct {
	Description string   `yaml:"description"`
	Claims      []string `yaml:"claims"`
}

// Client is a client defined in the file. Secrets are given only as hashes.
type Client struct {
	ID           string            `yaml:"id"`
	Owner        string            `yaml:"owner"`
	SecretHash   string            `yaml:"secret_hash"`
	AuthMethod   string            `yaml:"auth_method"`
	JWKS         JSONValue         `yaml:"jwks"`
	JWKSURI      string            `yaml:"jwks_uri"`
	GrantTypes   []string          `yaml:"grant_types"`
	Scopes       []string          `yaml:"scopes"`
	Audience     []string          `yaml:"audience"`
	TokenFormat  string            `yaml:"token_format"` // opaque (default) | jwt (internal clients only)
	Internal     bool              `yaml:"internal"`
	Introspect   bool              `yaml:"introspect"` // may introspect any token (resource servers, the gateway)
	Claims       map[string]string `yaml:"claims"`
	RedirectURIs []string          `yaml:"redirect_uris"`
	// PostLogoutRedirectURIs are where RP-initiated logout may send the browser back to
	// (exact match). redirect_uris never serve for that.
	PostLogoutRedirectURIs []string `yaml:"post_logout_redirect_uris"`
	RequirePAR             bool     `yaml:"require_par"`
}

// IssuerLimits bounds requests.
type IssuerLimits struct {
	MaxBodyBytes       ByteSize `yaml:"max_body"`              // default 64KiB
	MaxClientsPerOwner int      `yaml:"max_clients_per_owner"` // 0 = unlimited
}

// SecretCache bounds the in-memory cache of successful argon2id secret checks.
type SecretCache struct {
	TTL     time.Duration `yaml:"ttl"`      // default 5m; 0 after defaults means off
	MaxSize int           `yaml:"max_size"` // default 10000
}

// AssertionSettings bounds private_key_jwt client assertions.
type AssertionSettings struct {
	MaxLifetime time.Duration `yaml:"max_lifetime"` // exp-iat at most this; default 5m
}

// Storage selects the durable store.
type Storage struct {
	Driver       string        `yaml:"driver"` // sqlite (default) | postgres
	DSN          string        `yaml:"dsn"`
	Schema       string        `yaml:"schema"`       // postgres: the schema to use (created if missing); default: the server's search_path
	AutoMigrate  bool          `yaml:"auto_migrate"` // postgres: run migrations at start-up (sqlite always does)
	QueryTimeout time.Duration `yaml:"query_timeout"`
	MaxOpenConns int           `yaml:"max_open_conns"`
}

// Cache selects where shared short-lived state lives.
type Cache struct {
	Driver string `yaml:"driver"` // memory (default) | redis
	URL    string `yaml:"url"`    // redis://host:port/db
	Prefix string `yaml:"prefix"` // key prefix, default "portcullis:"
	// Timeout bounds one Redis call (default 100ms); past it the feature's documented
	// fallback applies (docs/scale-out.md).
	Timeout time.Duration `yaml:"timeout"`
	// Fail is what rate limits do while Redis is unreachable: closed (default: refuse with
	// 503) or local (each process limits on its own until Redis is back).
	Fail string `yaml:"fail"`
}

// Admin is the operator listener: metrics, liveness, readiness.
type Admin struct {
	Listen string `yaml:"listen"`
	TLS    TLS    `yaml:"tls"`
	// InsecureHTTP allows plain HTTP on a non-loopback address. Loopback may always be plain.
	InsecureHTTP bool `yaml:"insecure_http"`
}

// Log configures the process log.
type Log struct {
	Level  string `yaml:"level"`  // debug | info (default) | warn | error
	Format string `yaml:"format"` // json (default) | text
}

// SlogLevel maps Level to slog.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// JSONValue holds an inline YAML value (such as a JWKS) as JSON.
type JSONValue []byte

// UnmarshalYAML converts the node to JSON.
func (j *JSONValue) UnmarshalYAML(n *yaml.Node) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("line %d: not representable as JSON: %v", n.Line, err)
	}
	*j = b
	return nil
}

// Load reads, decodes, defaults and validates the file. The error is Problems when the file
// is wrong, listing everything wrong with its line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, filepath.Dir(abs), osLookup)
}

// Parse is Load on bytes, with dir for relative paths and lookup for ${ENV}.
func Parse(data []byte, dir string, lookup func(string) (string, bool)) (*Config, error) {
	c := &Config{}
	lines, err := decode(data, lookup, c)
	var ps Problems
	if err != nil {
		if !errors.As(err, &ps) {
			return nil, err
		}
		if lines == nil || hasDecodeFailure(ps) {
			return nil, ps // the document did not decode: validating it would only add noise
		}
	}
	c.Dir = dir
	c.lines = lines
	c.Default()
	if err := c.Validate(); err != nil {
		var vs Problems
		if !errors.As(err, &vs) {
			return nil, err
		}
		ps = append(ps, vs...)
	}
	if len(ps) > 0 {
		ps.locate(lines)
		return nil, ps
	}
	return c, nil
}

// hasDecodeFailure reports whether a problem came from decoding itself (it has no path).
func hasDecodeFailure(ps Problems) bool {
	for _, p := range ps {
		if p.Path == "" {
			return true
		}
	}
	return false
}

// Path resolves a path from the file against the file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.Dir == "" {
		return p
	}
	return filepath.Join(c.Dir, p)
}
