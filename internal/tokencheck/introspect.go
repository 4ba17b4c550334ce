package tokencheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/jwtverify"
)

// Limits of what the gateway reads from the issuer.
const (
	maxMetadataBytes      = 64 << 10
	maxIntrospectionBytes = 64 << 10
	maxPhantomBytes       = 16 << 10
	// MaxOpaqueTokenBytes bounds a bearer token sent for introspection.
	MaxOpaqueTokenBytes = 4096
	// discoveryRetry is the least time between two attempts to read the metadata after one
	// failed, so an issuer that is down is not hammered by every request.
	discoveryRetry = time.Second
	// introspectionType is the media type and JWT "typ" of RFC 9701 responses.
	introspectionType = "token-introspection+jwt"
)

// MetadataPath is where the issuer publishes its RFC 8414 metadata, relative to its URL.
const MetadataPath = "/.well-known/oauth-authorization-server"

// Metadata is what the gateway reads of the issuer's authorization server metadata.
type Metadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
}

// issuerClient finds the issuer's endpoints through its metadata, lazily and with a retry
// limit, and is the KeySource for everything the issuer signs (its JWKS, cached by
// jwtverify.RemoteJWKS). It lets the gateway start before the issuer answers.
type issuerClient struct {
	issuer    string
	client    *http.Client
	allowHTTP bool
	log       *slog.Logger

	md   atomic.Pointer[Metadata]
	jwks atomic.Pointer[jwtverify.RemoteJWKS]

	mu       sync.Mutex // serialises discovery
	lastTry  time.Time
	lastErr  error
	isClosed bool
}

var _ jwtverify.KeySource = (*issuerClient)(nil)

func (ic *issuerClient) metadata(ctx context.Context) (*Metadata, error) {
	if md := ic.md.Load(); md != nil {
		return md, nil
	}
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if md := ic.md.Load(); md != nil {
		return md, nil
	}
	if ic.isClosed {
		return nil, fmt.Errorf("%w: closed", ErrUnavailable)
	}
	if ic.lastErr != nil && time.Since(ic.lastTry) < discoveryRetry {
		return nil, ic.lastErr
	}
	ic.lastTry = time.Now()
	md, err := ic.discover(ctx)
	if err != nil && ctx.Err() != nil {
		// The caller gave up (a client that disconnected): that says nothing about the
		// issuer, so the next caller tries at once rather than inheriting a failure.
		ic.lastTry = time.Time{}
		return nil, fmt.Errorf("%w: metadata: %w", ErrUnavailable, err)
	}
	if err != nil {
		ic.lastErr = fmt.Errorf("%w: metadata: %w", ErrUnavailable, err)
		ic.log.Warn("issuer metadata unavailable", "issuer", ic.issuer, "error", err)
		return nil, ic.lastErr
	}
	jwks, err := jwtverify.NewRemoteJWKS(md.JWKSURI, jwtverify.RemoteOptions{
		HTTPClient:        ic.client,
		InsecureAllowHTTP: ic.allowHTTP,
		Logger:            ic.log,
	})
	if err != nil {
		ic.lastErr = fmt.Errorf("%w: jwks: %w", ErrUnavailable, err)
		return nil, ic.lastErr
	}
	ic.lastErr = nil
	ic.jwks.Store(jwks)
	ic.md.Store(md)
	return md, nil
}

func (ic *issuerClient) discover(ctx context.Context) (*Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(ic.issuer, "/")+MetadataPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ic.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxMetadataBytes {
		return nil, errors.New("metadata document too large")
	}
	var md Metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	// RFC 8414 §3.3: the issuer in the document must be the one we asked.
	if md.Issuer != ic.issuer {
		return nil, fmt.Errorf("metadata names issuer %q, want %q", md.Issuer, ic.issuer)
	}
	for name, v := range map[string]string{"jwks_uri": md.JWKSURI, "introspection_endpoint": md.IntrospectionEndpoint} {
		u, err := url.Parse(v)
		if v == "" || err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && ic.allowHTTP)) {
			return nil, fmt.Errorf("metadata %s %q is not an https URL", name, v)
		}
	}
	return &md, nil
}

// Keys implements jwtverify.KeySource with the issuer's JWKS.
func (ic *issuerClient) Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	jwks := ic.jwks.Load()
	if jwks == nil {
		if _, err := ic.metadata(ctx); err != nil {
			return nil, err
		}
		jwks = ic.jwks.Load()
	}
	return jwks.Keys(ctx, kid)
}

func (ic *issuerClient) close() {
	ic.mu.Lock()
	ic.isClosed = true
	ic.mu.Unlock()
	if j := ic.jwks.Load(); j != nil {
		j.Close()
	}
}

// introspector asks the issuer about opaque tokens (RFC 7662 with RFC 9701 signed answers).
type introspector struct {
	ic       *issuerClient
	clientID string
	auth     string // the Basic authorization header value
	verifier *jwtverify.Verifier
	m        *Metrics
	now      func() time.Time
	log      *slog.Logger
}

func newIntrospector(ic *issuerClient, keys jwtverify.KeySource, clientID, secret string, algs []string, m *Metrics, now func() time.Time, log *slog.Logger) (*introspector, error) {
	v, err := jwtverify.New(jwtverify.Config{
		Issuer:         ic.issuer,
		Audiences:      []string{clientID},
		Algorithms:     algs,
		Types:          []string{introspectionType},
		Keys:           keys,
		RequiredClaims: []string{"iat"},
		MaxTokenBytes:  maxIntrospectionBytes,
		Now:            now,
	})
	if err != nil {
		return nil, err
	}
	// RFC 6749 §2.3.1: form-encode the credentials before Basic encoding.
	req, _ := http.NewRequest(http.MethodPost, "/", nil) // a fixed, valid request cannot fail
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	return &introspector{
		ic: ic, clientID: clientID, auth: req.Header.Get("Authorization"),
		verifier: v, m: m, now: now, log: log,
	}, nil
}

