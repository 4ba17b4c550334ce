package app

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/events/redisbus"
	"github.com/portcullis/portcullis/internal/tokencheck"
	"github.com/portcullis/portcullis/internal/tokencheck/rediscache"
)

// cacheBackends is what cache.driver provides: the event bus for the issuer, the gateway
// and the key manager, and with redis the one client that the bus, the shared
// introspection cache and shared rate limits use.
//
// A Redis that is down at start-up does not stop the process: the bus starts not Live and
// keeps reconnecting (revocations from other replicas then reach this one's caches within
// gateway.introspection.revocation_bound), and the shared introspection cache is skipped
// while calls to it fail. Readiness does not depend on Redis, for the same reason: every
// feature on it has a fallback, and taking every replica out of the balancer because Redis
// is down would turn a slower system into no system.
type cacheBackends struct {
	Bus    events.Bus
	Redis  *goredis.Client        // nil with the memory driver
	Shared tokencheck.SharedStore // nil with the memory driver
	rbus   *redisbus.Bus
}

// openCache builds the backends of cfg.Cache. It does no network I/O.
func openCache(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (*cacheBackends, error) {
	c := cfg.Cache
	if c.Driver != "redis" {
		return &cacheBackends{Bus: &events.Memory{}}, nil
	}
	client, err := newRedisClient(c.URL, c.Timeout)
	if err != nil {
		return nil, err
	}
	bus, err := redisbus.NewWithOptions(client, redisbus.Options{Prefix: c.Prefix, Logger: log, Registerer: reg})
	if err != nil {
		client.Close()
		return nil, err
	}
	opt := client.Options()
	log.Info("cache backend", "driver", "redis", "addr", opt.Addr, "db", opt.DB, "tls", opt.TLSConfig != nil, "prefix", c.Prefix, "timeout", c.Timeout.String())
	return &cacheBackends{Bus: bus, Redis: client, Shared: rediscache.New(client, c.Prefix), rbus: bus}, nil
}

// newRedisClient opens a client for url (redis:// or rediss://) with explicit timeouts:
// each call at most timeout, dialing at most a second, and no automatic retries (a call that
// fails is the caller's to judge: the fallback applies).
func newRedisClient(url string, timeout time.Duration) (*goredis.Client, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		// The URL may hold a password: never repeat it.
		return nil, fmt.Errorf("cache.url: %w", errors.New(strings.ReplaceAll(err.Error(), url, "[url]")))
	}
	opt.DialTimeout = time.Second
	opt.DialerRetries = 1
	opt.ReadTimeout = timeout
	opt.WriteTimeout = timeout
	opt.PoolTimeout = timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.DisableIdentity = true
	return goredis.NewClient(opt), nil
}

// close stops the bus, then the client.
func (b *cacheBackends) close() {
	if b.rbus != nil {
		_ = b.rbus.Close()
	}
	if b.Redis != nil {
		_ = b.Redis.Close()
	}
}
