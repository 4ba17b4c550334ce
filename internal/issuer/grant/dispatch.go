package grant

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/web"
	"github.com/prometheus/client_golang/prometheus"
)

// Grant is one grant_type. It runs only after the dispatcher authenticated the client,
// checked that the client registered this grant type, and checked the requested scopes.
type Grant interface {
	Type() string
	Handle(ctx context.Context, req *Request) (*Response, error)
}

// Request is a token request that passed the dispatcher's checks.
type Request struct {
	Client store.Client
	Form   oauth.Form
	// Scopes are the requested scopes, each known and registered for the client; nil when
	// the request named none (the grant picks its default).
	Scopes []string
	// Audience is the resolved audience of the tokens to issue.
	Audience []string
	HTTP     *http.Request
	Now      time.Time
}

// Response is the RFC 6749 §5.1 success body.
type Response struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	RefreshToken    string `json:"refresh_token,omitempty"`
	Scope           string `json:"scope,omitempty"`
	IDToken         string `json:"id_token,omitempty"`

	// Subject is for the audit trail only (not serialised).
	Subject string `json:"-"`
}

// Dispatcher is the token endpoint: it parses the form, authenticates the client, applies
// the scope and audience policy and hands the request to the grant.
type Dispatcher struct {
	Auth            *Authenticator
	Grants          []Grant
	Scopes          map[string]config.Scope
	DefaultAudience []string
	MaxBodyBytes    int64
	Audit           *audit.Recorder
	Logger          *slog.Logger
	Now             func() time.Time
	Issued          *prometheus.CounterVec // by grant_type and outcome; optional
	// OnAuthFailure, if set, is told of every failed client authentication (after it is
	// audited): the issuer's abuse detection counts them per address.
	OnAuthFailure func(r *http.Request, err *oauth.Error)
}

// builtinScopes are known without configuration (OpenID Connect).
var builtinScopes = []string{"openid", "profile", "email", "offline_access"}

