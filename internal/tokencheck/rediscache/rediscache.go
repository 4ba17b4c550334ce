// Package rediscache is the Redis SharedStore of tokencheck: the introspection cache that
// gateway replicas share.
//
// Each answer is one string key, {prefix}ic:{<token hash>}, holding the sealed value with
// its expiry. A revocation writes {prefix}ic:{<token hash>}:revoked (the tombstone) and
// deletes the answer in one script; a Put is a script that stores nothing while the
// tombstone exists. So an answer fetched before a revocation and stored after it — by a
// replica that had not yet heard of it — never lands. The two keys of a token share a hash
// tag, so the scripts also run on Redis Cluster.
//
// The store trusts nothing it reads: tokencheck opens and verifies every value.
package rediscache

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/tokencheck"
)

// Store is a tokencheck.SharedStore in Redis. Its zero value is not usable; call New.
type Store struct {
	client goredis.UniversalClient
	prefix string
}

var _ tokencheck.SharedStore = (*Store)(nil)

// New returns a store whose keys start with prefix. Timeouts are the client's and the
// caller's context's.
func New(client goredis.UniversalClient, prefix string) *Store {
	return &Store{client: client, prefix: prefix}
}

func (s *Store) keys(hash string) []string {
	k := s.prefix + "ic:{" + hash + "}"
	return []string{k, k + ":revoked"}
}

// validHash bounds the keys this store writes to the token-hash form (43 base64url
// characters), so no caller mistake can address other keys under the prefix.
func validHash(h string) bool {
	if len(h) != 43 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

var errHash = errors.New("rediscache: not a token hash")

// Get returns the value stored under hash, or nil.
func (s *Store) Get(ctx context.Context, hash string) ([]byte, error) {
	if !validHash(hash) {
		return nil, errHash
	}
	b, err := s.client.Get(ctx, s.keys(hash)[0]).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rediscache: get: %w", err)
	}
	return b, nil
}

// putScript: KEYS[1] the answer, KEYS[2] the tombstone; ARGV[1] the value, ARGV[2] the ttl
// in milliseconds.
var putScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// revokeScript: KEYS[1] the answer, KEYS[2] the tombstone; ARGV[1] the tombstone's ttl in
// milliseconds.
var revokeScript = goredis.NewScript(`
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
redis.call('DEL', KEYS[1])
return 1
`)

// Put stores value under hash for ttl unless hash is tombstoned.
func (s *Store) Put(ctx context.Context, hash string, value []byte, ttl time.Duration) error {
	if !validHash(hash) {
		return errHash
	}
	ms := ttl.Milliseconds()
	if ms <= 0 {
		return nil
	}
	if err := putScript.Run(ctx, s.client, s.keys(hash), value, ms).Err(); err != nil {
		return fmt.Errorf("rediscache: put: %w", err)
	}
	return nil
}

// Revoke deletes hash's value and tombstones it for tombstone.
func (s *Store) Revoke(ctx context.Context, hash string, tombstone time.Duration) error {
	if !validHash(hash) {
		return errHash
	}
	if err := revokeScript.Run(ctx, s.client, s.keys(hash), max(tombstone.Milliseconds(), 1)).Err(); err != nil {
		return fmt.Errorf("rediscache: revoke: %w", err)
	}
	return nil
}
