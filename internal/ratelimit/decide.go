package ratelimit

import "time"

// The arithmetic both backends share. State per key is one int64:
//
//   - rate limit: the theoretical arrival time (TAT), Unix microseconds. The bucket is full
//     when TAT ≤ now, so a missing key and an old key mean the same thing.
//   - quota: the number of requests counted in the current period (the period is part of the
//     storage key in Redis and of the entry in memory).
//
// The Redis Lua script repeats admits() and consume() exactly; keep them in step.

// params are a limit in the backends' unit, microseconds.
type params struct {
	interval  int64 // Per/Rate
	tolerance int64 // Burst × interval: how far TAT may run ahead of now
	quota     int64 // a quota's size
	end       int64 // a quota's period end, Unix µs (exclusive)
}

func paramsOf(l Limit, now time.Time) params {
	if l.IsQuota() {
		_, end := l.Period.Bounds(now)
		return params{quota: int64(l.Rate), end: end.UnixMicro()}
	}
	iv := l.interval().Microseconds()
	return params{interval: iv, tolerance: iv * int64(l.Burst)}
}

// admits reports whether one more request fits, given the stored state (0 when absent).
func (p params) admits(quota bool, state, now int64) bool {
	if quota {
		return state < p.quota
	}
	tat := max(state, now)
	return tat+p.interval-p.tolerance <= now
}

// consume returns the state after admitting one request.
func (p params) consume(quota bool, state, now int64) int64 {
	if quota {
		return state + 1
	}
	return max(state, now) + p.interval
}

// expiry is when the state stops mattering (Unix µs): afterwards it equals absence.
func (p params) expiry(quota bool, state int64) int64 {
	if quota {
		return p.end
	}
	return state
}

// decision describes a check given the state before the request and whether the request was
// admitted (and so consumed from this check).
func (p params) decision(c Check, state, now int64, allowed, consumed bool) Decision {
	d := Decision{Limit: c.Limit, Allowed: allowed}
	if c.Limit.IsQuota() {
		used := state
		if consumed {
			used++
		}
		d.Remaining = int(max(p.quota-used, 0))
		d.ResetAfter = usec(p.end - now)
		if !allowed {
			d.RetryAfter = d.ResetAfter
		}
		return d
	}
	tat := max(state, now)
	if consumed {
		tat += p.interval
	}
	// What is left: how many intervals fit between the bucket's floor and now.
	d.Remaining = int(max((now-(tat-p.tolerance))/p.interval, 0))
	d.ResetAfter = usec(tat - now)
	if !allowed {
		d.RetryAfter = usec(tat + p.interval - p.tolerance - now)
	}
	return d
}

func usec(v int64) time.Duration {
	if v <= 0 {
		return 0
	}
	return time.Duration(v) * time.Microsecond
}
