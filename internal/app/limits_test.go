package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/telemetry"
)

func limitsConfig(cache config.Cache) *config.Config {
	c := &config.Config{Gateway: &config.Gateway{}, Issuer: &config.Issuer{}, Cache: cache}
	c.Default()
	return c
}

// The gateway and the issuer each get their own block list: an address blocked at one is
// not blocked at the other.
func checkSeparateBlockLists(t *testing.T, b *limitBackends) {
	t.Helper()
	if b.Gateway == nil || b.Issuer == nil {
		t.Fatal("a detector is missing")
	}
	now := time.Now()
	subject := abuse.IPSubject(netip.MustParseAddr("192.0.2.77"))
	if _, err := b.Gateway.Blocks().Block(t.Context(), subject, now.Add(time.Minute), "test", now); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.Gateway.Blocks().Blocked(t.Context(), subject, now); err != nil || !ok {
		t.Fatalf("the gateway's block does not hold: %v %v", ok, err)
	}
	if _, ok, err := b.Issuer.Blocks().Blocked(t.Context(), subject, now); err != nil || ok {
		t.Fatalf("the gateway's block holds at the issuer: %v %v", ok, err)
	}
}

func TestLimitsInMemory(t *testing.T) {
	b, err := openLimits(limitsConfig(config.Cache{Driver: "memory"}), &cacheBackends{}, prometheus.NewRegistry(), telemetry.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if _, ok := b.Limiter.(*ratelimit.Memory); !ok {
		t.Fatalf("limiter %T, want *ratelimit.Memory", b.Limiter)
	}
	checkSeparateBlockLists(t, b)
	l, _ := ratelimit.NewRate("t.client", 1, time.Second, 1)
	if _, err := ratelimit.Allow(t.Context(), b.Limiter, l, "a", time.Now()); err != nil {
		t.Fatal(err)
	}
	// A sweep well after everything recovered drops the limiter entry and the block.
	n := 0
	for _, f := range b.sweep {
		n += f(time.Now().Add(time.Hour))
	}
	if n != 2 {
		t.Errorf("the sweep dropped %d entries, want 2 (a limit, a block)", n)
	}
}

func TestLimitsInRedis(t *testing.T) {
	url := os.Getenv("PORTCULLIS_TEST_REDIS")
	if url == "" {
		t.Skip("PORTCULLIS_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0): skipping the Redis limits backend")
	}
	for _, fail := range []string{"closed", "local"} {
		t.Run(fail, func(t *testing.T) {
			prefix := "portcullis-test:app:" + strings.ToLower(time.Now().Format("150405.000000")) + ":"
			cfg := limitsConfig(config.Cache{Driver: "redis", URL: url, Prefix: prefix, Fail: fail})
			cache, err := openCache(cfg, prometheus.NewRegistry(), telemetry.Discard())
			if err != nil {
				t.Fatal(err)
			}
			defer cache.close()
			t.Cleanup(func() {
				ctx := context.Background()
				for _, k := range cache.Redis.Keys(ctx, prefix+"*").Val() {
					cache.Redis.Del(ctx, k)
				}
			})
			reg := prometheus.NewRegistry()
			b, err := openLimits(cfg, cache, reg, telemetry.Discard())
			if err != nil {
				t.Fatal(err)
			}
			defer b.close()
			if _, ok := b.Limiter.(*ratelimit.Failover); !ok {
				t.Fatalf("limiter %T, want a *ratelimit.Failover", b.Limiter)
			}
			checkSeparateBlockLists(t, b)
			l, _ := ratelimit.NewRate("t.client", 1, time.Hour, 1)
			for i, want := range []bool{true, false} {
				d, err := ratelimit.Allow(t.Context(), b.Limiter, l, "a", time.Now())
				if err != nil || d.Allowed != want {
					t.Fatalf("decision %d: %+v %v", i+1, d, err)
				}
			}
			// The state is in Redis, under the prefix.
			keys := cache.Redis.Keys(t.Context(), prefix+"*").Val()
			joined := strings.Join(keys, " ")
			for _, want := range []string{prefix + "rl:r:t.client:a", prefix + "ab:block:ip:192.0.2.77"} {
				if !strings.Contains(joined, want) {
					t.Errorf("no key %s in Redis: %v", want, keys)
				}
			}
			// cache.fail is the failover's mode.
			found := false
			mfs, _ := reg.Gather()
			for _, mf := range mfs {
				if mf.GetName() == "portcullis_ratelimit_degraded_decisions_total" && strings.Contains(mf.String(), `value:"`+fail+`"`) {
					found = true
				}
			}
			if !found {
				t.Errorf("no degraded-decisions metric for mode %s", fail)
			}
		})
	}
}

// The demo's orders route is limited low enough to see, demo.json says so, and the
// walkthrough shows the 429s.
func TestDemoRateLimit(t *testing.T) {
	dir := t.TempDir()
	lns, err := bindDemo(true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	info, err := prepareDemo(dir, lns, demoBackends{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "portcullis.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var orders *config.Route
	for i := range cfg.Gateway.Routes {
		if cfg.Gateway.Routes[i].Name == "orders" {
			orders = &cfg.Gateway.Routes[i]
		}
	}
	if orders == nil {
		t.Fatal("no orders route")
	}
	if diff := cmp.Diff(config.RateLimits{{Per: "client", Rate: "20/s", Burst: 20}}, orders.RateLimit); diff != "" {
		t.Errorf("orders rate_limit (-want +got):\n%s", diff)
	}
	b, _ := json.Marshal(info.Routes)
	if !strings.Contains(string(b), `"path":"/api/orders"`) || !strings.Contains(string(b), `"rate_limit":"20/s burst 20 per client"`) {
		t.Errorf("demo.json routes: %s", b)
	}
	var out bytes.Buffer
	printWalkthrough(&out, dir, info)
	if !strings.Contains(out.String(), `/api/orders?n=[1-30]"`) || !strings.Contains(out.String(), "429") {
		t.Errorf("the walkthrough has no rate-limit step:\n%s", out.String())
	}
}

// Two replicas on one Redis share the sign-in throttle: failures counted on one lock the
// account on the other, and the memory default keeps them apart.
func TestLoginThrottleSharedThroughRedis(t *testing.T) {
	url := os.Getenv("PORTCULLIS_TEST_REDIS")
	if url == "" {
		t.Skip("PORTCULLIS_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0): skipping the shared sign-in throttle")
	}
	prefix := "portcullis-test:login:" + strings.ToLower(time.Now().Format("150405.000000")) + ":"
	cfg := limitsConfig(config.Cache{Driver: "redis", URL: url, Prefix: prefix, Fail: "closed"})
	throttle := func() *login.Throttle {
		cache, err := openCache(cfg, prometheus.NewRegistry(), telemetry.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cache.close)
		b, err := openLimits(cfg, cache, prometheus.NewRegistry(), telemetry.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.close)
		if b.Login.Blocks == nil || b.Login.Locks == nil || b.Login.Windows == nil || b.Login.Limiter == nil {
			t.Fatalf("login backends incomplete: %+v", b.Login)
		}
		th, err := login.NewThrottle(config.LoginThrottle{PerIP: "1000/m", AccountFailures: 3, AccountWindow: time.Minute, AccountLock: time.Minute,
			IPFailures: 100, IPWindow: time.Minute, IPBlock: time.Minute}, b.Login)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx := context.Background()
			for _, k := range cache.Redis.Keys(ctx, prefix+"*").Val() {
				cache.Redis.Del(ctx, k)
			}
		})
		return th
	}
	a, b := throttle(), throttle()
	now := time.Now()
	ip := netip.MustParseAddr("192.0.2.10")
	for range 3 {
		if _, err := a.Failure(t.Context(), ip, "alice", now); err != nil {
			t.Fatal(err)
		}
	}
	v, err := b.Admit(t.Context(), netip.MustParseAddr("198.51.100.20"), "alice", now)
	if err != nil {
		t.Fatal(err)
	}
	if !v.AccountLocked {
		t.Fatalf("replica B does not see the lock replica A's failures caused: %+v", v)
	}
	if v, _ := b.Admit(t.Context(), ip, "bob", now); v.AccountLocked {
		t.Fatal("another account is locked too")
	}
}
