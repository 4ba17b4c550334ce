package jwtverify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// RemoteOptions tunes a RemoteJWKS. The zero value is ready to use.
type RemoteOptions struct {
	// HTTPClient fetches the JWKS. Default: timeouts of 5s, TLS 1.2 or later, at most 3
	// redirects and only to https. A client given here is used as is, except that a nil
	// CheckRedirect is replaced by that https-only policy.
	HTTPClient *http.Client
	// MinRefetchInterval: an unknown kid triggers a refetch at most once per this interval.
	// Default 10s.
	MinRefetchInterval time.Duration
	// DefaultTTL applies when the response has no usable Cache-Control max-age. Default 5m.
	DefaultTTL time.Duration
	// MinTTL and MaxTTL clamp the cache lifetime. Defaults 30s and 24h.
	MinTTL, MaxTTL time.Duration
	// MaxStale bounds how long after its expiry the last good set is still served while every
	// refresh fails. Past it, Keys fails with ErrKeysUnavailable (fail closed). Default 24h.
	MaxStale time.Duration
	// MaxResponseBytes caps the (decoded) response body. Default 1 MiB.
	MaxResponseBytes int64
	// InsecureAllowHTTP lets the URL (and redirects) use plain http. For tests only: over http
	// anyone on the path can substitute their own keys, so never set it in production.
	InsecureAllowHTTP bool
	// Logger receives fetch failures (Warn) and refreshes (Debug). Default: discard.
	Logger *slog.Logger
	// Now returns the current time; default time.Now. The refresh timer runs on real time.
	Now func() time.Time
}

// Defaults of RemoteOptions.
const (
	DefaultMinRefetchInterval = 10 * time.Second
	DefaultJWKSTTL            = 5 * time.Minute
	DefaultMinJWKSTTL         = 30 * time.Second
	DefaultMaxJWKSTTL         = 24 * time.Hour
	DefaultMaxStale           = 24 * time.Hour
	DefaultMaxJWKSBytes       = 1 << 20
	fetchTimeout              = 5 * time.Second
	maxRetryDelay             = 5 * time.Minute
)

// RemoteJWKS is a KeySource backed by a JWKS URL, cached in memory.
//
//   - The set is fetched in the background right after NewRemoteJWKS and refreshed before it
//     expires. Its lifetime is the response's Cache-Control max-age (minus Age), clamped to
//     [MinTTL, MaxTTL], or DefaultTTL without one; no-store and no-cache count as max-age=0.
//     Refreshes are conditional (If-None-Match with the last ETag).
//   - Keys is lock-free when the kid is known. An unknown kid triggers a refetch at most once
//     per MinRefetchInterval; concurrent misses share one fetch. A caller never waits for the
//     rate limit: when a refetch is not allowed and none is in flight, it gets ErrKeyNotFound at
//     once (the rate limit doubles as a negative cache).
//   - When a fetch fails (network, status, size, parse), the last good set is kept and served
//     until its expiry plus MaxStale (default 24h), with retries backing off from
//     MinRefetchInterval to 5m. After that Keys fails closed with ErrKeysUnavailable.
//   - Only https URLs, unless InsecureAllowHTTP.
//
// Call Close to stop the background refresh. The zero value is not usable.
type RemoteJWKS struct {
	url         string
	client      *http.Client
	minRefetch  time.Duration
	defaultTTL  time.Duration
	minTTL      time.Duration
	maxTTL      time.Duration
	maxStale    time.Duration
	maxBytes    int64
	allowHTTP   bool
	log         *slog.Logger
	now         func() time.Time
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	closeOnce   sync.Once
	state       atomic.Pointer[remoteState]
	mu          sync.Mutex
	flight      *fetchFlight // the fetch in progress, or nil
	lastDemand  time.Time    // start of the last refetch for an unknown kid
	lastAttempt time.Time    // start of the last fetch of any kind
	lastErr     error        // outcome of the last failed fetch, for error messages
}

var _ KeySource = (*RemoteJWKS)(nil)

// remoteState is one successfully fetched key set; replaced whole, never mutated.
type remoteState struct {
	set     *keySet
	etag    string
	fetched time.Time
	expires time.Time
}

type fetchFlight struct {
	done chan struct{}
	err  error
}

