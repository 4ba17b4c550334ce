package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// RateLimit is one limit of a route: a rate (requests per window, with a burst) or a calendar
// quota (requests per UTC day or month), counted per client, token subject, client address
// or header value.
type RateLimit struct {
	// Name identifies the limit in the RateLimit headers, metrics and storage; default
	// ROUTE.PER (ROUTE.PER.day for a quota). Routes that name the same limit share its
	// budget (their definitions must then be the same).
	Name string `yaml:"name"`
	// Per is what the limit counts by: client (the token's client_id, or the certificate
	// subject on mtls routes), subject (the token's sub), ip (the client address, an IPv6
	// client by its /64; see gateway.trusted_proxies) or header:NAME (the header's value;
	// requests without it share one count).
	Per string `yaml:"per"`
	// Rate is N/s, N/m, N/h or N/d, or N per a multiple of a unit (20/10s).
	Rate string `yaml:"rate"`
	// Burst is how many requests may pass at once (default: the rate per second, at least 1).
	Burst int `yaml:"burst"`
	// Quota is N/day or N/month (UTC calendar periods), instead of Rate.
	Quota string `yaml:"quota"`
}

// RateLimits is a route's rate_limit: one limit, or a list of them. They are decided together:
// a request passes only when every one allows it, and only then counts against each.
type RateLimits []RateLimit

// UnmarshalYAML accepts a single mapping or a list of mappings.
func (l *RateLimits) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		var one RateLimit
		if err := n.Decode(&one); err != nil {
			return err
		}
		*l = RateLimits{one}
		return nil
	case yaml.SequenceNode:
		var many []RateLimit
		if err := n.Decode(&many); err != nil {
			return err
		}
		*l = many
		return nil
	}
	return fmt.Errorf("line %d: rate_limit must be a mapping or a list of mappings", n.Line)
}

func (RateLimits) oneOrList() {}

// oneOrList marks a slice type whose YAML may also be a single element.
type oneOrList interface{ oneOrList() }

// Kinds of RateLimit.Per.
const (
	PerClient  = "client"
	PerSubject = "subject"
	PerIP      = "ip"
	// PerHeaderPrefix starts "header:NAME".
	PerHeaderPrefix = "header:"
)

// PerKind is the kind of Per: client, subject, ip or header ("" when unknown).
func (l RateLimit) PerKind() string {
	switch {
	case l.Per == PerClient, l.Per == PerSubject, l.Per == PerIP:
		return l.Per
	case strings.HasPrefix(l.Per, PerHeaderPrefix):
		return "header"
	}
	return ""
}

// Header is the header name of a header:NAME limit ("" otherwise).
func (l RateLimit) Header() string {
	name, _ := strings.CutPrefix(l.Per, PerHeaderPrefix)
	if name == l.Per {
		return ""
	}
	return name
}

// EffectiveName is the limit's name on the route: Name, or ROUTE.PER for a rate and
// ROUTE.PER.day / ROUTE.PER.month for a quota.
func (l RateLimit) EffectiveName(route string) string {
	if l.Name != "" {
		return l.Name
	}
	n := route + "." + l.PerKind()
	if _, p, err := ParseQuota(l.Quota); err == nil && l.Quota != "" {
		n += "." + p
	}
	return n
}

// EffectiveBurst is Burst, or the default: the rate per second rounded up, at least 1.
func (l RateLimit) EffectiveBurst() int {
	if l.Burst != 0 {
		return l.Burst
	}
	n, per, err := ParseRate(l.Rate)
	if err != nil {
		return 1
	}
	return DefaultBurst(n, per)
}

// DefaultBurst is the burst of a rate limit that names none: the rate per second, rounded up,
// at least 1 (internal/ratelimit uses it too).
func DefaultBurst(rate int, per time.Duration) int {
	if rate <= 0 || per <= 0 {
		return 1
	}
	secs := int64(per / time.Second)
	if secs <= 0 {
		return rate
	}
	return int(max((int64(rate)+secs-1)/secs, 1))
}

// Bounds on a limit, the same as the limiter's (internal/ratelimit): windows of whole seconds
// up to 31 days, at most one request per microsecond, counts up to 10^9, and a burst that
// refills within a year.
const (
	maxLimitCount  = 1_000_000_000
	maxLimitWindow = 31 * 24 * time.Hour
	maxLimitRefill = 366 * 24 * time.Hour
	// MaxRouteLimits bounds the limits of one route.
	MaxRouteLimits = 8
)

