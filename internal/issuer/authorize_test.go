package issuer_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/issuer"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// checkErrorPage asserts an HTML error page that does not redirect anywhere.
func checkErrorPage(t *testing.T, r siResp, status int) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d: %.300s", r.status, status, r.body)
	}
	if l := r.header.Get("Location"); l != "" {
		t.Errorf("an untrusted request was redirected to %s", l)
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(r.body, `id="error"`) {
		t.Errorf("not the error page: %s %.200s", r.header.Get("Content-Type"), r.body)
	}
	checkPageHeaders(t, r)
}

// TestUntrustedRequestsShowAPage: an unknown client or a redirect_uri that is not exactly a
// registered one is never redirected to: open-redirect attempts end on an error page.
func TestUntrustedRequestsShowAPage(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	_, challenge := pkce()
	good := h.authParams(siWeb, siWebRedirect, challenge, "openid")
	tests := []struct {
		name string
		edit func(url.Values)
	}{
		{"unknown client", func(q url.Values) { q.Set("client_id", "ghost") }},
		{"no client_id", func(q url.Values) { q.Del("client_id") }},
		{"no redirect_uri", func(q url.Values) { q.Del("redirect_uri") }},
		{"foreign host", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }},
		{"registered host as a prefix", func(q url.Values) { q.Set("redirect_uri", "https://web.example.evil.example/cb") }},
		{"user info trick", func(q url.Values) { q.Set("redirect_uri", "https://web.example/cb@evil.example") }},
		{"path extended", func(q url.Values) { q.Set("redirect_uri", siWebRedirect+"/../../evil") }},
		{"path suffix", func(q url.Values) { q.Set("redirect_uri", siWebRedirect+"x") }},
		{"trailing slash", func(q url.Values) { q.Set("redirect_uri", siWebRedirect+"/") }},
		{"query added", func(q url.Values) { q.Set("redirect_uri", siWebRedirect+"?next=https://evil.example") }},
		{"fragment added", func(q url.Values) { q.Set("redirect_uri", siWebRedirect+"#x") }},
		{"case changed", func(q url.Values) { q.Set("redirect_uri", "https://WEB.example/cb") }},
		{"percent-encoded path", func(q url.Values) { q.Set("redirect_uri", "https://web.example/%63b") }},
		{"default port spelled out", func(q url.Values) { q.Set("redirect_uri", "https://web.example:443/cb") }},
		{"scheme downgraded", func(q url.Values) { q.Set("redirect_uri", "http://web.example/cb") }},
		{"protocol-relative", func(q url.Values) { q.Set("redirect_uri", "//evil.example/cb") }},
		{"javascript", func(q url.Values) { q.Set("redirect_uri", "javascript:alert(1)") }},
		{"another client's redirect", func(q url.Values) { q.Set("redirect_uri", siOtherRedirect) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := url.Values{}
			for k, v := range good {
				q[k] = append([]string(nil), v...)
			}
			tt.edit(q)
			checkErrorPage(t, b.get(t, "/authorize?"+q.Encode()), http.StatusBadRequest)
		})
	}
}

// TestMalformedRequestsShowAPage: strict parsing; nothing of a malformed request is trusted.
func TestMalformedRequestsShowAPage(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	_, challenge := pkce()
	good := h.authParams(siWeb, siWebRedirect, challenge, "openid").Encode()
	for _, tt := range []struct{ name, query string }{
		{"repeated redirect_uri", good + "&redirect_uri=" + url.QueryEscape("https://evil.example/cb")},
		{"repeated state", good + "&state=again"},
		{"bad escape", good + "&x=%zz"},
		{"semicolon separator", good + ";x=1"},
		{"control character", good + "&state=a%0Ab"},
		{"invalid UTF-8", good + "&nonce=%ff"},
		{"request object", good + "&request=eyJhbGciOiJub25lIn0.e30."},
		{"too large", good + "&pad=" + strings.Repeat("a", 9000)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkErrorPage(t, b.get(t, "/authorize?"+tt.query), http.StatusBadRequest)
		})
	}
}

