package telemetry

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLoggerRedactsSecretLookingAttributes(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log := NewLogger(&buf, slog.LevelInfo, format)
		log.Info("x", "client_secret", "s3cr3t", "access_token", "pcat_xyz", "Authorization", "Bearer abc",
			"password", "hunter2", "client_id", "acme-app", "key", Secret("master"))
		out := buf.String()
		for _, leaked := range []string{"s3cr3t", "pcat_xyz", "Bearer abc", "hunter2", "master"} {
			if strings.Contains(out, leaked) {
				t.Fatalf("%s log leaked %q: %s", format, leaked, out)
			}
		}
		if !strings.Contains(out, "acme-app") {
			t.Fatalf("%s log redacted an ordinary attribute: %s", format, out)
		}
	}
	if fmt.Sprint(Secret("x")) != "[redacted]" {
		t.Fatal("Secret prints itself")
	}
}

func TestMetricsHandlerServesTheRegistry(t *testing.T) {
	rec := httptest.NewRecorder()
	MetricsHandler(NewRegistry()).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Fatalf("status %d body %.200s", rec.Code, rec.Body)
	}
}
