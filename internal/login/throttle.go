package login

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/store"
)

// Throttle bounds password and code guessing three ways:
//
//   - a rate limit on sign-in posts per client address (every attempt counts),
//   - a block of an address after too many failures from it,
//   - a lock of an account after too many failures on it, from anywhere.
//
// The account lock is what stops a distributed guesser; because anyone can trigger it, it is
// short and a locked account gets exactly the answer of a wrong password. Backends are the
// ratelimit and abuse packages: in memory for one process, Redis for replicas.
type Throttle struct {
	limiter ratelimit.Limiter
	perIP   ratelimit.Limit
	det     *abuse.Detector
	ipRule  abuse.Rule
	accRule abuse.Rule
}

// ThrottleOptions are the shared backends; nil ones are in memory.
type ThrottleOptions struct {
	Limiter ratelimit.Limiter
	Windows abuse.Window
	Blocks  abuse.BlockList
	Locks   abuse.BlockList
}

// NewThrottle builds a throttle from the effective login config.
func NewThrottle(cfg config.LoginThrottle, o ThrottleOptions) (*Throttle, error) {
	n, per, err := ratelimit.ParseRate(cfg.PerIP)
	if err != nil {
		return nil, fmt.Errorf("login throttle: %w", err)
	}
	lim, err := ratelimit.NewRate(config.ReservedLimitPrefix+"login.ip", n, per, min(10, n))
	if err != nil {
		return nil, fmt.Errorf("login throttle: %w", err)
	}
	if o.Limiter == nil {
		o.Limiter = ratelimit.NewMemory(1 << 14)
	}
	if o.Windows == nil {
		o.Windows = abuse.NewMemoryWindow(1 << 14)
	}
	if o.Blocks == nil {
		o.Blocks = abuse.NewMemoryBlockList(1 << 14)
	}
	if o.Locks == nil {
		o.Locks = abuse.NewMemoryBlockList(1 << 14)
	}
	det, err := abuse.NewDetector(abuse.DetectorOptions{Windows: o.Windows, Blocks: o.Blocks, Throttles: o.Locks})
	if err != nil {
		return nil, err
	}
	t := &Throttle{
		limiter: o.Limiter, perIP: lim, det: det,
		// Address failures block the address; account failures "throttle" the account, which
		// the detector keeps on its second list: here that list is the account locks.
		ipRule:  abuse.Rule{Name: "login_ip_failures", Threshold: cfg.IPFailures, Window: cfg.IPWindow, Action: abuse.ActionBlock, For: cfg.IPBlock},
		accRule: abuse.Rule{Name: "login_account_failures", Threshold: cfg.AccountFailures, Window: cfg.AccountWindow, Action: abuse.ActionThrottle, For: cfg.AccountLock},
	}
	for _, r := range []abuse.Rule{t.ipRule, t.accRule} {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("login throttle: %w", err)
		}
	}
	return t, nil
}

// Verdict is Admit's decision.
type Verdict struct {
	// RateLimited: the address posts too fast; tell the person to wait RetryAfter.
	RateLimited bool
	RetryAfter  time.Duration
	// AddressBlocked: the address failed too often; answer like a rate limit.
	AddressBlocked bool
	// AccountLocked: the account failed too often; answer exactly like a wrong password.
	AccountLocked bool
}

// Reason is the audit text of a refusal ("" when admitted).
func (v Verdict) Reason() string {
	switch {
	case v.RateLimited:
		return "too many sign-in attempts from this address"
	case v.AddressBlocked:
		return "address blocked after repeated sign-in failures"
	case v.AccountLocked:
		return "account locked after repeated sign-in failures"
	}
	return ""
}

// Admit decides one sign-in attempt (a password or code post) from ip for account (a
// username as typed, or a user id for the second factor). Every attempt counts against
// the address's rate, admitted or not by the other checks. An error means a shared backend
// could not decide: the caller refuses (fail closed).
func (t *Throttle) Admit(ctx context.Context, ip netip.Addr, account string, now time.Time) (Verdict, error) {
	var v Verdict
	d, err := ratelimit.Allow(ctx, t.limiter, t.perIP, ratelimit.IPKey(ip), now)
	if err != nil {
		return v, err
	}
	if !d.Allowed {
		v.RateLimited, v.RetryAfter = true, d.RetryAfter
		return v, nil
	}
	st, err := t.det.Status(ctx, abuse.IPSubject(ip), now)
	if err != nil {
		return v, err
	}
	if st.Blocked {
		v.AddressBlocked, v.RetryAfter = true, st.Block.Until.Sub(now)
		return v, nil
	}
	acc, err := t.det.Status(ctx, AccountSubject(account), now)
	if err != nil {
		return v, err
	}
	v.AccountLocked = acc.Throttled
	return v, nil
}

// Failure counts a failed attempt against the address and the account. It returns the
// verdicts that fired (for the audit trail).
func (t *Throttle) Failure(ctx context.Context, ip netip.Addr, account string, now time.Time) ([]abuse.Verdict, error) {
	var fired []abuse.Verdict
	for _, o := range []struct {
		r       abuse.Rule
		subject string
	}{{t.ipRule, abuse.IPSubject(ip)}, {t.accRule, AccountSubject(account)}} {
		v, err := t.det.Observe(ctx, o.r, "", o.subject, "", now)
		if err != nil {
			return fired, err
		}
		if v.Fired && v.New {
			fired = append(fired, v)
		}
	}
	return fired, nil
}

// AccountSubject names an account for the abuse lists: the username's comparison key
// (store.UsernameKey, the key the store finds users by), so every spelling that signs in as
// one user — case, full-width forms — counts against one lock. A name no user can have
// (store.UsernameKey refuses it) is counted under its own lowercased form, in a namespace
// of its own: unknown usernames are throttled exactly like known ones.
func AccountSubject(account string) string {
	if k, err := store.UsernameKey(account); err == nil {
		return "account:" + ratelimit.StorageKey(k)
	}
	return "account-invalid:" + ratelimit.StorageKey(strings.ToLower(account))
}
