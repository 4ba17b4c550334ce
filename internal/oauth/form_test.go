package oauth

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestParseForm(t *testing.T) {
	const formType = "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		method      string
		target      string
		contentType string
		body        string
		max         int64
		want        Form
		wantStatus  int // of the *Error; 0 for success
	}{
		{"simple", "POST", "/token", formType, "grant_type=client_credentials&scope=a+b", 1024,
			Form{"grant_type": "client_credentials", "scope": "a b"}, 0},
		{"content type with charset", "POST", "/token", formType + "; charset=UTF-8", "a=1", 1024, Form{"a": "1"}, 0},
		{"content type in capitals", "POST", "/token", "Application/X-WWW-Form-URLEncoded", "a=1", 1024, Form{"a": "1"}, 0},
		{"empty value counts as omitted", "POST", "/token", formType, "a=&b=2", 1024, Form{"b": "2"}, 0},
		{"empty body", "POST", "/token", formType, "", 1024, Form{}, 0},
		{"exactly the limit", "POST", "/token", formType, "a=" + strings.Repeat("x", 8), 10, Form{"a": strings.Repeat("x", 8)}, 0},
		{"one byte over the limit", "POST", "/token", formType, "a=" + strings.Repeat("x", 9), 10, nil, 413},
		{"GET", "GET", "/token", formType, "", 1024, nil, 400},
		{"query string", "POST", "/token?a=1", formType, "b=2", 1024, nil, 400},
		{"bare question mark is fine", "POST", "/token?", formType, "b=2", 1024, Form{"b": "2"}, 0},
		{"JSON", "POST", "/token", "application/json", `{"a":1}`, 1024, nil, 400},
		{"no content type", "POST", "/token", "", "a=1", 1024, nil, 400},
		{"malformed content type", "POST", "/token", "application/x-www-form-urlencoded; ;;", "a=1", 1024, nil, 400},
		{"repeated parameter", "POST", "/token", formType, "a=1&a=2", 1024, nil, 400},
		{"repeated parameter, one empty", "POST", "/token", formType, "a=&a=2", 1024, nil, 400},
		{"bad escape", "POST", "/token", formType, "a=%zz", 1024, nil, 400},
		{"semicolon separator", "POST", "/token", formType, "a=1;b=2", 1024, nil, 400},
		{"invalid UTF-8 value", "POST", "/token", formType, "a=%ff%fe", 1024, nil, 400},
		{"invalid UTF-8 name", "POST", "/token", formType, "%ff=1", 1024, nil, 400},
		{"NUL in value", "POST", "/token", formType, "a=x%00y", 1024, nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			f, err := ParseForm(httptest.NewRecorder(), r, tt.max)
			if tt.wantStatus != 0 {
				var oe *Error
				if !errors.As(err, &oe) {
					t.Fatalf("err = %v, want an *Error", err)
				}
				if oe.Status != tt.wantStatus || oe.Code != CodeInvalidRequest {
					t.Errorf("got %d %s, want %d invalid_request", oe.Status, oe.Code, tt.wantStatus)
				}
				if f != nil {
					t.Errorf("form returned with an error: %v", f)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, f); diff != "" {
				t.Errorf("form (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseFormStopsReading: a huge body is not read past the limit.
func TestParseFormStopsReading(t *testing.T) {
	body := &countingReader{r: strings.NewReader("a=" + strings.Repeat("x", 10<<20))}
	r := httptest.NewRequest("POST", "/token", body)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, err := ParseForm(httptest.NewRecorder(), r, 1024); err == nil {
		t.Fatal("accepted a 10 MiB body")
	}
	if body.n > 64<<10 {
		t.Errorf("read %d bytes for a 1 KiB limit", body.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestRepeatedParameterMessage: the error names the parameter, safely.
func TestRepeatedParameterMessage(t *testing.T) {
	_, err := ParseFormBody("scope=a&scope=b")
	if err == nil || !strings.Contains(err.(*Error).Description, "scope") {
		t.Fatalf("err = %v", err)
	}
	long := strings.Repeat("n", 100) + "%0A%1B"
	_, err = ParseFormBody(long + "=1&" + long + "=2")
	desc := err.(*Error).Description
	if len(desc) > 80 || strings.ContainsAny(desc, "\n\x1b") {
		t.Errorf("description %q is long or has control characters", desc)
	}
}

// FuzzParseFormBody: no panic; an accepted body has each name once with a non-empty, valid,
// NUL-free value; and encoding the result parses back to the same form.
func FuzzParseFormBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body string) {
		form, err := ParseFormBody(body)
		if err != nil {
			var oe *Error
			if !errors.As(err, &oe) || oe.Code != CodeInvalidRequest || oe.Status != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400 invalid_request", err)
			}
			if !utf8.ValidString(oe.Description) || len(oe.Description) > 100 {
				t.Fatalf("bad description %q", oe.Description)
			}
			return
		}
		values := url.Values{}
		for k, v := range form {
			if v == "" || !utf8.ValidString(k) || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				t.Fatalf("accepted %q=%q", k, v)
			}
			values.Set(k, v)
		}
		again, err := ParseFormBody(values.Encode())
		if err != nil {
			t.Fatalf("re-encoded form does not parse: %v", err)
		}
		if diff := cmp.Diff(form, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
