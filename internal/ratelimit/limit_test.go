package ratelimit_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/ratelimit"
)

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		per  time.Duration
		fail bool
	}{
		{in: "100/s", n: 100, per: time.Second},
		{in: "6000/m", n: 6000, per: time.Minute},
		{in: "20/s", n: 20, per: time.Second},
		{in: "10/h", n: 10, per: time.Hour},
		{in: "1000/d", n: 1000, per: 24 * time.Hour},
		{in: "20/10s", n: 20, per: 10 * time.Second},
		{in: "100/5m", n: 100, per: 5 * time.Minute},
		{in: "1/31d", n: 1, per: 31 * 24 * time.Hour},
		{in: "1000000/s", n: 1000000, per: time.Second},
		{in: "1000000000/1000s", n: 1000000000, per: 1000 * time.Second},
		{in: "1000001/s", fail: true}, // faster than one per microsecond
		{in: "1/32d", fail: true},     // window too long
		{in: "1000000001/d", fail: true},
		{in: "99999999999999999999/s", fail: true},
		{in: "0/s", fail: true},
		{in: "-1/s", fail: true},
		{in: "+1/s", fail: true},
		{in: "01/s", fail: true},
		{in: "1/0s", fail: true},
		{in: "1/01s", fail: true},
		{in: "1.5/s", fail: true},
		{in: " 1/s", fail: true},
		{in: "1 /s", fail: true},
		{in: "1/ s", fail: true},
		{in: "1/S", fail: true},
		{in: "1/sec", fail: true},
		{in: "1/day", fail: true}, // a quota, not a rate
		{in: "1/ms", fail: true},
		{in: "1/", fail: true},
		{in: "/s", fail: true},
		{in: "100", fail: true},
		{in: "", fail: true},
		{in: "1/s/s", fail: true},
		{in: "1/9999999999999999999s", fail: true},
	} {
		t.Run(c.in, func(t *testing.T) {
			n, per, err := ratelimit.ParseRate(c.in)
			if c.fail {
				if err == nil {
					t.Fatalf("ParseRate(%q) = %d, %s; want an error", c.in, n, per)
				}
				return
			}
			if err != nil || n != c.n || per != c.per {
				t.Fatalf("ParseRate(%q) = %d, %s, %v; want %d, %s", c.in, n, per, err, c.n, c.per)
			}
		})
	}
}

func TestFormatRateRoundTrips(t *testing.T) {
	for _, s := range []string{"100/s", "6000/m", "20/10s", "10/h", "1000/d", "7/90s", "3/2d"} {
		n, per, err := ratelimit.ParseRate(s)
		if err != nil {
			t.Fatal(err)
		}
		back := ratelimit.FormatRate(n, per)
		n2, per2, err := ratelimit.ParseRate(back)
		if err != nil || n2 != n || per2 != per {
			t.Errorf("%q → %q → %d %s %v", s, back, n2, per2, err)
		}
	}
}

// FuzzParseRate: no panic; whatever parses is a valid limit and round trips through
// FormatRate.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100/s", "6000/m", "20/10s", "1/31d", "0/s", "1/day", "1000001/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, per, err := ratelimit.ParseRate(s)
		if err != nil {
			return
		}
		if _, err := ratelimit.NewRate("f", n, per, 0); err != nil {
			t.Fatalf("ParseRate(%q) = %d, %s, which does not validate: %v", s, n, per, err)
		}
		n2, per2, err := ratelimit.ParseRate(ratelimit.FormatRate(n, per))
		if err != nil || n2 != n || per2 != per {
			t.Fatalf("%q does not round trip: %d %s → %d %s %v", s, n, per, n2, per2, err)
		}
	})
}

func TestParseQuota(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		p    ratelimit.Period
		fail bool
	}{
		{in: "10000/day", n: 10000, p: ratelimit.Day},
		{in: "300000/month", n: 300000, p: ratelimit.Month},
		{in: "1/d", fail: true},
		{in: "1/week", fail: true},
		{in: "0/day", fail: true},
		{in: "day", fail: true},
		{in: "1/Day", fail: true},
	} {
		t.Run(c.in, func(t *testing.T) {
			n, p, err := ratelimit.ParseQuota(c.in)
			if (err != nil) != c.fail || n != c.n || p != c.p {
				t.Fatalf("ParseQuota(%q) = %d, %v, %v", c.in, n, p, err)
			}
		})
	}
}

