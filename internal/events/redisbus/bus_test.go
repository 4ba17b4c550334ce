package redisbus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/events/redisbus"
)

// testRedis returns the options of PORTCULLIS_TEST_REDIS, or skips.
func testRedis(t testing.TB) *goredis.Options {
	t.Helper()
	url := os.Getenv("PORTCULLIS_TEST_REDIS")
	if url == "" {
		t.Skip("PORTCULLIS_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0): skipping the Redis event bus")
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	// The timeouts portcullis uses (internal/app): short, no retries.
	opt.DialTimeout = time.Second
	opt.ReadTimeout = 100 * time.Millisecond
	opt.WriteTimeout = 100 * time.Millisecond
	opt.PoolTimeout = 100 * time.Millisecond
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.DisableIdentity = true
	c := goredis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PORTCULLIS_TEST_REDIS does not answer: %v", err)
	}
	return opt
}

// client returns a client to addr (Redis itself or a proxy).
func client(t testing.TB, base *goredis.Options, addr string) *goredis.Client {
	opt := *base
	opt.Addr = addr
	c := goredis.NewClient(&opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// prefix is a key prefix of the test's own: pub/sub channels are global to a Redis.
func prefix(t testing.TB) string {
	b := make([]byte, 8)
	rand.Read(b)
	return "portcullis-test:" + hex.EncodeToString(b) + ":"
}

// recorder collects the events a subscriber gets.
type recorder struct {
	mu     sync.Mutex
	events []events.Event
	notify chan struct{}
}

func record(b events.Bus) *recorder {
	r := &recorder{notify: make(chan struct{}, 1)}
	b.Subscribe(func(e events.Event) {
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
		select {
		case r.notify <- struct{}{}:
		default:
		}
	})
	return r
}

// kinds returns what was received, each as kind[:hash].
func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		s := string(e.Kind)
		if e.TokenHash != "" {
			s += ":" + e.TokenHash
		}
		out = append(out, s)
	}
	return out
}

func (r *recorder) reset() { r.mu.Lock(); r.events = nil; r.mu.Unlock() }

// waitFor waits until cond holds, up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasKind(r *recorder, s string) func() bool {
	return func() bool {
		for _, k := range r.kinds() {
			if k == s {
				return true
			}
		}
		return false
	}
}

func newBus(t testing.TB, c goredis.UniversalClient, o redisbus.Options) *redisbus.Bus {
	t.Helper()
	b, err := redisbus.NewWithOptions(c, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func revoked(n int) events.Event {
	return events.Event{Kind: events.TokenRevoked, TokenHash: events.TokenHash(fmt.Sprint("token-", n))}
}

func TestTwoBusesSeeEachOther(t *testing.T) {
	opt := testRedis(t)
	pfx := prefix(t)
	a := newBus(t, client(t, opt, opt.Addr), redisbus.Options{Prefix: pfx})
	b := newBus(t, client(t, opt, opt.Addr), redisbus.Options{Prefix: pfx})
	other := newBus(t, client(t, opt, opt.Addr), redisbus.Options{Prefix: prefix(t)}) // another deployment
	waitFor(t, 5*time.Second, "both buses live", func() bool { return a.Live() && b.Live() && other.Live() })
	ra, rb, ro := record(a), record(b), record(other)

	ctx := t.Context()
	if err := a.Publish(ctx, revoked(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "b to receive a's event", hasKind(rb, "token.revoked:"+revoked(1).TokenHash))
	// b answers; when a hears it, a's own echo (sent to a's subscription before b's answer
	// was published) has come and gone.
	if err := b.Publish(ctx, events.Event{Kind: events.KeysChanged}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "a to receive b's event", hasKind(ra, "keys.changed"))

	want := []string{"token.revoked:" + revoked(1).TokenHash, "keys.changed"}
	if diff := cmp.Diff(want, ra.kinds()); diff != "" {
		t.Errorf("a's subscriber (-want +got): each event exactly once\n%s", diff)
	}
	if diff := cmp.Diff(want, rb.kinds()); diff != "" {
		t.Errorf("b's subscriber (-want +got): each event exactly once\n%s", diff)
	}
	if got := ro.kinds(); len(got) != 0 {
		t.Errorf("a bus with another prefix received %v", got)
	}
}

func TestPublishDeliversLocallyAtOnce(t *testing.T) {
	opt := testRedis(t)
	p := newProxy(t, opt.Addr)
	p.set(modeCut) // Redis unreachable from the start
	bus := newBus(t, client(t, opt, p.addr), redisbus.Options{Prefix: prefix(t)})
	r := record(bus)
	err := bus.Publish(t.Context(), revoked(1))
	if err == nil {
		t.Error("Publish with Redis unreachable: no error")
	}
	// Delivered before Publish returned, Redis or not.
	if diff := cmp.Diff([]string{"token.revoked:" + revoked(1).TokenHash}, r.kinds()); diff != "" {
		t.Errorf("local delivery (-want +got):\n%s", diff)
	}
	if bus.Live() {
		t.Error("Live with Redis unreachable")
	}
}

func TestReconnectResyncs(t *testing.T) {
	opt := testRedis(t)
	pfx := prefix(t)
	for _, tc := range []struct {
		name string
		mode int
	}{
		{"cut", modeCut},             // connections closed: noticed at once
		{"blackhole", modeBlackhole}, // silent: noticed by the heartbeat
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, opt.Addr)
			reg := prometheus.NewRegistry()
			const heartbeat = 100 * time.Millisecond
			cut := newBus(t, client(t, opt, p.addr), redisbus.Options{Prefix: pfx, Heartbeat: heartbeat, MaxBackoff: 200 * time.Millisecond, Registerer: reg})
			peer := newBus(t, client(t, opt, opt.Addr), redisbus.Options{Prefix: pfx})
			waitFor(t, 5*time.Second, "buses live", func() bool { return cut.Live() && peer.Live() })
			rc, rp := record(cut), record(peer)

			start := time.Now()
			p.set(tc.mode)
			waitFor(t, 10*heartbeat, "the cut-off bus to report not Live", func() bool { return !cut.Live() })
			t.Logf("not Live after %v", time.Since(start).Round(time.Millisecond))
			if metric(t, reg, "portcullis_events_bus_live", "") != 0 {
				t.Error("portcullis_events_bus_live is not 0 while disconnected")
			}

			// While away: the peer's event is lost to the cut-off bus, and the cut-off bus's
			// own event cannot reach the peer.
			if err := peer.Publish(t.Context(), revoked(2)); err != nil {
				t.Fatal(err)
			}
			if err := cut.Publish(t.Context(), revoked(3)); err == nil && tc.mode == modeCut {
				t.Error("Publish through a cut link: no error")
			}
			rc.reset()
			rp.reset()

			p.set(modeForward)
			waitFor(t, 5*time.Second, "the bus to reconnect", cut.Live)
			// Live is set after the local Resync was delivered.
			if diff := cmp.Diff([]string{"resync"}, rc.kinds()); diff != "" {
				t.Errorf("after reconnecting, local subscribers (-want +got):\n%s", diff)
			}
			if tc.mode == modeCut {
				// The cut-off bus owed the peer a Resync for the event it could not publish.
				waitFor(t, 2*time.Second, "the peer to get the owed resync", hasKind(rp, "resync"))
			}
			// And events flow again, both ways.
			if err := peer.Publish(t.Context(), revoked(4)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 2*time.Second, "delivery after reconnecting", hasKind(rc, "token.revoked:"+revoked(4).TokenHash))
			if err := cut.Publish(t.Context(), revoked(5)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 2*time.Second, "delivery from the reconnected bus", hasKind(rp, "token.revoked:"+revoked(5).TokenHash))
		})
	}
}

