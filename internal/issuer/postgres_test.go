package issuer_test

import (
	"net/http"
	"net/url"
	"os"
	"testing"

	"github.com/portcullis/portcullis/internal/oauth"
)

const postgresEnv = "PORTCULLIS_TEST_POSTGRES"

// TestFlowOnPostgres runs the issuer's core flow with the PostgreSQL store: tokens of both
// formats, introspection in both forms, revocation, and a replayed client assertion.
func TestFlowOnPostgres(t *testing.T) {
	dsn := os.Getenv(postgresEnv)
	if dsn == "" {
		t.Skipf("%s is not set: skipping the issuer on PostgreSQL (e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", postgresEnv, postgresEnv)
	}
	h := buildHarness(t, harnessOptions{postgres: dsn})
	tok := h.token(t, basicApp, "orders:read")
	checkOpaque(t, tok)
	if got := h.introspect(t, resource, tok, "").json(t); got["active"] != true || got["customer_id"] != "acme" {
		t.Fatalf("introspection: %v", got)
	}
	if r := h.introspect(t, resource, tok, mediaIntrospectionJWT); r.status != 200 || r.header.Get("Content-Type") != mediaIntrospectionJWT {
		t.Fatalf("jwt introspection: %d %s", r.status, r.body)
	}
	jwt := h.token(t, internalSvc, "")
	if _, err := h.verifier(t, h.url).Verify(t.Context(), jwt); err != nil {
		t.Fatalf("jwt: %v", err)
	}
	if r := h.post(t, "/revoke", url.Values{"token": {tok}}, h.basic(basicApp)); r.status != http.StatusOK {
		t.Fatalf("revoke: %d", r.status)
	}
	if got := string(h.introspect(t, resource, tok, "").body); got != inactive {
		t.Fatalf("after revocation: %s", got)
	}
	form := ccForm("client_id", inlineKeys, "client_assertion_type", oauth.AssertionTypeJWT, "client_assertion", h.assertion(t, inlineKeys, nil))
	checkOutcome(t, h.post(t, "/token", form, nil), 200, "")
	checkOutcome(t, h.post(t, "/token", form, nil), 401, "invalid_client")
}
