package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/abuse/ipfilter"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/store"
)

// The limits stage of the pipeline, in request order:
//
//	every request:   gateway.ip_filter → the dynamic block list of addresses (403)
//	after routing:   the route's ip_filter (403)
//	before auth:     the route's per-ip and per-header limits, and the throttle of a
//	                 throttled address, in one Allow (429; 503 when the shared backend is
//	                 down and cache.fail is closed)
//	after auth:      a blocked client (403); the route's per-client and per-subject limits
//	                 and quotas, and the throttle of a throttled client, in one Allow (429)
//	after the answer: 401s feed the per-address auth-failure detector; on routes with
//	                 enumeration, the client's 404s/403s and object ids feed the
//	                 enumeration detectors
//
// RateLimit-Policy and RateLimit describe every limit decided for the request, on every
// answer of a limited route (200s included). A route without limits, filters or
// enumeration pays one cached look-up of its client's address in the block list (only
// while some rule blocks or throttles addresses) and allocates nothing for it.

// Reasons of refusals by the limits stage (log, access log and metric label values).
const (
	reasonIPDenied          = "ip_deny_list"
	reasonIPNotAllowed      = "ip_not_in_allow_list"
	reasonIPNoAddress       = "ip_no_address"
	reasonIPBlocked         = "ip_blocked"
	reasonClientBlocked     = "client_blocked"
	reasonRateLimited       = "rate_limited"
	reasonLimitsUnavailable = "limits_unavailable"
)

var limitReasons = []string{reasonIPDenied, reasonIPNotAllowed, reasonIPNoAddress, reasonIPBlocked, reasonClientBlocked, reasonRateLimited, reasonLimitsUnavailable}

// detailForbidden is the one body of every 403 that gives no reason: a policy said no, the
// address is denied or blocked, the client is blocked.
const detailForbidden = "The request is not allowed."

// Names of the gateway's abuse rules (metric labels, audit reasons, block reasons).
const (
	ruleAuthFailures      = "gateway_auth_failures"
	ruleEnumerationIDs    = "gateway_enumeration_ids"
	ruleEnumerationErrors = "gateway_enumeration_errors"
	// throttleLimitName is the extra limit on throttled subjects.
	throttleLimitName = "abuse.throttle"
)

// statusTTL is how long the gateway trusts what the shared block and throttle lists said
// about an address or a client: a block imposed at one replica holds at every replica
// within this time, and each address costs the shared backend at most one look-up per TTL.
const statusTTL = time.Second

// abuseSettings are the compiled gateway.abuse rules of one configuration.
type abuseSettings struct {
	authFailures *abuse.Rule // nil: off
	enumIDs      *abuse.Rule
	enumErrors   *abuse.Rule
	throttle     ratelimit.Limit
	// ipStatus: some rule sanctions addresses, so each request's address is looked up.
	ipStatus bool
	// clientStatus: some rule sanctions clients, so each authenticated client is looked up.
	clientStatus bool
}

func compileRule(name string, r config.AbuseRule) (*abuse.Rule, error) {
	if r.Off() {
		return nil, nil
	}
	a, err := abuse.ParseAction(r.Action)
	if err != nil {
		return nil, err
	}
	rule := abuse.Rule{Name: name, Threshold: r.Threshold, Window: r.Window, Action: a, For: r.For}
	if err := rule.Validate(); err != nil {
		return nil, err
	}
	return &rule, nil
}

// sanctions reports whether r stores a block or a throttle.
func sanctions(r *abuse.Rule) bool {
	return r != nil && (r.Action == abuse.ActionBlock || r.Action == abuse.ActionThrottle)
}

