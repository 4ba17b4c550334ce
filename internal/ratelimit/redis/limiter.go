package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/ratelimit"
)

// allowScript decides one request against all its checks, atomically. It mirrors
// ratelimit's Spec.admits and Spec.consume (decide.go); keep them in step.
//
//	KEYS[i]  the state of check i: a TAT (rate) or a count (quota)
//	ARGV[1]  now, Unix microseconds (the caller's clock), or "" for Redis's clock (TIME)
//	ARGV[2]  expiry margin, milliseconds
//	then per check i, at 3+4(i-1): kind ("r" or "q"), a, b, ttl
//	  rate:  a = interval µs, b = tolerance µs, ttl unused
//	  quota: a = size, b unused, ttl = milliseconds until the period ends (+ margin)
//
// Returns {admitted (0 or 1), now, state_1, …, state_n}: the time it decided at and the
// states before the request. Numbers
// stay below 2^53, so Lua's doubles hold them exactly; they are written with %.0f because
// Lua's default conversion keeps only 14 digits.
var allowScript = goredis.NewScript(`
local now
if ARGV[1] == "" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local margin = tonumber(ARGV[2])
local n = #KEYS
local states = {}
local ok = 1
for i = 1, n do
  local base = 3 + (i - 1) * 4
  local a = tonumber(ARGV[base + 1])
  local b = tonumber(ARGV[base + 2])
  local s = tonumber(redis.call("GET", KEYS[i]) or "0") or 0
  states[i] = s
  if ARGV[base] == "q" then
    if s >= a then ok = 0 end
  else
    if math.max(s, now) + a - b > now then ok = 0 end
  end
end
if ok == 1 then
  for i = 1, n do
    local base = 3 + (i - 1) * 4
    local a = tonumber(ARGV[base + 1])
    if ARGV[base] == "q" then
      redis.call("SET", KEYS[i], string.format("%.0f", states[i] + 1), "PX", ARGV[base + 3])
    else
      local tat = math.max(states[i], now) + a
      redis.call("SET", KEYS[i], string.format("%.0f", tat), "PX", math.ceil((tat - now) / 1000) + margin)
    end
  end
end
local out = {ok, now}
for i = 1, n do out[i + 2] = states[i] end
return out
`)

// Limiter is a ratelimit.Limiter whose state lives in Redis, shared by every replica that
// uses the same Redis and prefix. It is safe for concurrent use.
//
// Rate limits are decided at Redis's clock (TIME inside the script), the one clock every
// replica shares: neither clock skew between replicas nor the time a request spends between
// the caller and Redis changes a decision. (Deciding at the caller's now, a request that
// waited δ in a busy process looks δ early, so a saturated limit admits about rate×δ too few
// — measured here at 1-3 % under -race on a loaded machine.) Quotas pick their calendar
// period from the caller's now. Options.CallerClock decides at the caller's now instead,
// for tests on a fake clock.
type Limiter struct {
	c Client
	o Options
}

// NewLimiter returns a limiter on c.
func NewLimiter(c Client, o Options) *Limiter {
	return &Limiter{c: c, o: o.withDefaults()}
}

var (
	_ ratelimit.Limiter = (*Limiter)(nil)
	_ ratelimit.Pinger  = (*Limiter)(nil)
)

// Ping reports whether Redis answers (the probe of a ratelimit.Failover).
func (l *Limiter) Ping(ctx context.Context) error { return ping(ctx, l.c, l.o.Timeout) }

// Allow implements ratelimit.Limiter with one script run.
func (l *Limiter) Allow(ctx context.Context, checks []ratelimit.Check, now time.Time) (ratelimit.Result, error) {
	if err := ratelimit.ValidateChecks(checks); err != nil {
		return ratelimit.Result{}, err
	}
	nowUS := now.UnixMicro()
	keys := make([]string, len(checks))
	args := make([]any, 2, 2+4*len(checks))
	if l.o.CallerClock {
		args[0] = strconv.FormatInt(nowUS, 10)
	} else {
		args[0] = ""
	}
	args[1] = strconv.FormatInt(l.o.ExpiryMargin.Milliseconds(), 10)
	for i, c := range checks {
		sp := ratelimit.SpecOf(c.Limit, now)
		if sp.Quota {
			keys[i] = l.o.Prefix + "rl:q:" + c.Limit.Name + ":" + sp.Start.Format("20060102") + ":" + ratelimit.StorageKey(c.Key)
			ttl := (sp.End.UnixMicro()-nowUS+999)/1000 + l.o.ExpiryMargin.Milliseconds()
			args = append(args, "q", strconv.FormatInt(sp.Size, 10), "0", strconv.FormatInt(max(ttl, 1), 10))
		} else {
			keys[i] = l.o.Prefix + "rl:r:" + c.Limit.Name + ":" + ratelimit.StorageKey(c.Key)
			args = append(args, "r", strconv.FormatInt(sp.Interval, 10), strconv.FormatInt(sp.Tolerance, 10), "0")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()
	v, err := allowScript.Run(ctx, l.c, keys, args...).Int64Slice()
	if err != nil {
		return ratelimit.Result{}, fmt.Errorf("redis limiter: %w", busy(err))
	}
	if len(v) != len(checks)+2 {
		return ratelimit.Result{}, fmt.Errorf("redis limiter: script returned %d values for %d checks", len(v), len(checks))
	}
	return ratelimit.Decide(checks, v[2:], v[0] == 1, time.UnixMicro(v[1])), nil
}