// NewRemoteJWKS returns a RemoteJWKS for url and starts its background refresh (the first fetch
// begins at once; NewRemoteJWKS itself does no I/O).
func NewRemoteJWKS(rawURL string, opts RemoteOptions) (*RemoteJWKS, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("jwtverify: jwks url: %w", err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && opts.InsecureAllowHTTP:
	case u.Scheme == "http":
		return nil, errors.New("jwtverify: jwks url must use https (InsecureAllowHTTP is for tests only)")
	default:
		return nil, fmt.Errorf("jwtverify: jwks url: unsupported scheme %q", u.Scheme)
	}
	if u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, errors.New("jwtverify: jwks url must be absolute, without userinfo or fragment")
	}
	r := &RemoteJWKS{
		url:        u.String(),
		minRefetch: orDefault(opts.MinRefetchInterval, DefaultMinRefetchInterval),
		defaultTTL: orDefault(opts.DefaultTTL, DefaultJWKSTTL),
		minTTL:     orDefault(opts.MinTTL, DefaultMinJWKSTTL),
		maxTTL:     orDefault(opts.MaxTTL, DefaultMaxJWKSTTL),
		maxStale:   orDefault(opts.MaxStale, DefaultMaxStale),
		maxBytes:   opts.MaxResponseBytes,
		allowHTTP:  opts.InsecureAllowHTTP,
		log:        opts.Logger,
		now:        opts.Now,
	}
	if r.maxBytes <= 0 {
		r.maxBytes = DefaultMaxJWKSBytes
	}
	if r.minTTL > r.maxTTL {
		return nil, fmt.Errorf("jwtverify: jwks: MinTTL %v exceeds MaxTTL %v", r.minTTL, r.maxTTL)
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("component", "jwtverify.jwks", "url", r.url)
	if r.now == nil {
		r.now = time.Now
	}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		if c.CheckRedirect == nil {
			c.CheckRedirect = r.checkRedirect
		}
		r.client = &c
	} else {
		r.client = r.defaultClient()
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.refreshLoop()
	return r, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (r *RemoteJWKS) defaultClient() *http.Client {
	dialer := &net.Dialer{Timeout: fetchTimeout}
	return &http.Client{
		Timeout:       fetchTimeout,
		CheckRedirect: r.checkRedirect,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   fetchTimeout,
			ResponseHeaderTimeout: fetchTimeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		},
	}
}

func (r *RemoteJWKS) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("too many redirects")
	}
	if req.URL.Scheme != "https" && !(req.URL.Scheme == "http" && r.allowHTTP) {
		return fmt.Errorf("redirect to %s refused: https only", req.URL.Scheme)
	}
	return nil
}

// Close stops the background refresh and waits for fetches in progress to end. Afterwards Keys
// keeps serving the last set (within its staleness bound) but never fetches again.
func (r *RemoteJWKS) Close() {
	r.closeOnce.Do(func() {
		r.mu.Lock() // startFetch checks ctx and adds to wg under mu: no fetch starts after this
		r.cancel()
		r.mu.Unlock()
		r.wg.Wait()
	})
}

// Keys returns the keys with the given kid (all keys when kid is ""), fetching the set when
// needed; see RemoteJWKS for the caching and rate-limiting rules.
func (r *RemoteJWKS) Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	now := r.now()
	st := r.state.Load()
	if r.fresh(st, now) {
		if keys := st.set.lookup(kid); len(keys) > 0 {
			return keys, nil
		}
	}
	f := r.startFetch(true, r.fresh(st, now))
	if f == nil {
		return nil, r.missError(kid)
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w: waiting for the jwks: %w", ErrKeyNotFound, ErrKeysUnavailable, ctx.Err())
	}
	if st := r.state.Load(); r.fresh(st, r.now()) {
		if keys := st.set.lookup(kid); len(keys) > 0 {
			return keys, nil
		}
	}
	return nil, r.missError(kid)
}

// fresh reports whether st may be served at now: it exists and is not stale beyond maxStale.
func (r *RemoteJWKS) fresh(st *remoteState, now time.Time) bool {
	return st != nil && now.Before(st.expires.Add(r.maxStale))
}

func (r *RemoteJWKS) missError(kid string) error {
	if !r.fresh(r.state.Load(), r.now()) {
		r.mu.Lock()
		last := r.lastErr
		r.mu.Unlock()
		if last == nil {
			last = errors.New("no key set fetched yet")
		}
		return fmt.Errorf("%w: %w: %v", ErrKeyNotFound, ErrKeysUnavailable, last)
	}
	return fmt.Errorf("%w: kid %q", ErrKeyNotFound, quoteShort(kid))
}

