// Package ipfilter decides by client address: static allow and deny lists (CIDRs, IPv4 and
// IPv6) for the whole gateway and for each route, and a dynamic block list with expiry kept
// in an abuse.BlockList (memory, or Redis to share it between replicas).
//
// Addresses are compared in one form: an IPv4-mapped IPv6 address (::ffff:192.0.2.1, what a
// dual-stack socket reports for an IPv4 client) is the IPv4 address, in lists and in
// lookups; zones are dropped. So an IPv6 prefix never matches an IPv4 client, and
// "::ffff:10.0.0.0/104" in a list is 10.0.0.0/8.
//
// Deny wins: an address in any deny list (gateway or route) is refused, whatever the allow
// lists say; an address must be in every non-empty allow list. The flow for one request:
//
//	ip := web.ClientIP(r, trusted)
//	if v := ipfilter.Decide(ip, global, route.Filter); !v.Allowed { 403 }
//	if b, ok, _ := blocks.Blocked(ctx, ip, now); ok { 403, until b.Until }
package ipfilter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/config"
)

// List is a set of address prefixes. The zero List is empty and matches nothing. A List is
// immutable once built, so it is safe for concurrent use.
type List struct {
	set    map[netip.Prefix]struct{}
	lens4  []int // distinct IPv4 prefix lengths, longest first
	lens6  []int
	source []netip.Prefix // normalised entries, in order, for String
}

// MaxListEntries bounds one list.
const MaxListEntries = 100_000

// ParseList parses entries, each a CIDR ("10.0.0.0/8", "2001:db8::/32") or a single address
// ("192.0.2.1", "2001:db8::1"). An entry with host bits set ("10.0.0.1/8") is refused rather
// than guessed at; zones and surrounding spaces are refused. Every problem is reported.
func ParseList(entries []string) (List, error) { return parseList("", entries) }

// parseList names each problem name[i].
func parseList(name string, entries []string) (List, error) {
	if len(entries) > MaxListEntries {
		return List{}, fmt.Errorf("ipfilter: %d entries: at most %d", len(entries), MaxListEntries)
	}
	var l List
	var errs []error
	for i, e := range entries {
		p, err := ParsePrefix(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", name, i, err))
			continue
		}
		l.add(p)
	}
	if err := errors.Join(errs...); err != nil {
		return List{}, err
	}
	return l, nil
}

// MustParseList is ParseList for fixed lists in code and tests; it panics on an error.
func MustParseList(entries ...string) List {
	l, err := ParseList(entries)
	if err != nil {
		panic(err)
	}
	return l
}

// ParsePrefix parses one list entry (config.ParseIPFilterEntry) into its normalised prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := config.ParseIPFilterEntry(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return normalise(p), nil
}

// normalise turns an IPv4-mapped IPv6 prefix of at least /96 into the IPv4 prefix it covers.
func normalise(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

func (l *List) add(p netip.Prefix) {
	if l.set == nil {
		l.set = make(map[netip.Prefix]struct{})
	}
	if _, dup := l.set[p]; dup {
		return
	}
	l.set[p] = struct{}{}
	l.source = append(l.source, p)
	lens := &l.lens6
	if p.Addr().Is4() {
		lens = &l.lens4
	}
	if !slices.Contains(*lens, p.Bits()) {
		*lens = append(*lens, p.Bits())
		slices.Sort(*lens)
		slices.Reverse(*lens)
	}
}

// Len returns the number of distinct entries.
func (l List) Len() int { return len(l.source) }

// Prefixes returns the normalised entries in the order given.
func (l List) Prefixes() []netip.Prefix { return slices.Clone(l.source) }

// String renders the entries, comma-separated.
func (l List) String() string {
	s := make([]string, len(l.source))
	for i, p := range l.source {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Contains reports whether a (unmapped, without zone) is in a prefix of l. The invalid
// address is in no list. It costs one map lookup per distinct prefix length of a's family.
func (l List) Contains(a netip.Addr) bool {
	if !a.IsValid() || len(l.set) == 0 {
		return false
	}
	a = a.Unmap().WithZone("")
	lens := l.lens6
	if a.Is4() {
		lens = l.lens4
	}
	for _, n := range lens {
		p, err := a.Prefix(n)
		if err != nil {
			continue
		}
		if _, ok := l.set[p]; ok {
			return true
		}
	}
	return false
}

// Filter is the allow and deny lists of one scope: the gateway, or one route. The zero
// Filter allows everything.
type Filter struct {
	Allow List
	Deny  List
}

// NewFilter parses the lists of one scope.
func NewFilter(allow, deny []string) (*Filter, error) {
	a, errA := parseList("allow", allow)
	d, errD := parseList("deny", deny)
	if err := errors.Join(errA, errD); err != nil {
		return nil, err
	}
	return &Filter{Allow: a, Deny: d}, nil
}

// Empty reports whether f filters nothing.
func (f *Filter) Empty() bool { return f == nil || f.Allow.Len() == 0 && f.Deny.Len() == 0 }

// Reasons a Verdict gives for a refusal (audit and metric labels).
const (
	ReasonDenyList       = "deny_list"
	ReasonNotInAllowList = "not_in_allow_list"
	ReasonNoAddress      = "no_address"
)

// Verdict is the outcome of Decide.
type Verdict struct {
	Allowed bool
	Reason  string // why it was refused
	Scope   int    // the index of the Filter that refused it
}

// Decide checks a against the filters of every scope that applies (the gateway's first,
// then the route's; nil filters are skipped): any deny list containing a refuses it, then
// every non-empty allow list must contain it. An invalid address (the peer could not be
// parsed) is refused by any non-empty filter.
func Decide(a netip.Addr, scopes ...*Filter) Verdict {
	for i, f := range scopes {
		if f.Empty() {
			continue
		}
		if !a.IsValid() {
			return Verdict{Reason: ReasonNoAddress, Scope: i}
		}
		if f.Deny.Contains(a) {
			return Verdict{Reason: ReasonDenyList, Scope: i}
		}
	}
	for i, f := range scopes {
		if f != nil && f.Allow.Len() > 0 && !f.Allow.Contains(a) {
			return Verdict{Reason: ReasonNotInAllowList, Scope: i}
		}
	}
	return Verdict{Allowed: true}
}

// Blocks is the dynamic block list of client addresses on an abuse.BlockList. An IPv6
// address is blocked with its whole /64 (abuse.IPSubject), so a client cannot step around
// a block by changing the low bits.
type Blocks struct {
	List abuse.BlockList
}

// Block blocks a until the given time; created reports whether no block was in force.
func (b Blocks) Block(ctx context.Context, a netip.Addr, until time.Time, reason string, now time.Time) (bool, error) {
	if !a.IsValid() {
		return false, errors.New("ipfilter: cannot block the invalid address")
	}
	return b.List.Block(ctx, abuse.IPSubject(a), until, reason, now)
}

// Blocked returns the block in force on a at now.
func (b Blocks) Blocked(ctx context.Context, a netip.Addr, now time.Time) (abuse.Block, bool, error) {
	if !a.IsValid() {
		return abuse.Block{}, false, nil
	}
	return b.List.Blocked(ctx, abuse.IPSubject(a), now)
}

// Unblock lifts a block on a.
func (b Blocks) Unblock(ctx context.Context, a netip.Addr) error {
	if !a.IsValid() {
		return nil
	}
	return b.List.Unblock(ctx, abuse.IPSubject(a))
}
