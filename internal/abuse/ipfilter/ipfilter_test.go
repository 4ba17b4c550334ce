package ipfilter_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/abuse/ipfilter"
)

func TestParsePrefix(t *testing.T) {
	for _, c := range []struct {
		in, want string // want "" means an error
	}{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"192.0.2.1", "192.0.2.1/32"},
		{"192.0.2.1/32", "192.0.2.1/32"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"2001:DB8::1", "2001:db8::1/128"},
		{"::/0", "::/0"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:0.0.0.0/96", "0.0.0.0/0"},
		{"::ffff:c000:201/128", "192.0.2.1/32"},
		{"10.0.0.1/8", ""}, // host bits set
		{"2001:db8::1/32", ""},
		{"10.0.0.0/33", ""},
		{"2001:db8::/129", ""},
		{"fe80::1%eth0", ""},
		{"fe80::%eth0/64", ""},
		{" 10.0.0.0/8", ""},
		{"10.0.0.0/8 ", ""},
		{"10.0.0.0/ 8", ""},
		{"10.0.0.0/08", ""},
		{"10.0.0", ""},
		{"010.0.0.1", ""},
		{"10.0.0.0/-1", ""},
		{"example.com", ""},
		{"", ""},
		{"/8", ""},
	} {
		t.Run(c.in, func(t *testing.T) {
			p, err := ipfilter.ParsePrefix(c.in)
			if c.want == "" {
				if err == nil {
					t.Fatalf("ParsePrefix(%q) = %s, want an error", c.in, p)
				}
				return
			}
			if err != nil || p.String() != c.want {
				t.Fatalf("ParsePrefix(%q) = %s, %v; want %s", c.in, p, err, c.want)
			}
		})
	}
}

func TestListContains(t *testing.T) {
	l := ipfilter.MustParseList(
		"10.0.0.0/8", "192.0.2.1", "198.51.100.128/25", "::ffff:203.0.113.0/120",
		"2001:db8::/32", "2001:db8:ffff::1", "fd00::/8",
	)
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"10.0.0.0", true}, {"10.255.255.255", true}, {"9.255.255.255", false}, {"11.0.0.0", false},
		{"192.0.2.1", true}, {"192.0.2.0", false}, {"192.0.2.2", false},
		{"198.51.100.128", true}, {"198.51.100.255", true}, {"198.51.100.127", false},
		{"203.0.113.0", true}, {"203.0.113.255", true}, {"203.0.114.0", false}, // from a mapped entry
		{"::ffff:10.1.2.3", true},  // a mapped client is its IPv4 address
		{"::ffff:11.1.2.3", false}, //
		{"::ffff:192.0.2.1", true}, //
		{"2001:db8::", true}, {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true}, {"2001:db9::", false}, {"2001:db7:ffff::", false},
		{"fd12:3456::1", true}, {"fe00::1", false},
		{"fd00::1%eth0", true},    // zones are ignored
		{"::a00:1", false},        // IPv4-compatible is not IPv4-mapped
		{"64:ff9b::a00:1", false}, // nor is NAT64
		{"::1", false}, {"127.0.0.1", false},
	} {
		t.Run(c.addr, func(t *testing.T) {
			if got := l.Contains(netip.MustParseAddr(c.addr)); got != c.want {
				t.Fatalf("Contains(%s) = %v, want %v", c.addr, got, c.want)
			}
		})
	}
	if l.Contains(netip.Addr{}) {
		t.Error("the invalid address is in a list")
	}
	if (ipfilter.List{}).Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("the empty list contains something")
	}
	all := ipfilter.MustParseList("0.0.0.0/0")
	if !all.Contains(netip.MustParseAddr("::ffff:1.2.3.4")) || all.Contains(netip.MustParseAddr("2001:db8::1")) {
		t.Error("0.0.0.0/0 must match every IPv4 (mapped too) and no IPv6 address")
	}
}

func TestParseListReportsEveryProblem(t *testing.T) {
	_, err := ipfilter.ParseList([]string{"10.0.0.0/8", "bad", "10.0.0.1/8", "::1"})
	if err == nil || !strings.Contains(err.Error(), "[1]") || !strings.Contains(err.Error(), "[2]") || strings.Contains(err.Error(), "[0]") {
		t.Fatalf("err = %v", err)
	}
	_, err = ipfilter.NewFilter([]string{"x"}, []string{"10.0.0.0/8", "y"})
	if err == nil || !strings.Contains(err.Error(), "allow[0]") || !strings.Contains(err.Error(), "deny[1]") {
		t.Fatalf("NewFilter err = %v", err)
	}
	l := ipfilter.MustParseList("10.0.0.0/8", "::ffff:10.0.0.0/104", "192.0.2.1")
	if l.Len() != 2 || l.String() != "10.0.0.0/8,192.0.2.1/32" {
		t.Fatalf("duplicates after normalisation: %d %s", l.Len(), l)
	}
}

