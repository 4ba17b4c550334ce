package ratelimit

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Response headers of draft-ietf-httpapi-ratelimit-headers (structured-field lists).
//
//	RateLimit-Policy: "orders.client";q=100;w=1, "orders.daily";q=10000;w=86400
//	RateLimit: "orders.client";r=0;t=1, "orders.daily";r=9000;t=3600
//	Retry-After: 1                                            (refused requests only)
//
// For a rate limit, q/w is the sustained rate (Rate per Per in seconds); r is what is left of
// the burst now; t is the seconds until the burst is whole again. For a quota, q is its size,
// w the length of the current calendar period in seconds, r what is left of it and t the
// seconds until it rolls over. Seconds round up, so a client that waits t (or Retry-After)
// is never early.
const (
	HeaderPolicy     = "RateLimit-Policy"
	HeaderRateLimit  = "RateLimit"
	HeaderRetryAfter = "Retry-After"
)

// SetHeaders sets RateLimit-Policy and RateLimit from r, and Retry-After when r refused the
// request. An empty result sets nothing.
func (r Result) SetHeaders(h http.Header, now time.Time) {
	if len(r.Decisions) == 0 {
		return
	}
	h.Set(HeaderPolicy, r.PolicyHeader(now))
	h.Set(HeaderRateLimit, r.RateLimitHeader())
	if !r.Allowed {
		h.Set(HeaderRetryAfter, strconv.FormatInt(RetryAfterSeconds(r.RetryAfter()), 10))
	}
}

// PolicyHeader is the RateLimit-Policy value for the limits of r.
func (r Result) PolicyHeader(now time.Time) string {
	var b strings.Builder
	for i, d := range r.Decisions {
		if i > 0 {
			b.WriteString(", ")
		}
		appendSFString(&b, d.Limit.Name)
		b.WriteString(";q=")
		b.WriteString(strconv.Itoa(d.Limit.Rate))
		b.WriteString(";w=")
		b.WriteString(strconv.FormatInt(WindowSeconds(d.Limit, now), 10))
	}
	return b.String()
}

// RateLimitHeader is the RateLimit value: remaining (r) and reset (t) per limit.
func (r Result) RateLimitHeader() string {
	var b strings.Builder
	for i, d := range r.Decisions {
		if i > 0 {
			b.WriteString(", ")
		}
		appendSFString(&b, d.Limit.Name)
		b.WriteString(";r=")
		b.WriteString(strconv.Itoa(d.Remaining))
		b.WriteString(";t=")
		b.WriteString(strconv.FormatInt(ceilSeconds(d.ResetAfter), 10))
	}
	return b.String()
}

// WindowSeconds is the w parameter of l: Per for a rate limit, the length of the calendar
// period containing now for a quota.
func WindowSeconds(l Limit, now time.Time) int64 {
	if l.IsQuota() {
		start, end := l.Period.Bounds(now)
		return int64(end.Sub(start) / time.Second)
	}
	return int64(l.Per / time.Second)
}

// RetryAfterSeconds is the Retry-After value for a wait of d: whole seconds rounded up, at
// least 1 (a refused client never gets "retry now").
func RetryAfterSeconds(d time.Duration) int64 {
	return max(ceilSeconds(d), 1)
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// appendSFString writes s as a structured-field String (RFC 9651 §3.3.3): quoted, with " and
// \ escaped; other bytes outside printable ASCII cannot occur in a valid limit name and are
// replaced by '?'.
func appendSFString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
