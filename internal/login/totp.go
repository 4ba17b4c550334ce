package login

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/portcullis/portcullis/internal/keys"
)

// TOTP parameters: RFC 6238's defaults, which every authenticator app understands.
const (
	totpPeriod = 30
	totpDigits = otp.DigitsSix
	totpSkew   = 1 // steps accepted either side of the current one
)

// TOTP seals users' TOTP secrets at rest and checks codes against them. The sealing key is
// derived from the master key (keys.PurposeTOTP); the associated data binds each sealed
// secret to its user id, so a sealed secret copied onto another user does not open.
type TOTP struct {
	sealer *keys.Sealer
}

// NewTOTP returns a TOTP sealing under key (32 bytes: master.Derive(keys.PurposeTOTP)).
func NewTOTP(key []byte) (*TOTP, error) {
	s, err := keys.NewSealer(key)
	if err != nil {
		return nil, err
	}
	return &TOTP{sealer: s}, nil
}

func totpAD(userID string) []byte { return []byte("portcullis totp secret of " + userID) }

// Enrollment is a new second factor: the sealed secret for the store, and what the person
// puts into an authenticator app (shown once).
type Enrollment struct {
	Sealed []byte
	Secret string // base32
	URI    string // otpauth://totp/...
}

// Enroll makes a new secret for userID, labelled issuer:username in authenticator apps.
func (t *TOTP) Enroll(issuer, userID, username string) (Enrollment, error) {
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: username, Period: totpPeriod, Digits: totpDigits,
		Algorithm: otp.AlgorithmSHA1, SecretSize: 20,
	})
	if err != nil {
		return Enrollment{}, fmt.Errorf("login: totp secret: %w", err)
	}
	return Enrollment{Sealed: t.sealer.Seal([]byte(k.Secret()), totpAD(userID)), Secret: k.Secret(), URI: k.URL()}, nil
}

// Match reports whether code is the user's code for the time step of now or one either side,
// and which step it matched (for the store to accept each step once). Every candidate is
// compared in constant time.
func (t *TOTP) Match(userID string, sealed []byte, code string, now time.Time) (step int64, ok bool, err error) {
	sec, err := t.sealer.Open(sealed, totpAD(userID))
	if err != nil {
		return 0, false, errors.New("totp secret does not open (wrong master key, or copied from another user)")
	}
	if len(code) != totpDigits.Length() {
		return 0, false, nil
	}
	cur := now.Unix() / totpPeriod
	for s := cur - totpSkew; s <= cur+totpSkew; s++ {
		want, err := totp.GenerateCodeCustom(string(sec), time.Unix(s*totpPeriod, 0), totp.ValidateOpts{
			Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1,
		})
		if err != nil {
			return 0, false, fmt.Errorf("totp: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			step, ok = s, true // keep looping: the same work whichever step matched
		}
	}
	return step, ok, nil
}

// Code returns the code for now of a base32 secret (for tests and tools, never the server's
// own checks).
func Code(secretB32 string, now time.Time) (string, error) {
	return totp.GenerateCodeCustom(secretB32, now, totp.ValidateOpts{Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1})
}
