package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"time"
)

// Login configures user sign-in at the issuer: the authorization endpoint's sessions and
// transactions, the second factor, and the throttling of sign-in attempts. Every field has a
// safe default (see Effective); a zero field means "the default".
type Login struct {
	// SessionTTL is how long a sign-in lasts: within it, another authorization request from
	// the same browser needs no password (default 8h, at most 720h).
	SessionTTL time.Duration `yaml:"session_ttl"`
	// TransactionTTL is how long a person has to finish signing in and consenting once an
	// authorization request arrived (default 10m, between 1m and 1h).
	TransactionTTL time.Duration `yaml:"transaction_ttl"`
	// TOTPIssuer is the name authenticator apps show next to a user's codes (default
	// "Portcullis").
	TOTPIssuer string `yaml:"totp_issuer"`
	// TrustedProxies are the addresses (CIDRs) of reverse proxies in front of the issuer whose
	// X-Forwarded-For is believed when throttling by client address. Empty: the TCP peer is
	// the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Throttle bounds password and code guessing.
	Throttle LoginThrottle `yaml:"throttle"`
}

// LoginThrottle bounds sign-in attempts per client address and per account.
type LoginThrottle struct {
	// PerIP is the rate of sign-in form posts (password and code) one address may make,
	// "N/s", "N/m" or "N/h" (default 30/m, burst 10).
	PerIP string `yaml:"per_ip"`
	// StartsPerIP is the rate of new sign-in transactions one address may start at
	// /authorize (and by pushing for a public client to /par), all of them at once if need
	// be: /authorize answers anyone and stores a transaction for each (default 30/m). Raise
	// it when many people sign in from behind one address the issuer cannot see past.
	StartsPerIP string `yaml:"starts_per_ip"`
	// AccountFailures wrong passwords or codes for one account within AccountWindow lock the
	// account for AccountLock (defaults 10, 15m, 15m). A locked account gets the same answer
	// as a wrong password, so the lock tells an attacker nothing; the lock is short because
	// anyone can trigger it.
	AccountFailures int           `yaml:"account_failures"`
	AccountWindow   time.Duration `yaml:"account_window"`
	AccountLock     time.Duration `yaml:"account_lock"`
	// IPFailures failures from one address within IPWindow block the address from signing in
	// for IPBlock (defaults 30, 15m, 30m).
	IPFailures int           `yaml:"ip_failures"`
	IPWindow   time.Duration `yaml:"ip_window"`
	IPBlock    time.Duration `yaml:"ip_block"`
}

// Defaults of Login.
const (
	DefaultSessionTTL      = 8 * time.Hour
	DefaultTransactionTTL  = 10 * time.Minute
	DefaultTOTPIssuer      = "Portcullis"
	DefaultLoginPerIP      = "30/m"
	DefaultStartsPerIP     = "30/m"
	DefaultAccountFailures = 10
	DefaultAccountWindow   = 15 * time.Minute
	DefaultAccountLock     = 15 * time.Minute
	DefaultIPFailures      = 30
	DefaultIPWindow        = 15 * time.Minute
	DefaultIPBlock         = 30 * time.Minute
)

// Effective returns l with every zero field set to its default.
func (l Login) Effective() Login {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&l.SessionTTL, DefaultSessionTTL)
	def(&l.TransactionTTL, DefaultTransactionTTL)
	if l.TOTPIssuer == "" {
		l.TOTPIssuer = DefaultTOTPIssuer
	}
	t := &l.Throttle
	if t.PerIP == "" {
		t.PerIP = DefaultLoginPerIP
	}
	if t.StartsPerIP == "" {
		t.StartsPerIP = DefaultStartsPerIP
	}
	if t.AccountFailures == 0 {
		t.AccountFailures = DefaultAccountFailures
	}
	def(&t.AccountWindow, DefaultAccountWindow)
	def(&t.AccountLock, DefaultAccountLock)
	if t.IPFailures == 0 {
		t.IPFailures = DefaultIPFailures
	}
	def(&t.IPWindow, DefaultIPWindow)
	def(&t.IPBlock, DefaultIPBlock)
	return l
}

