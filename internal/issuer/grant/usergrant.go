package grant

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
)

// CodeTTL is the lifetime of an authorization code (RFC 9700 §4.2: short, single use).
const CodeTTL = 60 * time.Second

// Authentication methods (RFC 8176) and assurance levels of a user's sign-in.
const (
	AMRPassword  = "pwd"
	AMROTP       = "otp"
	ACRPassword  = "aal1" // one factor (NIST SP 800-63B AAL1)
	ACRTwoFactor = "aal2" // password and TOTP (AAL2)
)

// CodeGrant is what an authorization code stands for: who signed in, for which client, with
// which PKCE challenge, to be redeemed at which redirect_uri.
type CodeGrant struct {
	ClientID      string
	UserID        string
	Scopes        []string
	RedirectURI   string
	CodeChallenge string // S256
	Nonce         string
	AuthTime      time.Time
	AMR           []string
	ACR           string
}

// NewCode returns a fresh authorization code and its record (kept by hash, 60 s, single use,
// the first of a new token family: everything issued from it shares the family id).
func NewCode(g CodeGrant, now time.Time) (string, store.Token) {
	now = now.UTC().Truncate(time.Second)
	code := token.NewOpaque(token.CodePrefix)
	return code, store.Token{
		Hash: token.Hash(code), Kind: store.KindCode, Format: token.FormatOpaque,
		ClientID: g.ClientID, Subject: g.UserID, Scopes: g.Scopes,
		Extra: map[string]any{
			"redirect_uri": g.RedirectURI, "code_challenge": g.CodeChallenge, "nonce": g.Nonce,
			"auth_time": g.AuthTime.Unix(), "amr": g.AMR, "acr": g.ACR,
		},
		FamilyID: "f_" + secret.Random(16), IssuedAt: now, ExpiresAt: now.Add(CodeTTL),
	}
}

// UserStore is what the user grants read about users.
type UserStore interface {
	GetUser(ctx context.Context, id string) (store.User, error)
}

// UserTokens mints the tokens of a user's grant; the authorization_code and refresh_token
// grants share it.
type UserTokens struct {
	Minter     *token.Minter
	Tokens     store.TokenStore
	Users      UserStore
	Consents   store.ConsentStore
	IDTokens   *IDTokens
	Scopes     map[string]config.Scope // the effective scope → claims map (config.Issuer.EffectiveScopes)
	RefreshTTL time.Duration
	// Revoked announces revoked token hashes (the issuer's event bus); may be nil.
	Revoked func(ctx context.Context, hashes []string, now time.Time)
}

// UserClaimValues are the values a user's claims take: the user's attributes, with
// preferred_username defaulting to the username.
func UserClaimValues(u store.User) map[string]any {
	v := make(map[string]any, len(u.Attributes)+1)
	for k, x := range u.Attributes {
		v[k] = x
	}
	if _, ok := v["preferred_username"]; !ok {
		v["preferred_username"] = u.Username
	}
	return v
}

// activeUser returns the user, or an invalid_grant when it is gone or disabled.
func (t *UserTokens) activeUser(ctx context.Context, id string) (store.User, error) {
	u, err := t.Users.GetUser(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.User{}, oauth.InvalidGrant("the grant is no longer valid", errors.New("user no longer exists"))
	case err != nil:
		return store.User{}, storeError(err)
	case u.Disabled:
		return store.User{}, oauth.InvalidGrant("the grant is no longer valid", errors.New("user is disabled"))
	}
	return u, nil
}

// signInStands refuses a grant whose sign-in (its auth_time) came before the user's
// credentials last changed: a new password or second factor ends every earlier sign-in.
func signInStands(u store.User, rec store.Token) error {
	if u.CredentialsChangedSince(extraTime(rec.Extra, "auth_time")) {
		return oauth.InvalidGrant("the grant is no longer valid", errors.New("the user's credentials changed after this sign-in"))
	}
	return nil
}

// issued is what one exchange produces, ready to be stored atomically with the consumption
// of the code or refresh token it replaces.
type issued struct {
	access       token.Access
	refresh      string
	records      []store.Token
	refreshUntil time.Time
}

