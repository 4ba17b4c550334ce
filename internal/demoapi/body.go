package demoapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Body limits of POST /api/orders.
const (
	MaxBodyBytes   = 16 << 10
	MaxItemLength  = 100 // characters
	MaxQuantity    = 1000
	maxFieldInName = 32 // longest unknown field name quoted back in an error
)

// createOrder is the typed body of POST /api/orders. The pointers tell a missing (or null)
// field from a zero value.
type createOrder struct {
	Item     *string `json:"item"`
	Quantity *int    `json:"quantity"`
}

// orderRequest is a validated createOrder.
type orderRequest struct {
	Item     string
	Quantity int
}

// bodyError is a refused body; its message is public (it names the field, never the input).
type bodyError struct{ msg string }

func (e *bodyError) Error() string { return e.msg }

func refuse(msg string) error { return &bodyError{msg: msg} }

// knownFields are the only field names a body may carry, matched exactly.
var knownFields = map[string]bool{"item": true, "quantity": true}

// checkContentType reports whether ct is application/json with at most a utf-8 charset.
func checkContentType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}

// decodeOrder parses and validates a POST /api/orders body in two passes over data:
//
//  1. structure, with the decoder's token stream: one JSON object and nothing after it, field
//     names exact (encoding/json would match "ITEM" to item), known and unique (encoding/json
//     would keep the last of two "item"s, and another parser the first);
//  2. types, with a json.Decoder that disallows unknown fields, into createOrder;
//
// then the values. Every error is a *bodyError.
func decodeOrder(data []byte) (orderRequest, error) {
	if err := checkStructure(data); err != nil {
		return orderRequest{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var body createOrder
	if err := dec.Decode(&body); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			switch te.Field {
			case "item":
				return orderRequest{}, refuse("item: must be a string")
			case "quantity":
				return orderRequest{}, refuse("quantity: must be an integer")
			}
		}
		// checkStructure let through only known, unique fields of one object: unreachable
		// unless the two passes disagree, which must then fail closed.
		return orderRequest{}, refuse("body: not a valid order")
	}
	return validateOrder(body)
}

// checkStructure is pass 1 of decodeOrder.
func checkStructure(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err == io.EOF {
		return refuse("body: empty; want a JSON object")
	}
	if err != nil {
		return refuse("body: not valid JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return refuse("body: must be a JSON object")
	}
	seen := make(map[string]bool, len(knownFields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return refuse("body: not valid JSON")
		}
		name, ok := tok.(string)
		if !ok {
			return refuse("body: not valid JSON")
		}
		if !knownFields[name] {
			return refuse(unknownField(name))
		}
		if seen[name] {
			return refuse(name + ": appears more than once")
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return refuse(name + ": not valid JSON")
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return refuse("body: not valid JSON")
	}
	switch _, err := dec.Token(); {
	case err == io.EOF:
		return nil
	case err != nil:
		return refuse("body: unexpected data after the JSON object")
	default:
		return refuse("body: more than one JSON value")
	}
}

// unknownField names an unknown field in an error only when the name is short and plain, so an
// error never carries input an attacker chose at length or with markup.
func unknownField(name string) string {
	if len(name) == 0 || len(name) > maxFieldInName {
		return "body: unknown field"
	}
	for _, r := range name {
		if !(r == '_' || r == '-' || r == '.' || r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return "body: unknown field"
		}
	}
	return name + ": unknown field"
}

// validateOrder checks the values of a decoded body.
func validateOrder(b createOrder) (orderRequest, error) {
	if b.Item == nil {
		return orderRequest{}, refuse("item: required")
	}
	if b.Quantity == nil {
		return orderRequest{}, refuse("quantity: required")
	}
	item := *b.Item
	n := utf8.RuneCountInString(item)
	switch {
	case n == 0 || strings.TrimSpace(item) == "":
		return orderRequest{}, refuse("item: must not be empty")
	case n > MaxItemLength:
		return orderRequest{}, refuse("item: longer than 100 characters")
	case !utf8.ValidString(item) || strings.ContainsRune(item, utf8.RuneError):
		// encoding/json turns invalid UTF-8 into U+FFFD; refusing that rune refuses both.
		return orderRequest{}, refuse("item: invalid UTF-8")
	case strings.IndexFunc(item, isControlOrFormat) >= 0:
		return orderRequest{}, refuse("item: control and format characters are not allowed")
	}
	if q := *b.Quantity; q < 1 || q > MaxQuantity {
		return orderRequest{}, refuse("quantity: must be between 1 and 1000")
	}
	return orderRequest{Item: item, Quantity: *b.Quantity}, nil
}

// isControlOrFormat reports whether r is a control character (Cc) or an invisible format
// character (Cf: bidi overrides, zero-width marks), which have no place in an item name.
func isControlOrFormat(r rune) bool { return unicode.In(r, unicode.Cc, unicode.Cf) }
