package demoweb_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/app"
)

// runningDemo is `portcullis demo` run in-process by app.Main, as the binary runs it.
type runningDemo struct {
	dir  string
	info app.DemoInfo
	http *http.Client // trusts the demo CA; its own cookie jar
	out  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func startDemo(t *testing.T) *runningDemo {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- app.Main(ctx, []string{"demo", "--dir", dir, "--ports", "auto"}, strings.NewReader(""), out, errOut)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("the demo did not stop")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		select {
		case code := <-done:
			t.Fatalf("demo exited %d: %s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not start: %s", errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	d := &runningDemo{dir: dir, out: out}
	b, err := os.ReadFile(filepath.Join(dir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d.info); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(d.info.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	jar, _ := cookiejar.New(nil)
	d.http = &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return d
}

func (d *runningDemo) password(t *testing.T, user string) string {
	t.Helper()
	for _, u := range d.info.Users {
		if u.Username == user {
			return u.Password
		}
	}
	t.Fatalf("no user %s in demo.json", user)
	return ""
}

// TestDemoJSONListsUsersAndWebClient: demo.json has the users with their passwords and the
// public web client with its redirect URIs; the walkthrough tells how to sign in.
func TestDemoJSONListsUsersAndWebClient(t *testing.T) {
	d := startDemo(t)
	if len(d.info.Users) != 2 || d.info.Users[0].Username != "alice" || d.info.Users[1].Username != "bob" || len(d.password(t, "alice")) < 12 {
		t.Errorf("users: %+v", d.info.Users)
	}
	var web *app.DemoClient
	for i, c := range d.info.Clients {
		if c.ClientID == "demo-web" {
			web = &d.info.Clients[i]
		}
	}
	if web == nil || web.ClientSecret != "" || len(web.RedirectURIs) == 0 || web.RedirectURIs[0] != d.info.Upstream+"/app/callback" {
		t.Fatalf("demo-web: %+v", web)
	}
	for _, s := range []string{d.info.Upstream + "/app/", d.password(t, "alice"), d.password(t, "bob"), d.info.CAFile} {
		if !strings.Contains(d.out.String(), s) {
			t.Errorf("the walkthrough does not mention %q", s)
		}
	}
}

// TestDemoSignInWithHTTPClient: the demo page's code flow driven without a browser: alice
// signs in, consents, and the page shows her name and only acme's orders, read through the
// gateway; a reload refreshes nothing and signing out ends both sessions.
func TestDemoSignInWithHTTPClient(t *testing.T) {
	d := startDemo(t)
	c := *d.http
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var lastBody string
	do := func(method, u string, form url.Values) *http.Response {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, u, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			o, _ := url.Parse(u)
			req.Header.Set("Origin", o.Scheme+"://"+o.Host)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		lastBody = string(b)
		return resp
	}
	abs := func(base, loc string) string {
		b, _ := url.Parse(base)
		l, _ := url.Parse(loc)
		return b.ResolveReference(l).String()
	}
	field := func(name string) string {
		m := regexp.MustCompile(`name="` + name + `" value="([^"]+)"`).FindStringSubmatch(lastBody)
		if m == nil {
			t.Fatalf("no %s field: %.300s", name, lastBody)
		}
		return m[1]
	}
	iss := d.info.Issuer
	r := do(http.MethodGet, d.info.Upstream+"/app/login", nil)
	r = do(http.MethodGet, r.Header.Get("Location"), nil)
	do(http.MethodGet, abs(iss, r.Header.Get("Location")), nil)
	r = do(http.MethodPost, iss+"/login", url.Values{"tx": {field("tx")}, "csrf": {field("csrf")}, "username": {"alice"}, "password": {"wrong password"}})
	if r.StatusCode != http.StatusOK || !strings.Contains(lastBody, "Wrong username or password.") {
		t.Fatalf("wrong password: %d", r.StatusCode)
	}
	r = do(http.MethodPost, iss+"/login", url.Values{"tx": {field("tx")}, "csrf": {field("csrf")}, "username": {"alice"}, "password": {d.password(t, "alice")}})
	do(http.MethodGet, abs(iss, r.Header.Get("Location")), nil)
	r = do(http.MethodPost, iss+"/consent", url.Values{"tx": {field("tx")}, "csrf": {field("csrf")}, "decision": {"allow"}})
	cb := r.Header.Get("Location")
	if !strings.HasPrefix(cb, d.info.Upstream+"/app/callback?") {
		t.Fatalf("consent redirected to %q", cb)
	}
	r = do(http.MethodGet, cb, nil)
	if r.Header.Get("Location") != "/app/" {
		t.Fatalf("callback: %d %.300s", r.StatusCode, lastBody)
	}
	// The code was redeemed by the page: replaying it fails.
	if r2 := do(http.MethodGet, cb, nil); r2.StatusCode == http.StatusSeeOther {
		t.Error("a replayed callback signed in again")
	}
	do(http.MethodGet, d.info.Upstream+"/app/", nil)
	if !strings.Contains(lastBody, `<strong id="user-name">Alice Liddell</strong>`) {
		t.Fatalf("home page: %.600s", lastBody)
	}
	if !strings.Contains(lastBody, "A-1001") || strings.Contains(lastBody, "G-2001") {
		t.Errorf("orders on the page (want acme's only): %s", lastBody)
	}
	r = do(http.MethodPost, d.info.Upstream+"/app/logout", url.Values{"csrf": {field("csrf")}})
	if !strings.HasPrefix(r.Header.Get("Location"), iss+"/logout?") {
		t.Fatalf("sign out went to %q", r.Header.Get("Location"))
	}
	r = do(http.MethodGet, r.Header.Get("Location"), nil)
	if r.Header.Get("Location") != d.info.Upstream+"/app/" {
		t.Errorf("the issuer's logout (with id_token_hint) went to %q: %.200s", r.Header.Get("Location"), lastBody)
	}
	do(http.MethodGet, d.info.Upstream+"/app/", nil)
	if !strings.Contains(lastBody, `id="sign-in"`) {
		t.Error("still signed in after signing out")
	}
}
