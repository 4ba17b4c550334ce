package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error codes of RFC 6749 §5.2, RFC 6750 §3.1, RFC 7009 and RFC 9449.
const (
	CodeInvalidRequest          = "invalid_request"
	CodeInvalidClient           = "invalid_client"
	CodeInvalidGrant            = "invalid_grant"
	CodeUnauthorizedClient      = "unauthorized_client"
	CodeUnsupportedGrantType    = "unsupported_grant_type"
	CodeInvalidScope            = "invalid_scope"
	CodeInvalidToken            = "invalid_token"
	CodeInsufficientScope       = "insufficient_scope"
	CodeUnsupportedTokenType    = "unsupported_token_type"
	CodeServerError             = "server_error"
	CodeTemporarilyUnavailable  = "temporarily_unavailable"
	CodeAccessDenied            = "access_denied"
	CodeUnsupportedResponseType = "unsupported_response_type"
	CodeInvalidRequestURI       = "invalid_request_uri"
	CodeInvalidTarget           = "invalid_target"
	CodeLoginRequired           = "login_required"
	CodeConsentRequired         = "consent_required"
)

// Error is an OAuth error with two faces: Code, Description and Status are what the client
// sees (keep Description short and free of internals); Cause is what the log sees.
type Error struct {
	Code        string
	Description string
	Status      int
	Cause       error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Cause)
	}
	return e.Code + ": " + e.Description
}

// Unwrap returns the private cause.
func (e *Error) Unwrap() error { return e.Cause }

func newErr(code string, status int, desc string, cause error) *Error {
	return &Error{Code: code, Status: status, Description: desc, Cause: cause}
}

// InvalidRequest: a malformed request; desc says which parameter, never why internally.
func InvalidRequest(desc string) *Error {
	return newErr(CodeInvalidRequest, http.StatusBadRequest, desc, nil)
}

// InvalidClient: client authentication failed. The description is the same whatever the
// reason (unknown client, wrong secret, wrong method, replayed assertion): the reason goes to
// the log and the audit trail only.
func InvalidClient(cause error) *Error {
	return newErr(CodeInvalidClient, http.StatusUnauthorized, "client authentication failed", cause)
}

// InvalidGrant: the grant (code, refresh token, ...) is invalid, expired, revoked or not the client's.
func InvalidGrant(desc string, cause error) *Error {
	return newErr(CodeInvalidGrant, http.StatusBadRequest, desc, cause)
}

// UnauthorizedClient: the client may not use this grant type.
func UnauthorizedClient(desc string) *Error {
	return newErr(CodeUnauthorizedClient, http.StatusBadRequest, desc, nil)
}

// UnsupportedGrantType: the server does not know the grant type.
func UnsupportedGrantType() *Error {
	return newErr(CodeUnsupportedGrantType, http.StatusBadRequest, "unsupported grant_type", nil)
}

// InvalidScope: a requested scope is unknown or not allowed for the client.
func InvalidScope(desc string) *Error {
	return newErr(CodeInvalidScope, http.StatusBadRequest, desc, nil)
}

// ServerError hides cause behind a generic 500.
func ServerError(cause error) *Error {
	return newErr(CodeServerError, http.StatusInternalServerError, "internal error", cause)
}

// Unavailable: a dependency (the store) is down; the client may retry.
func Unavailable(cause error) *Error {
	return newErr(CodeTemporarilyUnavailable, http.StatusServiceUnavailable, "temporarily unavailable, retry later", cause)
}

// AsError turns any error into an *Error, hiding causes it does not recognise as a 500.
func AsError(err error) *Error {
	var oe *Error
	if errors.As(err, &oe) {
		return oe
	}
	return ServerError(err)
}

// WriteError renders err as the RFC 6749 §5.2 JSON body with its status. 401 responses carry
// WWW-Authenticate (RFC 6749 §5.2 requires it when the client used the Authorization header).
func WriteError(w http.ResponseWriter, err error) {
	oe := AsError(err)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if oe.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm="portcullis", charset="UTF-8"`)
	}
	if oe.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(oe.Status)
	body := struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{oe.Code, oe.Description}
	_ = json.NewEncoder(w).Encode(body)
}
