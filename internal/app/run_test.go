package app

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// slowTokenRequest opens a TLS connection to the issuer and starts a token request whose body
// has not been sent. It returns once the handler is running: the request says "Expect:
// 100-continue", and net/http sends "100 Continue" only when the handler starts reading the
// body. finish sends the body and returns the response.
func slowTokenRequest(t *testing.T, s *testSetup) (finish func() (*http.Response, error)) {
	t.Helper()
	conn, err := tls.Dial("tcp", s.ln.Addr().String(), tlsClient(t, s.caFile).Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	body := "grant_type=client_credentials&scope=orders%3Aread"
	head := fmt.Sprintf("POST /token HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
		s.ln.Addr(), base64.StdEncoding.EncodeToString([]byte("cfg-app:"+cfgAppSecret)), len(body))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("no 100 Continue: %q %v", line, err)
	}
	if blank, err := r.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("after 100 Continue: %q %v", blank, err)
	}
	return func() (*http.Response, error) {
		if _, err := io.WriteString(conn, body); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		return resp, nil
	}
}

// TestGracefulShutdown: when the context is cancelled, an in-flight request (its body still
// arriving) completes, Run returns nil, and only then is the store closed, with the audit
// event of that request flushed into it.
func TestGracefulShutdown(t *testing.T) {
	s := newSetup(t)
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: telemetry.Discard(), Listeners: map[string]net.Listener{RoleIssuer: s.ln}, Ready: func() { close(ready) }})
	}()
	<-ready

	finish := slowTokenRequest(t, s)
	cancel()
	resp, err := finish()
	if err != nil {
		t.Fatalf("the in-flight request was cut off: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "access_token") {
		t.Fatalf("in-flight request: %d %s", resp.StatusCode, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the context was cancelled")
	}
	// New connections are refused once Run has returned.
	if c, err := net.DialTimeout("tcp", s.ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts connections")
	}
	assertClosedWithEvent(t, s.dir, resp.Header.Get("X-Request-Id"))
}

// assertClosedWithEvent checks the store was closed cleanly (SQLite removes the WAL file when
// its last connection closes) and that the request's token.issued event is in it.
func assertClosedWithEvent(t *testing.T, dir, requestID string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "portcullis.db-wal")); !os.IsNotExist(err) {
		t.Errorf("WAL file still present after Run returned (store not closed): %v", err)
	}
	db, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: "file:" + filepath.Join(dir, "portcullis.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	evs, err := db.ListAudit(context.Background(), store.AuditFilter{Type: "token.issued"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.RequestID == requestID {
			return
		}
	}
	t.Errorf("audit event of %s lost at shutdown (have %d token.issued)", requestID, len(evs))
}

// TestShutdownGraceIsBounded: a request that never finishes does not hold shutdown beyond
// Grace.
func TestShutdownGraceIsBounded(t *testing.T) {
	s := newSetup(t)
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: telemetry.Discard(), Grace: 200 * time.Millisecond,
			Listeners: map[string]net.Listener{RoleIssuer: s.ln}, Ready: func() { close(ready) }})
	}()
	<-ready
	finish := slowTokenRequest(t, s) // not finished before Run returns
	cancel()
	select {
	case <-done: // an error (the deadline) is fine; returning is the point
	case <-time.After(30 * time.Second):
		t.Fatal("Run waited for a request that never finishes")
	}
	// After Run returned the store and the audit trail are closed: the request must not be
	// served any more (its connection is closed), or it would run against closed parts.
	if resp, err := finish(); err == nil {
		body, _ := io.ReadAll(resp.Body)
		t.Errorf("a request was served after Run returned: %d %s", resp.StatusCode, body)
	}
}
