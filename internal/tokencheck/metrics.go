package tokencheck

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the counters of a Checker. Build them once per process (they are registered on
// a Registerer) and hand the same value to every Checker, across reloads.
type Metrics struct {
	cacheHits, cacheMisses, cacheNegativeHits prometheus.Counter
	active, inactive, failed                  prometheus.Counter
	latency                                   prometheus.Observer
	evictions                                 prometheus.Counter
	jwtOK, jwtInvalid, jwtUnavailable         prometheus.Counter
	shared                                    *prometheus.CounterVec // by result
	sharedWrites                              *prometheus.CounterVec // by op and result
}

// NewMetrics creates the metrics and registers them on reg (nil: not registered).
//
//	portcullis_gateway_introspection_cache_total{result="hit|miss|negative_hit"}
//	portcullis_gateway_introspections_total{outcome="active|inactive|error"}
//	portcullis_gateway_introspection_duration_seconds
//	portcullis_gateway_introspection_cache_evictions_total (revocations and flushes)
//	portcullis_gateway_jwt_verifications_total{outcome="valid|invalid|error"}
//	portcullis_gateway_shared_cache_lookups_total{result="hit|negative_hit|miss|stale|rejected|unverifiable|error|skipped"}
//	portcullis_gateway_shared_cache_writes_total{op="put|revoke",result="ok|error|dropped"}
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_gateway_introspection_cache_total",
		Help: "Lookups of opaque tokens in the introspection cache, by result.",
	}, []string{"result"})
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_gateway_introspections_total",
		Help: "Introspection calls to the issuer, by outcome.",
	}, []string{"outcome"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "portcullis_gateway_introspection_duration_seconds",
		Help:    "Latency of introspection calls to the issuer.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	evictions := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portcullis_gateway_introspection_cache_evictions_total",
		Help: "Cached introspection results dropped because of revocation or resync events.",
	})
	jwt := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_gateway_jwt_verifications_total",
		Help: "Local verifications of at+jwt access tokens, by outcome.",
	}, []string{"outcome"})
	shared := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_gateway_shared_cache_lookups_total",
		Help: "Lookups in the introspection cache shared by replicas (Redis), by result: stale, rejected (failed a check) and unverifiable (issuer keys unavailable) entries are not used; error and skipped mean the shared cache is unreachable and the issuer is asked directly.",
	}, []string{"result"})
	sharedWrites := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_gateway_shared_cache_writes_total",
		Help: "Writes to the shared introspection cache: answers stored (put) and revocations applied (revoke), by result.",
	}, []string{"op", "result"})
	if reg != nil {
		for _, c := range []prometheus.Collector{cache, calls, latency, evictions, jwt, shared, sharedWrites} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return &Metrics{
		cacheHits:         cache.WithLabelValues("hit"),
		cacheMisses:       cache.WithLabelValues("miss"),
		cacheNegativeHits: cache.WithLabelValues("negative_hit"),
		active:            calls.WithLabelValues("active"),
		inactive:          calls.WithLabelValues("inactive"),
		failed:            calls.WithLabelValues("error"),
		latency:           latency,
		evictions:         evictions,
		jwtOK:             jwt.WithLabelValues("valid"),
		jwtInvalid:        jwt.WithLabelValues("invalid"),
		jwtUnavailable:    jwt.WithLabelValues("error"),
		shared:            shared,
		sharedWrites:      sharedWrites,
	}, nil
}

// discardMetrics are used when no Metrics are given.
func discardMetrics() *Metrics {
	m, _ := NewMetrics(nil) // nothing to register: cannot fail
	return m
}
