package issuer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/issuer"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/store"
)

// checkPageHeaders asserts the headers every page carries: a strict CSP that forbids
// framing (clickjacking), and no caching.
func checkPageHeaders(t *testing.T, r siResp) {
	t.Helper()
	csp := r.header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("CSP %q lacks %s", csp, d)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
		t.Errorf("CSP %q allows scripts", csp)
	}
	if r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("Cache-Control") != "no-store" || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("X-Frame-Options %q Cache-Control %q nosniff %q", r.header.Get("X-Frame-Options"), r.header.Get("Cache-Control"), r.header.Get("X-Content-Type-Options"))
	}
}

// TestEveryPageHasCSP: sign-in, second factor, consent, logout, signed-out and error pages,
// and the authorization endpoint's redirects, all carry the page headers; the stylesheet is
// served by the issuer itself and the pages load nothing else.
func TestEveryPageHasCSP(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	_, challenge := pkce()
	q := h.authParams(siWeb, siWebRedirect, challenge, "openid")
	redirect := b.get(t, "/authorize?"+q.Encode())
	login := b.follow(t, redirect)
	afterLogin := b.signIn(t, login, siAlice, h.passwords[siAlice])
	consent := b.follow(t, afterLogin)
	otpB := h.browser(t)
	otpPage := otpB.follow(t, otpB.signIn(t, otpB.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), siCarol, h.passwords[siCarol]))
	pages := map[string]siResp{
		"authorize redirect": redirect, "login": login, "after login": afterLogin, "consent": consent, "otp": otpPage,
		"error":        b.get(t, "/authorize?client_id=ghost"),
		"logout":       b.get(t, "/logout"),
		"signed out":   h.browser(t).get(t, "/logout"),
		"wrong method": b.do(t, http.MethodPut, issuer.PathConsent, nil, nil),
	}
	for name, r := range pages {
		t.Run(name, func(t *testing.T) { checkPageHeaders(t, r) })
	}
	for name, r := range map[string]siResp{"login": login, "consent": consent, "otp": otpPage} {
		if !strings.Contains(r.header.Get("Content-Security-Policy"), "form-action 'self' https://web.example;") {
			t.Errorf("%s: form-action does not allow the redirect to the client: %s", name, r.header.Get("Content-Security-Policy"))
		}
		for _, bad := range []string{"<script", "http://", "https://"} {
			if strings.Contains(strings.ReplaceAll(r.body, "https://web.example", ""), bad) && bad != "https://" {
				t.Errorf("%s page loads %s", name, bad)
			}
		}
		if !strings.Contains(r.body, `href="/assets/portcullis.css"`) {
			t.Errorf("%s page does not use the issuer's stylesheet", name)
		}
	}
	css := b.get(t, issuer.PathAssets)
	if css.status != http.StatusOK || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %s", css.status, css.header.Get("Content-Type"))
	}
}

// TestSessionCookie: __Host- prefix, Secure, HttpOnly, SameSite=Lax, Path=/, no Domain; the
// value is an opaque id, not the user.
func TestSessionCookie(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	_, challenge := pkce()
	r := b.signIn(t, b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), siAlice, h.passwords[siAlice])
	for _, name := range []string{"__Host-portcullis-session"} {
		c := siFindCookie(r, name)
		if c == nil {
			t.Fatalf("no %s cookie after sign-in; cookies: %v", name, r.header.Values("Set-Cookie"))
		}
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("%s: Secure %v HttpOnly %v SameSite %v Path %q Domain %q", name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain)
		}
		if len(c.Value) != 43 || strings.Contains(c.Value, h.users[siAlice].ID) {
			t.Errorf("session cookie value %q is not an opaque id", c.Value)
		}
	}
	// The binding cookie set by /authorize has the same attributes.
	first := h.browser(t).get(t, "/authorize?"+h.authParams(siWeb, siWebRedirect, challenge, "openid").Encode())
	c := siFindCookie(first, "__Host-portcullis-bind")
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Errorf("binding cookie: %+v", c)
	}
}

