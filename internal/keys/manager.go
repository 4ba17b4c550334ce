package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/store"
)

// Algorithms the issuer can sign with.
var Algorithms = []string{"ES256", "EdDSA", "PS256"}

// ErrRotationPending is returned by a non-immediate Rotate when a successor is already
// published and waiting to sign.
var ErrRotationPending = errors.New("keys: a rotation is already pending")

// ErrKeyMismatch means a stored key's public half (what the JWKS would publish) is not the
// public half of its sealed private key, or names another kid or alg: the store was tampered
// with or damaged. The key is refused; nothing signs with it or publishes it.
var ErrKeyMismatch = errors.New("keys: stored public key does not match the private key")

// Options configures a Manager.
type Options struct {
	Store        store.KeyStore
	Sealer       *Sealer // seals private keys at rest (derive its key with PurposeKeySealing)
	Algorithm    string  // for new keys; default ES256
	RotateEvery  time.Duration
	PublishAhead time.Duration
	Overlap      time.Duration
	// MaxTokenTTL is the longest lifetime of anything the issuer signs; a retired key stays
	// published at least this long after it stopped signing.
	MaxTokenTTL time.Duration
	Events      events.Bus // optional: KeysChanged is published after a rotation and followed
	Logger      *slog.Logger
	Now         func() time.Time
}

// Manager owns the signing-key lifecycle: it loads and unseals keys, signs with the current
// one, serves the JWKS, rotates on schedule or on demand, and prunes keys nobody can need.
// Safe for concurrent use. Keys live in the store, so every replica sees the same set.
type Manager struct {
	o     Options
	state atomic.Pointer[keyState]
	mu    sync.Mutex // serialises Load
}

type keyState struct {
	keys    []*loadedKey // sorted by SignFrom
	jwks    []byte
	etag    string
	byKID   map[string]jose.JSONWebKey
	builtAt time.Time
}

type loadedKey struct {
	rec     store.SigningKey
	priv    crypto.Signer
	pub     jose.JSONWebKey
	signers sync.Map // typ → jose.Signer
}