var limitUnits = []struct {
	name string
	d    time.Duration
}{{"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}}

// ParseRate parses a rate: "N/UNIT" or "N/KUNIT", N requests per K units of s, m, h or d
// ("100/s", "6000/m", "20/10s"). It accepts exactly what internal/ratelimit.ParseRate
// accepts (a test holds them together).
func ParseRate(s string) (int, time.Duration, error) {
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q: want N/s, N/m, N/h or N/d", s)
	}
	n, err := parseLimitCount(num)
	if err != nil {
		return 0, 0, fmt.Errorf("rate %q: %w", s, err)
	}
	k := 1
	if i := strings.IndexFunc(unit, func(r rune) bool { return r < '0' || r > '9' }); i > 0 {
		if k, err = parseLimitCount(unit[:i]); err != nil {
			return 0, 0, fmt.Errorf("rate %q: window %w", s, err)
		}
		unit = unit[i:]
	}
	for _, u := range limitUnits {
		if unit != u.name {
			continue
		}
		if k > int(maxLimitWindow/u.d) {
			return 0, 0, fmt.Errorf("rate %q: window longer than %s", s, maxLimitWindow)
		}
		per := time.Duration(k) * u.d
		if per/time.Duration(n) < time.Microsecond {
			return 0, 0, fmt.Errorf("rate %q: at most one request per microsecond", s)
		}
		return n, per, nil
	}
	return 0, 0, fmt.Errorf("rate %q: unit must be s, m, h or d", s)
}

// ParseQuota parses "N/day" or "N/month" and returns N and the period ("day" or "month").
func ParseQuota(s string) (int, string, error) {
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return 0, "", fmt.Errorf("quota %q: want N/day or N/month", s)
	}
	n, err := parseLimitCount(num)
	if err != nil {
		return 0, "", fmt.Errorf("quota %q: %w", s, err)
	}
	if unit != "day" && unit != "month" {
		return 0, "", fmt.Errorf("quota %q: period must be day or month", s)
	}
	return n, unit, nil
}

