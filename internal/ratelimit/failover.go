package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FailMode says what a Failover does while its shared backend is unreachable.
type FailMode uint8

// Failure modes.
const (
	// FailClosed refuses to decide: Allow returns an error wrapping ErrUnavailable and the
	// caller answers 503. The default: a limit that silently stops limiting is an outage of
	// the protection.
	FailClosed FailMode = iota
	// FailLocal decides with a per-process limiter: every replica enforces the limits on its
	// own share of the traffic, so N replicas admit up to N times the limit until the shared
	// backend is back.
	FailLocal
)

// ParseFailMode parses "closed" (or "") and "local".
func ParseFailMode(s string) (FailMode, error) {
	switch s {
	case "", "closed":
		return FailClosed, nil
	case "local":
		return FailLocal, nil
	}
	return FailClosed, fmt.Errorf("fail mode %q: want closed or local", s)
}

// String returns "closed" or "local".
func (m FailMode) String() string {
	if m == FailLocal {
		return "local"
	}
	return "closed"
}

// DefaultProbeEvery is how often a Failover probes a backend it believes down.
const DefaultProbeEvery = time.Second

// Health tracks whether a shared backend is reachable. The first failure marks it down and
// is logged once; while down, callers skip the backend (no request waits for a dead
// backend's timeout) and at most one probe runs per ProbeEvery; the first successful probe
// marks it up again and is logged once. Several wrappers of one backend (limits, block list,
// detectors) can share one Health.
//
// The zero value is not usable; call NewHealth.
type Health struct {
	name       string
	ping       func(context.Context) error
	probeEvery time.Duration
	timeout    time.Duration
	log        *slog.Logger

	down      atomic.Bool
	lastProbe atomic.Int64 // Unix ns of the last probe start (caller's clock)
	probing   atomic.Bool
	mu        sync.Mutex // orders transitions and their log lines

	up     prometheus.Gauge
	errors prometheus.Counter
	wg     sync.WaitGroup
}

// HealthOptions configure NewHealth.
type HealthOptions struct {
	// Name labels the log lines and metrics ("redis").
	Name string
	// ProbeEvery is the pause between probes while down (default 1s).
	ProbeEvery time.Duration
	// ProbeTimeout bounds one probe (default 1s).
	ProbeTimeout time.Duration
	Logger       *slog.Logger
	// Registerer receives portcullis_ratelimit_backend_up and _backend_errors_total labelled
	// with Name; nil registers nothing.
	Registerer prometheus.Registerer
}

// NewHealth tracks the backend that ping reaches.
func NewHealth(ping func(context.Context) error, o HealthOptions) (*Health, error) {
	if o.Name == "" {
		o.Name = "shared"
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = DefaultProbeEvery
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Health{
		name: o.Name, ping: ping, probeEvery: o.ProbeEvery, timeout: o.ProbeTimeout,
		log: o.Logger.With("component", "ratelimit", "backend", o.Name),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_ratelimit_backend_up", Help: "1 while the shared limits backend answers, 0 while it is unreachable.",
			ConstLabels: prometheus.Labels{"backend": o.Name},
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_ratelimit_backend_errors_total", Help: "Calls to the shared limits backend that failed.",
			ConstLabels: prometheus.Labels{"backend": o.Name},
		}),
	}
	h.up.Set(1)
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{h.up, h.errors} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ratelimit: register metrics: %w", err)
			}
		}
	}
	return h, nil
}

// Up reports whether the backend is believed reachable.
func (h *Health) Up() bool { return !h.down.Load() }

// Fail records a failed call. The first failure after being up marks the backend down and
// logs it.
func (h *Health) Fail(err error, now time.Time) {
	h.errors.Inc()
	if h.down.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down.Load() {
		return
	}
	h.lastProbe.Store(now.UnixNano())
	h.down.Store(true)
	h.up.Set(0)
	h.log.Error("shared limits backend unreachable", "err", err)
}

// MaybeProbe starts a probe in the background when the backend is down and no probe ran in
// the last ProbeEvery (by the caller's clock).
func (h *Health) MaybeProbe(now time.Time) {
	if !h.down.Load() {
		return
	}
	last := h.lastProbe.Load()
	if now.UnixNano()-last < int64(h.probeEvery) && now.UnixNano() >= last {
		return
	}
	if !h.probing.CompareAndSwap(false, true) {
		return
	}
	h.lastProbe.Store(now.UnixNano())
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer h.probing.Store(false)
		h.Probe(context.Background())
	}()
}

// Probe pings the backend now and records the outcome; it reports whether it is up.
func (h *Health) Probe(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	if err := h.ping(ctx); err != nil {
		h.errors.Inc()
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down.Load() {
		h.down.Store(false)
		h.up.Set(1)
		h.log.Info("shared limits backend reachable again")
	}
	return true
}

// Wait waits for a running probe to finish (tests, shutdown).
func (h *Health) Wait() { h.wg.Wait() }

// Failover puts a shared limiter in front of a local one. While the shared backend answers,
// it decides; when a call fails, the backend is marked down (see Health) and requests get
// the configured FailMode until a probe finds it back.
type Failover struct {
	shared   Limiter
	local    Limiter
	mode     FailMode
	health   *Health
	degraded prometheus.Counter
}

// NewFailover returns a limiter that uses shared while health says it is up, and mode while
// it is down. local is required for FailLocal (a Memory limiter).
func NewFailover(shared Limiter, local Limiter, mode FailMode, health *Health, reg prometheus.Registerer) (*Failover, error) {
	if shared == nil || health == nil {
		return nil, errors.New("ratelimit: failover needs a shared limiter and its health")
	}
	if mode == FailLocal && local == nil {
		return nil, errors.New("ratelimit: fail mode local needs a local limiter")
	}
	f := &Failover{shared: shared, local: local, mode: mode, health: health,
		degraded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_ratelimit_degraded_decisions_total", Help: "Decisions made while the shared limits backend was unreachable, by fail mode.",
			ConstLabels: prometheus.Labels{"backend": health.name, "mode": mode.String()},
		})}
	if reg != nil {
		if err := reg.Register(f.degraded); err != nil {
			return nil, fmt.Errorf("ratelimit: register metrics: %w", err)
		}
	}
	return f, nil
}

var _ Limiter = (*Failover)(nil)

// Allow implements Limiter.
func (f *Failover) Allow(ctx context.Context, checks []Check, now time.Time) (Result, error) {
	if err := ValidateChecks(checks); err != nil {
		return Result{}, err // a caller's mistake, not an outage
	}
	cause := errors.New("backend marked down")
	if f.health.Up() {
		res, err := f.shared.Allow(ctx, checks, now)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return Result{}, err // the caller gave up; says nothing about the backend
		}
		if !errors.Is(err, ErrBusy) {
			f.health.Fail(err, now)
		}
		cause = err
	} else {
		f.health.MaybeProbe(now)
	}
	f.degraded.Inc()
	if f.mode == FailLocal {
		res, err := f.local.Allow(ctx, checks, now)
		res.Local = true
		return res, err
	}
	return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, cause)
}
