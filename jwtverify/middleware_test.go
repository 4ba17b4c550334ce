package jwtverify

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestMiddleware(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newTestVerifier(t, staticKeys(t, k), nil)
	good := k.mint(t, k.defaultHeader(), baseClaims(testNow))
	expired := k.mint(t, k.defaultHeader(), with(baseClaims(testNow), "exp", testNow.Add(-time.Hour).Unix()))
	var seen *Claims
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := ClaimsFromContext(r.Context())
		if !ok {
			t.Error("no claims in the context")
		}
		seen = c
		w.WriteHeader(http.StatusNoContent)
	}))

	tests := []struct {
		name       string
		prepare    func(r *http.Request)
		wantStatus int
		wantAuth   string
	}{
		{"valid bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+good) }, http.StatusNoContent, ""},
		{"scheme case-insensitive", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+good) }, http.StatusNoContent, ""},
		{"no credentials", func(r *http.Request) {}, http.StatusUnauthorized, "Bearer"},
		{"basic auth", func(r *http.Request) { r.SetBasicAuth("u", "p") }, http.StatusUnauthorized, "Bearer"},
		{"token in the query is ignored", func(r *http.Request) { r.URL.RawQuery = "access_token=" + good }, http.StatusUnauthorized, "Bearer"},
		{"token in a cookie is ignored", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "access_token", Value: good}) }, http.StatusUnauthorized, "Bearer"},
		{"token in a form body is ignored", func(r *http.Request) {
			r.Method = http.MethodPost
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Body = http.NoBody
		}, http.StatusUnauthorized, "Bearer"},
		{"invalid token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer abc.def.ghi") }, http.StatusUnauthorized, `Bearer error="invalid_token"`},
		{"expired token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+expired) }, http.StatusUnauthorized, `Bearer error="invalid_token"`},
		{"empty bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }, http.StatusBadRequest, `Bearer error="invalid_request"`},
		{"two authorization headers", func(r *http.Request) {
			r.Header.Add("Authorization", "Bearer "+good)
			r.Header.Add("Authorization", "Bearer "+good)
		}, http.StatusBadRequest, `Bearer error="invalid_request"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen = nil
			r := httptest.NewRequest(http.MethodGet, "/orders", nil)
			tc.prepare(r)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, tc.wantStatus)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.wantAuth {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.wantAuth)
			}
			if tc.wantStatus == http.StatusNoContent && (seen == nil || seen.Subject != "alice") {
				t.Errorf("handler saw claims %+v", seen)
			}
			if tc.wantStatus != http.StatusNoContent && seen != nil {
				t.Error("the handler ran for a refused request")
			}
			if strings.Contains(w.Body.String(), "expired") || strings.Contains(w.Body.String(), "jwtverify") {
				t.Errorf("the response tells why: %q", w.Body.String())
			}
		})
	}
}

func TestMiddlewareKeySourceUnavailable(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	down := KeyFunc(func(context.Context, string) ([]jose.JSONWebKey, error) {
		return nil, errors.New("connection refused")
	})
	v := newTestVerifier(t, down, nil)
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("handler ran") }))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+k.mint(t, k.defaultHeader(), baseClaims(testNow)))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503", w.Code)
	}
}

func TestRequireScopes(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	tests := []struct {
		name       string
		claims     *Claims
		scopes     []string
		wantStatus int
		wantAuth   string
	}{
		{"has the scope", &Claims{Scopes: []string{"orders:read"}}, []string{"orders:read"}, http.StatusNoContent, ""},
		{"has all scopes", &Claims{Scopes: []string{"b", "a"}}, []string{"a", "b"}, http.StatusNoContent, ""},
		{"lacks one", &Claims{Scopes: []string{"orders:read"}}, []string{"orders:read", "orders:write"}, http.StatusForbidden,
			`Bearer error="insufficient_scope", scope="orders:read orders:write"`},
		{"prefix is not a match", &Claims{Scopes: []string{"orders"}}, []string{"orders:read"}, http.StatusForbidden,
			`Bearer error="insufficient_scope", scope="orders:read"`},
		{"scope unsafe to quote is left out", &Claims{}, []string{`a"b`}, http.StatusForbidden, `Bearer error="insufficient_scope"`},
		{"no claims at all", nil, []string{"a"}, http.StatusUnauthorized, "Bearer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.claims != nil {
				r = r.WithContext(ContextWithClaims(r.Context(), tc.claims))
			}
			w := httptest.NewRecorder()
			RequireScopes(ok, tc.scopes...).ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, tc.wantStatus)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.wantAuth {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.wantAuth)
			}
		})
	}
}

func TestPolicyMiddleware(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newTestVerifier(t, staticKeys(t, k), nil)
	acme := k.mint(t, k.defaultHeader(), with(baseClaims(testNow), "customer_id", "acme"))
	set := PolicySet{mustPolicy(t, `request.params["customer"] == claims.customer_id && request.method == "GET"`)}

	mux := http.NewServeMux()
	mux.Handle("/customers/{customer}/orders", PolicyMiddleware(set, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	h := v.Middleware(mux)

	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
	}{
		{"own customer", http.MethodGet, "/customers/acme/orders", http.StatusNoContent},
		{"another customer", http.MethodGet, "/customers/globex/orders", http.StatusForbidden},
		{"method not allowed by the policy", http.MethodDelete, "/customers/acme/orders", http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			r.Header.Set("Authorization", "Bearer "+acme)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, tc.wantStatus)
			}
		})
	}

	t.Run("empty set denies", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r = r.WithContext(ContextWithClaims(r.Context(), &Claims{}))
		w := httptest.NewRecorder()
		PolicyMiddleware(nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("handler ran") })).ServeHTTP(w, r)
		if w.Code != http.StatusForbidden {
			t.Errorf("status = %d, want 403", w.Code)
		}
	})
	t.Run("no claims", func(t *testing.T) {
		w := httptest.NewRecorder()
		PolicyMiddleware(set, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("handler ran") })).
			ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		if w.Code != http.StatusUnauthorized {
			t.Errorf("status = %d, want 401", w.Code)
		}
	})
}
