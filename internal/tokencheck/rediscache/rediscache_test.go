package rediscache_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/tokencheck"
	"github.com/portcullis/portcullis/internal/tokencheck/rediscache"
	"github.com/portcullis/portcullis/internal/tokencheck/tokenchecktest"
)

// testRedis returns a client for PORTCULLIS_TEST_REDIS and a key prefix of the test's own
// (deleted when it ends), or skips.
func testRedis(t *testing.T) (*goredis.Client, string) {
	t.Helper()
	url := os.Getenv("PORTCULLIS_TEST_REDIS")
	if url == "" {
		t.Skip("PORTCULLIS_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0): skipping the Redis shared cache")
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.ReadTimeout, opt.WriteTimeout, opt.MaxRetries = time.Second, time.Second, -1
	c := goredis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("PORTCULLIS_TEST_REDIS does not answer: %v", err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	prefix := "portcullis-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return c, prefix
}

func TestStore(t *testing.T) {
	c, prefix := testRedis(t)
	s := rediscache.New(c, prefix)
	ctx := t.Context()
	hash := events.TokenHash("pcat_a")
	key := prefix + "ic:{" + hash + "}"

	if v, err := s.Get(ctx, hash); err != nil || v != nil {
		t.Fatalf("Get of nothing = %q, %v", v, err)
	}
	if err := s.Put(ctx, hash, []byte("sealed"), 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, hash); err != nil || string(v) != "sealed" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if ttl := c.PTTL(ctx, key).Val(); ttl <= 2*time.Second || ttl > 3*time.Second {
		t.Errorf("PTTL = %v, want about 3s", ttl)
	}

	if err := s.Revoke(ctx, hash, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get(ctx, hash); v != nil {
		t.Errorf("Get after Revoke = %q", v)
	}
	if ttl := c.PTTL(ctx, key+":revoked").Val(); ttl <= 59*time.Second || ttl > time.Minute {
		t.Errorf("tombstone PTTL = %v, want about 1m", ttl)
	}
	// A Put racing the revocation is refused while the tombstone lives...
	if err := s.Put(ctx, hash, []byte("stale"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get(ctx, hash); v != nil {
		t.Errorf("a Put landed on a tombstoned hash: %q", v)
	}
	// ...and works once it is gone.
	c.Del(ctx, key+":revoked")
	if err := s.Put(ctx, hash, []byte("later"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get(ctx, hash); string(v) != "later" {
		t.Errorf("Get = %q after the tombstone expired", v)
	}
}

func TestStoreRefusesKeysThatAreNotHashes(t *testing.T) {
	c, prefix := testRedis(t)
	s := rediscache.New(c, prefix)
	for _, h := range []string{"", "short", "x}:revoked", events.TokenHash("a") + "x", "*", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa{}"} {
		if _, err := s.Get(t.Context(), h); err == nil {
			t.Errorf("Get(%q): no error", h)
		}
		if err := s.Put(t.Context(), h, []byte("v"), time.Second); err == nil {
			t.Errorf("Put(%q): no error", h)
		}
		if err := s.Revoke(t.Context(), h, time.Second); err == nil {
			t.Errorf("Revoke(%q): no error", h)
		}
	}
	if n := c.Keys(t.Context(), prefix+"*").Val(); len(n) != 0 {
		t.Errorf("keys written: %v", n)
	}
}

func TestStoreUnreachable(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	s := rediscache.New(c, "p:")
	hash := events.TokenHash("pcat_a")
	if _, err := s.Get(t.Context(), hash); err == nil {
		t.Error("Get: no error")
	}
	if err := s.Put(t.Context(), hash, []byte("v"), time.Second); err == nil {
		t.Error("Put: no error")
	}
	if err := s.Revoke(t.Context(), hash, time.Second); err == nil {
		t.Error("Revoke: no error")
	}
}

// Two gateway replicas share answers through Redis, and a revocation removes them there.
func TestReplicasShareThroughRedis(t *testing.T) {
	c, prefix := testRedis(t)
	is := tokenchecktest.New(t)
	var checks []*tokencheck.Checker
	var buses []*events.Memory
	for range 2 {
		bus := &events.Memory{}
		ch, err := tokencheck.New(tokencheck.Config{
			Issuer: is.URL, HTTPClient: is.HTTPClient(),
			ClientID: tokenchecktest.GatewayClientID, ClientSecret: tokenchecktest.GatewayClientSecret,
			Bus: bus, Shared: rediscache.New(c, prefix), SharedTimeout: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ch.Close)
		checks = append(checks, ch)
		buses = append(buses, bus)
	}
	tok := is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	for _, ch := range checks {
		p, err := ch.Opaque(t.Context(), tok)
		if err != nil || p.Subject() != "alice" {
			t.Fatalf("Opaque = %v, %v", p.Subject(), err)
		}
	}
	if n := is.Introspections(); n != 1 {
		t.Errorf("introspections = %d, want 1", n)
	}
	hash := events.TokenHash(tok)
	if c.Exists(t.Context(), prefix+"ic:{"+hash+"}").Val() != 1 {
		t.Fatal("no shared entry in Redis")
	}
	is.Revoke(tok)
	for _, b := range buses {
		_ = b.Publish(t.Context(), events.Event{Kind: events.TokenRevoked, TokenHash: hash})
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Exists(t.Context(), prefix+"ic:{"+hash+"}").Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the revoked token's entry is still in Redis")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, ch := range checks {
		if _, err := ch.Opaque(t.Context(), tok); !errors.Is(err, tokencheck.ErrInvalidToken) {
			t.Errorf("replica %d after revocation: %v", i, err)
		}
	}
}
