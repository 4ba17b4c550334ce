package jwtverify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustPolicy(t testing.TB, expr string) *Policy {
	t.Helper()
	p, err := CompilePolicy(expr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompilePolicyRejects(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want string
	}{
		{"empty", "  ", "empty expression"},
		{"syntax error", "claims.sub ==", "policy"},
		{"not bool", `claims.sub`, "want bool"},
		{"int", `1 + 2`, "want bool"},
		{"unknown variable", `user.name == "x"`, "undeclared reference"},
		{"unknown request field", `request.nope == "x"`, "undefined field"},
		{"request field of wrong type", `request.method == 1`, "no matching overload"},
		{"too long", `true && ` + strings.Repeat(`true && `, MaxPolicyLength/8) + `true`, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompilePolicy(tc.expr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CompilePolicy error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestPolicyAllow(t *testing.T) {
	claims := &Claims{Raw: decodeRaw(t, `{
		"sub": "alice", "customer_id": "acme", "scope": "orders:read orders:write",
		"exp": 1760000300, "level": 2.5, "roles": ["reader", "auditor"],
		"org": {"id": 7, "name": "Acme"}
	}`)}
	req := RequestInput{
		Method:  "GET",
		Path:    "/api/orders/42",
		Params:  map[string]string{"id": "42"},
		Headers: map[string]string{"x-tenant": "acme"},
	}
	tests := []struct {
		name     string
		expr     string
		resource map[string]any
		want     bool
		wantErr  bool
	}{
		{"owner matches", `resource.customer == claims.customer_id`, map[string]any{"customer": "acme"}, true, false},
		{"owner differs", `resource.customer == claims.customer_id`, map[string]any{"customer": "globex"}, false, false},
		{"scope split", `"orders:read" in claims.scope.split(" ")`, nil, true, false},
		{"integer claim compared as int", `claims.exp > 1760000000 && claims.exp < 1760000301`, nil, true, false},
		{"fractional claim as double", `claims.level > 2.0 && claims.level < 3`, nil, true, false},
		{"list claim", `"auditor" in claims.roles`, nil, true, false},
		{"nested object with a number", `claims.org.id == 7 && claims.org.name == "Acme"`, nil, true, false},
		{"request fields", `request.method == "GET" && request.path.startsWith("/api/orders/") && request.params.id == "42"`, nil, true, false},
		{"header", `request.headers["x-tenant"] == claims.customer_id`, nil, true, false},
		{"resource with Go ints", `resource.owner_id == 42 && resource.amount > 10.5`, map[string]any{"owner_id": int64(42), "amount": 11}, true, false},
		{"has() on a missing claim", `has(claims.admin) && claims.admin == true`, nil, false, false},
		{"missing claim is an error", `claims.admin == true`, nil, false, true},
		{"missing resource key is an error", `resource.customer == "acme"`, nil, false, true},
		{"type mismatch at runtime is an error", `claims.sub > 5`, nil, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPolicy(t, tc.expr)
			got, err := p.Allow(t.Context(), PolicyInput{Claims: claims, Request: req, Resource: tc.resource})
			if (err != nil) != tc.wantErr {
				t.Fatalf("Allow error = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("Allow = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPolicyNilInputs(t *testing.T) {
	p := mustPolicy(t, `size(claims) == 0 && size(resource) == 0 && request.method == ""`)
	ok, err := p.Allow(t.Context(), PolicyInput{})
	if err != nil || !ok {
		t.Fatalf("Allow on empty input = %v, %v", ok, err)
	}
}

func TestPolicyCostLimit(t *testing.T) {
	list := make([]any, 1000)
	for i := range list {
		list[i] = json.Number("1")
	}
	p := mustPolicy(t, `claims.list.all(x, claims.list.all(y, x == y))`) // 10^6 steps
	ok, err := p.Allow(t.Context(), PolicyInput{Claims: &Claims{Raw: map[string]any{"list": list}}})
	if ok || err == nil || !strings.Contains(err.Error(), "cost") {
		t.Fatalf("Allow = %v, %v; want a cost limit error and deny", ok, err)
	}
}

func TestPolicyContextCancelled(t *testing.T) {
	list := make([]any, 30) // 900 steps: well under the cost limit
	for i := range list {
		list[i] = json.Number("1")
	}
	p := mustPolicy(t, `claims.list.all(x, claims.list.all(y, x == y))`)
	in := PolicyInput{Claims: &Claims{Raw: map[string]any{"list": list}}}
	if ok, err := p.Allow(t.Context(), in); !ok || err != nil {
		t.Fatalf("Allow = %v, %v; want true", ok, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ok, err := p.Allow(ctx, in)
	if ok || err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Allow with a cancelled context = %v, %v; want deny and an interruption", ok, err)
	}
}

func TestPolicySet(t *testing.T) {
	in := PolicyInput{Claims: &Claims{Raw: map[string]any{"role": "admin"}}}
	allow := mustPolicy(t, `claims.role == "admin"`)
	deny := mustPolicy(t, `claims.role == "user"`)
	broken := mustPolicy(t, `claims.missing == "x"`)
	tests := []struct {
		name    string
		set     PolicySet
		want    bool
		wantErr bool
	}{
		{"empty denies", nil, false, false},
		{"one allows", PolicySet{deny, allow}, true, false},
		{"none allows", PolicySet{deny, deny}, false, false},
		{"error then allow", PolicySet{broken, allow}, true, false},
		{"error and deny", PolicySet{broken, deny}, false, true},
		{"nil entry ignored", PolicySet{nil}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.set.Allow(t.Context(), in)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("Allow = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestRequestInputFrom(t *testing.T) {
	mux := http.NewServeMux()
	var got RequestInput
	mux.HandleFunc("GET /customers/{customer}/orders/{id}/{rest...}", func(w http.ResponseWriter, r *http.Request) {
		got = RequestInputFrom(r)
	})
	r := httptest.NewRequest(http.MethodGet, "/customers/acme/orders/42/items/1", nil)
	r.Header.Set("Authorization", "Bearer secret")
	r.Header.Set("Proxy-Authorization", "Basic secret")
	r.Header.Set("Cookie", "session=secret")
	r.Header.Add("X-Tenant", "acme")
	r.Header.Add("X-Tenant", "other")
	mux.ServeHTTP(httptest.NewRecorder(), r)
	want := RequestInput{
		Method:  "GET",
		Path:    "/customers/acme/orders/42/items/1",
		Params:  map[string]string{"customer": "acme", "id": "42", "rest": "items/1"},
		Headers: map[string]string{"x-tenant": "acme, other"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RequestInputFrom (-want +got):\n%s", diff)
	}

	named := RequestInputFrom(r, "id")
	if diff := cmp.Diff(map[string]string{"id": "42"}, named.Params); diff != "" {
		t.Errorf("named params (-want +got):\n%s", diff)
	}
}

func TestPolicyErrorsNameTheExpression(t *testing.T) {
	p := mustPolicy(t, `claims.nope == "x"`)
	_, err := p.Allow(t.Context(), PolicyInput{})
	if err == nil || !strings.Contains(err.Error(), `claims.nope`) {
		t.Fatalf("error %v should quote the expression", err)
	}
	if p.String() != `claims.nope == "x"` {
		t.Errorf("String() = %q", p.String())
	}
	var target interface{ Unwrap() error }
	if !errors.As(err, &target) {
		t.Error("the evaluation error should be wrapped")
	}
}

func decodeRaw(t testing.TB, s string) map[string]any {
	t.Helper()
	c, err := parseClaims([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c.Raw
}
