package app

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/abuse"
	rlredis "github.com/portcullis/portcullis/internal/ratelimit/redis"
)

// TestBlocksListAndLift: an operator sees the blocks the detectors imposed in the shared
// lists and lifts one subject from every list at once, leaving the others in force; bad
// input changes nothing; with the memory driver the command says there is nothing shared.
func TestBlocksListAndLift(t *testing.T) {
	url := os.Getenv("PORTCULLIS_TEST_REDIS")
	if url == "" {
		t.Skip("PORTCULLIS_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0): skipping the shared block lists")
	}
	s := newUserSetup(t)
	prefix := fmt.Sprintf("portcullis-test:blocks:%d:", time.Now().UnixNano())
	cfgText, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.config, fmt.Appendf(cfgText, "cache: { driver: redis, url: %q, prefix: %q }\n", url, prefix), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := rlredis.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
		c.Close()
	})
	o := rlredis.Options{Prefix: prefix}
	ctx, now := t.Context(), time.Now()
	attacker := abuse.IPSubject(netip.MustParseAddr("2001:db8:1:2::7"))
	other := abuse.IPSubject(netip.MustParseAddr("198.51.100.9"))
	block := func(list, subject, reason string) {
		if _, err := rlredis.NewBlockList(c, list, o).Block(ctx, subject, now.Add(time.Hour), reason, now); err != nil {
			t.Fatal(err)
		}
	}
	block(listGatewayBlock, attacker, "auth_failures")
	block(listIssuerThrottle, attacker, "auth_failures")
	block(listGatewayBlock, other, "enumeration")
	block(listIssuerBlock, abuse.ClientSubject("app"), "client_auth_failures")

	code, out, errOut := s.run(t, "", "blocks", "list")
	if code != ExitOK {
		t.Fatalf("list: %d %s", code, errOut)
	}
	rows := map[string]string{} // "list subject" → reason
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		if f := strings.Fields(line); len(f) == 4 {
			rows[f[0]+" "+f[1]] = f[3]
		}
	}
	want := map[string]string{
		listGatewayBlock + " " + attacker: "auth_failures", listIssuerThrottle + " " + attacker: "auth_failures",
		listGatewayBlock + " " + other: "enumeration", listIssuerBlock + " client:app": "client_auth_failures",
	}
	if !maps.Equal(rows, want) {
		t.Errorf("list: %v, want %v\n%s", rows, want, out)
	}

	// Another address of the same IPv6 /64 names the same subject.
	if code, out, errOut = s.run(t, "", "blocks", "lift", "--ip", "2001:db8:1:2::99"); code != ExitOK || !strings.Contains(out, "lifted") {
		t.Fatalf("lift: %d %s %s", code, out, errOut)
	}
	blocked := func(list, subject string) bool {
		_, ok, err := rlredis.NewBlockList(c, list, o).Blocked(ctx, subject, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if blocked(listGatewayBlock, attacker) || blocked(listIssuerThrottle, attacker) {
		t.Error("the address is still blocked")
	}
	if !blocked(listGatewayBlock, other) || !blocked(listIssuerBlock, abuse.ClientSubject("app")) {
		t.Error("lifting one subject lifted others")
	}
	if code, out, _ = s.run(t, "", "blocks", "lift", "--client", "app"); code != ExitOK || blocked(listIssuerBlock, abuse.ClientSubject("app")) {
		t.Errorf("lift --client: %d %s", code, out)
	}
	if code, out, _ = s.run(t, "", "blocks", "lift", "--ip", "203.0.113.1"); code != ExitOK || !strings.Contains(out, "no block in force") {
		t.Errorf("lift of an address never blocked: %d %s", code, out)
	}

	for _, args := range [][]string{
		{"blocks", "lift"},
		{"blocks", "lift", "--ip", "198.51.100.9", "--client", "app"},
		{"blocks", "lift", "--ip", "not-an-address"},
		{"blocks", "lift", "--subject", strings.Repeat("x", abuse.MaxSubjectLen+1)},
		{"blocks", "nonsense"},
	} {
		if code, out, errOut := s.run(t, "", args...); code != ExitUsage || out != "" || errOut == "" {
			t.Errorf("%v: %d, stdout %q, stderr %q; want exit 2 and a message", args, code, out, errOut)
		}
	}
	if !blocked(listGatewayBlock, other) {
		t.Error("bad input lifted a block")
	}

	mem := newUserSetup(t)
	if code, _, errOut := mem.run(t, "", "blocks", "list"); code != ExitFailure || !strings.Contains(errOut, "cache.driver is memory") {
		t.Errorf("memory driver: %d %q", code, errOut)
	}
}
