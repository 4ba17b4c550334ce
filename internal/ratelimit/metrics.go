package ratelimit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts decisions by policy. Policy names come from configuration, so the label
// set is bounded; keys (clients, addresses) are never labels.
type Metrics struct {
	decisions *prometheus.CounterVec
}

// NewMetrics registers portcullis_ratelimit_decisions_total{policy,result} on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_ratelimit_decisions_total",
		Help: "Rate-limit and quota checks by policy and result (allowed, denied; local when decided without the shared backend).",
	}, []string{"policy", "result"})}
	if err := reg.Register(m.decisions); err != nil {
		return nil, fmt.Errorf("ratelimit: register metrics: %w", err)
	}
	return m, nil
}

// Observe counts every check of res.
func (m *Metrics) Observe(res Result) {
	for _, d := range res.Decisions {
		r := "allowed"
		if !d.Allowed {
			r = "denied"
		}
		if res.Local {
			r += "_local"
		}
		m.decisions.WithLabelValues(d.Limit.Name, r).Inc()
	}
}

// RegisterMemory exposes the size and the evictions of mem on reg:
// portcullis_ratelimit_memory_keys and portcullis_ratelimit_memory_evictions_total.
func RegisterMemory(reg prometheus.Registerer, mem *Memory) error {
	keys := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "portcullis_ratelimit_memory_keys", Help: "Keys held by the in-memory limiter.",
	}, func() float64 { return float64(mem.Len()) })
	ev := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "portcullis_ratelimit_memory_evictions_total", Help: "Live limiter entries dropped to keep the in-memory limiter within its key bound.",
	}, func() float64 { return float64(mem.Evictions()) })
	for _, c := range []prometheus.Collector{keys, ev} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("ratelimit: register metrics: %w", err)
		}
	}
	return nil
}
