package abuse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/ratelimit"
)

// Action is what a rule does to its subject when it fires.
type Action uint8

// Actions.
const (
	// ActionReport only returns the verdict (for audit and metrics); nothing is stored.
	ActionReport Action = iota
	// ActionThrottle puts the subject on the throttle list for the rule's duration; the caller
	// applies a stricter rate limit to throttled subjects.
	ActionThrottle
	// ActionBlock puts the subject on the block list for the rule's duration; the caller refuses
	// its requests.
	ActionBlock
)

// String returns "report", "throttle" or "block".
func (a Action) String() string {
	switch a {
	case ActionThrottle:
		return "throttle"
	case ActionBlock:
		return "block"
	}
	return "report"
}

// ParseAction parses "report", "throttle" or "block".
func ParseAction(s string) (Action, error) {
	switch s {
	case "report":
		return ActionReport, nil
	case "throttle":
		return ActionThrottle, nil
	case "block":
		return ActionBlock, nil
	}
	return ActionReport, fmt.Errorf("action %q: want report, throttle or block", s)
}

// Rule is a sliding-window threshold: when Threshold events (or distinct members) of one
// subject fall within Window, the rule fires and sanctions the subject for For.
type Rule struct {
	// Name labels metrics, audit events and the sanction's reason: 1-64 of a-z 0-9 _.
	Name      string
	Threshold int
	Window    time.Duration
	Action    Action
	For       time.Duration
}

// Validate reports what is wrong with r, or nil.
func (r Rule) Validate() error {
	var errs []error
	if !validRuleName(r.Name) {
		errs = append(errs, fmt.Errorf("name %q: use 1-64 of a-z 0-9 _", r.Name))
	}
	if err := checkWindow(r.Window, r.Threshold); err != nil {
		errs = append(errs, err)
	}
	switch r.Action {
	case ActionReport:
	case ActionThrottle, ActionBlock:
		if r.For <= 0 || r.For > MaxBlockFor {
			errs = append(errs, fmt.Errorf("for %s: must be between 0 and %s", r.For, MaxBlockFor))
		}
	default:
		errs = append(errs, fmt.Errorf("action %d: unknown", r.Action))
	}
	return errors.Join(errs...)
}

// Suggested rules; configuration overrides every number.
var (
	// AuthFailures: 20 failed authentications (gateway 401s, issuer invalid_client) from one
	// address within a minute block it for 15 minutes.
	AuthFailures = Rule{Name: "auth_failures", Threshold: 20, Window: time.Minute, Action: ActionBlock, For: 15 * time.Minute}
	// EnumerationIDs: 100 distinct object ids on one route within a minute throttle the
	// subject for 10 minutes. A legitimate bulk reader trips it too, so it throttles.
	EnumerationIDs = Rule{Name: "enumeration_ids", Threshold: 100, Window: time.Minute, Action: ActionThrottle, For: 10 * time.Minute}
	// EnumerationErrors: 50 404s or 403s on one route within a minute throttle the subject
	// for 10 minutes.
	EnumerationErrors = Rule{Name: "enumeration_errors", Threshold: 50, Window: time.Minute, Action: ActionThrottle, For: 10 * time.Minute}
)

func validRuleName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func checkWindow(w time.Duration, limit int) error {
	switch {
	case w < time.Millisecond || w > 24*time.Hour:
		return fmt.Errorf("window %s: must be between 1ms and 24h", w)
	case limit < 1 || limit > MaxWindowLimit:
		return fmt.Errorf("threshold %d: must be between 1 and %d", limit, MaxWindowLimit)
	}
	return nil
}

// Verdict is a detector's decision about one observation: the value the caller audits and
// counts.
type Verdict struct {
	Rule    string
	Scope   string // the route (or "" for a rule across routes)
	Subject string
	// Count is how many events (or distinct members) of the subject fell in the window,
	// this one included, capped at the threshold.
	Count int
	// Fired reports that Count reached the threshold with this observation.
	Fired  bool
	Action Action
	// Until is when the sanction ends (when Fired and the action stores one).
	Until time.Time
	// New reports that no sanction of this kind was in force before: audit the first firing,
	// count every one.
	New bool
}

