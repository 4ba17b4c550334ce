package login_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
)

// memUsers is an in-memory UserStore.
type memUsers struct {
	mu   sync.Mutex
	byID map[string]store.User
	err  error
}

func (m *memUsers) GetUserByName(_ context.Context, name string) (store.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return store.User{}, m.err
	}
	for _, u := range m.byID {
		if u.Username == name {
			return u, nil
		}
	}
	return store.User{}, store.ErrNotFound
}

func (m *memUsers) GetUser(_ context.Context, id string) (store.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.byID[id]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return u, nil
}

func (m *memUsers) UseTOTPStep(_ context.Context, id string, step int64) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.byID[id]
	if step <= u.TOTPLastStep {
		return false, nil
	}
	u.TOTPLastStep = step
	m.byID[id] = u
	return true, nil
}

func newUsers(t *testing.T) (*login.Users, *memUsers, map[string]string) {
	t.Helper()
	h, err := secret.NewHasher(make([]byte, 32), secret.HasherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	totp, err := login.NewTOTP(keys.NewMasterKey().Derive(keys.PurposeTOTP))
	if err != nil {
		t.Fatal(err)
	}
	ms := &memUsers{byID: map[string]store.User{}}
	secrets := map[string]string{}
	for _, u := range []struct {
		name     string
		disabled bool
		totp     bool
	}{{"alice", false, false}, {"dave", true, false}, {"carol", false, true}} {
		hash, err := login.HashPassword("password of " + u.name)
		if err != nil {
			t.Fatal(err)
		}
		usr := store.User{ID: login.NewUserID(), Username: u.name, PasswordHash: hash, Disabled: u.disabled}
		if u.totp {
			enr, err := totp.Enroll("Test", usr.ID, u.name)
			if err != nil {
				t.Fatal(err)
			}
			usr.TOTPSealed, secrets[u.name] = enr.Sealed, enr.Secret
		}
		ms.byID[usr.ID] = usr
	}
	return &login.Users{Store: ms, Hasher: h, TOTP: totp}, ms, secrets
}

func TestCheckPassword(t *testing.T) {
	users, ms, _ := newUsers(t)
	tests := []struct {
		name, user, password, reason string
	}{
		{"right", "alice", "password of alice", ""},
		{"wrong", "alice", "password of bob", "wrong password"},
		{"unknown", "mallory", "password of alice", "unknown user"},
		{"disabled, right password", "dave", "password of dave", "account disabled"},
		{"empty username", "", "x", "malformed username or password"},
		{"huge password", "alice", string(make([]byte, login.MaxPasswordLen+1)), "malformed username or password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := users.CheckPassword(t.Context(), tt.user, tt.password)
			if tt.reason == "" {
				if err != nil || u.Username != tt.user {
					t.Fatalf("%v %+v", err, u)
				}
				return
			}
			var f *login.Failure
			if !errors.As(err, &f) || f.Reason != tt.reason || !errors.Is(err, login.ErrBadCredentials) || u.ID != "" {
				t.Errorf("err %v, want failure %q", err, tt.reason)
			}
		})
	}
	ms.err = store.ErrUnavailable
	if _, err := users.CheckPassword(t.Context(), "alice", "password of alice"); !errors.Is(err, store.ErrUnavailable) || errors.Is(err, login.ErrBadCredentials) {
		t.Errorf("store down: %v", err)
	}
}

// TestCheckPasswordBusy: when no argon2id check can run (the caller gave up, or the queue
// of waiting checks is full) the answer is secret.ErrBusy — for known and unknown users
// alike, so it tells nothing — and never a failure that would count against the account.
func TestCheckPasswordBusy(t *testing.T) {
	users, _, _ := newUsers(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tt := range []struct{ name, user, password string }{
		{"known user, right password", "alice", "password of alice"},
		{"known user, wrong password", "alice", "a wrong password"},
		{"unknown user", "mallory", "a wrong password"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := users.CheckPassword(ctx, tt.user, tt.password)
			if !errors.Is(err, secret.ErrBusy) || errors.Is(err, login.ErrBadCredentials) {
				t.Errorf("err %v, want secret.ErrBusy and no failure", err)
			}
		})
	}
}