func TestLimitValidate(t *testing.T) {
	ok := ratelimit.Limit{Name: "orders.client", Rate: 100, Per: time.Second, Burst: 50}
	for _, c := range []struct {
		name string
		edit func(*ratelimit.Limit)
		want string // substring of the error, "" for valid
	}{
		{"Valid", func(*ratelimit.Limit) {}, ""},
		{"EmptyName", func(l *ratelimit.Limit) { l.Name = "" }, "name"},
		{"NameWithColon", func(l *ratelimit.Limit) { l.Name = "a:b" }, "name"},
		{"NameWithQuote", func(l *ratelimit.Limit) { l.Name = `a"b` }, "name"},
		{"LongName", func(l *ratelimit.Limit) { l.Name = strings.Repeat("a", 65) }, "name"},
		{"ZeroRate", func(l *ratelimit.Limit) { l.Rate = 0 }, "rate"},
		{"SubSecondPer", func(l *ratelimit.Limit) { l.Per = 500 * time.Millisecond }, "per"},
		{"FractionalPer", func(l *ratelimit.Limit) { l.Per = 1500 * time.Millisecond }, "per"},
		{"ZeroBurst", func(l *ratelimit.Limit) { l.Burst = 0 }, "burst"},
		{"HugeBurst", func(l *ratelimit.Limit) { l.Rate, l.Per, l.Burst = 1, 31*24*time.Hour, 100 }, "burst"},
		{"QuotaWithBurst", func(l *ratelimit.Limit) { l.Period = ratelimit.Month }, "quota"},
		{"UnknownPeriod", func(l *ratelimit.Limit) { l.Period, l.Per, l.Burst = 9, 0, 0 }, "period"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := ok
			c.edit(&l)
			err := l.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one about %q", err, c.want)
			}
		})
	}
}

func TestDefaultBurst(t *testing.T) {
	for _, c := range []struct {
		rate string
		want int
	}{{"100/s", 100}, {"6000/m", 100}, {"1000/m", 17}, {"10/h", 1}, {"20/10s", 2}} {
		n, per, err := ratelimit.ParseRate(c.rate)
		if err != nil {
			t.Fatal(err)
		}
		if got := ratelimit.DefaultBurst(n, per); got != c.want {
			t.Errorf("DefaultBurst(%s) = %d, want %d", c.rate, got, c.want)
		}
	}
}

func TestStorageKey(t *testing.T) {
	long := strings.Repeat("x", 65)
	for _, c := range []struct {
		in     string
		hashed bool
	}{{"client-a", false}, {"", false}, {strings.Repeat("x", 64), false}, {long, true}, {"~abc", true}, {"~", true}} {
		got := ratelimit.StorageKey(c.in)
		if hashed := got != c.in; hashed != c.hashed {
			t.Errorf("StorageKey(%.10q…) = %q, hashed %v, want %v", c.in, got, hashed, c.hashed)
		}
		if c.hashed && (len(got) != 44 || got[0] != '~') {
			t.Errorf("StorageKey(%.10q…) = %q, want ~ and 43 base64url characters", c.in, got)
		}
	}
	if ratelimit.StorageKey(long) == ratelimit.StorageKey(long+"y") {
		t.Error("two long keys share a storage key")
	}
}

func TestIPKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	} {
		if got := ratelimit.IPKey(netip.MustParseAddr(c.in)); got != c.want {
			t.Errorf("IPKey(%s) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := ratelimit.IPKey(netip.Addr{}); got != "-" {
		t.Errorf("IPKey(invalid) = %q", got)
	}
	if got := ratelimit.IPKeyPrefix(netip.MustParseAddr("2001:db8::1"), 128); got != "2001:db8::1/128" {
		t.Errorf("IPKeyPrefix /128 = %q", got)
	}
}

func TestPeriodBounds(t *testing.T) {
	at := time.Date(2028, 2, 29, 12, 0, 0, 0, time.FixedZone("X", -8*3600)) // 20:00 UTC
	for _, c := range []struct {
		p          ratelimit.Period
		start, end time.Time
	}{
		{ratelimit.Day, time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC), time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC)},
		{ratelimit.Month, time.Date(2028, 2, 1, 0, 0, 0, 0, time.UTC), time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC)},
	} {
		s, e := c.p.Bounds(at)
		if diff := cmp.Diff([]time.Time{c.start, c.end}, []time.Time{s, e}); diff != "" {
			t.Errorf("%s bounds (-want +got):\n%s", c.p, diff)
		}
	}
}

// FuzzParseQuota: no panic; whatever parses validates and round trips.
func FuzzParseQuota(f *testing.F) {
	for _, s := range []string{"10000/day", "300000/month", "1/d", "0/day", "1/week"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, p, err := ratelimit.ParseQuota(s)
		if err != nil {
			return
		}
		if _, err := ratelimit.NewQuota("f", n, p); err != nil {
			t.Fatalf("ParseQuota(%q) = %d, %s, which does not validate: %v", s, n, p, err)
		}
		if back := fmt.Sprintf("%d/%s", n, p); back != s {
			t.Fatalf("%q does not round trip: %q", s, back)
		}
	})
}
