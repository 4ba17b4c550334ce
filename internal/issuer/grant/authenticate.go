package grant

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/jwtverify"
)

// Authenticator checks client credentials. Every failure is oauth.InvalidClient with the
// real reason as its private cause, so the client cannot tell an unknown client from a wrong
// secret, while the log and the audit trail can.
type Authenticator struct {
	Clients store.ClientStore
	Secrets *secret.Hasher
	Replay  store.ReplayCache
	// Issuer and TokenEndpoint are the audiences a client assertion may name (RFC 7523 §3).
	Issuer        string
	TokenEndpoint string
	// MaxAssertionLifetime bounds exp-iat of a client assertion.
	MaxAssertionLifetime time.Duration
	// HTTPClient fetches clients' jwks_uri documents.
	HTTPClient *http.Client
	Now        func() time.Time
	// BeforeArgon2id, if set, is called before a client secret is checked with argon2id
	// (a person-chosen secret whose recent success is not remembered): the issuer counts
	// the attempt against the caller's address there, so a flood of guesses is cut off
	// before it costs hashing. An error refuses the request without hashing, as it is.
	BeforeArgon2id func(ctx context.Context) error

	mu      sync.Mutex
	sources map[string]keySource // client id → its key source
}

type keySource struct {
	fingerprint [32]byte // of the client's JWKS / jwks_uri, to notice a changed registration
	ks          jwtverify.KeySource
	close       func()
}

// assertionAlgorithms may sign client assertions.
var assertionAlgorithms = []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"}

// Authenticate returns the client that creds prove, or an *oauth.Error.
func (a *Authenticator) Authenticate(ctx context.Context, creds oauth.ClientCredentials) (store.Client, error) {
	cl, err := a.Clients.GetClient(ctx, creds.ClientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if creds.Secret != "" {
			a.Secrets.DummyVerify(creds.Secret) // same work as for a known client
		}
		return store.Client{}, oauth.InvalidClient(fmt.Errorf("unknown client %q", creds.ClientID))
	case errors.Is(err, store.ErrUnavailable):
		return store.Client{}, oauth.Unavailable(err)
	case err != nil:
		return store.Client{}, oauth.ServerError(err)
	}
	if cl.Disabled {
		return store.Client{}, oauth.InvalidClient(errors.New("client is disabled"))
	}
	if creds.Method != cl.AuthMethod {
		return store.Client{}, oauth.InvalidClient(fmt.Errorf("client uses %s, request used %s", cl.AuthMethod, creds.Method))
	}
	switch creds.Method {
	case oauth.AuthSecretBasic, oauth.AuthSecretPost:
		if a.BeforeArgon2id != nil && a.Secrets.NeedsArgon2id(cl.ID, cl.SecretHash, creds.Secret) {
			if err := a.BeforeArgon2id(ctx); err != nil {
				return store.Client{}, err
			}
		}
		ok, err := a.Secrets.VerifyContext(ctx, cl.ID, cl.SecretHash, creds.Secret)
		switch {
		case errors.Is(err, secret.ErrBusy):
			// Nothing was learnt about the secret: try again, and no failure is counted.
			return store.Client{}, oauth.Unavailable(fmt.Errorf("client %q: %w", cl.ID, err))
		case err != nil:
			return store.Client{}, oauth.ServerError(fmt.Errorf("client %q: %w", cl.ID, err))
		case !ok:
			return store.Client{}, oauth.InvalidClient(errors.New("wrong client secret"))
		}
	case oauth.AuthPrivateKey:
		if err := a.verifyAssertion(ctx, cl, creds.Assertion); err != nil {
			return store.Client{}, err
		}
	case oauth.AuthNone:
		// A public client proves nothing; grants it may use (authorization_code with PKCE)
		// carry their own proof.
	default:
		return store.Client{}, oauth.InvalidClient(fmt.Errorf("unsupported method %q", creds.Method))
	}
	return cl, nil
}

// verifyAssertion checks an RFC 7523 client assertion with the one JWT validation library:
// signed by one of the client's keys, iss = sub = client id, aud is exactly one value (this
// server's issuer identifier or token endpoint), a short lifetime, and a jti never seen before.
func (a *Authenticator) verifyAssertion(ctx context.Context, cl store.Client, assertion string) error {
	ks, err := a.keySource(cl)
	if err != nil {
		return oauth.InvalidClient(fmt.Errorf("client keys: %w", err))
	}
	v, err := jwtverify.New(jwtverify.Config{
		Issuer:         cl.ID,
		Audiences:      []string{a.Issuer, a.TokenEndpoint},
		Algorithms:     assertionAlgorithms,
		Types:          []string{"", "JWT"}, // never at+jwt or other token types: no cross-use
		MaxLifetime:    a.MaxAssertionLifetime,
		RequiredClaims: []string{"jti", "sub", "iat"},
		Keys:           ks,
		Now:            a.Now,
	})
	if err != nil {
		return oauth.ServerError(err)
	}
	claims, err := v.Verify(ctx, assertion)
	if err != nil {
		return oauth.InvalidClient(fmt.Errorf("client assertion: %w", err))
	}
	if claims.Subject != cl.ID {
		return oauth.InvalidClient(errors.New("client assertion sub is not the client id"))
	}
	// Exactly one audience (draft-ietf-oauth-rfc7523bis): an assertion that also names other
	// servers could be replayed to this one by any of them. A one-element array is one value.
	if len(claims.Audience) != 1 {
		return oauth.InvalidClient(fmt.Errorf("client assertion aud has %d values, want exactly one", len(claims.Audience)))
	}
	// The jti is remembered until the assertion could no longer verify anyway.
	until := claims.Expiry.Add(time.Minute)
	fresh, err := a.Replay.MarkUsed(ctx, "client-assertion:"+cl.ID+":"+claims.ID, until)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			return oauth.Unavailable(err)
		}
		return oauth.ServerError(err)
	}
	if !fresh {
		return oauth.InvalidClient(errors.New("client assertion replayed (jti seen before)"))
	}
	return nil
}

// keySource returns the client's keys: its inline JWKS, or a cached remote JWKS from its
// jwks_uri. A changed registration replaces the source.
func (a *Authenticator) keySource(cl store.Client) (jwtverify.KeySource, error) {
	fp := sha256.Sum256([]byte(cl.JWKS + "\x00" + cl.JWKSURI))
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sources == nil {
		a.sources = map[string]keySource{}
	}
	if s, ok := a.sources[cl.ID]; ok && s.fingerprint == fp {
		return s.ks, nil
	}
	var s keySource
	switch {
	case cl.JWKS != "":
		ks, err := jwtverify.NewStaticKeySet([]byte(cl.JWKS))
		if err != nil {
			return nil, err
		}
		s = keySource{fingerprint: fp, ks: ks, close: func() {}}
	case cl.JWKSURI != "":
		r, err := jwtverify.NewRemoteJWKS(cl.JWKSURI, jwtverify.RemoteOptions{HTTPClient: a.HTTPClient})
		if err != nil {
			return nil, err
		}
		s = keySource{fingerprint: fp, ks: r, close: r.Close}
	default:
		return nil, errors.New("client has no keys")
	}
	if old, ok := a.sources[cl.ID]; ok {
		old.close()
	}
	a.sources[cl.ID] = s
	return s.ks, nil
}

// Close stops background JWKS refreshes.
func (a *Authenticator) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, s := range a.sources {
		s.close()
		delete(a.sources, id)
	}
}

// allowsGrant reports whether the client registered the grant type.
func allowsGrant(cl store.Client, gt string) bool { return slices.Contains(cl.GrantTypes, gt) }
