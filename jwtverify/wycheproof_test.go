package jwtverify

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Wycheproof vectors live outside the repository, in ../shared/testdata/wycheproof relative
// to the repository root (see its README). They are read, never copied.

func wycheproofDir(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := wd
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			t.Skipf("Wycheproof vectors skipped: no go.mod found above %s", wd)
		}
		root = parent
	}
	dir := filepath.Join(root, "..", "shared", "testdata", "wycheproof")
	if _, err := os.Stat(filepath.Join(dir, "json_web_signature_test.json")); err != nil {
		t.Skipf("Wycheproof vectors skipped: %s not found (expected ../shared/testdata/wycheproof next to the repository root; CI always has it): %v", dir, err)
	}
	return dir
}

func readVectors(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(wycheproofDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

type wycheproofJOSE struct {
	TestGroups []struct {
		Comment string          `json:"comment"`
		Public  json.RawMessage `json:"public"`
		Private json.RawMessage `json:"private"`
		Tests   []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			JWS     string   `json:"jws"`
			Result  string   `json:"result"`
			Flags   []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// joseOutcome runs one JWS through Verify and reports whether its signature was accepted. The
// vectors' payloads are not JWT claims, so an accepted signature shows up as the claims-decoding
// error, which Verify can only reach after the signature check has passed.
type joseOutcome struct {
	accepted bool
	err      error
}

func verifyWycheproofJWS(t *testing.T, keyDoc json.RawMessage, jws string) joseOutcome {
	t.Helper()
	doc := keyDoc
	var probe struct {
		Keys json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(keyDoc, &probe); err != nil || probe.Keys == nil {
		doc = json.RawMessage(`{"keys":[` + string(keyDoc) + `]}`)
	}
	keys, err := NewStaticKeySet(doc)
	if err != nil {
		return joseOutcome{err: err} // no usable key: the token cannot be accepted
	}
	v, err := New(Config{
		Issuer:     "wycheproof",
		Audiences:  []string{"wycheproof"},
		Algorithms: []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"},
		Types:      []string{""},
		Keys:       keys,
		Now:        func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(t.Context(), jws)
	if err == nil {
		t.Fatalf("a Wycheproof payload verified as JWT claims: %q", jws)
	}
	return joseOutcome{accepted: errors.Is(err, errClaims), err: err}
}

// headerAlg reads the alg of a compact JWS, for classification only.
func headerAlg(jws string) string {
	seg, _, _ := strings.Cut(jws, ".")
	data, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return ""
	}
	var h struct {
		Alg string `json:"alg"`
	}
	_ = json.Unmarshal(data, &h)
	return h.Alg
}

// declaredAlg returns the "alg" the group's public key declares (single JWK only).
func declaredAlg(keyDoc json.RawMessage) string {
	var k struct {
		Alg string `json:"alg"`
	}
	_ = json.Unmarshal(keyDoc, &k)
	return k.Alg
}

func TestWycheproofJWS(t *testing.T) {
	var f wycheproofJOSE
	readVectors(t, "json_web_signature_test.json", &f)
	var validAccepted, invalidRejected, hmacRejected, stricter int
	for _, g := range f.TestGroups {
		keyDoc := g.Public
		if keyDoc == nil {
			keyDoc = g.Private // HMAC groups publish only the symmetric key
		}
		for _, tc := range g.Tests {
			out := verifyWycheproofJWS(t, keyDoc, tc.JWS)
			alg := headerAlg(tc.JWS)
			hmacCase := g.Public == nil || strings.HasPrefix(alg, "HS")
			switch {
			case hmacCase:
				// HMAC can never be enabled: not applicable, but every such token must still be refused.
				if out.accepted {
					t.Errorf("tcId %d (%s, %s): HMAC token accepted", tc.TcID, g.Comment, tc.Comment)
				}
				hmacRejected++
			case tc.Result == "valid" && declaredAlg(g.Public) != "" && declaredAlg(g.Public) != alg:
				// Stricter than the vector: the key declares another alg (RFC 7517 §4.4), and a
				// key is used only for the alg it declares.
				if out.accepted || !errors.Is(out.err, ErrAlgorithm) {
					t.Errorf("tcId %d (%s): key declares %q, token %q: got %v, want ErrAlgorithm", tc.TcID, g.Comment, declaredAlg(g.Public), alg, out.err)
				}
				stricter++
			case tc.Result == "valid":
				if !out.accepted {
					t.Errorf("tcId %d (%s, %s): valid JWS rejected: %v", tc.TcID, g.Comment, tc.Comment, out.err)
				}
				validAccepted++
			case tc.Result == "invalid":
				if out.accepted {
					t.Errorf("tcId %d (%s, %s, flags %v): invalid JWS accepted", tc.TcID, g.Comment, tc.Comment, tc.Flags)
				}
				invalidRejected++
			default:
				t.Logf("tcId %d: result %q (%v)", tc.TcID, tc.Result, out.err)
			}
		}
	}
	t.Logf("JWS: %d valid accepted, %d invalid rejected, %d HMAC (not applicable) rejected, %d valid rejected because the key declares another alg",
		validAccepted, invalidRejected, hmacRejected, stricter)
	if validAccepted == 0 || invalidRejected == 0 {
		t.Fatal("no Wycheproof JWS vector was checked")
	}
}

func TestWycheproofJWK(t *testing.T) {
	var f wycheproofJOSE
	readVectors(t, "json_web_key_test.json", &f)
	var validAccepted, invalidRejected, hmacRejected int
	for _, g := range f.TestGroups {
		keyDoc := g.Public
		if keyDoc == nil {
			keyDoc = g.Private
		}
		for _, tc := range g.Tests {
			out := verifyWycheproofJWS(t, keyDoc, tc.JWS)
			switch {
			case strings.HasPrefix(headerAlg(tc.JWS), "HS"):
				if out.accepted {
					t.Errorf("tcId %d (%s): HMAC token accepted", tc.TcID, g.Comment)
				}
				hmacRejected++
			case tc.Result == "valid":
				if !out.accepted {
					t.Errorf("tcId %d (%s): valid key set rejected: %v", tc.TcID, g.Comment, out.err)
				}
				validAccepted++
			case tc.Result == "invalid":
				if out.accepted {
					t.Errorf("tcId %d (%s, %s): invalid key accepted", tc.TcID, g.Comment, tc.Comment)
				}
				invalidRejected++
			}
		}
	}
	t.Logf("JWK: %d valid accepted, %d invalid rejected, %d HMAC (not applicable) rejected", validAccepted, invalidRejected, hmacRejected)
	if validAccepted == 0 || invalidRejected == 0 {
		t.Fatal("no Wycheproof JWK vector was checked")
	}
}

type wycheproofSignatures struct {
	TestGroups []struct {
		PublicKeyJwk json.RawMessage `json:"publicKeyJwk"`
		PublicKey    struct {
			Curve string `json:"curve"`
			WX    string `json:"wx"`
			WY    string `json:"wy"`
		} `json:"publicKey"`
		Tests []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Msg     string   `json:"msg"`
			Sig     string   `json:"sig"`
			Result  string   `json:"result"`
			Flags   []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestWycheproofSignatures runs the raw signature vectors through the key parsing, key selection
// and signature function Verify itself uses (the messages are arbitrary bytes, not JWS signing
// inputs, so no token can be built from them).
func TestWycheproofSignatures(t *testing.T) {
	files := []struct {
		file, alg string
	}{
		{"ecdsa_secp256r1_sha256_p1363_test.json", "ES256"},
		{"ed25519_test.json", "EdDSA"},
		{"rsa_pss_2048_sha256_mgf1_32_test.json", "PS256"},
	}
	for _, f := range files {
		t.Run(f.alg, func(t *testing.T) {
			var vectors wycheproofSignatures
			readVectors(t, f.file, &vectors)
			var valid, invalid, acceptable int
			for gi, g := range vectors.TestGroups {
				jwk := g.PublicKeyJwk
				if jwk == nil { // some ECDSA groups give only the point
					if g.PublicKey.Curve != "secp256r1" {
						t.Fatalf("group %d: no JWK and curve %q", gi, g.PublicKey.Curve)
					}
					jwk = json.RawMessage(`{"kty":"EC","crv":"P-256","x":"` + coordinate(t, g.PublicKey.WX) + `","y":"` + coordinate(t, g.PublicKey.WY) + `"}`)
				}
				keys, _, err := parseJWKS([]byte(`{"keys":[` + string(jwk) + `]}`))
				if err != nil || len(keys) != 1 {
					t.Fatalf("group %d: key not usable: %d keys, %v", gi, len(keys), err)
				}
				if !keyFits(&keys[0], f.alg) {
					t.Fatalf("group %d: key does not fit %s", gi, f.alg)
				}
				for _, tc := range g.Tests {
					msg, err1 := hex.DecodeString(tc.Msg)
					sig, err2 := hex.DecodeString(tc.Sig)
					if err := errors.Join(err1, err2); err != nil {
						t.Fatalf("tcId %d: %v", tc.TcID, err)
					}
					err := verifySignature(f.alg, keys[0].Key, msg, sig)
					switch tc.Result {
					case "valid":
						if err != nil {
							t.Errorf("tcId %d (%s): valid signature rejected: %v", tc.TcID, tc.Comment, err)
						}
						valid++
					case "invalid":
						if err == nil {
							t.Errorf("tcId %d (%s, flags %v): invalid signature accepted", tc.TcID, tc.Comment, tc.Flags)
						}
						invalid++
					default:
						acceptable++
					}
				}
			}
			t.Logf("%s: %d valid accepted, %d invalid rejected, %d acceptable (not asserted)", f.file, valid, invalid, acceptable)
			if valid == 0 || invalid == 0 {
				t.Fatal("no vector was checked")
			}
		})
	}
}

// coordinate converts a hex P-256 coordinate (possibly with a leading zero byte) to the 32-byte
// base64url form JWK requires.
func coordinate(t *testing.T, h string) string {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	for len(b) > 32 && b[0] == 0 {
		b = b[1:]
	}
	return base64.RawURLEncoding.EncodeToString(append(make([]byte, 32-len(b)), b...))
}

func TestWycheproofFlagsSeen(t *testing.T) {
	// Guard against a silently changed file layout: the JWS file must contain the cases the
	// attack table relies on.
	var f wycheproofJOSE
	readVectors(t, "json_web_signature_test.json", &f)
	var comments []string
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			comments = append(comments, tc.Comment)
		}
	}
	for _, want := range []string{"rejectsAttackerProvidedEmbeddedJwk", "rIsZero_sIsZero", "rejectsNoneAlgorithmAndMissingSignature", "rejectsValidJsonSerialization"} {
		if !slices.ContainsFunc(comments, func(c string) bool { return strings.Contains(c, want) }) {
			t.Errorf("no vector %q in the JWS file", want)
		}
	}
}