// New loads the keys, creating the first one if the store has none.
func New(ctx context.Context, o Options) (*Manager, error) {
	if o.Store == nil || o.Sealer == nil {
		return nil, errors.New("keys: store and sealer are required")
	}
	if o.Algorithm == "" {
		o.Algorithm = "ES256"
	}
	if !slices.Contains(Algorithms, o.Algorithm) {
		return nil, fmt.Errorf("keys: unsupported algorithm %q", o.Algorithm)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{o: o}
	if err := m.Maintain(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// RotateOptions changes how Rotate behaves.
type RotateOptions struct {
	// Immediate makes the new key sign at once instead of after PublishAhead. Verifiers that
	// cached the JWKS must refetch on the unknown kid; use it when a key is compromised.
	Immediate bool
	// RetireOldNow removes older keys from the JWKS at once, so every token they signed stops
	// verifying. Only for a compromised key.
	RetireOldNow bool
}

// Rotate creates a successor key now (see RotateOptions) and returns it.
func (m *Manager) Rotate(ctx context.Context, ro RotateOptions) (store.SigningKey, error) {
	var created store.SigningKey
	_, err := m.update(ctx, func(now time.Time, ks []store.SigningKey) ([]store.SigningKey, error) {
		ks = prune(ks, now)
		if !ro.Immediate {
			for _, k := range ks {
				if k.SignFrom.After(now) {
					return nil, fmt.Errorf("%w: key %s signs from %s", ErrRotationPending, k.ID, k.SignFrom.Format(time.RFC3339))
				}
			}
		}
		signFrom := now.Add(m.o.PublishAhead)
		if ro.Immediate {
			signFrom = now
			ks = slices.DeleteFunc(ks, func(k store.SigningKey) bool { return k.SignFrom.After(now) })
		}
		nk, err := m.generate(now, signFrom)
		if err != nil {
			return nil, err
		}
		created = nk
		ks = m.succeed(ks, nk, now, ro.RetireOldNow)
		return ks, nil
	})
	if err != nil {
		return store.SigningKey{}, err
	}
	m.o.Logger.Info("signing key rotated", "kid", created.ID, "alg", created.Algorithm, "signs_from", created.SignFrom, "immediate", ro.Immediate)
	return created, nil
}

// Maintain runs one round of housekeeping: it creates the first key, rotates on schedule,
// prunes keys whose tokens have all expired, and reloads. Replicas may all call it: the
// store serialises the updates, so they agree on one successor.
func (m *Manager) Maintain(ctx context.Context) error {
	_, err := m.update(ctx, func(now time.Time, ks []store.SigningKey) ([]store.SigningKey, error) {
		before := len(ks)
		ks = prune(ks, now)
		pruned := len(ks) != before
		cur, pending := current(ks, now), false
		for _, k := range ks {
			if k.SignFrom.After(now) {
				pending = true
			}
		}
		var signFrom time.Time
		switch {
		case cur == nil && !pending:
			signFrom = now // nothing signs: the first key must sign at once
		case cur != nil && !pending && m.o.RotateEvery > 0 && !now.Before(cur.SignFrom.Add(m.o.RotateEvery-m.o.PublishAhead)):
			signFrom = cur.SignFrom.Add(m.o.RotateEvery)
			if earliest := now.Add(m.o.PublishAhead); signFrom.Before(earliest) {
				signFrom = earliest
			}
		default:
			if !pruned {
				return nil, errNoChange
			}
			return ks, nil
		}
		nk, err := m.generate(now, signFrom)
		if err != nil {
			return nil, err
		}
		m.o.Logger.Info("signing key created", "kid", nk.ID, "alg", nk.Algorithm, "signs_from", nk.SignFrom)
		return m.succeed(ks, nk, now, false), nil
	})
	return err
}

// errNoChange lets an update function say "leave the store alone".
var errNoChange = errors.New("no change")

// update runs fn inside the store's serialised key update, then reloads and announces.
func (m *Manager) update(ctx context.Context, fn func(now time.Time, ks []store.SigningKey) ([]store.SigningKey, error)) ([]store.SigningKey, error) {
	noChange := false
	ks, err := m.o.Store.UpdateKeys(ctx, func(ks []store.SigningKey) ([]store.SigningKey, error) {
		out, err := fn(m.o.Now(), ks)
		if errors.Is(err, errNoChange) {
			noChange = true
			return ks, nil
		}
		return out, err
	})
	if err != nil {
		return nil, err
	}
	if err := m.install(ks); err != nil {
		return nil, err
	}
	if !noChange && m.o.Events != nil {
		if err := m.o.Events.Publish(ctx, events.Event{Kind: events.KeysChanged, At: m.o.Now()}); err != nil {
			m.o.Logger.Warn("could not announce key change", "err", err)
		}
	}
	return ks, nil
}

// succeed adds nk and retires every key that would otherwise still sign when nk starts.
func (m *Manager) succeed(ks []store.SigningKey, nk store.SigningKey, now time.Time, removeNow bool) []store.SigningKey {
	for i := range ks {
		k := &ks[i]
		if k.RetireAt.IsZero() || k.RetireAt.After(nk.SignFrom) {
			k.RetireAt = nk.SignFrom
			k.RemoveAt = nk.SignFrom.Add(m.o.MaxTokenTTL + m.o.Overlap)
		}
		if removeNow {
			k.RetireAt, k.RemoveAt = now, now
		}
	}
	ks = append(ks, nk)
	if removeNow {
		ks = prune(ks, now.Add(time.Nanosecond))
	}
	return ks
}

// prune drops keys whose removal time has come.
func prune(ks []store.SigningKey, now time.Time) []store.SigningKey {
	return slices.DeleteFunc(slices.Clone(ks), func(k store.SigningKey) bool {
		return !k.RemoveAt.IsZero() && !now.Before(k.RemoveAt)
	})
}

// current returns the key that signs at now, or nil.
func current(ks []store.SigningKey, now time.Time) *store.SigningKey {
	var best *store.SigningKey
	for i := range ks {
		k := &ks[i]
		if k.SignFrom.After(now) || (!k.RetireAt.IsZero() && !now.Before(k.RetireAt)) {
			continue
		}
		if best == nil || k.SignFrom.After(best.SignFrom) {
			best = k
		}
	}
	return best
}

// generate makes a new key of the configured algorithm and seals its private half.
func (m *Manager) generate(now, signFrom time.Time) (store.SigningKey, error) {
	var priv crypto.Signer
	var err error
	switch m.o.Algorithm {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	}
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("generate key: %w", err)
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: m.o.Algorithm, Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	pubJSON, err := pub.MarshalJSON()
	if err != nil {
		return store.SigningKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.SigningKey{}, err
	}
	return store.SigningKey{
		ID:            pub.KeyID,
		Algorithm:     m.o.Algorithm,
		PublicJWK:     pubJSON,
		PrivateSealed: m.o.Sealer.Seal(der, sealAD(pub.KeyID)),
		CreatedAt:     now,
		SignFrom:      signFrom,
	}, nil
}

func sealAD(kid string) []byte { return []byte("portcullis signing key " + kid) }

// Load rereads the key set from the store (after another replica rotated).
func (m *Manager) Load(ctx context.Context) error {
	ks, err := m.o.Store.ListKeys(ctx)
	if err != nil {
		return err
	}
	return m.install(ks)
}

// install unseals ks and swaps it in. Keys already loaded are reused (no re-unsealing, and
// their cached signers survive).
func (m *Manager) install(ks []store.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := map[string]*loadedKey{}
	if st := m.state.Load(); st != nil {
		for _, k := range st.keys {
			old[k.rec.ID] = k
		}
	}
	now := m.o.Now()
	st := &keyState{byKID: map[string]jose.JSONWebKey{}, builtAt: now}
	var set jose.JSONWebKeySet
	for _, rec := range ks {
		lk := old[rec.ID]
		if lk == nil || !sameKey(lk.rec, rec) {
			nl, err := m.unseal(rec)
			if err != nil {
				return err
			}
			lk = nl
		}
		st.keys = append(st.keys, lk)
		if rec.RemoveAt.IsZero() || now.Before(rec.RemoveAt) {
			set.Keys = append(set.Keys, lk.pub)
			st.byKID[rec.ID] = lk.pub
		}
	}
	slices.SortFunc(st.keys, func(a, b *loadedKey) int { return a.rec.SignFrom.Compare(b.rec.SignFrom) })
	body, err := json.Marshal(set)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	st.jwks, st.etag = body, `"`+base64.RawURLEncoding.EncodeToString(sum[:16])+`"`
	m.state.Store(st)
	return nil
}

func (m *Manager) unseal(rec store.SigningKey) (*loadedKey, error) {
	der, err := m.o.Sealer.Open(rec.PrivateSealed, sealAD(rec.ID))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", rec.ID, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", rec.ID, err)
	}
	priv, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: not a signer", rec.ID)
	}
	var pub jose.JSONWebKey
	if err := pub.UnmarshalJSON(rec.PublicJWK); err != nil {
		return nil, fmt.Errorf("signing key %s: public jwk: %w", rec.ID, err)
	}
	if err := matchesPrivate(rec, pub, priv); err != nil {
		m.o.Logger.Error("signing key refused: its stored public key is not its own; the key store was altered", "kid", rec.ID, "alg", rec.Algorithm, "err", err)
		return nil, fmt.Errorf("signing key %s: %w", rec.ID, err)
	}
	return &loadedKey{rec: rec, priv: priv, pub: pub}, nil
}