func TestDecide(t *testing.T) {
	global, err := ipfilter.NewFilter(nil, []string{"203.0.113.0/24", "2001:db8:bad::/48"})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ipfilter.NewFilter([]string{"10.0.0.0/8", "fd00::/8"}, []string{"10.66.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	public := &ipfilter.Filter{}
	for _, c := range []struct {
		name   string
		addr   netip.Addr
		scopes []*ipfilter.Filter
		want   ipfilter.Verdict
	}{
		{"PublicRouteAllows", netip.MustParseAddr("198.51.100.7"), []*ipfilter.Filter{global, public}, ipfilter.Verdict{Allowed: true}},
		{"GlobalDeny", netip.MustParseAddr("203.0.113.9"), []*ipfilter.Filter{global, public}, ipfilter.Verdict{Reason: ipfilter.ReasonDenyList}},
		{"GlobalDenyMapped", netip.MustParseAddr("::ffff:203.0.113.9"), []*ipfilter.Filter{global, nil}, ipfilter.Verdict{Reason: ipfilter.ReasonDenyList}},
		{"GlobalDenyV6", netip.MustParseAddr("2001:db8:bad::1"), []*ipfilter.Filter{global, admin}, ipfilter.Verdict{Reason: ipfilter.ReasonDenyList}},
		{"RouteAllow", netip.MustParseAddr("10.1.2.3"), []*ipfilter.Filter{global, admin}, ipfilter.Verdict{Allowed: true}},
		{"RouteAllowV6", netip.MustParseAddr("fd00::5"), []*ipfilter.Filter{global, admin}, ipfilter.Verdict{Allowed: true}},
		{"NotInRouteAllow", netip.MustParseAddr("198.51.100.7"), []*ipfilter.Filter{global, admin}, ipfilter.Verdict{Reason: ipfilter.ReasonNotInAllowList, Scope: 1}},
		{"DenyWinsOverAllow", netip.MustParseAddr("10.66.1.1"), []*ipfilter.Filter{global, admin}, ipfilter.Verdict{Reason: ipfilter.ReasonDenyList, Scope: 1}},
		{"NoAddress", netip.Addr{}, []*ipfilter.Filter{global, admin}, ipfilter.Verdict{Reason: ipfilter.ReasonNoAddress}},
		{"NoAddressNoFilter", netip.Addr{}, []*ipfilter.Filter{nil, public}, ipfilter.Verdict{Allowed: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, ipfilter.Decide(c.addr, c.scopes...)); diff != "" {
				t.Fatalf("verdict (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBlocks(t *testing.T) {
	b := ipfilter.Blocks{List: abuse.NewMemoryBlockList(0)}
	t0 := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	ctx := t.Context()
	for _, a := range []string{"203.0.113.7", "2001:db8:1:2::99"} {
		if created, err := b.Block(ctx, netip.MustParseAddr(a), t0.Add(time.Hour), "auth_failures", t0); err != nil || !created {
			t.Fatalf("block %s: %v %v", a, created, err)
		}
	}
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"203.0.113.7", true}, {"::ffff:203.0.113.7", true}, {"203.0.113.8", false},
		{"2001:db8:1:2::99", true}, {"2001:db8:1:2:ffff::1", true}, // the same /64
		{"2001:db8:1:3::99", false},
	} {
		_, got, err := b.Blocked(ctx, netip.MustParseAddr(c.addr), t0.Add(time.Minute))
		if err != nil || got != c.want {
			t.Errorf("Blocked(%s) = %v, %v; want %v", c.addr, got, err, c.want)
		}
	}
	if _, ok, _ := b.Blocked(ctx, netip.MustParseAddr("203.0.113.7"), t0.Add(time.Hour)); ok {
		t.Error("blocked after the block ended")
	}
	if err := b.Unblock(ctx, netip.MustParseAddr("::ffff:203.0.113.7")); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Blocked(ctx, netip.MustParseAddr("203.0.113.7"), t0.Add(time.Minute)); ok {
		t.Error("blocked after Unblock through the mapped form")
	}
	if _, err := b.Block(ctx, netip.Addr{}, t0.Add(time.Hour), "x", t0); err == nil {
		t.Error("blocked the invalid address")
	}
}

// FuzzParsePrefix: no panic; an accepted entry is normalised (masked, unmapped, no zone),
// parses back to itself, and its list contains the first and last address of the range.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::ffff:10.0.0.0/104", "fe80::1%eth0", "10.0.0.1/8", "::ffff:0.0.0.0/96", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ipfilter.ParsePrefix(s)
		if err != nil {
			return
		}
		a := p.Addr()
		if p.Masked() != p || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("%q → %s is not normalised", s, p)
		}
		back, err := ipfilter.ParsePrefix(p.String())
		if err != nil || back != p {
			t.Fatalf("%q → %s → %s, %v", s, p, back, err)
		}
		l, err := ipfilter.ParseList([]string{s})
		if err != nil {
			t.Fatalf("ParseList(%q): %v", s, err)
		}
		last := lastAddr(p)
		if !l.Contains(a) || !l.Contains(last) {
			t.Fatalf("%s does not contain its ends %s and %s", p, a, last)
		}
		if a.Is4() && !l.Contains(netip.AddrFrom16(a.As16())) {
			t.Fatalf("%s does not contain the mapped form of %s", p, a)
		}
	})
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func BenchmarkDecide(b *testing.B) {
	var entries []string
	for i := range 5000 {
		entries = append(entries, netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}).String()+"/24")
	}
	entries = append(entries, "2001:db8::/32", "192.0.2.1", "198.51.100.0/22")
	f, err := ipfilter.NewFilter(nil, entries)
	if err != nil {
		b.Fatal(err)
	}
	a := netip.MustParseAddr("203.0.113.7")
	b.ReportAllocs()
	for b.Loop() {
		if !ipfilter.Decide(a, f).Allowed {
			b.Fatal("denied")
		}
	}
}