// TestWrongPasswordUnknownUserDisabledUser: all refused with the same words, no session,
// each audited with its real reason.
func TestWrongPasswordUnknownUserDisabledUser(t *testing.T) {
	h := newSIHarness(t)
	_, challenge := pkce()
	for _, tt := range []struct{ name, user, password, reason string }{
		{"wrong password", siAlice, "not-her-password", "wrong password"},
		{"unknown user", "mallory", "whatever-it-is", "unknown user"},
		{"disabled user with the right password", siDave, h.passwords[siDave], "account disabled"},
		{"empty password", siAlice, "", "wrong password"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := h.browser(t)
			r := b.signIn(t, b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), tt.user, tt.password)
			if r.status != http.StatusOK || !strings.Contains(r.body, "Wrong username or password.") || r.header.Get("Location") != "" {
				t.Errorf("status %d location %q: %.300s", r.status, r.header.Get("Location"), r.body)
			}
			if siFindCookie(r, "__Host-portcullis-session") != nil {
				t.Error("a failed sign-in set a session cookie")
			}
			h.audit(t, "login.failed", func(e store.AuditEvent) bool { return e.Reason == tt.reason && e.Details["username"] == tt.user })
		})
	}
}

// TestAccountLockout: after account_failures wrong passwords the account is locked, from
// any address, with the answer of a wrong password even for the right one; it opens again
// when the lock ends.
func TestAccountLockout(t *testing.T) {
	h := buildSIHarness(t, siOptions{login: config.Login{Throttle: config.LoginThrottle{AccountFailures: 3, AccountLock: time.Minute, PerIP: "1000/m"}}})
	_, challenge := pkce()
	b := h.browser(t)
	for range 3 {
		b.signIn(t, b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), "ALICE", "wrong-password!")
	}
	r := b.signIn(t, b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), siAlice, h.passwords[siAlice])
	if !strings.Contains(r.body, "Wrong username or password.") || siFindCookie(r, "__Host-portcullis-session") != nil {
		t.Fatalf("a locked account signed in: %d %q", r.status, r.header.Get("Location"))
	}
	h.audit(t, "login.failed", func(e store.AuditEvent) bool { return strings.Contains(e.Reason, "locked") })
	h.audit(t, "login.sanction", func(e store.AuditEvent) bool { return e.Reason == "login_account_failures" })
	h.clock.Advance(2 * time.Minute)
	r = b.signIn(t, b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), siAlice, h.passwords[siAlice])
	if r.status != http.StatusSeeOther {
		t.Errorf("after the lock: %d %.200s", r.status, r.body)
	}
}

// TestAccountLockoutLookalikeNames: the lock counts by the name the store looks users up
// by (PRECIS UsernameCaseMapped), so a width- or case-variant of the name that signs in as
// the same user is locked too, and failures under a variant lock the account.
func TestAccountLockoutLookalikeNames(t *testing.T) {
	for _, tt := range []struct{ name, failAs, signInAs string }{
		{"fail as alice, sign in full-width", siAlice, "\uff41\uff4c\uff49\uff43\uff45"},
		{"fail full-width, sign in as alice", "\uff41\uff4c\uff49\uff43\uff45", siAlice},
		{"fail as ALICE, sign in full-width capitals", "ALICE", "\uff21\uff2c\uff29\uff23\uff25"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := buildSIHarness(t, siOptions{login: config.Login{Throttle: config.LoginThrottle{AccountFailures: 3, AccountLock: time.Minute, PerIP: "1000/m"}}})
			_, challenge := pkce()
			b := h.browser(t)
			// The variant signs in as alice while nothing is locked.
			r := b.signIn(t, b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), tt.signInAs, h.passwords[siAlice])
			if r.status != http.StatusSeeOther {
				t.Fatalf("%q does not sign in as alice: %d %.200s", tt.signInAs, r.status, r.body)
			}
			b = h.browser(t)
			for range 3 {
				b.signIn(t, b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), tt.failAs, "wrong-password!")
			}
			r = b.signIn(t, b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), tt.signInAs, h.passwords[siAlice])
			if !strings.Contains(r.body, "Wrong username or password.") || siFindCookie(r, "__Host-portcullis-session") != nil {
				t.Fatalf("the locked account signed in as %q: %d %q", tt.signInAs, r.status, r.header.Get("Location"))
			}
		})
	}
}

