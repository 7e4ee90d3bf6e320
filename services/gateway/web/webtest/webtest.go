// Package webtest runs the browser assets of package web in a real headless
// Chromium for tests: Browser starts one, Page opens a URL in it, and Eval
// and Wait run JavaScript there.
//
// The binary is /usr/bin/chromium unless FRAMECAST_CHROMIUM names another.
// A test that uses it fails, saying what to install, when the binary is
// absent (Debian: apt-get install chromium; make deps does it), unless
// FRAMECAST_SKIP_BROWSER=1 says to skip the browser tests.
package webtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// DefaultChromium is the binary Browser starts when FRAMECAST_CHROMIUM is
// unset.
const DefaultChromium = "/usr/bin/chromium"

// EnvSkip names the variable that, set to 1, skips the browser tests instead
// of failing them on a machine without Chromium. Unset, they always run.
const EnvSkip = "FRAMECAST_SKIP_BROWSER"

// WaitTimeout bounds each Wait. Generous: the machine may be shared and
// loaded; a healthy run takes a fraction of it.
const WaitTimeout = 30 * time.Second

// Page is one browser tab. Its console output and uncaught exceptions are
// collected so a failing test can show them.
type Page struct {
	t   testing.TB
	ctx context.Context

	mu      sync.Mutex
	console []string
}

// Browser starts a headless Chromium with a fresh profile that lives until
// the test ends. It skips the test when FRAMECAST_SKIP_BROWSER=1, and fails
// it when the binary is absent.
func Browser(t testing.TB) context.Context {
	t.Helper()
	if os.Getenv(EnvSkip) == "1" {
		t.Skipf("browser test skipped: %s=1", EnvSkip)
	}
	bin := os.Getenv("FRAMECAST_CHROMIUM")
	if bin == "" {
		bin = DefaultChromium
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no Chromium at %s: install it with `make deps` (Debian: apt-get install chromium), set FRAMECAST_CHROMIUM to another binary, or set %s=1 to skip the browser tests", bin, EnvSkip)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	return ctx
}

// Open opens url in a new tab of the browser and waits for its load event.
func Open(t testing.TB, browser context.Context, url string) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	p := &Page{t: t, ctx: ctx}
	chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value))
			}
			p.log(fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg = d.Exception.Description
			}
			p.log(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
		}
	})
	tctx, tcancel := context.WithTimeout(ctx, WaitTimeout)
	defer tcancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return p
}

func (p *Page) log(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.console) < 200 {
		p.console = append(p.console, s)
	}
}

// Console returns what the page logged and threw so far.
func (p *Page) Console() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.console, "\n")
}

// Eval evaluates expr in the page, awaiting it when it is a promise, and
// returns its value decoded into T. A thrown exception fails the test.
func Eval[T any](p *Page, expr string) T {
	p.t.Helper()
	v, err := TryEval[T](p, expr)
	if err != nil {
		p.t.Fatalf("eval %s: %v\npage console:\n%s", short(expr), err, p.Console())
	}
	return v
}

// TryEval is Eval that returns the error instead of failing the test.
func TryEval[T any](p *Page, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(p.ctx, WaitTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// Wait polls the JavaScript predicate expr in the page until it is truthy,
// failing the test after WaitTimeout; debug is evaluated then to say what the
// page holds.
func (p *Page) Wait(expr, debug string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, WaitTimeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")",
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(WaitTimeout)))
	if err == nil {
		return
	}
	state := "(no debug expression)"
	if debug != "" {
		if s, derr := TryEval[any](p, debug); derr == nil {
			state = fmt.Sprintf("%v", s)
		} else {
			state = derr.Error()
		}
	}
	if errors.Is(err, chromedp.ErrPollingTimeout) {
		err = fmt.Errorf("still false after %v", WaitTimeout)
	}
	p.t.Fatalf("wait for %s: %v\npage state: %s\npage console:\n%s", short(expr), err, state, p.Console())
}

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}

// Screenshot writes a PNG of the whole page to path.
func (p *Page) Screenshot(path string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, WaitTimeout)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		p.t.Errorf("screenshot %s: %v", path, err)
	}
}
