package web

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	requestInfoKey
)

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewRequestID returns 80 random bits, base32: short, unguessable, log-friendly.
func NewRequestID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return idEncoding.EncodeToString(b[:])
}

// RequestID returns the request id stored by WithRequestID, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// ContextWithRequestID stores id in ctx.
func ContextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// Info collects what the access log line reports about a request; handlers fill it in
// (the authenticated client, the route, the reason of a refusal).
type Info struct {
	Route    string
	ClientID string
	Subject  string
	Reason   string // why the request was refused, for the log only
}

// RequestInfo returns the request's Info for handlers to fill; never nil under WithRequestID.
func RequestInfo(ctx context.Context) *Info {
	if in, ok := ctx.Value(requestInfoKey).(*Info); ok {
		return in
	}
	return &Info{}
}

// WithRequestID gives every request a fresh id, in its context and in the X-Request-Id
// response header. An id sent by the client is not trusted (it could forge log lines).
func WithRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := NewRequestID()
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		ctx = context.WithValue(ctx, requestInfoKey, &Info{})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Recover turns a panic into a 500 problem and a log line with the stack; the client learns
// nothing. http.ErrAbortHandler is re-raised, as net/http expects.
func Recover(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			log.Error("panic serving request", "request_id", RequestID(r.Context()), "panic", v, "stack", string(debug.Stack()))
			Error(w, r, http.StatusInternalServerError, "")
		}()
		next.ServeHTTP(w, r)
	})
}

// SecurityHeaders sets the headers every API response carries. hsts is set only when the
// listener is HTTPS.
func SecurityHeaders(hsts bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		if hsts {
			h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}

// StatusRecorder remembers the status and the bytes written, for access logs and metrics.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

// WriteHeader records the status.
func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write records bytes.
func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.Bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush, deadlines).
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// AccessLog writes one line per request: method, path (never the query, which may hold
// secrets), status, bytes, latency, request id and what the handler put into Info.
func AccessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &StatusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.Status == 0 {
			rec.Status = http.StatusOK
		}
		in := RequestInfo(r.Context())
		attrs := []slog.Attr{
			slog.String("request_id", RequestID(r.Context())),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rec.Status),
			slog.Int64("bytes", rec.Bytes),
			slog.Duration("latency", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
		}
		if in.Route != "" {
			attrs = append(attrs, slog.String("route", in.Route))
		}
		if in.ClientID != "" {
			attrs = append(attrs, slog.String("client_id", in.ClientID))
		}
		if in.Subject != "" {
			attrs = append(attrs, slog.String("sub", in.Subject))
		}
		if in.Reason != "" {
			attrs = append(attrs, slog.String("reason", in.Reason))
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}
