package redisbus

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	live       prometheus.Gauge
	published  *prometheus.CounterVec
	received   *prometheus.CounterVec
	reconnects prometheus.Counter
	resyncs    prometheus.Counter
}

// newMetrics creates the bus's metrics and registers them on reg (nil: not registered).
//
//	portcullis_events_bus_live                      1 while events from other replicas arrive
//	portcullis_events_published_total{result}       ok | error (Redis did not take it)
//	portcullis_events_received_total{kind}          token.revoked | keys.changed | resync | invalid
//	portcullis_events_bus_reconnects_total          subscriptions lost
//	portcullis_events_bus_resyncs_total             Resyncs given to local subscribers
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		live: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_events_bus_live",
			Help: "1 while the Redis event bus is subscribed and answering heartbeats; 0 while caches rely on their time bounds.",
		}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_events_published_total",
			Help: "Events sent to other replicas through Redis, by result.",
		}, []string{"result"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_events_received_total",
			Help: "Events received from other replicas through Redis, by kind (invalid: dropped).",
		}, []string{"kind"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_events_bus_reconnects_total",
			Help: "Times the Redis event subscription was lost.",
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_events_bus_resyncs_total",
			Help: "Resync events given to local caches after (re)subscribing.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.live, m.published, m.received, m.reconnects, m.resyncs} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
