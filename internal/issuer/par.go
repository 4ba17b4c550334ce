package issuer

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/web"
)

// PathPAR is the pushed authorization request endpoint (RFC 9126).
const PathPAR = "/par"

// errTooManyTransactions refuses a push over the address's sign-in transaction limit.
var errTooManyTransactions = &oauth.Error{Code: oauth.CodeTemporarilyUnavailable, Status: http.StatusTooManyRequests, Description: "too many requests from this address; retry later"}

// servePAR takes an authorization request over the back channel: the client authenticates
// exactly as at /token, the request is validated in full (redirect_uri, PKCE, scopes) and
// stored for 60 seconds under a request_uri that /authorize accepts once, from this client.
// Errors are JSON (RFC 6749 §5.2), never redirects.
func (s *Server) servePAR(w http.ResponseWriter, r *http.Request) {
	f, err := oauth.ParseForm(w, r, int64(s.cfg.Limits.MaxBodyBytes))
	if err != nil {
		oauth.WriteError(w, err)
		return
	}
	cl, err := s.authenticate(r, f, true)
	if err != nil {
		oauth.WriteError(w, err)
		return
	}
	web.RequestInfo(r.Context()).ClientID = cl.ID
	params := url.Values{}
	for k, v := range f {
		if k != "client_secret" && k != "client_assertion" && k != "client_assertion_type" {
			params.Set(k, v)
		}
	}
	req, err := ParseAuthorizeRequest(params.Encode())
	if err != nil {
		var me *malformedError
		if errors.As(err, &me) && me.code != oauth.CodeInvalidRequest {
			oauth.WriteError(w, &oauth.Error{Code: me.code, Status: http.StatusBadRequest, Description: me.msg})
			return
		}
		oauth.WriteError(w, oauth.InvalidRequest(err.Error()))
		return
	}
	switch {
	case req.RequestURI != "":
		oauth.WriteError(w, oauth.InvalidRequest("request_uri is not allowed in a pushed request"))
		return
	case req.RedirectURI == "" || !slices.Contains(cl.RedirectURIs, req.RedirectURI):
		oauth.WriteError(w, oauth.InvalidRequest("redirect_uri missing or not registered for this client"))
		return
	}
	req.ClientID = cl.ID
	if _, err := req.Validate(cl, s.scopes); err != nil {
		oauth.WriteError(w, err)
		return
	}
	if cl.AuthMethod == "none" {
		// Anyone can push for a public client: count it like a sign-in transaction. A
		// confidential client authenticated and pushes for all its users from one back end.
		retry, ok, err := s.admitTransaction(r, cl.ID)
		switch {
		case err != nil:
			w.Header().Set("Retry-After", "1")
			oauth.WriteError(w, &oauth.Error{Code: oauth.CodeTemporarilyUnavailable, Status: http.StatusServiceUnavailable, Description: "try again later", Cause: err})
			return
		case !ok:
			w.Header().Set("Retry-After", strconv.FormatInt(ratelimit.RetryAfterSeconds(retry), 10))
			oauth.WriteError(w, errTooManyTransactions)
			return
		}
	}
	key := secret.Random(32)
	b, err := json.Marshal(pushedRequest{ClientID: cl.ID, Request: req})
	if err != nil {
		oauth.WriteError(w, oauth.ServerError(err))
		return
	}
	if err := s.o.Store.PutEphemeral(r.Context(), kindPAR, key, b, s.o.Now().Add(parTTL)); err != nil {
		oauth.WriteError(w, storeOAuthError(err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"request_uri": requestURIPrefix + key, "expires_in": int(parTTL / time.Second)})
}
