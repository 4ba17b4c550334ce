package app

import (
	"context"
	"errors"
	"fmt"
	"github.com/portcullis/portcullis/internal/login"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/events/redisbus"
	"github.com/portcullis/portcullis/internal/ratelimit"
	rlredis "github.com/portcullis/portcullis/internal/ratelimit/redis"
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

// limitBackends are the shared state of rate limits and abuse defences, built once and kept
// across reloads (so a reload forgets no count): in memory for one process, or in Redis
// with cache.driver: redis, through the cache's one client. With Redis, rate limits apply
// cache.fail while Redis is unreachable (closed: 503; local: a per-process limiter), and
// the abuse windows and block lists fall back to memory; one health tracker logs the outage
// and its end once and probes for recovery.
//
// The gateway and the issuer each have their own block and throttle lists: an address the
// gateway blocked for bad bearer tokens may still reach the issuer's endpoints, and the
// other way round (the gateway itself usually calls the issuer from one address).
type limitBackends struct {
	Limiter ratelimit.Limiter
	Gateway *abuse.Detector // nil without a gateway
	Issuer  *abuse.Detector // nil without an issuer
	// Login holds the sign-in throttle's counts (the same backends, lists of their own).
	Login  login.ThrottleOptions
	health *ratelimit.Health
	sweep  []func(time.Time) int // the in-memory stores
}

// The block and throttle lists, by the name they have in the shared backend (`portcullis
// blocks` walks them).
const (
	listGatewayBlock    = "block"
	listGatewayThrottle = "throttle"
	listIssuerBlock     = "issuer-block"
	listIssuerThrottle  = "issuer-throttle"
	listLoginBlock      = "login-block"
	listLoginLock       = "login-lock"
)

var blockListNames = []string{listGatewayBlock, listGatewayThrottle, listIssuerBlock, listIssuerThrottle, listLoginBlock, listLoginLock}

// openLimits builds the limit backends of cfg on the cache's backends.
func openLimits(cfg *config.Config, cache *cacheBackends, reg prometheus.Registerer, log *slog.Logger) (*limitBackends, error) {
	b := &limitBackends{}
	mem := ratelimit.NewMemory(0)
	if err := ratelimit.RegisterMemory(reg, mem); err != nil {
		return nil, err
	}
	b.sweep = append(b.sweep, mem.Sweep)
	window := abuse.NewMemoryWindow(0)
	b.sweep = append(b.sweep, window.Sweep)
	memList := func() *abuse.MemoryBlockList {
		l := abuse.NewMemoryBlockList(0)
		b.sweep = append(b.sweep, l.Sweep)
		return l
	}
	b.Limiter = mem
	var windows abuse.Window = window
	list := func(string) abuse.BlockList { return memList() }
	if cache.Redis != nil {
		mode, err := ratelimit.ParseFailMode(cfg.Cache.Fail)
		if err != nil {
			return nil, fmt.Errorf("cache.fail: %w", err)
		}
		c := cache.Redis
		o := rlredis.Options{Prefix: cfg.Cache.Prefix, Timeout: cfg.Cache.Timeout}
		b.health, err = ratelimit.NewHealth(func(ctx context.Context) error { return c.Ping(ctx).Err() },
			ratelimit.HealthOptions{Name: "redis", ProbeTimeout: max(cfg.Cache.Timeout, 500*time.Millisecond), Logger: log, Registerer: reg})
		if err != nil {
			return nil, err
		}
		if b.Limiter, err = ratelimit.NewFailover(rlredis.NewLimiter(c, o), mem, mode, b.health, reg); err != nil {
			return nil, err
		}
		windows = abuse.FailoverWindow{Shared: rlredis.NewWindows(c, o), Local: window, Health: b.health}
		list = func(name string) abuse.BlockList {
			return abuse.FailoverBlockList{Shared: rlredis.NewBlockList(c, name, o), Local: memList(), Health: b.health}
		}
		log.Info("limits backend", "driver", "redis", "fail", mode.String(), "prefix", cfg.Cache.Prefix)
	} else {
		log.Info("limits backend", "driver", "memory")
	}
	detector := func(surface, blocks, throttles string) (*abuse.Detector, error) {
		return abuse.NewDetector(abuse.DetectorOptions{
			Windows: windows, Blocks: list(blocks), Throttles: list(throttles),
			Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"surface": surface}, reg),
		})
	}
	var err error
	if cfg.Gateway != nil {
		if b.Gateway, err = detector("gateway", listGatewayBlock, listGatewayThrottle); err != nil {
			return nil, err
		}
	}
	if cfg.Issuer != nil {
		if b.Issuer, err = detector("issuer", listIssuerBlock, listIssuerThrottle); err != nil {
			return nil, err
		}
		b.Login = login.ThrottleOptions{Limiter: b.Limiter, Windows: windows, Blocks: list(listLoginBlock), Locks: list(listLoginLock)}
	}
	return b, nil
}

// sweepEvery drops recovered entries from the in-memory stores every interval until ctx
// is done (they stay bounded without it; sweeping keeps them small).
func (b *limitBackends) sweepEvery(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n := 0
			for _, f := range b.sweep {
				n += f(now)
			}
			if n > 0 {
				log.Debug("expired limit entries removed", "count", n)
			}
		}
	}
}

// close waits for a recovery probe in flight.
func (b *limitBackends) close() {
	if b.health != nil {
		b.health.Wait()
	}
}
