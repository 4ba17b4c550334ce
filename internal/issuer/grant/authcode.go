package grant

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
)

// AuthorizationCode is RFC 6749 §4.1.3 with PKCE (RFC 7636, S256 only): the client trades a
// code for tokens. A code is bound to the client it was issued to, the redirect_uri it was
// sent to and the PKCE challenge of its request; it works once, within 60 seconds. A code
// presented again, by its client with its redirect_uri and verifier, revokes everything the
// first exchange issued (RFC 6749 §4.1.2), and the revocation is announced so gateways stop
// accepting those tokens at once. A used code without that proof is refused and revokes
// nothing: seeing a code is not enough to end someone's tokens.
type AuthorizationCode struct {
	*UserTokens
}

// Type implements Grant.
func (AuthorizationCode) Type() string { return "authorization_code" }

// invalidCode is the one public answer for every bad code: it does not tell an attacker
// whether a code exists, expired, or belongs to someone else.
func invalidCode(cause error) error {
	return oauth.InvalidGrant("the authorization code is invalid, expired or was already used", cause)
}

// Handle redeems the code.
func (g AuthorizationCode) Handle(ctx context.Context, req *Request) (*Response, error) {
	code, verifier, redirect := req.Form.Get("code"), req.Form.Get("code_verifier"), req.Form.Get("redirect_uri")
	if code == "" {
		return nil, oauth.InvalidRequest("code is required")
	}
	if len(code) > 256 {
		return nil, invalidCode(errors.New("code too long"))
	}
	rec, err := g.Tokens.GetToken(ctx, token.Hash(code))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, invalidCode(errors.New("unknown code"))
	case err != nil:
		return nil, storeError(err)
	}
	if rec.Kind != store.KindCode {
		return nil, invalidCode(fmt.Errorf("a %s token presented as a code", rec.Kind))
	}
	// Client, redirect_uri and verifier first: only a request that would otherwise succeed
	// counts as a replay. Someone who merely saw a used code cannot revoke its tokens.
	if rec.ClientID != req.Client.ID {
		return nil, invalidCode(fmt.Errorf("code of client %q presented by another client", rec.ClientID))
	}
	if redirect == "" || redirect != extraString(rec.Extra, "redirect_uri") {
		return nil, invalidCode(errors.New("redirect_uri differs from the authorization request's"))
	}
	if err := checkPKCE(verifier, extraString(rec.Extra, "code_challenge")); err != nil {
		return nil, err
	}
	if !rec.UsedAt.IsZero() {
		cause := errors.New("code replayed: every token issued from it is revoked")
		if err := g.revokeFamily(ctx, rec.FamilyID, req.Now); err != nil {
			cause = fmt.Errorf("code replayed; revoking its tokens failed: %w", err)
		}
		return nil, invalidCode(cause)
	}
	if !rec.Active(req.Now) {
		return nil, invalidCode(errors.New("code expired or revoked"))
	}
	u, err := g.activeUser(ctx, rec.Subject)
	if err != nil {
		return nil, err
	}
	if err := signInStands(u, rec); err != nil {
		return nil, err
	}
	extra := map[string]any{"auth_time": rec.Extra["auth_time"], "amr": rec.Extra["amr"], "acr": rec.Extra["acr"]}
	refreshUntil := req.Now.Add(g.RefreshTTL)
	iss, err := g.mint(ctx, req.Client, u, rec.Scopes, rec.Scopes, req.Audience, rec.FamilyID, extra, refreshUntil, req.Now)
	if err != nil {
		return nil, err
	}
	var idToken string
	if slices.Contains(rec.Scopes, "openid") {
		idToken, err = g.IDTokens.Mint(IDTokenRequest{
			ClientID: req.Client.ID, Subject: u.ID, Nonce: extraString(rec.Extra, "nonce"), AccessToken: iss.access.Token,
			AuthTime: extraTime(rec.Extra, "auth_time"), AMR: extraStrings(rec.Extra, "amr"), ACR: extraString(rec.Extra, "acr"),
		})
		if err != nil {
			return nil, oauth.ServerError(err)
		}
	}
	if err := g.consume(ctx, rec, iss, req.Now, "authorization code"); err != nil {
		return nil, err
	}
	return g.response(iss, rec.Scopes, idToken, u.ID), nil
}

// checkPKCE verifies a code_verifier (RFC 7636 §4.1: 43-128 unreserved characters) against
// an S256 challenge, in constant time.
func checkPKCE(verifier, challenge string) error {
	if verifier == "" {
		return oauth.InvalidRequest("code_verifier is required")
	}
	if !ValidVerifier(verifier) {
		return oauth.InvalidGrant("the code_verifier is malformed", errors.New("malformed code_verifier"))
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	if challenge == "" || subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) != 1 {
		return invalidCode(errors.New("code_verifier does not match the code_challenge"))
	}
	return nil
}

// ValidVerifier reports whether v is an RFC 7636 code_verifier.
func ValidVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
