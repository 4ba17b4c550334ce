package abuse_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/ratelimit"
)

var errDown = errors.New("connection refused")

type flakyWindow struct {
	abuse.Window
	down *atomic.Bool
}

func (f flakyWindow) Add(ctx context.Context, key, member string, w time.Duration, limit int, now time.Time) (int, error) {
	if f.down.Load() {
		return 0, errDown
	}
	return f.Window.Add(ctx, key, member, w, limit, now)
}

type flakyList struct {
	abuse.BlockList
	down *atomic.Bool
}

func (f flakyList) Block(ctx context.Context, s string, until time.Time, r string, now time.Time) (bool, error) {
	if f.down.Load() {
		return false, errDown
	}
	return f.BlockList.Block(ctx, s, until, r, now)
}

func (f flakyList) Blocked(ctx context.Context, s string, now time.Time) (abuse.Block, bool, error) {
	if f.down.Load() {
		return abuse.Block{}, false, errDown
	}
	return f.BlockList.Blocked(ctx, s, now)
}

// While the shared stores are down, detection goes on locally and the shared state is used
// again once they are back.
func TestDetectorFailover(t *testing.T) {
	var down atomic.Bool
	h, err := ratelimit.NewHealth(func(context.Context) error {
		if down.Load() {
			return errDown
		}
		return nil
	}, ratelimit.HealthOptions{Name: "redis"})
	if err != nil {
		t.Fatal(err)
	}
	sharedBlocks := abuse.NewMemoryBlockList(0)
	d, err := abuse.NewDetector(abuse.DetectorOptions{
		Windows:   abuse.FailoverWindow{Shared: flakyWindow{abuse.NewMemoryWindow(0), &down}, Local: abuse.NewMemoryWindow(0), Health: h},
		Blocks:    abuse.FailoverBlockList{Shared: flakyList{sharedBlocks, &down}, Local: abuse.NewMemoryBlockList(0), Health: h},
		Throttles: abuse.FailoverBlockList{Shared: flakyList{abuse.NewMemoryBlockList(0), &down}, Local: abuse.NewMemoryBlockList(0), Health: h},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := abuse.Rule{Name: "auth_failures", Threshold: 5, Window: time.Minute, Action: abuse.ActionBlock, For: time.Hour}
	if _, err := sharedBlocks.Block(t.Context(), "ip:192.0.2.1", t0.Add(time.Hour), "earlier", t0); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	for i := range 5 {
		v, err := d.Observe(t.Context(), r, "", "ip:192.0.2.2", "", t0.Add(time.Duration(i)*time.Second))
		if err != nil || v.Fired != (i == 4) {
			t.Fatalf("failure %d while down: %+v %v", i, v, err)
		}
	}
	if h.Up() {
		t.Fatal("health up while the shared stores fail")
	}
	if st, err := d.Status(t.Context(), "ip:192.0.2.2", t0.Add(5*time.Second)); err != nil || !st.Blocked {
		t.Fatalf("local block not in force while down: %+v %v", st, err)
	}
	down.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for now := t0.Add(10 * time.Second); !h.Up(); now = now.Add(time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("no recovery")
		}
		_, _ = d.Status(t.Context(), "x", now)
		h.Wait()
	}
	if st, err := d.Status(t.Context(), "ip:192.0.2.1", t0.Add(time.Minute)); err != nil || !st.Blocked || st.Block.Reason != "earlier" {
		t.Fatalf("shared block not seen after recovery: %+v %v", st, err)
	}
}
