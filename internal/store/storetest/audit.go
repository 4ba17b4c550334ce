package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/portcullis/portcullis/internal/store"
)

func sampleEvent(typ, client string, at time.Time) store.AuditEvent {
	return store.AuditEvent{
		ID:        999, // assigned by the store; ignored on append
		Time:      at,
		Type:      typ,
		Outcome:   "failure",
		ClientID:  client,
		Subject:   "alice",
		RequestID: "req-" + client,
		RemoteIP:  "192.0.2.7",
		Reason:    "invalid_client: bad secret",
		Details:   map[string]string{"grant_type": "client_credentials", "method": "client_secret_basic"},
	}
}

var ignoreID = cmpopts.IgnoreFields(store.AuditEvent{}, "ID")

func listAudit(t *testing.T, s store.Store, f store.AuditFilter) []store.AuditEvent {
	t.Helper()
	es, err := s.ListAudit(t.Context(), f)
	must(t, "list audit", err)
	return es
}

// checkIDs fails unless IDs increase strictly in list order for events of distinct times
// appended in order.
func checkIDs(t *testing.T, es []store.AuditEvent) {
	t.Helper()
	for i := 1; i < len(es); i++ {
		if es[i].ID <= es[i-1].ID {
			t.Fatalf("event %d has id %d after id %d", i, es[i].ID, es[i-1].ID)
		}
	}
}

var auditTests = []test{
	{"empty", func(t *testing.T, s store.Store) {
		if es := listAudit(t, s, store.AuditFilter{}); len(es) != 0 {
			t.Fatalf("new store has %d audit events", len(es))
		}
		must(t, "append nothing", s.AppendAudit(t.Context()))
	}},
	{"round_trip_every_field", func(t *testing.T, s store.Store) {
		e := sampleEvent("client.auth_failed", "c1", base)
		allFieldsSet(t, e)
		must(t, "append", s.AppendAudit(t.Context(), e))
		got := listAudit(t, s, store.AuditFilter{})
		same(t, "events", []store.AuditEvent{e}, got, ignoreID)
		if got[0].ID == 0 || got[0].ID == 999 {
			t.Fatalf("store did not assign an id: %d", got[0].ID)
		}
	}},
	{"oldest_first_ids_increase", func(t *testing.T, s store.Store) {
		e1, e2, e3 := sampleEvent("a", "c1", base), sampleEvent("b", "c1", base.Add(time.Second)), sampleEvent("c", "c1", base.Add(2*time.Second))
		must(t, "append e2", s.AppendAudit(t.Context(), e2))
		must(t, "append e3", s.AppendAudit(t.Context(), e3))
		must(t, "append e1 late", s.AppendAudit(t.Context(), e1))
		same(t, "order", []store.AuditEvent{e1, e2, e3}, listAudit(t, s, store.AuditFilter{}), ignoreID)

		var batch []store.AuditEvent
		for i := range 5 {
			batch = append(batch, sampleEvent(fmt.Sprint("t", i), "c2", base.Add(time.Hour)))
		}
		must(t, "append batch", s.AppendAudit(t.Context(), batch...))
		got := listAudit(t, s, store.AuditFilter{ClientID: "c2"})
		same(t, "same-time events in append order", batch, got, ignoreID)
		checkIDs(t, got)
	}},
	{"filter", func(t *testing.T, s store.Store) {
		evs := []store.AuditEvent{
			sampleEvent("token.issued", "c1", base),
			sampleEvent("token.issued", "c2", base.Add(time.Second)),
			sampleEvent("token.revoked", "c1", base.Add(2*time.Second)),
			sampleEvent("token.issued", "c1", base.Add(3*time.Second)),
		}
		must(t, "append", s.AppendAudit(t.Context(), evs...))
		for name, tc := range map[string]struct {
			f    store.AuditFilter
			want []int
		}{
			"none":           {store.AuditFilter{}, []int{0, 1, 2, 3}},
			"type":           {store.AuditFilter{Type: "token.issued"}, []int{0, 1, 3}},
			"client":         {store.AuditFilter{ClientID: "c1"}, []int{0, 2, 3}},
			"since":          {store.AuditFilter{Since: base.Add(time.Second)}, []int{1, 2, 3}},
			"combined":       {store.AuditFilter{Type: "token.issued", ClientID: "c1", Since: base.Add(time.Second)}, []int{3}},
			"limit":          {store.AuditFilter{Limit: 2}, []int{0, 1}},
			"limit_type":     {store.AuditFilter{Type: "token.issued", Limit: 2}, []int{0, 1}},
			"no_match":       {store.AuditFilter{Type: "key.rotated"}, nil},
			"unstorable":     {store.AuditFilter{ClientID: "a\x00"}, nil},
			"since_future":   {store.AuditFilter{Since: base.Add(time.Hour)}, nil},
			"negative_limit": {store.AuditFilter{Limit: -1}, []int{0, 1, 2, 3}},
		} {
			var want []store.AuditEvent
			for _, i := range tc.want {
				want = append(want, evs[i])
			}
			same(t, name, want, listAudit(t, s, tc.f), ignoreID, cmpopts.EquateEmpty())
		}
	}},
	{"limit_default_and_max_1000", func(t *testing.T, s store.Store) {
		var evs []store.AuditEvent
		for i := range 1005 {
			evs = append(evs, sampleEvent("bulk", "c1", base.Add(time.Duration(i)*time.Millisecond)))
		}
		must(t, "append 1005 in one call", s.AppendAudit(t.Context(), evs...))
		got := listAudit(t, s, store.AuditFilter{})
		if len(got) != 1000 {
			t.Fatalf("default limit returned %d events, want 1000", len(got))
		}
		same(t, "oldest 1000", evs[:1000], got, ignoreID)
		checkIDs(t, got)
		if n := len(listAudit(t, s, store.AuditFilter{Limit: 5000})); n != 1000 {
			t.Fatalf("limit 5000 returned %d events, want the maximum 1000", n)
		}
		if n := len(listAudit(t, s, store.AuditFilter{Since: evs[1000].Time})); n != 5 {
			t.Fatalf("the page after the first returned %d events, want 5", n)
		}
	}},
	{"invalid_batch_appends_nothing", func(t *testing.T, s store.Store) {
		good := sampleEvent("ok", "c1", base)
		noType := sampleEvent("", "c1", base)
		noTime := sampleEvent("x", "c1", time.Time{})
		wantErr(t, "no type", s.AppendAudit(t.Context(), good, noType), store.ErrInvalid)
		wantErr(t, "no time", s.AppendAudit(t.Context(), good, noTime), store.ErrInvalid)
		if es := listAudit(t, s, store.AuditFilter{}); len(es) != 0 {
			t.Fatalf("a refused batch appended %d events", len(es))
		}
	}},
	{"hostile_text_is_kept", func(t *testing.T, s store.Store) {
		// What an attacker sends often ends up in an audit event; it must not make the event
		// disappear. Backends may repair text they cannot hold but must append the event.
		e := sampleEvent("client.auth_failed", "evil\x00\xff"+string(make([]byte, 2000)), base)
		e.Reason = "bad \xff\xfe bytes \x00"
		e.Details = map[string]string{"raw\x00": "\xff"}
		must(t, "append", s.AppendAudit(t.Context(), e))
		if es := listAudit(t, s, store.AuditFilter{Type: "client.auth_failed"}); len(es) != 1 {
			t.Fatalf("listed %d events, want the 1 appended", len(es))
		}
	}},
}
