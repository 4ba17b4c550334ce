// Package events carries the few facts that must reach every process quickly: a token was
// revoked, the signing keys changed. In one process the Memory bus delivers them at once;
// replicas share a Redis-backed bus (see internal/events/redisbus) so a revocation on one
// replica reaches the caches of all.
package events

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// Kind names an event.
type Kind string

// Event kinds.
const (
	// TokenRevoked: the token whose hash is TokenHash must stop working now.
	TokenRevoked Kind = "token.revoked"
	// KeysChanged: the signing key set changed (rotation); reload keys and JWKS.
	KeysChanged Kind = "keys.changed"
	// Resync: events may have been lost (a reconnect); drop every cached security decision.
	Resync Kind = "resync"
)

// Event is one fact.
type Event struct {
	Kind      Kind      `json:"kind"`
	TokenHash string    `json:"token_hash,omitempty"`
	At        time.Time `json:"at"`
}

// TokenHash is the one way Portcullis names a token without holding it: the unpadded
// base64url SHA-256 of the token string. Stores key token records by it; caches key by it;
// revocation events carry it.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Bus publishes events to every subscriber, including those in other processes when the
// implementation is shared.
type Bus interface {
	Publish(ctx context.Context, e Event) error
	// Subscribe calls fn for every event until cancel is called. fn must not block long.
	Subscribe(fn func(Event)) (cancel func())
	// Live reports whether events currently reach this process reliably. While it is false,
	// consumers bound their caches by their own time limits instead of trusting events.
	Live() bool
}

// Memory is the in-process Bus: synchronous delivery, always live. Its zero value is ready.
type Memory struct {
	mu   sync.RWMutex
	next int
	subs map[int]func(Event)
}

var _ Bus = (*Memory)(nil)

// Publish delivers e to every subscriber before returning.
func (m *Memory) Publish(_ context.Context, e Event) error {
	m.mu.RLock()
	fns := make([]func(Event), 0, len(m.subs))
	for _, fn := range m.subs {
		fns = append(fns, fn)
	}
	m.mu.RUnlock()
	for _, fn := range fns {
		fn(e)
	}
	return nil
}

// Subscribe registers fn.
func (m *Memory) Subscribe(fn func(Event)) func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.subs == nil {
		m.subs = map[int]func(Event){}
	}
	id := m.next
	m.next++
	m.subs[id] = fn
	return func() {
		m.mu.Lock()
		delete(m.subs, id)
		m.mu.Unlock()
	}
}

// Live is always true in one process.
func (m *Memory) Live() bool { return true }
