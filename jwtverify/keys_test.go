package jwtverify

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

// jwkJSON returns the JSON of k's public JWK as a map, so tests can alter members.
func jwkJSON(t testing.TB, k jose.JSONWebKey) map[string]any {
	t.Helper()
	data, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func privateJWKJSON(t testing.TB, k *testKey) map[string]any {
	return jwkJSON(t, jose.JSONWebKey{Key: k.priv, KeyID: k.pub.KeyID, Use: "sig", Algorithm: k.alg})
}

func TestParseJWKS(t *testing.T) {
	es := newTestKey(t, "ES256", "es")
	ed := newTestKey(t, "EdDSA", "ed")
	rs := newTestKey(t, "RS256", "rs")
	small := jwkJSON(t, jose.JSONWebKey{Key: rsaKey(t, 1024).Public(), KeyID: "small", Use: "sig"})
	doc := func(keys ...map[string]any) []byte {
		data, err := json.Marshal(map[string]any{"keys": keys})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	esJ, edJ, rsJ := jwkJSON(t, es.pub), jwkJSON(t, ed.pub), jwkJSON(t, rs.pub)
	offCurve := with(esJ, "kid", "off", "y", esJ["x"])

	tests := []struct {
		name        string
		doc         []byte
		wantKIDs    []string
		wantSkipped int
		wantErr     string
	}{
		{name: "three key types", doc: doc(esJ, edJ, rsJ), wantKIDs: []string{"es", "ed", "rs"}},
		{name: "empty set", doc: []byte(`{"keys":[]}`), wantKIDs: nil},
		{name: "oct ignored", doc: doc(esJ, map[string]any{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"}), wantKIDs: []string{"es"}, wantSkipped: 1},
		{name: "unknown kty skipped", doc: doc(map[string]any{"kty": "PQC", "kid": "future"}, edJ), wantKIDs: []string{"ed"}, wantSkipped: 1},
		{name: "use enc skipped", doc: doc(with(esJ, "use", "enc", "kid", "enc"), edJ), wantKIDs: []string{"ed"}, wantSkipped: 1},
		{name: "key_ops without verify skipped", doc: doc(with(esJ, "use", nil, "key_ops", []string{"encrypt"}), edJ), wantKIDs: []string{"ed"}, wantSkipped: 1},
		{name: "key_ops with verify kept", doc: doc(with(esJ, "use", nil, "key_ops", []string{"verify"})), wantKIDs: []string{"es"}},
		{name: "RSA 1024 skipped", doc: doc(small, rsJ), wantKIDs: []string{"rs"}, wantSkipped: 1},
		{name: "RSA e=1 skipped", doc: doc(with(rsJ, "e", "AQ", "kid", "e1"), edJ), wantKIDs: []string{"ed"}, wantSkipped: 1},
		{name: "RSA even e skipped", doc: doc(with(rsJ, "e", "AQAA", "kid", "even"), edJ), wantKIDs: []string{"ed"}, wantSkipped: 1},
		{name: "point not on curve skipped", doc: doc(offCurve, edJ), wantKIDs: []string{"ed"}, wantSkipped: 1},
		{name: "wrong curve for coordinates skipped", doc: doc(with(esJ, "crv", "P-384", "kid", "crv"), edJ), wantKIDs: []string{"ed"}, wantSkipped: 1},
		{name: "X25519 skipped", doc: doc(with(edJ, "crv", "X25519", "kid", "x"), esJ), wantKIDs: []string{"es"}, wantSkipped: 1},
		{name: "member not an object skipped", doc: []byte(`{"keys":[5,"x"]}`), wantSkipped: 2},
		{name: "duplicate kid kept", doc: doc(esJ, jwkJSON(t, newTestKey(t, "ES256", "es").pub)), wantKIDs: []string{"es", "es"}},
		{name: "private EC key refuses the document", doc: doc(edJ, privateJWKJSON(t, newTestKey(t, "ES256", "p"))), wantErr: "private key material"},
		{name: "private RSA key refuses the document", doc: doc(privateJWKJSON(t, rs)), wantErr: "private key material"},
		{name: "private Ed25519 key refuses the document", doc: doc(privateJWKJSON(t, ed)), wantErr: "private key material"},
		{name: "no keys member", doc: []byte(`{"kty":"EC"}`), wantErr: `no "keys" array`},
		{name: "keys null", doc: []byte(`{"keys":null}`), wantErr: `no "keys" array`},
		{name: "not JSON", doc: []byte(`<html>`), wantErr: "jwks"},
		{name: "too many keys", doc: []byte(`{"keys":[` + strings.Repeat(`{},`, maxJWKSKeys) + `{}]}`), wantErr: "limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, skipped, err := parseJWKS(tc.doc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseJWKS error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseJWKS: %v", err)
			}
			var kids []string
			for _, k := range keys {
				kids = append(kids, k.KeyID)
				if !k.IsPublic() || !usablePublicKey(&k) {
					t.Errorf("key %q is not a usable public key", k.KeyID)
				}
			}
			if diff := cmp.Diff(tc.wantKIDs, kids); diff != "" {
				t.Errorf("kids (-want +got):\n%s", diff)
			}
			if skipped != tc.wantSkipped {
				t.Errorf("skipped = %d, want %d", skipped, tc.wantSkipped)
			}
		})
	}
}

func TestParseJWKSPrivateMemberNull(t *testing.T) {
	es := newTestKey(t, "ES256", "es")
	data := fmt.Sprintf(`{"keys":[%s]}`, mustJSON(t, with(jwkJSON(t, es.pub), "d", "")))
	if _, _, err := parseJWKS([]byte(data)); err == nil || !strings.Contains(err.Error(), "private") {
		t.Fatalf(`a "d" member (even empty) must refuse the document: %v`, err)
	}
	data = strings.Replace(data, `"d":""`, `"d":null`, 1)
	if _, _, err := parseJWKS([]byte(data)); err == nil || !strings.Contains(err.Error(), "private") {
		t.Fatalf(`a "d": null member must refuse the document: %v`, err)
	}
}

func TestNewStaticKeySet(t *testing.T) {
	es := newTestKey(t, "ES256", "es")
	set, err := NewStaticKeySet(jwksJSON(t, es))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := set.Keys(t.Context(), "es")
	if err != nil || len(keys) != 1 {
		t.Fatalf("Keys(es) = %d keys, %v", len(keys), err)
	}
	if _, err := set.Keys(t.Context(), "nope"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Keys(nope) error = %v, want ErrKeyNotFound", err)
	}
	if all, err := set.Keys(t.Context(), ""); err != nil || len(all) != 1 {
		t.Errorf(`Keys("") = %d keys, %v`, len(all), err)
	}
	if _, err := NewStaticKeySet([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)); err == nil {
		t.Error("a JWKS with only a symmetric key must not give a usable set")
	}
	var zero StaticKeySet
	if _, err := zero.Keys(t.Context(), ""); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("zero StaticKeySet: %v, want ErrKeyNotFound", err)
	}
}

func TestStaticKeysRefusesUnusableKeys(t *testing.T) {
	es := newTestKey(t, "ES256", "es")
	tests := []struct {
		name string
		key  jose.JSONWebKey
	}{
		{"private key", jose.JSONWebKey{Key: es.priv, KeyID: "p"}},
		{"symmetric key", jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "s"}},
		{"RSA 1024", jose.JSONWebKey{Key: rsaKey(t, 1024).Public(), KeyID: "r"}},
		{"use enc", jose.JSONWebKey{Key: es.pub.Key, KeyID: "e", Use: "enc"}},
		{"no key", jose.JSONWebKey{KeyID: "n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := StaticKeys(es.pub, tc.key); err == nil {
				t.Fatal("StaticKeys accepted an unusable key")
			}
		})
	}
	if _, err := StaticKeys(); err == nil {
		t.Error("StaticKeys() with no keys must fail")
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
