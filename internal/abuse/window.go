package abuse

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Window counts events per key in a sliding window. Implementations are safe for
// concurrent use and agree on semantics: the in-memory MemoryWindow, and the Redis one in
// ratelimit/redis.
type Window interface {
	// Add records an event for key at now and returns how many events fell in the window
	// (now-w, now], this one included. With a non-empty member it counts distinct members
	// instead (a member seen again counts once, at its latest time). The count is capped at
	// limit: the window keeps only the newest limit events or members, which is all a
	// threshold of limit needs, and is what bounds its memory.
	Add(ctx context.Context, key, member string, w time.Duration, limit int, now time.Time) (int, error)
}

// MaxWindowLimit bounds Add's limit (and so a rule's threshold).
const MaxWindowLimit = 10000

const winShards = 64

// DefaultWindowKeys bounds a MemoryWindow that names no bound.
const DefaultWindowKeys = 1 << 14

// MemoryWindow is the in-process Window: a sharded map bounded to a number of keys, each
// holding at most limit events or members (members are kept as 64-bit hashes). When a shard
// is full, keys whose window has passed go first, then the key with the oldest newest event
// among a sample (counted in Evictions): a spray of keys cannot exhaust memory, and it
// evicts quiet keys rather than the busy ones being watched.
//
// The zero value is not usable; call NewMemoryWindow.
type MemoryWindow struct {
	seed      maphash.Seed
	perShard  int
	shards    [winShards]winShard
	evictions atomic.Uint64
}

type winShard struct {
	mu sync.Mutex
	m  map[string]*series
	_  [48]byte
}

// series is one key's recent events: times (oldest first) when counting events, members
// (hash → last seen) when counting distinct members. Times are Unix µs.
type series struct {
	times   []int64
	members map[uint64]int64
	oldest  int64 // the oldest member time (distinct mode), to skip needless pruning
	newest  int64
	w       int64
}

// NewMemoryWindow returns a window store holding at most maxKeys keys (DefaultWindowKeys when
// maxKeys ≤ 0).
func NewMemoryWindow(maxKeys int) *MemoryWindow {
	if maxKeys <= 0 {
		maxKeys = DefaultWindowKeys
	}
	m := &MemoryWindow{seed: maphash.MakeSeed(), perShard: max(maxKeys/winShards, 1)}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*series)
	}
	return m
}

var _ Window = (*MemoryWindow)(nil)

// Add implements Window.
func (m *MemoryWindow) Add(_ context.Context, key, member string, w time.Duration, limit int, now time.Time) (int, error) {
	if err := checkWindow(w, limit); err != nil {
		return 0, err
	}
	nowUS, wUS := now.UnixMicro(), w.Microseconds()
	cut := nowUS - wUS
	s := &m.shards[maphash.String(m.seed, key)%winShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.m[key]
	if se == nil {
		if len(s.m) >= m.perShard {
			m.makeRoomLocked(s, nowUS)
		}
		se = &series{}
		s.m[string(append([]byte(nil), key...))] = se
	}
	se.w = max(se.w, wUS)
	se.newest = max(se.newest, nowUS)
	if member == "" {
		// Drop what left the window, insert now in order, keep the newest limit.
		drop := 0
		for drop < len(se.times) && se.times[drop] <= cut {
			drop++
		}
		se.times = se.times[drop:]
		i := len(se.times)
		for i > 0 && se.times[i-1] > nowUS {
			i--
		}
		se.times = slices.Insert(se.times, i, nowUS)
		if len(se.times) > limit {
			se.times = se.times[len(se.times)-limit:]
		}
		if cap(se.times) > 2*limit+8 {
			se.times = slices.Clone(se.times)
		}
		return len(se.times), nil
	}
	if se.members == nil {
		se.members = make(map[uint64]int64)
		se.oldest = nowUS
	}
	se.members[maphash.String(m.seed, member)] = nowUS
	se.oldest = min(se.oldest, nowUS)
	if se.oldest <= cut || len(se.members) > limit {
		se.oldest = nowUS
		for h, t := range se.members {
			if t <= cut {
				delete(se.members, h)
			} else {
				se.oldest = min(se.oldest, t)
			}
		}
		for len(se.members) > limit {
			var victim uint64
			first := true
			for h, t := range se.members {
				if first || t < se.members[victim] {
					victim, first = h, false
				}
			}
			delete(se.members, victim)
		}
	}
	return len(se.members), nil
}

func (m *MemoryWindow) makeRoomLocked(s *winShard, now int64) {
	for k, se := range s.m {
		if se.newest <= now-se.w {
			delete(s.m, k)
		}
	}
	if len(s.m) < m.perShard {
		return
	}
	var victim string
	var oldest int64
	n := 0
	for k, se := range s.m {
		if n == 0 || se.newest < oldest {
			victim, oldest = k, se.newest
		}
		if n++; n == 16 {
			break
		}
	}
	delete(s.m, victim)
	m.evictions.Add(1)
}

// Sweep drops keys whose window has passed by now; it returns how many.
func (m *MemoryWindow) Sweep(now time.Time) int {
	nowUS := now.UnixMicro()
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k, se := range s.m {
			if se.newest <= nowUS-se.w {
				delete(s.m, k)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// Len returns the number of keys held.
func (m *MemoryWindow) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Evictions returns how many live keys were dropped to respect the bound.
func (m *MemoryWindow) Evictions() uint64 { return m.evictions.Load() }
