package oauth

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Form is a parsed application/x-www-form-urlencoded body in which every parameter appears
// at most once (RFC 6749 §3.1: "Request and response parameters MUST NOT be included more
// than once"). Parameters sent without a value count as omitted.
type Form map[string]string

// Get returns the parameter or "".
func (f Form) Get(name string) string { return f[name] }

// ParseForm reads a POST body of at most maxBytes. It refuses other methods, other content
// types, parameters in the query string (credentials must not travel in URLs), repeated
// parameters and invalid UTF-8, each with an invalid_request a client can act on.
func ParseForm(w http.ResponseWriter, r *http.Request, maxBytes int64) (Form, error) {
	if r.Method != http.MethodPost {
		return nil, InvalidRequest("method must be POST")
	}
	if r.URL.RawQuery != "" {
		return nil, InvalidRequest("parameters must be sent in the request body, not the URL")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, InvalidRequest("content type must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &Error{Code: CodeInvalidRequest, Status: http.StatusRequestEntityTooLarge, Description: "request body too large"}
		}
		return nil, InvalidRequest("could not read request body")
	}
	return ParseFormBody(string(body))
}

// ParseFormBody parses an urlencoded body with the rules of ParseForm.
func ParseFormBody(body string) (Form, error) {
	values, err := url.ParseQuery(body)
	if err != nil {
		return nil, InvalidRequest("malformed form body")
	}
	f := make(Form, len(values))
	for k, vs := range values {
		if len(vs) > 1 {
			return nil, InvalidRequest("parameter " + safeName(k) + " is repeated")
		}
		v := vs[0]
		if !utf8.ValidString(k) || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return nil, InvalidRequest("parameter " + safeName(k) + " is not valid text")
		}
		if v != "" {
			f[k] = v
		}
	}
	return f, nil
}

// safeName keeps a client-supplied parameter name short and printable for an error message.
func safeName(k string) string {
	if len(k) > 40 {
		k = k[:40]
	}
	var b strings.Builder
	for _, r := range k {
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
