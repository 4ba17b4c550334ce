package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/ratelimit"
)

// Defaults for NewClient and Options.
const (
	DefaultPrefix       = "portcullis:"
	DefaultTimeout      = 100 * time.Millisecond
	DefaultDialTimeout  = time.Second
	DefaultExpiryMargin = time.Second
)

// Client is what this package needs of go-redis (a *goredis.Client or a ring/failover
// client).
type Client interface {
	goredis.Scripter
	Ping(ctx context.Context) *goredis.StatusCmd
	Get(ctx context.Context, key string) *goredis.StringCmd
	Del(ctx context.Context, keys ...string) *goredis.IntCmd
	Scan(ctx context.Context, cursor uint64, match string, count int64) *goredis.ScanCmd
}

// NewClient opens a client for url (redis://[user:password@]host:port/db or rediss://) with
// explicit timeouts: dial 1s, read and write DefaultTimeout, context deadlines honoured, and
// no automatic retries — a script whose reply was lost may have run, and running it again
// would count a request twice.
func NewClient(url string) (*goredis.Client, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", errors.New(strings.ReplaceAll(err.Error(), url, "[url]")))
	}
	opt.DialTimeout = DefaultDialTimeout
	opt.DialerRetries = 1
	opt.ReadTimeout = DefaultTimeout
	opt.WriteTimeout = DefaultTimeout
	opt.PoolTimeout = DefaultTimeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.DisableIdentity = true
	return goredis.NewClient(opt), nil
}

// Options configure the stores of this package.
type Options struct {
	// Prefix starts every key (default "portcullis:"); give each deployment sharing a Redis
	// its own.
	Prefix string
	// Timeout bounds one call (default 100ms). A call that times out is an error, which a
	// ratelimit.Failover turns into its fail mode.
	Timeout time.Duration
	// ExpiryMargin is added to every key's expiry (default 1s), so a key never expires in
	// Redis before the caller's clock says its state stopped mattering.
	ExpiryMargin time.Duration
	// CallerClock makes the Limiter decide rate limits at the now its caller passes rather
	// than at Redis's clock: for tests on a fake clock. The abuse stores always use the
	// caller's now (their windows are minutes long; a few milliseconds do not matter).
	CallerClock bool
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ExpiryMargin <= 0 {
		o.ExpiryMargin = DefaultExpiryMargin
	}
	return o
}

// ping is the probe of ratelimit.Health.
func ping(ctx context.Context, c Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Ping(ctx).Err()
}

// busy marks a pool timeout with ratelimit.ErrBusy: this process is short of connections,
// Redis itself may be fine.
func busy(err error) error {
	if errors.Is(err, goredis.ErrPoolTimeout) {
		return fmt.Errorf("%w: %w", ratelimit.ErrBusy, err)
	}
	return err
}