// TrustedProxyPrefixes parses TrustedProxies (validated at load).
func (l Login) TrustedProxyPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(l.TrustedProxies))
	for _, s := range l.TrustedProxies {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out
}

// validateLogin checks issuer.login.
func (is *Issuer) validateLogin(ps *Problems) {
	const p = "issuer.login"
	l := is.Login
	between := func(path string, d, lo, hi time.Duration) {
		if d != 0 && (d < lo || d > hi) {
			ps.add(p+"."+path, "must be between %s and %s", lo, hi)
		}
	}
	between("session_ttl", l.SessionTTL, time.Minute, 720*time.Hour)
	between("transaction_ttl", l.TransactionTTL, time.Minute, time.Hour)
	if len(l.TOTPIssuer) > 64 || strings.ContainsAny(l.TOTPIssuer, ":\x00\r\n") {
		ps.add(p+".totp_issuer", "at most 64 characters, without ':' or control characters")
	}
	for i, s := range l.TrustedProxies {
		if _, err := netip.ParsePrefix(s); err != nil {
			if _, err := netip.ParseAddr(s); err != nil {
				ps.add(fmt.Sprintf("%s.trusted_proxies[%d]", p, i), "not an address or CIDR")
			}
		}
	}
	t := l.Throttle
	if t.PerIP != "" && !validLoginRate(t.PerIP) {
		ps.add(p+".throttle.per_ip", "must be a rate like 30/m (at least 1/h, at most 100/s)")
	}
	if t.StartsPerIP != "" && !validLoginRate(t.StartsPerIP) {
		ps.add(p+".throttle.starts_per_ip", "must be a rate like 30/m (at least 1/h, at most 100/s)")
	}
	count := func(path string, n int) {
		if n < 0 || n > 10000 {
			ps.add(p+".throttle."+path, "must be between 1 and 10000")
		}
	}
	count("account_failures", t.AccountFailures)
	count("ip_failures", t.IPFailures)
	between("throttle.account_window", t.AccountWindow, time.Second, 24*time.Hour)
	between("throttle.account_lock", t.AccountLock, time.Second, 24*time.Hour)
	between("throttle.ip_window", t.IPWindow, time.Second, 24*time.Hour)
	between("throttle.ip_block", t.IPBlock, time.Second, 7*24*time.Hour)
}

// validLoginRate reports whether s is N/s, N/m or N/h within sane bounds for sign-in attempts.
func validLoginRate(s string) bool {
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return false
	}
	var n int
	if _, err := fmt.Sscanf(num, "%d", &n); err != nil || fmt.Sprint(n) != num || n < 1 {
		return false
	}
	switch unit {
	case "s":
		return n <= 100
	case "m":
		return n <= 6000
	case "h":
		return n <= 360000
	}
	return false
}

// BuiltinScopeClaims are the claims the OpenID Connect scopes assert when issuer.scopes does
// not configure them (OpenID Connect Core §5.4). Values come from the user's attributes; a
// user without an attribute simply does not get that claim.
var BuiltinScopeClaims = map[string][]string{
	"openid":         nil,
	"offline_access": nil,
	"profile": {"name", "family_name", "given_name", "middle_name", "nickname", "preferred_username",
		"profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"},
	"email": {"email", "email_verified"},
}

// EffectiveScopes returns issuer.scopes with the built-in OpenID Connect scopes added where
// the file does not define them: the one central map of which scope asserts which claims.
func (is *Issuer) EffectiveScopes() map[string]Scope {
	out := make(map[string]Scope, len(is.Scopes)+len(BuiltinScopeClaims))
	maps.Copy(out, is.Scopes)
	for name, claims := range BuiltinScopeClaims {
		if _, ok := out[name]; !ok {
			out[name] = Scope{Claims: claims}
		}
	}
	return out
}

// CheckClaimName reports why name cannot name a claim (a user attribute that scopes assert),
// or nil: claim names follow issuer.scopes.*.claims' rules, and the issuer's own claims
// (sub, iss, aud, ...) cannot be supplied.
func CheckClaimName(name string) error {
	var ps Problems
	checkClaimName(&ps, "", name)
	if len(ps) > 0 {
		return errors.New(ps[0].Message)
	}
	return nil
}
