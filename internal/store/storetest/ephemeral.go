package storetest

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
)

func getEphemeral(t *testing.T, s store.Store, kind, key string) []byte {
	t.Helper()
	v, err := s.GetEphemeral(t.Context(), kind, key)
	must(t, "get "+kind+"/"+key, err)
	return v
}

var ephemeralTests = []test{
	{"put_get_and_kinds", func(t *testing.T, s store.Store) {
		exp := wallClock().Add(time.Hour)
		must(t, "put", s.PutEphemeral(t.Context(), "par", "k1", []byte("request one"), exp))
		must(t, "put other kind", s.PutEphemeral(t.Context(), "login", "k1", []byte{0, 1, 2, 0xff}, exp))
		same(t, "par/k1", []byte("request one"), getEphemeral(t, s, "par", "k1"))
		same(t, "login/k1", []byte{0, 1, 2, 0xff}, getEphemeral(t, s, "login", "k1"))
		_, err := s.GetEphemeral(t.Context(), "par", "k2")
		wantErr(t, "unknown key", err, store.ErrNotFound)
		_, err = s.GetEphemeral(t.Context(), "other", "k1")
		wantErr(t, "unknown kind", err, store.ErrNotFound)
	}},
	{"put_replaces", func(t *testing.T, s store.Store) {
		exp := wallClock().Add(time.Hour)
		must(t, "put", s.PutEphemeral(t.Context(), "par", "k1", []byte("one"), exp))
		must(t, "put again", s.PutEphemeral(t.Context(), "par", "k1", []byte("two"), exp))
		same(t, "value", []byte("two"), getEphemeral(t, s, "par", "k1"))
	}},
	{"expired_is_gone", func(t *testing.T, s store.Store) {
		must(t, "put", s.PutEphemeral(t.Context(), "par", "k1", []byte("v"), wallClock().Add(-time.Second)))
		_, err := s.GetEphemeral(t.Context(), "par", "k1")
		wantErr(t, "get expired", err, store.ErrNotFound)
		_, err = s.TakeEphemeral(t.Context(), "par", "k1")
		wantErr(t, "take expired", err, store.ErrNotFound)
		must(t, "put fresh", s.PutEphemeral(t.Context(), "par", "k1", []byte("w"), wallClock().Add(time.Hour)))
		same(t, "value after renewal", []byte("w"), getEphemeral(t, s, "par", "k1"))
	}},
	{"take_deletes", func(t *testing.T, s store.Store) {
		must(t, "put", s.PutEphemeral(t.Context(), "par", "k1", []byte("v"), wallClock().Add(time.Hour)))
		v, err := s.TakeEphemeral(t.Context(), "par", "k1")
		must(t, "take", err)
		same(t, "taken", []byte("v"), v)
		_, err = s.TakeEphemeral(t.Context(), "par", "k1")
		wantErr(t, "take again", err, store.ErrNotFound)
		_, err = s.GetEphemeral(t.Context(), "par", "k1")
		wantErr(t, "get after take", err, store.ErrNotFound)
	}},
	{"take_concurrent_one_winner", func(t *testing.T, s store.Store) {
		must(t, "put", s.PutEphemeral(t.Context(), "par", "k1", []byte("v"), wallClock().Add(time.Hour)))
		errs := race(s, concurrency, func(int) error {
			v, err := s.TakeEphemeral(t.Context(), "par", "k1")
			if err == nil && string(v) != "v" {
				t.Errorf("taken value %q", v)
			}
			return err
		})
		if n := winners(t, errs, store.ErrNotFound); n != 1 {
			t.Fatalf("%d takers got the value, want exactly 1", n)
		}
	}},
	{"delete", func(t *testing.T, s store.Store) {
		exp := wallClock().Add(time.Hour)
		must(t, "put", s.PutEphemeral(t.Context(), "par", "k1", []byte("v"), exp))
		must(t, "put", s.PutEphemeral(t.Context(), "par", "k2", []byte("v"), exp))
		must(t, "delete", s.DeleteEphemeral(t.Context(), "par", "k1"))
		_, err := s.GetEphemeral(t.Context(), "par", "k1")
		wantErr(t, "get deleted", err, store.ErrNotFound)
		getEphemeral(t, s, "par", "k2")
	}},
	{"invalid_input_writes_nothing", func(t *testing.T, s store.Store) {
		exp := wallClock().Add(time.Hour)
		for name, k := range badKeys {
			wantErr(t, "kind "+name, s.PutEphemeral(t.Context(), k, "k1", []byte("v"), exp), store.ErrInvalid)
			wantErr(t, "key "+name, s.PutEphemeral(t.Context(), "par", k, []byte("v"), exp), store.ErrInvalid)
			_, err := s.GetEphemeral(t.Context(), "par", k)
			wantErr(t, "get "+name, err, store.ErrNotFound)
			_, err = s.TakeEphemeral(t.Context(), k, "k1")
			wantErr(t, "take "+name, err, store.ErrNotFound)
		}
		wantErr(t, "zero expiry", s.PutEphemeral(t.Context(), "par", "k1", []byte("v"), time.Time{}), store.ErrInvalid)
		_, err := s.GetEphemeral(t.Context(), "par", "k1")
		wantErr(t, "get after refused put", err, store.ErrNotFound)
	}},
}
