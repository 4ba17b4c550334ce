package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/ratelimit"
)

// windowScript is abuse.MemoryWindow.Add in Redis: a sorted set of members scored by their
// latest time (Unix µs).
//
//	KEYS[1]  the window
//	ARGV     now µs, window µs, limit, member, ttl ms
//
// Returns the count after the event.
var windowScript = goredis.NewScript(`
local now = tonumber(ARGV[1])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", string.format("%.0f", now - tonumber(ARGV[2])))
redis.call("ZADD", KEYS[1], ARGV[1], ARGV[4])
local n = redis.call("ZCARD", KEYS[1])
local limit = tonumber(ARGV[3])
if n > limit then
  redis.call("ZREMRANGEBYRANK", KEYS[1], 0, n - limit - 1)
  n = limit
end
redis.call("PEXPIRE", KEYS[1], ARGV[5])
return n
`)

// Windows is an abuse.Window in Redis, shared by every replica.
type Windows struct {
	c Client
	o Options
}

// NewWindows returns the sliding windows on c.
func NewWindows(c Client, o Options) *Windows { return &Windows{c: c, o: o.withDefaults()} }

var _ abuse.Window = (*Windows)(nil)

// Ping reports whether Redis answers.
func (w *Windows) Ping(ctx context.Context) error { return ping(ctx, w.c, w.o.Timeout) }

// Add implements abuse.Window. Events without a member get a unique one, so each counts.
func (w *Windows) Add(ctx context.Context, key, member string, win time.Duration, limit int, now time.Time) (int, error) {
	if win < time.Millisecond || win > 24*time.Hour || limit < 1 || limit > abuse.MaxWindowLimit {
		return 0, fmt.Errorf("redis window: window %s, limit %d: out of range", win, limit)
	}
	if member == "" {
		var b [8]byte
		rand.Read(b[:])
		member = "\x00" + hex.EncodeToString(b[:]) // cannot collide with a real member's storage form
	} else {
		member = ratelimit.StorageKey(member)
	}
	ttl := win + w.o.ExpiryMargin
	ctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	n, err := windowScript.Run(ctx, w.c, []string{w.o.Prefix + "ab:w:" + ratelimit.StorageKey(key)},
		strconv.FormatInt(now.UnixMicro(), 10), strconv.FormatInt(win.Microseconds(), 10),
		strconv.Itoa(limit), member, strconv.FormatInt(ttl.Milliseconds(), 10)).Int()
	if err != nil {
		return 0, fmt.Errorf("redis window: %w", busy(err))
	}
	return n, nil
}

// blockScript stores a block unless a longer one is in force.
//
//	KEYS[1]  the subject's block
//	ARGV     until µs, "until reason", ttl ms, now µs
//
// Returns 1 when it created a block where none was in force, 2 when it extended one, 0 when
// a longer block stays.
var blockScript = goredis.NewScript(`
local cur = redis.call("GET", KEYS[1])
local active = false
if cur then
  local u = tonumber(string.match(cur, "^(%d+)"))
  if u and u > tonumber(ARGV[4]) then
    active = true
    if u >= tonumber(ARGV[1]) then return 0 end
  end
end
redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
if active then return 2 end
return 1
`)

// BlockList is an abuse.BlockList in Redis, shared by every replica. Give the block list and
// the throttle list different names.
type BlockList struct {
	c      Client
	o      Options
	prefix string
}

// NewBlockList returns the block list called name ("block", "throttle") on c.
func NewBlockList(c Client, name string, o Options) *BlockList {
	o = o.withDefaults()
	return &BlockList{c: c, o: o, prefix: o.Prefix + "ab:" + name + ":"}
}

var _ abuse.BlockList = (*BlockList)(nil)

// Ping reports whether Redis answers.
func (b *BlockList) Ping(ctx context.Context) error { return ping(ctx, b.c, b.o.Timeout) }

// Block implements abuse.BlockList.
func (b *BlockList) Block(ctx context.Context, subject string, until time.Time, reason string, now time.Time) (bool, error) {
	if err := abuse.CheckBlock(subject, until, reason, now); err != nil {
		return false, err
	}
	u := strconv.FormatInt(until.UnixMicro(), 10)
	ttl := until.Sub(now) + b.o.ExpiryMargin
	ctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	r, err := blockScript.Run(ctx, b.c, []string{b.prefix + subject}, u, u+" "+reason,
		strconv.FormatInt(max(ttl.Milliseconds(), 1), 10), strconv.FormatInt(now.UnixMicro(), 10)).Int()
	if err != nil {
		return false, fmt.Errorf("redis block list: %w", busy(err))
	}
	return r == 1, nil
}

// Blocked implements abuse.BlockList.
func (b *BlockList) Blocked(ctx context.Context, subject string, now time.Time) (abuse.Block, bool, error) {
	if subject == "" || len(subject) > abuse.MaxSubjectLen {
		return abuse.Block{}, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	v, err := b.c.Get(ctx, b.prefix+subject).Result()
	if errors.Is(err, goredis.Nil) {
		return abuse.Block{}, false, nil
	}
	if err != nil {
		return abuse.Block{}, false, fmt.Errorf("redis block list: %w", busy(err))
	}
	us, reason, _ := strings.Cut(v, " ")
	u, err := strconv.ParseInt(us, 10, 64)
	if err != nil {
		return abuse.Block{}, false, fmt.Errorf("redis block list: malformed entry for %q", subject)
	}
	until := time.UnixMicro(u).UTC()
	if !until.After(now) {
		return abuse.Block{}, false, nil
	}
	return abuse.Block{Subject: subject, Until: until, Reason: reason}, true, nil
}

// Entries returns the blocks in force at now (an operator's view, `portcullis blocks list`),
// at most max of them. It walks the list's keys with SCAN, so it never stalls Redis.
func (b *BlockList) Entries(ctx context.Context, now time.Time, max int) ([]abuse.Block, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*b.o.Timeout)
	defer cancel()
	var (
		out    []abuse.Block
		cursor uint64
	)
	pattern := globEscape(b.prefix) + "*"
	for {
		keys, next, err := b.c.Scan(ctx, cursor, pattern, 200).Result()
		if err != nil {
			return nil, fmt.Errorf("redis block list: %w", busy(err))
		}
		for _, k := range keys {
			subject, mine := strings.CutPrefix(k, b.prefix)
			if !mine {
				continue
			}
			blk, ok, err := b.Blocked(ctx, subject, now)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, blk)
			}
			if len(out) >= max {
				return out, nil
			}
		}
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
}

// globEscape quotes the characters SCAN's MATCH pattern treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\^-`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Unblock implements abuse.BlockList.
func (b *BlockList) Unblock(ctx context.Context, subject string) error {
	if subject == "" || len(subject) > abuse.MaxSubjectLen {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	if err := b.c.Del(ctx, b.prefix+subject).Err(); err != nil {
		return fmt.Errorf("redis block list: %w", err)
	}
	return nil
}
