package ratelimit_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/ratelimit"
)

func TestHeaders(t *testing.T) {
	perClient := mustRate(t, "orders.client", 100, time.Second, 50)
	perIP := mustRate(t, "orders.ip", 6000, time.Minute, 0)
	daily, _ := ratelimit.NewQuota("orders.daily", 10000, ratelimit.Day)
	monthly, _ := ratelimit.NewQuota("orders.monthly", 300000, ratelimit.Month)
	feb := time.Date(2026, 2, 27, 23, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		res  ratelimit.Result
		want http.Header
	}{
		{
			name: "Allowed",
			res: ratelimit.Result{Allowed: true, Decisions: []ratelimit.Decision{
				{Limit: perClient, Allowed: true, Remaining: 49, ResetAfter: 10 * time.Millisecond},
				{Limit: daily, Allowed: true, Remaining: 9999, ResetAfter: time.Hour},
			}},
			want: http.Header{
				"Ratelimit-Policy": {`"orders.client";q=100;w=1, "orders.daily";q=10000;w=86400`},
				"Ratelimit":        {`"orders.client";r=49;t=1, "orders.daily";r=9999;t=3600`},
			},
		},
		{
			name: "RefusedByOne",
			res: ratelimit.Result{Allowed: false, Decisions: []ratelimit.Decision{
				{Limit: perIP, Allowed: false, RetryAfter: 10 * time.Millisecond, ResetAfter: time.Second},
				{Limit: monthly, Allowed: true, Remaining: 5, ResetAfter: 25 * time.Hour},
			}},
			want: http.Header{
				"Ratelimit-Policy": {`"orders.ip";q=6000;w=60, "orders.monthly";q=300000;w=2419200`},
				"Ratelimit":        {`"orders.ip";r=0;t=1, "orders.monthly";r=5;t=90000`},
				"Retry-After":      {"1"},
			},
		},
		{
			name: "RetryAfterIsTheLongestRefusal",
			res: ratelimit.Result{Allowed: false, Decisions: []ratelimit.Decision{
				{Limit: perClient, Allowed: false, RetryAfter: 2500 * time.Millisecond, ResetAfter: 3 * time.Second},
				{Limit: daily, Allowed: false, RetryAfter: time.Hour + time.Nanosecond, ResetAfter: time.Hour + time.Nanosecond},
			}},
			want: http.Header{
				"Ratelimit-Policy": {`"orders.client";q=100;w=1, "orders.daily";q=10000;w=86400`},
				"Ratelimit":        {`"orders.client";r=0;t=3, "orders.daily";r=0;t=3601`},
				"Retry-After":      {"3601"},
			},
		},
		{name: "Empty", res: ratelimit.Result{Allowed: true}, want: http.Header{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			c.res.SetHeaders(h, feb)
			if diff := cmp.Diff(c.want, h); diff != "" {
				t.Fatalf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

// Headers straight from a limiter: a client that waits Retry-After is admitted, never early.
func TestRetryAfterIsEnough(t *testing.T) {
	m := ratelimit.NewMemory(0)
	l := mustRate(t, "r", 3, time.Second, 1)
	now := t0
	refused := 0
	waited := false
	for i := range 30 {
		res, err := m.Allow(t.Context(), []ratelimit.Check{{Limit: l, Key: "k"}}, now)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			waited = false
			now = now.Add(time.Millisecond)
			continue
		}
		if waited {
			t.Fatalf("request %d refused after waiting Retry-After", i)
		}
		refused++
		h := http.Header{}
		res.SetHeaders(h, now)
		if h.Get("Retry-After") != "1" {
			t.Fatalf("refusal with Retry-After %q, want 1", h.Get("Retry-After"))
		}
		now, waited = now.Add(time.Second), true
	}
	if refused != 15 {
		t.Fatalf("%d refusals, want every second request", refused)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int64
	}{{0, 1}, {time.Nanosecond, 1}, {time.Second, 1}, {time.Second + 1, 2}, {90 * time.Minute, 5400}} {
		if got := ratelimit.RetryAfterSeconds(c.d); got != c.want {
			t.Errorf("RetryAfterSeconds(%s) = %d, want %d", c.d, got, c.want)
		}
	}
}
