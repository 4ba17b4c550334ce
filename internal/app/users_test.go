package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// userSetup is an issuer-only config (with a public web client) in a temp dir, with real
// certificates and a master key, and its listener bound.
type userSetup struct {
	dir, config, url string
	ln               net.Listener
}

const usersTestConfig = `issuer:
  url: %[1]s
  listen: %[2]s
  tls: { cert: issuer.pem, key: issuer-key.pem }
  keys: { master_key_file: master.key }
  login: { totp_issuer: "Portcullis test" }
  scopes:
    orders:read: { claims: [customer_id] }
  clients:
    - id: web
      auth_method: none
      grant_types: [authorization_code]
      scopes: [openid, profile, orders:read]
      redirect_uris: ["https://web.example/cb"]
storage: { driver: sqlite, dsn: "file:portcullis.db" }
log: { level: debug, format: text }
`

func newUserSetup(t *testing.T) *userSetup {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ca, err := loadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.issue(dir, "issuer", "portcullis test issuer"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.key"), []byte(keys.NewMasterKey().Encode()), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &userSetup{dir: dir, config: filepath.Join(dir, "portcullis.yaml"), url: "https://" + ln.Addr().String(), ln: ln}
	if err := os.WriteFile(s.config, fmt.Appendf(nil, usersTestConfig, s.url, ln.Addr().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *userSetup) run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(t.Context(), append(args, "--config", s.config), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// db opens the setup's store as the commands do; the caller closes it.
func (s *userSetup) db(t *testing.T) *sqlstore.DB {
	t.Helper()
	cfg, code, ok := env{ctx: t.Context(), stderr: io.Discard}.loadConfig(s.config)
	if !ok {
		t.Fatalf("config: %d", code)
	}
	db, err := OpenStore(t.Context(), cfg, telemetry.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func (s *userSetup) user(t *testing.T, name string) store.User {
	t.Helper()
	db := s.db(t)
	defer db.Close()
	u, err := db.GetUserByName(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestUsersCommands: add (password from stdin only), list, disable, enable, set-password,
// revoke-consent, and the refusals.
func TestUsersCommands(t *testing.T) {
	s := newUserSetup(t)
	code, out, errOut := s.run(t, "correct horse battery\n", "users", "add", "--username", "erin",
		"--attr", "name=Erin Example", "--attr", "email_verified=true", "--attr", "customer_id=acme")
	if code != ExitOK || !strings.Contains(out, "username: erin") {
		t.Fatalf("add: %d %s %s", code, out, errOut)
	}
	u := s.user(t, "erin")
	if u.Attributes["name"] != "Erin Example" || u.Attributes["email_verified"] != true || u.Attributes["customer_id"] != "acme" {
		t.Errorf("attributes %v", u.Attributes)
	}
	if ok, err := secret.VerifyArgon2id(u.PasswordHash, "correct horse battery"); !ok || err != nil || strings.Contains(u.PasswordHash, "horse") {
		t.Errorf("stored password hash %q does not verify (%v)", u.PasswordHash, err)
	}

	for _, tt := range []struct {
		name  string
		stdin string
		args  []string
	}{
		{"duplicate (case-insensitive)", "another password\n", []string{"users", "add", "--username", "ERIN"}},
		{"no password on stdin", "", []string{"users", "add", "--username", "gina"}},
		{"short password", "short\n", []string{"users", "add", "--username", "gina"}},
		{"password on the command line", "", []string{"users", "add", "--username", "gina", "--password", "secret123"}},
		{"reserved claim as attribute", "long enough pw\n", []string{"users", "add", "--username", "gina", "--attr", "sub=root"}},
		{"bad boolean", "long enough pw\n", []string{"users", "add", "--username", "gina", "--attr", "email_verified=maybe"}},
		{"attribute twice", "long enough pw\n", []string{"users", "add", "--username", "gina", "--attr", "a=1", "--attr", "a=2"}},
		{"unknown user", "", []string{"users", "disable", "--username", "nobody"}},
		{"revoke-consent without client", "", []string{"users", "revoke-consent", "--username", "erin"}},
		{"unknown subcommand", "", []string{"users", "delete", "--username", "erin"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, out, errOut := s.run(t, tt.stdin, tt.args...); code != ExitUsage {
				t.Errorf("exit %d, want %d: %s %s", code, ExitUsage, out, errOut)
			}
		})
	}

	code, out, _ = s.run(t, "another long one\n", "users", "add", "--username", "frank", "--totp")
	if code != ExitOK || !strings.Contains(out, "totp_uri: otpauth://totp/Portcullis%20test:frank?") || !regexp.MustCompile(`totp_secret: [A-Z2-7]{32}\n`).MatchString(out) {
		t.Fatalf("add --totp: %d %s", code, out)
	}
	if s.user(t, "frank").TOTPSealed == nil {
		t.Error("no sealed TOTP secret stored")
	}

	if code, out, _ = s.run(t, "", "users", "disable", "--username", "erin"); code != ExitOK {
		t.Fatalf("disable: %d %s", code, out)
	}
	_, list, _ := s.run(t, "", "users", "list")
	if !regexp.MustCompile(`erin\s+u_\S+\s+disabled\s+no\s+customer_id,email_verified,name`).MatchString(list) ||
		!regexp.MustCompile(`frank\s+u_\S+\s+active\s+yes`).MatchString(list) {
		t.Errorf("list:\n%s", list)
	}
	if code, _, _ = s.run(t, "", "users", "enable", "--username", "erin"); code != ExitOK || s.user(t, "erin").Disabled {
		t.Error("enable did not")
	}
	if code, _, _ = s.run(t, "a brand new password\n", "users", "set-password", "--username", "erin"); code != ExitOK {
		t.Fatal("set-password failed")
	}
	if ok, _ := secret.VerifyArgon2id(s.user(t, "erin").PasswordHash, "a brand new password"); !ok {
		t.Error("set-password did not replace the hash")
	}

	if _, out, _ = s.run(t, "", "users", "revoke-consent", "--username", "erin", "--client", "web"); !strings.Contains(out, "no consent") {
		t.Errorf("revoke-consent without one: %s", out)
	}
	db := s.db(t)
	if err := db.SaveConsent(t.Context(), store.Consent{Subject: s.user(t, "erin").ID, ClientID: "web", Scopes: []string{"openid"}, GrantedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if code, out, _ = s.run(t, "", "users", "revoke-consent", "--username", "erin", "--client", "web"); code != ExitOK || !strings.Contains(out, "revoked") {
		t.Errorf("revoke-consent: %d %s", code, out)
	}
	db = s.db(t)
	defer db.Close()
	if _, err := db.GetConsent(t.Context(), s.user(t, "erin").ID, "web"); err == nil {
		t.Error("the consent is still stored")
	}
}

// TestTOTPSignInThroughRun: a user added with `users add --totp` signs in through the issuer
// that Run starts from the same config (the sealing key is derived from the master key on
// both sides), with the code from the printed secret; the password alone is not enough.
func TestTOTPSignInThroughRun(t *testing.T) {
	s := newUserSetup(t)
	code, out, errOut := s.run(t, "hunter2hunter2\n", "users", "add", "--username", "frank", "--totp")
	if code != ExitOK {
		t.Fatalf("add: %d %s", code, errOut)
	}
	secretB32 := regexp.MustCompile(`totp_secret: (\S+)`).FindStringSubmatch(out)[1]
	cfg, _, ok := env{ctx: t.Context(), stderr: io.Discard}.loadConfig(s.config)
	if !ok {
		t.Fatal("config")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- Run(ctx, cfg, Options{Listeners: map[string]net.Listener{RoleIssuer: s.ln}, Ready: func() { close(ready) }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}

	pool := x509.NewCertPool()
	pemCA, err := os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pemCA)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, form url.Values) (*http.Response, string) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, s.url+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", s.url)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	field := func(page, name string) string {
		m := regexp.MustCompile(`name="` + name + `" value="([^"]+)"`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no %s field: %.300s", name, page)
		}
		return m[1]
	}
	q := url.Values{"response_type": {"code"}, "client_id": {"web"}, "redirect_uri": {"https://web.example/cb"}, "scope": {"openid"},
		"state": {"s"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	resp, _ := do(http.MethodGet, "/authorize?"+q.Encode(), nil)
	_, page := do(http.MethodGet, resp.Header.Get("Location"), nil)
	resp, _ = do(http.MethodPost, "/login", url.Values{"tx": {field(page, "tx")}, "csrf": {field(page, "csrf")}, "username": {"frank"}, "password": {"hunter2hunter2"}})
	if !strings.HasPrefix(resp.Header.Get("Location"), "/login/otp?") {
		t.Fatalf("after the password: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page = do(http.MethodGet, resp.Header.Get("Location"), nil)
	totpCode, err := login.Code(secretB32, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp, body := do(http.MethodPost, "/login/otp", url.Values{"tx": {field(page, "tx")}, "csrf": {field(page, "csrf")}, "code": {totpCode}})
	if !strings.HasPrefix(resp.Header.Get("Location"), "/consent?") {
		t.Fatalf("after the code: %d %q %.300s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

// TestUsersCommandsEndEarlierSignIns: set-password and disable record when the user's
// credentials changed, which ends every earlier session and refresh-token family; adding a
// user and enabling one do not move it.
func TestUsersCommandsEndEarlierSignIns(t *testing.T) {
	s := newUserSetup(t)
	if code, out, errOut := s.run(t, "correct horse battery\n", "users", "add", "--username", "erin"); code != ExitOK {
		t.Fatalf("add: %d %s %s", code, out, errOut)
	}
	if got := s.user(t, "erin").CredentialsChangedAt; !got.IsZero() {
		t.Errorf("a new user has credentials_changed_at %v", got)
	}
	var last time.Time
	for _, tt := range []struct {
		name  string
		stdin string
		args  []string
		moves bool
	}{
		{"set-password", "a brand new password\n", []string{"users", "set-password", "--username", "erin"}, true},
		{"disable", "", []string{"users", "disable", "--username", "erin"}, true},
		{"enable", "", []string{"users", "enable", "--username", "erin"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			if code, out, errOut := s.run(t, tt.stdin, tt.args...); code != ExitOK {
				t.Fatalf("%d %s %s", code, out, errOut)
			}
			got := s.user(t, "erin").CredentialsChangedAt
			switch {
			case tt.moves && (got.Before(before.Add(-time.Millisecond)) || !got.After(last)):
				t.Errorf("credentials_changed_at %v, want a time after %v", got, before)
			case !tt.moves && !got.Equal(last):
				t.Errorf("credentials_changed_at moved from %v to %v", last, got)
			}
			last = got
		})
	}
}
