package redis_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/abuse/abusetest"
	"github.com/portcullis/portcullis/internal/ratelimit/redis"
)

func TestWindowsConformance(t *testing.T) {
	c := testRedis(t)
	abusetest.RunWindow(t, func(t *testing.T) abuse.Window { return redis.NewWindows(c, testOptions(t, c)) })
}

func TestBlockListConformance(t *testing.T) {
	c := testRedis(t)
	abusetest.RunBlockList(t, func(t *testing.T) abuse.BlockList { return redis.NewBlockList(c, "block", testOptions(t, c)) })
}

func TestDetectorOnRedis(t *testing.T) {
	c := testRedis(t)
	abusetest.RunDetector(t, func(t *testing.T) *abuse.Detector {
		o := testOptions(t, c)
		d, err := abuse.NewDetector(abuse.DetectorOptions{
			Windows: redis.NewWindows(c, o), Blocks: redis.NewBlockList(c, "block", o), Throttles: redis.NewBlockList(c, "throttle", o),
			Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// Two replicas (separate clients) share the windows and the block list: failures seen by
// either count towards one threshold, and a block imposed by one holds at the other.
func TestDetectorSharedByReplicas(t *testing.T) {
	base := testRedis(t)
	o := testOptions(t, base)
	var ds []*abuse.Detector
	for range 2 {
		c := clientVia(t, base, base.Options().Addr)
		d, err := abuse.NewDetector(abuse.DetectorOptions{Windows: redis.NewWindows(c, o), Blocks: redis.NewBlockList(c, "block", o), Throttles: redis.NewBlockList(c, "throttle", o)})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	r := abuse.AuthFailures
	for i := range r.Threshold {
		v, err := ds[i%2].Observe(t.Context(), r, "", "ip:203.0.113.9", "", t0)
		if err != nil || v.Fired != (i == r.Threshold-1) {
			t.Fatalf("failure %d at replica %d: %+v %v", i+1, i%2, v, err)
		}
	}
	for i, d := range ds {
		if st, err := d.Status(t.Context(), "ip:203.0.113.9", t0); err != nil || !st.Blocked {
			t.Fatalf("replica %d does not see the block: %+v %v", i, st, err)
		}
	}
}
