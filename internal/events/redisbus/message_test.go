package redisbus

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/events"
)

var hash = events.TokenHash("an opaque token")

func TestDecode(t *testing.T) {
	at := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		in      string
		want    events.Event
		wantErr string
	}{
		{"revoked", `{"v":1,"origin":"o","kind":"token.revoked","token_hash":"` + hash + `","at":"2026-03-14T15:09:26Z"}`, events.Event{Kind: events.TokenRevoked, TokenHash: hash, At: at}, ""},
		{"keys changed", `{"v":1,"origin":"o","kind":"keys.changed","at":"2026-03-14T15:09:26Z"}`, events.Event{Kind: events.KeysChanged, At: at}, ""},
		{"resync without time", `{"v":1,"origin":"o","kind":"resync"}`, events.Event{Kind: events.Resync}, ""},
		{"unknown kind", `{"v":1,"origin":"o","kind":"client.trusted"}`, events.Event{}, "unknown kind"},
		{"unknown field", `{"v":1,"origin":"o","kind":"resync","grant":"all"}`, events.Event{}, "unknown field"},
		{"other version", `{"v":2,"origin":"o","kind":"resync"}`, events.Event{}, "version"},
		{"no origin", `{"v":1,"kind":"resync"}`, events.Event{}, "origin"},
		{"long origin", `{"v":1,"origin":"` + strings.Repeat("o", 65) + `","kind":"resync"}`, events.Event{}, "origin"},
		{"revoked without hash", `{"v":1,"origin":"o","kind":"token.revoked"}`, events.Event{}, "token_hash"},
		{"hash of the wrong length", `{"v":1,"origin":"o","kind":"token.revoked","token_hash":"` + hash[:42] + `"}`, events.Event{}, "token_hash"},
		{"hash not base64url", `{"v":1,"origin":"o","kind":"token.revoked","token_hash":"` + strings.Repeat("+", 43) + `"}`, events.Event{}, "token_hash"},
		{"hash on a resync", `{"v":1,"origin":"o","kind":"resync","token_hash":"` + hash + `"}`, events.Event{}, "token_hash"},
		{"trailing data", `{"v":1,"origin":"o","kind":"resync"} {}`, events.Event{}, "trailing"},
		{"too large", `{"v":1,"origin":"o","kind":"resync","at":"` + strings.Repeat(" ", 1100) + `"}`, events.Event{}, "bytes"},
		{"not json", `revoke everything`, events.Event{}, "message"},
		{"null", `null`, events.Event{}, "version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			origin, got, err := decode([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("decode = %v, %v; want an error about %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if origin != "o" {
				t.Errorf("origin %q", origin)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, e := range []events.Event{
		{Kind: events.TokenRevoked, TokenHash: hash, At: time.Unix(1773500966, 123456789).UTC()},
		{Kind: events.KeysChanged, At: time.Unix(1773500966, 0).UTC()},
		{Kind: events.Resync},
	} {
		b, err := encode("origin", e)
		if err != nil {
			t.Fatal(err)
		}
		origin, got, err := decode(b)
		if err != nil || origin != "origin" {
			t.Fatalf("decode(encode(%v)) = %q, %v", e, origin, err)
		}
		if diff := cmp.Diff(e, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

// FuzzDecode: no input panics, and whatever decodes re-encodes to the same event.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"origin":"o","kind":"token.revoked","token_hash":"` + hash + `","at":"2026-03-14T15:09:26Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		origin, e, err := decode(b)
		if err != nil {
			return
		}
		out, err := encode(origin, e)
		if err != nil {
			t.Fatalf("encode of a decoded event: %v", err)
		}
		origin2, e2, err := decode(out)
		if err != nil {
			t.Fatalf("decode(encode(decode(x))): %v", err)
		}
		if origin2 != origin || e2.Kind != e.Kind || e2.TokenHash != e.TokenHash || !e2.At.Equal(e.At) {
			t.Fatalf("round trip changed %v to %v", e, e2)
		}
	})
}
