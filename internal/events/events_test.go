package events

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"sync/atomic"
	"testing"
)

func TestTokenHashIsUnpaddedBase64URLSHA256(t *testing.T) {
	sum := sha256.Sum256([]byte("pcat_abc"))
	if got, want := TokenHash("pcat_abc"), base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("TokenHash = %s, want %s", got, want)
	}
	if TokenHash("a") == TokenHash("b") {
		t.Fatal("collision")
	}
}

func TestMemoryBusDeliversUntilCancelled(t *testing.T) {
	var bus Memory
	var a, b atomic.Int32
	cancelA := bus.Subscribe(func(e Event) {
		if e.Kind == TokenRevoked && e.TokenHash == "h" {
			a.Add(1)
		}
	})
	bus.Subscribe(func(Event) { b.Add(1) })
	if !bus.Live() {
		t.Fatal("memory bus not live")
	}
	if err := bus.Publish(context.Background(), Event{Kind: TokenRevoked, TokenHash: "h"}); err != nil {
		t.Fatal(err)
	}
	cancelA()
	_ = bus.Publish(context.Background(), Event{Kind: TokenRevoked, TokenHash: "h"})
	if a.Load() != 1 || b.Load() != 2 {
		t.Fatalf("deliveries a=%d b=%d, want 1 and 2 (delivery is synchronous; cancel stops it)", a.Load(), b.Load())
	}
}
