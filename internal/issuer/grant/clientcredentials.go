package grant

import (
	"context"
	"errors"
	"strings"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
)

// ClientCredentials is RFC 6749 §4.4: a confidential client gets a token for itself.
type ClientCredentials struct {
	Minter *token.Minter
	Scopes map[string]config.Scope
}

// Type implements Grant.
func (ClientCredentials) Type() string { return "client_credentials" }

// Handle issues the token. Without a scope parameter the client gets every scope it is
// registered for (RFC 6749 §3.3 lets the server pick a documented default).
func (g ClientCredentials) Handle(ctx context.Context, req *Request) (*Response, error) {
	if req.Client.AuthMethod == oauth.AuthNone {
		return nil, oauth.UnauthorizedClient("public clients cannot use client_credentials")
	}
	scopes := req.Scopes
	if scopes == nil {
		scopes = req.Client.Scopes
	}
	values := make(map[string]any, len(req.Client.Claims))
	for k, v := range req.Client.Claims {
		values[k] = v
	}
	acc, err := g.Minter.Access(ctx, token.AccessRequest{
		Client:   req.Client,
		Subject:  req.Client.ID, // RFC 9068 §2.2: the client acts for itself
		Scopes:   scopes,
		Audience: req.Audience,
		Claims:   AssertClaims(scopes, g.Scopes, values),
	})
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			return nil, oauth.Unavailable(err)
		}
		return nil, oauth.ServerError(err)
	}
	return &Response{
		AccessToken: acc.Token,
		TokenType:   "Bearer",
		ExpiresIn:   int64(acc.ExpiresIn.Seconds()),
		Scope:       strings.Join(scopes, " "),
		Subject:     req.Client.ID,
	}, nil
}
