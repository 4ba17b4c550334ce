package issuer_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/keys"
)

// TestTokenErrors covers RFC 6749 §5.2: each error with its code and status, WWW-Authenticate
// on 401, never cached, a request id, and nothing internal in the body.
func TestTokenErrors(t *testing.T) {
	h := newHarness(t)
	form := func(s string) io.Reader { return strings.NewReader(s) }
	auth := h.basic(basicApp)
	const formType = "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        io.Reader
		hdr         map[string]string
		wantStatus  int
		wantErr     string
	}{
		{"missing grant_type", "POST", "/token", formType, form("scope=orders:read"), auth, 400, "invalid_request"},
		{"unsupported grant_type", "POST", "/token", formType, form("grant_type=password&username=a&password=b"), auth, 400, "unsupported_grant_type"},
		{"unregistered grant_type", "POST", "/token", formType, form("grant_type=client_credentials"), h.basic(codeOnly), 400, "unauthorized_client"},
		{"grant without a handler here", "POST", "/token", formType, form("grant_type=urn:ietf:params:oauth:grant-type:device_code"), auth, 400, "unsupported_grant_type"},
		{"invalid_scope", "POST", "/token", formType, form("grant_type=client_credentials&scope=reports:read"), auth, 400, "invalid_scope"},
		{"resource not allowed", "POST", "/token", formType, form("grant_type=client_credentials&resource=https://evil.example"), auth, 400, "invalid_target"},
		{"duplicate parameter", "POST", "/token", formType, form("grant_type=client_credentials&grant_type=client_credentials"), auth, 400, "invalid_request"},
		{"duplicate scope parameter", "POST", "/token", formType, form("grant_type=client_credentials&scope=orders:read&scope=orders:write"), auth, 400, "invalid_request"},
		{"parameters in the query", "POST", "/token?grant_type=client_credentials", formType, form(""), auth, 400, "invalid_request"},
		{"secret in the query", "POST", "/token?client_secret=x", formType, form("grant_type=client_credentials"), auth, 400, "invalid_request"},
		{"JSON body", "POST", "/token", "application/json", form(`{"grant_type":"client_credentials"}`), auth, 400, "invalid_request"},
		{"no content type", "POST", "/token", "", form("grant_type=client_credentials"), auth, 400, "invalid_request"},
		{"multipart body", "POST", "/token", "multipart/form-data; boundary=x", form("--x--"), auth, 400, "invalid_request"},
		{"invalid UTF-8", "POST", "/token", formType, form("grant_type=client_credentials&scope=%ff"), auth, 400, "invalid_request"},
		{"malformed body", "POST", "/token", formType, form("grant_type=%zz"), auth, 400, "invalid_request"},
		{"body too large", "POST", "/token", formType, form("grant_type=client_credentials&pad=" + strings.Repeat("a", 70<<10)), auth, 413, "invalid_request"},
		{"GET /token", "GET", "/token", "", nil, nil, 405, "invalid_request"},
		{"PUT /introspect", "PUT", "/introspect", formType, form("token=x"), auth, 405, "invalid_request"},
		{"DELETE /revoke", "DELETE", "/revoke", "", nil, auth, 405, "invalid_request"},
		{"no client authentication", "POST", "/token", formType, form("grant_type=client_credentials"), nil, 401, "invalid_client"},
		{"wrong secret", "POST", "/token", formType, form("grant_type=client_credentials"), map[string]string{"Authorization": basicAuth(basicApp, "pcs_nope")}, 401, "invalid_client"},
		{"unknown client", "POST", "/token", formType, form("grant_type=client_credentials"), map[string]string{"Authorization": basicAuth("ghost", "pcs_nope")}, 401, "invalid_client"},
		{"introspect: too large", "POST", "/introspect", formType, form("token=" + strings.Repeat("a", 70<<10)), h.basic(resource), 413, "invalid_request"},
		{"revoke: duplicate token", "POST", "/revoke", formType, form("token=a&token=b"), auth, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(t, tt.method, tt.path, tt.contentType, tt.body, tt.hdr)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var body map[string]string
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("error body is not a JSON object of strings: %q", r.body)
			}
			if body["error"] != tt.wantErr {
				t.Errorf("error = %q, want %q", body["error"], tt.wantErr)
			}
			for k := range body {
				if k != "error" && k != "error_description" {
					t.Errorf("unexpected field %q in error body", k)
				}
			}
			checkNoInternals(t, r.body)
			if got := r.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			if r.header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
			www := r.header.Get("WWW-Authenticate")
			if tt.wantStatus == http.StatusUnauthorized && !strings.HasPrefix(www, "Basic ") {
				t.Errorf("401 without a Basic challenge: %q", www)
			}
			if tt.wantStatus != http.StatusUnauthorized && www != "" {
				t.Errorf("WWW-Authenticate on %d", tt.wantStatus)
			}
			if tt.wantStatus == http.StatusMethodNotAllowed && r.header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q", r.header.Get("Allow"))
			}
		})
	}
}

