package abuse

import (
	"context"
	"errors"
	"time"

	"github.com/portcullis/portcullis/internal/ratelimit"
)

// FailoverWindow counts in Shared (Redis) while Health says it is up and in Local (memory)
// while it is down. Abuse detection always falls back locally rather than failing closed:
// a detector that cannot count must not turn a Redis outage into a refusal of all traffic,
// and the rate limits (with their own fail mode) still stand.
type FailoverWindow struct {
	Shared, Local Window
	Health        *ratelimit.Health
}

var _ Window = FailoverWindow{}

// Add implements Window.
func (f FailoverWindow) Add(ctx context.Context, key, member string, w time.Duration, limit int, now time.Time) (int, error) {
	if err := checkWindow(w, limit); err != nil {
		return 0, err
	}
	if f.Health.Up() {
		n, err := f.Shared.Add(ctx, key, member, w, limit, now)
		if err == nil || ctx.Err() != nil {
			return n, err
		}
		if !errors.Is(err, ratelimit.ErrBusy) {
			f.Health.Fail(err, now)
		}
	} else {
		f.Health.MaybeProbe(now)
	}
	return f.Local.Add(ctx, key, member, w, limit, now)
}

// FailoverBlockList keeps blocks in Shared while Health says it is up, in Local while it is
// down. Blocks imposed during an outage stay local to the replica that imposed them; blocks
// already in Redis are not seen until it is back.
type FailoverBlockList struct {
	Shared, Local BlockList
	Health        *ratelimit.Health
}

var _ BlockList = FailoverBlockList{}

// Block implements BlockList.
func (f FailoverBlockList) Block(ctx context.Context, subject string, until time.Time, reason string, now time.Time) (bool, error) {
	if err := CheckBlock(subject, until, reason, now); err != nil {
		return false, err
	}
	if f.Health.Up() {
		created, err := f.Shared.Block(ctx, subject, until, reason, now)
		if err == nil || ctx.Err() != nil {
			return created, err
		}
		if !errors.Is(err, ratelimit.ErrBusy) {
			f.Health.Fail(err, now)
		}
	} else {
		f.Health.MaybeProbe(now)
	}
	return f.Local.Block(ctx, subject, until, reason, now)
}

// Blocked implements BlockList. While the shared list is down, it answers from the local one.
func (f FailoverBlockList) Blocked(ctx context.Context, subject string, now time.Time) (Block, bool, error) {
	if f.Health.Up() {
		b, ok, err := f.Shared.Blocked(ctx, subject, now)
		if err == nil || ctx.Err() != nil {
			return b, ok, err
		}
		if !errors.Is(err, ratelimit.ErrBusy) {
			f.Health.Fail(err, now)
		}
	} else {
		f.Health.MaybeProbe(now)
	}
	return f.Local.Blocked(ctx, subject, now)
}

// Unblock implements BlockList: it lifts the block in both lists, and reports a shared
// failure (the operator must retry once Redis is back).
func (f FailoverBlockList) Unblock(ctx context.Context, subject string) error {
	return errors.Join(f.Local.Unblock(ctx, subject), f.Shared.Unblock(ctx, subject))
}
