package demoapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// TestCreateOrderBody posts bodies over TLS and checks the status, the public detail, and that
// a refused body changes nothing.
func TestCreateOrderBody(t *testing.T) {
	const ok = `{"item":"anvil","quantity":1}`
	big := strings.Repeat(" ", 17<<10)
	tests := []struct {
		name        string
		contentType []string // "" values are not sent; nil sends application/json
		body        string
		chunked     bool // send without Content-Length
		status      int
		detail      string // for errors
	}{
		{name: "valid", body: ok, status: 201},
		{name: "valid with whitespace around", body: " \n\t" + ok + "\r\n ", status: 201},
		{name: "charset utf-8", contentType: []string{"application/json; charset=UTF-8"}, body: ok, status: 201},
		{name: "exactly 16 KiB", body: ok + strings.Repeat(" ", MaxBodyBytes-len(ok)), status: 201},
		{name: "100 characters of 2 bytes", body: `{"item":"` + strings.Repeat("é", 100) + `","quantity":1000}`, status: 201},

		{name: "unknown field", body: `{"item":"anvil","quantity":1,"color":"red"}`, status: 400, detail: "color: unknown field"},
		{name: "customer in the body", body: `{"item":"anvil","quantity":1,"customer":"globex"}`, status: 400, detail: "customer: unknown field"},
		{name: "customer_id in the body", body: `{"customer_id":"globex","item":"anvil","quantity":1}`, status: 400, detail: "customer_id: unknown field"},
		{name: "field name in another case", body: `{"Item":"anvil","quantity":1}`, status: 400, detail: "Item: unknown field"},
		{name: "long unknown field name", body: `{"` + strings.Repeat("x", 5000) + `":1}`, status: 400, detail: "body: unknown field"},
		{name: "unknown field name with markup", body: `{"<script>":1}`, status: 400, detail: "body: unknown field"},
		{name: "duplicate field", body: `{"item":"anvil","item":"hammock","quantity":1}`, status: 400, detail: "item: appears more than once"},
		{name: "duplicate field escaped", body: `{"item":"anvil","\u0069tem":"hammock","quantity":1}`, status: 400, detail: "item: appears more than once"},
		{name: "item a number", body: `{"item":5,"quantity":1}`, status: 400, detail: "item: must be a string"},
		{name: "item an object", body: `{"item":{"name":"anvil"},"quantity":1}`, status: 400, detail: "item: must be a string"},
		{name: "item deeply nested", body: `{"item":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `,"quantity":1}`, status: 400, detail: "item: must be a string"},
		{name: "quantity a string", body: `{"item":"anvil","quantity":"5"}`, status: 400, detail: "quantity: must be an integer"},
		{name: "quantity a fraction", body: `{"item":"anvil","quantity":2.5}`, status: 400, detail: "quantity: must be an integer"},
		{name: "quantity 1.0", body: `{"item":"anvil","quantity":1.0}`, status: 400, detail: "quantity: must be an integer"},
		{name: "quantity 1e2", body: `{"item":"anvil","quantity":1e2}`, status: 400, detail: "quantity: must be an integer"},
		{name: "quantity overflows", body: `{"item":"anvil","quantity":99999999999999999999}`, status: 400, detail: "quantity: must be an integer"},
		{name: "quantity a bool", body: `{"item":"anvil","quantity":true}`, status: 400, detail: "quantity: must be an integer"},
		{name: "quantity zero", body: `{"item":"anvil","quantity":0}`, status: 400, detail: "quantity: must be between 1 and 1000"},
		{name: "quantity negative", body: `{"item":"anvil","quantity":-3}`, status: 400, detail: "quantity: must be between 1 and 1000"},
		{name: "quantity 1001", body: `{"item":"anvil","quantity":1001}`, status: 400, detail: "quantity: must be between 1 and 1000"},
		{name: "quantity null", body: `{"item":"anvil","quantity":null}`, status: 400, detail: "quantity: required"},
		{name: "quantity missing", body: `{"item":"anvil"}`, status: 400, detail: "quantity: required"},
		{name: "item missing", body: `{"quantity":1}`, status: 400, detail: "item: required"},
		{name: "item empty", body: `{"item":"","quantity":1}`, status: 400, detail: "item: must not be empty"},
		{name: "item blank", body: `{"item":"   ","quantity":1}`, status: 400, detail: "item: must not be empty"},
		{name: "item 101 characters", body: `{"item":"` + strings.Repeat("a", 101) + `","quantity":1}`, status: 400, detail: "item: longer than 100 characters"},
		{name: "item with NUL", body: `{"item":"anvil\u0000","quantity":1}`, status: 400, detail: "item: control and format characters are not allowed"},
		{name: "item with newline", body: `{"item":"anvil\nDROP","quantity":1}`, status: 400, detail: "item: control and format characters are not allowed"},
		{name: "item with bidi override", body: `{"item":"anvil\u202egpj.exe","quantity":1}`, status: 400, detail: "item: control and format characters are not allowed"},
		{name: "item with invalid UTF-8", body: "{\"item\":\"anv\xffil\",\"quantity\":1}", status: 400, detail: "item: invalid UTF-8"},
		{name: "trailing garbage", body: ok + `xyz`, status: 400, detail: "body: unexpected data after the JSON object"},
		{name: "trailing comma", body: `{"item":"anvil","quantity":1,}`, status: 400, detail: "body: not valid JSON"},
		{name: "two JSON values", body: ok + ok, status: 400, detail: "body: more than one JSON value"},
		{name: "two JSON values apart", body: ok + "\n" + ok, status: 400, detail: "body: more than one JSON value"},
		{name: "unclosed object", body: `{"item":"anvil","quantity":1`, status: 400, detail: "body: not valid JSON"},
		{name: "empty body", body: ``, status: 400, detail: "body: empty; want a JSON object"},
		{name: "null", body: `null`, status: 400, detail: "body: must be a JSON object"},
		{name: "array", body: `[` + ok + `]`, status: 400, detail: "body: must be a JSON object"},
		{name: "string", body: `"anvil"`, status: 400, detail: "body: must be a JSON object"},
		{name: "byte order mark", body: "\ufeff" + ok, status: 400, detail: "body: not valid JSON"},
		{name: "comment", body: `{"item":"anvil", /* x */ "quantity":1}`, status: 400, detail: "body: not valid JSON"},

		{name: "17 KiB body", body: ok + big, status: 413, detail: "The body is larger than 16 KiB."},
		{name: "17 KiB body chunked", body: ok + big, chunked: true, status: 413, detail: "The body is larger than 16 KiB."},
		{name: "17 KiB item chunked", body: `{"item":"` + strings.Repeat("a", 17<<10) + `","quantity":1}`, chunked: true, status: 413, detail: "The body is larger than 16 KiB."},

		{name: "no content type", contentType: []string{""}, body: ok, status: 415, detail: "Send the order as application/json."},
		{name: "text/plain", contentType: []string{"text/plain"}, body: ok, status: 415, detail: "Send the order as application/json."},
		{name: "form", contentType: []string{"application/x-www-form-urlencoded"}, body: "item=anvil&quantity=1", status: 415, detail: "Send the order as application/json."},
		{name: "json with latin1", contentType: []string{"application/json; charset=latin1"}, body: ok, status: 415, detail: "Send the order as application/json."},
		{name: "json with another parameter", contentType: []string{"application/json; boundary=x"}, body: ok, status: 415, detail: "Send the order as application/json."},
		{name: "json-like type", contentType: []string{"application/json-patch+json"}, body: ok, status: 415, detail: "Send the order as application/json."},
		{name: "two content types", contentType: []string{"application/json", "text/plain"}, body: ok, status: 415, detail: "Send the order as application/json."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+"/api/orders", body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+f.acme())
			cts := tc.contentType
			if cts == nil {
				cts = []string{"application/json"}
			}
			for _, ct := range cts {
				if ct != "" {
					req.Header.Add("Content-Type", ct)
				}
			}
			r := f.send(req)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.status, r.body)
			}
			counts := f.api.store.countByCustomer()
			if tc.status == http.StatusCreated {
				if counts["acme"] != 4 {
					t.Errorf("acme has %d orders after a create", counts["acme"])
				}
				return
			}
			p := problemOf(t, r)
			if p.Detail != tc.detail {
				t.Errorf("detail %q, want %q", p.Detail, tc.detail)
			}
			if len(r.body) > 300 {
				t.Errorf("problem body of %d bytes echoes input?", len(r.body))
			}
			if diff := cmp.Diff(map[string]int{"acme": 3, "globex": 2}, counts); diff != "" {
				t.Errorf("a refused body changed the store (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeOrder checks the decoder on its own: what it accepts, it returns exactly.
func TestDecodeOrder(t *testing.T) {
	tests := []struct {
		body string
		want orderRequest
	}{
		{`{"item":"anvil","quantity":1}`, orderRequest{Item: "anvil", Quantity: 1}},
		{`{"quantity":1000,"item":"Rocket Skates"}`, orderRequest{Item: "Rocket Skates", Quantity: 1000}},
		{`{"item":"caf\u00e9 \"deluxe\"","quantity":7}`, orderRequest{Item: `café "deluxe"`, Quantity: 7}},
		{`{"item":"` + strings.Repeat("x", 100) + `","quantity":1}`, orderRequest{Item: strings.Repeat("x", 100), Quantity: 1}},
		{`{"item":"🚀 family 👨‍👩‍👧","quantity":2}`, orderRequest{}}, // ZWJ (Cf) is refused
	}
	for _, tc := range tests {
		t.Run(tc.body[:min(len(tc.body), 40)], func(t *testing.T) {
			got, err := decodeOrder([]byte(tc.body))
			if tc.want == (orderRequest{}) {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckContentType(t *testing.T) {
	tests := map[string]bool{
		"application/json":                    true,
		"Application/JSON":                    true,
		"application/json;charset=utf-8":      true,
		"application/json; charset=\"UTF-8\"": true,
		"":                                    false,
		"application/json; charset=utf-16":    false,
		"application/json, text/plain":        false,
		"application/jsonx":                   false,
		"text/json":                           false,
	}
	for ct, want := range tests {
		if got := checkContentType(ct); got != want {
			t.Errorf("checkContentType(%q) = %v, want %v", ct, got, want)
		}
	}
}

// FuzzCreateOrder checks the body decoder's properties on any input: it never panics; an
// accepted body is one valid JSON object whose order satisfies every rule and encodes back to
// a body that decodes to the same order; a refusal's message is short and never carries more
// of the input than a short plain field name. Seeds: testdata/fuzz/FuzzCreateOrder.
func FuzzCreateOrder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeOrder(data)
		if err != nil {
			be, ok := err.(*bodyError)
			if !ok {
				t.Fatalf("error %T is not a *bodyError", err)
			}
			msg := be.Error()
			if len(msg) > 80 || !utf8.ValidString(msg) {
				t.Fatalf("message %q is too long or not UTF-8", msg)
			}
			if name, _, found := strings.Cut(msg, ": "); found && name != "body" && name != "item" && name != "quantity" {
				if len(name) > maxFieldInName || strings.ContainsAny(name, "<>\"'& \\") {
					t.Fatalf("message %q echoes an unplain field name", msg)
				}
			}
			if req != (orderRequest{}) {
				t.Fatalf("refused but returned %+v", req)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(data, &obj) != nil || len(obj) != 2 {
			t.Fatalf("accepted %q, which is not an object of exactly item and quantity", data)
		}
		n := utf8.RuneCountInString(req.Item)
		if n < 1 || n > MaxItemLength || !utf8.ValidString(req.Item) || strings.IndexFunc(req.Item, isControlOrFormat) >= 0 {
			t.Fatalf("accepted item %q", req.Item)
		}
		if req.Quantity < 1 || req.Quantity > MaxQuantity {
			t.Fatalf("accepted quantity %d", req.Quantity)
		}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(map[string]any{"item": req.Item, "quantity": req.Quantity}); err != nil {
			t.Fatal(err)
		}
		again, err := decodeOrder(buf.Bytes())
		if err != nil || again != req {
			t.Fatalf("round trip of %+v: %+v, %v", req, again, err)
		}
	})
}
