package issuer_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/store"
)

func newAbuseDetector(t *testing.T, reg prometheus.Registerer) *abuse.Detector {
	t.Helper()
	d, err := abuse.NewDetector(abuse.DetectorOptions{
		Windows: abuse.NewMemoryWindow(0), Blocks: abuse.NewMemoryBlockList(0), Throttles: abuse.NewMemoryBlockList(0),
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestClientAuthFailuresBlockTheAddress: invalid_client answers count per address at every
// OAuth endpoint; past the threshold the address gets 429 with Retry-After at all of them,
// whatever credentials it sends, until the block ends. Normal traffic never trips it.
func TestClientAuthFailuresBlockTheAddress(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := buildHarness(t, harnessOptions{
		abuse:        newAbuseDetector(t, reg),
		authFailures: config.AbuseRule{Threshold: 4, Window: time.Minute, Action: "block", For: 10 * time.Minute},
		reg:          reg,
	})
	cc := url.Values{"grant_type": {"client_credentials"}}
	wrong := map[string]string{"Authorization": basicAuth(basicApp, "not-the-secret")}

	t.Run("normal traffic does not fire", func(t *testing.T) {
		// A client with a stale secret now and then: three failures a minute, for five
		// minutes, between successes.
		for i := range 15 {
			if r := h.post(t, "/token", cc, wrong); r.status != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d %s", i, r.status, r.body)
			}
			h.token(t, basicApp, "")
			h.clock.Advance(21 * time.Second)
		}
		if n := firedTotal(t, reg); n != 0 {
			t.Fatalf("the rule fired %v times on normal traffic", n)
		}
		evs, err := h.db.ListAudit(t.Context(), store.AuditFilter{Type: "abuse.fired"})
		if err != nil || len(evs) != 0 {
			t.Fatalf("abuse.fired on normal traffic: %+v %v", evs, err)
		}
	})
	h.clock.Advance(2 * time.Minute)

	t.Run("a scripted brute force is blocked at every endpoint", func(t *testing.T) {
		// Guesses spread over the endpoints count together.
		guesses := []struct {
			path string
			form url.Values
		}{
			{"/token", cc},
			{"/introspect", url.Values{"token": {"x"}}},
			{"/revoke", url.Values{"token": {"x"}}},
			{"/par", url.Values{"response_type": {"code"}}},
		}
		for i, g := range guesses {
			if r := h.post(t, g.path, g.form, map[string]string{"Authorization": basicAuth(resource, "guess")}); r.status != http.StatusUnauthorized {
				t.Fatalf("guess %d at %s: %d %s", i+1, g.path, r.status, r.body)
			}
		}
		// Blocked now, even with the right credentials.
		for _, g := range guesses {
			r := h.post(t, g.path, g.form, h.basic(resource))
			if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "600" || r.json(t)["error"] != "temporarily_unavailable" {
				t.Errorf("%s while blocked: %d Retry-After %q %s", g.path, r.status, r.header.Get("Retry-After"), r.body)
			}
		}
		if n := firedTotal(t, reg); n != 1 {
			t.Errorf("the rule fired %v times, want 1", n)
		}
		e := h.waitAudit(t, "abuse.fired", "", nil)
		if e.Reason != "issuer_auth_failures" || e.Details["action"] != "block" || e.Details["subject"] != "ip:127.0.0.1" || e.Outcome != "denied" {
			t.Errorf("abuse.fired: %+v", e)
		}
		if got := counterValue(t, reg, "portcullis_issuer_blocked_requests_total", "/token"); got != 1 {
			t.Errorf("blocked requests at /token = %v", got)
		}
	})

	t.Run("the block ends", func(t *testing.T) {
		h.clock.Advance(10 * time.Minute)
		h.token(t, basicApp, "")
	})
}

// The issuer without a detector (and with the rule off) counts nothing and blocks nothing.
func TestClientAuthFailuresOff(t *testing.T) {
	h := buildHarness(t, harnessOptions{
		abuse:        newAbuseDetector(t, nil),
		authFailures: config.AbuseRule{Action: "off"},
	})
	wrong := map[string]string{"Authorization": basicAuth(basicApp, "not-the-secret")}
	for range 30 {
		if r := h.post(t, "/token", url.Values{"grant_type": {"client_credentials"}}, wrong); r.status != http.StatusUnauthorized {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	h.token(t, basicApp, "")
}

// counterValue is the value of the counter of a vector with one label value.
func counterValue(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if len(m.Label) != len(labels) {
				continue
			}
			match := true
			for i, l := range m.Label { // the labels in their names' order
				match = match && l.GetValue() == labels[i]
			}
			if match {
				return m.Counter.GetValue()
			}
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

// firedTotal sums portcullis_abuse_fired_total.
func firedTotal(t *testing.T, g prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "portcullis_abuse_fired_total" {
			for _, m := range mf.Metric {
				n += m.Counter.GetValue()
			}
		}
	}
	return n
}
