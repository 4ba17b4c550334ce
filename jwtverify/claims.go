package jwtverify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Claims are the verified claims of a token, typed, plus every claim as decoded JSON.
//
// A *Claims returned by Verify may be shared (the verified-token cache hands the same value to
// every caller of the same token): treat it, Raw included, as read-only.
type Claims struct {
	Issuer   string   // "iss"
	Subject  string   // "sub"
	ID       string   // "jti"
	ClientID string   // "client_id" (RFC 9068)
	Audience []string // "aud", a string or an array in the token

	Expiry    time.Time // "exp" (always present in a verified token)
	NotBefore time.Time // "nbf"; zero when absent
	IssuedAt  time.Time // "iat"; zero when absent

	Scopes []string // "scope", a space-separated string (RFC 9068 §2.2.3.1)

	KeyID     string // header "kid"
	Algorithm string // header "alg"
	Type      string // header "typ", as sent

	// Raw holds every claim as decoded by encoding/json with UseNumber: JSON numbers are
	// json.Number (exact; never float64), objects map[string]any, arrays []any. Read-only.
	Raw map[string]any
}

// HasScope reports whether the token grants scope s.
func (c *Claims) HasScope(s string) bool {
	for _, v := range c.Scopes {
		if v == s {
			return true
		}
	}
	return false
}

// String returns the claim name from Raw if it is a JSON string.
func (c *Claims) String(name string) (string, bool) {
	s, ok := c.Raw[name].(string)
	return s, ok
}

// Dates outside [0, maxNumericDate] (year 9999) are refused as malformed.
const maxNumericDate = 253402300799

// parseClaims decodes an authenticated payload. Registered claims of the wrong JSON type make the
// token malformed; a JSON null counts as absent.
func parseClaims(payload []byte) (*Claims, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %w: %v", ErrMalformed, errClaims, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: %w: payload is not a JSON object", ErrMalformed, errClaims)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: %w: data after the JSON object", ErrMalformed, errClaims)
	}
	c := &Claims{Raw: raw}
	var err error
	str := func(name string, dst *string) {
		if err != nil {
			return
		}
		switch v := raw[name].(type) {
		case nil:
		case string:
			*dst = v
		default:
			err = fmt.Errorf("%w: %w: %q is not a string", ErrMalformed, errClaims, name)
		}
	}
	date := func(name string, dst *time.Time) {
		if err != nil {
			return
		}
		v, present := raw[name]
		if !present || v == nil {
			return
		}
		n, ok := v.(json.Number)
		if !ok {
			err = fmt.Errorf("%w: %w: %q is not a number", ErrMalformed, errClaims, name)
			return
		}
		t, ok := numericDate(n)
		if !ok {
			err = fmt.Errorf("%w: %w: %q is out of range", ErrMalformed, errClaims, name)
			return
		}
		*dst = t
	}
	str("iss", &c.Issuer)
	str("sub", &c.Subject)
	str("jti", &c.ID)
	str("client_id", &c.ClientID)
	var scope string
	str("scope", &scope)
	date("exp", &c.Expiry)
	date("nbf", &c.NotBefore)
	date("iat", &c.IssuedAt)
	if err != nil {
		return nil, err
	}
	c.Scopes = strings.Fields(scope)
	switch aud := raw["aud"].(type) {
	case nil:
	case string:
		c.Audience = []string{aud}
	case []any:
		c.Audience = make([]string, 0, len(aud))
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %w: %q holds a non-string", ErrMalformed, errClaims, "aud")
			}
			c.Audience = append(c.Audience, s)
		}
	default:
		return nil, fmt.Errorf("%w: %w: %q is neither a string nor an array", ErrMalformed, errClaims, "aud")
	}
	return c, nil
}

// numericDate converts a JSON NumericDate (seconds since the epoch, possibly fractional).
func numericDate(n json.Number) (time.Time, bool) {
	if i, err := n.Int64(); err == nil {
		if i < 0 || i > maxNumericDate {
			return time.Time{}, false
		}
		return time.Unix(i, 0), true
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}