// TestUnknownUserCostsAnArgon2Check: the time of a refusal does not tell whether the user
// exists (both run one argon2id computation).
func TestUnknownUserCostsAnArgon2Check(t *testing.T) {
	users, _, _ := newUsers(t)
	measure := func(user string) time.Duration {
		start := time.Now()
		_, _ = users.CheckPassword(t.Context(), user, "nope")
		return time.Since(start)
	}
	measure("nobody") // builds the dummy hash once
	known, unknown := measure("alice"), measure("nobody")
	if unknown < known/3 {
		t.Errorf("unknown user answered in %v, known in %v: the difference tells which users exist", unknown, known)
	}
}

func TestCheckTOTP(t *testing.T) {
	users, ms, secrets := newUsers(t)
	carol, _ := ms.GetUserByName(t.Context(), "carol")
	now := time.Unix(1_900_000_000, 0)
	code := func(at time.Time) string {
		c, err := login.Code(secrets["carol"], at)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := users.CheckTOTP(t.Context(), carol, code(now), now); err != nil {
		t.Fatalf("current code: %v", err)
	}
	for _, tt := range []struct {
		name, code, reason string
		at                 time.Time
	}{
		{"same code again", code(now), "one-time code already used", now},
		{"previous step after a later one", code(now.Add(-30 * time.Second)), "one-time code already used", now},
		{"two steps old", code(now.Add(-60 * time.Second)), "wrong one-time code", now.Add(30 * time.Second)},
		{"not digits", "abcdef", "wrong one-time code", now},
		{"too long", code(now) + "1", "wrong one-time code", now},
		{"empty", "", "wrong one-time code", now},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var f *login.Failure
			if err := users.CheckTOTP(t.Context(), carol, tt.code, tt.at); !errors.As(err, &f) || f.Reason != tt.reason {
				t.Errorf("err %v, want %q", err, tt.reason)
			}
		})
	}
	// Clock skew: the next step is accepted (once).
	later := now.Add(60 * time.Second)
	if err := users.CheckTOTP(t.Context(), carol, code(later.Add(30*time.Second)), later); err != nil {
		t.Errorf("next step within skew: %v", err)
	}
	// A sealed secret copied onto another user does not open (AD binds it to the user id).
	alice, _ := ms.GetUserByName(t.Context(), "alice")
	alice.TOTPSealed = carol.TOTPSealed
	if err := users.CheckTOTP(t.Context(), alice, code(later.Add(time.Minute)), later.Add(time.Minute)); err == nil || errors.Is(err, login.ErrBadCredentials) {
		t.Errorf("copied secret: %v, want a technical error", err)
	}
	// Without the sealing key nobody with a second factor gets in.
	users.TOTP = nil
	if err := users.CheckTOTP(t.Context(), carol, code(later.Add(2*time.Minute)), later.Add(2*time.Minute)); !errors.Is(err, login.ErrBadCredentials) {
		t.Errorf("no TOTP key: %v", err)
	}
}

func TestCheckNewPassword(t *testing.T) {
	for _, tt := range []struct {
		p  string
		ok bool
	}{{"12345678", true}, {"1234567", false}, {"ünïcödé!", true}, {"two\nlines", false}, {"nul\x00byte", false}, {string([]byte{0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8}), false}} {
		if err := login.CheckNewPassword(tt.p); (err == nil) != tt.ok {
			t.Errorf("%q: %v", tt.p, err)
		}
	}
}

