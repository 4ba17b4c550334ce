package login

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
)

// Password limits. The upper bound keeps an argon2id input reasonable; the lower one is
// NIST SP 800-63B's minimum for a memorised secret.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// ErrBadCredentials is the one answer a person gets for an unknown user, a wrong password, a
// disabled account or a locked one: they are told apart only in the audit trail (Reason).
var ErrBadCredentials = errors.New("login: wrong username or password")

// Failure is a refused sign-in: ErrBadCredentials for the person, Reason for the audit trail.
type Failure struct {
	Reason string // "unknown user", "wrong password", "account disabled", ...
	UserID string // when the user exists
}

func (f *Failure) Error() string { return "login: " + f.Reason }

// Is makes errors.Is(f, ErrBadCredentials) true.
func (f *Failure) Is(target error) bool { return target == ErrBadCredentials }

// UserStore is what Users needs of the store.
type UserStore interface {
	GetUserByName(ctx context.Context, username string) (store.User, error)
	GetUser(ctx context.Context, id string) (store.User, error)
	UseTOTPStep(ctx context.Context, userID string, step int64) (bool, error)
}

// Users checks passwords and second factors. Build it with its fields set; TOTP may be nil,
// in which case users with a second factor cannot sign in (they are refused, never let in
// on the password alone).
type Users struct {
	Store  UserStore
	Hasher *secret.Hasher // bounds concurrent argon2id computations
	TOTP   *TOTP

	dummyOnce sync.Once
	dummy     string
}

// CheckPassword returns the user whose username and password these are. Every refusal is a
// *Failure (errors.Is ErrBadCredentials); other errors are technical (store unavailable, or
// secret.ErrBusy when no argon2id check could run before ctx ended or the queue of waiting
// checks was full: nothing was learnt, so it must not count as a failure).
// An unknown username costs the same argon2id computation as a known one, so response
// times do not reveal which accounts exist.
func (u *Users) CheckPassword(ctx context.Context, username, password string) (store.User, error) {
	if username == "" || len(username) > 256 || !utf8.ValidString(username) || len(password) > MaxPasswordLen {
		if err := u.burn(ctx, password); err != nil {
			return store.User{}, err
		}
		return store.User{}, &Failure{Reason: "malformed username or password"}
	}
	usr, err := u.Store.GetUserByName(ctx, username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if err := u.burn(ctx, password); err != nil {
			return store.User{}, err
		}
		return store.User{}, &Failure{Reason: "unknown user"}
	case err != nil:
		return store.User{}, fmt.Errorf("login: look up user: %w", err)
	}
	ok, err := u.Hasher.VerifyContext(ctx, "user:"+usr.ID, usr.PasswordHash, password)
	switch {
	case errors.Is(err, secret.ErrBusy):
		return store.User{}, fmt.Errorf("login: %w", err)
	case err != nil:
		return store.User{}, fmt.Errorf("login: user %s: stored password hash: %w", usr.ID, err)
	case !ok:
		return store.User{}, &Failure{Reason: "wrong password", UserID: usr.ID}
	case usr.Disabled:
		return store.User{}, &Failure{Reason: "account disabled", UserID: usr.ID}
	}
	return usr, nil
}

// burn spends one argon2id check on a hash nobody's password matches. Its only error is
// secret.ErrBusy, exactly when a real check would have been busy too.
func (u *Users) burn(ctx context.Context, password string) error {
	u.dummyOnce.Do(func() { u.dummy = secret.HashArgon2id(secret.Random(32)) })
	if _, err := u.Hasher.VerifyContext(ctx, "user:-", u.dummy, password); errors.Is(err, secret.ErrBusy) {
		return fmt.Errorf("login: %w", err)
	}
	return nil
}

// CheckTOTP verifies a six-digit code of usr's second factor at now: the current time step
// or one either side (clock skew), each step accepted at most once and never one older than
// the last accepted (the store records it atomically), so a code seen over a shoulder or in
// a log cannot be replayed. A refusal is a *Failure.
func (u *Users) CheckTOTP(ctx context.Context, usr store.User, code string, now time.Time) error {
	if u.TOTP == nil {
		return &Failure{Reason: "second factor cannot be checked: no TOTP key configured", UserID: usr.ID}
	}
	if usr.TOTPSealed == nil {
		return &Failure{Reason: "user has no second factor", UserID: usr.ID}
	}
	step, ok, err := u.TOTP.Match(usr.ID, usr.TOTPSealed, strings.TrimSpace(code), now)
	if err != nil {
		return fmt.Errorf("login: user %s: %w", usr.ID, err)
	}
	if !ok {
		return &Failure{Reason: "wrong one-time code", UserID: usr.ID}
	}
	fresh, err := u.Store.UseTOTPStep(ctx, usr.ID, step)
	if err != nil {
		return fmt.Errorf("login: record totp step: %w", err)
	}
	if !fresh {
		return &Failure{Reason: "one-time code already used", UserID: usr.ID}
	}
	return nil
}

// ActiveUser returns the user with id if it exists and is not disabled: sessions and refresh
// tokens of a disabled or deleted user stop working.
func (u *Users) ActiveUser(ctx context.Context, id string) (store.User, bool, error) {
	usr, err := u.Store.GetUser(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, false, nil
	}
	if err != nil {
		return store.User{}, false, err
	}
	return usr, !usr.Disabled, nil
}

// SessionUser returns the user of session s if the session still stands: the user exists,
// is not disabled, and their credentials did not change after the session's sign-in (a
// new password or second factor ends every earlier session).
func (u *Users) SessionUser(ctx context.Context, s Session) (store.User, bool, error) {
	usr, active, err := u.ActiveUser(ctx, s.UserID)
	if err != nil || !active {
		return store.User{}, false, err
	}
	if usr.CredentialsChangedSince(s.AuthTime) {
		return store.User{}, false, nil
	}
	return usr, true, nil
}

// CheckNewPassword reports why a password a person chose is not acceptable, or nil.
func CheckNewPassword(p string) error {
	switch {
	case !utf8.ValidString(p) || strings.ContainsAny(p, "\x00\r\n"):
		return errors.New("the password must be text on one line")
	case utf8.RuneCountInString(p) < MinPasswordLen:
		return fmt.Errorf("the password must have at least %d characters", MinPasswordLen)
	case len(p) > MaxPasswordLen:
		return fmt.Errorf("the password must have at most %d bytes", MaxPasswordLen)
	}
	return nil
}

// HashPassword returns the argon2id hash to store for a password a person chose.
func HashPassword(p string) (string, error) {
	if err := CheckNewPassword(p); err != nil {
		return "", err
	}
	return secret.HashArgon2id(p), nil
}

// NewUserID returns a fresh user id (the "sub" of the user's tokens): random, so it says
// nothing about the person and never changes with the username.
func NewUserID() string { return "u_" + secret.Random(16) }
