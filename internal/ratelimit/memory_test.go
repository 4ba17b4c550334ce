package ratelimit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/ratelimit/ratelimittest"
)

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func TestMemoryConformance(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T) ratelimit.Limiter { return ratelimit.NewMemory(0) })
}

func mustRate(t testing.TB, name string, n int, per time.Duration, burst int) ratelimit.Limit {
	t.Helper()
	l, err := ratelimit.NewRate(name, n, per, burst)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A key spray cannot grow the map past its bound, and the clients deep in their limits keep
// their state while the spray's one-request entries are evicted.
func TestMemoryKeySprayStaysBounded(t *testing.T) {
	const maxKeys = 64 * 16
	m := ratelimit.NewMemory(maxKeys)
	l := mustRate(t, "spray", 1, time.Hour, 1000)
	heavy := []string{"victim-1", "victim-2", "victim-3"}
	for _, k := range heavy {
		for range 900 { // 900 of a 1000 burst: their state runs 900h ahead
			if d, err := ratelimit.Allow(t.Context(), m, l, k, t0); err != nil || !d.Allowed {
				t.Fatalf("%s: %+v %v", k, d, err)
			}
		}
	}
	for i := range 200_000 {
		if _, err := ratelimit.Allow(t.Context(), m, l, fmt.Sprintf("attacker-%d", i), t0.Add(time.Duration(i)*time.Microsecond)); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.Len(); n > maxKeys {
		t.Fatalf("%d keys held, bound is %d", n, maxKeys)
	}
	if m.Evictions() == 0 {
		t.Fatal("no evictions counted under a key spray")
	}
	for _, k := range heavy {
		d, err := ratelimit.Allow(t.Context(), m, l, k, t0.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if d.Remaining > 100 {
			t.Errorf("%s lost its state in the spray: %d left of the burst, want ≤ 100", k, d.Remaining)
		}
	}
}

// Entries whose limit has recovered are dropped first, and dropping them changes nothing.
func TestMemoryRecoveredEntriesAreFreeToDrop(t *testing.T) {
	m := ratelimit.NewMemory(64)
	l := mustRate(t, "idle", 10, time.Second, 1)
	for i := range 64 * 10 {
		if _, err := ratelimit.Allow(t.Context(), m, l, fmt.Sprintf("k%d", i), t0); err != nil {
			t.Fatal(err)
		}
	}
	if m.Len() > 64 {
		t.Fatalf("len %d over the bound", m.Len())
	}
	if n := m.Sweep(t0.Add(time.Second)); n == 0 || m.Len() != 0 {
		t.Fatalf("sweep after recovery dropped %d, %d left", n, m.Len())
	}
	// A full map of recovered entries makes room without evicting live state.
	m = ratelimit.NewMemory(64)
	for i := range 64 * 4 {
		if _, err := ratelimit.Allow(t.Context(), m, l, fmt.Sprintf("k%d", i), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if m.Evictions() != 0 {
		t.Fatalf("%d live entries evicted when only recovered ones had to go", m.Evictions())
	}
}

func BenchmarkMemory(b *testing.B) {
	l := mustRate(b, "bench", 1_000_000, time.Second, 1_000_000)
	q, _ := ratelimit.NewQuota("benchq", ratelimit.MaxRate, ratelimit.Day)
	b.Run("OneKey", func(b *testing.B) {
		m := ratelimit.NewMemory(0)
		checks := []ratelimit.Check{{Limit: l, Key: "client-a"}}
		now := t0
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(time.Microsecond)
			if _, err := m.Allow(b.Context(), checks, now); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
	b.Run("ThreeChecks", func(b *testing.B) {
		m := ratelimit.NewMemory(0)
		ipl := mustRate(b, "ip", 1_000_000, time.Second, 1000)
		checks := []ratelimit.Check{{Limit: l, Key: "client-a"}, {Limit: ipl, Key: "192.0.2.1"}, {Limit: q, Key: "client-a"}}
		now := t0
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(time.Microsecond)
			if _, err := m.Allow(b.Context(), checks, now); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
	b.Run("OneKeyParallel", func(b *testing.B) {
		m := ratelimit.NewMemory(0)
		checks := []ratelimit.Check{{Limit: l, Key: "client-a"}}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.Allow(b.Context(), checks, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
		reportRate(b)
	})
	b.Run("ManyKeysParallel", func(b *testing.B) {
		m := ratelimit.NewMemory(0)
		keys := make([]string, 100_000)
		for i := range keys {
			keys[i] = fmt.Sprintf("client-%d", i)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			checks := make([]ratelimit.Check, 1)
			for pb.Next() {
				i++
				checks[0] = ratelimit.Check{Limit: l, Key: keys[(i*7919)%len(keys)]}
				if _, err := m.Allow(b.Context(), checks, t0); err != nil {
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
