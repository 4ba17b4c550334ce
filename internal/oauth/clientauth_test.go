package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

func basicHeader(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

func signedAssertion(t testing.TB, claims map[string]any) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseClientCredentials(t *testing.T) {
	assertion := signedAssertion(t, map[string]any{"iss": "key-client", "sub": "key-client", "exp": time.Now().Add(time.Minute).Unix()})
	noIss := signedAssertion(t, map[string]any{"sub": "key-client"})
	tests := []struct {
		name     string
		auth     string
		form     Form
		want     ClientCredentials
		wantCode string
	}{
		{"basic", basicHeader("app", "s3cret"), Form{}, ClientCredentials{Method: AuthSecretBasic, ClientID: "app", Secret: "s3cret"}, ""},
		{"basic, form-encoded parts", basicHeader("my%3Aapp", "a%2Bb%3Ac"), Form{}, ClientCredentials{Method: AuthSecretBasic, ClientID: "my:app", Secret: "a+b:c"}, ""},
		{"basic, secret with a colon", basicHeader("app", "a:b"), Form{}, ClientCredentials{Method: AuthSecretBasic, ClientID: "app", Secret: "a:b"}, ""},
		{"basic, lower-case scheme", "basic " + base64.StdEncoding.EncodeToString([]byte("app:s")), Form{}, ClientCredentials{Method: AuthSecretBasic, ClientID: "app", Secret: "s"}, ""},
		{"basic with the same client_id", basicHeader("app", "s"), Form{"client_id": "app"}, ClientCredentials{Method: AuthSecretBasic, ClientID: "app", Secret: "s"}, ""},
		{"post", "", Form{"client_id": "app", "client_secret": "s"}, ClientCredentials{Method: AuthSecretPost, ClientID: "app", Secret: "s"}, ""},
		{"private_key_jwt", "", Form{"client_id": "key-client", "client_assertion_type": AssertionTypeJWT, "client_assertion": assertion},
			ClientCredentials{Method: AuthPrivateKey, ClientID: "key-client", Assertion: assertion}, ""},
		{"private_key_jwt, client id from iss", "", Form{"client_assertion_type": AssertionTypeJWT, "client_assertion": assertion},
			ClientCredentials{Method: AuthPrivateKey, ClientID: "key-client", Assertion: assertion}, ""},
		{"public client", "", Form{"client_id": "spa"}, ClientCredentials{Method: AuthNone, ClientID: "spa"}, ""},

		{"nothing", "", Form{}, ClientCredentials{}, CodeInvalidClient},
		{"basic and post", basicHeader("app", "s"), Form{"client_id": "app", "client_secret": "s"}, ClientCredentials{}, CodeInvalidRequest},
		{"post and assertion", "", Form{"client_id": "key-client", "client_secret": "s", "client_assertion_type": AssertionTypeJWT, "client_assertion": assertion}, ClientCredentials{}, CodeInvalidRequest},
		{"basic and assertion", basicHeader("key-client", "s"), Form{"client_assertion_type": AssertionTypeJWT, "client_assertion": assertion}, ClientCredentials{}, CodeInvalidRequest},
		{"basic with another client_id", basicHeader("app", "s"), Form{"client_id": "other"}, ClientCredentials{}, CodeInvalidClient},
		// client_id picks whose keys verify the assertion; an iss that lies fails there.
		{"assertion with another client_id", "", Form{"client_id": "other", "client_assertion_type": AssertionTypeJWT, "client_assertion": assertion},
			ClientCredentials{Method: AuthPrivateKey, ClientID: "other", Assertion: assertion}, ""},
		{"bearer scheme", "Bearer abc", Form{}, ClientCredentials{}, CodeInvalidClient},
		{"basic, not base64", "Basic %%%", Form{}, ClientCredentials{}, CodeInvalidClient},
		{"basic, no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("app")), Form{}, ClientCredentials{}, CodeInvalidClient},
		{"basic, bad escape in id", basicHeader("a%zz", "s"), Form{}, ClientCredentials{}, CodeInvalidClient},
		{"basic, bad escape in secret", basicHeader("app", "%zz"), Form{}, ClientCredentials{}, CodeInvalidClient},
		{"basic, empty id", basicHeader("", "s"), Form{}, ClientCredentials{}, CodeInvalidClient},
		{"post without client_id", "", Form{"client_secret": "s"}, ClientCredentials{}, CodeInvalidClient},
		{"assertion of another type", "", Form{"client_id": "x", "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer", "client_assertion": "x"}, ClientCredentials{}, CodeInvalidClient},
		{"assertion type without assertion", "", Form{"client_id": "x", "client_assertion_type": AssertionTypeJWT}, ClientCredentials{}, CodeInvalidClient},
		{"assertion without type", "", Form{"client_id": "x", "client_assertion": assertion}, ClientCredentials{}, CodeInvalidClient},
		{"assertion not a JWT, no client_id", "", Form{"client_assertion_type": AssertionTypeJWT, "client_assertion": "abc"}, ClientCredentials{}, CodeInvalidClient},
		{"assertion without iss, no client_id", "", Form{"client_assertion_type": AssertionTypeJWT, "client_assertion": noIss}, ClientCredentials{}, CodeInvalidClient},
		{"assertion too large, no client_id", "", Form{"client_assertion_type": AssertionTypeJWT, "client_assertion": strings.Repeat("a", 9000)}, ClientCredentials{}, CodeInvalidClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/token", nil)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			got, err := ParseClientCredentials(r, tt.form)
			if tt.wantCode != "" {
				var oe *Error
				if !errors.As(err, &oe) || oe.Code != tt.wantCode {
					t.Fatalf("err = %v, want %s", err, tt.wantCode)
				}
				if tt.wantCode == CodeInvalidClient && (oe.Status != 401 || oe.Description != "client authentication failed") {
					t.Errorf("invalid_client: %d %q", oe.Status, oe.Description)
				}
				if got.Secret != "" {
					t.Error("a refused request returned its secret")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("credentials (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCredentialsLogValue: logging credentials never prints the secret or the assertion.
func TestCredentialsLogValue(t *testing.T) {
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.Info("auth", "creds", ClientCredentials{Method: AuthSecretBasic, ClientID: "app", Secret: "pcs_topsecret", Assertion: "eyJhssertion"})
	out := b.String()
	if strings.Contains(out, "topsecret") || strings.Contains(out, "ssertion") {
		t.Fatalf("log line leaks: %s", out)
	}
	if !strings.Contains(out, "app") {
		t.Fatalf("log line lacks the client id: %s", out)
	}
}

// FuzzParseClientCredentials feeds arbitrary Authorization headers and token-request bodies.
// Properties: no panic; an error is invalid_client (401) or invalid_request (400); success
// means exactly one method, a client id, and a secret or assertion taken from where that
// method puts it.
func FuzzParseClientCredentials(f *testing.F) {
	f.Fuzz(func(t *testing.T, authorization, body string) {
		form, err := ParseFormBody(body)
		if err != nil {
			return
		}
		r := httptest.NewRequest("POST", "/token", nil)
		if authorization != "" {
			r.Header["Authorization"] = []string{authorization}
		}
		c, err := ParseClientCredentials(r, form)
		if err != nil {
			var oe *Error
			if !errors.As(err, &oe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			switch {
			case oe.Code == CodeInvalidClient && oe.Status == 401:
			case oe.Code == CodeInvalidRequest && oe.Status == 400:
			default:
				t.Fatalf("error %s/%d", oe.Code, oe.Status)
			}
			return
		}
		if c.ClientID == "" {
			t.Fatal("success without a client id")
		}
		if id := form.Get("client_id"); id != "" && id != c.ClientID {
			t.Fatalf("client_id %q but authenticated %q", id, c.ClientID)
		}
		hasHeader := r.Header.Get("Authorization") != ""
		switch c.Method {
		case AuthSecretBasic:
			if !hasHeader || form.Get("client_secret") != "" || form.Get("client_assertion") != "" {
				t.Fatalf("basic with other credentials: header %v, form %v", hasHeader, form)
			}
		case AuthSecretPost:
			if hasHeader || c.Secret != form.Get("client_secret") || c.Secret == "" || form.Get("client_assertion") != "" {
				t.Fatalf("post: %+v from %v", c, form)
			}
		case AuthPrivateKey:
			if hasHeader || form.Get("client_secret") != "" || c.Assertion != form.Get("client_assertion") || form.Get("client_assertion_type") != AssertionTypeJWT {
				t.Fatalf("private_key_jwt: %+v from %v", c, form)
			}
		case AuthNone:
			if hasHeader || c.Secret != "" || c.Assertion != "" || form.Get("client_secret") != "" ||
				form.Get("client_assertion") != "" || form.Get("client_assertion_type") != "" {
				t.Fatalf("none with credentials: %+v from %v", c, form)
			}
		default:
			t.Fatalf("method %q", c.Method)
		}
	})
}
