package grant

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
)

// RefreshToken is RFC 6749 §6 with rotation (RFC 9700 §4.14.2): every use returns a new
// refresh token and consumes the old one, atomically, so of two concurrent uses exactly one
// wins. Presenting a used refresh token again means two parties hold it: the whole family
// (every access and refresh token descending from the same sign-in) is revoked and the
// revocation announced. Refresh tokens end refresh_ttl after the code exchange however often
// they rotate; they stop at once when the user is disabled, the user's credentials change
// after the family's sign-in, or the consent is revoked.
type RefreshToken struct {
	*UserTokens
}

// Type implements Grant.
func (RefreshToken) Type() string { return "refresh_token" }

func invalidRefresh(cause error) error {
	return oauth.InvalidGrant("the refresh token is invalid, expired or was already used", cause)
}

// Handle rotates the refresh token.
func (g RefreshToken) Handle(ctx context.Context, req *Request) (*Response, error) {
	rt := req.Form.Get("refresh_token")
	if rt == "" {
		return nil, oauth.InvalidRequest("refresh_token is required")
	}
	if len(rt) > 256 {
		return nil, invalidRefresh(errors.New("refresh token too long"))
	}
	rec, err := g.Tokens.GetToken(ctx, token.Hash(rt))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, invalidRefresh(errors.New("unknown refresh token"))
	case err != nil:
		return nil, storeError(err)
	}
	if rec.Kind != store.KindRefresh {
		return nil, invalidRefresh(fmt.Errorf("a %s token presented as a refresh token", rec.Kind))
	}
	if rec.ClientID != req.Client.ID {
		return nil, invalidRefresh(fmt.Errorf("refresh token of client %q presented by another client", rec.ClientID))
	}
	if !rec.UsedAt.IsZero() {
		return nil, g.reuse(ctx, rec, req)
	}
	if !rec.Active(req.Now) {
		return nil, invalidRefresh(errors.New("refresh token expired or revoked"))
	}
	scopes := rec.Scopes
	if req.Scopes != nil {
		for _, s := range req.Scopes {
			if !slices.Contains(rec.Scopes, s) {
				return nil, oauth.InvalidScope("the requested scope exceeds the original grant")
			}
		}
		scopes = req.Scopes
	}
	u, err := g.activeUser(ctx, rec.Subject)
	if err == nil {
		err = signInStands(u, rec)
	}
	if err != nil {
		_ = g.revokeFamily(ctx, rec.FamilyID, req.Now)
		return nil, err
	}
	if err := g.consented(ctx, rec); err != nil {
		_ = g.revokeFamily(ctx, rec.FamilyID, req.Now)
		return nil, err
	}
	extra := map[string]any{"auth_time": rec.Extra["auth_time"], "amr": rec.Extra["amr"], "acr": rec.Extra["acr"]}
	iss, err := g.mint(ctx, req.Client, u, rec.Scopes, scopes, req.Audience, rec.FamilyID, extra, rec.ExpiresAt, req.Now)
	if err != nil {
		return nil, err
	}
	var idToken string
	if slices.Contains(scopes, "openid") {
		idToken, err = g.IDTokens.Mint(IDTokenRequest{
			ClientID: req.Client.ID, Subject: u.ID, AccessToken: iss.access.Token,
			AuthTime: extraTime(rec.Extra, "auth_time"), AMR: extraStrings(rec.Extra, "amr"), ACR: extraString(rec.Extra, "acr"),
		})
		if err != nil {
			return nil, oauth.ServerError(err)
		}
	}
	if err := g.consume(ctx, rec, iss, req.Now, "refresh token"); err != nil {
		return nil, err
	}
	return g.response(iss, scopes, idToken, u.ID), nil
}

// reuse answers a used refresh token: revoke the family (RFC 9700 §4.14.2).
func (g RefreshToken) reuse(ctx context.Context, rec store.Token, req *Request) error {
	cause := errors.New("refresh token reused: its whole token family is revoked")
	if err := g.revokeFamily(ctx, rec.FamilyID, req.Now); err != nil {
		cause = fmt.Errorf("refresh token reused; revoking its family failed: %w", err)
	}
	return invalidRefresh(cause)
}

// consented checks that the user's consent for the client still covers the grant: revoking
// a consent (portcullis users revoke-consent) stops the client's refresh tokens.
func (g RefreshToken) consented(ctx context.Context, rec store.Token) error {
	c, err := g.Consents.GetConsent(ctx, rec.Subject, rec.ClientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return invalidRefresh(errors.New("consent revoked"))
	case err != nil:
		return storeError(err)
	}
	for _, s := range rec.Scopes {
		if !slices.Contains(c.Scopes, s) {
			return invalidRefresh(fmt.Errorf("consent no longer covers scope %q", s))
		}
	}
	return nil
}