// startFetch joins the fetch in progress or starts one. A fetch on demand is rate-limited and
// returns nil at once when not allowed: with a servable set (an unknown kid) at most one per
// minRefetch; without one (never fetched, or stale beyond maxStale) only when no fetch at all was
// attempted in the last minRefetch, so that a dead JWKS endpoint is not hammered by requests.
func (r *RemoteJWKS) startFetch(demand, haveSet bool) *fetchFlight {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.flight != nil {
		return r.flight
	}
	if r.ctx.Err() != nil {
		return nil // closed
	}
	now := r.now()
	if demand {
		last := r.lastAttempt
		if haveSet {
			last = r.lastDemand
		}
		if !last.IsZero() && now.Sub(last) < r.minRefetch {
			return nil
		}
		if haveSet {
			r.lastDemand = now
		}
	}
	r.lastAttempt = now
	f := &fetchFlight{done: make(chan struct{})}
	r.flight = f
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.fetch()
		r.mu.Lock()
		r.flight = nil
		if err != nil {
			r.lastErr = err
		}
		r.mu.Unlock()
		f.err = err
		close(f.done)
	}()
	return f
}

// refreshLoop fetches at once, then again before each expiry, backing off after failures.
func (r *RemoteJWKS) refreshLoop() {
	defer r.wg.Done()
	failures := 0
	for {
		var err error
		if f := r.startFetch(false, false); f != nil {
			select {
			case <-f.done:
				err = f.err
			case <-r.ctx.Done():
				return
			}
		}
		var delay time.Duration
		if err != nil {
			failures++
			delay = r.minRefetch << min(failures-1, 10)
			delay = min(delay, maxRetryDelay)
		} else {
			failures = 0
			delay = r.refreshDelay(r.state.Load(), r.now())
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
			return
		}
	}
}

// refreshDelay is how long to wait before refreshing st: at three quarters of its remaining
// life, minus up to 10% jitter so that replicas do not refresh in step, and never less than 1s.
func (r *RemoteJWKS) refreshDelay(st *remoteState, now time.Time) time.Duration {
	if st == nil {
		return r.minRefetch
	}
	d := st.expires.Sub(now) * 3 / 4
	if d > 10 {
		d -= rand.N(d / 10)
	}
	return max(d, time.Second)
}

// fetch performs one (conditional) GET and installs the result.
func (r *RemoteJWKS) fetch() error {
	ctx, cancel := context.WithTimeout(r.ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	old := r.state.Load()
	if old != nil && old.etag != "" {
		req.Header.Set("If-None-Match", old.etag)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		r.log.Warn("jwks fetch failed", "err", err)
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
	}()
	now := r.now()
	ttl := r.ttl(resp.Header)
	switch {
	case resp.StatusCode == http.StatusNotModified && old != nil:
		etag := old.etag
		if e := resp.Header.Get("ETag"); e != "" {
			etag = e
		}
		r.state.Store(&remoteState{set: old.set, etag: etag, fetched: now, expires: now.Add(ttl)})
		r.log.Debug("jwks not modified", "ttl", ttl)
		return nil
	case resp.StatusCode != http.StatusOK:
		err := fmt.Errorf("jwks fetch: status %d", resp.StatusCode)
		r.log.Warn("jwks fetch failed", "err", err)
		return err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.maxBytes+1))
	if err != nil {
		r.log.Warn("jwks fetch failed", "err", err)
		return err
	}
	if int64(len(body)) > r.maxBytes {
		err := fmt.Errorf("jwks fetch: response exceeds %d bytes", r.maxBytes)
		r.log.Warn("jwks fetch failed", "err", err)
		return err
	}
	keys, skipped, err := parseJWKS(body)
	if err != nil {
		r.log.Warn("jwks rejected; keeping the previous set", "err", err)
		return err
	}
	r.state.Store(&remoteState{set: newKeySet(keys), etag: resp.Header.Get("ETag"), fetched: now, expires: now.Add(ttl)})
	r.log.Debug("jwks fetched", "keys", len(keys), "skipped", skipped, "ttl", ttl)
	return nil
}

// ttl derives the cache lifetime from Cache-Control (max-age minus Age), clamped.
func (r *RemoteJWKS) ttl(h http.Header) time.Duration {
	ttl := r.defaultTTL
	if maxAge, ok := parseMaxAge(h.Values("Cache-Control")); ok {
		ttl = maxAge
		if age, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && age > 0 {
			ttl -= time.Duration(min(age, 1<<32)) * time.Second
		}
	}
	return min(max(ttl, r.minTTL), r.maxTTL)
}

// parseMaxAge reads max-age from Cache-Control header values; no-store and no-cache count as 0.
func parseMaxAge(values []string) (time.Duration, bool) {
	var (
		maxAge time.Duration
		found  bool
	)
	for _, v := range values {
		for _, directive := range strings.Split(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(directive), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(arg), `"`), 10, 64)
				if err != nil || n < 0 {
					continue
				}
				maxAge, found = time.Duration(min(n, 1<<32))*time.Second, true
			}
		}
	}
	return maxAge, found
}

// snapshot returns the current state (tests).
func (r *RemoteJWKS) snapshot() *remoteState { return r.state.Load() }
