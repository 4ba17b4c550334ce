package abuse_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/abuse/abusetest"
)

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func TestMemoryWindow(t *testing.T) {
	abusetest.RunWindow(t, func(*testing.T) abuse.Window { return abuse.NewMemoryWindow(0) })
}

func TestMemoryBlockList(t *testing.T) {
	abusetest.RunBlockList(t, func(*testing.T) abuse.BlockList { return abuse.NewMemoryBlockList(0) })
}

func TestDetectorInMemory(t *testing.T) {
	abusetest.RunDetector(t, func(t *testing.T) *abuse.Detector {
		d, err := abuse.NewDetector(abuse.DetectorOptions{
			Windows: abuse.NewMemoryWindow(0), Blocks: abuse.NewMemoryBlockList(0), Throttles: abuse.NewMemoryBlockList(0),
			Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

func TestMemoryWindowKeySprayStaysBounded(t *testing.T) {
	const maxKeys = 64 * 8
	w := abuse.NewMemoryWindow(maxKeys)
	// A brute forcer is being watched…
	for i := range 10 {
		if _, err := w.Add(t.Context(), "auth|ip:203.0.113.7", "", time.Minute, 20, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	// …while a spray of one-off keys (older than its latest failure) fills the store.
	for i := range 100_000 {
		if _, err := w.Add(t.Context(), fmt.Sprintf("auth|ip:spray-%d", i), "", time.Minute, 20, t0); err != nil {
			t.Fatal(err)
		}
	}
	if n := w.Len(); n > maxKeys {
		t.Fatalf("%d keys held, bound %d", n, maxKeys)
	}
	if w.Evictions() == 0 {
		t.Fatal("no evictions counted")
	}
	n, err := w.Add(t.Context(), "auth|ip:203.0.113.7", "", time.Minute, 20, t0.Add(10*time.Second))
	if err != nil || n != 11 {
		t.Fatalf("the watched key after the spray: %d %v, want 11: the watched key must survive the spray", n, err)
	}
	if swept := w.Sweep(t0.Add(2 * time.Minute)); swept == 0 || w.Len() != 0 {
		t.Fatalf("sweep after the window dropped %d, %d left", swept, w.Len())
	}
}

func TestMemoryWindowDistinctMembersAreBounded(t *testing.T) {
	w := abuse.NewMemoryWindow(0)
	for i := range 50_000 {
		n, err := w.Add(t.Context(), "ids", fmt.Sprintf("id-%d", i), time.Hour, 100, t0)
		if err != nil || n > 100 {
			t.Fatalf("add %d: %d %v", i, n, err)
		}
	}
}

func TestMemoryBlockListBounded(t *testing.T) {
	b := abuse.NewMemoryBlockList(100)
	if _, err := b.Block(t.Context(), "ip:keep", t0.Add(24*time.Hour), "long", t0); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if _, err := b.Block(t.Context(), fmt.Sprintf("ip:%d", i), t0.Add(time.Minute), "short", t0); err != nil {
			t.Fatal(err)
		}
	}
	if b.Len() > 100 || b.Evictions() == 0 {
		t.Fatalf("len %d, evictions %d", b.Len(), b.Evictions())
	}
	if _, ok, _ := b.Blocked(t.Context(), "ip:keep", t0.Add(time.Hour)); !ok {
		t.Fatal("the longest block was evicted before the short ones")
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range []abuse.Action{abuse.ActionReport, abuse.ActionThrottle, abuse.ActionBlock} {
		if got, err := abuse.ParseAction(a.String()); err != nil || got != a {
			t.Errorf("ParseAction(%q) = %v, %v", a, got, err)
		}
	}
	if _, err := abuse.ParseAction("ban"); err == nil {
		t.Error("ParseAction(ban) accepted")
	}
}

func TestSuggestedRulesAreValid(t *testing.T) {
	for _, r := range []abuse.Rule{abuse.AuthFailures, abuse.EnumerationIDs, abuse.EnumerationErrors} {
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", r.Name, err)
		}
	}
}

func BenchmarkDetector(b *testing.B) {
	d, _ := abuse.NewDetector(abuse.DetectorOptions{Windows: abuse.NewMemoryWindow(0), Blocks: abuse.NewMemoryBlockList(0), Throttles: abuse.NewMemoryBlockList(0)})
	b.Run("ObserveID", func(b *testing.B) {
		now := t0
		i := 0
		ids := []string{"order-1", "order-2", "order-3", "order-4", "order-5"}
		b.ReportAllocs()
		for b.Loop() {
			i++
			now = now.Add(200 * time.Millisecond)
			if _, err := d.Observe(b.Context(), abuse.EnumerationIDs, "orders", "client:shop", ids[i%5], now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Status", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.Status(b.Context(), "ip:192.0.2.1", t0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