func TestThrottle(t *testing.T) {
	cfg := config.Login{Throttle: config.LoginThrottle{PerIP: "5/m", AccountFailures: 3, AccountWindow: time.Minute, AccountLock: 5 * time.Minute, IPFailures: 3, IPWindow: time.Minute, IPBlock: 10 * time.Minute}}.Effective()
	th, err := login.NewThrottle(cfg.Throttle, login.ThrottleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	now := time.Unix(1_900_000_000, 0)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")

	// The account lock: failures from two addresses add up; the case of the name does not matter.
	for i, ip := range []netip.Addr{a, b, a} {
		if _, err := th.Failure(ctx, ip, []string{"Alice", "alice", "ALICE"}[i], now); err != nil {
			t.Fatal(err)
		}
	}
	v, err := th.Admit(ctx, b, "alice", now)
	if err != nil || !v.AccountLocked || v.RateLimited || v.AddressBlocked {
		t.Fatalf("after 3 failures: %+v %v", v, err)
	}
	if v, _ := th.Admit(ctx, b, "bob", now); v.AccountLocked {
		t.Error("another account is locked too")
	}
	if v, _ := th.Admit(ctx, b, "alice", now.Add(6*time.Minute)); v.AccountLocked {
		t.Error("the lock did not end")
	}

	// The address block: a third failure from a blocks a, whatever the account.
	fired, err := th.Failure(ctx, a, "zed", now)
	if err != nil || len(fired) != 1 || fired[0].Rule != "login_ip_failures" {
		t.Fatalf("fired %+v %v", fired, err)
	}
	if v, _ := th.Admit(ctx, a, "someone", now.Add(time.Second)); !v.AddressBlocked || v.RetryAfter <= 0 {
		t.Errorf("blocked address admitted: %+v", v)
	}

	// The rate: every attempt counts.
	c := netip.MustParseAddr("203.0.113.9")
	limited := 0
	for range 20 {
		if v, _ := th.Admit(ctx, c, "x", now); v.RateLimited {
			limited++
		}
	}
	if limited == 0 {
		t.Error("20 attempts at once were never rate limited")
	}
}

func TestSessions(t *testing.T) {
	st := &memEphemeral{m: map[string][]byte{}}
	now := time.Unix(1_900_000_000, 0)
	ss := &login.Sessions{Store: st, TTL: time.Hour, Now: func() time.Time { return now }}
	id, s, err := ss.Create(t.Context(), login.Session{UserID: "u1", AMR: []string{"pwd"}, AuthTime: now})
	if err != nil || len(id) != 43 || !s.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("%q %+v %v", id, s, err)
	}
	for k := range st.m {
		if k == id {
			t.Error("the store holds the session id itself")
		}
	}
	got, ok, err := ss.Get(t.Context(), id)
	if err != nil || !ok || got.UserID != "u1" {
		t.Fatalf("%+v %v %v", got, ok, err)
	}
	for _, bad := range []string{"", "short", id[:42] + "x", id + "x"} {
		if _, ok, _ := ss.Get(t.Context(), bad); ok {
			t.Errorf("%q opened a session", bad)
		}
	}
	now = now.Add(2 * time.Hour)
	if _, ok, _ := ss.Get(t.Context(), id); ok {
		t.Error("expired session still valid")
	}
	if err := ss.Delete(t.Context(), id); err != nil {
		t.Error(err)
	}
}

type memEphemeral struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (e *memEphemeral) PutEphemeral(_ context.Context, kind, key string, v []byte, _ time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = v
	return nil
}

func (e *memEphemeral) GetEphemeral(_ context.Context, kind, key string) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.m[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	return v, nil
}

func (e *memEphemeral) TakeEphemeral(ctx context.Context, kind, key string) ([]byte, error) {
	v, err := e.GetEphemeral(ctx, kind, key)
	if err == nil {
		_ = e.DeleteEphemeral(ctx, kind, key)
	}
	return v, err
}

func (e *memEphemeral) DeleteEphemeral(_ context.Context, _, key string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
	return nil
}

// TestAccountSubject: every spelling the store resolves to one user names one lock; other
// names get locks of their own.
func TestAccountSubject(t *testing.T) {
	alice := login.AccountSubject("alice")
	for _, tt := range []struct {
		name, account string
		same          bool
	}{
		{"capitals", "ALICE", true},
		{"mixed case", "Alice", true},
		{"full-width", "\uff41\uff4c\uff49\uff43\uff45", true},
		{"full-width capitals", "\uff21\uff2c\uff29\uff23\uff25", true},
		{"another user", "bob", false},
		{"a name no user can have", "alice\u0000", false},
		{"with a space", "al ice", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := login.AccountSubject(tt.account) == alice; got != tt.same {
				t.Errorf("AccountSubject(%q) == AccountSubject(alice): %v, want %v", tt.account, got, tt.same)
			}
		})
	}
}