// parseLimitCount parses 1..10^9 in plain decimal digits (no sign, no leading zero).
func parseLimitCount(s string) (int, error) {
	bad := fmt.Errorf("%q is not a count between 1 and %d", s, maxLimitCount)
	if s == "" || len(s) > 10 || s[0] == '0' {
		return 0, bad
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, bad
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimitCount {
		return 0, bad
	}
	return n, nil
}

// ReservedLimitPrefix begins the names of the limits Portcullis sets itself (the issuer's
// sign-in throttles). They count on the same limiter backends as the gateway's limits, so no
// configured limit may take such a name and share their counters.
const ReservedLimitPrefix = "portcullis."

// validLimitName reports whether s can name a limit: 1-64 of A-Z a-z 0-9 . _ -.
func validLimitName(s string) bool {
	if s == "" || len(s) > 64 {
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

// limitHeadersForbidden carry credentials: keying a limit by them would store them (hashed
// or not) as limiter keys. Use per: client or per: subject.
var limitHeadersForbidden = []string{"authorization", "proxy-authorization", "cookie"}

// IPFilter is an allow list and a deny list of client addresses: CIDRs or single addresses,
// IPv4 or IPv6. Deny wins; a non-empty allow list refuses every address outside it.
type IPFilter struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// Empty reports whether f filters nothing.
func (f IPFilter) Empty() bool { return len(f.Allow) == 0 && len(f.Deny) == 0 }

// maxIPFilterEntries bounds one list (internal/abuse/ipfilter's bound).
const maxIPFilterEntries = 100_000

// CheckIPFilterEntry reports why s is not a list entry, or nil.
func CheckIPFilterEntry(s string) error {
	_, err := ParseIPFilterEntry(s)
	return err
}

// ParseIPFilterEntry parses one allow or deny list entry: a CIDR without host bits set, or a
// single address (a prefix of its full length), without zone or spaces. internal/abuse/ipfilter
// builds its lists with it.
func ParseIPFilterEntry(s string) (netip.Prefix, error) {
	if s == "" || strings.TrimSpace(s) != s {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q: host bits are set (did you mean %s?)", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func validateIPFilter(ps *Problems, p string, f IPFilter) {
	for _, l := range []struct {
		name    string
		entries []string
	}{{"allow", f.Allow}, {"deny", f.Deny}} {
		if len(l.entries) > maxIPFilterEntries {
			ps.add(p+"."+l.name, "%d entries: at most %d", len(l.entries), maxIPFilterEntries)
			continue
		}
		for i, e := range l.entries {
			if err := CheckIPFilterEntry(e); err != nil {
				ps.add(fmt.Sprintf("%s.%s[%d]", p, l.name, i), "%v", err)
			}
		}
	}
}

// AbuseRule is a sliding-window threshold: when Threshold events of one subject fall within
// Window, the rule fires and applies Action to the subject for For.
type AbuseRule struct {
	Threshold int           `yaml:"threshold"`
	Window    time.Duration `yaml:"window"`
	// Action is block (refuse the subject), throttle (an extra strict rate limit,
	// gateway.abuse.throttle_rate), report (audit and count only) or off (not counted).
	Action string        `yaml:"action"`
	For    time.Duration `yaml:"for"`
}

// Off reports whether the rule is turned off.
func (r AbuseRule) Off() bool { return r.Action == "off" }

// GatewayAbuse configures the gateway's abuse detectors.
type GatewayAbuse struct {
	// AuthFailures counts the gateway's 401s per client address (default 20 in 1m → block
	// for 15m).
	AuthFailures AbuseRule `yaml:"auth_failures"`
	// EnumerationIDs counts distinct object ids per client on one route, on routes with
	// enumeration (default 100 in 1m → throttle for 10m).
	EnumerationIDs AbuseRule `yaml:"enumeration_ids"`
	// EnumerationErrors counts 404s and 403s per client on one route, on routes with
	// enumeration (default 50 in 1m → throttle for 10m).
	EnumerationErrors AbuseRule `yaml:"enumeration_errors"`
	// ThrottleRate is the extra limit on a throttled client or address (default 1/s).
	ThrottleRate string `yaml:"throttle_rate"`
}

// IssuerAbuse configures the issuer's abuse detectors.
type IssuerAbuse struct {
	// AuthFailures counts invalid_client answers per client address at /token, /introspect,
	// /revoke and /par (default 20 in 1m → block for 15m: 429 at those endpoints).
	AuthFailures AbuseRule `yaml:"auth_failures"`
}

// Enumeration turns on the enumeration detectors for a route. Both count per client: the
// 404s and 403s it gets, and (with IDParam or IDAfterPrefix) the distinct object ids it asks
// for.
type Enumeration struct {
	// IDParam names the parameter of the route's match.path that holds the object id.
	IDParam string `yaml:"id_param"`
	// IDAfterPrefix takes the object id from the path segment right after match.path_prefix.
	IDAfterPrefix bool `yaml:"id_after_prefix"`
}

// Default abuse rules (the suggestions of internal/abuse).
var (
	DefaultAuthFailures      = AbuseRule{Threshold: 20, Window: time.Minute, Action: "block", For: 15 * time.Minute}
	DefaultEnumerationIDs    = AbuseRule{Threshold: 100, Window: time.Minute, Action: "throttle", For: 10 * time.Minute}
	DefaultEnumerationErrors = AbuseRule{Threshold: 50, Window: time.Minute, Action: "throttle", For: 10 * time.Minute}
)

// DefaultThrottleRate is gateway.abuse.throttle_rate's default.
const DefaultThrottleRate = "1/s"

// defaultRule fills the fields of r the file does not set.
func (c *Config) defaultRule(path string, r *AbuseRule, def AbuseRule) {
	if r.Threshold == 0 && !c.inFile(path+".threshold") {
		r.Threshold = def.Threshold
	}
	if r.Window == 0 && !c.inFile(path+".window") {
		r.Window = def.Window
	}
	if r.Action == "" {
		r.Action = def.Action
	}
	if r.For == 0 && !c.inFile(path+".for") {
		r.For = def.For
	}
}

// validateRule checks an abuse rule; actions lists what the surface can do.
func validateRule(ps *Problems, p string, r AbuseRule, actions ...string) {
	if !containsString(actions, r.Action) {
		ps.add(p+".action", "must be one of %s", strings.Join(actions, ", "))
		return
	}
	if r.Off() {
		return
	}
	if r.Threshold < 1 || r.Threshold > 10000 {
		ps.add(p+".threshold", "must be between 1 and 10000")
	}
	if r.Window < time.Second || r.Window > 24*time.Hour {
		ps.add(p+".window", "must be between 1s and 24h")
	}
	if (r.Action == "block" || r.Action == "throttle") && (r.For < time.Second || r.For > 366*24*time.Hour) {
		ps.add(p+".for", "must be between 1s and 8784h (how long the %s lasts)", r.Action)
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// defaultsLimits fills the gateway's abuse section.
func (g *Gateway) defaultsLimits(c *Config) {
	a := &g.Abuse
	c.defaultRule("gateway.abuse.auth_failures", &a.AuthFailures, DefaultAuthFailures)
	c.defaultRule("gateway.abuse.enumeration_ids", &a.EnumerationIDs, DefaultEnumerationIDs)
	c.defaultRule("gateway.abuse.enumeration_errors", &a.EnumerationErrors, DefaultEnumerationErrors)
	if a.ThrottleRate == "" {
		a.ThrottleRate = DefaultThrottleRate
	}
}

// validateLimits checks ip_filter, abuse and every route's rate_limit, ip_filter and
// enumeration.
func (g *Gateway) validateLimitsAndFilters(c *Config, ps *Problems) {
	validateIPFilter(ps, "gateway.ip_filter", g.IPFilter)
	a := g.Abuse
	validateRule(ps, "gateway.abuse.auth_failures", a.AuthFailures, "block", "throttle", "report", "off")
	validateRule(ps, "gateway.abuse.enumeration_ids", a.EnumerationIDs, "block", "throttle", "report", "off")
	validateRule(ps, "gateway.abuse.enumeration_errors", a.EnumerationErrors, "block", "throttle", "report", "off")
	if n, per, err := ParseRate(a.ThrottleRate); err != nil {
		ps.add("gateway.abuse.throttle_rate", "%v", err)
	} else if per/time.Duration(n) < time.Millisecond {
		ps.add("gateway.abuse.throttle_rate", "a throttle is meant to be strict: at most 1000/s")
	}

	type named struct {
		route int
		l     RateLimit
	}
	byName := map[string]named{}
	for i := range g.Routes {
		r := &g.Routes[i]
		p := fmt.Sprintf("gateway.routes[%d]", i)
		validateIPFilter(ps, p+".ip_filter", r.IPFilter)
		if e := r.Enumeration; e != nil {
			ep := p + ".enumeration"
			switch {
			case e.IDParam != "" && e.IDAfterPrefix:
				ps.add(ep, "give id_param or id_after_prefix, not both")
			case e.IDParam != "" && (r.Match.Path == "" || !strings.Contains(r.Match.Path, "{"+e.IDParam+"}") && !strings.Contains(r.Match.Path, "{"+e.IDParam+"...}")):
				ps.add(ep+".id_param", "%q is not a parameter of match.path", e.IDParam)
			case e.IDAfterPrefix && r.Match.PathPrefix == "":
				ps.add(ep+".id_after_prefix", "needs match.path_prefix")
			}
			if r.Auth.Method == "public" {
				ps.add(ep, "enumeration counts per client: the route must authenticate (not public)")
			}
		}
		if len(r.RateLimit) > MaxRouteLimits {
			ps.add(p+".rate_limit", "%d limits: at most %d per route", len(r.RateLimit), MaxRouteLimits)
			continue
		}
		names := map[string]bool{}
		for j, l := range r.RateLimit {
			lp := fmt.Sprintf("%s.rate_limit[%d]", p, j)
			if !c.validateRateLimit(ps, lp, r, l) {
				continue
			}
			name := l.EffectiveName(r.Name)
			switch {
			case !validLimitName(name) && l.Name == "":
				ps.add(lp+".name", "the default name %q is not 1-64 of A-Z a-z 0-9 . _ -: name the limit", name)
				continue
			case strings.HasPrefix(name, ReservedLimitPrefix):
				ps.add(lp+".name", "%q: names starting with %q belong to Portcullis's own limits (sign-in throttles): rename the limit or the route", name, ReservedLimitPrefix)
				continue
			case names[name] && l.Name == "":
				ps.add(lp+".name", "two limits of the route would be called %q: name them", name)
				continue
			case names[name]:
				ps.add(lp+".name", "duplicate limit name %q on the route", name)
				continue
			}
			names[name] = true
			if o, ok := byName[name]; ok && o.route != i {
				ol := o.l
				if ol.PerKind() != l.PerKind() || ol.Header() != l.Header() || ol.Rate != l.Rate || ol.Quota != l.Quota || (l.Rate != "" && ol.EffectiveBurst() != l.EffectiveBurst()) {
					ps.add(lp+".name", "limit %q is also defined by route %q, differently: routes sharing a limit must define it the same way", name, g.Routes[o.route].Name)
				}
				continue
			}
			byName[name] = named{route: i, l: l}
		}
	}
}

// validateRateLimit checks one limit and reports whether it is sound enough to compare.
func (c *Config) validateRateLimit(ps *Problems, p string, r *Route, l RateLimit) bool {
	ok := true
	if l.Name != "" && !validLimitName(l.Name) {
		ps.add(p+".name", "%q: use 1-64 of A-Z a-z 0-9 . _ -", l.Name)
		ok = false
	}
	switch l.PerKind() {
	case "":
		if l.Per == "" {
			ps.add(p+".per", "required: client, subject, ip or header:NAME")
		} else {
			ps.add(p+".per", "unknown %q: want client, subject, ip or header:NAME", l.Per)
		}
		ok = false
	case PerClient, PerSubject:
		if r.Auth.Method == "public" {
			ps.add(p+".per", "a public route has no %s: count per ip or per header", l.Per)
			ok = false
		}
	case "header":
		h := l.Header()
		switch {
		case !validToken(h):
			ps.add(p+".per", "%q is not a header name", h)
			ok = false
		case containsString(limitHeadersForbidden, strings.ToLower(h)):
			ps.add(p+".per", "%s carries credentials: count per client or per subject instead", h)
			ok = false
		}
	}
	switch {
	case l.Rate == "" && l.Quota == "":
		ps.add(p, "give rate (like 100/s) or quota (like 10000/day)")
		return false
	case l.Rate != "" && l.Quota != "":
		ps.add(p, "give rate or quota, not both")
		return false
	case l.Quota != "":
		if _, _, err := ParseQuota(l.Quota); err != nil {
			ps.add(p+".quota", "%v", err)
			ok = false
		}
		if l.Burst != 0 || c.inFile(p+".burst") {
			ps.add(p+".burst", "a quota has no burst")
			ok = false
		}
		return ok
	}
	n, per, err := ParseRate(l.Rate)
	if err != nil {
		ps.add(p+".rate", "%v", err)
		return false
	}
	switch {
	case l.Burst < 0 || (l.Burst == 0 && c.inFile(p+".burst")):
		ps.add(p+".burst", "must be at least 1 (leave it out for the default: the rate per second)")
		ok = false
	case l.Burst > maxLimitCount:
		ps.add(p+".burst", "must be at most %d", maxLimitCount)
		ok = false
	default:
		iv := max(per/time.Duration(n)/time.Microsecond, 1) * time.Microsecond
		if time.Duration(l.EffectiveBurst()) > maxLimitRefill/iv {
			ps.add(p+".burst", "%d refills over more than a year at %s", l.EffectiveBurst(), l.Rate)
			ok = false
		}
	}
	return ok
}

// validateCacheFail checks cache.fail.
func (c *Config) validateCacheFail(ps *Problems) {
	switch c.Cache.Fail {
	case "closed", "local":
	default:
		ps.add("cache.fail", "must be closed (refuse with 503 while Redis is unreachable) or local (limit per process meanwhile)")
	}
}

// limitWarnings lists what loads but weakens the limits.
func (c *Config) limitWarnings(ws *Problems) {
	if c.Cache.Driver == "redis" && c.Cache.Fail == "local" && c.Gateway != nil && c.Gateway.hasLimits() {
		ws.add("cache.fail", "local: while Redis is unreachable each replica limits on its own, so N replicas admit up to N times every limit")
	}
	if g := c.Gateway; g != nil {
		if g.Abuse.AuthFailures.Off() {
			ws.add("gateway.abuse.auth_failures.action", "off: nothing slows down guessing of bearer tokens from one address")
		}
		for i, r := range g.Routes {
			byIP := false
			for _, l := range r.RateLimit {
				byIP = byIP || l.Per == PerIP
			}
			for j, l := range r.RateLimit {
				if l.PerKind() == "header" && !byIP {
					ws.add(fmt.Sprintf("gateway.routes[%d].rate_limit[%d].per", i, j), "route %q counts per %s, which a client chooses freely (a new value per request escapes the limit): add a per: ip limit", r.Name, l.Per)
				}
			}
		}
	}
	if is := c.Issuer; is != nil && is.Abuse.AuthFailures.Off() {
		ws.add("issuer.abuse.auth_failures.action", "off: nothing slows down guessing of client secrets from one address")
	}
}

// hasLimits reports whether some route has a rate_limit.
func (g *Gateway) hasLimits() bool {
	for _, r := range g.Routes {
		if len(r.RateLimit) > 0 {
			return true
		}
	}
	return false
}
