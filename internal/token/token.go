// Package token mints access tokens: opaque ones (256 random bits with a recognisable
// prefix, of which the store keeps only the SHA-256) for everyone, and RFC 9068 JWT access
// tokens (typ at+jwt) for internal clients and for the gateway's phantom-token exchange.
// It knows nothing about HTTP.
package token

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
)

// Prefixes make leaked tokens recognisable to secret scanners and to people.
const (
	AccessPrefix  = "pcat_"
	RefreshPrefix = "pcrt_"
	CodePrefix    = "pcac_"
)

// Formats.
const (
	FormatOpaque = "opaque"
	FormatJWT    = "jwt"
)

// TypeAccessJWT is the typ header of RFC 9068 access tokens.
const TypeAccessJWT = "at+jwt"

// PhantomClaim is the claim ("phantom": true) that marks a phantom JWT: the form of an
// opaque token that the gateway forwards to the upstream of an oauth route. It is not an
// access token, and jwt routes refuse it: its jti names the opaque token, so a revocation
// reaches it only through the opaque token's hash. Upstream APIs ignore unknown claims.
const PhantomClaim = "phantom"

// NewOpaque returns prefix followed by 256 random bits in base64url.
func NewOpaque(prefix string) string { return prefix + secret.Random(32) }

// Hash is how the store names a token: events.TokenHash.
func Hash(tok string) string { return events.TokenHash(tok) }

// Signer signs JSON claims with the issuer's current key (keys.Manager).
type Signer interface {
	Sign(typ string, claims any) (string, error)
}

// Minter issues access tokens and records them.
type Minter struct {
	Issuer    string
	AccessTTL time.Duration
	Signer    Signer
	Store     store.TokenStore
	Now       func() time.Time
}

// AccessRequest is what a grant decided to issue.
type AccessRequest struct {
	Client   store.Client
	Subject  string
	Scopes   []string
	Audience []string
	Claims   map[string]any // asserted centrally (scope claims config); never client input
	FamilyID string
	Extra    map[string]any
}

// Access is an issued access token.
type Access struct {
	Token     string // give to the client; never log
	ExpiresIn time.Duration
	Record    store.Token
}

// Access mints an access token in the client's format and stores its record.
func (m *Minter) Access(ctx context.Context, req AccessRequest) (Access, error) {
	now := m.Now().UTC().Truncate(time.Second)
	rec := store.Token{
		Kind:      store.KindAccess,
		Format:    FormatOpaque,
		ClientID:  req.Client.ID,
		Subject:   req.Subject,
		Scopes:    req.Scopes,
		Audience:  req.Audience,
		Claims:    req.Claims,
		Extra:     req.Extra,
		FamilyID:  req.FamilyID,
		IssuedAt:  now,
		ExpiresAt: now.Add(m.AccessTTL),
	}
	var tok string
	if req.Client.TokenFormat == FormatJWT && req.Client.Internal {
		rec.Format = FormatJWT
		jti := secret.Random(16)
		var err error
		if tok, err = m.Sign(rec, jti); err != nil {
			return Access{}, err
		}
		rec.Hash = Hash(tok)
	} else {
		tok = NewOpaque(AccessPrefix)
		rec.Hash = Hash(tok)
	}
	if err := m.Store.CreateToken(ctx, rec); err != nil {
		return Access{}, fmt.Errorf("store token: %w", err)
	}
	return Access{Token: tok, ExpiresIn: m.AccessTTL, Record: rec}, nil
}

// Sign returns the RFC 9068 JWT form of rec with the given jti. The gateway's phantom
// token is this JWT for a token's record with jti = the record's hash; it then carries
// PhantomClaim, which no other JWT carries (a configured claim of that name is dropped).
func (m *Minter) Sign(rec store.Token, jti string) (string, error) {
	c := Claims(m.Issuer, rec, jti)
	delete(c, PhantomClaim)
	if rec.Hash != "" && jti == rec.Hash {
		c[PhantomClaim] = true
	}
	return m.Signer.Sign(TypeAccessJWT, c)
}

// Claims builds the at+jwt claim set of rec: the registered claims of RFC 9068 §2.2 first,
// then the centrally asserted ones (which config validation keeps from reusing those names).
func Claims(issuer string, rec store.Token, jti string) map[string]any {
	c := make(map[string]any, 8+len(rec.Claims))
	maps.Copy(c, rec.Claims)
	c["iss"] = issuer
	c["sub"] = rec.Subject
	c["aud"] = audClaim(rec.Audience)
	c["exp"] = rec.ExpiresAt.Unix()
	c["iat"] = rec.IssuedAt.Unix()
	c["jti"] = jti
	c["client_id"] = rec.ClientID
	if len(rec.Scopes) > 0 {
		c["scope"] = strings.Join(rec.Scopes, " ")
	}
	if at, ok := rec.Extra["auth_time"]; ok {
		c["auth_time"] = at
	}
	return c
}

// audClaim is a string for one audience (the common case, and what many libraries expect)
// and an array otherwise.
func audClaim(aud []string) any {
	if len(aud) == 1 {
		return aud[0]
	}
	return aud
}
