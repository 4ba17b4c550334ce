package e2e

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDemoRateLimitStep checks the walkthrough's rate-limit step: /api/orders is limited per
// client, so a burst of 30 gets the first ones through and 429s after them, with the limit's
// headers on every answer, and another client's budget is untouched.
func TestDemoRateLimitStep(t *testing.T) {
	d := startDemo(t, t.TempDir())
	globex, acme := d.token(t, "globex-app"), d.token(t, "acme-app")
	counts := map[int]int{}
	var sawRetryAfter bool
	for range 30 {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", d.info.Gateway+"/api/orders", nil)
		req.Header.Set("Authorization", "Bearer "+globex)
		resp, err := d.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		counts[resp.StatusCode]++
		if resp.Header.Get("RateLimit-Policy") == "" || resp.Header.Get("RateLimit") == "" {
			t.Errorf("answer %d without RateLimit-Policy/RateLimit headers: %v", resp.StatusCode, resp.Header)
		}
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "" {
			sawRetryAfter = true
		}
	}
	if counts[200] < 20 || counts[429] < 1 || counts[200]+counts[429] != 30 {
		t.Fatalf("30 quick requests gave %v; want the burst of 20 (and a little refill) through, then 429s", counts)
	}
	if !sawRetryAfter {
		t.Error("no 429 carried Retry-After")
	}
	// acme has its own budget.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", d.info.Gateway+"/api/orders", nil)
	req.Header.Set("Authorization", "Bearer "+acme)
	resp, err := d.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("acme after globex's burst: %d, want 200", resp.StatusCode)
	}

	// The printed line itself, run as printed.
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the printed rate-limit line is checked with net/http only", tool)
		}
	}
	var line string
	for _, l := range strings.Split(d.stdout.String(), "\n") {
		if strings.Contains(l, "[1-30]") {
			line = l
		}
	}
	if line == "" {
		t.Fatal("the walkthrough has no rate-limit line")
	}
	time.Sleep(1100 * time.Millisecond) // the burst above emptied globex's budget: 20/s refills it in 1 s
	script := "set -u\nGLOBEX=" + d.token(t, "globex-app") + "\n" + line + "\n"
	out, err := exec.CommandContext(t.Context(), "bash", "-c", script).Output()
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	codes := strings.Fields(strings.TrimPrefix(strings.TrimSpace(string(out)), "30 requests at once:"))
	n200, n429 := 0, 0
	for _, c := range codes {
		switch c {
		case "200":
			n200++
		case "429":
			n429++
		}
	}
	if len(codes) != 30 || n200 < 20 || n429 < 1 || n200+n429 != 30 {
		t.Fatalf("the printed line showed %q; want 30 codes, the first 20 or so 200 and then 429s", out)
	}
}
