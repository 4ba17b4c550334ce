// Package abusetest is the conformance suite of the abuse stores (Window, BlockList) and the
// detector scenarios; the in-memory stores and the Redis ones both pass it.
package abusetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/abuse"
)

// t0 is a fixed instant with whole microseconds (what every backend stores).
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// RunWindow runs the Window cases against windows from newWindow.
func RunWindow(t *testing.T, newWindow func(t *testing.T) abuse.Window) {
	type ev struct {
		at     float64
		member string
		want   int
	}
	for _, c := range []struct {
		name  string
		w     time.Duration
		limit int
		evs   []ev
	}{
		{"Events", 10 * time.Second, 5, []ev{
			{0, "", 1}, {1, "", 2}, {2, "", 3}, {3, "", 4},
			{10, "", 4}, // the event at 0 left the window (now-w, now]
			{12, "", 3}, // 1 and 2 left
			{12, "", 4}, // same instant counts again
			{30, "", 1}, // everything left
		}},
		{"EventsCapped", time.Minute, 3, []ev{
			{0, "", 1}, {0, "", 2}, {0, "", 3}, {0, "", 3}, {1, "", 3}, {59.5, "", 3},
			{60.5, "", 3}, // the three newest (0, 1, 59.5 → 1, 59.5, 60.5) are in the window
			{61.5, "", 3}, // 59.5, 60.5, 61.5: the capped ones are not missed
			{125, "", 1},
		}},
		{"EventsOutOfOrder", 10 * time.Second, 10, []ev{
			{5, "", 1}, {3, "", 2}, {4, "", 3}, {13.5, "", 3}, {14.5, "", 3}, {24, "", 2},
		}},
		{"Distinct", 10 * time.Second, 10, []ev{
			{0, "a", 1}, {1, "b", 2}, {5, "a", 2}, {9, "c", 3},
			{10.5, "d", 4}, // a was seen again at 5, b at 1 is still in
			{11.5, "e", 4}, // b left
			{15.5, "a", 4}, // c, d, e, a
			{30, "z", 1},
		}},
		{"DistinctCapped", time.Minute, 3, []ev{
			{0, "m1", 1}, {1, "m2", 2}, {2, "m3", 3}, {3, "m4", 3}, {4, "m1", 3}, {5, "m5", 3},
			{62.5, "m6", 3}, // m1@4, m5@5, m6 — the capped ones were the oldest
			{64.5, "m7", 3}, // m5, m6, m7
			{65.5, "m8", 3},
			{200, "m9", 1},
		}},
		{"LongMembers", time.Minute, 10, []ev{
			{0, strings.Repeat("x", 300) + "1", 1}, {0, strings.Repeat("x", 300) + "2", 2}, {0, strings.Repeat("x", 300) + "1", 2},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWindow(t)
			for i, e := range c.evs {
				got, err := w.Add(t.Context(), "k", e.member, c.w, c.limit, at(e.at))
				if err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if got != e.want {
					t.Errorf("event %d (at %gs, member %.8q): count %d, want %d", i, e.at, e.member, got, e.want)
				}
			}
		})
	}
	t.Run("KeysAreIndependent", func(t *testing.T) {
		w := newWindow(t)
		for i, k := range []string{"a", "b", "a", "c", "a"} {
			got, err := w.Add(t.Context(), k, "", time.Minute, 10, at(float64(i)))
			if err != nil {
				t.Fatal(err)
			}
			want := map[int]int{0: 1, 1: 1, 2: 2, 3: 1, 4: 3}[i]
			if got != want {
				t.Errorf("add %d to %s: %d, want %d", i, k, got, want)
			}
		}
	})
	t.Run("InvalidArguments", func(t *testing.T) {
		w := newWindow(t)
		for name, c := range map[string]struct {
			w     time.Duration
			limit int
		}{"zeroWindow": {0, 10}, "longWindow": {25 * time.Hour, 10}, "zeroLimit": {time.Minute, 0}, "hugeLimit": {time.Minute, abuse.MaxWindowLimit + 1}} {
			if _, err := w.Add(t.Context(), "k", "", c.w, c.limit, t0); err == nil {
				t.Errorf("%s: no error", name)
			}
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		w := newWindow(t)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := range 16 {
			wg.Go(func() {
				for i := range 20 {
					if _, err := w.Add(context.Background(), "k", fmt.Sprintf("m%d-%d", g, i), time.Minute, 1000, t0); err != nil {
						errs <- err
						return
					}
					if _, err := w.Add(context.Background(), "e", "", time.Minute, 1000, t0); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for key, member := range map[string]string{"k": "last", "e": ""} {
			got, err := w.Add(t.Context(), key, member, time.Minute, 1000, t0)
			if err != nil || got != 321 {
				t.Errorf("%s after 320 concurrent adds and one more: %d, %v; want 321", key, got, err)
			}
		}
	})
}

// RunBlockList runs the BlockList cases against lists from newList.
func RunBlockList(t *testing.T, newList func(t *testing.T) abuse.BlockList) {
	t.Run("BlockExpireExtend", func(t *testing.T) {
		b := newList(t)
		ctx := t.Context()
		s := "ip:2001:db8:1:2::/64"
		if _, ok, err := b.Blocked(ctx, s, t0); err != nil || ok {
			t.Fatalf("blocked before any block: %v %v", ok, err)
		}
		created, err := b.Block(ctx, s, at(600), "auth_failures", t0)
		if err != nil || !created {
			t.Fatalf("first block: created=%v %v", created, err)
		}
		got, ok, err := b.Blocked(ctx, s, at(300))
		want := abuse.Block{Subject: s, Until: at(600), Reason: "auth_failures"}
		if err != nil || !ok {
			t.Fatalf("not blocked within the block: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("block (-want +got):\n%s", diff)
		}
		// A shorter block does not shorten it; a longer one extends it.
		if created, err := b.Block(ctx, s, at(400), "shorter", at(300)); err != nil || created {
			t.Fatalf("shorter block: created=%v %v", created, err)
		}
		if got, _, _ := b.Blocked(ctx, s, at(300)); !got.Until.Equal(at(600)) || got.Reason != "auth_failures" {
			t.Fatalf("a shorter block changed the block: %+v", got)
		}
		if created, err := b.Block(ctx, s, at(900), "longer", at(300)); err != nil || created {
			t.Fatalf("longer block: created=%v %v", created, err)
		}
		if _, ok, _ := b.Blocked(ctx, s, at(900)); ok {
			t.Fatal("blocked at its end (the end is exclusive)")
		}
		if got, ok, _ := b.Blocked(ctx, s, at(899)); !ok || !got.Until.Equal(at(900)) || got.Reason != "longer" {
			t.Fatalf("extended block: %+v %v", got, ok)
		}
		// After it ended, a new block is new.
		if created, err := b.Block(ctx, s, at(2000), "again", at(1000)); err != nil || !created {
			t.Fatalf("block after expiry: created=%v %v", created, err)
		}
		if err := b.Unblock(ctx, s); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := b.Blocked(ctx, s, at(1001)); ok {
			t.Fatal("blocked after Unblock")
		}
		if err := b.Unblock(ctx, "never-blocked"); err != nil {
			t.Fatalf("unblock of an unknown subject: %v", err)
		}
	})
	t.Run("SubjectsAreIndependent", func(t *testing.T) {
		b := newList(t)
		if _, err := b.Block(t.Context(), "ip:192.0.2.1", at(60), "r", t0); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"ip:192.0.2.10", "ip:192.0.2.", "client:ip:192.0.2.1", "IP:192.0.2.1"} {
			if _, ok, _ := b.Blocked(t.Context(), s, t0); ok {
				t.Errorf("%s blocked by a block on ip:192.0.2.1", s)
			}
		}
	})
	t.Run("InvalidBlocksChangeNothing", func(t *testing.T) {
		b := newList(t)
		for name, c := range map[string]struct {
			subject, reason string
			until           time.Time
		}{
			"emptySubject": {"", "r", at(60)},
			"longSubject":  {strings.Repeat("s", abuse.MaxSubjectLen+1), "r", at(60)},
			"past":         {"s", "r", t0},
			"tooLong":      {"s", "r", t0.Add(abuse.MaxBlockFor + time.Second)},
			"newline":      {"s", "r\nforged: log line", at(60)},
			"longReason":   {"s", strings.Repeat("r", abuse.MaxReasonLen+1), at(60)},
		} {
			if _, err := b.Block(t.Context(), c.subject, c.until, c.reason, t0); err == nil {
				t.Errorf("%s: no error", name)
			}
		}
		if _, ok, _ := b.Blocked(t.Context(), "s", t0); ok {
			t.Fatal("an invalid block took effect")
		}
	})
}

// NewDetector returns a detector on fresh stores.
type NewDetector func(t *testing.T) *abuse.Detector

// RunDetector plays attacks and normal traffic against detectors from newDetector.
func RunDetector(t *testing.T, newDetector NewDetector) {
	bruteForce := abuse.Rule{Name: "auth_failures", Threshold: 20, Window: time.Minute, Action: abuse.ActionBlock, For: 15 * time.Minute}
	enumIDs := abuse.Rule{Name: "enumeration_ids", Threshold: 100, Window: time.Minute, Action: abuse.ActionThrottle, For: 10 * time.Minute}
	enumErrs := abuse.Rule{Name: "enumeration_errors", Threshold: 50, Window: time.Minute, Action: abuse.ActionThrottle, For: 10 * time.Minute}

	t.Run("BruteForceIsBlocked", func(t *testing.T) {
		d := newDetector(t)
		ctx := t.Context()
		attacker, bystander := "ip:203.0.113.7", "ip:203.0.113.8"
		// 20 failed logins in a minute, one every 3s.
		for i := range 20 {
			now := at(float64(3 * i))
			v, err := d.Observe(ctx, bruteForce, "", attacker, "", now)
			if err != nil {
				t.Fatal(err)
			}
			if v.Fired != (i == 19) {
				t.Fatalf("failure %d: fired=%v count=%d", i+1, v.Fired, v.Count)
			}
			if v.Fired {
				want := abuse.Verdict{Rule: "auth_failures", Subject: attacker, Count: 20, Fired: true, Action: abuse.ActionBlock, Until: now.Add(15 * time.Minute), New: true}
				if diff := cmp.Diff(want, v); diff != "" {
					t.Fatalf("verdict (-want +got):\n%s", diff)
				}
			}
		}
		st, err := d.Status(ctx, attacker, at(60))
		if err != nil || !st.Blocked || st.Block.Reason != "auth_failures" || !st.Block.Until.Equal(at(57).Add(15*time.Minute)) {
			t.Fatalf("attacker status: %+v %v", st, err)
		}
		if st, _ := d.Status(ctx, bystander, at(60)); st.Blocked || st.Throttled {
			t.Fatalf("bystander sanctioned: %+v", st)
		}
		// Still failing while blocked (the caller counts it): fired again, not new, and the
		// block runs 15 minutes from the latest failure.
		v, err := d.Observe(ctx, bruteForce, "", attacker, "", at(61))
		if err != nil || !v.Fired || v.New {
			t.Fatalf("failure while blocked: %+v %v", v, err)
		}
		if st, _ := d.Status(ctx, attacker, at(60).Add(15*time.Minute)); !st.Blocked {
			t.Fatal("the block was not extended by the latest failure")
		}
		if st, _ := d.Status(ctx, attacker, at(61).Add(15*time.Minute)); st.Blocked {
			t.Fatal("still blocked after the block's duration")
		}
	})
	t.Run("SlowFailuresAreNotBruteForce", func(t *testing.T) {
		d := newDetector(t)
		// A user who mistypes now and then: a failure every 3.2s never puts 20 in a minute.
		for i := range 200 {
			v, err := d.Observe(t.Context(), bruteForce, "", "ip:198.51.100.1", "", at(3.2*float64(i)))
			if err != nil {
				t.Fatal(err)
			}
			if v.Fired || v.Count > 19 {
				t.Fatalf("failure %d at %.1fs: %+v", i, 3.2*float64(i), v)
			}
		}
	})
	t.Run("EnumerationIsThrottled", func(t *testing.T) {
		d := newDetector(t)
		ctx := t.Context()
		fired := 0
		// 200 distinct ids in 10s.
		for i := range 200 {
			v, err := d.Observe(ctx, enumIDs, "orders", "client:scraper", fmt.Sprintf("order-%d", 10000+i), at(0.05*float64(i)))
			if err != nil {
				t.Fatal(err)
			}
			if v.Fired {
				if fired == 0 && (i != 99 || !v.New || v.Action != abuse.ActionThrottle) {
					t.Fatalf("first firing at id %d: %+v", i+1, v)
				}
				fired++
			}
		}
		if fired != 101 {
			t.Fatalf("fired on %d observations, want every one from the 100th (101)", fired)
		}
		st, err := d.Status(ctx, "client:scraper", at(10))
		if err != nil || !st.Throttled || st.Blocked || st.Throttle.Reason != "enumeration_ids" {
			t.Fatalf("scraper status: %+v %v", st, err)
		}
	})
	t.Run("ErrorsOnOneRouteAreEnumeration", func(t *testing.T) {
		d := newDetector(t)
		ctx := t.Context()
		// 30 404s on each of two routes: neither reaches 50 on its own route.
		for i := range 30 {
			for _, route := range []string{"orders", "invoices"} {
				v, err := d.Observe(ctx, enumErrs, route, "client:c", "", at(float64(i)))
				if err != nil || v.Fired {
					t.Fatalf("404 %d on %s: %+v %v", i, route, v, err)
				}
			}
		}
		for i := 30; i < 50; i++ {
			v, err := d.Observe(ctx, enumErrs, "orders", "client:c", "", at(float64(i)))
			if err != nil || v.Fired != (i == 49) {
				t.Fatalf("404 %d on orders: %+v %v", i+1, v, err)
			}
		}
	})
	t.Run("NormalTrafficIsLeftAlone", func(t *testing.T) {
		d := newDetector(t)
		ctx := t.Context()
		// A client reading its 5 orders every second for 10 minutes, with a 404 every 10s
		// and a failed token now and then.
		for s := range 600 {
			for o := range 5 {
				v, err := d.Observe(ctx, enumIDs, "orders", "client:shop", fmt.Sprintf("order-%d", o+1), at(float64(s)+0.1*float64(o)))
				if err != nil || v.Fired {
					t.Fatalf("second %d, order %d: %+v %v", s, o, v, err)
				}
			}
			if s%10 == 0 {
				if v, err := d.Observe(ctx, enumErrs, "orders", "client:shop", "", at(float64(s))); err != nil || v.Fired {
					t.Fatalf("second %d, 404: %+v %v", s, v, err)
				}
			}
			if s%30 == 0 {
				if v, err := d.Observe(ctx, bruteForce, "", "ip:192.0.2.50", "", at(float64(s))); err != nil || v.Fired {
					t.Fatalf("second %d, 401: %+v %v", s, v, err)
				}
			}
		}
		for _, s := range []string{"client:shop", "ip:192.0.2.50"} {
			if st, err := d.Status(ctx, s, at(600)); err != nil || st.Blocked || st.Throttled {
				t.Fatalf("%s sanctioned after normal traffic: %+v %v", s, st, err)
			}
		}
	})
	t.Run("ReportOnly", func(t *testing.T) {
		d := newDetector(t)
		r := abuse.Rule{Name: "watch", Threshold: 2, Window: time.Minute, Action: abuse.ActionReport}
		for i := range 3 {
			v, err := d.Observe(t.Context(), r, "", "client:w", "", at(float64(i)))
			if err != nil || v.Fired != (i >= 1) || !v.Until.IsZero() {
				t.Fatalf("event %d: %+v %v", i, v, err)
			}
		}
		if st, _ := d.Status(t.Context(), "client:w", at(3)); st.Blocked || st.Throttled {
			t.Fatalf("a report-only rule sanctioned: %+v", st)
		}
	})
	t.Run("InvalidRulesAreRefused", func(t *testing.T) {
		d := newDetector(t)
		for name, r := range map[string]abuse.Rule{
			"noName":      {Threshold: 1, Window: time.Minute},
			"upperName":   {Name: "Auth", Threshold: 1, Window: time.Minute},
			"noThreshold": {Name: "r", Window: time.Minute},
			"noWindow":    {Name: "r", Threshold: 1},
			"blockNoFor":  {Name: "r", Threshold: 1, Window: time.Minute, Action: abuse.ActionBlock},
			"badAction":   {Name: "r", Threshold: 1, Window: time.Minute, Action: 9, For: time.Minute},
		} {
			if _, err := d.Observe(t.Context(), r, "", "s", "", t0); err == nil {
				t.Errorf("%s: no error", name)
			}
		}
	})
}