// matchesPrivate checks the stored public JWK against the unsealed private key: the sealed
// half is authenticated (bound to the kid by the seal), the public column is not, so it is
// what the JWKS may publish only when it is exactly priv's public key under rec's kid and alg.
func matchesPrivate(rec store.SigningKey, pub jose.JSONWebKey, priv crypto.Signer) error {
	key, ok := pub.Key.(interface{ Equal(crypto.PublicKey) bool })
	switch {
	case !pub.IsPublic():
		return fmt.Errorf("%w: the public column holds private material", ErrKeyMismatch)
	case pub.KeyID != rec.ID:
		return fmt.Errorf("%w: its kid is %q", ErrKeyMismatch, pub.KeyID)
	case pub.Algorithm != rec.Algorithm:
		return fmt.Errorf("%w: its alg is %q, the key's %q", ErrKeyMismatch, pub.Algorithm, rec.Algorithm)
	case !ok || !key.Equal(priv.Public()):
		return ErrKeyMismatch
	}
	return nil
}

// sameKey reports whether a loaded record can be reused for rec without unsealing again:
// nothing that unseal checks, and no lifecycle time, changed.
func sameKey(loaded, rec store.SigningKey) bool {
	return loaded.Algorithm == rec.Algorithm && bytes.Equal(loaded.PublicJWK, rec.PublicJWK) &&
		bytes.Equal(loaded.PrivateSealed, rec.PrivateSealed) &&
		loaded.RetireAt.Equal(rec.RetireAt) && loaded.RemoveAt.Equal(rec.RemoveAt)
}

