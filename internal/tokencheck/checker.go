package tokencheck

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/jwtverify"
)

// Config configures a Checker.
type Config struct {
	// Issuer is the issuer URL, exactly as it appears in "iss".
	Issuer string
	// HTTPClient talks to the issuer (metadata, JWKS, introspection). Default: TLS 1.2+ with
	// the system roots and a 10s timeout. Give one trusting the issuer's CA.
	HTTPClient *http.Client
	// InsecureAllowHTTP allows an http:// issuer. Only for an issuer in the same process that
	// was itself configured with insecure_http: the gateway's secret and tokens cross in the
	// clear otherwise.
	InsecureAllowHTTP bool
	// ClientID and ClientSecret are the gateway's credentials for introspection
	// (client_secret_basic). Without them Opaque always fails with ErrUnavailable.
	ClientID     string
	ClientSecret string
	// Algorithms the issuer may sign with (default ES256, EdDSA, PS256).
	Algorithms []string
	// Cache bounds the introspection cache.
	Cache CacheConfig
	// JWTCacheSize bounds each JWT verifier's cache of verified tokens (default 100000).
	JWTCacheSize int
	// Bus carries revocations (TokenRevoked) and resyncs. Nil: no feed, so cached
	// introspection results last at most Cache.RevocationBound.
	Bus events.Bus
	// Shared, if set, is a second-level introspection cache that replicas share (Redis):
	// on a local miss its answer is used if it passes every check (see SharedStore), and
	// fresh answers are stored in it. Revocations delete from it; a Resync stops trusting
	// what it held.
	Shared SharedStore
	// SharedTimeout bounds one call to Shared (default DefaultSharedTimeout). After a failed
	// call the store is skipped for a second and the issuer is asked directly.
	SharedTimeout time.Duration
	// Keys overrides the issuer's JWKS found through metadata (tests; an issuer in the same
	// process may feed its keys directly).
	Keys jwtverify.KeySource
	// Metrics, shared across Checkers of one process. Default: unregistered.
	Metrics *Metrics
	// Logger gets failures to reach the issuer; never a token. Default: discard.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// maxJWTRevocations bounds the list of revoked token hashes kept for jwt routes (about 100
// bytes each, 10 MB when full). Beyond it the oldest revocations are forgotten first: a
// revoked JWT is refused for jwtRevocationTTL or until 100 000 newer revocations arrived,
// whichever comes first.
const maxJWTRevocations = 100000

// jwtRevocationTTL is how long a revoked hash is kept for jwt routes: the longest an access
// token may live (issuer.tokens.access_ttl is at most 24h).
const jwtRevocationTTL = 24 * time.Hour

// phantomClaim is token.PhantomClaim: it marks the phantom JWT of an opaque token, which jwt
// routes refuse.
const phantomClaim = "phantom"

// Checker answers who a bearer is, for oauth routes (Opaque) and jwt routes (JWTVerifier). It
// is safe for concurrent use. Close it when done.
type Checker struct {
	issuer string
	ic     *issuerClient
	keys   jwtverify.KeySource
	algs   []string
	intro  *introspector // nil without introspection credentials
	cache  *cache
	shared *sharedCache // nil without Config.Shared
	fetch  func(context.Context, string) (Principal, bool, error)
	jwtMax int
	m      *Metrics
	log    *slog.Logger
	now    func() time.Time
	unsub  func()

	// revoked holds hashes of revoked tokens, for jwt routes: a JWT access token is
	// self-contained, so without this list it would work until exp after a revocation. It
	// keeps the revocations of the last jwtRevocationTTL, at most revokedMax of them; order
	// lists them oldest first, so expired ones and then the oldest leave first, in O(1).
	revokedMu  sync.Mutex
	revoked    map[tokenKey]int64 // hash → when to forget it (unix ns)
	order      []revocation       // order[head:] is the list, oldest first
	head       int
	nRevoked   atomic.Int64
	revokedMax int
}

// revocation is one entry of Checker.order.
type revocation struct {
	k     tokenKey
	until int64
}

// New builds a Checker. It does no I/O: the issuer's metadata and keys are fetched on first
// use and retried while they fail, so the gateway can start before the issuer answers.
func New(cfg Config) (*Checker, error) {
	u, err := url.Parse(cfg.Issuer)
	switch {
	case cfg.Issuer == "" || err != nil || u.Host == "":
		return nil, errors.New("tokencheck: issuer must be an absolute URL")
	case u.Scheme == "http" && !cfg.InsecureAllowHTTP:
		return nil, errors.New("tokencheck: an http:// issuer needs InsecureAllowHTTP")
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, errors.New("tokencheck: issuer scheme must be https")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = discardMetrics()
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"ES256", "EdDSA", "PS256"}
	}
	if cfg.JWTCacheSize <= 0 {
		cfg.JWTCacheSize = 100000
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true},
		}
	}
	// The issuer is spoken to directly: a redirect (with a token in the body, credentials in
	// the header) is never followed.
	noRedirect := *client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	client = &noRedirect
	log := cfg.Logger.With("component", "tokencheck")
	c := &Checker{
		issuer:     cfg.Issuer, // issuer identifiers compare exactly (RFC 8414 §3.3)
		algs:       cfg.Algorithms,
		jwtMax:     cfg.JWTCacheSize,
		m:          cfg.Metrics,
		log:        log,
		now:        cfg.Now,
		revoked:    map[tokenKey]int64{},
		revokedMax: maxJWTRevocations,
	}
	c.ic = &issuerClient{issuer: cfg.Issuer, client: client, allowHTTP: cfg.InsecureAllowHTTP, log: log}
	c.keys = cfg.Keys
	if c.keys == nil {
		c.keys = c.ic
	}
	if cfg.ClientID != "" {
		if cfg.ClientSecret == "" {
			return nil, errors.New("tokencheck: introspection needs the client secret")
		}
		c.intro, err = newIntrospector(c.ic, c.keys, cfg.ClientID, cfg.ClientSecret, cfg.Algorithms, c.m, c.now, log)
		if err != nil {
			return nil, fmt.Errorf("tokencheck: %w", err)
		}
	}
	c.cache = newCache(cfg.Cache, cfg.Bus, cfg.Now, c.m)
	if c.intro != nil {
		c.fetch = c.intro.introspect
		if cfg.Shared != nil {
			c.shared = newSharedCache(cfg.Shared, cfg.Cache, cfg.SharedTimeout, c.intro, c.cache.live, c.jwtRevoked, c.m, log, cfg.Now)
			c.fetch = c.shared.fetch
		}
	}
	if cfg.Bus != nil {
		c.unsub = cfg.Bus.Subscribe(c.onEvent)
	}
	return c, nil
}

