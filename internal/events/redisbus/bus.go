package redisbus

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/events"
)

// Defaults of Options.
const (
	DefaultHeartbeat  = time.Second
	DefaultMaxBackoff = 2 * time.Second
	minBackoff        = 50 * time.Millisecond
)

// Options configure a Bus.
type Options struct {
	// Prefix starts the channel name ({Prefix}events). Replicas that must hear each other
	// share it; deployments sharing a Redis must not.
	Prefix string
	// Logger gets connection changes and bad messages. Default: discard.
	Logger *slog.Logger
	// Heartbeat is how long the subscription may stay silent before the bus sends a PING; a
	// PING unanswered for another Heartbeat ends the connection. So a silently dead link is
	// noticed (Live turns false) within two heartbeats. Default 1s.
	Heartbeat time.Duration
	// MaxBackoff caps the wait between reconnection attempts. Default 2s.
	MaxBackoff time.Duration
	// Registerer gets the bus's metrics. Nil: not exported.
	Registerer prometheus.Registerer
}

// Bus is an events.Bus shared through Redis pub/sub. Build it with New; Close it when done.
// It is safe for concurrent use.
//
// Trade-off: pub/sub delivers at most once and forgets, so a bus that was away cannot know
// what it missed; it reports that with a Resync, and Live is false meanwhile, which makes
// caches fall back to their own time bounds.
type Bus struct {
	client  goredis.UniversalClient
	channel string
	origin  string
	o       Options
	log     *slog.Logger
	local   events.Memory
	m       *metrics

	live atomic.Bool
	// resyncOwed: a Publish to Redis failed, so other replicas missed an event; publish a
	// Resync for them as soon as Redis takes it.
	resyncOwed atomic.Bool

	cancel context.CancelFunc
	done   chan struct{}
	psMu   sync.Mutex
	ps     *goredis.PubSub // the current subscription, closed by Close to end a blocked read
	closed bool
}

var _ events.Bus = (*Bus)(nil)

// New starts a bus on client with channel {prefix}events. It does no I/O before returning:
// it connects in the background and keeps reconnecting, so a Redis that is down at start-up
// only delays Live.
func New(client goredis.UniversalClient, prefix string, logger *slog.Logger) *Bus {
	b, _ := NewWithOptions(client, Options{Prefix: prefix, Logger: logger}) // no Registerer: cannot fail
	return b
}

// NewWithOptions is New with every option. It fails only when the metrics cannot be
// registered.
func NewWithOptions(client goredis.UniversalClient, o Options) (*Bus, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("redisbus: metrics: %w", err)
	}
	var id [16]byte
	_, _ = crand.Read(id[:]) // crypto/rand never fails
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bus{
		client:  client,
		channel: o.Prefix + "events",
		origin:  hex.EncodeToString(id[:]),
		o:       o,
		log:     o.Logger.With("component", "events"),
		m:       m,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go b.run(ctx)
	return b, nil
}

// Publish delivers e to this process's subscribers at once, then to the other replicas
// through Redis. An error means the other replicas did not get it (Redis down or slow);
// local subscribers did, and the other replicas get a Resync once Redis answers again.
func (b *Bus) Publish(ctx context.Context, e events.Event) error {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	_ = b.local.Publish(ctx, e) // in-process delivery cannot fail
	if err := b.publishRemote(ctx, e); err != nil {
		b.resyncOwed.Store(true)
		return err
	}
	return nil
}

func (b *Bus) publishRemote(ctx context.Context, e events.Event) error {
	payload, err := encode(b.origin, e)
	if err != nil {
		b.m.published.WithLabelValues("error").Inc()
		return fmt.Errorf("redisbus: encode %s: %w", e.Kind, err)
	}
	if err := b.client.Publish(ctx, b.channel, payload).Err(); err != nil {
		b.m.published.WithLabelValues("error").Inc()
		return fmt.Errorf("redisbus: publish %s: %w", e.Kind, err)
	}
	b.m.published.WithLabelValues("ok").Inc()
	return nil
}

// Subscribe calls fn for every event, local or from another replica, until cancel is
// called. fn runs on the publisher's goroutine for local events and on the bus's receiving
// goroutine for remote ones: it must not block.
func (b *Bus) Subscribe(fn func(events.Event)) (cancel func()) { return b.local.Subscribe(fn) }

// Live reports whether the subscription is confirmed and answering heartbeats, so events
// from other replicas reach this process.
func (b *Bus) Live() bool { return b.live.Load() }