// ServeHTTP handles POST /token.
func (d *Dispatcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	resp, gt, cl, err := d.serve(r, w)
	info := web.RequestInfo(r.Context())
	info.ClientID = cl.ID
	if err != nil {
		oe := oauth.AsError(err)
		info.Reason = oe.Error()
		d.count(gt, oe.Code)
		d.Logger.LogAttrs(r.Context(), levelFor(oe), "token request refused",
			slog.String("request_id", web.RequestID(r.Context())), slog.String("grant_type", gt),
			slog.String("client_id", cl.ID), slog.String("error", oe.Code), slog.String("cause", causeOf(oe)))
		if oe.Code != oauth.CodeInvalidClient { // client auth failures are audited where they happen
			d.audit(r, store.AuditEvent{Type: "token.refused", Outcome: audit.Denied, ClientID: cl.ID, Reason: oe.Code + ": " + causeOf(oe), Details: map[string]string{"grant_type": gt}})
		}
		oauth.WriteError(w, oe)
		return
	}
	d.count(gt, "ok")
	info.Subject = resp.Subject
	d.audit(r, store.AuditEvent{Type: "token.issued", Outcome: audit.Success, ClientID: cl.ID, Subject: resp.Subject, Details: map[string]string{"grant_type": gt, "scope": resp.Scope}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	_ = json.NewEncoder(w).Encode(resp)
}

func (d *Dispatcher) serve(r *http.Request, w http.ResponseWriter) (*Response, string, store.Client, error) {
	f, err := oauth.ParseForm(w, r, d.MaxBodyBytes)
	if err != nil {
		return nil, "", store.Client{}, err
	}
	gt := f.Get("grant_type")
	creds, err := oauth.ParseClientCredentials(r, f)
	if err != nil {
		d.authFailed(r, creds.ClientID, err)
		return nil, gt, store.Client{ID: creds.ClientID}, err
	}
	cl, err := d.Auth.Authenticate(r.Context(), creds)
	if err != nil {
		d.authFailed(r, creds.ClientID, err)
		return nil, gt, store.Client{ID: creds.ClientID}, err
	}
	if gt == "" {
		return nil, gt, cl, oauth.InvalidRequest("grant_type is required")
	}
	g := d.grant(gt)
	if g == nil {
		return nil, safeGrant(gt), cl, oauth.UnsupportedGrantType()
	}
	if !allowsGrant(cl, gt) {
		return nil, gt, cl, oauth.UnauthorizedClient("the client is not registered for this grant_type")
	}
	scopes, err := d.requestedScopes(cl, f.Get("scope"))
	if err != nil {
		return nil, gt, cl, err
	}
	aud, err := d.audience(cl, f.Get("resource"), f.Get("audience"))
	if err != nil {
		return nil, gt, cl, err
	}
	resp, err := g.Handle(r.Context(), &Request{Client: cl, Form: f, Scopes: scopes, Audience: aud, HTTP: r, Now: d.Now()})
	return resp, gt, cl, err
}

func (d *Dispatcher) grant(gt string) Grant {
	for _, g := range d.Grants {
		if g.Type() == gt {
			return g
		}
	}
	return nil
}

// requestedScopes parses the scope parameter: every scope must be well-formed, known, and
// registered for the client; otherwise invalid_scope names nothing the client did not send.
func (d *Dispatcher) requestedScopes(cl store.Client, param string) ([]string, error) {
	if param == "" {
		return nil, nil
	}
	var out []string
	for _, s := range strings.Split(param, " ") {
		if s == "" {
			return nil, oauth.InvalidScope("malformed scope parameter")
		}
		if !config.ValidScope(s) {
			return nil, oauth.InvalidScope("malformed scope")
		}
		_, known := d.Scopes[s]
		if !known && !slices.Contains(builtinScopes, s) {
			return nil, oauth.InvalidScope("unknown scope")
		}
		if !slices.Contains(cl.Scopes, s) {
			return nil, oauth.InvalidScope("scope not allowed for this client")
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// audience resolves RFC 8707 resource (or the audience parameter): it must be one of the
// client's audiences. Absent, the client's registered audiences apply.
func (d *Dispatcher) audience(cl store.Client, resource, audience string) ([]string, error) {
	allowed := cl.Audience
	if len(allowed) == 0 {
		allowed = d.DefaultAudience
	}
	want := resource
	if want == "" {
		want = audience
	} else if audience != "" && audience != resource {
		return nil, oauth.InvalidRequest("resource and audience differ")
	}
	if want == "" {
		return allowed, nil
	}
	if !slices.Contains(allowed, want) {
		return nil, &oauth.Error{Code: oauth.CodeInvalidTarget, Status: http.StatusBadRequest, Description: "resource not allowed for this client"}
	}
	return []string{want}, nil
}

func (d *Dispatcher) authFailed(r *http.Request, clientID string, err error) {
	oe := oauth.AsError(err)
	d.audit(r, store.AuditEvent{Type: "client.auth_failed", Outcome: audit.Failure, ClientID: clientID, Reason: causeOf(oe), Details: map[string]string{"endpoint": r.URL.Path}})
	if d.OnAuthFailure != nil {
		d.OnAuthFailure(r, oe)
	}
}

func (d *Dispatcher) audit(r *http.Request, e store.AuditEvent) {
	if d.Audit == nil {
		return
	}
	e.RequestID = web.RequestID(r.Context())
	e.RemoteIP = r.RemoteAddr
	d.Audit.Record(r.Context(), e)
}

func (d *Dispatcher) count(gt, outcome string) {
	if d.Issued != nil {
		d.Issued.WithLabelValues(safeGrant(gt), outcome).Inc()
	}
}

// safeGrant keeps metric labels bounded: unknown grant types are one label.
func safeGrant(gt string) string {
	switch gt {
	case "client_credentials", "authorization_code", "refresh_token", "":
		return gt
	}
	return "other"
}

func causeOf(e *oauth.Error) string {
	if e.Cause != nil {
		return e.Cause.Error()
	}
	return e.Description
}

func levelFor(e *oauth.Error) slog.Level {
	if e.Status >= 500 {
		return slog.LevelError
	}
	return slog.LevelInfo
}

// AssertClaims returns the claims that scopes assert, with values from values (a client's
// or a user's attributes). Only claims named by a granted scope are asserted: a token carries
// what its scopes need and nothing else.
func AssertClaims(scopes []string, cfg map[string]config.Scope, values map[string]any) map[string]any {
	var out map[string]any
	for _, s := range scopes {
		for _, name := range cfg[s].Claims {
			v, ok := values[name]
			if !ok {
				continue
			}
			if out == nil {
				out = map[string]any{}
			}
			out[name] = v
		}
	}
	return out
}
