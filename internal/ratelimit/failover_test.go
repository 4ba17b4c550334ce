package ratelimit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/ratelimit"
)

// flaky is a shared limiter that fails while down is set.
type flaky struct {
	*ratelimit.Memory
	down  atomic.Bool
	calls atomic.Int64
}

func (f *flaky) Allow(ctx context.Context, c []ratelimit.Check, now time.Time) (ratelimit.Result, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return ratelimit.Result{}, errors.New("dial tcp: connection refused")
	}
	return f.Memory.Allow(ctx, c, now)
}

func (f *flaky) Ping(context.Context) error {
	if f.down.Load() {
		return errors.New("dial tcp: connection refused")
	}
	return nil
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestFailover(t *testing.T) {
	for _, mode := range []ratelimit.FailMode{ratelimit.FailClosed, ratelimit.FailLocal} {
		t.Run(mode.String(), func(t *testing.T) {
			shared := &flaky{Memory: ratelimit.NewMemory(0)}
			logs := &syncBuf{}
			reg := prometheus.NewRegistry()
			h, err := ratelimit.NewHealth(shared.Ping, ratelimit.HealthOptions{Name: "redis", Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			f, err := ratelimit.NewFailover(shared, ratelimit.NewMemory(0), mode, h, reg)
			if err != nil {
				t.Fatal(err)
			}
			l := mustRate(t, "f", 1, time.Hour, 2)
			checks := []ratelimit.Check{{Limit: l, Key: "k"}}
			now := t0
			allow := func() (ratelimit.Result, error) {
				now = now.Add(100 * time.Millisecond)
				return f.Allow(t.Context(), checks, now)
			}
			if res, err := allow(); err != nil || !res.Allowed || res.Local {
				t.Fatalf("shared up: %+v %v", res, err)
			}

			shared.down.Store(true)
			for i := range 10 {
				res, err := allow()
				switch mode {
				case ratelimit.FailClosed:
					if !errors.Is(err, ratelimit.ErrUnavailable) {
						t.Fatalf("down %d: err %v, want ErrUnavailable", i, err)
					}
				case ratelimit.FailLocal:
					// The local limiter has its own burst of 2: two admitted, then refused.
					if err != nil || !res.Local || res.Allowed != (i < 2) {
						t.Fatalf("down %d: %+v %v", i, res, err)
					}
				}
				h.Wait()
			}
			if got := gauge(t, reg, "portcullis_ratelimit_backend_up"); got != 0 {
				t.Fatalf("backend_up = %v while down", got)
			}
			// Down, the shared limiter is not called for every request: one failure, then probes.
			if c := shared.calls.Load(); c != 2 {
				t.Errorf("shared limiter called %d times, want 2 (one ok, one failure)", c)
			}
			if n := strings.Count(logs.String(), "unreachable"); n != 1 {
				t.Errorf("%d 'unreachable' log lines, want 1:\n%s", n, logs)
			}

			shared.down.Store(false)
			_, _ = allow() // the probe starts within a second (ProbeEvery) of the last
			now = now.Add(time.Second)
			_, _ = allow()
			h.Wait()
			if !h.Up() {
				t.Fatal("not up after the backend came back")
			}
			// A fresh key: the calls above may already have reached the shared limiter
			// (the probe can finish between them) and spent k's burst there.
			now = now.Add(100 * time.Millisecond)
			res, err := f.Allow(t.Context(), []ratelimit.Check{{Limit: l, Key: "fresh"}}, now)
			if err != nil || res.Local || !res.Allowed {
				t.Fatalf("after recovery: %+v %v", res, err)
			}
			if n := strings.Count(logs.String(), "reachable again"); n != 1 {
				t.Errorf("%d recovery log lines, want 1:\n%s", n, logs)
			}
			if got := gauge(t, reg, "portcullis_ratelimit_backend_up"); got != 1 {
				t.Fatalf("backend_up = %v after recovery", got)
			}
		})
	}
}

func TestFailoverInvalidChecksAreNotAnOutage(t *testing.T) {
	shared := &flaky{Memory: ratelimit.NewMemory(0)}
	h, _ := ratelimit.NewHealth(shared.Ping, ratelimit.HealthOptions{})
	f, _ := ratelimit.NewFailover(shared, nil, ratelimit.FailClosed, h, nil)
	if _, err := f.Allow(t.Context(), nil, t0); err == nil || errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if !h.Up() {
		t.Fatal("a bad call marked the backend down")
	}
}

func TestFailoverCanceledCallerIsNotAnOutage(t *testing.T) {
	shared := &flaky{Memory: ratelimit.NewMemory(0)}
	shared.down.Store(true)
	h, _ := ratelimit.NewHealth(shared.Ping, ratelimit.HealthOptions{})
	f, _ := ratelimit.NewFailover(shared, nil, ratelimit.FailClosed, h, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	l := mustRate(t, "f", 1, time.Hour, 2)
	if _, err := f.Allow(ctx, []ratelimit.Check{{Limit: l, Key: "k"}}, t0); err == nil {
		t.Fatal("no error")
	}
	if !h.Up() {
		t.Fatal("a canceled caller marked the backend down")
	}
}

func TestParseFailMode(t *testing.T) {
	for in, want := range map[string]ratelimit.FailMode{"": ratelimit.FailClosed, "closed": ratelimit.FailClosed, "local": ratelimit.FailLocal} {
		if got, err := ratelimit.ParseFailMode(in); err != nil || got != want {
			t.Errorf("ParseFailMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ratelimit.ParseFailMode("open"); err == nil {
		t.Error("fail mode open accepted")
	}
}

// gauge reads the one value of a metric family from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// busy fails with ErrBusy: the backend is fine, this process ran out of connections.
type busy struct{ flaky }

func (b *busy) Allow(context.Context, []ratelimit.Check, time.Time) (ratelimit.Result, error) {
	return ratelimit.Result{}, fmt.Errorf("redis limiter: %w: connection pool timeout", ratelimit.ErrBusy)
}

func TestFailoverBusyIsNotAnOutage(t *testing.T) {
	shared := &busy{flaky{Memory: ratelimit.NewMemory(0)}}
	h, _ := ratelimit.NewHealth(shared.Ping, ratelimit.HealthOptions{})
	f, _ := ratelimit.NewFailover(shared, ratelimit.NewMemory(0), ratelimit.FailLocal, h, nil)
	l := mustRate(t, "f", 1, time.Hour, 2)
	res, err := f.Allow(t.Context(), []ratelimit.Check{{Limit: l, Key: "k"}}, t0)
	if err != nil || !res.Local || !res.Allowed {
		t.Fatalf("busy backend, fail local: %+v %v", res, err)
	}
	if !h.Up() {
		t.Fatal("a busy pool marked the backend down for everyone")
	}
}
