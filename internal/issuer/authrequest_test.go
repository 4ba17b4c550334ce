package issuer_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/issuer"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
)

var fuzzClient = store.Client{ID: "web", AuthMethod: "none", GrantTypes: []string{"authorization_code"},
	Scopes: []string{"openid", "profile", "orders:read"}, RedirectURIs: []string{"https://web.example/cb"}}

func TestParseAuthorizeRequest(t *testing.T) {
	good := "response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fweb.example%2Fcb&scope=openid+profile&state=s&nonce=n" +
		"&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&unknown=ignored&empty="
	got, err := issuer.ParseAuthorizeRequest(good)
	if err != nil {
		t.Fatal(err)
	}
	want := issuer.AuthRequest{ResponseType: "code", ClientID: "web", RedirectURI: "https://web.example/cb", Scope: "openid profile",
		State: "s", Nonce: "n", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", CodeChallengeMethod: "S256"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	scopes, err := got.Validate(fuzzClient, (&config.Issuer{}).EffectiveScopes())
	if err != nil || !cmp.Equal(scopes, []string{"openid", "profile"}) {
		t.Errorf("Validate: %v %v", scopes, err)
	}
	for _, bad := range []string{good + "&state=x", "a=%", "a=1;b=2", "x=\x01", "request=x", "scope=%ff", strings.Repeat("a", 9000)} {
		if _, err := issuer.ParseAuthorizeRequest(bad); !errors.Is(err, issuer.ErrMalformedRequest) {
			t.Errorf("%.40q: %v", bad, err)
		}
	}
}

// FuzzParseAuthorizeRequest: no input panics; a parse error is always ErrMalformedRequest; a
// parsed request survives Values → Encode → Parse unchanged; Validate never panics and
// fails only with an OAuth error; the scopes it accepts are all the client's.
func FuzzParseAuthorizeRequest(f *testing.F) {
	f.Add("response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fweb.example%2Fcb&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")
	f.Add("client_id=web&client_id=evil")
	f.Add("request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Aabc&client_id=web")
	f.Add("prompt=none+login&max_age=-5&scope=openid++profile")
	scopes := (&config.Issuer{Scopes: map[string]config.Scope{"orders:read": {}}}).EffectiveScopes()
	f.Fuzz(func(t *testing.T, raw string) {
		req, err := issuer.ParseAuthorizeRequest(raw)
		if err != nil {
			if !errors.Is(err, issuer.ErrMalformedRequest) {
				t.Fatalf("error %v is not ErrMalformedRequest", err)
			}
			return
		}
		again, err := issuer.ParseAuthorizeRequest(req.Values().Encode())
		if err != nil {
			t.Fatalf("re-encoded request does not parse: %v", err)
		}
		if again != req {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", req, again)
		}
		if _, err := url.ParseQuery(req.Values().Encode()); err != nil {
			t.Fatal(err)
		}
		got, err := req.Validate(fuzzClient, scopes)
		if err != nil {
			if oauth.AsError(err).Code == oauth.CodeServerError {
				t.Fatalf("Validate failed as a server error: %v", err)
			}
			return
		}
		for _, s := range got {
			if !strings.Contains(" "+strings.Join(fuzzClient.Scopes, " ")+" ", " "+s+" ") {
				t.Fatalf("accepted scope %q the client does not have", s)
			}
		}
		if req.CodeChallengeMethod != "S256" || req.ResponseType != "code" {
			t.Fatalf("accepted %+v", req)
		}
	})
}

// TestAuthorizeRequestLengthCaps: the values a sign-in transaction stores verbatim are
// bounded well below the request's 8 KiB, so an unauthenticated request cannot make each
// stored transaction large.
func TestAuthorizeRequestLengthCaps(t *testing.T) {
	base := issuer.AuthRequest{ResponseType: "code", ClientID: "web", RedirectURI: "https://web.example/cb", Scope: "openid",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", CodeChallengeMethod: "S256"}
	scopes := (&config.Issuer{}).EffectiveScopes()
	for _, tt := range []struct {
		name string
		max  int
		set  func(*issuer.AuthRequest, string)
		fill string
	}{
		{"state", 1024, func(a *issuer.AuthRequest, v string) { a.State = v }, "s"},
		{"nonce", 256, func(a *issuer.AuthRequest, v string) { a.Nonce = v }, "n"},
		{"login_hint", 256, func(a *issuer.AuthRequest, v string) { a.LoginHint = v }, "h"},
		{"scope", 1024, func(a *issuer.AuthRequest, v string) { a.Scope = strings.TrimSpace(v) }, "openid "},
		{"prompt", 64, func(a *issuer.AuthRequest, v string) { a.Prompt = strings.TrimSpace(v) }, "login "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			at := base
			tt.set(&at, strings.Repeat(tt.fill, tt.max/len(tt.fill)))
			if _, err := at.Validate(fuzzClient, scopes); err != nil {
				t.Errorf("%s at the limit (%d bytes): %v", tt.name, tt.max, err)
			}
			over := base
			tt.set(&over, strings.Repeat(tt.fill, tt.max/len(tt.fill)+2))
			if _, err := over.Validate(fuzzClient, scopes); err == nil {
				t.Errorf("%s over the limit accepted", tt.name)
			}
		})
	}
}
