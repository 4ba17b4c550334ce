package demoweb_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// TestBrowserSignIn drives Debian's chromium, headless, through the demo: alice signs in
// (a wrong password first), consents, lands on the demo page, which shows her name and her
// orders; a screenshot is taken; then she signs out. It exercises what only a browser
// checks: the pages' CSP (form-action on the redirect that follows the consent post), the
// __Host- cookies, SameSite and the Origin header of real form posts.
func TestBrowserSignIn(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is not installed (apt-get install -y chromium): the browser test cannot run", chromiumPath)
	}
	d := startDemo(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.IgnoreCertErrors, // the demo's own CA; the issuer and the page still run HTTPS
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 900),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	// The first Run starts the browser: no timeout on it (it would stop the browser).
	if err := chromedp.Do(ctx, chromedp.Navigate(d.info.Upstream+"/app/")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	step, cancelStep := context.WithTimeout(ctx, 90*time.Second)
	defer cancelStep()

	err := chromedp.Do(step,
		chromedp.WaitVisible(chromedp.ID("sign-in")),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "not her password"),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("error")),
	)
	if err != nil {
		t.Fatalf("wrong password step: %v", err)
	}
	msg, err := chromedp.Run(step, chromedp.Text(chromedp.ID("error")))
	if err != nil || !strings.Contains(msg, "Wrong username or password") {
		t.Fatalf("wrong password message %q (%v)", msg, err)
	}
	err = chromedp.Do(step,
		chromedp.SendKeys(chromedp.ID("password"), d.password(t, "alice")),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("allow")),
	)
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("sign-in: %v (page: %s)", err, loc)
	}
	// The consent page is styled by the issuer's own stylesheet, which its CSP allows.
	radius, err := chromedp.Run(step, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("main.card")).borderTopLeftRadius`))
	if err != nil || radius != "12px" {
		t.Errorf("the issuer's stylesheet did not apply (border radius %q, %v)", radius, err)
	}
	if keep := os.Getenv("PORTCULLIS_KEEP_SCREENSHOT"); keep != "" {
		if b, err := chromedp.Run(step, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(strings.TrimSuffix(keep, ".png")+"-consent.png", b, 0o600)
		}
	}
	err = chromedp.Do(step,
		chromedp.Click(chromedp.ID("allow")),
		chromedp.WaitVisible(chromedp.ID("user-name")),
	)
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("sign-in: %v (page: %s)", err, loc)
	}
	loc, err := chromedp.Run(step, chromedp.Location())
	if err != nil || loc != d.info.Upstream+"/app/" {
		t.Errorf("landed on %q (%v)", loc, err)
	}
	name, err := chromedp.Run(step, chromedp.Text(chromedp.ID("user-name")))
	if err != nil || name != "Alice Liddell" {
		t.Errorf("the page shows %q (%v), want Alice Liddell", name, err)
	}
	orders, err := chromedp.Run(step, chromedp.Text(chromedp.ID("orders")))
	if err != nil || !strings.Contains(orders, "A-1001") || strings.Contains(orders, "G-2001") {
		t.Errorf("orders %q (%v): want acme's, and only acme's", orders, err)
	}

	shot, err := chromedp.Run(step, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "alice-signed-in.png")
	if err := os.WriteFile(path, shot, 0o600); err != nil {
		t.Fatal(err)
	}
	checkScreenshot(t, path)

	err = chromedp.Do(step,
		chromedp.Click(chromedp.ID("sign-out")),
		chromedp.WaitVisible(chromedp.ID("sign-in")),
	)
	if err != nil {
		t.Fatalf("sign-out: %v", err)
	}
	if loc, _ := chromedp.Run(step, chromedp.Location()); loc != d.info.Upstream+"/app/" {
		t.Errorf("after sign-out: %s", loc)
	}
}

// checkScreenshot asserts a real picture: a PNG of a sensible size with more than a few
// colours (text, buttons and a table, not a blank page).
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	bounds := img.Bounds()
	if bounds.Dx() < 400 || bounds.Dy() < 300 {
		t.Errorf("screenshot is %v", bounds)
	}
	if n := colours(img, 64); n < 16 {
		t.Errorf("screenshot has %d colours: a blank page?", n)
	}
	t.Logf("screenshot %s: %v, %d bytes", path, bounds, len(b))
	if keep := os.Getenv("PORTCULLIS_KEEP_SCREENSHOT"); keep != "" {
		_ = os.WriteFile(keep, b, 0o600)
	}
}

func colours(img image.Image, limit int) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}
