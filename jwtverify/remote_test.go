package jwtverify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// jwksServer is an httptest TLS server publishing a JWKS it can change.
type jwksServer struct {
	*httptest.Server
	mu           sync.Mutex
	body         []byte
	status       int
	cacheControl string
	etag         string
	delay        time.Duration
	hits         atomic.Int64
	notModified  atomic.Int64
}

func newJWKSServer(t testing.TB, keys ...*testKey) *jwksServer {
	s := &jwksServer{body: jwksJSON(t, keys...), status: http.StatusOK}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	body, status, cc, etag, delay := s.body, s.status, s.cacheControl, s.etag, s.delay
	s.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	if etag != "" {
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			s.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.WriteHeader(status)
	w.Write(body)
}

func (s *jwksServer) set(change func(s *jwksServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(s)
}

func newRemote(t testing.TB, srv *jwksServer, opts RemoteOptions) *RemoteJWKS {
	t.Helper()
	opts.HTTPClient = srv.Client()
	r, err := NewRemoteJWKS(srv.URL+"/jwks", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestRemoteJWKSFetchesOnceAndCaches(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	srv := newJWKSServer(t, k)
	r := newRemote(t, srv, RemoteOptions{})
	for range 5 {
		keys, err := r.Keys(t.Context(), "k1")
		if err != nil || len(keys) != 1 {
			t.Fatalf("Keys = %d keys, %v", len(keys), err)
		}
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("server hits = %d, want 1", got)
	}
}

// TestRemoteJWKSUnknownKidStorm sends 1000 concurrent verifications of tokens with unknown kids
// and counts the JWKS server's hits: at most one refetch per MinRefetchInterval, and no caller
// is held back by the rate limit.
func TestRemoteJWKSUnknownKidStorm(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	srv := newJWKSServer(t, k)
	srv.set(func(s *jwksServer) { s.delay = 20 * time.Millisecond }) // so that misses overlap a fetch
	clk := newClock(testNow)
	r := newRemote(t, srv, RemoteOptions{Now: clk.Now, MinRefetchInterval: 10 * time.Second})
	v := newTestVerifier(t, r, func(c *Config) { c.Now = clk.Now })
	if _, err := v.Verify(t.Context(), k.mint(t, k.defaultHeader(), baseClaims(testNow))); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("hits after warm-up = %d, want 1", got)
	}
	var tokens []string
	for i := range 8 {
		u := newTestKey(t, "ES256", "unknown-"+string(rune('a'+i)))
		tokens = append(tokens, u.mint(t, u.defaultHeader(), baseClaims(testNow)))
	}
	storm := func() (notFound int64) {
		var wg sync.WaitGroup
		var count atomic.Int64
		for i := range 1000 {
			wg.Go(func() {
				_, err := v.Verify(context.Background(), tokens[i%len(tokens)])
				if !errors.Is(err, ErrKeyNotFound) {
					t.Errorf("unknown kid: error %v, want ErrKeyNotFound", err)
				}
				if errors.Is(err, ErrKeysUnavailable) {
					t.Errorf("unknown kid with a fresh set reported as unavailable: %v", err)
				}
				count.Add(1)
			})
		}
		wg.Wait()
		return count.Load()
	}
	if n := storm(); n != 1000 {
		t.Fatalf("storm finished %d verifications", n)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("hits after the first storm = %d, want 2 (warm-up + one refetch)", got)
	}
	storm()
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("hits after a second storm in the same interval = %d, want still 2", got)
	}
	clk.Advance(10 * time.Second)
	storm()
	if got := srv.hits.Load(); got != 3 {
		t.Errorf("hits after a storm in the next interval = %d, want 3", got)
	}
}

func TestRemoteJWKSKeyRotation(t *testing.T) {
	oldKey := newTestKey(t, "ES256", "2025-01")
	newKey := newTestKey(t, "EdDSA", "2025-02")
	srv := newJWKSServer(t, oldKey)
	clk := newClock(testNow)
	r := newRemote(t, srv, RemoteOptions{Now: clk.Now})
	v := newTestVerifier(t, r, func(c *Config) { c.Now = clk.Now })
	claims := baseClaims(testNow)
	if _, err := v.Verify(t.Context(), oldKey.mint(t, oldKey.defaultHeader(), claims)); err != nil {
		t.Fatalf("old key: %v", err)
	}

	srv.set(func(s *jwksServer) { s.body = jwksJSON(t, oldKey, newKey) }) // the issuer rotates
	newToken := newKey.mint(t, newKey.defaultHeader(), claims)
	if _, err := v.Verify(t.Context(), newToken); err != nil {
		t.Fatalf("new kid after rotation: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("hits = %d, want 2 (initial + one refetch for the new kid)", got)
	}
	for range 3 {
		if _, err := v.Verify(t.Context(), newToken); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(t.Context(), oldKey.mint(t, oldKey.defaultHeader(), claims)); err != nil {
		t.Errorf("old key during the overlap: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("hits = %d, want still 2", got)
	}
}

func TestRemoteJWKSRotationWaitsForTheRateLimit(t *testing.T) {
	k1 := newTestKey(t, "ES256", "k1")
	k2 := newTestKey(t, "ES256", "k2")
	srv := newJWKSServer(t, k1)
	clk := newClock(testNow)
	r := newRemote(t, srv, RemoteOptions{Now: clk.Now})
	v := newTestVerifier(t, r, func(c *Config) { c.Now = clk.Now })
	if _, err := r.Keys(t.Context(), "k1"); err != nil { // initial fetch
		t.Fatal(err)
	}
	tok2 := k2.mint(t, k2.defaultHeader(), baseClaims(testNow))
	if _, err := v.Verify(t.Context(), tok2); !errors.Is(err, ErrKeyNotFound) { // uses this interval's refetch
		t.Fatalf("k2 before rotation: %v", err)
	}
	srv.set(func(s *jwksServer) { s.body = jwksJSON(t, k1, k2) })
	start := time.Now()
	if _, err := v.Verify(t.Context(), tok2); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("k2 within the interval: %v, want ErrKeyNotFound (rate limited)", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("a rate-limited caller waited %v", waited)
	}
	clk.Advance(DefaultMinRefetchInterval)
	if _, err := v.Verify(t.Context(), tok2); err != nil {
		t.Fatalf("k2 after the interval: %v", err)
	}
}

func TestRemoteJWKSCacheControl(t *testing.T) {
	r := &RemoteJWKS{defaultTTL: 5 * time.Minute, minTTL: 30 * time.Second, maxTTL: 24 * time.Hour}
	tests := []struct {
		name    string
		headers map[string][]string
		want    time.Duration
	}{
		{"none", nil, 5 * time.Minute},
		{"max-age", map[string][]string{"Cache-Control": {"public, max-age=600"}}, 10 * time.Minute},
		{"max-age minus Age", map[string][]string{"Cache-Control": {"max-age=600"}, "Age": {"100"}}, 500 * time.Second},
		{"clamped up", map[string][]string{"Cache-Control": {"max-age=1"}}, 30 * time.Second},
		{"clamped down", map[string][]string{"Cache-Control": {"max-age=999999999"}}, 24 * time.Hour},
		{"no-store", map[string][]string{"Cache-Control": {"no-store"}}, 30 * time.Second},
		{"no-cache beats max-age", map[string][]string{"Cache-Control": {"max-age=600", "no-cache"}}, 30 * time.Second},
		{"case and spaces", map[string][]string{"Cache-Control": {" Max-Age = 120 "}}, 2 * time.Minute},
		{"quoted", map[string][]string{"Cache-Control": {`max-age="120"`}}, 2 * time.Minute},
		{"garbage", map[string][]string{"Cache-Control": {"max-age=soon"}}, 5 * time.Minute},
		{"negative", map[string][]string{"Cache-Control": {"max-age=-5"}}, 5 * time.Minute},
		{"overflow", map[string][]string{"Cache-Control": {"max-age=99999999999999999999999"}}, 5 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, vs := range tc.headers {
				for _, v := range vs {
					h.Add(k, v)
				}
			}
			if got := r.ttl(h); got != tc.want {
				t.Errorf("ttl = %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("applied to the fetched set", func(t *testing.T) {
		srv := newJWKSServer(t, newTestKey(t, "ES256", "k1"))
		srv.set(func(s *jwksServer) { s.cacheControl = "max-age=120" })
		clk := newClock(testNow)
		r := newRemote(t, srv, RemoteOptions{Now: clk.Now})
		if _, err := r.Keys(t.Context(), "k1"); err != nil {
			t.Fatal(err)
		}
		st := r.snapshot()
		if got := st.expires.Sub(st.fetched); got != 2*time.Minute {
			t.Errorf("set lifetime = %v, want 2m", got)
		}
	})
}

func TestRemoteJWKSConditionalRefresh(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	srv := newJWKSServer(t, k)
	srv.set(func(s *jwksServer) { s.etag = `"v1"` })
	clk := newClock(testNow)
	r := newRemote(t, srv, RemoteOptions{Now: clk.Now})
	if _, err := r.Keys(t.Context(), "k1"); err != nil {
		t.Fatal(err)
	}
	first := r.snapshot()
	clk.Advance(time.Minute)
	if _, err := r.Keys(t.Context(), "unknown"); !errors.Is(err, ErrKeyNotFound) { // triggers a refetch
		t.Fatalf("unknown kid: %v", err)
	}
	if got := srv.notModified.Load(); got != 1 {
		t.Fatalf("304 responses = %d, want 1 (If-None-Match sent with the ETag)", got)
	}
	second := r.snapshot()
	if second.set != first.set || second.etag != `"v1"` {
		t.Error("a 304 must keep the same key set and ETag")
	}
	if !second.expires.After(first.expires) {
		t.Errorf("a 304 must extend the set's life: %v then %v", first.expires, second.expires)
	}
	if _, err := r.Keys(t.Context(), "k1"); err != nil {
		t.Errorf("k1 after 304: %v", err)
	}
}

func TestRemoteJWKSServesLastGoodSetWithinBound(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	srv := newJWKSServer(t, k)
	clk := newClock(testNow)
	r := newRemote(t, srv, RemoteOptions{Now: clk.Now, MaxStale: time.Hour})
	if _, err := r.Keys(t.Context(), "k1"); err != nil {
		t.Fatal(err)
	}
	srv.set(func(s *jwksServer) { s.status = http.StatusInternalServerError })

	clk.Advance(DefaultJWKSTTL + 30*time.Minute) // expired, within MaxStale
	if _, err := r.Keys(t.Context(), "k1"); err != nil {
		t.Errorf("known kid while the server fails, within MaxStale: %v", err)
	}
	if _, err := r.Keys(t.Context(), "unknown"); !errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrKeysUnavailable) {
		t.Errorf("unknown kid while serving the stale set: %v, want ErrKeyNotFound only", err)
	}

	clk.Advance(31 * time.Minute) // beyond expiry + MaxStale: fail closed
	_, err := r.Keys(t.Context(), "k1")
	if !errors.Is(err, ErrKeysUnavailable) || !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("beyond MaxStale: %v, want ErrKeysUnavailable and ErrKeyNotFound", err)
	}

	srv.set(func(s *jwksServer) { s.status = http.StatusOK })
	clk.Advance(DefaultMinRefetchInterval)
	if _, err := r.Keys(t.Context(), "k1"); err != nil {
		t.Errorf("after the server recovers: %v", err)
	}
}

func TestRemoteJWKSRejectedDocumentKeepsPreviousSet(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	srv := newJWKSServer(t, k)
	clk := newClock(testNow)
	r := newRemote(t, srv, RemoteOptions{Now: clk.Now})
	if _, err := r.Keys(t.Context(), "k1"); err != nil {
		t.Fatal(err)
	}
	leaked := newTestKey(t, "ES256", "k2")
	srv.set(func(s *jwksServer) {
		s.body = []byte(`{"keys":[` + mustJSON(t, privateJWKJSON(t, leaked)) + `]}`)
	})
	if _, err := r.Keys(t.Context(), "k2"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("k2 from a document with private keys: %v, want ErrKeyNotFound", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("hits = %d, want 2", got)
	}
	if _, err := r.Keys(t.Context(), "k1"); err != nil {
		t.Errorf("previous set after a refused document: %v", err)
	}
}

func TestRemoteJWKSResponseSizeCap(t *testing.T) {
	srv := newJWKSServer(t, newTestKey(t, "ES256", "k1"))
	r := newRemote(t, srv, RemoteOptions{MaxResponseBytes: 64})
	_, err := r.Keys(t.Context(), "k1")
	if !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("oversized JWKS: %v, want ErrKeysUnavailable", err)
	}
}

func TestRemoteJWKSHTTPSOnly(t *testing.T) {
	if _, err := NewRemoteJWKS("http://example.test/jwks", RemoteOptions{}); err == nil {
		t.Error("an http URL was accepted without InsecureAllowHTTP")
	}
	for _, u := range []string{"ftp://example.test/jwks", "https:///jwks", "https://user:pw@example.test/jwks", "://"} {
		if _, err := NewRemoteJWKS(u, RemoteOptions{}); err == nil {
			t.Errorf("%q was accepted", u)
		}
	}

	k := newTestKey(t, "ES256", "k1")
	var plainHits atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		w.Write(jwksJSON(t, k))
	}))
	t.Cleanup(plain.Close)

	t.Run("http allowed for tests", func(t *testing.T) {
		r, err := NewRemoteJWKS(plain.URL, RemoteOptions{InsecureAllowHTTP: true})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Keys(t.Context(), "k1"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("redirect to http refused", func(t *testing.T) {
		before := plainHits.Load()
		redirector := httptest.NewTLSServer(http.RedirectHandler(plain.URL, http.StatusFound))
		defer redirector.Close()
		r, err := NewRemoteJWKS(redirector.URL, RemoteOptions{HTTPClient: redirector.Client()})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Keys(t.Context(), "k1"); !errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("after a redirect to http: %v, want ErrKeysUnavailable", err)
		}
		if plainHits.Load() != before {
			t.Error("the http server was contacted through the redirect")
		}
	})
}

func TestRemoteJWKSCallerContext(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	srv := newJWKSServer(t, k)
	srv.set(func(s *jwksServer) { s.delay = 500 * time.Millisecond })
	r := newRemote(t, srv, RemoteOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Keys(ctx, "k1")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("Keys with an expiring context: %v", err)
	}
	if waited := time.Since(start); waited > 400*time.Millisecond {
		t.Errorf("Keys waited %v past its context", waited)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRemoteJWKSBackgroundRefresh runs on synctest's fake clock with an in-memory transport:
// the set is refreshed before each expiry, failures back off, and Close stops everything.
func TestRemoteJWKSBackgroundRefresh(t *testing.T) {
	doc := jwksJSON(t, newTestKey(t, "ES256", "k1"))
	t.Run("refresh before expiry", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var fetches []time.Time
			var mu sync.Mutex
			rt := roundTripFunc(func(req *http.Request) (*http.Response, error) {
				mu.Lock()
				fetches = append(fetches, time.Now())
				mu.Unlock()
				return &http.Response{
					StatusCode: http.StatusOK,
					Header:     http.Header{"Cache-Control": {"max-age=60"}},
					Body:       io.NopCloser(bytes.NewReader(doc)),
					Request:    req,
				}, nil
			})
			r, err := NewRemoteJWKS("https://issuer.test/jwks", RemoteOptions{HTTPClient: &http.Client{Transport: rt}})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			time.Sleep(10 * time.Minute)
			synctest.Wait()
			r.Close()
			mu.Lock()
			n := len(fetches)
			if n < 10 {
				t.Errorf("%d fetches in 10 minutes with max-age=60, want at least 10", n)
			}
			prev := start
			for i, f := range fetches {
				if gap := f.Sub(prev); gap >= 60*time.Second {
					t.Errorf("fetch %d came %v after the previous one: the set expired first", i, gap)
				}
				prev = f
			}
			mu.Unlock()
			time.Sleep(time.Hour)
			synctest.Wait()
			mu.Lock()
			if len(fetches) != n {
				t.Errorf("fetches after Close: %d, want %d", len(fetches), n)
			}
			mu.Unlock()
		})
	})
	t.Run("failures back off", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var attempts atomic.Int64
			rt := roundTripFunc(func(*http.Request) (*http.Response, error) {
				attempts.Add(1)
				return nil, errors.New("connection refused")
			})
			r, err := NewRemoteJWKS("https://issuer.test/jwks", RemoteOptions{HTTPClient: &http.Client{Transport: rt}})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			// Attempts at 0s, 10s, 30s, 70s, 150s (backoff doubling from MinRefetchInterval).
			time.Sleep(100 * time.Second)
			synctest.Wait()
			if got := attempts.Load(); got != 4 {
				t.Errorf("attempts in 100s = %d, want 4", got)
			}
			_, err = r.Keys(t.Context(), "k1")
			if !errors.Is(err, ErrKeysUnavailable) {
				t.Errorf("Keys with no set: %v, want ErrKeysUnavailable", err)
			}
		})
	})
}

func TestRemoteJWKSCloseWhileInUse(t *testing.T) {
	srv := newJWKSServer(t, newTestKey(t, "ES256", "k1"))
	r := newRemote(t, srv, RemoteOptions{MinRefetchInterval: time.Millisecond})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			for j := range 20 {
				r.Keys(context.Background(), fmt.Sprint("kid-", i, "-", j))
			}
		})
	}
	r.Close()
	wg.Wait()
	hits := srv.hits.Load()
	if _, err := r.Keys(t.Context(), "another-unknown"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("after Close: %v", err)
	}
	time.Sleep(10 * time.Millisecond)
	if got := srv.hits.Load(); got != hits {
		t.Errorf("fetches after Close: %d, want %d", got, hits)
	}
	r.Close() // idempotent
}
