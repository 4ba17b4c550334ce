package gateway

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// noRoute labels requests refused before a route was chosen (400, 404, 405).
const noRoute = "-"

// Reasons an authentication or authorization failed; the label values of auth failures.
const (
	reasonMissingToken      = "missing_token"
	reasonInvalidToken      = "invalid_token"
	reasonInvalidRequest    = "invalid_request"
	reasonWrongCredential   = "wrong_credential"
	reasonInsufficientScope = "insufficient_scope"
	reasonPolicy            = "policy"
	reasonUnavailable       = "unavailable"
	reasonClientCert        = "client_cert"
)

var authReasons = []string{
	reasonMissingToken, reasonInvalidToken, reasonInvalidRequest, reasonWrongCredential,
	reasonInsufficientScope, reasonPolicy, reasonUnavailable, reasonClientCert,
}

// Kinds of upstream failure, the label values of upstream errors.
const (
	upstreamTimeout     = "timeout"
	upstreamUnreachable = "unreachable"
	upstreamOther       = "other"
)

var upstreamKinds = []string{upstreamTimeout, upstreamUnreachable, upstreamOther}

// metrics are the gateway's collectors, registered once per Gateway and shared by every
// configuration it loads.
type metrics struct {
	requests       *prometheus.CounterVec   // route, code
	latency        *prometheus.HistogramVec // route
	authFailures   *prometheus.CounterVec   // route, reason
	upstreamErrors *prometheus.CounterVec   // route, kind

	framing           [numFramingFlags]prometheus.Counter // requests refused for their framing, by reason
	handshakeFailures prometheus.Counter
	accessLogDropped  prometheus.Counter

	limitRefusals   *prometheus.CounterVec // route, reason
	auditSuppressed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_gateway_requests_total",
			Help: "Requests handled by the gateway, by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portcullis_gateway_request_duration_seconds",
			Help:    "Time from request to the end of the response, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_gateway_auth_failures_total",
			Help: "Requests refused by authentication or authorization, by route and reason.",
		}, []string{"route", "reason"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_gateway_upstream_errors_total",
			Help: "Failed upstream round trips, by route and kind.",
		}, []string{"route", "kind"}),
		limitRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_gateway_limit_refusals_total",
			Help: "Requests refused by IP filters, block lists and rate limits, by route (- before routing) and reason.",
		}, []string{"route", "reason"}),
		auditSuppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_gateway_audit_suppressed_total",
			Help: "Audit events of limits and blocks left out because an alike event was recorded within the minute (or the audit budget was spent).",
		}),
	}
	framing := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_gateway_framing_refusals_total",
		Help: "HTTP/1.x requests refused because their framing was ambiguous (request smuggling), by reason.",
	}, []string{"reason"})
	for f := framingFlag(1); f < numFramingFlags; f++ {
		m.framing[f] = framing.WithLabelValues(f.String())
	}
	m.handshakeFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portcullis_gateway_tls_handshake_failures_total",
		Help: "Client connections whose TLS handshake failed or timed out.",
	})
	m.accessLogDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portcullis_gateway_access_log_dropped_total",
		Help: "Access log lines dropped because the log destination did not keep up.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.latency, m.authFailures, m.upstreamErrors, framing, m.handshakeFailures, m.accessLogDropped, m.limitRefusals, m.auditSuppressed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// routeMetrics are one route's metric children, resolved when the route is compiled so the
// request path does no label lookup (status codes are resolved once each, on first use).
type routeMetrics struct {
	name     string
	vec      *prometheus.CounterVec
	latency  prometheus.Observer
	auth     map[string]prometheus.Counter
	refusals map[string]prometheus.Counter // limits stage, by reason
	upstream map[string]prometheus.Counter
	codes    [600]atomic.Pointer[counterRef]
}

type counterRef struct{ c prometheus.Counter }

func (m *metrics) forRoute(name string) *routeMetrics {
	rm := &routeMetrics{
		name:     name,
		vec:      m.requests,
		latency:  m.latency.WithLabelValues(name),
		auth:     make(map[string]prometheus.Counter, len(authReasons)),
		refusals: make(map[string]prometheus.Counter, len(limitReasons)),
		upstream: make(map[string]prometheus.Counter, len(upstreamKinds)),
	}
	for _, r := range authReasons {
		rm.auth[r] = m.authFailures.WithLabelValues(name, r)
	}
	for _, k := range upstreamKinds {
		rm.upstream[k] = m.upstreamErrors.WithLabelValues(name, k)
	}
	for _, r := range limitReasons {
		rm.refusals[r] = m.limitRefusals.WithLabelValues(name, r)
	}
	return rm
}

// forget removes the series of a route that a reload dropped.
func (m *metrics) forget(name string) {
	l := prometheus.Labels{"route": name}
	m.requests.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
	m.authFailures.DeletePartialMatch(l)
	m.upstreamErrors.DeletePartialMatch(l)
	m.limitRefusals.DeletePartialMatch(l)
}

func (rm *routeMetrics) request(code int, seconds float64) {
	rm.latency.Observe(seconds)
	if code < 100 || code >= len(rm.codes) {
		rm.vec.WithLabelValues(rm.name, strconv.Itoa(code)).Inc()
		return
	}
	ref := rm.codes[code].Load()
	if ref == nil {
		ref = &counterRef{c: rm.vec.WithLabelValues(rm.name, strconv.Itoa(code))}
		rm.codes[code].Store(ref)
	}
	ref.c.Inc()
}