// ErrNoSigningKey means no key may sign now (all pending or retired): a wiring or clock bug.
var ErrNoSigningKey = errors.New("keys: no key may sign now")

// Sign serialises claims as JSON and signs them with the current key, with header typ.
func (m *Manager) Sign(typ string, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("marshal claims: %w", err)
	}
	lk := m.signing(m.o.Now())
	if lk == nil {
		return "", ErrNoSigningKey
	}
	signer, err := lk.signer(typ)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return jws.CompactSerialize()
}

func (m *Manager) signing(now time.Time) *loadedKey {
	st := m.state.Load()
	if st == nil {
		return nil
	}
	for i := len(st.keys) - 1; i >= 0; i-- {
		k := st.keys[i]
		if k.rec.SignFrom.After(now) {
			continue
		}
		if !k.rec.RetireAt.IsZero() && !now.Before(k.rec.RetireAt) {
			continue
		}
		return k
	}
	return nil
}

func (lk *loadedKey) signer(typ string) (jose.Signer, error) {
	if s, ok := lk.signers.Load(typ); ok {
		return s.(jose.Signer), nil
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	s, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.SignatureAlgorithm(lk.rec.Algorithm),
		Key:       jose.JSONWebKey{Key: lk.priv, KeyID: lk.rec.ID, Algorithm: lk.rec.Algorithm},
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	lk.signers.Store(typ, s)
	return s, nil
}

// JWKS returns the published key set as JSON and its ETag.
func (m *Manager) JWKS() (body []byte, etag string) {
	st := m.state.Load()
	return st.jwks, st.etag
}

// Keys is the in-process key source for jwtverify (jwtverify.KeyFunc(m.Keys)): the public
// keys currently published, by kid or all of them. An unknown kid is no keys and no error,
// which jwtverify reads as "not found" (an error would mean "keys unavailable": a 503).
func (m *Manager) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	st := m.state.Load()
	if kid != "" {
		if k, ok := st.byKID[kid]; ok {
			return []jose.JSONWebKey{k}, nil
		}
		return nil, nil
	}
	out := make([]jose.JSONWebKey, 0, len(st.byKID))
	for _, k := range st.byKID {
		out = append(out, k)
	}
	return out, nil
}

// Published returns the records of the keys in the JWKS, oldest first.
func (m *Manager) Published() []store.SigningKey {
	st := m.state.Load()
	out := make([]store.SigningKey, 0, len(st.keys))
	for _, k := range st.keys {
		if _, ok := st.byKID[k.rec.ID]; ok {
			r := k.rec
			r.PrivateSealed = nil
			out = append(out, r)
		}
	}
	return out
}

// SigningKeyID returns the kid that signs now ("" if none).
func (m *Manager) SigningKeyID() string {
	if k := m.signing(m.o.Now()); k != nil {
		return k.rec.ID
	}
	return ""
}

// Run maintains the keys every interval and reloads them on KeysChanged events, until ctx
// is done.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	reload := make(chan struct{}, 1)
	if m.o.Events != nil {
		cancel := m.o.Events.Subscribe(func(e events.Event) {
			if e.Kind == events.KeysChanged || e.Kind == events.Resync {
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		})
		defer cancel()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Maintain(ctx); err != nil && ctx.Err() == nil {
				m.o.Logger.Error("key maintenance failed", "err", err)
			}
		case <-reload:
			if err := m.Load(ctx); err != nil && ctx.Err() == nil {
				m.o.Logger.Error("key reload failed", "err", err)
			}
		}
	}
}
