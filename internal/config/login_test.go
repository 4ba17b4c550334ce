package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// loginConfig is a valid issuer with a login section appended.
func loginConfig(t *testing.T, login string) (*Config, error) {
	t.Helper()
	yaml := strings.Replace(`issuer:
  url: https://auth.example.com
  listen: 127.0.0.1:9443
  tls: { cert: issuer.pem, key: issuer-key.pem }
  keys: { master_key_file: master.key }
  login:
LOGIN
`, "LOGIN", login, 1)
	return Parse([]byte(yaml), issuerDir(t), noEnv)
}

func TestLoginDefaults(t *testing.T) {
	cfg, err := loginConfig(t, "    session_ttl: 1h\n    throttle: { per_ip: 5/m }")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Issuer.Login.Effective()
	want := Login{SessionTTL: time.Hour, TransactionTTL: DefaultTransactionTTL, TOTPIssuer: DefaultTOTPIssuer,
		Throttle: LoginThrottle{PerIP: "5/m", StartsPerIP: DefaultStartsPerIP, AccountFailures: DefaultAccountFailures, AccountWindow: DefaultAccountWindow,
			AccountLock: DefaultAccountLock, IPFailures: DefaultIPFailures, IPWindow: DefaultIPWindow, IPBlock: DefaultIPBlock}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("effective (-want +got):\n%s", diff)
	}
}

func TestLoginValidation(t *testing.T) {
	tests := []struct{ name, login, path string }{
		{"session too long", "    session_ttl: 1000h", "issuer.login.session_ttl"},
		{"transaction too short", "    transaction_ttl: 5s", "issuer.login.transaction_ttl"},
		{"bad rate", "    throttle: { per_ip: lots }", "issuer.login.throttle.per_ip"},
		{"rate too high", "    throttle: { per_ip: 1000/s }", "issuer.login.throttle.per_ip"},
		{"bad starts rate", "    throttle: { starts_per_ip: 30 }", "issuer.login.throttle.starts_per_ip"},
		{"starts rate too high", "    throttle: { starts_per_ip: 101/s }", "issuer.login.throttle.starts_per_ip"},
		{"negative failures", "    throttle: { account_failures: -1 }", "issuer.login.throttle.account_failures"},
		{"lock too long", "    throttle: { account_lock: 48h }", "issuer.login.throttle.account_lock"},
		{"bad proxy", "    trusted_proxies: [not-an-ip]", "issuer.login.trusted_proxies[0]"},
		{"totp issuer with colon", `    totp_issuer: "a:b"`, "issuer.login.totp_issuer"},
		{"unknown key", "    remember_me: true", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loginConfig(t, tt.login)
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.path != "" && !strings.Contains(err.Error(), tt.path) {
				t.Errorf("problems %v do not name %s", err, tt.path)
			}
		})
	}
	if _, err := loginConfig(t, "    trusted_proxies: [10.0.0.0/8, 192.0.2.1]\n    throttle: { per_ip: 20/m, starts_per_ip: 600/m, ip_block: 1h }"); err != nil {
		t.Errorf("valid login section refused: %v", err)
	}
}

func TestEffectiveScopes(t *testing.T) {
	is := &Issuer{Scopes: map[string]Scope{"profile": {Claims: []string{"name"}}, "orders:read": {Claims: []string{"customer_id"}}}}
	got := is.EffectiveScopes()
	if !cmp.Equal(got["profile"].Claims, []string{"name"}) {
		t.Errorf("a configured built-in scope was replaced: %v", got["profile"])
	}
	if !cmp.Equal(got["email"].Claims, []string{"email", "email_verified"}) || got["openid"].Claims != nil {
		t.Errorf("defaults: %v", got)
	}
	if _, ok := is.Scopes["email"]; ok {
		t.Error("EffectiveScopes changed the config")
	}
}

func TestCheckClaimName(t *testing.T) {
	for name, ok := range map[string]bool{"name": true, "customer_id": true, "sub": false, "amr": false, "1x": false, "": false} {
		if err := CheckClaimName(name); (err == nil) != ok {
			t.Errorf("%q: %v", name, err)
		}
	}
}