// internals are things an error body must never reveal.
var internals = regexp.MustCompile(`(?i)goroutine|panic|\.go:\d|/work/|sqlite|sql:|store:|hmac|argon|pcs_|pcat_|\$argon2id\$|stack|runtime\.|unknown client|wrong client secret|jwtverify`)

func checkNoInternals(t *testing.T, body []byte) {
	t.Helper()
	if m := internals.Find(body); m != nil {
		t.Errorf("body reveals %q: %s", m, body)
	}
}

// TestRequestIDOnEveryResponse: every response, success or error, OAuth or not, has a fresh
// request id; a client-sent one is not echoed.
func TestRequestIDOnEveryResponse(t *testing.T) {
	h := newHarness(t)
	hdr := map[string]string{"X-Request-Id": "forged-id"}
	seen := map[string]bool{}
	for _, tt := range []struct{ method, path string }{
		{"GET", "/.well-known/oauth-authorization-server"},
		{"GET", "/.well-known/openid-configuration"},
		{"GET", "/jwks"},
		{"POST", "/jwks"},
		{"GET", "/nowhere"},
		{"GET", "/token"},
		{"POST", "/token"},
		{"POST", "/introspect"},
		{"POST", "/revoke"},
	} {
		r := h.do(t, tt.method, tt.path, "", nil, hdr)
		id := r.header.Get("X-Request-Id")
		if id == "" || id == "forged-id" || seen[id] {
			t.Errorf("%s %s: X-Request-Id %q", tt.method, tt.path, id)
		}
		seen[id] = true
		checkNoInternals(t, r.body)
		if r.status >= 400 && r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: error %d is cacheable", tt.method, tt.path, r.status)
		}
	}
}

