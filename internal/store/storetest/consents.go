package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/portcullis/portcullis/internal/store"
)

func sampleConsent(subject, client string) store.Consent {
	return store.Consent{Subject: subject, ClientID: client, Scopes: []string{"openid", "orders:read"}, GrantedAt: base}
}

var consentTests = []test{
	{"not_found", func(t *testing.T, s store.Store) {
		_, err := s.GetConsent(t.Context(), "alice", "c1")
		wantErr(t, "get", err, store.ErrNotFound)
		_, err = s.GetConsent(t.Context(), "", "")
		wantErr(t, "get empty", err, store.ErrNotFound)
		wantErr(t, "delete", s.DeleteConsent(t.Context(), "alice", "c1"), store.ErrNotFound)
	}},
	{"round_trip_every_field", func(t *testing.T, s store.Store) {
		c := sampleConsent("alice", "c1")
		allFieldsSet(t, c)
		must(t, "save", s.SaveConsent(t.Context(), c))
		got, err := s.GetConsent(t.Context(), "alice", "c1")
		must(t, "get", err)
		same(t, "consent", c, got)
		_, err = s.GetConsent(t.Context(), "alice", "c2")
		wantErr(t, "other client", err, store.ErrNotFound)
		_, err = s.GetConsent(t.Context(), "bob", "c1")
		wantErr(t, "other subject", err, store.ErrNotFound)
	}},
	{"save_replaces", func(t *testing.T, s store.Store) {
		must(t, "save", s.SaveConsent(t.Context(), sampleConsent("alice", "c1")))
		c := store.Consent{Subject: "alice", ClientID: "c1", Scopes: []string{"profile"}, GrantedAt: base.Add(time.Hour)}
		must(t, "save again", s.SaveConsent(t.Context(), c))
		got, err := s.GetConsent(t.Context(), "alice", "c1")
		must(t, "get", err)
		same(t, "consent", c, got)
		c.Scopes = nil
		must(t, "save without scopes", s.SaveConsent(t.Context(), c))
		got, err = s.GetConsent(t.Context(), "alice", "c1")
		must(t, "get", err)
		same(t, "consent", c, got, cmpopts.EquateEmpty())
	}},
	{"delete", func(t *testing.T, s store.Store) {
		must(t, "save", s.SaveConsent(t.Context(), sampleConsent("alice", "c1")))
		must(t, "save", s.SaveConsent(t.Context(), sampleConsent("alice", "c2")))
		must(t, "delete", s.DeleteConsent(t.Context(), "alice", "c1"))
		_, err := s.GetConsent(t.Context(), "alice", "c1")
		wantErr(t, "get deleted", err, store.ErrNotFound)
		_, err = s.GetConsent(t.Context(), "alice", "c2")
		must(t, "other consent kept", err)
		wantErr(t, "delete again", s.DeleteConsent(t.Context(), "alice", "c1"), store.ErrNotFound)
	}},
	{"invalid_input_writes_nothing", func(t *testing.T, s store.Store) {
		for name, k := range badKeys {
			wantErr(t, "subject "+name, s.SaveConsent(t.Context(), sampleConsent(k, "c1")), store.ErrInvalid)
			wantErr(t, "client "+name, s.SaveConsent(t.Context(), sampleConsent("alice", k)), store.ErrInvalid)
		}
		_, err := s.GetConsent(t.Context(), "alice", "c1")
		wantErr(t, "get", err, store.ErrNotFound)
	}},
}
