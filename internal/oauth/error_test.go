package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteError(t *testing.T) {
	secretCause := errors.New(`sql: no rows; file /srv/portcullis/store.go:42 client "x" hash $hmac-sha256$abc`)
	tests := []struct {
		name        string
		err         error
		wantStatus  int
		wantBody    map[string]string
		wantWWWAuth bool
		wantRetry   bool
	}{
		{"invalid_client", InvalidClient(secretCause), 401, map[string]string{"error": "invalid_client", "error_description": "client authentication failed"}, true, false},
		{"invalid_request", InvalidRequest("grant_type is required"), 400, map[string]string{"error": "invalid_request", "error_description": "grant_type is required"}, false, false},
		{"invalid_grant", InvalidGrant("code expired", secretCause), 400, map[string]string{"error": "invalid_grant", "error_description": "code expired"}, false, false},
		{"unauthorized_client", UnauthorizedClient("no"), 400, map[string]string{"error": "unauthorized_client", "error_description": "no"}, false, false},
		{"unsupported_grant_type", UnsupportedGrantType(), 400, map[string]string{"error": "unsupported_grant_type", "error_description": "unsupported grant_type"}, false, false},
		{"invalid_scope", InvalidScope("unknown scope"), 400, map[string]string{"error": "invalid_scope", "error_description": "unknown scope"}, false, false},
		{"server_error", ServerError(secretCause), 500, map[string]string{"error": "server_error", "error_description": "internal error"}, false, false},
		{"unavailable", Unavailable(secretCause), 503, map[string]string{"error": "temporarily_unavailable", "error_description": "temporarily unavailable, retry later"}, false, true},
		{"plain error becomes server_error", secretCause, 500, map[string]string{"error": "server_error", "error_description": "internal error"}, false, false},
		{"wrapped *Error keeps its face", fmt.Errorf("token endpoint: %w", InvalidScope("bad")), 400, map[string]string{"error": "invalid_scope", "error_description": "bad"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			WriteError(w, tt.err)
			if w.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", w.Code, tt.wantStatus)
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if diff := cmp.Diff(tt.wantBody, body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			for _, leak := range []string{"sql", "store.go", "/srv", "hmac", `"x"`} {
				if strings.Contains(w.Body.String(), leak) {
					t.Errorf("body leaks %q: %s", leak, w.Body)
				}
			}
			h := w.Header()
			if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
				t.Errorf("headers %v", h)
			}
			if got := h.Get("WWW-Authenticate") != ""; got != tt.wantWWWAuth {
				t.Errorf("WWW-Authenticate present = %v, want %v", got, tt.wantWWWAuth)
			}
			if got := h.Get("Retry-After") != ""; got != tt.wantRetry {
				t.Errorf("Retry-After present = %v, want %v", got, tt.wantRetry)
			}
		})
	}
}

// TestErrorTwoFaces: the cause is in Error() and reachable with errors.Is (for the log), never
// in the public description.
func TestErrorTwoFaces(t *testing.T) {
	cause := errors.New("wrong client secret")
	e := InvalidClient(cause)
	if !errors.Is(e, cause) {
		t.Error("cause not reachable with errors.Is")
	}
	if !strings.Contains(e.Error(), "wrong client secret") {
		t.Errorf("Error() = %q lacks the cause", e.Error())
	}
	if strings.Contains(e.Description, "secret") {
		t.Errorf("description %q names the reason", e.Description)
	}
	if InvalidClient(errors.New("unknown client")).Description != e.Description {
		t.Error("unknown client and wrong secret have different descriptions")
	}
	if AsError(e) != e {
		t.Error("AsError changed an *Error")
	}
	if got := AsError(cause); got.Code != CodeServerError || got.Status != http.StatusInternalServerError || !errors.Is(got, cause) {
		t.Errorf("AsError(plain) = %+v", got)
	}
}