// TestNonOAuthErrorsAreProblems: outside the OAuth endpoints errors are RFC 9457 problems
// carrying the request id.
func TestNonOAuthErrorsAreProblems(t *testing.T) {
	h := newHarness(t)
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/nowhere", 404},
		{"POST", "/jwks", 405},
		{"DELETE", "/.well-known/openid-configuration", 405},
	} {
		r := h.do(t, tt.method, tt.path, "", nil, nil)
		if r.status != tt.status || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d %q", tt.method, tt.path, r.status, r.header.Get("Content-Type"))
			continue
		}
		var p struct {
			Status    int    `json:"status"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Status != tt.status || p.RequestID != r.header.Get("X-Request-Id") {
			t.Errorf("%s %s: problem %+v, header id %q", tt.method, tt.path, p, r.header.Get("X-Request-Id"))
		}
	}
}

func TestMetadata(t *testing.T) {
	h := newHarness(t)
	var docs []map[string]any
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		r := h.do(t, "GET", p, "", nil, nil)
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %q", p, r.status, r.header.Get("Content-Type"))
		}
		docs = append(docs, r.json(t))
	}
	if diff := cmp.Diff(docs[0], docs[1]); diff != "" {
		t.Errorf("the two documents differ (-rfc8414 +oidc):\n%s", diff)
	}
	m := docs[0]
	want := map[string]any{
		"issuer":                 h.url,
		"token_endpoint":         h.url + "/token",
		"jwks_uri":               h.url + "/jwks",
		"introspection_endpoint": h.url + "/introspect",
		"revocation_endpoint":    h.url + "/revoke",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	methods := toStrings(m["token_endpoint_auth_methods_supported"])
	for _, need := range []string{"client_secret_basic", "client_secret_post", "private_key_jwt"} {
		if !slices.Contains(methods, need) {
			t.Errorf("token_endpoint_auth_methods_supported lacks %s: %v", need, methods)
		}
	}
	if !slices.Contains(toStrings(m["grant_types_supported"]), "client_credentials") {
		t.Errorf("grant_types_supported = %v", m["grant_types_supported"])
	}
	for _, sc := range []string{"orders:read", "orders:write", "reports:read"} {
		if !slices.Contains(toStrings(m["scopes_supported"]), sc) {
			t.Errorf("scopes_supported lacks %s: %v", sc, m["scopes_supported"])
		}
	}
	for _, k := range []string{"introspection_signing_alg_values_supported", "token_endpoint_auth_signing_alg_values_supported"} {
		for _, alg := range toStrings(m[k]) {
			if strings.HasPrefix(alg, "HS") || alg == "none" {
				t.Errorf("%s offers %s", k, alg)
			}
		}
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// TestJWKSCaching: the JWKS has Cache-Control and an ETag, answers 304 to a matching
// If-None-Match, and its ETag changes when the key set does.
func TestJWKSCaching(t *testing.T) {
	h := newHarness(t)
	r := h.do(t, "GET", "/jwks", "", nil, nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("%d %q", r.status, r.header.Get("Content-Type"))
	}
	if cc := r.header.Get("Cache-Control"); !regexp.MustCompile(`max-age=\d+`).MatchString(cc) {
		t.Errorf("Cache-Control = %q", cc)
	}
	etag := r.header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(r.body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s (%v)", r.body, err)
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		if _, ok := set.Keys[0][private]; ok {
			t.Errorf("JWKS publishes private member %q", private)
		}
	}
	if set.Keys[0]["alg"] != "ES256" || set.Keys[0]["use"] != "sig" || set.Keys[0]["kid"] == "" {
		t.Errorf("key = %v", set.Keys[0])
	}

	nm := h.do(t, "GET", "/jwks", "", nil, map[string]string{"If-None-Match": etag})
	if nm.status != http.StatusNotModified || len(nm.body) != 0 {
		t.Errorf("If-None-Match with the current ETag: %d %q", nm.status, nm.body)
	}
	if stale := h.do(t, "GET", "/jwks", "", nil, map[string]string{"If-None-Match": `"stale"`}); stale.status != 200 {
		t.Errorf("If-None-Match with another ETag: %d", stale.status)
	}
	if head := h.do(t, "HEAD", "/jwks", "", nil, nil); head.status != 200 || head.header.Get("ETag") != etag {
		t.Errorf("HEAD: %d %q", head.status, head.header.Get("ETag"))
	}

	if _, err := h.keys.Rotate(t.Context(), keys.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	r2 := h.do(t, "GET", "/jwks", "", nil, map[string]string{"If-None-Match": etag})
	if r2.status != 200 || r2.header.Get("ETag") == etag {
		t.Errorf("after rotation: %d, ETag %q (was %q)", r2.status, r2.header.Get("ETag"), etag)
	}
}

// TestFormParametersMustBeInBody: credentials in the URL are refused even with a valid body.
func TestFormParametersMustBeInBody(t *testing.T) {
	h := newHarness(t)
	q := url.Values{"client_id": {postApp}, "client_secret": {h.secrets[postApp]}}
	r := h.do(t, "POST", "/token?"+q.Encode(), "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials"), nil)
	if r.status != 400 || r.json(t)["error"] != "invalid_request" {
		t.Fatalf("%d %s", r.status, r.body)
	}
}
