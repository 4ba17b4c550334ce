package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
	"github.com/portcullis/portcullis/jwtverify"
)

// TestRestartKeepsKeysAndTokens runs the demo twice on one directory: tokens issued before the
// restart are still active after it (and a revoked one still revoked), the JWT signed before
// verifies against the JWKS served after with the same kid, and the clients keep their secrets.
func TestRestartKeepsKeysAndTokens(t *testing.T) {
	dir := t.TempDir()
	d1 := startDemo(t, dir)
	opaque := d1.token(t, "acme-app")
	revoked := d1.token(t, "globex-app")
	if status, body := postForm(t, d1.http, d1.info.Issuer+"/revoke", "globex-app", d1.info.secret("globex-app"), url.Values{"token": {revoked}}, nil); status != 200 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	jwt := d1.token(t, "reports-svc")
	kid := kidOf(t, jwt)
	if code := d1.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("first run exited %d\n%s", code, d1.stderr)
	}

	d2 := startDemo(t, dir)
	for _, c := range d1.info.Clients {
		if d2.info.secret(c.ClientID) != c.ClientSecret {
			t.Errorf("client %s has a new secret after the restart", c.ClientID)
		}
	}
	introspect := func(tok string) map[string]any {
		status, body := postForm(t, d2.http, d2.info.Issuer+"/introspect", "gateway", d2.info.secret("gateway"), url.Values{"token": {tok}}, nil)
		var m map[string]any
		if status != 200 || json.Unmarshal(body, &m) != nil {
			t.Fatalf("introspect: %d %s", status, body)
		}
		return m
	}
	if m := introspect(opaque); m["active"] != true || m["client_id"] != "acme-app" {
		t.Errorf("opaque token after restart: %v", m)
	}
	if m := introspect(revoked); m["active"] != false {
		t.Errorf("revoked token came back after restart: %v", m)
	}
	if m := introspect(jwt); m["active"] != true {
		t.Errorf("JWT record after restart: %v", m)
	}

	// The JWT from the first run verifies against the JWKS the second run serves (the first
	// run's URL is its issuer: --ports auto moved the port).
	keys, err := jwtverify.NewRemoteJWKS(d2.info.Issuer+"/jwks", jwtverify.RemoteOptions{HTTPClient: d2.http})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	v, err := jwtverify.New(jwtverify.Config{Issuer: d1.info.Issuer, Audiences: audOf(t, jwt), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(t.Context(), jwt)
	if err != nil {
		t.Fatalf("JWT from before the restart: %v", err)
	}
	if claims.KeyID != kid {
		t.Errorf("verified with kid %s, signed with %s", claims.KeyID, kid)
	}
	if now := kidOf(t, d2.token(t, "reports-svc")); now != kid {
		t.Errorf("after the restart tokens are signed by %s, before by %s (a restart must not rotate)", now, kid)
	}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	p, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.PS256})
	if err != nil {
		t.Fatalf("not a JWS: %v", err)
	}
	return p.Signatures[0].Header.KeyID
}

// audOf reads the audience of a JWT without verifying it, to configure the verifier that will.
func audOf(t *testing.T, tok string) []string {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Aud any `json:"aud"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	switch a := c.Aud.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			out = append(out, x.(string))
		}
		return out
	}
	t.Fatalf("aud %v", c.Aud)
	return nil
}

// TestGracefulShutdownOnSIGTERM: a token request whose body is still arriving when SIGTERM
// comes is answered, the process exits 0, and its audit event reached the store before the
// store was closed.
func TestGracefulShutdownOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	d := startDemo(t, dir)
	u, err := url.Parse(d.info.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", u.Host, d.http.Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := "grant_type=client_credentials&scope=orders%3Aread"
	head := fmt.Sprintf("POST /token HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
		u.Host, base64.StdEncoding.EncodeToString([]byte("acme-app:"+d.info.secret("acme-app"))), len(body))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	// net/http answers "100 Continue" when the handler starts reading the body: from then on
	// the request is in flight.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("no 100 Continue: %q %v", line, err)
	}
	if blank, _ := r.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("after 100 Continue: %q", blank)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatalf("the server closed the connection of an in-flight request: %v", err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no response to the in-flight request: %v", err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(respBody), "access_token") {
		t.Fatalf("in-flight request: %d %s", resp.StatusCode, respBody)
	}
	requestID := resp.Header.Get("X-Request-Id")

	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the process did not exit after SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, d.stderr)
	}

	// The store was closed cleanly (SQLite folds the WAL back in when the last connection
	// closes) and holds the audit event of the request that finished during shutdown.
	if _, err := os.Stat(filepath.Join(dir, "portcullis.db-wal")); !os.IsNotExist(err) {
		t.Errorf("the WAL file is still there (store not closed?): %v", err)
	}
	db, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: "file:" + filepath.Join(dir, "portcullis.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	evs, err := db.ListAudit(t.Context(), store.AuditFilter{Type: "token.issued", ClientID: "acme-app"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		found = found || e.RequestID == requestID
	}
	if !found {
		t.Errorf("the audit event of request %s was lost at shutdown (%d token.issued events)", requestID, len(evs))
	}
}
