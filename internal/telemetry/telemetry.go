// Package telemetry builds the process logger (log/slog, with redaction of secret-looking
// attributes) and the Prometheus registry every surface registers its metrics on.
//
// Metrics never carry unbounded labels: no paths, subjects or client-supplied ids; route
// names and client ids come from configuration and are bounded by it.
package telemetry

import (
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Secret is a string that logs as [redacted].
type Secret string

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String keeps fmt from printing it either.
func (Secret) String() string { return "[redacted]" }

// redactedKeys are attribute names whose values are never written, whatever their type.
var redactedKeys = []string{"secret", "password", "token", "authorization", "assertion", "cookie", "master_key", "code_verifier"}

// Redact reports whether an attribute key names something that must never be logged.
func Redact(key string) bool {
	k := strings.ToLower(key)
	for _, r := range redactedKeys {
		if strings.Contains(k, r) {
			return true
		}
	}
	return false
}

// NewLogger returns a JSON (or text) logger at level whose output never shows the value of
// an attribute with a secret-looking name.
func NewLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if Redact(a.Key) && a.Value.Kind() != slog.KindGroup {
				return slog.String(a.Key, "[redacted]")
			}
			return a
		},
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Discard is a logger that writes nothing (tests, benchmarks).
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MetricsHandler serves reg in the Prometheus text format.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