// mint prepares (does not store) an access token and, when the grant includes
// offline_access and the client may refresh, a refresh token, all in family.
func (t *UserTokens) mint(ctx context.Context, cl store.Client, u store.User, grantScopes, accessScopes, audience []string,
	family string, extra map[string]any, refreshUntil time.Time, now time.Time) (issued, error) {
	m := *t.Minter
	m.Store = discard{} // records are stored by ConsumeToken, together with the consumption
	acc, err := m.Access(ctx, token.AccessRequest{
		Client: cl, Subject: u.ID, Scopes: accessScopes, Audience: audience,
		Claims: AssertClaims(accessScopes, t.Scopes, UserClaimValues(u)), FamilyID: family, Extra: extra,
	})
	if err != nil {
		return issued{}, oauth.ServerError(err)
	}
	out := issued{access: acc, records: []store.Token{acc.Record}}
	if slices.Contains(grantScopes, "offline_access") && allowsGrant(cl, "refresh_token") && now.Before(refreshUntil) {
		rt := token.NewOpaque(token.RefreshPrefix)
		out.refresh = rt
		out.records = append(out.records, store.Token{
			Hash: token.Hash(rt), Kind: store.KindRefresh, Format: token.FormatOpaque,
			ClientID: cl.ID, Subject: u.ID, Scopes: grantScopes, Audience: audience, Extra: extra,
			FamilyID: family, IssuedAt: now.UTC().Truncate(time.Second), ExpiresAt: refreshUntil,
		})
	}
	return out, nil
}

// revokeFamily revokes every token of family and announces it.
func (t *UserTokens) revokeFamily(ctx context.Context, family string, now time.Time) error {
	if family == "" {
		return nil
	}
	hashes, err := t.Tokens.RevokeFamily(ctx, family, now)
	if err != nil {
		return err
	}
	if t.Revoked != nil && len(hashes) > 0 {
		t.Revoked(ctx, hashes, now)
	}
	return nil
}

// consume stores the new tokens while consuming the old one, atomically. Losing (the old
// one was used in the meantime) means two uses: the family is revoked.
func (t *UserTokens) consume(ctx context.Context, old store.Token, iss issued, now time.Time, what string) error {
	_, err := t.Tokens.ConsumeToken(ctx, old.Hash, now, iss.records)
	switch {
	case errors.Is(err, store.ErrConflict):
		cause := fmt.Errorf("%s used twice at once: token family revoked", what)
		if rerr := t.revokeFamily(ctx, old.FamilyID, now); rerr != nil {
			cause = fmt.Errorf("%w (revoking the family failed: %v)", cause, rerr)
		}
		return oauth.InvalidGrant("the grant is invalid, expired or was already used", cause)
	case errors.Is(err, store.ErrNotFound):
		return oauth.InvalidGrant("the grant is invalid, expired or was already used", fmt.Errorf("%s vanished", what))
	case err != nil:
		return storeError(err)
	}
	return nil
}

func (t *UserTokens) response(iss issued, scopes []string, idToken string, sub string) *Response {
	return &Response{
		AccessToken: iss.access.Token, TokenType: "Bearer", ExpiresIn: int64(iss.access.ExpiresIn.Seconds()),
		RefreshToken: iss.refresh, Scope: strings.Join(scopes, " "), IDToken: idToken, Subject: sub,
	}
}

// discard is a token store that stores nothing: Minter.Access prepares a record that
// ConsumeToken then inserts.
type discard struct{ store.TokenStore }

func (discard) CreateToken(context.Context, store.Token) error { return nil }

func storeError(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return oauth.Unavailable(err)
	}
	return oauth.ServerError(err)
}

// Extra values come back from the store as JSON: numbers as float64, arrays as []any.

func extraString(e map[string]any, k string) string {
	s, _ := e[k].(string)
	return s
}

func extraTime(e map[string]any, k string) time.Time {
	switch v := e[k].(type) {
	case float64:
		return time.Unix(int64(v), 0).UTC()
	case int64:
		return time.Unix(v, 0).UTC()
	case int:
		return time.Unix(int64(v), 0).UTC()
	}
	return time.Time{}
}

func extraStrings(e map[string]any, k string) []string {
	switch v := e[k].(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
