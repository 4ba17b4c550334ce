package gateway

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// maxPathBytes bounds the request path; the header limit bounds it too, this keeps the
// normaliser's work small whatever that limit is.
const maxPathBytes = 8 << 10

// errAmbiguousPath is returned for every path the gateway refuses to interpret; the detail
// names the reason for the log, the client only learns the path was refused.
var errAmbiguousPath = errors.New("ambiguous request path")

type pathError struct{ reason string }

func (e *pathError) Error() string { return "ambiguous request path: " + e.reason }
func (e *pathError) Unwrap() error { return errAmbiguousPath }

func badPath(reason string) error { return &pathError{reason: reason} }

// NormalizePath checks the escaped path of a request target and returns it decoded.
//
// It never guesses: where two components could read a path differently it refuses. So it
// refuses a path that is empty or relative; contains "." or ".." segments, an empty segment
// ("//"), a backslash, a ';' (path parameters, raw or encoded), a control character or NUL
// (raw or encoded); encodes '/', '\', '.' or '%' (double encoding); has a malformed escape;
// uses characters RFC 3986 does not allow in a path; or decodes to invalid UTF-8. A
// trailing slash is kept. Every percent-escape that remains (of a character that is data,
// like %20) is decoded, so route matching and the upstream see one spelling of each path.
func NormalizePath(escaped string) (string, error) {
	if escaped == "" || escaped[0] != '/' {
		return "", badPath("not an absolute path")
	}
	if len(escaped) > maxPathBytes {
		return "", badPath("too long")
	}
	pct := false
	for i := 0; i < len(escaped); i++ {
		c := escaped[i]
		if c == '%' {
			pct = true
			continue
		}
		if !rawPathByte(c) {
			switch {
			case c == ';':
				return "", badPath("path parameter (;)")
			case c == '\\':
				return "", badPath("backslash")
			case c == 0:
				return "", badPath("NUL")
			default:
				return "", badPath("character not allowed in a path")
			}
		}
	}
	path := escaped
	if pct {
		var err error
		if path, err = unescapePath(escaped); err != nil {
			return "", err
		}
	}
	if err := checkSegments(path); err != nil {
		return "", err
	}
	return path, nil
}

// rawPathByte reports whether c may appear unescaped in a path the gateway accepts: RFC 3986
// pchar and '/', except ';'. '%' is handled by the caller.
func rawPathByte(c byte) bool {
	return c < 0x80 && pathBytes[c]
}

var pathBytes = func() (t [128]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~!$&'()*+,=:@/" {
		t[c] = true
	}
	return t
}()

func unescapePath(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			return "", badPath("truncated escape")
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", badPath("malformed escape")
		}
		v := hi<<4 | lo
		switch {
		case v < 0x20 || v == 0x7f:
			return "", badPath("encoded control character")
		case v == '/':
			return "", badPath("encoded slash")
		case v == '\\':
			return "", badPath("encoded backslash")
		case v == '.':
			return "", badPath("encoded dot")
		case v == '%':
			return "", badPath("double encoding")
		case v == ';':
			return "", badPath("encoded path parameter (;)")
		}
		b.WriteByte(v)
		i += 2
	}
	out := b.String()
	if !utf8.ValidString(out) {
		return "", badPath("invalid UTF-8")
	}
	return out, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// checkSegments refuses "." and ".." segments and empty segments other than a trailing one.
func checkSegments(path string) error {
	// path starts with '/'. Walk the segments between slashes.
	start := 1
	for i := 1; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			continue
		}
		seg := path[start:i]
		switch {
		case seg == "" && i < len(path):
			return badPath("empty segment (//)")
		case seg == "." || seg == "..":
			return badPath("dot segment")
		}
		start = i + 1
	}
	return nil
}

// requestPath returns the escaped path of the request target as the client sent it.
// Anything but origin-form (and absolute-form, which proxies may send) is refused.
func requestPath(requestURI, fallback string) (string, error) {
	if requestURI == "" { // a request built in Go, not read from the wire
		return fallback, nil
	}
	if requestURI[0] != '/' {
		// absolute-form: scheme://authority/path?query
		i := strings.Index(requestURI, "://")
		if i <= 0 {
			return "", badPath("request target is neither origin-form nor absolute-form")
		}
		rest := requestURI[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return "", badPath("absolute-form target without a path")
		}
		requestURI = rest[j:]
	}
	if q := strings.IndexByte(requestURI, '?'); q >= 0 {
		requestURI = requestURI[:q]
	}
	if strings.IndexByte(requestURI, '#') >= 0 {
		return "", badPath("fragment in request target")
	}
	return requestURI, nil
}
