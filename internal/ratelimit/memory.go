package ratelimit

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// memShards is the number of independently locked maps.
const memShards = 64

// DefaultMaxKeys bounds a Memory limiter that names no bound (about 40 MB at worst).
const DefaultMaxKeys = 1 << 18

// sampleSize is how many entries a full shard looks at to choose a victim.
const sampleSize = 16

// Memory is the in-process limiter: state for one process, in a sharded map bounded to
// MaxKeys entries, so an attacker spraying keys cannot exhaust memory.
//
// An entry whose limit has fully recovered (a rate limit's bucket is full again, a quota's
// period is over) equals no entry at all, so dropping it loses nothing; Sweep drops such
// entries, and a full shard drops any it meets. When a shard is full of live entries, it
// evicts the one closest to recovering among a sample: a key spray mostly evicts the spray's
// own one-request entries, while a client deep in its limit keeps its state. That eviction
// is counted (Evictions): under such pressure a limit can forget a key and let it burst again.
//
// The zero value is not usable; call NewMemory.
type Memory struct {
	seed      maphash.Seed
	perShard  int
	shards    [memShards]memShard
	evictions atomic.Uint64
}

type memShard struct {
	mu        sync.Mutex
	m         map[memKey]memEntry
	lastSweep int64 // Unix µs of the last full sweep triggered by a full shard
	_         [40]byte
}

type memKey struct{ name, key string }

type memItem struct {
	k     memKey
	shard int
	p     Spec
	state int64
}

type memEntry struct {
	state  int64 // TAT (rate) or count (quota)
	expiry int64 // Unix µs after which the entry equals absence
}

// NewMemory returns an in-memory limiter holding at most maxKeys keys (DefaultMaxKeys when
// maxKeys ≤ 0; at least one per shard).
func NewMemory(maxKeys int) *Memory {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	m := &Memory{seed: maphash.MakeSeed(), perShard: max(maxKeys/memShards, 1)}
	for i := range m.shards {
		m.shards[i].m = make(map[memKey]memEntry)
	}
	return m
}

var _ Limiter = (*Memory)(nil)

// Allow implements Limiter. It never returns an error for valid checks.
func (m *Memory) Allow(_ context.Context, checks []Check, now time.Time) (Result, error) {
	if err := ValidateChecks(checks); err != nil {
		return Result{}, err
	}
	nowUS := now.UnixMicro()
	// Most requests have one to four checks: keep their state on the stack.
	var buf [4]memItem
	items := buf[:0]
	if len(checks) > len(buf) {
		items = make([]memItem, 0, len(checks))
	}
	items = items[:len(checks)]
	var lockBuf [MaxChecks]int
	locks := lockBuf[:0]
	for i, c := range checks {
		it := &items[i]
		it.k = memKey{name: c.Limit.Name, key: StorageKey(c.Key)}
		it.shard = int(maphash.Comparable(m.seed, it.k) % memShards)
		it.p = SpecOf(c.Limit, now)
		if !slices.Contains(locks, it.shard) {
			locks = append(locks, it.shard)
		}
	}
	// Lock every shard involved in ascending order: all checks are decided and consumed as
	// one step, and two requests can never wait on each other in a cycle.
	slices.Sort(locks)
	for _, s := range locks {
		m.shards[s].mu.Lock()
	}
	allowed := true
	for i := range checks {
		it := &items[i]
		if e, ok := m.shards[it.shard].m[it.k]; ok && e.expiry > nowUS {
			it.state = e.state
		}
		if !it.p.admits(it.state, nowUS) {
			allowed = false
		}
	}
	res := Result{Allowed: allowed, Decisions: make([]Decision, len(checks)), At: now}
	for i, c := range checks {
		it := &items[i]
		res.Decisions[i] = it.p.decision(c, it.state, nowUS, it.p.admits(it.state, nowUS), allowed)
		if allowed {
			st := it.p.consume(it.state, nowUS)
			m.putLocked(it.shard, it.k, memEntry{state: st, expiry: it.p.expiry(st)}, nowUS)
		}
	}
	for _, s := range locks {
		m.shards[s].mu.Unlock()
	}
	return res, nil
}

// putLocked stores e under k, making room in a full shard first.
func (m *Memory) putLocked(shard int, k memKey, e memEntry, now int64) {
	s := &m.shards[shard]
	if _, ok := s.m[k]; ok {
		s.m[k] = e
		return
	}
	if len(s.m) >= m.perShard {
		m.makeRoomLocked(s, now)
	}
	k.key = cloneKey(k.key)
	s.m[k] = e
}

// makeRoomLocked frees at least one slot: a full sweep of recovered entries at most once a
// second per shard, else the sampled entry closest to recovering.
func (m *Memory) makeRoomLocked(s *memShard, now int64) {
	if now-s.lastSweep >= int64(time.Second/time.Microsecond) || now < s.lastSweep {
		s.lastSweep = now
		for k, e := range s.m {
			if e.expiry <= now {
				delete(s.m, k)
			}
		}
		if len(s.m) < m.perShard {
			return
		}
	}
	var victim memKey
	var soonest int64
	n := 0
	for k, e := range s.m {
		if e.expiry <= now {
			delete(s.m, k)
			return
		}
		if n == 0 || e.expiry < soonest {
			victim, soonest = k, e.expiry
		}
		if n++; n == sampleSize {
			break
		}
	}
	delete(s.m, victim)
	m.evictions.Add(1)
}

// cloneKey copies a key before it is kept, so a stored key never pins a larger buffer (a
// whole request header) in memory.
func cloneKey(s string) string { return string(append([]byte(nil), s...)) }

// Sweep drops every entry that has recovered by now and returns how many it dropped. Run it
// now and then (the app does, every minute); it is an optimisation, not needed for
// correctness.
func (m *Memory) Sweep(now time.Time) int {
	nowUS := now.UnixMicro()
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.expiry <= nowUS {
				delete(s.m, k)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// Len returns the number of keys held.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Evictions returns how many live entries were dropped to respect the bound.
func (m *Memory) Evictions() uint64 { return m.evictions.Load() }