// onEvent applies revocation-feed events. It must not block: the Memory bus delivers
// synchronously from the revoking request.
func (c *Checker) onEvent(e events.Event) {
	switch e.Kind {
	case events.TokenRevoked:
		c.denyJWT(e.TokenHash) // first: from now on the shared cache is not consulted for it
		c.cache.revoke(e.TokenHash)
		if c.shared != nil {
			c.shared.revoke(e.TokenHash)
		}
	case events.Resync:
		if c.shared != nil {
			c.shared.resync()
		}
		c.cache.flush()
	}
}

// denyJWT adds a revoked hash to the list jwt routes check. Every entry lives
// jwtRevocationTTL, so the list is also in expiry order: expired entries leave from its
// front as new ones come, and when it holds revokedMax live ones the oldest leaves.
func (c *Checker) denyJWT(hash string) {
	k, ok := decodeHash(hash)
	if !ok {
		return
	}
	now := c.now().UnixNano()
	c.revokedMu.Lock()
	defer c.revokedMu.Unlock()
	for c.head < len(c.order) {
		first := c.order[c.head]
		if now < first.until && len(c.revoked) < c.revokedMax {
			break
		}
		if c.revoked[first.k] == first.until { // not renewed by a later revocation
			delete(c.revoked, first.k)
		}
		c.order[c.head] = revocation{}
		c.head++
	}
	if c.head > 0 && c.head >= len(c.order)/2 { // reuse the front of the array
		n := copy(c.order, c.order[c.head:])
		clear(c.order[n:])
		c.order, c.head = c.order[:n], 0
	}
	until := now + int64(jwtRevocationTTL)
	c.revoked[k] = until
	c.order = append(c.order, revocation{k: k, until: until})
	c.nRevoked.Store(int64(len(c.revoked)))
}