// TestSignInFloodFailsFast: when more password checks arrive at once than the argon2id
// slots and their bounded queue hold, the rest get a "try again" page at once (503 with
// Retry-After), and only the checks that ran count as failures (audit and throttle).
func TestSignInFloodFailsFast(t *testing.T) {
	// Each guess comes from its own address (through a trusted proxy), so the per-address
	// rate does not stop the flood before it reaches the password check.
	h := buildSIHarness(t, siOptions{login: config.Login{TrustedProxies: []string{"127.0.0.1"}, Throttle: config.LoginThrottle{AccountFailures: 10000}}})
	_, challenge := pkce()
	b := h.browser(t)
	page := b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid"))
	tx, csrf := siForm(t, page)
	const n = 40
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := b.do(t, http.MethodPost, issuer.PathLogin, url.Values{"tx": {tx}, "csrf": {csrf}, "username": {siAlice}, "password": {fmt.Sprintf("wrong password %d", i)}},
				map[string]string{"X-Forwarded-For": fmt.Sprintf("192.0.2.%d", i+1)})
			mu.Lock()
			statuses[r.status]++
			mu.Unlock()
			switch r.status {
			case http.StatusOK:
				if !strings.Contains(r.body, "Wrong username or password.") {
					t.Errorf("200 without the wrong-password message: %.300s", r.body)
				}
			case http.StatusServiceUnavailable:
				if !strings.Contains(r.body, "Try again in a moment.") || r.header.Get("Retry-After") == "" {
					t.Errorf("busy answer without its message or Retry-After: %v %.300s", r.header, r.body)
				}
			}
		})
	}
	wg.Wait()
	if statuses[http.StatusOK]+statuses[http.StatusServiceUnavailable] != n || statuses[http.StatusServiceUnavailable] == 0 {
		t.Fatalf("answers by status: %v (want 200s and some 503s)", statuses)
	}
	// Exactly the checks that ran are audited as failures (the audit is written in batches).
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, err := h.db.ListAudit(t.Context(), store.AuditFilter{Type: "login.failed"})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == statuses[http.StatusOK] {
			break
		}
		if len(evs) > statuses[http.StatusOK] || time.Now().After(deadline) {
			t.Fatalf("%d login.failed events for %d wrong-password answers (%v)", len(evs), statuses[http.StatusOK], statuses)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPerAddressRateLimit: sign-in posts from one address beyond the rate get 429.
func TestPerAddressRateLimit(t *testing.T) {
	h := buildSIHarness(t, siOptions{login: config.Login{Throttle: config.LoginThrottle{PerIP: "3/m"}}})
	_, challenge := pkce()
	b := h.browser(t)
	page := b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid"))
	var last siResp
	for range 5 {
		last = b.signIn(t, page, "nobody", "wrong-password")
	}
	if last.status != http.StatusTooManyRequests || !strings.Contains(last.body, "Too many attempts") || last.header.Get("Retry-After") == "" {
		t.Errorf("status %d Retry-After %q: %.200s", last.status, last.header.Get("Retry-After"), last.body)
	}
}

// TestTOTP: the second factor. A wrong code is refused; the right one signs in with
// amr pwd+otp and acr aal2; the same code (time step) is never accepted twice.
func TestTOTP(t *testing.T) {
	h := newSIHarness(t)
	verifier, challenge := pkce()
	b := h.browser(t)
	q := h.authParams(siWeb, siWebRedirect, challenge, "openid")
	afterPwd := b.signIn(t, b.loginPage(t, q), siCarol, h.passwords[siCarol])
	if !strings.HasPrefix(afterPwd.header.Get("Location"), issuer.PathLoginOTP+"?") || siFindCookie(afterPwd, "__Host-portcullis-session") != nil {
		t.Fatalf("password alone: %d %q", afterPwd.status, afterPwd.header.Get("Location"))
	}
	page := b.follow(t, afterPwd)
	tx, csrf := siForm(t, page)
	code, err := login.Code(h.totp[siCarol], h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrong := "000000"
	if wrong == code {
		wrong = "111111"
	}
	r := b.post(t, issuer.PathLoginOTP, url.Values{"tx": {tx}, "csrf": {csrf}, "code": {wrong}})
	if !strings.Contains(r.body, "Wrong or expired code") || siFindCookie(r, "__Host-portcullis-session") != nil {
		t.Fatalf("wrong code: %d %.200s", r.status, r.body)
	}
	h.audit(t, "login.failed", func(e store.AuditEvent) bool { return e.Reason == "wrong one-time code" })
	r = b.post(t, issuer.PathLoginOTP, url.Values{"tx": {tx}, "csrf": {csrf}, "code": {code}})
	if siFindCookie(r, "__Host-portcullis-session") == nil {
		t.Fatalf("right code: %d %.200s", r.status, r.body)
	}
	tok := h.redeem(t, siWeb, h.codeFrom(t, b.allow(t, r), siWebRedirect, q.Get("state")), siWebRedirect, verifier).jsonMap(t)
	c := h.idClaims(t, tok["id_token"], siWeb)
	if amr, _ := c.Raw["amr"].([]any); len(amr) != 2 || amr[0] != "pwd" || amr[1] != "otp" || c.Raw["acr"] != "aal2" {
		t.Errorf("amr %v acr %v, want [pwd otp] aal2", c.Raw["amr"], c.Raw["acr"])
	}

	// Replay: the same code in a fresh browser is refused even with the right password.
	b2 := h.browser(t)
	page2 := b2.follow(t, b2.signIn(t, b2.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), siCarol, h.passwords[siCarol]))
	tx2, csrf2 := siForm(t, page2)
	r = b2.post(t, issuer.PathLoginOTP, url.Values{"tx": {tx2}, "csrf": {csrf2}, "code": {code}})
	if siFindCookie(r, "__Host-portcullis-session") != nil || !strings.Contains(r.body, "Wrong or expired code") {
		t.Fatalf("replayed code accepted: %d", r.status)
	}
	h.audit(t, "login.failed", func(e store.AuditEvent) bool { return e.Reason == "one-time code already used" })
	// The next time step works, and the ID token says two factors.
	h.clock.Advance(30 * time.Second)
	next, _ := login.Code(h.totp[siCarol], h.clock.Now())
	r = b2.post(t, issuer.PathLoginOTP, url.Values{"tx": {tx2}, "csrf": {csrf2}, "code": {next}})
	if siFindCookie(r, "__Host-portcullis-session") == nil {
		t.Fatalf("next code: %d %.200s", r.status, r.body)
	}
}

// TestTOTPAttemptsPerTransaction: five wrong codes end the transaction.
func TestTOTPAttemptsPerTransaction(t *testing.T) {
	h := newSIHarness(t)
	_, challenge := pkce()
	b := h.browser(t)
	page := b.follow(t, b.signIn(t, b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid")), siCarol, h.passwords[siCarol]))
	tx, csrf := siForm(t, page)
	var r siResp
	for i := range 5 {
		r = b.post(t, issuer.PathLoginOTP, url.Values{"tx": {tx}, "csrf": {csrf}, "code": {"99999" + string(rune('0'+i))}})
	}
	checkErrorPage(t, r, http.StatusForbidden)
	code, _ := login.Code(h.totp[siCarol], h.clock.Now())
	r = b.post(t, issuer.PathLoginOTP, url.Values{"tx": {tx}, "csrf": {csrf}, "code": {code}})
	if siFindCookie(r, "__Host-portcullis-session") != nil {
		t.Error("the ended transaction still signed in")
	}
}

// TestCSRF: a form post is refused without the transaction's CSRF token, with a wrong one,
// from another origin, without an Origin, from another browser (no binding cookie), or with
// a repeated field.
func TestCSRF(t *testing.T) {
	h := newSIHarness(t)
	_, challenge := pkce()
	b := h.browser(t)
	page := b.loginPage(t, h.authParams(siWeb, siWebRedirect, challenge, "openid"))
	tx, csrf := siForm(t, page)
	good := func() url.Values {
		return url.Values{"tx": {tx}, "csrf": {csrf}, "username": {siAlice}, "password": {h.passwords[siAlice]}}
	}
	tests := []struct {
		name   string
		form   func() url.Values
		origin string
		other  bool // post from another browser (no binding cookie)
		status int
	}{
		{"no csrf token", func() url.Values { f := good(); f.Del("csrf"); return f }, h.url, false, http.StatusForbidden},
		{"wrong csrf token", func() url.Values { f := good(); f.Set("csrf", csrf[:42]+"x"); return f }, h.url, false, http.StatusForbidden},
		{"foreign origin", good, "https://evil.example", false, http.StatusForbidden},
		{"origin null", good, "null", false, http.StatusForbidden},
		{"no origin at all", good, "", false, http.StatusForbidden},
		{"another browser", good, h.url, true, http.StatusForbidden},
		{"repeated field", func() url.Values { f := good(); f.Add("password", "x"); return f }, h.url, false, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := b
			if tt.other {
				c = h.browser(t)
			}
			c.origin = tt.origin
			defer func() { c.origin = h.url }()
			r := c.post(t, issuer.PathLogin, tt.form())
			checkErrorPage(t, r, tt.status)
			if siFindCookie(r, "__Host-portcullis-session") != nil {
				t.Error("the refused post signed in")
			}
		})
	}
	// The same browser with the token and its origin still works: nothing was consumed.
	if r := b.post(t, issuer.PathLogin, good()); r.status != http.StatusSeeOther {
		t.Errorf("the genuine post after the attacks: %d %.200s", r.status, r.body)
	}
	h.audit(t, "csrf.refused", nil)
}

// TestConsentRememberedAndRevocable: consent is asked once per client and user, remembered
// until revoked; prompt=consent asks again; a denial returns access_denied; revoking the
// consent stops the client's refresh tokens and revokes their family.
func TestConsentRememberedAndRevocable(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	code, verifier, _ := h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid orders:read offline_access")
	tok := h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)

	_, challenge := pkce()
	q := h.authParams(siWeb, siWebRedirect, challenge, "openid orders:read")
	if c := h.codeFrom(t, b.get(t, "/authorize?"+q.Encode()), siWebRedirect, q.Get("state")); c == "" {
		t.Fatal("remembered consent: no code")
	}
	q.Set("prompt", "consent")
	if l := b.get(t, "/authorize?"+q.Encode()).header.Get("Location"); !strings.HasPrefix(l, issuer.PathConsent+"?") {
		t.Errorf("prompt=consent went to %q", l)
	}
	// A new scope is asked for.
	q = h.authParams(siWeb, siWebRedirect, challenge, "openid email")
	page := b.follow(t, b.get(t, "/authorize?"+q.Encode()))
	if !strings.Contains(page.body, "See your email address") || !strings.Contains(page.body, "See your orders") == strings.Contains(page.body, "orders:read") {
		t.Errorf("consent page: %.500s", page.body)
	}
	tx, csrf := siForm(t, page)
	r := b.post(t, issuer.PathConsent, url.Values{"tx": {tx}, "csrf": {csrf}, "decision": {"deny"}})
	got := r.location(t).Query()
	if got.Get("error") != "access_denied" || got.Get("state") != q.Get("state") || got.Get("iss") != h.url {
		t.Errorf("deny: %v", got)
	}

	// Revoke (what portcullis users revoke-consent does).
	if err := h.db.DeleteConsent(context.Background(), h.users[siAlice].ID, siWeb); err != nil {
		t.Fatal(err)
	}
	q = h.authParams(siWeb, siWebRedirect, challenge, "openid")
	if l := b.get(t, "/authorize?"+q.Encode()).header.Get("Location"); !strings.HasPrefix(l, issuer.PathConsent+"?") {
		t.Errorf("after revocation went to %q", l)
	}
	rr := h.refresh(t, siWeb, tok["refresh_token"].(string))
	if rr.status != http.StatusBadRequest || rr.jsonMap(t)["error"] != "invalid_grant" {
		t.Errorf("refresh after consent revoked: %d %s", rr.status, rr.body)
	}
	if h.active(t, tok["access_token"].(string)) {
		t.Error("the family's access token is still active after the consent was revoked")
	}
}

// TestDisabledMidSession: a user disabled after signing in loses the session and the
// refresh tokens.
func TestDisabledMidSession(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	code, verifier, _ := h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid offline_access")
	tok := h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)
	if _, err := h.db.UpdateUser(context.Background(), h.users[siAlice].ID, func(u store.User) (store.User, error) { u.Disabled = true; return u, nil }); err != nil {
		t.Fatal(err)
	}
	_, challenge := pkce()
	if l := b.get(t, "/authorize?"+h.authParams(siWeb, siWebRedirect, challenge, "openid").Encode()).header.Get("Location"); !strings.HasPrefix(l, issuer.PathLogin+"?") {
		t.Errorf("the disabled user's session still works: %q", l)
	}
	if r := h.refresh(t, siWeb, tok["refresh_token"].(string)); r.status != http.StatusBadRequest {
		t.Errorf("refresh of a disabled user: %d", r.status)
	}
	if h.active(t, tok["access_token"].(string)) {
		t.Error("access token of the disabled user's family still active")
	}
}

