package audit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/store"
)

// memAudit is a store.AuditStore that records each AppendAudit call; gate, when set, holds
// every call until it is closed.
type memAudit struct {
	mu      sync.Mutex
	batches [][]store.AuditEvent
	gate    chan struct{}
	entered chan struct{} // receives once per call, before the gate
	fail    error
}

func (m *memAudit) AppendAudit(_ context.Context, evs ...store.AuditEvent) error {
	if m.entered != nil {
		m.entered <- struct{}{}
	}
	if m.gate != nil {
		<-m.gate
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.batches = append(m.batches, append([]store.AuditEvent(nil), evs...))
	return nil
}

func (m *memAudit) ListAudit(context.Context, store.AuditFilter) ([]store.AuditEvent, error) {
	return nil, errors.ErrUnsupported
}

func (m *memAudit) all() []store.AuditEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.AuditEvent
	for _, b := range m.batches {
		out = append(out, b...)
	}
	return out
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestRecordThenClose(t *testing.T) {
	st := &memAudit{}
	var logs syncBuffer
	r := NewRecorder(st, slog.New(slog.NewJSONHandler(&logs, nil)))
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return at }
	want := []store.AuditEvent{
		{Type: "token.issued", Outcome: Success, ClientID: "app", Subject: "app", RequestID: "r1", Details: map[string]string{"scope": "a"}},
		{Type: "client.auth_failed", Outcome: Failure, ClientID: "ghost", RequestID: "r2", Reason: "unknown client"},
		{Type: "token.revoke_refused", Outcome: Denied, ClientID: "other", Time: at.Add(-time.Hour)},
	}
	for _, e := range want {
		r.Record(t.Context(), e)
	}
	r.Close()
	r.Close() // twice is harmless
	want[0].Time, want[1].Time = at, at
	if diff := cmp.Diff(want, st.all()); diff != "" {
		t.Errorf("stored events (-want +got):\n%s", diff)
	}
	out := logs.String()
	for _, s := range []string{`"type":"token.issued"`, `"outcome":"failure"`, `"reason":"unknown client"`, `"request_id":"r2"`, `"component":"audit"`} {
		if !strings.Contains(out, s) {
			t.Errorf("log lacks %s:\n%s", s, out)
		}
	}
}

// TestBatches: while the store is busy, events queue up and are written together.
func TestBatches(t *testing.T) {
	st := &memAudit{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	r := NewRecorder(st, slog.New(slog.DiscardHandler))
	r.Record(t.Context(), store.AuditEvent{Type: "first"})
	<-st.entered // the writer is inside AppendAudit with the first event
	const n = 600
	for i := range n {
		r.Record(t.Context(), store.AuditEvent{Type: "e", RequestID: string(rune('a' + i%26))})
	}
	close(st.gate)
	r.Close()
	if got := len(st.all()); got != n+1 {
		t.Fatalf("%d events stored, want %d", got, n+1)
	}
	// 1 + 600 events in batches of at most 256: 1 + 3 writes, not 601.
	if len(st.batches) > 4 {
		t.Errorf("%d writes for %d events: not batched", len(st.batches), n+1)
	}
	for _, b := range st.batches {
		if len(b) > 256 {
			t.Errorf("a batch of %d events exceeds 256", len(b))
		}
	}
}

// TestStoreFailureIsLogged: a failed write is logged and does not stop the recorder.
func TestStoreFailureIsLogged(t *testing.T) {
	st := &memAudit{fail: errors.New("disk full")}
	var logs syncBuffer
	r := NewRecorder(st, slog.New(slog.NewJSONHandler(&logs, nil)))
	r.Record(t.Context(), store.AuditEvent{Type: "x"})
	r.Close()
	if !strings.Contains(logs.String(), "audit events not stored") || !strings.Contains(logs.String(), "disk full") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestFullBufferDoesNotBlockForever: when the writer is stuck and the buffer full, Record
// gives up after a bounded wait and logs the event as not stored.
func TestFullBufferDoesNotBlockForever(t *testing.T) {
	st := &memAudit{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	r := &Recorder{st: st, log: log, now: time.Now, ch: make(chan store.AuditEvent, 1), done: make(chan struct{})}
	go r.run()
	r.Record(t.Context(), store.AuditEvent{Type: "a"})
	<-st.entered                                       // writer busy with a
	r.Record(t.Context(), store.AuditEvent{Type: "b"}) // fills the buffer
	done := make(chan struct{})
	go func() {
		r.Record(t.Context(), store.AuditEvent{Type: "c", RequestID: "dropped-one"})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Record blocked with a full buffer")
	}
	if !strings.Contains(logs.String(), "audit buffer full") || !strings.Contains(logs.String(), "dropped-one") {
		t.Errorf("the dropped event is not in the log:\n%s", logs.String())
	}
	close(st.gate)
	r.Close()
	if got := len(st.all()); got != 2 {
		t.Errorf("%d events stored, want 2", got)
	}
}

// TestRecordAfterClose: a handler that outlived shutdown may still record; that must not
// panic (send on a closed channel) but log the event as not stored.
func TestRecordAfterClose(t *testing.T) {
	st := &memAudit{}
	var logs syncBuffer
	r := NewRecorder(st, slog.New(slog.NewJSONHandler(&logs, nil)))
	r.Close()
	r.Record(t.Context(), store.AuditEvent{Type: "late", RequestID: "late-one"})
	if !strings.Contains(logs.String(), "late-one") || !strings.Contains(logs.String(), "not stored") {
		t.Errorf("late event not logged as not stored:\n%s", logs.String())
	}
	if n := len(st.all()); n != 0 {
		t.Errorf("%d events stored after Close", n)
	}
}

// TestRecordConcurrentWithClose: Record and Close racing never panic.
func TestRecordConcurrentWithClose(t *testing.T) {
	for range 50 {
		r := NewRecorder(&memAudit{}, slog.New(slog.DiscardHandler))
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					r.Record(context.Background(), store.AuditEvent{Type: "x"})
				}
			}()
		}
		r.Close()
		wg.Wait()
	}
}