// Status is what is in force against a subject.
type Status struct {
	Blocked   bool
	Block     Block
	Throttled bool
	Throttle  Block
}

// Detector runs rules over a Window and stores their sanctions in a block list and a
// throttle list. It is safe for concurrent use.
type Detector struct {
	windows   Window
	blocks    BlockList
	throttles BlockList
	observed  *prometheus.CounterVec
	fired     *prometheus.CounterVec
}

// DetectorOptions configure NewDetector. Windows, Blocks and Throttles are required (two
// separate lists: the same store type under two names).
type DetectorOptions struct {
	Windows   Window
	Blocks    BlockList
	Throttles BlockList
	// Registerer receives portcullis_abuse_observations_total{rule} and
	// portcullis_abuse_fired_total{rule,action}; nil registers nothing.
	Registerer prometheus.Registerer
}

// NewDetector returns a detector.
func NewDetector(o DetectorOptions) (*Detector, error) {
	if o.Windows == nil || o.Blocks == nil || o.Throttles == nil {
		return nil, errors.New("abuse: a detector needs windows, a block list and a throttle list")
	}
	d := &Detector{
		windows: o.Windows, blocks: o.Blocks, throttles: o.Throttles,
		observed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_abuse_observations_total", Help: "Events fed to the abuse detectors, by rule.",
		}, []string{"rule"}),
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_abuse_fired_total", Help: "Observations that reached a rule's threshold, by rule and action.",
		}, []string{"rule", "action"}),
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{d.observed, d.fired} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("abuse: register metrics: %w", err)
			}
		}
	}
	return d, nil
}

// Observe counts one event of subject under rule r, within scope (a route name, or "" for
// a rule across routes). member is "" to count events (authentication failures, 404s), or
// the object id to count distinct ids. When the count reaches the threshold, the sanction is
// stored before Observe returns.
func (d *Detector) Observe(ctx context.Context, r Rule, scope, subject, member string, now time.Time) (Verdict, error) {
	if err := r.Validate(); err != nil {
		return Verdict{}, fmt.Errorf("abuse: rule: %w", err)
	}
	if subject == "" || len(subject) > MaxSubjectLen {
		return Verdict{}, fmt.Errorf("abuse: subject of %d bytes: want 1 to %d", len(subject), MaxSubjectLen)
	}
	key := r.Name + "|" + ratelimit.StorageKey(scope) + "|" + subject
	n, err := d.windows.Add(ctx, key, member, r.Window, r.Threshold, now)
	if err != nil {
		return Verdict{}, fmt.Errorf("abuse: %s: %w", r.Name, err)
	}
	d.observed.WithLabelValues(r.Name).Inc()
	v := Verdict{Rule: r.Name, Scope: scope, Subject: subject, Count: n, Action: r.Action}
	if n < r.Threshold {
		return v, nil
	}
	v.Fired = true
	d.fired.WithLabelValues(r.Name, r.Action.String()).Inc()
	var list BlockList
	switch r.Action {
	case ActionBlock:
		list = d.blocks
	case ActionThrottle:
		list = d.throttles
	default:
		return v, nil
	}
	v.Until = now.Add(r.For)
	v.New, err = list.Block(ctx, subject, v.Until, r.Name, now)
	if err != nil {
		return v, fmt.Errorf("abuse: %s: store the %s: %w", r.Name, r.Action, err)
	}
	return v, nil
}

// Status returns the block and throttle in force against subject at now.
func (d *Detector) Status(ctx context.Context, subject string, now time.Time) (Status, error) {
	var st Status
	var err error
	if st.Block, st.Blocked, err = d.blocks.Blocked(ctx, subject, now); err != nil {
		return Status{}, fmt.Errorf("abuse: block list: %w", err)
	}
	if st.Throttle, st.Throttled, err = d.throttles.Blocked(ctx, subject, now); err != nil {
		return Status{}, fmt.Errorf("abuse: throttle list: %w", err)
	}
	return st, nil
}

// Blocks returns the detector's block list (for operators' blocks and unblocks).
func (d *Detector) Blocks() BlockList { return d.blocks }

// Throttles returns the detector's throttle list.
func (d *Detector) Throttles() BlockList { return d.throttles }