// decodeHash reads a token hash (events.TokenHash form).
func decodeHash(hash string) (tokenKey, bool) {
	var k tokenKey
	if len(hash) != 43 {
		return k, false
	}
	n, err := base64.RawURLEncoding.Decode(k[:], []byte(hash))
	return k, err == nil && n == len(k)
}

// jwtRevoked reports whether token was revoked. It costs nothing while no token was.
func (c *Checker) jwtRevoked(token string) bool {
	if c.nRevoked.Load() == 0 {
		return false
	}
	return c.keyRevoked(hashToken(token))
}

// hashRevoked reports whether the token with this hash (events.TokenHash form; a phantom
// JWT's jti) was revoked. Anything else is not a hash and was not.
func (c *Checker) hashRevoked(hash string) bool {
	if c.nRevoked.Load() == 0 {
		return false
	}
	k, ok := decodeHash(hash)
	return ok && c.keyRevoked(k)
}

func (c *Checker) keyRevoked(k tokenKey) bool {
	c.revokedMu.Lock()
	until, ok := c.revoked[k]
	c.revokedMu.Unlock()
	return ok && c.now().UnixNano() < until
}

// Opaque returns the principal of an opaque access token, from the cache or by introspection
// at the issuer. Errors: ErrInvalidToken (401), ErrUnavailable (503), or the context's error.
func (c *Checker) Opaque(ctx context.Context, token string) (Principal, error) {
	if c.intro == nil {
		return Principal{}, fmt.Errorf("%w: no introspection credentials configured", ErrUnavailable)
	}
	if token == "" || len(token) > MaxOpaqueTokenBytes {
		return Principal{}, ErrInvalidToken
	}
	return c.cache.get(ctx, token, c.fetch)
}

// Metadata returns the issuer's metadata, fetching it if needed (readiness checks).
func (c *Checker) Metadata(ctx context.Context) (*Metadata, error) {
	return c.ic.metadata(ctx)
}

// Close stops the event subscription and the JWKS refresh.
func (c *Checker) Close() {
	if c.unsub != nil {
		c.unsub()
	}
	if c.shared != nil {
		c.shared.close()
	}
	c.ic.close()
}

// JWTVerifier validates at+jwt access tokens for routes that share one audience list.
type JWTVerifier struct {
	c *Checker
	v *jwtverify.Verifier
}

// NewJWTVerifier returns a verifier requiring one of audiences. Verified tokens are cached by
// hash until their exp (bounded by the cache size).
func (c *Checker) NewJWTVerifier(audiences []string) (*JWTVerifier, error) {
	v, err := jwtverify.New(jwtverify.Config{
		Issuer:         c.issuer,
		Audiences:      audiences,
		Algorithms:     c.algs,
		Types:          []string{jwtverify.DefaultType},
		Keys:           c.keys,
		RequiredClaims: []string{"sub", "client_id", "iat", "jti"},
		CacheSize:      c.jwtMax,
		CacheTTL:       24 * time.Hour, // an entry still ends at the token's exp
		Now:            c.now,
	})
	if err != nil {
		return nil, fmt.Errorf("tokencheck: %w", err)
	}
	return &JWTVerifier{c: c, v: v}, nil
}

// Verify checks token. Errors: ErrInvalidToken (401) or ErrUnavailable (the issuer's keys
// could not be fetched: 503).
func (j *JWTVerifier) Verify(ctx context.Context, token string) (Principal, error) {
	claims, err := j.v.Verify(ctx, token)
	if err != nil {
		if errors.Is(err, jwtverify.ErrKeysUnavailable) {
			j.c.m.jwtUnavailable.Inc()
			return Principal{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		j.c.m.jwtInvalid.Inc()
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if _, ok := claims.Raw[phantomClaim]; ok {
		// The JWT form of an opaque token, meant for an oauth route's upstream: it leaked.
		j.c.m.jwtInvalid.Inc()
		return Principal{}, fmt.Errorf("%w: a phantom token is not an access token", ErrInvalidToken)
	}
	// A revocation names a token by its hash; a JWT's jti may be such a hash too.
	if j.c.jwtRevoked(token) || j.c.hashRevoked(claims.ID) {
		j.c.m.jwtInvalid.Inc()
		return Principal{}, fmt.Errorf("%w: revoked", ErrInvalidToken)
	}
	j.c.m.jwtOK.Inc()
	return Principal{Claims: claims, Token: token}, nil
}
