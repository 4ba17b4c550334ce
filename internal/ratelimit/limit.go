package ratelimit

import (
	"errors"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/internal/config"
)

// Limit is one policy: a GCRA rate limit (Rate requests per Per, bursts of up to Burst) or,
// when Period is set, a calendar quota (Rate requests per UTC day or month).
//
// A rate limit lets Burst requests through at once and then one every Per/Rate; idle time
// earns the burst back at the same pace. It is a token bucket of Burst tokens refilled at
// Rate per Per, computed as a single theoretical arrival time per key.
//
// The zero Limit is invalid; build one with NewRate or NewQuota, or fill it and call
// Validate.
type Limit struct {
	// Name identifies the policy in headers, metrics and storage keys ("orders.client"). It is
	// 1-64 of A-Z a-z 0-9 . _ - and unique among the checks of one request.
	Name string
	// Rate is the number of requests per Per (rate limit) or per Period (quota).
	Rate int
	// Per is the rate's window, a whole number of seconds. Zero for a quota.
	Per time.Duration
	// Burst is how many requests may pass at once (rate limits only); at least 1.
	Burst int
	// Period makes the limit a calendar quota that rolls over at 00:00 UTC (Day) or at 00:00
	// UTC on the first of the month (Month).
	Period Period
}

// Period is the calendar window of a quota.
type Period uint8

// Periods of a quota. NoPeriod marks a rate limit.
const (
	NoPeriod Period = iota
	Day
	Month
)

// String returns "day", "month" or "".
func (p Period) String() string {
	switch p {
	case Day:
		return "day"
	case Month:
		return "month"
	}
	return ""
}

// Bounds returns the UTC calendar period that contains now: [start, end).
func (p Period) Bounds(now time.Time) (start, end time.Time) {
	u := now.UTC()
	switch p {
	case Day:
		start = time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case Month:
		start = time.Date(u.Year(), u.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	return time.Time{}, time.Time{}
}

// Bounds on what a limit may say, so the arithmetic of both backends stays exact (integer
// microseconds, below 2^53 in the Lua doubles of the Redis script).
const (
	// MaxPer is the longest rate window (use a quota for longer spans).
	MaxPer = 31 * 24 * time.Hour
	// MaxRate bounds Rate (and a quota's size).
	MaxRate = 1_000_000_000
	// maxTolerance bounds Burst × (Per/Rate): how far ahead a key's arrival time may run.
	maxTolerance = 366 * 24 * time.Hour
	// maxNameLen bounds Limit.Name.
	maxNameLen = 64
)

// NewRate returns a validated rate limit. burst 0 means the default: the rate per second,
// rounded up (at least 1).
func NewRate(name string, rate int, per time.Duration, burst int) (Limit, error) {
	l := Limit{Name: name, Rate: rate, Per: per, Burst: burst}
	if burst == 0 && rate > 0 && per > 0 {
		l.Burst = DefaultBurst(rate, per)
	}
	return l, l.Validate()
}

// NewQuota returns a validated quota of n requests per calendar period p.
func NewQuota(name string, n int, p Period) (Limit, error) {
	l := Limit{Name: name, Rate: n, Period: p}
	return l, l.Validate()
}

// DefaultBurst is the burst of a rate limit that names none: the rate per second, rounded up,
// at least 1 (100/s → 100, 6000/m → 100, 10/h → 1).
func DefaultBurst(rate int, per time.Duration) int { return config.DefaultBurst(rate, per) }

// IsQuota reports whether l is a calendar quota.
func (l Limit) IsQuota() bool { return l.Period != NoPeriod }

// Validate reports what is wrong with l, or nil.
func (l Limit) Validate() error {
	var errs []error
	if !validName(l.Name) {
		errs = append(errs, fmt.Errorf("name %q: use 1-64 of A-Z a-z 0-9 . _ -", l.Name))
	}
	if l.Rate < 1 || l.Rate > MaxRate {
		errs = append(errs, fmt.Errorf("rate %d: must be between 1 and %d", l.Rate, MaxRate))
	}
	switch l.Period {
	case NoPeriod:
		switch {
		case l.Per < time.Second || l.Per > MaxPer || l.Per%time.Second != 0:
			errs = append(errs, fmt.Errorf("per %s: must be whole seconds between 1s and %s", l.Per, MaxPer))
		case l.Rate >= 1 && l.Per/time.Duration(l.Rate) < time.Microsecond:
			errs = append(errs, fmt.Errorf("rate %d per %s: at most one request per microsecond", l.Rate, l.Per))
		}
		switch {
		case l.Burst < 1 || l.Burst > MaxRate:
			errs = append(errs, fmt.Errorf("burst %d: must be between 1 and %d", l.Burst, MaxRate))
		case l.Rate >= 1 && l.Per >= time.Second && l.Per <= MaxPer && time.Duration(l.Burst) > maxTolerance/l.interval():
			errs = append(errs, fmt.Errorf("burst %d: refills over more than a year at this rate", l.Burst))
		}
	case Day, Month:
		if l.Per != 0 || l.Burst != 0 {
			errs = append(errs, errors.New("a quota has no per or burst"))
		}
	default:
		errs = append(errs, fmt.Errorf("period %d: unknown", l.Period))
	}
	return errors.Join(errs...)
}

// interval is the emission interval Per/Rate, truncated to whole microseconds (the unit of
// both backends); at least 1µs.
func (l Limit) interval() time.Duration {
	if l.Rate <= 0 {
		return time.Microsecond
	}
	us := int64(l.Per/time.Microsecond) / int64(l.Rate)
	return time.Duration(max(us, 1)) * time.Microsecond
}

// String renders l the way configuration writes it: "100/s burst 50", "10000/day".
func (l Limit) String() string {
	if l.IsQuota() {
		return fmt.Sprintf("%s %d/%s", l.Name, l.Rate, l.Period)
	}
	return fmt.Sprintf("%s %s burst %d", l.Name, FormatRate(l.Rate, l.Per), l.Burst)
}

func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

var rateUnits = []struct {
	name string
	d    time.Duration
}{{"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}}

// ParseRate parses "N/UNIT" or "N/KUNIT": a count of requests per window, where UNIT is s, m,
// h or d and K an optional whole multiplier ("100/s", "6000/m", "20/10s", "1000/d"). A "d"
// rate is a rolling 24 hours; calendar days are quotas (ParseQuota). The grammar is the
// config's (config.ParseRate), so what loads is what the limiter builds; the result
// satisfies Validate's bounds on Rate and Per.
func ParseRate(s string) (int, time.Duration, error) { return config.ParseRate(s) }

// FormatRate is the inverse of ParseRate: "100/s", "6000/m", "20/10s".
func FormatRate(n int, per time.Duration) string {
	for i := len(rateUnits) - 1; i >= 0; i-- {
		u := rateUnits[i]
		if per >= u.d && per%u.d == 0 {
			if per == u.d {
				return fmt.Sprintf("%d/%s", n, u.name)
			}
			return fmt.Sprintf("%d/%d%s", n, per/u.d, u.name)
		}
	}
	return fmt.Sprintf("%d/%s", n, per)
}

// ParseQuota parses "N/day" or "N/month" (config.ParseQuota): a quota of N requests per UTC
// calendar day or month.
func ParseQuota(s string) (int, Period, error) {
	n, unit, err := config.ParseQuota(s)
	switch {
	case err != nil:
		return 0, NoPeriod, err
	case unit == "day":
		return n, Day, nil
	default:
		return n, Month, nil
	}
}