// introspect returns the principal of an active token; active is false for an inactive one.
// Every failure to get a verified answer is ErrUnavailable.
func (in *introspector) introspect(ctx context.Context, token string) (Principal, bool, error) {
	p, active, _, _, err := in.introspectAnswer(ctx, token)
	return p, active, err
}

// introspectAnswer is introspect that also returns the issuer-signed answer and its verified
// claims, for the shared cache.
func (in *introspector) introspectAnswer(ctx context.Context, token string) (p Principal, active bool, answer string, claims *jwtverify.Claims, err error) {
	start := time.Now()
	defer func() {
		in.m.latency.Observe(time.Since(start).Seconds())
		switch {
		case err != nil:
			in.m.failed.Inc()
		case active:
			in.m.active.Inc()
		default:
			in.m.inactive.Inc()
		}
	}()
	answer, err = in.fetch(ctx, token)
	if err != nil {
		return Principal{}, false, "", nil, err
	}
	claims, err = in.verifier.Verify(ctx, answer)
	if err != nil {
		return Principal{}, false, "", nil, fmt.Errorf("%w: introspection response does not verify: %w", ErrUnavailable, err)
	}
	p, active, err = in.fromClaims(claims)
	return p, active, answer, claims, err
}

// fetch asks the issuer about token and returns its signed answer, unverified.
func (in *introspector) fetch(ctx context.Context, token string) (string, error) {
	md, err := in.ic.metadata(ctx)
	if err != nil {
		return "", err
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.IntrospectionEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header.Set("Authorization", in.auth)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/"+introspectionType)
	resp, err := in.ic.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: introspection request: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	if err != nil {
		return "", fmt.Errorf("%w: introspection response: %w", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%w: introspection status %d", ErrUnavailable, resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/"+introspectionType {
		return "", fmt.Errorf("%w: introspection content type %q", ErrUnavailable, resp.Header.Get("Content-Type"))
	}
	if len(body) > maxIntrospectionBytes {
		return "", fmt.Errorf("%w: introspection response too large", ErrUnavailable)
	}
	return strings.TrimSpace(string(body)), nil
}

// fromClaims reads the verified claims of a signed introspection answer.
func (in *introspector) fromClaims(claims *jwtverify.Claims) (Principal, bool, error) {
	ti, ok := claims.Raw["token_introspection"].(map[string]any)
	if !ok {
		return Principal{}, false, fmt.Errorf("%w: introspection response without token_introspection", ErrUnavailable)
	}
	return in.principal(ti)
}

// principal reads an RFC 7662 answer. An active answer must carry exp in the future and a
// phantom JWT; one that does not is treated as a broken issuer (ErrUnavailable), not as a
// pass.
func (in *introspector) principal(ti map[string]any) (Principal, bool, error) {
	if active, _ := ti["active"].(bool); !active {
		return Principal{}, false, nil
	}
	bad := func(format string, args ...any) (Principal, bool, error) {
		return Principal{}, false, fmt.Errorf("%w: introspection answer: "+format, append([]any{ErrUnavailable}, args...)...)
	}
	phantom, _ := ti["phantom_jwt"].(string)
	if phantom == "" || len(phantom) > maxPhantomBytes || strings.Count(phantom, ".") != 2 {
		return bad("active without a phantom_jwt")
	}
	c := &jwtverify.Claims{Issuer: in.ic.issuer, Type: "at+jwt", Raw: make(map[string]any, len(ti))}
	for k, v := range ti {
		switch k {
		case "active", "phantom_jwt":
		default:
			c.Raw[k] = v
		}
	}
	if iss, ok := ti["iss"]; ok && iss != in.ic.issuer {
		return bad("iss %v", iss)
	}
	str := func(name string) (string, bool) {
		switch v := ti[name].(type) {
		case nil:
			return "", true
		case string:
			return v, true
		}
		return "", false
	}
	var ok1, ok2, ok3, ok4 bool
	var scope string
	c.Subject, ok1 = str("sub")
	c.ClientID, ok2 = str("client_id")
	c.ID, ok3 = str("jti")
	scope, ok4 = str("scope")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return bad("a string claim of the wrong type")
	}
	c.Scopes = strings.Fields(scope)
	switch aud := ti["aud"].(type) {
	case nil:
	case string:
		c.Audience = []string{aud}
	case []any:
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return bad("aud holds a non-string")
			}
			c.Audience = append(c.Audience, s)
		}
	default:
		return bad("aud of the wrong type")
	}
	exp, ok := numericDate(ti["exp"])
	if !ok {
		return bad("active without a valid exp")
	}
	c.Expiry = exp
	if iat, ok := numericDate(ti["iat"]); ok {
		c.IssuedAt = iat
	}
	if !in.now().Before(exp) {
		return Principal{}, false, nil // expired between issue and answer: inactive
	}
	return Principal{Claims: c, Token: phantom, authorization: "Bearer " + phantom}, true, nil
}

// numericDate reads a JSON number (json.Number, as jwtverify decodes) as seconds since the
// epoch.
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	if i, err := n.Int64(); err == nil {
		if i <= 0 || i > 253402300799 {
			return time.Time{}, false
		}
		return time.Unix(i, 0), true
	}
	f, err := n.Float64()
	if err != nil || f <= 0 || f > 253402300799 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}