// TestAuthorizeErrorsRedirect: once client and redirect_uri are trusted, errors go back to
// the client with error, state and iss (RFC 9207); PKCE S256 is required for every client.
func TestAuthorizeErrorsRedirect(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	_, challenge := pkce()
	tests := []struct {
		name, client, redirect string
		edit                   func(url.Values)
		wantErr                string
	}{
		{"missing PKCE", siWeb, siWebRedirect, func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
		{"missing PKCE, confidential client", siConf, siConfRedirect, func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
		{"plain PKCE", siWeb, siWebRedirect, func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"PKCE method omitted (means plain)", siWeb, siWebRedirect, func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
		{"challenge not S256-shaped", siWeb, siWebRedirect, func(q url.Values) { q.Set("code_challenge", "short") }, "invalid_request"},
		{"token response type", siWeb, siWebRedirect, func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		{"hybrid response type", siWeb, siWebRedirect, func(q url.Values) { q.Set("response_type", "code id_token") }, "unsupported_response_type"},
		{"no response type", siWeb, siWebRedirect, func(q url.Values) { q.Del("response_type") }, "invalid_request"},
		{"fragment response mode", siWeb, siWebRedirect, func(q url.Values) { q.Set("response_mode", "fragment") }, "invalid_request"},
		{"unknown scope", siWeb, siWebRedirect, func(q url.Values) { q.Set("scope", "openid admin") }, "invalid_scope"},
		{"scope of no client", siWeb, siWebRedirect, func(q url.Values) { q.Set("scope", "openid reports:read") }, "invalid_scope"},
		{"prompt none with login", siWeb, siWebRedirect, func(q url.Values) { q.Set("prompt", "none login") }, "invalid_request"},
		{"bad max_age", siWeb, siWebRedirect, func(q url.Values) { q.Set("max_age", "-1") }, "invalid_request"},
		{"prompt none without a session", siWeb, siWebRedirect, func(q url.Values) { q.Set("prompt", "none") }, "login_required"},
		{"require_par client without PAR", siPARApp, siPARRedirect, func(url.Values) {}, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := h.authParams(tt.client, tt.redirect, challenge, "openid")
			tt.edit(q)
			r := b.get(t, "/authorize?"+q.Encode())
			if r.status != http.StatusSeeOther {
				t.Fatalf("status %d, want a redirect: %.300s", r.status, r.body)
			}
			u := r.location(t)
			if !strings.HasPrefix(u.String(), tt.redirect) && !strings.HasPrefix(tt.redirect, u.Scheme+"://"+u.Host+u.Path) {
				t.Fatalf("redirected to %s", u)
			}
			got := u.Query()
			if got.Get("error") != tt.wantErr || got.Get("state") != q.Get("state") || got.Get("iss") != h.url || got.Get("code") != "" {
				t.Errorf("redirect query %v, want error=%s with state and iss", got, tt.wantErr)
			}
		})
	}
}

// TestPromptNone: silent authentication answers login_required, consent_required or a code.
func TestPromptNone(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid profile")
	_, challenge := pkce()
	q := h.authParams(siWeb, siWebRedirect, challenge, "openid profile email")
	q.Set("prompt", "none")
	if got := b.get(t, "/authorize?"+q.Encode()).location(t).Query().Get("error"); got != "consent_required" {
		t.Errorf("a scope not consented to: error %q, want consent_required", got)
	}
	q.Set("scope", "openid profile")
	r := b.get(t, "/authorize?"+q.Encode())
	if code := h.codeFrom(t, r, siWebRedirect, q.Get("state")); !strings.HasPrefix(code, "pcac_") {
		t.Errorf("code %q", code)
	}
	q.Set("max_age", "0")
	h.clock.Advance(2e9)
	if got := b.get(t, "/authorize?"+q.Encode()).location(t).Query().Get("error"); got != "login_required" {
		t.Errorf("max_age exceeded: error %q, want login_required", got)
	}
}

// TestSessionSkipsTheLoginPage: a second request in the same browser needs no password; with
// prompt=login it does.
func TestSessionSkipsTheLoginPage(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid")
	_, challenge := pkce()
	q := h.authParams(siWeb, siWebRedirect, challenge, "openid")
	if code := h.codeFrom(t, b.get(t, "/authorize?"+q.Encode()), siWebRedirect, q.Get("state")); code == "" {
		t.Fatal("no code")
	}
	q.Set("prompt", "login")
	if l := b.get(t, "/authorize?"+q.Encode()).header.Get("Location"); !strings.HasPrefix(l, issuer.PathLogin+"?") {
		t.Errorf("prompt=login went to %q", l)
	}
}

// ephemeralCounter counts what the issuer stores as ephemeral records, by kind.
type ephemeralCounter struct {
	store.Store
	mu   sync.Mutex
	puts map[string]int
}

func (c *ephemeralCounter) PutEphemeral(ctx context.Context, kind, key string, value []byte, expires time.Time) error {
	c.mu.Lock()
	c.puts[kind]++
	c.mu.Unlock()
	return c.Store.PutEphemeral(ctx, kind, key, value, expires)
}

func (c *ephemeralCounter) count(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.puts[kind]
}

// TestSignInTransactionsConfigured: issuer.login.throttle.starts_per_ip sets the limit.
func TestSignInTransactionsConfigured(t *testing.T) {
	h := buildSIHarness(t, siOptions{login: config.Login{Throttle: config.LoginThrottle{StartsPerIP: "2/m"}}})
	_, challenge := pkce()
	b := h.browser(t)
	for i := range 3 {
		r := b.do(t, http.MethodGet, "/authorize?"+h.authParams(siWeb, siWebRedirect, challenge, "openid").Encode(), nil, nil)
		if want := map[bool]int{true: http.StatusSeeOther, false: http.StatusTooManyRequests}[i < 2]; r.status != want {
			t.Fatalf("request %d: %d, want %d", i+1, r.status, want)
		}
	}
}

// TestSignInTransactionsPerAddress: /authorize is unauthenticated and stores a transaction
// per request, so one address may start 30 a minute. Beyond that it gets a bare 429 with
// Retry-After, nothing is stored (not even the binding cookie) and the refusal is audited;
// another address is unaffected, and the address recovers with time. Pushed requests of
// public clients (unauthenticated as well) count the same way; a confidential client's
// do not, since one back end pushes for all its users.
func TestSignInTransactionsPerAddress(t *testing.T) {
	const perMinute = 30
	counter := &ephemeralCounter{puts: map[string]int{}}
	reg := prometheus.NewRegistry()
	h := buildSIHarness(t, siOptions{
		login: config.Login{TrustedProxies: []string{"127.0.0.1/32"}},
		wrap:  func(s store.Store) store.Store { counter.Store = s; return counter },
		reg:   reg,
	})
	_, challenge := pkce()
	from := func(b *siBrowser, addr string) siResp {
		q := h.authParams(siWeb, siWebRedirect, challenge, "openid")
		return b.do(t, http.MethodGet, "/authorize?"+q.Encode(), nil, map[string]string{"X-Forwarded-For": addr})
	}
	b := h.browser(t)
	for i := range perMinute {
		if r := from(b, "198.51.100.7"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), issuer.PathLogin+"?") {
			t.Fatalf("request %d within the limit: %d %q", i+1, r.status, r.header.Get("Location"))
		}
	}
	if n := counter.count("authz-tx"); n != perMinute {
		t.Fatalf("%d transactions stored, want %d", n, perMinute)
	}
	over := from(h.browser(t), "198.51.100.7")
	if over.status != http.StatusTooManyRequests || over.header.Get("Retry-After") == "" || over.header.Get("Location") != "" {
		t.Errorf("over the limit: %d Retry-After %q Location %q", over.status, over.header.Get("Retry-After"), over.header.Get("Location"))
	}
	if c := siFindCookie(over, "__Host-portcullis-bind"); c != nil {
		t.Error("the refused request set a binding cookie")
	}
	if strings.Contains(over.body, "198.51.100.7") || strings.Contains(over.body, "authorize.ip") {
		t.Errorf("the refusal tells too much: %.300s", over.body)
	}
	if n := counter.count("authz-tx"); n != perMinute {
		t.Errorf("the refused request stored a transaction (%d stored)", n)
	}
	h.audit(t, "authorization.throttled", func(e store.AuditEvent) bool { return e.Details["ip"] == "198.51.100.7" })
	if got := counterValue(t, reg, "portcullis_issuer_transactions_refused_total", "/authorize", "limited"); got != 1 {
		t.Errorf("transactions_refused_total{/authorize,limited} = %v, want 1", got)
	}

	if r := from(h.browser(t), "203.0.113.9"); r.status != http.StatusSeeOther {
		t.Errorf("another address was refused too: %d", r.status)
	}
	if n := counter.count("authz-tx"); n != perMinute+1 {
		t.Errorf("%d transactions stored, want %d", n, perMinute+1)
	}

	t.Run("pushed requests of public clients", func(t *testing.T) {
		push := func(client, redirect, addr string) siResp {
			q := h.authParams(client, redirect, challenge, "openid")
			q.Del("client_id")
			hdr := map[string]string{"X-Forwarded-For": addr}
			if s, ok := h.secrets[client]; ok {
				hdr["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(client+":"+s))
			} else {
				q.Set("client_id", client)
			}
			return (&siBrowser{h: h, client: h.srv.Client()}).do(t, http.MethodPost, issuer.PathPAR, q, hdr)
		}
		pars := counter.count("par")
		r := push(siWeb, siWebRedirect, "198.51.100.7")
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || r.jsonMap(t)["error"] != "temporarily_unavailable" {
			t.Errorf("public client's push over the limit: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
		}
		if counter.count("par") != pars {
			t.Error("the refused push was stored")
		}
		if r := push(siConf, siConfRedirect, "198.51.100.7"); r.status != http.StatusCreated {
			t.Errorf("a confidential client's push from the same address: %d %s", r.status, r.body)
		}
	})

	h.clock.Advance(time.Minute)
	if r := from(h.browser(t), "198.51.100.7"); r.status != http.StatusSeeOther {
		t.Errorf("a minute later the address is still refused: %d", r.status)
	}
}

// TestNoSilentCodeForClaimableRedirects: any app on the device can claim a loopback http or
// private-use scheme redirect_uri (RFC 8252 §8.6), so a public client with one never gets a
// code from an existing session without a page the person sees: prompt=none answers
// consent_required, and the consent page is shown every time, even after the person
// allowed once. Clients whose redirect cannot be claimed that way (https) or that
// authenticate at /token keep silent codes.
func TestNoSilentCodeForClaimableRedirects(t *testing.T) {
	h := newSIHarness(t)
	for _, tt := range []struct {
		name, client, redirect string
		silent                 bool
	}{
		{"public, loopback http", siNoOffln, siNoOfflnRedir, false},
		{"public, private-use scheme", siNative, siNativeRedir, false},
		{"public, https", siWeb, siWebRedirect, true},
		{"confidential, https", siConf, siConfRedirect, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := h.browser(t)
			h.flow(t, b, tt.client, tt.redirect, siAlice, "openid") // signed in, consent given
			_, challenge := pkce()
			q := h.authParams(tt.client, tt.redirect, challenge, "openid")
			q.Set("prompt", "none")
			r := b.get(t, "/authorize?"+q.Encode())
			got := r.location(t).Query()
			switch {
			case tt.silent && got.Get("code") == "":
				t.Errorf("prompt=none: no code (%v)", got)
			case !tt.silent && (got.Get("code") != "" || got.Get("error") != "consent_required" || got.Get("state") != q.Get("state")):
				t.Errorf("prompt=none with a session: %v, want consent_required and no code", got)
			}
			q.Del("prompt")
			for i := range 2 {
				q.Set("state", "again-"+strconv.Itoa(i))
				r := b.get(t, "/authorize?"+q.Encode())
				if tt.silent {
					if code := h.codeFrom(t, r, tt.redirect, q.Get("state")); code == "" {
						t.Error("remembered consent: no code")
					}
					continue
				}
				if r.location(t).Query().Get("code") != "" || !strings.HasPrefix(r.header.Get("Location"), issuer.PathConsent+"?") {
					t.Fatalf("attempt %d with a session and remembered consent went to %q, want the consent page", i+1, r.header.Get("Location"))
				}
				page := b.follow(t, r)
				tx, csrf := siForm(t, page)
				after := b.post(t, issuer.PathConsent, url.Values{"tx": {tx}, "csrf": {csrf}, "decision": {"allow"}})
				if code := h.codeFrom(t, after, tt.redirect, q.Get("state")); code == "" {
					t.Error("allowed on the consent page: no code")
				}
			}
		})
	}
}