// Close stops the bus and waits for its goroutine. Subscribers get nothing more from other
// replicas. It does not close the client.
func (b *Bus) Close() error {
	b.cancel()
	b.psMu.Lock()
	b.closed = true
	if b.ps != nil {
		_ = b.ps.Close() // ends a blocked read at once
	}
	b.psMu.Unlock()
	<-b.done
	b.setLive(false)
	return nil
}

func (b *Bus) setLive(v bool) {
	b.live.Store(v)
	if v {
		b.m.live.Set(1)
	} else {
		b.m.live.Set(0)
	}
}

// run keeps one subscription up until ctx ends.
func (b *Bus) run(ctx context.Context) {
	defer close(b.done)
	backoff := minBackoff
	down := false // an outage is logged once, when it starts
	for ctx.Err() == nil {
		wasLive, err := b.session(ctx)
		b.setLive(false)
		if ctx.Err() != nil {
			return
		}
		if wasLive {
			backoff = minBackoff
		}
		if !down || wasLive {
			b.log.Warn("event bus disconnected from redis; caches fall back to their time bounds until it is back", "err", err)
			down = true
		}
		b.m.reconnects.Inc()
		wait := backoff/2 + rand.N(backoff/2+1) // jitter, so replicas do not reconnect in step
		backoff = min(2*backoff, b.o.MaxBackoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// session subscribes, announces a Resync locally, and then delivers messages until the
// connection fails. wasLive reports whether the subscription was confirmed.
func (b *Bus) session(ctx context.Context) (wasLive bool, err error) {
	ps := b.client.Subscribe(ctx) // no channel yet: no I/O
	b.psMu.Lock()
	if b.closed {
		b.psMu.Unlock()
		_ = ps.Close()
		return false, context.Canceled
	}
	b.ps = ps
	b.psMu.Unlock()
	defer func() {
		b.psMu.Lock()
		b.ps = nil
		b.psMu.Unlock()
		_ = ps.Close()
	}()
	if err := ps.Subscribe(ctx, b.channel); err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	// Wait for the confirmation: only from then on does Redis deliver to us.
	for {
		msg, err := ps.ReceiveTimeout(ctx, 2*b.o.Heartbeat)
		if err != nil {
			return false, fmt.Errorf("subscribe: %w", err)
		}
		if s, ok := msg.(*goredis.Subscription); ok && s.Kind == "subscribe" && s.Channel == b.channel {
			break
		}
	}
	// Events published while we were not subscribed are lost to us: everything cached on
	// their account must go. (At the first connection the caches are young; a Resync costs
	// them little and covers decisions cached before Redis answered.)
	b.m.resyncs.Inc()
	_ = b.local.Publish(ctx, events.Event{Kind: events.Resync, At: time.Now()})
	b.setLive(true)
	b.log.Info("event bus subscribed", "channel", b.channel)
	b.payResync(ctx)

	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, b.o.Heartbeat)
		if err != nil {
			if !isTimeout(err) {
				return true, err
			}
			if pinged {
				return true, errors.New("no reply to a heartbeat")
			}
			if err := ps.Ping(ctx); err != nil {
				return true, fmt.Errorf("heartbeat: %w", err)
			}
			pinged = true
			b.payResync(ctx)
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *goredis.Message:
			b.deliver(ctx, m.Payload)
		case *goredis.Subscription:
			if m.Kind == "unsubscribe" && m.Channel == b.channel {
				return true, errors.New("unsubscribed by the server")
			}
		case *goredis.Pong:
		}
	}
}

// payResync publishes the Resync owed to other replicas, if any.
func (b *Bus) payResync(ctx context.Context) {
	if !b.resyncOwed.Swap(false) {
		return
	}
	if err := b.publishRemote(ctx, events.Event{Kind: events.Resync, At: time.Now()}); err != nil {
		b.resyncOwed.Store(true)
		return
	}
	b.log.Info("told the other replicas to resync: an event could not be published earlier")
}

// deliver hands a message from Redis to the local subscribers, unless it is our own echo
// (already delivered by Publish) or malformed.
func (b *Bus) deliver(ctx context.Context, payload string) {
	origin, e, err := decode([]byte(payload))
	if err != nil {
		b.m.received.WithLabelValues("invalid").Inc()
		b.log.Warn("ignored a malformed event message", "err", err, "bytes", len(payload))
		return
	}
	if origin == b.origin {
		return
	}
	b.m.received.WithLabelValues(string(e.Kind)).Inc()
	_ = b.local.Publish(ctx, e)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
