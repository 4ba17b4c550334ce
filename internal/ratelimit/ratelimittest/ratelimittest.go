// Package ratelimittest is the conformance suite every ratelimit backend passes: the same
// scripted traffic, with a fake clock, must get the same decisions from the in-memory
// limiter and from Redis.
package ratelimittest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/ratelimit"
)

// NewLimiter returns a fresh, empty limiter for one subtest.
type NewLimiter func(t *testing.T) ratelimit.Limiter

// t0 is a fixed instant in the middle of a UTC day.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

func rate(t *testing.T, name string, n int, per time.Duration, burst int) ratelimit.Limit {
	t.Helper()
	l, err := ratelimit.NewRate(name, n, per, burst)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func quota(t *testing.T, name string, n int, p ratelimit.Period) ratelimit.Limit {
	t.Helper()
	l, err := ratelimit.NewQuota(name, n, p)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// step is one request of a script and what must come of it.
type step struct {
	at        time.Duration // since the script's start
	allowed   bool
	remaining int
	retry     time.Duration // RetryAfter of the (first) check
	reset     time.Duration
}

type got struct {
	Allowed   bool
	Remaining int
	Retry     time.Duration
	Reset     time.Duration
}

func runScript(t *testing.T, lim ratelimit.Limiter, l ratelimit.Limit, key string, start time.Time, steps []step) {
	t.Helper()
	for i, s := range steps {
		d, err := ratelimit.Allow(t.Context(), lim, l, key, start.Add(s.at))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		want := got{s.allowed, s.remaining, s.retry, s.reset}
		if diff := cmp.Diff(want, got{d.Allowed, d.Remaining, d.RetryAfter, d.ResetAfter}); diff != "" {
			t.Errorf("step %d (at +%s): decision mismatch (-want +got):\n%s", i, s.at, diff)
		}
	}
}

// Run runs every conformance case against limiters from newLimiter.
func Run(t *testing.T, newLimiter NewLimiter) {
	ms := time.Millisecond
	t.Run("BurstThenSteadyRate", func(t *testing.T) {
		// 10/s burst 5: five at once, then one every 100ms.
		l := rate(t, "burst", 10, time.Second, 5)
		runScript(t, newLimiter(t), l, "client-a", t0, []step{
			{0, true, 4, 0, 100 * ms},
			{0, true, 3, 0, 200 * ms},
			{0, true, 2, 0, 300 * ms},
			{0, true, 1, 0, 400 * ms},
			{0, true, 0, 0, 500 * ms},
			{0, false, 0, 100 * ms, 500 * ms},
			{50 * ms, false, 0, 50 * ms, 450 * ms},
			{100*ms - time.Microsecond, false, 0, time.Microsecond, 400*ms + time.Microsecond},
			{100 * ms, true, 0, 0, 500 * ms},
			{150 * ms, false, 0, 50 * ms, 450 * ms},
			{200 * ms, true, 0, 0, 500 * ms},
			// Idle for the whole reset: the burst is back.
			{700 * ms, true, 4, 0, 100 * ms},
		})
	})
	t.Run("SteadyTrafficAtTheRateIsNeverRefused", func(t *testing.T) {
		lim := newLimiter(t)
		l := rate(t, "steady", 20, time.Second, 1)
		for i := range 200 {
			d, err := ratelimit.Allow(t.Context(), lim, l, "k", t0.Add(time.Duration(i)*50*ms))
			if err != nil {
				t.Fatal(err)
			}
			if !d.Allowed {
				t.Fatalf("request %d at exactly the rate was refused: %+v", i, d)
			}
		}
	})
	t.Run("TwiceTheRateAdmitsHalf", func(t *testing.T) {
		lim := newLimiter(t)
		l := rate(t, "double", 20, time.Second, 1)
		admitted := 0
		for i := range 400 { // 40/s for 10s
			d, err := ratelimit.Allow(t.Context(), lim, l, "k", t0.Add(time.Duration(i)*25*ms))
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				admitted++
			}
		}
		if admitted != 200 {
			t.Errorf("admitted %d of 400 requests at twice a 20/s limit over 10s, want 200", admitted)
		}
	})
	t.Run("RefusedRequestsDoNotPushTheLimitBack", func(t *testing.T) {
		lim := newLimiter(t)
		l := rate(t, "nopush", 1, time.Second, 1)
		runScript(t, lim, l, "k", t0, []step{{0, true, 0, 0, time.Second}})
		for i := range 50 {
			d, err := ratelimit.Allow(t.Context(), lim, l, "k", t0.Add(time.Duration(i)*10*ms))
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed || d.RetryAfter != time.Second-time.Duration(i)*10*ms {
				t.Fatalf("hammering request %d: %+v", i, d)
			}
		}
		runScript(t, lim, l, "k", t0, []step{{time.Second, true, 0, 0, time.Second}})
	})
	t.Run("SlowLimit", func(t *testing.T) {
		// 6000/m with the default burst (100).
		l := rate(t, "perminute", 6000, time.Minute, 0)
		if l.Burst != 100 {
			t.Fatalf("default burst of 6000/m = %d, want 100", l.Burst)
		}
		lim := newLimiter(t)
		for i := range 100 {
			if d, err := ratelimit.Allow(t.Context(), lim, l, "k", t0); err != nil || !d.Allowed || d.Remaining != 99-i {
				t.Fatalf("request %d of the burst: %+v, %v", i, d, err)
			}
		}
		runScript(t, lim, l, "k", t0, []step{
			{0, false, 0, 10 * ms, time.Second},
			{10 * ms, true, 0, 0, time.Second},
		})
	})
	t.Run("KeysAndLimitsAreIndependent", func(t *testing.T) {
		lim := newLimiter(t)
		a := rate(t, "a", 1, time.Second, 1)
		b := rate(t, "b", 1, time.Second, 1)
		for _, c := range []struct {
			l   ratelimit.Limit
			key string
		}{{a, "x"}, {a, "y"}, {b, "x"}, {b, "y"}} {
			if d, err := ratelimit.Allow(t.Context(), lim, c.l, c.key, t0); err != nil || !d.Allowed {
				t.Fatalf("%s/%s: first request refused: %+v %v", c.l.Name, c.key, d, err)
			}
		}
		if d, _ := ratelimit.Allow(t.Context(), lim, a, "x", t0); d.Allowed {
			t.Fatal("second request of a/x admitted")
		}
	})
	t.Run("LongKeysAreDistinct", func(t *testing.T) {
		lim := newLimiter(t)
		l := rate(t, "long", 1, time.Minute, 1)
		base := strings.Repeat("k", 100)
		for _, k := range []string{base + "1", base + "2", "~" + base, "~"} {
			if d, err := ratelimit.Allow(t.Context(), lim, l, k, t0); err != nil || !d.Allowed {
				t.Fatalf("key %.8q…: first request refused: %+v %v", k, d, err)
			}
		}
		if d, _ := ratelimit.Allow(t.Context(), lim, l, base+"1", t0); d.Allowed {
			t.Fatal("a long key was not limited")
		}
	})
	t.Run("AllOrNothing", func(t *testing.T) {
		lim := newLimiter(t)
		perClient := rate(t, "client", 1, time.Second, 1)
		perIP := rate(t, "ip", 10, time.Second, 5)
		daily := quota(t, "daily", 100, ratelimit.Day)
		checks := []ratelimit.Check{{Limit: perClient, Key: "c1"}, {Limit: perIP, Key: "192.0.2.1"}, {Limit: daily, Key: "c1"}}
		res, err := lim.Allow(t.Context(), checks, t0)
		if err != nil || !res.Allowed {
			t.Fatalf("first request: %+v %v", res, err)
		}
		// The per-client limit refuses: nothing is consumed from the others.
		for range 3 {
			res, err = lim.Allow(t.Context(), checks, t0)
			if err != nil {
				t.Fatal(err)
			}
			want := []got{{false, 0, time.Second, time.Second}, {true, 4, 0, 100 * ms}, {true, 99, 0, t0Reset(ratelimit.Day)}}
			if diff := cmp.Diff(want, gots(res)); diff != "" || res.Allowed || res.RetryAfter() != time.Second {
				t.Fatalf("refused request: allowed=%v retry=%s (-want +got):\n%s", res.Allowed, res.RetryAfter(), diff)
			}
			if den := res.Denied(); len(den) != 1 || den[0].Limit.Name != "client" {
				t.Fatalf("Denied() = %+v, want the client limit", den)
			}
		}
		// Another client behind the same address still has the whole IP burst minus one.
		res, err = lim.Allow(t.Context(), []ratelimit.Check{{Limit: perClient, Key: "c2"}, {Limit: perIP, Key: "192.0.2.1"}}, t0)
		if err != nil || !res.Allowed || res.Decisions[1].Remaining != 3 {
			t.Fatalf("other client: %+v %v", res, err)
		}
	})
	t.Run("QuotaRollsOverAtUTCMidnight", func(t *testing.T) {
		lim := newLimiter(t)
		l := quota(t, "daily", 3, ratelimit.Day)
		eve := time.Date(2026, 3, 14, 23, 59, 59, 0, time.UTC)
		runScript(t, lim, l, "c", eve, []step{
			{0, true, 2, 0, time.Second},
			{0, true, 1, 0, time.Second},
			{500 * ms, true, 0, 0, 500 * ms},
			{500 * ms, false, 0, 500 * ms, 500 * ms},
			{time.Second - time.Microsecond, false, 0, time.Microsecond, time.Microsecond},
			{time.Second, true, 2, 0, 24 * time.Hour},
			{time.Second + 3*time.Hour, true, 1, 0, 21 * time.Hour},
		})
		// A clock in another zone changes nothing: the day is the UTC day.
		tokyo := time.FixedZone("JST", 9*3600)
		res, err := lim.Allow(t.Context(), []ratelimit.Check{{Limit: l, Key: "c"}}, eve.Add(time.Second+4*time.Hour).In(tokyo))
		if err != nil || !res.Allowed || res.Decisions[0].Remaining != 0 {
			t.Fatalf("request at 04:00 UTC seen from Tokyo: %+v %v", res, err)
		}
	})
	t.Run("QuotaRollsOverOnTheFirstOfTheMonth", func(t *testing.T) {
		for _, c := range []struct {
			name string
			eve  time.Time
			next time.Duration // length of the next month
		}{
			{"January", time.Date(2026, 1, 31, 23, 59, 59, 0, time.UTC), 28 * 24 * time.Hour},
			{"LeapFebruary", time.Date(2028, 2, 29, 23, 59, 59, 0, time.UTC), 31 * 24 * time.Hour},
			{"December", time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC), 31 * 24 * time.Hour},
		} {
			t.Run(c.name, func(t *testing.T) {
				lim := newLimiter(t)
				l := quota(t, "monthly", 2, ratelimit.Month)
				runScript(t, lim, l, "c", c.eve, []step{
					{0, true, 1, 0, time.Second},
					{0, true, 0, 0, time.Second},
					{999 * ms, false, 0, ms, ms},
					{time.Second, true, 1, 0, c.next},
					{time.Second, true, 0, 0, c.next},
					{2 * time.Second, false, 0, c.next - time.Second, c.next - time.Second},
				})
			})
		}
	})
	t.Run("RateRefusalDoesNotSpendTheQuota", func(t *testing.T) {
		lim := newLimiter(t)
		r := rate(t, "r", 1, time.Hour, 1)
		q := quota(t, "q", 5, ratelimit.Day)
		checks := []ratelimit.Check{{Limit: r, Key: "c"}, {Limit: q, Key: "c"}}
		for i := range 10 {
			res, err := lim.Allow(t.Context(), checks, t0.Add(time.Duration(i)*time.Second))
			if err != nil || res.Allowed != (i == 0) {
				t.Fatalf("request %d: %+v %v", i, res, err)
			}
		}
		res, err := lim.Allow(t.Context(), checks[1:], t0.Add(time.Minute))
		if err != nil || !res.Allowed || res.Decisions[0].Remaining != 3 {
			t.Fatalf("quota after nine refused requests: %+v %v (want 3 left of 5)", res, err)
		}
	})
	t.Run("ClockGoingBackwards", func(t *testing.T) {
		lim := newLimiter(t)
		l := rate(t, "back", 1, time.Second, 1)
		runScript(t, lim, l, "k", t0, []step{
			{0, true, 0, 0, time.Second},
			{-10 * time.Second, false, 0, 11 * time.Second, 11 * time.Second},
		})
	})
	t.Run("InvalidCallsChangeNothing", func(t *testing.T) {
		lim := newLimiter(t)
		l := rate(t, "v", 1, time.Second, 1)
		for name, checks := range map[string][]ratelimit.Check{
			"none":      nil,
			"duplicate": {{Limit: l, Key: "a"}, {Limit: l, Key: "b"}},
			"invalid":   {{Limit: l, Key: "a"}, {Limit: ratelimit.Limit{Name: "bad name", Rate: 1, Per: time.Second, Burst: 1}, Key: "a"}},
			"zero":      {{Limit: l, Key: "a"}, {Key: "a"}},
			"tooMany":   make([]ratelimit.Check, ratelimit.MaxChecks+1),
		} {
			if _, err := lim.Allow(t.Context(), checks, t0); err == nil {
				t.Errorf("%s: no error", name)
			}
		}
		if d, err := ratelimit.Allow(t.Context(), lim, l, "a", t0); err != nil || !d.Allowed {
			t.Fatalf("key touched by invalid calls: %+v %v", d, err)
		}
	})
	t.Run("ConcurrentRequestsAdmitExactlyTheBurst", func(t *testing.T) {
		lim := newLimiter(t)
		l := rate(t, "conc", 1, time.Hour, 100)
		q := quota(t, "concq", 1000, ratelimit.Day)
		var admitted atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 16 {
			wg.Go(func() {
				for range 25 {
					res, err := lim.Allow(context.Background(), []ratelimit.Check{{Limit: l, Key: "k"}, {Limit: q, Key: "k"}}, t0)
					if err != nil {
						errs <- err
						return
					}
					if res.Allowed {
						admitted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// 400 requests at once against a 1/h limit with burst 100: exactly the burst.
		if n := admitted.Load(); n != 100 {
			t.Fatalf("admitted %d, want 100", n)
		}
		res, err := lim.Allow(t.Context(), []ratelimit.Check{{Limit: q, Key: "k"}}, t0.Add(time.Second))
		if err != nil || res.Decisions[0].Remaining != 1000-101 {
			t.Fatalf("quota after the burst: %+v %v, want %d left", res, err, 1000-101)
		}
	})
}

func t0Reset(p ratelimit.Period) time.Duration {
	_, end := p.Bounds(t0)
	return end.Sub(t0)
}

func gots(r ratelimit.Result) []got {
	out := make([]got, len(r.Decisions))
	for i, d := range r.Decisions {
		out[i] = got{d.Allowed, d.Remaining, d.RetryAfter, d.ResetAfter}
	}
	return out
}

// Describe is a short text of a result for failure messages.
func Describe(r ratelimit.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "allowed=%v", r.Allowed)
	for _, d := range r.Decisions {
		fmt.Fprintf(&b, " %s{ok=%v r=%d retry=%s reset=%s}", d.Limit.Name, d.Allowed, d.Remaining, d.RetryAfter, d.ResetAfter)
	}
	return b.String()
}