// TestLogout: RP-initiated logout. With a valid id_token_hint and a registered
// post_logout_redirect_uri the session ends and the browser goes back with state; without a
// hint the person confirms with a CSRF-protected form; an unregistered URI is never followed
// (logout_test.go has the attacks).
func TestLogout(t *testing.T) {
	h := newSIHarness(t)
	b := h.browser(t)
	code, verifier, _ := h.flow(t, b, siWeb, siWebRedirect, siAlice, "openid")
	idToken := h.redeem(t, siWeb, code, siWebRedirect, verifier).jsonMap(t)["id_token"].(string)

	if r := b.get(t, "/logout?"+url.Values{"client_id": {siWeb}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode()); r.header.Get("Location") != "" || strings.Contains(r.header.Get("Content-Security-Policy"), "evil.example") {
		t.Errorf("an unregistered post_logout_redirect_uri was followed: %d %q %q", r.status, r.header.Get("Location"), r.header.Get("Content-Security-Policy"))
	}

	// Without a hint: a confirmation page; its form needs the CSRF token.
	page := b.get(t, "/logout?"+url.Values{"client_id": {siWeb}, "post_logout_redirect_uri": {"https://web.example/signed-out"}, "state": {"s1"}}.Encode())
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="sign-out"`) {
		t.Fatalf("confirmation: %d %.300s", page.status, page.body)
	}
	if !strings.Contains(page.header.Get("Content-Security-Policy"), "form-action 'self' https://web.example;") {
		t.Errorf("logout CSP: %s", page.header.Get("Content-Security-Policy"))
	}
	tx, csrf := siForm(t, page)
	checkErrorPage(t, b.post(t, issuer.PathLogout, url.Values{"tx": {tx}}), http.StatusForbidden)

	// With the hint: no confirmation (the form above was consumed by the refused post).
	r := b.get(t, "/logout?"+url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {"https://web.example/signed-out"}, "state": {"s2"}}.Encode())
	if u := r.location(t); u.Host != "web.example" || u.Path != "/signed-out" || u.Query().Get("state") != "s2" {
		t.Errorf("after logout: %s", u)
	}
	if c := siFindCookie(r, "__Host-portcullis-session"); c == nil || c.MaxAge >= 0 {
		t.Errorf("the session cookie was not cleared: %+v", c)
	}
	_, challenge := pkce()
	if l := b.get(t, "/authorize?"+h.authParams(siWeb, siWebRedirect, challenge, "openid").Encode()).header.Get("Location"); !strings.HasPrefix(l, issuer.PathLogin+"?") {
		t.Errorf("signed out, yet authorize went to %q", l)
	}
	_ = csrf
	h.audit(t, "logout", nil)
}
