package gateway

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means refused
	}{
		{"/", "/"},
		{"/api/orders", "/api/orders"},
		{"/api/orders/", "/api/orders/"},
		{"/api/orders/7", "/api/orders/7"},
		{"/a%20b", "/a b"},
		{"/%41pi", "/Api"},
		{"/caf%C3%A9", "/café"},
		{"/a%3Fb", "/a?b"},
		{"/a:b@c!$&'()*+,=-._~", "/a:b@c!$&'()*+,=-._~"},
		{"/.well-known/x", "/.well-known/x"},
		{"/a..b", "/a..b"},
		{"/...", "/..."},
		{"", ""},
		{"api", ""},
		{"/..", ""},
		{"/.", ""},
		{"/a/../b", ""},
		{"/a/./b", ""},
		{"/a/..", ""},
		{"/a//b", ""},
		{"//a", ""},
		{"/a\\b", ""},
		{"/a%5cb", ""},
		{"/a%5Cb", ""},
		{"/a%2fb", ""},
		{"/a%2Fb", ""},
		{"/%2e%2e/x", ""},
		{"/%2E/x", ""},
		{"/a%2eb", ""},
		{"/a%00", ""},
		{"/a\x00", ""},
		{"/a%0a", ""},
		{"/a%7f", ""},
		{"/a%ff", ""},
		{"/%c0%ae%c0%ae/", ""},
		{"/a%e2%82", ""},
		{"/a;b", ""},
		{"/a%3bb", ""},
		{"/a%252e", ""},
		{"/a%25", ""},
		{"/a%", ""},
		{"/a%2", ""},
		{"/a%zz", ""},
		{"/a b", ""},
		{"/a\tb", ""},
		{"/a\"b", ""},
		{"/a<b>", ""},
		{"/a{b}", ""},
		{"/a|b", ""},
		{"/a^b", ""},
		{"/a`b", ""},
		{"/a[b]", ""},
		{"/café", ""},
		{"/a?b", ""},
		{"/a#b", ""},
		{"/" + strings.Repeat("a", maxPathBytes), ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizePath(tt.in)
			switch {
			case tt.want == "" && err == nil:
				t.Fatalf("NormalizePath(%q) = %q, want refusal", tt.in, got)
			case tt.want == "" && !errors.Is(err, errAmbiguousPath):
				t.Fatalf("error %v does not wrap errAmbiguousPath", err)
			case tt.want != "" && err != nil:
				t.Fatalf("NormalizePath(%q): %v", tt.in, err)
			case got != tt.want:
				t.Fatalf("NormalizePath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRequestPath(t *testing.T) {
	tests := []struct{ uri, want string }{
		{"/a/b?x=1", "/a/b"},
		{"/a", "/a"},
		{"https://h.example/a/b?q", "/a/b"},
		{"*", ""},
		{"h.example:443", ""},
		{"/a#f", ""},
	}
	for _, tt := range tests {
		got, err := requestPath(tt.uri, "")
		if (tt.want == "") != (err != nil) || got != tt.want {
			t.Errorf("requestPath(%q) = %q, %v; want %q", tt.uri, got, err, tt.want)
		}
	}
}

// FuzzNormalizePath checks what the rest of the gateway relies on: an accepted path is
// absolute, valid UTF-8, free of every ambiguous form, and a fixed point (re-encoding it and
// normalising again gives it back); and a path under a prefix can never leave it.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/api/orders", "/a%20b", "/a/../b", "/%2e%2e", "/a%2fb", "/a;b", "/a//b", "/caf%C3%A9", "/a%00"} {
		f.Add(s)
	}
	prefix, err := compilePath("/api/orders", true)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizePath(in)
		if err != nil {
			if !errors.Is(err, errAmbiguousPath) {
				t.Fatalf("error %v does not wrap errAmbiguousPath", err)
			}
			return
		}
		if !strings.HasPrefix(out, "/") || !utf8.ValidString(out) {
			t.Fatalf("%q → %q: not an absolute UTF-8 path", in, out)
		}
		for _, bad := range []string{"//", "/./", "/../", "\\", ";", "\x00", "%"} {
			if strings.Contains(out, bad) {
				t.Fatalf("%q → %q contains %q", in, out, bad)
			}
		}
		if strings.HasSuffix(out, "/.") || strings.HasSuffix(out, "/..") {
			t.Fatalf("%q → %q ends in a dot segment", in, out)
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("%q → %q holds a control character", in, out)
			}
		}
		again, err := NormalizePath((&url.URL{Path: out}).EscapedPath())
		if err != nil || again != out {
			t.Fatalf("not a fixed point: %q → %q → %q (%v)", in, out, again, err)
		}
		if prefix.match(out) && !strings.HasPrefix(out, "/api/orders") {
			t.Fatalf("%q → %q matches /api/orders without starting with it", in, out)
		}
	})
}