func (b *builder) compileAbuse(st *state) error {
	a := b.cfg.Gateway.Abuse
	var err error
	var errs []error
	if st.abuse.authFailures, err = compileRule(ruleAuthFailures, a.AuthFailures); err != nil {
		errs = append(errs, fmt.Errorf("abuse.auth_failures: %w", err))
	}
	if st.abuse.enumIDs, err = compileRule(ruleEnumerationIDs, a.EnumerationIDs); err != nil {
		errs = append(errs, fmt.Errorf("abuse.enumeration_ids: %w", err))
	}
	if st.abuse.enumErrors, err = compileRule(ruleEnumerationErrors, a.EnumerationErrors); err != nil {
		errs = append(errs, fmt.Errorf("abuse.enumeration_errors: %w", err))
	}
	n, per, err := ratelimit.ParseRate(a.ThrottleRate)
	if err == nil {
		st.abuse.throttle, err = ratelimit.NewRate(throttleLimitName, n, per, 1)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("abuse.throttle_rate: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	st.abuse.ipStatus = sanctions(st.abuse.authFailures)
	for _, rt := range st.routes {
		if rt.enum != nil && (sanctions(st.abuse.enumIDs) || sanctions(st.abuse.enumErrors)) {
			st.abuse.clientStatus = true
		}
	}
	if st.filter, err = newFilter(b.cfg.Gateway.IPFilter); err != nil {
		return fmt.Errorf("gateway: ip_filter: %w", err)
	}
	return nil
}

// newFilter compiles an ip_filter; nil when it filters nothing.
func newFilter(f config.IPFilter) (*ipfilter.Filter, error) {
	if f.Empty() {
		return nil, nil
	}
	return ipfilter.NewFilter(f.Allow, f.Deny)
}

// limitKey says what a limit counts by.
type limitKey uint8

const (
	keyClient limitKey = iota
	keySubject
	keyIP
	keyHeader
)

// routeLimit is one compiled limit of a route.
type routeLimit struct {
	limit  ratelimit.Limit
	by     limitKey
	header string // canonical name, for keyHeader
}

// routeLimits are a route's limits, split by when their key is known.
type routeLimits struct {
	before []routeLimit // ip and header: decided before authentication
	after  []routeLimit // client and subject: decided after it
}

// enumeration is a route's enumeration detection.
type enumeration struct {
	param       string // the pattern parameter holding the object id
	afterPrefix bool   // the id is the segment after the path prefix
}

// compileLimits compiles a route's rate_limit, ip_filter and enumeration.
func (b *builder) compileLimits(rt *route, rc *config.Route) error {
	var err error
	if rt.filter, err = newFilter(rc.IPFilter); err != nil {
		return fmt.Errorf("ip_filter: %w", err)
	}
	if e := rc.Enumeration; e != nil {
		rt.enum = &enumeration{param: e.IDParam, afterPrefix: e.IDAfterPrefix}
		if rt.auth == authPublic {
			return errors.New("enumeration needs an authenticated route")
		}
	}
	if len(rc.RateLimit) == 0 {
		return nil
	}
	ls := &routeLimits{}
	for i, l := range rc.RateLimit {
		name := l.EffectiveName(rc.Name)
		var lim ratelimit.Limit
		if l.Quota != "" {
			n, p, err := ratelimit.ParseQuota(l.Quota)
			if err == nil {
				lim, err = ratelimit.NewQuota(name, n, p)
			}
			if err != nil {
				return fmt.Errorf("rate_limit[%d]: %w", i, err)
			}
		} else {
			n, per, err := ratelimit.ParseRate(l.Rate)
			if err == nil {
				lim, err = ratelimit.NewRate(name, n, per, l.Burst)
			}
			if err != nil {
				return fmt.Errorf("rate_limit[%d]: %w", i, err)
			}
		}
		rl := routeLimit{limit: lim}
		switch l.PerKind() {
		case config.PerClient:
			rl.by = keyClient
		case config.PerSubject:
			rl.by = keySubject
		case config.PerIP:
			rl.by = keyIP
		case "header":
			rl.by, rl.header = keyHeader, http.CanonicalHeaderKey(l.Header())
		default:
			return fmt.Errorf("rate_limit[%d]: per %q: unknown", i, l.Per)
		}
		if (rl.by == keyClient || rl.by == keySubject) && rt.auth == authPublic {
			return fmt.Errorf("rate_limit[%d]: a public route has no %s", i, l.Per)
		}
		if rl.by == keyIP || rl.by == keyHeader {
			ls.before = append(ls.before, rl)
		} else {
			ls.after = append(ls.after, rl)
		}
	}
	// One throttle check may join either phase.
	if len(ls.before)+1 > ratelimit.MaxChecks || len(ls.after)+1 > ratelimit.MaxChecks {
		return errors.New("rate_limit: too many limits")
	}
	checks := make([]ratelimit.Check, 0, len(rc.RateLimit))
	for _, l := range append(append([]routeLimit(nil), ls.before...), ls.after...) {
		checks = append(checks, ratelimit.Check{Limit: l.limit})
	}
	if err := ratelimit.ValidateChecks(checks); err != nil {
		return fmt.Errorf("rate_limit: %w", err)
	}
	rt.limits = ls
	return nil
}

// key is the partition of traffic the limit counts this request in.
func (l *routeLimit) key(rs *reqState, r *http.Request) string {
	switch l.by {
	case keyClient:
		return rs.clientID
	case keySubject:
		return rs.subject
	case keyIP:
		return ratelimit.IPKey(rs.addr)
	}
	// A header value may be a credential (an API key): it is stored only as its SHA-256
	// (StorageKey hashes every key that starts with '~'). Requests without the header
	// share one count, so leaving it out is no way around the limit.
	v := r.Header[l.header]
	if len(v) == 0 {
		return "~"
	}
	return ratelimit.StorageKey("~" + v[0])
}

// objectID is the object id a request on an enumeration route asks for ("" for none).
func (rt *route) objectID(path string) string {
	switch e := rt.enum; {
	case e.param != "":
		return rt.path.param(path, e.param)
	case e.afterPrefix:
		rest := path
		if rt.path.source != "/" {
			rest = strings.TrimPrefix(path, rt.path.source)
		}
		rest = strings.TrimPrefix(rest, "/")
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		return rest
	}
	return ""
}

// addrKey is the cache key of an address: itself for IPv4, its /64 for IPv6 (the unit of
// abuse.IPSubject).
func addrKey(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// admitAddress applies gateway.ip_filter and the block list of addresses. It reports whether
// the request may go on.
func (g *Gateway) admitAddress(rs *reqState, r *http.Request) bool {
	st := rs.st
	if st.filter != nil {
		if v := ipfilter.Decide(rs.addr, st.filter); !v.Allowed {
			g.refuseAddress(rs, r, filterReason(v.Reason))
			return false
		}
	}
	if !st.abuse.ipStatus || !rs.addr.IsValid() {
		return true
	}
	now := g.opts.Now()
	key := addrKey(rs.addr)
	s, ok := g.ipStatus.get(key, now)
	if !ok {
		ds, err := g.det.Status(r.Context(), abuse.IPSubject(rs.addr), now)
		if err != nil {
			// The block list fails open (abuse's fallback is local, not a refusal); the rate
			// limits keep their own fail mode.
			g.log.Debug("address block list unavailable", "request_id", rs.id, "error", err)
			return true
		}
		s = statusOf(ds)
		g.ipStatus.put(key, s, now)
	}
	if s.blocked(now) {
		g.refuseAddress(rs, r, reasonIPBlocked)
		return false
	}
	rs.ipThrottled = s.throttled(now)
	return true
}

// admitRouteAddress applies the route's ip_filter.
func (g *Gateway) admitRouteAddress(rs *reqState, r *http.Request, rt *route) bool {
	if v := ipfilter.Decide(rs.addr, rt.filter); !v.Allowed {
		g.refuseAddress(rs, r, filterReason(v.Reason))
		return false
	}
	return true
}

func filterReason(r string) string {
	switch r {
	case ipfilter.ReasonDenyList:
		return reasonIPDenied
	case ipfilter.ReasonNotInAllowList:
		return reasonIPNotAllowed
	}
	return reasonIPNoAddress
}

// refuseAddress answers 403 for an address the filters or the block list refuse: the same
// body as any other 403, so the client learns nothing of why.
func (g *Gateway) refuseAddress(rs *reqState, r *http.Request, reason string) {
	g.refuse(rs, r, http.StatusForbidden, reason, detailForbidden, nil)
	now := g.opts.Now()
	if g.auditGate.allow("ip|"+reason+"|"+ratelimit.IPKey(rs.addr), now) {
		g.record(rs, r, store.AuditEvent{Type: "ip.blocked", Outcome: audit.Denied, Reason: reason}, now)
	}
}

// limitBefore decides the route's per-ip and per-header limits, and the throttle of a
// throttled address. It reports whether the request may go on.
func (g *Gateway) limitBefore(rs *reqState, r *http.Request, rt *route) bool {
	checks := rs.checks[:0]
	if rt.limits != nil {
		for i := range rt.limits.before {
			l := &rt.limits.before[i]
			checks = append(checks, ratelimit.Check{Limit: l.limit, Key: l.key(rs, r)})
		}
	}
	if rs.ipThrottled {
		checks = append(checks, ratelimit.Check{Limit: rs.st.abuse.throttle, Key: abuse.IPSubject(rs.addr)})
	}
	if len(checks) == 0 {
		return true
	}
	return g.decide(rs, r, checks, false)
}

// limitAfter refuses a blocked client and decides the route's per-client and per-subject
// limits and quotas, and the throttle of a throttled client.
func (g *Gateway) limitAfter(rs *reqState, r *http.Request, rt *route) bool {
	checks := rs.checks[:0]
	if rs.st.abuse.clientStatus && rs.clientID != "" {
		now := g.opts.Now()
		s, ok := g.clientStatus.get(rs.clientID, now)
		if !ok {
			ds, err := g.det.Status(r.Context(), abuse.ClientSubject(rs.clientID), now)
			if err != nil {
				g.log.Debug("client block list unavailable", "request_id", rs.id, "error", err)
			} else {
				s = statusOf(ds)
				g.clientStatus.put(rs.clientID, s, now)
			}
		}
		if s.blocked(now) {
			g.refuse(rs, r, http.StatusForbidden, reasonClientBlocked, detailForbidden, nil)
			if g.auditGate.allow("client|"+rs.clientID, now) {
				g.record(rs, r, store.AuditEvent{Type: "client.blocked", Outcome: audit.Denied, Reason: s.blockReason}, now)
			}
			return false
		}
		if s.throttled(now) {
			checks = append(checks, ratelimit.Check{Limit: rs.st.abuse.throttle, Key: abuse.ClientSubject(rs.clientID)})
		}
	}
	if rt.limits != nil {
		for i := range rt.limits.after {
			l := &rt.limits.after[i]
			checks = append(checks, ratelimit.Check{Limit: l.limit, Key: l.key(rs, r)})
		}
	}
	if len(checks) == 0 {
		return true
	}
	return g.decide(rs, r, checks, true)
}

// decide runs one Allow, sets the RateLimit headers (of every limit decided so far) and
// refuses the request when a check said no or the limiter could not decide.
func (g *Gateway) decide(rs *reqState, r *http.Request, checks []ratelimit.Check, after bool) bool {
	now := g.opts.Now()
	res, err := g.limiter.Allow(r.Context(), checks, now)
	if err != nil {
		if r.Context().Err() != nil {
			rs.status, rs.reason = 499, "client_closed"
			return false
		}
		// A shared backend that is down is logged once by its health tracker; each refusal
		// is counted.
		g.log.Debug("rate limits unavailable", "request_id", rs.id, "route", rs.route.name, "error", err)
		rs.rec.Header()["Retry-After"] = valRetryAfter
		g.refuse(rs, r, http.StatusServiceUnavailable, reasonLimitsUnavailable, "The request cannot be served right now.", nil)
		return false
	}
	g.rlMetrics.Observe(res)
	rs.decided = append(rs.decided, res.Decisions...)
	if res.Allowed {
		if !after && rs.route.limits != nil && len(rs.route.limits.after) > 0 {
			return true // the headers are set once, with the limits after authentication
		}
		setLimitHeaders(rs.rec.Header(), rs.decided, now)
		return true
	}
	setLimitHeaders(rs.rec.Header(), rs.decided, now)
	rs.rec.Header()["Retry-After"] = []string{strconv.FormatInt(ratelimit.RetryAfterSeconds(res.RetryAfter()), 10)}
	g.refuse(rs, r, http.StatusTooManyRequests, reasonRateLimited, "Too many requests: retry after the time Retry-After gives.", nil)
	for i, d := range res.Decisions {
		if d.Allowed {
			continue
		}
		if g.auditGate.allow("rl|"+d.Limit.Name+"|"+ratelimit.StorageKey(checks[i].Key), now) {
			g.record(rs, r, store.AuditEvent{Type: "ratelimit.denied", Outcome: audit.Denied, Reason: d.Limit.Name, Details: map[string]string{
				"policy": d.Limit.String(), "retry_after": strconv.FormatInt(ratelimit.RetryAfterSeconds(d.RetryAfter), 10),
			}}, now)
		}
	}
	return false
}

// authFailed feeds a 401 to the per-address auth-failure detector.
func (g *Gateway) authFailed(rs *reqState, r *http.Request) {
	rule := rs.st.abuse.authFailures
	if rule == nil || !rs.addr.IsValid() {
		return
	}
	now := g.opts.Now()
	v, err := g.det.Observe(context.WithoutCancel(r.Context()), *rule, "", abuse.IPSubject(rs.addr), "", now)
	if err != nil {
		g.log.Debug("abuse detector unavailable", "request_id", rs.id, "error", err)
		return
	}
	if v.Fired {
		g.ipStatus.sanction(addrKey(rs.addr), v, now)
		g.fired(rs, r, v, now)
	}
}

// observeEnumeration feeds an answered request on an enumeration route to the detectors:
// the object id it asked for, and whether it got 404 or 403.
func (g *Gateway) observeEnumeration(rs *reqState, r *http.Request, status int) {
	rt, ab := rs.route, &rs.st.abuse
	ctx := context.WithoutCancel(r.Context())
	subject := abuse.ClientSubject(rs.clientID)
	now := g.opts.Now()
	observe := func(rule *abuse.Rule, member string) {
		v, err := g.det.Observe(ctx, *rule, rt.name, subject, member, now)
		if err != nil {
			g.log.Debug("abuse detector unavailable", "request_id", rs.id, "error", err)
			return
		}
		if v.Fired {
			g.clientStatus.sanction(rs.clientID, v, now)
			g.fired(rs, r, v, now)
		}
	}
	if ab.enumIDs != nil {
		if id := rt.objectID(rs.path); id != "" {
			observe(ab.enumIDs, id)
		}
	}
	if ab.enumErrors != nil && (status == http.StatusNotFound || status == http.StatusForbidden) {
		observe(ab.enumErrors, "")
	}
}

// fired audits (once per subject and window) and logs a rule that reached its threshold.
func (g *Gateway) fired(rs *reqState, r *http.Request, v abuse.Verdict, now time.Time) {
	if !g.auditGate.allow("abuse|"+v.Rule+"|"+v.Subject, now) {
		return
	}
	details := map[string]string{"rule": v.Rule, "action": v.Action.String(), "count": strconv.Itoa(v.Count), "subject": v.Subject}
	if !v.Until.IsZero() {
		details["until"] = v.Until.UTC().Format(time.RFC3339)
	}
	g.log.Warn("abuse rule fired", "request_id", rs.id, "rule", v.Rule, "action", v.Action.String(), "subject", v.Subject, "until", v.Until)
	g.record(rs, r, store.AuditEvent{Type: "abuse.fired", Outcome: audit.Denied, Reason: v.Rule, Details: details}, now)
}

// record writes an audit event about the request (when an audit recorder is configured).
func (g *Gateway) record(rs *reqState, r *http.Request, e store.AuditEvent, now time.Time) {
	if g.opts.Audit == nil {
		return
	}
	e.Time = now
	e.ClientID, e.Subject, e.RequestID, e.RemoteIP = rs.clientID, rs.subject, rs.id, rs.clientIP
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	route := noRoute
	if rs.route != nil {
		route = rs.route.name
	}
	e.Details["route"] = route
	g.opts.Audit.Record(context.WithoutCancel(r.Context()), e)
}

// Canonical names of the limit headers (ratelimit.HeaderPolicy, ratelimit.HeaderRateLimit),
// so setting them needs no canonicalisation.
const (
	hdrPolicy    = "Ratelimit-Policy"
	hdrRateLimit = "Ratelimit"
)

// setLimitHeaders sets RateLimit-Policy and RateLimit for decisions, exactly as
// ratelimit.Result.SetHeaders writes them, in two allocations.
func setLimitHeaders(h http.Header, decisions []ratelimit.Decision, now time.Time) {
	if len(decisions) == 0 {
		return
	}
	buf := make([]byte, 0, 48*len(decisions))
	for i, d := range decisions {
		if i > 0 {
			buf = append(buf, ", "...)
		}
		buf = appendSFString(buf, d.Limit.Name)
		buf = append(buf, ";q="...)
		buf = strconv.AppendInt(buf, int64(d.Limit.Rate), 10)
		buf = append(buf, ";w="...)
		buf = strconv.AppendInt(buf, ratelimit.WindowSeconds(d.Limit, now), 10)
	}
	split := len(buf)
	for i, d := range decisions {
		if i > 0 {
			buf = append(buf, ", "...)
		}
		buf = appendSFString(buf, d.Limit.Name)
		buf = append(buf, ";r="...)
		buf = strconv.AppendInt(buf, int64(d.Remaining), 10)
		buf = append(buf, ";t="...)
		buf = strconv.AppendInt(buf, ceilSeconds(d.ResetAfter), 10)
	}
	s := string(buf)
	vals := make([]string, 2)
	vals[0], vals[1] = s[:split], s[split:]
	h[hdrPolicy] = vals[0:1:1]
	h[hdrRateLimit] = vals[1:2:2]
}

// appendSFString appends s as a structured-field String (RFC 9651 §3.3.3), as ratelimit
// does: quoted, " and \ escaped, bytes outside printable ASCII replaced by '?'.
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c > 0x7e:
			b = append(b, '?')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
