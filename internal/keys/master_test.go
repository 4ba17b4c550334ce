package keys

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMasterKey(t *testing.T) {
	good := NewMasterKey().Encode()
	tests := []struct {
		name    string
		text    string
		wantErr string
	}{
		{"round trip", good, ""},
		{"surrounding whitespace", "\n  " + good + "  \n", ""},
		{"not base64", "!!!not base64!!!", "not base64"},
		{"too short", base64.StdEncoding.EncodeToString(make([]byte, 16)), "32 bytes"},
		{"too long", base64.StdEncoding.EncodeToString(make([]byte, 33)), "32 bytes"},
		{"empty", "", "32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mk, err := ParseMasterKey(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(tt.text)) && tt.text != "" {
					t.Errorf("error repeats the key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if mk.Encode() != good {
				t.Errorf("round trip changed the key")
			}
		})
	}
}

func TestNewMasterKeyIsRandom(t *testing.T) {
	a, b := NewMasterKey(), NewMasterKey()
	if a.Encode() == b.Encode() {
		t.Fatal("two master keys are equal")
	}
	if raw, _ := base64.StdEncoding.DecodeString(a.Encode()); len(raw) != 32 {
		t.Fatalf("master key has %d bytes", len(raw))
	}
}

func TestLoadMasterKey(t *testing.T) {
	dir := t.TempDir()
	mk := NewMasterKey()
	private := filepath.Join(dir, "private.key")
	shared := filepath.Join(dir, "shared.key")
	for path, mode := range map[string]os.FileMode{private: 0o600, shared: 0o644} {
		if err := os.WriteFile(path, []byte(mk.Encode()+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // umask may have narrowed it
			t.Fatal(err)
		}
	}
	t.Setenv("PORTCULLIS_TEST_MASTER_KEY", mk.Encode())

	tests := []struct {
		name, file, env string
		wantErr         string
	}{
		{"file", private, "", ""},
		{"env", "", "PORTCULLIS_TEST_MASTER_KEY", ""},
		{"file readable by others", shared, "", "accessible to others"},
		{"missing file", filepath.Join(dir, "nope"), "", "master key file"},
		{"unset env", "", "PORTCULLIS_TEST_NO_SUCH_VAR", "not set"},
		{"nothing configured", "", "", "no master key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadMasterKey(tt.file, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Encode() != mk.Encode() {
				t.Error("loaded a different key")
			}
		})
	}
}

func TestDerive(t *testing.T) {
	mk := NewMasterKey()
	purposes := []string{PurposeKeySealing, PurposeSecretPepper, PurposeCookie, PurposeTOTP}
	seen := map[string]string{}
	for _, p := range purposes {
		k := mk.Derive(p)
		if len(k) != 32 {
			t.Fatalf("%s: %d bytes", p, len(k))
		}
		if !bytes.Equal(k, mk.Derive(p)) {
			t.Errorf("%s: derivation is not deterministic", p)
		}
		if other, dup := seen[string(k)]; dup {
			t.Errorf("%s and %s derive the same key", p, other)
		}
		seen[string(k)] = p
		if bytes.Equal(k, mk.b) {
			t.Errorf("%s: derived key is the master key", p)
		}
	}
	if bytes.Equal(mk.Derive(PurposeKeySealing), NewMasterKey().Derive(PurposeKeySealing)) {
		t.Error("two master keys derive the same key")
	}
}

func TestSealer(t *testing.T) {
	s, err := NewSealer(NewMasterKey().Derive(PurposeKeySealing))
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewSealer(NewMasterKey().Derive(PurposeKeySealing))
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("private key bytes")
	ad := []byte("kid-1")
	sealed := s.Seal(plain, ad)
	if bytes.Contains(sealed, plain) {
		t.Fatal("sealed value contains the plaintext")
	}
	if again := s.Seal(plain, ad); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one value are equal (nonce reuse?)")
	}
	got, err := s.Open(sealed, ad)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	tests := []struct {
		name   string
		s      *Sealer
		sealed []byte
		ad     []byte
	}{
		{"wrong associated data", s, sealed, []byte("kid-2")},
		{"wrong key", other, sealed, ad},
		{"tampered", s, flipped, ad},
		{"truncated", s, sealed[:10], ad},
		{"empty", s, nil, ad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out, err := tt.s.Open(tt.sealed, tt.ad); err == nil {
				t.Fatalf("Open succeeded: %q", out)
			}
		})
	}
	if _, err := NewSealer(make([]byte, 7)); err == nil {
		t.Error("NewSealer accepted a 7-byte key")
	}
}
