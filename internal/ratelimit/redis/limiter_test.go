package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/ratelimit/ratelimittest"
	"github.com/portcullis/portcullis/internal/ratelimit/redis"
)

func TestLimiterConformance(t *testing.T) {
	c := testRedis(t)
	ratelimittest.Run(t, func(t *testing.T) ratelimit.Limiter {
		return redis.NewLimiter(c, testOptions(t, c))
	})
}

// Keys live under the prefix and expire: a rate key when its bucket is full again (plus the
// margin), a quota key at the end of its period (plus the margin).
func TestLimiterKeysExpire(t *testing.T) {
	c := testRedis(t)
	o := testOptions(t, c)
	o.ExpiryMargin = time.Second
	lim := redis.NewLimiter(c, o)
	r, _ := ratelimit.NewRate("exp", 1, time.Minute, 1)
	q, _ := ratelimit.NewQuota("expq", 10, ratelimit.Day)
	now := time.Now()
	if _, err := lim.Allow(t.Context(), []ratelimit.Check{{Limit: r, Key: "k"}, {Limit: q, Key: "k"}}, now); err != nil {
		t.Fatal(err)
	}
	_, end := ratelimit.Day.Bounds(now)
	for key, want := range map[string]time.Duration{
		o.Prefix + "rl:r:exp:k": time.Minute + time.Second,
		o.Prefix + "rl:q:expq:" + now.UTC().Format("20060102") + ":k": end.Sub(now) + time.Second,
	} {
		ttl, err := c.PTTL(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > want+10*time.Millisecond || ttl < want-2*time.Second {
			t.Errorf("%s: ttl %s, want about %s", key, ttl, want)
		}
	}
}

// Four limiter instances with their own connections share one limit: under concurrent load
// they admit the configured number of requests within ±1 % — the burst alone (1000/m, a
// short run) and mostly the rate (1000/s over a few seconds). They decide at Redis's clock,
// as in production.
func TestFourInstancesShareOneLimit(t *testing.T) {
	base := testRedis(t)
	for _, c := range []struct {
		name         string
		rate         int
		per          time.Duration
		burst, total int
	}{
		{"Burst", 1000, time.Minute, 1000, 5000},
		// A burst of one second's worth, so that a stall of this busy machine shorter than a
		// second loses no capacity (GCRA keeps at most the burst of unused capacity).
		{"Rate", 1000, time.Second, 1000, 20000},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := testOptions(t, base)
			o.CallerClock = false
			l, err := ratelimit.NewRate("shared", c.rate, c.per, c.burst)
			if err != nil {
				t.Fatal(err)
			}
			var limiters []*redis.Limiter
			for range 4 {
				opt := *base.Options()
				opt.PoolSize = 16
				cl := goredis.NewClient(&opt)
				t.Cleanup(func() { cl.Close() })
				limiters = append(limiters, redis.NewLimiter(cl, o))
			}
			const workers = 32
			var admitted, sent atomic.Int64
			var first, last atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			start := make(chan struct{})
			for w := range workers {
				lim := limiters[w%4]
				wg.Go(func() {
					<-start
					for sent.Add(1) <= int64(c.total) {
						res, err := lim.Allow(context.Background(), []ratelimit.Check{{Limit: l, Key: "client-a"}}, time.Now())
						if err != nil {
							errs <- err
							return
						}
						// The span of Redis's decisions, by Redis's clock.
						at := res.At.UnixMicro()
						for v := first.Load(); (v == 0 || at < v) && !first.CompareAndSwap(v, at); v = first.Load() {
						}
						for v := last.Load(); at > v && !last.CompareAndSwap(v, at); v = last.Load() {
						}
						if res.Allowed {
							admitted.Add(1)
						}
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// The burst, plus what the rate earned back between Redis's first and last decision.
			span := time.Duration(last.Load()-first.Load()) * time.Microsecond
			want := float64(c.burst) + span.Seconds()*float64(c.rate)/c.per.Seconds()
			got := float64(admitted.Load())
			t.Logf("4 instances, %d requests in %s: admitted %.0f, configured %.1f", c.total, span.Round(time.Millisecond), got, want)
			if math.Abs(got-want) > want/100 {
				t.Fatalf("admitted %.0f, want %.1f ± 1%%", got, want)
			}
		})
	}
}

// Redis made unreachable mid-run gives the configured failure mode, and the limiter recovers
// by itself when Redis is back.
func TestLimiterOutage(t *testing.T) {
	base := testRedis(t)
	for _, mode := range []ratelimit.FailMode{ratelimit.FailClosed, ratelimit.FailLocal} {
		t.Run(mode.String(), func(t *testing.T) {
			o := testOptions(t, base)
			o.Timeout = 200 * time.Millisecond
			o.CallerClock = false
			px := newProxy(t, base.Options().Addr)
			shared := redis.NewLimiter(clientVia(t, base, px.addr), o)
			health, err := ratelimit.NewHealth(shared.Ping, ratelimit.HealthOptions{Name: "redis", ProbeEvery: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			local := ratelimit.NewMemory(0)
			f, err := ratelimit.NewFailover(shared, local, mode, health, nil)
			if err != nil {
				t.Fatal(err)
			}
			l, _ := ratelimit.NewRate("outage", 1, time.Hour, 3)
			checks := []ratelimit.Check{{Limit: l, Key: "k"}}

			// Up: Redis decides (the burst of 3 is spent there).
			for i := range 4 {
				res, err := f.Allow(t.Context(), checks, time.Now())
				if err != nil || res.Local || res.Allowed != (i < 3) {
					t.Fatalf("up, request %d: %s %v", i, ratelimittest.Describe(res), err)
				}
			}

			px.Cut()
			for i := range 5 {
				res, err := f.Allow(t.Context(), checks, time.Now())
				switch mode {
				case ratelimit.FailClosed:
					if !errors.Is(err, ratelimit.ErrUnavailable) {
						t.Fatalf("cut, request %d: err %v, want ErrUnavailable (503)", i, err)
					}
				case ratelimit.FailLocal:
					// The local limiter has never seen the key: its own burst of 3.
					if err != nil || !res.Local || res.Allowed != (i < 3) {
						t.Fatalf("cut, request %d: %s local=%v %v", i, ratelimittest.Describe(res), res.Local, err)
					}
				}
			}
			if health.Up() {
				t.Fatal("health says up while Redis is cut off")
			}

			px.Restore()
			deadline := time.Now().Add(5 * time.Second)
			for !health.Up() {
				if time.Now().After(deadline) {
					t.Fatal("no recovery within 5s of Redis coming back")
				}
				_, _ = f.Allow(t.Context(), checks, time.Now())
				time.Sleep(20 * time.Millisecond)
			}
			// Back on Redis, which still remembers the spent burst.
			res, err := f.Allow(t.Context(), checks, time.Now())
			if err != nil || res.Local || res.Allowed {
				t.Fatalf("after recovery: %s local=%v %v (want Redis's refusal)", ratelimittest.Describe(res), res.Local, err)
			}
		})
	}
}

func BenchmarkLimiter(b *testing.B) {
	c := testRedis(b)
	o := testOptions(b, c)
	o.CallerClock = false
	l, _ := ratelimit.NewRate("bench", 1_000_000, time.Second, 1_000_000)
	q, _ := ratelimit.NewQuota("benchq", ratelimit.MaxRate, ratelimit.Day)
	b.Run("OneCheck", func(b *testing.B) {
		lim := redis.NewLimiter(c, o)
		checks := []ratelimit.Check{{Limit: l, Key: "client-a"}}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := lim.Allow(b.Context(), checks, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
	b.Run("ThreeChecks", func(b *testing.B) {
		lim := redis.NewLimiter(c, o)
		ipl, _ := ratelimit.NewRate("benchip", 1_000_000, time.Second, 1000)
		checks := []ratelimit.Check{{Limit: l, Key: "client-a"}, {Limit: ipl, Key: "192.0.2.1"}, {Limit: q, Key: "client-a"}}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := lim.Allow(b.Context(), checks, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
	b.Run("ManyKeysParallel", func(b *testing.B) {
		lim := redis.NewLimiter(c, o)
		var n atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			checks := make([]ratelimit.Check, 1)
			for pb.Next() {
				checks[0] = ratelimit.Check{Limit: l, Key: fmt.Sprintf("client-%d", n.Add(1)%10000)}
				if _, err := lim.Allow(b.Context(), checks, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
		reportRate(b)
	})
}

func reportRate(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "decisions/s")
	}
}
