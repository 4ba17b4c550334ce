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

// Spec is a limit in the backends' unit, microseconds: what a shared backend's script
// needs. Build it with SpecOf.
type Spec struct {
	Quota     bool
	Interval  int64     // rate: Per/Rate
	Tolerance int64     // rate: Burst × Interval, how far TAT may run ahead of now
	Size      int64     // quota: requests per period
	Start     time.Time // quota: the current period [Start, End) in UTC
	End       time.Time
	end       int64 // End in Unix µs
}

// SpecOf is l at now.
func SpecOf(l Limit, now time.Time) Spec {
	if l.IsQuota() {
		start, end := l.Period.Bounds(now)
		return Spec{Quota: true, Size: int64(l.Rate), Start: start, End: end, end: end.UnixMicro()}
	}
	iv := l.interval().Microseconds()
	return Spec{Interval: iv, Tolerance: iv * int64(l.Burst)}
}

// Decide computes the result of one request from the states its checks had before it
// (0 for an absent key), as every backend does; allowed says whether the backend admitted
// it (and so consumed from every check).
func Decide(checks []Check, states []int64, allowed bool, now time.Time) Result {
	nowUS := now.UnixMicro()
	res := Result{Allowed: allowed, Decisions: make([]Decision, len(checks)), At: now}
	for i, c := range checks {
		p := SpecOf(c.Limit, now)
		res.Decisions[i] = p.decision(c, states[i], nowUS, p.admits(states[i], nowUS), allowed)
	}
	return res
}

// admits reports whether one more request fits, given the stored state (0 when absent).
func (p Spec) admits(state, now int64) bool {
	if p.Quota {
		return state < p.Size
	}
	tat := max(state, now)
	return tat+p.Interval-p.Tolerance <= now
}

// consume returns the state after admitting one request.
func (p Spec) consume(state, now int64) int64 {
	if p.Quota {
		return state + 1
	}
	return max(state, now) + p.Interval
}

// expiry is when the state stops mattering (Unix µs): afterwards it equals absence.
func (p Spec) expiry(state int64) int64 {
	if p.Quota {
		return p.end
	}
	return state
}

// decision describes a check given the state before the request and whether the request was
// admitted (and so consumed from this check).
func (p Spec) decision(c Check, state, now int64, allowed, consumed bool) Decision {
	d := Decision{Limit: c.Limit, Allowed: allowed}
	if p.Quota {
		used := state
		if consumed {
			used++
		}
		d.Remaining = int(max(p.Size-used, 0))
		d.ResetAfter = usec(p.end - now)
		if !allowed {
			d.RetryAfter = d.ResetAfter
		}
		return d
	}
	tat := max(state, now)
	if consumed {
		tat += p.Interval
	}
	// What is left: how many intervals fit between the bucket's floor and now.
	d.Remaining = int(max((now-(tat-p.Tolerance))/p.Interval, 0))
	d.ResetAfter = usec(tat - now)
	if !allowed {
		d.RetryAfter = usec(tat + p.Interval - p.Tolerance - now)
	}
	return d
}

func usec(v int64) time.Duration {
	if v <= 0 {
		return 0
	}
	return time.Duration(v) * time.Microsecond
}
