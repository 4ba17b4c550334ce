package storetest

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
)

func markUsed(t *testing.T, s store.Store, key string, expires time.Time) bool {
	t.Helper()
	ok, err := s.MarkUsed(t.Context(), key, expires)
	must(t, "mark used "+key, err)
	return ok
}

var replayTests = []test{
	{"second_use_refused", func(t *testing.T, s store.Store) {
		exp := wallClock().Add(time.Hour)
		if !markUsed(t, s, "jti-1", exp) {
			t.Fatal("first use reported as seen")
		}
		if markUsed(t, s, "jti-1", exp) {
			t.Fatal("second use reported as new")
		}
		if markUsed(t, s, "jti-1", exp.Add(time.Hour)) {
			t.Fatal("second use with a later expiry reported as new")
		}
		if !markUsed(t, s, "jti-2", exp) {
			t.Fatal("another key reported as seen")
		}
	}},
	{"expired_key_is_new_again", func(t *testing.T, s store.Store) {
		now := wallClock()
		if !markUsed(t, s, "jti-1", now.Add(-time.Hour)) {
			t.Fatal("first use reported as seen")
		}
		if !markUsed(t, s, "jti-1", now.Add(time.Hour)) {
			t.Fatal("use after the earlier record expired reported as seen")
		}
		if markUsed(t, s, "jti-1", now.Add(time.Hour)) {
			t.Fatal("use within the new expiry reported as new")
		}
	}},
	{"concurrent_one_new", func(t *testing.T, s store.Store) {
		exp := wallClock().Add(time.Hour)
		fresh := make([]bool, concurrency)
		errs := race(s, concurrency, func(i int) error {
			ok, err := s.MarkUsed(t.Context(), "jti-race", exp)
			fresh[i] = ok
			return err
		})
		winners(t, errs)
		n := 0
		for _, ok := range fresh {
			if ok {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d concurrent callers were told the key was new, want exactly 1", n)
		}
	}},
	{"invalid_input", func(t *testing.T, s store.Store) {
		for name, k := range badKeys {
			_, err := s.MarkUsed(t.Context(), k, wallClock().Add(time.Hour))
			wantErr(t, name, err, store.ErrInvalid)
		}
		_, err := s.MarkUsed(t.Context(), "jti-1", time.Time{})
		wantErr(t, "zero expiry", err, store.ErrInvalid)
		if !markUsed(t, s, "jti-1", wallClock().Add(time.Hour)) {
			t.Fatal("a refused call recorded the key")
		}
	}},
}