func TestStartsWhileRedisIsDown(t *testing.T) {
	opt := testRedis(t)
	p := newProxy(t, opt.Addr)
	p.set(modeCut)
	bus := newBus(t, client(t, opt, p.addr), redisbus.Options{Prefix: prefix(t), MaxBackoff: 100 * time.Millisecond})
	r := record(bus)
	time.Sleep(300 * time.Millisecond) // several failed attempts
	if bus.Live() {
		t.Fatal("Live while Redis is unreachable")
	}
	p.set(modeForward)
	waitFor(t, 5*time.Second, "the bus to connect once Redis answers", bus.Live)
	if diff := cmp.Diff([]string{"resync"}, r.kinds()); diff != "" {
		t.Errorf("subscribers (-want +got):\n%s", diff)
	}
}

func TestMalformedMessagesAreDropped(t *testing.T) {
	opt := testRedis(t)
	pfx := prefix(t)
	reg := prometheus.NewRegistry()
	bus := newBus(t, client(t, opt, opt.Addr), redisbus.Options{Prefix: pfx, Registerer: reg})
	waitFor(t, 5*time.Second, "bus live", bus.Live)
	r := record(bus)
	raw := client(t, opt, opt.Addr)
	bad := []string{
		``, `{}`, `not json`, `{"v":1,"origin":"x","kind":"token.revoked"}`,
		`{"v":1,"origin":"x","kind":"token.revoked","token_hash":"short"}`,
		`{"v":1,"origin":"x","kind":"grant.everything","at":"2026-01-01T00:00:00Z"}`,
		`{"v":2,"origin":"x","kind":"resync","at":"2026-01-01T00:00:00Z"}`,
		`{"v":1,"origin":"x","kind":"resync","extra":true}`,
	}
	for _, m := range bad {
		if err := raw.Publish(t.Context(), pfx+"events", m).Err(); err != nil {
			t.Fatal(err)
		}
	}
	good := fmt.Sprintf(`{"v":1,"origin":"another-replica","kind":"token.revoked","token_hash":%q,"at":"2026-01-01T00:00:00Z"}`, revoked(7).TokenHash)
	if err := raw.Publish(t.Context(), pfx+"events", good).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the good message", hasKind(r, "token.revoked:"+revoked(7).TokenHash))
	if diff := cmp.Diff([]string{"token.revoked:" + revoked(7).TokenHash}, r.kinds()); diff != "" {
		t.Errorf("subscribers (-want +got): malformed messages must not reach them\n%s", diff)
	}
	got := metric(t, reg, "portcullis_events_received_total", "invalid")
	if got != float64(len(bad)) {
		t.Errorf("received_total{kind=invalid} = %v, want %d", got, len(bad))
	}
	if !bus.Live() {
		t.Error("malformed messages broke the subscription")
	}
}

func TestCloseIsPrompt(t *testing.T) {
	opt := testRedis(t)
	bus, err := redisbus.NewWithOptions(client(t, opt, opt.Addr), redisbus.Options{Prefix: prefix(t), Heartbeat: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "bus live", bus.Live)
	start := time.Now()
	bus.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a 10s heartbeat", d)
	}
	if bus.Live() {
		t.Error("Live after Close")
	}
}

// metric returns the value of the metric called name (with label value label, if given)
// in reg.
func metric(t testing.TB, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}
