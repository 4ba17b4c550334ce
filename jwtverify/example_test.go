package jwtverify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/jwtverify"
)

// issue plays the authorization server: it signs an RFC 9068 access token with key.
func issue(key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
	if err != nil {
		log.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		log.Fatal(err)
	}
	token, _ := obj.CompactSerialize()
	return token
}

// jwksFor publishes the public half of key, as the issuer's /jwks endpoint would.
func jwksFor(key *ecdsa.PrivateKey, kid string) []byte {
	doc, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: key.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"},
	}})
	return doc
}

func accessToken(key *ecdsa.PrivateKey, extra map[string]any) string {
	now := time.Now()
	claims := map[string]any{
		"iss": "https://issuer.example", "aud": "https://orders.example", "sub": "alice",
		"client_id": "orders-app", "scope": "orders:read",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
	for k, v := range extra {
		claims[k] = v
	}
	return issue(key, "2025-10", claims)
}

func ExampleVerifier_Verify() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	// In a service: a static JWKS (or NewRemoteJWKS with the issuer's jwks_uri).
	keys, err := jwtverify.NewStaticKeySet(jwksFor(key, "2025-10"))
	if err != nil {
		log.Fatal(err)
	}
	v, err := jwtverify.New(jwtverify.Config{
		Issuer:    "https://issuer.example",
		Audiences: []string{"https://orders.example"},
		Keys:      keys, // ES256 and typ at+jwt by default
	})
	if err != nil {
		log.Fatal(err)
	}

	claims, err := v.Verify(context.Background(), accessToken(key, nil))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(claims.Subject, claims.ClientID, claims.Scopes, claims.HasScope("orders:write"))

	_, err = v.Verify(context.Background(), "eyJhbGciOiJub25lIn0.e30.")
	fmt.Println(err != nil)
	// Output:
	// alice orders-app [orders:read] false
	// true
}

func ExampleVerifier_Middleware() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys, _ := jwtverify.NewStaticKeySet(jwksFor(key, "2025-10"))
	v, _ := jwtverify.New(jwtverify.Config{
		Issuer: "https://issuer.example", Audiences: []string{"https://orders.example"}, Keys: keys,
	})

	mux := http.NewServeMux()
	mux.Handle("GET /orders", jwtverify.RequireScopes(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := jwtverify.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "orders of %s", claims.Subject)
	}), "orders:read"))
	mux.Handle("POST /orders", jwtverify.RequireScopes(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}), "orders:write"))
	handler := v.Middleware(mux)

	call := func(method, token string) {
		r := httptest.NewRequest(method, "/orders", nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		fmt.Println(strings.TrimSpace(fmt.Sprintln(method, w.Code, w.Header().Get("WWW-Authenticate"))))
	}
	call("GET", "")
	call("GET", "not-a-jwt")
	call("GET", accessToken(key, nil))
	call("POST", accessToken(key, nil))
	// Output:
	// GET 401 Bearer
	// GET 401 Bearer error="invalid_token"
	// GET 200
	// POST 403 Bearer error="insufficient_scope", scope="orders:write"
}

func ExampleCompilePolicy() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys, _ := jwtverify.NewStaticKeySet(jwksFor(key, "2025-10"))
	v, _ := jwtverify.New(jwtverify.Config{
		Issuer: "https://issuer.example", Audiences: []string{"https://orders.example"}, Keys: keys,
	})

	// Compiled (and type-checked) once, when configuration loads.
	owner, err := jwtverify.CompilePolicy(`resource.customer == claims.customer_id && "orders:read" in claims.scope.split(" ")`)
	if err != nil {
		log.Fatal(err)
	}
	policies := jwtverify.PolicySet{owner}

	claims, err := v.Verify(context.Background(), accessToken(key, map[string]any{"customer_id": "acme"}))
	if err != nil {
		log.Fatal(err)
	}
	// Inside the handler, per object: is this caller allowed to see this order?
	for _, order := range []map[string]any{{"id": 1, "customer": "acme"}, {"id": 2, "customer": "globex"}} {
		allowed, err := policies.Allow(context.Background(), jwtverify.PolicyInput{Claims: claims, Resource: order})
		fmt.Println(order["id"], allowed, err)
	}

	_, err = jwtverify.CompilePolicy(`claims.customer_id`)
	fmt.Println(err)
	// Output:
	// 1 true <nil>
	// 2 false <nil>
	// jwtverify: policy: expression has type dyn, want bool
}
