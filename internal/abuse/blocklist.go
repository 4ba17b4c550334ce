package abuse

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/internal/ratelimit"
)

// Block is a sanction on a subject until a time.
type Block struct {
	Subject string
	Until   time.Time
	Reason  string // the rule that imposed it, or an operator's note; short and plain
}

// BlockList holds sanctions with an expiry. Implementations are safe for concurrent use:
// MemoryBlockList here, the Redis one in ratelimit/redis (shared by every replica).
type BlockList interface {
	// Block sanctions subject until the given time. An existing longer block is kept (a
	// block is extended, never shortened); created reports whether no block was in force at
	// now.
	Block(ctx context.Context, subject string, until time.Time, reason string, now time.Time) (created bool, err error)
	// Blocked returns the block in force on subject at now.
	Blocked(ctx context.Context, subject string, now time.Time) (Block, bool, error)
	// Unblock lifts a block (an operator's action).
	Unblock(ctx context.Context, subject string) error
}

// Limits on what a block list stores.
const (
	MaxSubjectLen = 200
	MaxReasonLen  = 200
	// MaxBlockFor bounds how long a block may last.
	MaxBlockFor = 366 * 24 * time.Hour
)

// CheckBlock reports a malformed Block call.
func CheckBlock(subject string, until time.Time, reason string, now time.Time) error {
	switch {
	case subject == "" || len(subject) > MaxSubjectLen:
		return fmt.Errorf("abuse: subject of %d bytes: want 1 to %d", len(subject), MaxSubjectLen)
	case len(reason) > MaxReasonLen:
		return fmt.Errorf("abuse: reason of %d bytes: at most %d", len(reason), MaxReasonLen)
	case !until.After(now):
		return errors.New("abuse: a block must end after now")
	case until.Sub(now) > MaxBlockFor:
		return fmt.Errorf("abuse: a block may last at most %s", MaxBlockFor)
	}
	for i := 0; i < len(reason); i++ {
		if reason[i] < 0x20 || reason[i] == 0x7f {
			return errors.New("abuse: reason contains control characters")
		}
	}
	return nil
}

// IPSubject is the block-list subject of a client address: its IPv4 address or IPv6 /64,
// like ratelimit.IPKey, so an IPv6 client cannot step around a block by changing the low bits.
func IPSubject(a netip.Addr) string { return "ip:" + ratelimit.IPKey(a) }

// ClientSubject is the subject of an authenticated OAuth client.
func ClientSubject(clientID string) string { return "client:" + ratelimit.StorageKey(clientID) }

// DefaultBlockListSize bounds a MemoryBlockList that names no bound.
const DefaultBlockListSize = 100_000

// MemoryBlockList is the in-process BlockList, bounded: when full it drops expired blocks,
// then the block ending soonest among a sample (counted in Evictions).
//
// The zero value is not usable; call NewMemoryBlockList.
type MemoryBlockList struct {
	mu        sync.RWMutex
	m         map[string]Block
	max       int
	evictions atomic.Uint64
}

// NewMemoryBlockList returns a block list of at most size entries (DefaultBlockListSize when
// size ≤ 0).
func NewMemoryBlockList(size int) *MemoryBlockList {
	if size <= 0 {
		size = DefaultBlockListSize
	}
	return &MemoryBlockList{m: make(map[string]Block), max: size}
}

var _ BlockList = (*MemoryBlockList)(nil)

// Block implements BlockList.
func (b *MemoryBlockList) Block(_ context.Context, subject string, until time.Time, reason string, now time.Time) (bool, error) {
	if err := CheckBlock(subject, until, reason, now); err != nil {
		return false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, ok := b.m[subject]
	active := ok && cur.Until.After(now)
	if active && !until.After(cur.Until) {
		return false, nil
	}
	if !ok && len(b.m) >= b.max {
		b.makeRoomLocked(now)
	}
	b.m[subject] = Block{Subject: subject, Until: until, Reason: reason}
	return !active, nil
}

func (b *MemoryBlockList) makeRoomLocked(now time.Time) {
	for k, v := range b.m {
		if !v.Until.After(now) {
			delete(b.m, k)
		}
	}
	if len(b.m) < b.max {
		return
	}
	var victim string
	var soonest time.Time
	n := 0
	for k, v := range b.m {
		if n == 0 || v.Until.Before(soonest) {
			victim, soonest = k, v.Until
		}
		if n++; n == 16 {
			break
		}
	}
	delete(b.m, victim)
	b.evictions.Add(1)
}

// Blocked implements BlockList.
func (b *MemoryBlockList) Blocked(_ context.Context, subject string, now time.Time) (Block, bool, error) {
	b.mu.RLock()
	v, ok := b.m[subject]
	b.mu.RUnlock()
	if !ok || !v.Until.After(now) {
		return Block{}, false, nil
	}
	return v, true, nil
}

// Unblock implements BlockList.
func (b *MemoryBlockList) Unblock(_ context.Context, subject string) error {
	b.mu.Lock()
	delete(b.m, subject)
	b.mu.Unlock()
	return nil
}

// Sweep drops expired blocks; it returns how many.
func (b *MemoryBlockList) Sweep(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for k, v := range b.m {
		if !v.Until.After(now) {
			delete(b.m, k)
			n++
		}
	}
	return n
}

// Len returns the number of blocks held (expired ones included until swept).
func (b *MemoryBlockList) Len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.m)
}

// Evictions returns how many blocks in force were dropped to respect the bound.
func (b *MemoryBlockList) Evictions() uint64 { return b.evictions.Load() }
