package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MasterKey is the root secret of an installation: 32 random bytes from which every other
// server secret is derived (HKDF-SHA-256, one label per purpose), so operators back up and
// rotate one thing. It never leaves the process and never reaches the store.
type MasterKey struct{ b []byte }

// Purposes of derived keys. Changing a label invalidates what was made under it.
const (
	PurposeKeySealing   = "portcullis signing-key sealing v1"
	PurposeSecretPepper = "portcullis client-secret pepper v1"
	PurposeCookie       = "portcullis cookie sealing v1"
	PurposeTOTP         = "portcullis totp sealing v1"
)

// NewMasterKey returns a fresh random master key.
func NewMasterKey() MasterKey {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return MasterKey{b: b}
}

// Encode returns the key as base64, the form a master key file holds.
func (m MasterKey) Encode() string { return base64.StdEncoding.EncodeToString(m.b) }

// ParseMasterKey decodes base64 text (surrounding whitespace ignored) of exactly 32 bytes.
func ParseMasterKey(text string) (MasterKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return MasterKey{}, errors.New("master key is not base64")
	}
	if len(b) != 32 {
		return MasterKey{}, fmt.Errorf("master key must be 32 bytes, got %d", len(b))
	}
	return MasterKey{b: b}, nil
}

// LoadMasterKey reads the key from file, or else from the environment variable env. A file
// readable by others is refused: it unlocks every private key.
func LoadMasterKey(file, env string) (MasterKey, error) {
	if file != "" {
		st, err := os.Stat(file)
		if err != nil {
			return MasterKey{}, fmt.Errorf("master key file: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return MasterKey{}, fmt.Errorf("master key file %s is accessible to others (mode %v); chmod 600 it", file, st.Mode().Perm())
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return MasterKey{}, fmt.Errorf("master key file: %w", err)
		}
		return ParseMasterKey(string(b))
	}
	if env != "" {
		v, ok := os.LookupEnv(env)
		if !ok {
			return MasterKey{}, fmt.Errorf("environment variable %s is not set", env)
		}
		return ParseMasterKey(v)
	}
	return MasterKey{}, errors.New("no master key configured")
}

// Derive returns a 32-byte key for purpose.
func (m MasterKey) Derive(purpose string) []byte {
	if len(m.b) == 0 {
		panic("keys: Derive on an empty MasterKey") // a wiring bug, never input
	}
	k, err := hkdf.Key(sha256.New, m.b, nil, purpose, 32)
	if err != nil {
		panic(err) // only for lengths above 255*32
	}
	return k
}

// Sealer encrypts small values with AES-256-GCM; the associated data binds a ciphertext to
// what it is (a key id, a cookie name), so one sealed value cannot be swapped for another.
type Sealer struct{ aead cipher.AEAD }

// NewSealer returns a Sealer under key (32 bytes).
func NewSealer(key []byte) (*Sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal returns nonce‖ciphertext.
func (s *Sealer) Seal(plain, ad []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, ad)
}

// Open reverses Seal; any tampering, or the wrong ad or key, is an error.
func (s *Sealer) Open(sealed, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, errors.New("sealed value does not open (wrong master key or tampered)")
	}
	return plain, nil
}
