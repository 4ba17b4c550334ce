// Package audit records security decisions: every event goes to the log at once and to the
// store's append-only trail in batches, so a burst of token requests costs one write per
// batch instead of one per event. Close flushes what is pending.
package audit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/store"
)

// Outcomes.
const (
	Success = "success"
	Failure = "failure"
	Denied  = "denied"
)

// Recorder buffers events for the store. Record never blocks a request for long: when the
// buffer is full it waits up to a second for the writer, then logs the event as dropped
// (the log line still carries it).
type Recorder struct {
	st     store.AuditStore
	log    *slog.Logger
	now    func() time.Time
	ch     chan store.AuditEvent
	done   chan struct{}
	closed sync.Once
	// mu guards ch against Close: Record sends under the read lock, Close closes ch under the
	// write lock, so a handler that outlives shutdown logs its event instead of panicking.
	mu       sync.RWMutex
	isClosed bool
}

// NewRecorder starts the background writer.
func NewRecorder(st store.AuditStore, log *slog.Logger) *Recorder {
	r := &Recorder{st: st, log: log.With("component", "audit"), now: time.Now, ch: make(chan store.AuditEvent, 4096), done: make(chan struct{})}
	go r.run()
	return r
}

// Record logs e and queues it for the store.
func (r *Recorder) Record(ctx context.Context, e store.AuditEvent) {
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "audit", slog.String("type", e.Type), slog.String("outcome", e.Outcome),
		slog.String("client_id", e.ClientID), slog.String("sub", e.Subject), slog.String("request_id", e.RequestID),
		slog.String("remote", e.RemoteIP), slog.String("reason", e.Reason), slog.Any("details", e.Details))
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.isClosed {
		r.log.Error("audit recorder closed: event not stored", "type", e.Type, "request_id", e.RequestID)
		return
	}
	select {
	case r.ch <- e:
		return
	default:
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case r.ch <- e:
	case <-t.C:
		r.log.Error("audit buffer full: event not stored", "type", e.Type, "request_id", e.RequestID)
	}
}

func (r *Recorder) run() {
	defer close(r.done)
	batch := make([]store.AuditEvent, 0, 256)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.st.AppendAudit(ctx, batch...)
		cancel()
		if err != nil {
			r.log.Error("audit events not stored", "count", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	for e := range r.ch {
		batch = append(batch, e)
		// Take whatever else is already queued, up to a batch.
	drain:
		for len(batch) < cap(batch) {
			select {
			case e, ok := <-r.ch:
				if !ok {
					break drain
				}
				batch = append(batch, e)
			default:
				break drain
			}
		}
		flush()
	}
	flush()
}

// Close stores every queued event and stops the writer. An event recorded after Close is
// logged as not stored.
func (r *Recorder) Close() {
	r.closed.Do(func() {
		r.mu.Lock()
		r.isClosed = true
		close(r.ch)
		r.mu.Unlock()
	})
	<-r.done
}
