package issuer

import (
	"context"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/store"
)

// clientCacheTTL bounds how stale a cached client may be. Clients change when the config is
// reloaded (which builds a new Server, and with it a new cache) or in another replica's
// store; a client removed or disabled elsewhere stops working here within this bound.
const clientCacheTTL = 5 * time.Second

// clientCacheMax bounds the cache; past it, expired entries go, then everything.
const clientCacheMax = 10000

// clientCache keeps found clients for clientCacheTTL: the client lookup was the largest single
// cost of a token or introspection request (a SQL read and a JSON decode). Unknown ids are
// never cached, so a client registered a moment ago is found at once and a flood of random
// ids cannot fill the cache. Store errors pass through.
type clientCache struct {
	store.ClientStore
	now func() time.Time

	mu sync.Mutex
	m  map[string]cachedClient
}

type cachedClient struct {
	c   store.Client
	exp time.Time
}

func newClientCache(st store.ClientStore, now func() time.Time) *clientCache {
	return &clientCache{ClientStore: st, now: now, m: map[string]cachedClient{}}
}

// GetClient returns the cached client or reads it through.
func (c *clientCache) GetClient(ctx context.Context, id string) (store.Client, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && now.Before(e.exp) {
		return e.c, nil
	}
	cl, err := c.ClientStore.GetClient(ctx, id)
	if err != nil {
		return cl, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= clientCacheMax {
		for k, v := range c.m {
			if !now.Before(v.exp) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= clientCacheMax {
			clear(c.m)
		}
	}
	c.m[id] = cachedClient{c: cl, exp: now.Add(clientCacheTTL)}
	return cl, nil
}
