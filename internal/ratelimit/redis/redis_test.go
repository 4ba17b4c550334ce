package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/ratelimit/redis"
)

// testRedis returns a client for PORTCULLIS_TEST_REDIS, or skips.
func testRedis(t testing.TB) *goredis.Client {
	t.Helper()
	url := os.Getenv("PORTCULLIS_TEST_REDIS")
	if url == "" {
		t.Skip("PORTCULLIS_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0): skipping the Redis backend")
	}
	c, err := redis.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PORTCULLIS_TEST_REDIS does not answer: %v", err)
	}
	return c
}

// testOptions gives a test its own key prefix and deletes its keys when it ends. Tests run
// on a fake clock: the limiter decides at the caller's now, and the expiry margin is long so
// that keys do not expire in real time before the fake clock is done with them.
func testOptions(t testing.TB, c *goredis.Client) redis.Options {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	prefix := "portcullis-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() { deletePrefix(t, c, prefix) })
	return redis.Options{Prefix: prefix, Timeout: 2 * time.Second, ExpiryMargin: 5 * time.Minute, CallerClock: true}
}

func deletePrefix(t testing.TB, c *goredis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("scan %s: %v", prefix, err)
		return
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := c.Del(ctx, keys[:n]...).Err(); err != nil {
			t.Errorf("delete test keys: %v", err)
			return
		}
		keys = keys[n:]
	}
}

// proxy is a TCP proxy to Redis that the test can cut and restore.
type proxy struct {
	t      testing.TB
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	p := &proxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.Cut(); p.wg.Wait() })
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Go(func() { io.Copy(out, in); out.Close() })
			p.wg.Go(func() { io.Copy(in, out); in.Close() })
		}
	})
}

// Cut closes the listener and every connection: Redis is unreachable.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Restore listens again on the same address.
func (p *proxy) Restore() {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy cannot listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// clientVia returns a client that reaches Redis through addr, with the timeouts of
// NewClient.
func clientVia(t testing.TB, base *goredis.Client, addr string) *goredis.Client {
	opt := *base.Options()
	opt.Addr = addr
	c := goredis.NewClient(&opt)
	t.Cleanup(func() { c.Close() })
	return c
}

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// TestBlockListEntries: Entries lists the blocks in force in its own list only, even when the
// configured prefix holds SCAN pattern characters that would otherwise match other prefixes.
func TestBlockListEntries(t *testing.T) {
	c := testRedis(t)
	o := testOptions(t, c)
	now := time.Now()
	globby := o
	globby.Prefix = o.Prefix + "a*"
	sibling := o
	sibling.Prefix = o.Prefix + "ab"
	for _, opts := range []redis.Options{globby, sibling} {
		l := redis.NewBlockList(c, "block", opts)
		if _, err := l.Block(t.Context(), "ip:198.51.100.7", now.Add(time.Hour), "long", now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := redis.NewBlockList(c, "block", globby).Block(t.Context(), "ip:198.51.100.8", now.Add(time.Second), "short", now); err != nil {
		t.Fatal(err)
	}
	got, err := redis.NewBlockList(c, "block", globby).Entries(t.Context(), now.Add(2*time.Second), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Subject != "ip:198.51.100.7" || got[0].Reason != "long" {
		t.Errorf("entries %+v: want only the live block of its own list", got)
	}
}
