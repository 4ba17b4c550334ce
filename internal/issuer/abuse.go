package issuer

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/web"
)

// Client-authentication failures by address (issuer.abuse.auth_failures): every
// invalid_client answer at /token, /introspect, /revoke and /par counts against the client's
// address (issuer.login.trusted_proxies say which address that is); when the rule blocks
// it, those four endpoints answer 429 with Retry-After until the block ends. The count is
// by address, never by the client id a request claims, so nobody can lock a client out by
// failing on its behalf. The block is the issuer's own list (the gateway keeps another).

// ruleAuthFailures names the rule in metrics, audit events and the block list.
const ruleAuthFailures = "issuer_auth_failures"

// abuseRule compiles issuer.abuse.auth_failures (nil: off).
func abuseRule(c config.AbuseRule) (*abuse.Rule, error) {
	if c.Action == "" {
		c = config.DefaultAuthFailures
	}
	if c.Off() {
		return nil, nil
	}
	a, err := abuse.ParseAction(c.Action)
	if err != nil {
		return nil, err
	}
	r := abuse.Rule{Name: ruleAuthFailures, Threshold: c.Threshold, Window: c.Window, Action: a, For: c.For}
	return &r, r.Validate()
}

// guardAbuse refuses an address the rule blocked, before anything else of the request is
// read. It marks the request's context so that the request's argon2id check, if any, is
// counted before it is computed (beforeArgon2id).
func (s *Server) guardAbuse(next http.Handler) http.Handler {
	if s.o.Abuse == nil || s.abuseRule == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := s.clientIP(r)
		if !ip.IsValid() {
			next.ServeHTTP(w, r)
			return
		}
		now := s.o.Now()
		b, blocked, err := s.o.Abuse.Blocks().Blocked(r.Context(), abuse.IPSubject(ip), now)
		if err != nil {
			// The block list falls back locally rather than failing; an error here is a
			// cancelled request or a bug: let the request be judged on its credentials.
			s.log.Debug("block list unavailable", "request_id", web.RequestID(r.Context()), "err", err)
		}
		if !blocked {
			a := &attempt{}
			r = r.WithContext(context.WithValue(r.Context(), attemptKey{}, a))
			a.r = r
			next.ServeHTTP(w, r)
			return
		}
		s.metrics.blocked.WithLabelValues(r.URL.Path).Inc()
		web.RequestInfo(r.Context()).Reason = "address blocked: " + b.Reason
		w.Header().Set("Retry-After", strconv.FormatInt(ratelimit.RetryAfterSeconds(b.Until.Sub(now)), 10))
		oauth.WriteError(w, errBlocked)
	})
}

// errBlocked is the answer to a blocked address.
var errBlocked = &oauth.Error{Code: oauth.CodeTemporarilyUnavailable, Status: http.StatusTooManyRequests, Description: "too many failed attempts from this address; retry later"}

// attempt is one request to a guarded endpoint, carried in its context so the
// authenticator's argon2id hook can count it against the request's address.
type attempt struct {
	r       *http.Request
	counted bool // the rule already counted this request: a failure is not counted again
}

type attemptKey struct{}

// beforeArgon2id counts a request against its address before its client secret is
// checked with argon2id, so that a flood of guesses is blocked after the rule's threshold
// of attempts instead of every request in flight costing a slow hash first. A success
// counts too (once per secret_cache.ttl, since successes are then remembered); a failure
// that follows is not counted a second time. Once the rule blocks, the check is refused.
func (s *Server) beforeArgon2id(ctx context.Context) error {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	if a == nil || a.counted {
		return nil
	}
	a.counted = true
	v, ok := s.observeAuthFailure(a.r)
	if ok && v.Fired && v.Action == abuse.ActionBlock {
		return errBlocked
	}
	return nil
}

// authFailed counts an invalid_client answer against the request's address, unless the
// request was counted before its argon2id check.
func (s *Server) authFailed(r *http.Request, oe *oauth.Error) {
	if s.o.Abuse == nil || s.abuseRule == nil || oe.Code != oauth.CodeInvalidClient {
		return
	}
	if a, _ := r.Context().Value(attemptKey{}).(*attempt); a != nil && a.counted {
		return
	}
	s.observeAuthFailure(r)
}

// observeAuthFailure counts one against the request's address and audits a sanction it
// imposes; ok is false when nothing could be counted.
func (s *Server) observeAuthFailure(r *http.Request) (abuse.Verdict, bool) {
	ip := s.clientIP(r)
	if s.o.Abuse == nil || s.abuseRule == nil || !ip.IsValid() {
		return abuse.Verdict{}, false
	}
	now := s.o.Now()
	subject := abuse.IPSubject(ip)
	v, err := s.o.Abuse.Observe(context.WithoutCancel(r.Context()), *s.abuseRule, "", subject, "", now)
	if err != nil {
		s.log.Debug("abuse detector unavailable", "request_id", web.RequestID(r.Context()), "err", err)
		return abuse.Verdict{}, false
	}
	// A block is audited when it is imposed; a report-only rule fires at every failure past
	// its threshold and is audited once per window.
	if !v.Fired || !(v.New || v.Action == abuse.ActionReport && s.reported.first(subject, now, s.abuseRule.Window)) {
		return v, true
	}
	details := map[string]string{"rule": v.Rule, "action": v.Action.String(), "count": strconv.Itoa(v.Count), "subject": subject, "endpoint": r.URL.Path}
	if !v.Until.IsZero() {
		details["until"] = v.Until.UTC().Format(time.RFC3339)
	}
	s.log.Warn("abuse rule fired", "request_id", web.RequestID(r.Context()), "rule", v.Rule, "action", v.Action.String(), "subject", subject, "until", v.Until)
	s.recordAudit(r, store.AuditEvent{Type: "abuse.fired", Outcome: audit.Denied, Reason: v.Rule, Details: details})
	return v, true
}

// onceGate remembers keys for a while, to record something about each once per window.
type onceGate struct {
	mu   sync.Mutex
	next map[string]time.Time
}

// first reports whether key was not seen within the last window.
func (g *onceGate) first(key string, now time.Time, window time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.next == nil || len(g.next) >= 10000 {
		g.next = map[string]time.Time{}
	}
	if t, ok := g.next[key]; ok && now.Before(t) {
		return false
	}
	g.next[key] = now.Add(window)
	return true
}
