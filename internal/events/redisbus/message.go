package redisbus

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/internal/events"
)

// maxMessageBytes bounds a message read from Redis; real ones are about 150 bytes.
const maxMessageBytes = 1024

// wireVersion is the only message version this bus reads.
const wireVersion = 1

// message is an event on the wire, with the bus that sent it.
type message struct {
	V         int         `json:"v"`
	Origin    string      `json:"origin"`
	Kind      events.Kind `json:"kind"`
	TokenHash string      `json:"token_hash,omitempty"`
	At        time.Time   `json:"at"`
}

func encode(origin string, e events.Event) ([]byte, error) {
	return json.Marshal(message{V: wireVersion, Origin: origin, Kind: e.Kind, TokenHash: e.TokenHash, At: e.At})
}

// decode parses a message from Redis. Anything that is not a well-formed event of a known
// kind is an error: subscribers only ever see events they understand.
func decode(b []byte) (origin string, e events.Event, err error) {
	if len(b) > maxMessageBytes {
		return "", e, fmt.Errorf("message of %d bytes", len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m message
	if err := dec.Decode(&m); err != nil {
		return "", e, fmt.Errorf("message: %w", err)
	}
	if dec.More() {
		return "", e, errors.New("message: trailing data")
	}
	if m.V != wireVersion {
		return "", e, fmt.Errorf("message version %d", m.V)
	}
	if m.Origin == "" || len(m.Origin) > 64 {
		return "", e, errors.New("message without a valid origin")
	}
	switch m.Kind {
	case events.TokenRevoked:
		if !validHash(m.TokenHash) {
			return "", e, errors.New("token.revoked without a valid token_hash")
		}
	case events.KeysChanged, events.Resync:
		if m.TokenHash != "" {
			return "", e, fmt.Errorf("%s with a token_hash", m.Kind)
		}
	default:
		return "", e, fmt.Errorf("unknown kind %q", m.Kind)
	}
	return m.Origin, events.Event{Kind: m.Kind, TokenHash: m.TokenHash, At: m.At}, nil
}

// validHash reports whether h has the events.TokenHash form: unpadded base64url of 32 bytes.
func validHash(h string) bool {
	if len(h) != 43 {
		return false
	}
	var b [32]byte
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(h))
	return err == nil && n == 32
}
