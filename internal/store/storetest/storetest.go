package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/portcullis/portcullis/internal/store"
)

// Run runs every conformance subtest. newStore must return a fresh, empty store each time it
// is called and close it in t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"clients", clientTests},
		{"tokens", tokenTests},
		{"keys", keyTests},
		{"replay", replayTests},
		{"audit", auditTests},
		{"users", userTests},
		{"consents", consentTests},
		{"ephemeral", ephemeralTests},
		{"store", storeTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.fn(t, newStore(t))
				})
			}
		})
	}
}

// test is one guarantee.
type test struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// base is a fixed instant with microseconds, for records whose times the store only keeps.
var base = time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)

// wallClock is now, to the microsecond, for expiries the backend judges by its own clock.
func wallClock() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// concurrency is how many goroutines race in the exactly-one-winner tests.
const concurrency = 16

// race runs fn(0..n-1) in n goroutines released together and returns their errors. It
// first pings s from n goroutines, so that a pooled backend has its connections open and
// the racers reach the database together rather than one connection set-up apart.
func race(s store.Store, n int, fn func(i int) error) []error {
	warm := make(chan struct{})
	var wg0 sync.WaitGroup
	for range n {
		wg0.Go(func() {
			<-warm
			_ = s.Ping(context.Background())
		})
	}
	close(warm)
	wg0.Wait()

	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// winners counts nil errors and fails the test on any error that is not one of allowed.
func winners(t *testing.T, errs []error, allowed ...error) int {
	t.Helper()
	n := 0
	for i, err := range errs {
		if err == nil {
			n++
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || errors.Is(err, a)
		}
		if !ok {
			t.Errorf("goroutine %d: unexpected error %v", i, err)
		}
	}
	return n
}

// wantErr fails unless errors.Is(err, want).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// must fails on err.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// same fails with a diff unless got equals want.
func same(t *testing.T, what string, want, got any, opts ...cmp.Option) {
	t.Helper()
	if d := cmp.Diff(want, got, opts...); d != "" {
		t.Fatalf("%s mismatch (-want +got):\n%s", what, d)
	}
}

// allFieldsSet fails if any field of the struct v is zero, so that a round trip of v covers
// every field, including fields added to the record later.
func allFieldsSet(t *testing.T, v any) {
	t.Helper()
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		if rv.Field(i).IsZero() {
			t.Fatalf("sample %T leaves %s zero: the round trip would not cover it", v, rv.Type().Field(i).Name)
		}
	}
}

// badKeys are keys no backend may store: empty, NUL, invalid UTF-8, too long.
var badKeys = map[string]string{
	"empty":        "",
	"nul":          "a\x00b",
	"invalid_utf8": "a\xffb",
	"too_long":     strings.Repeat("k", 1025),
}

func id(prefix string, i int) string { return fmt.Sprintf("%s-%02d", prefix, i) }

var errFromFn = errors.New("storetest: update function refused")

var storeTests = []test{
	{"ping", func(t *testing.T, s store.Store) {
		must(t, "ping", s.Ping(t.Context()))
	}},
	{"close", func(t *testing.T, s store.Store) {
		must(t, "create client", s.CreateClient(t.Context(), sampleClient("c1"), 0))
		must(t, "close", s.Close())
		_, err := s.GetClient(t.Context(), "c1")
		if err == nil || errors.Is(err, store.ErrNotFound) {
			t.Fatalf("get after close: got %v, want a failure that is not ErrNotFound", err)
		}
		_ = s.Close() // a second Close must not panic
	}},
}
