package daemon

import (
	"context"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mailtls/mailtls/internal/lab"
)

// chromium starts a headless chromium (MAILTLS_CHROMIUM or chromium on
// PATH, as internal/web's browser tests find it); without one the test
// skips, or fails under CI.
func chromium(t *testing.T) context.Context {
	t.Helper()
	exe := os.Getenv("MAILTLS_CHROMIUM")
	for _, name := range []string{"chromium", "chromium-browser"} {
		if exe != "" {
			break
		}
		exe, _ = exec.LookPath(name)
	}
	if exe == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is missing (CI installs it in .ci/run)")
		}
		t.Skip("chromium is missing: set MAILTLS_CHROMIUM or install the chromium package")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// TestBrowserProgressAcrossInstances: two `serve` instances with the web
// role on one PostgreSQL store, no sticky sessions. A browser submits a
// scan on A; its progress page, loaded from B, shows the stages as A
// gathers them (B streams them from the store's notifications) and then
// B's result page. The scan runs once, on A.
func TestBrowserProgressAcrossInstances(t *testing.T) {
	dbURL := lab.NewPostgresDB(t)
	browser := chromium(t)

	a, b := newEnv(t), newEnv(t)
	a.l.DNS.MustAdd(t, `_mta-sts.people.test. 300 IN TXT "v=STSv1; id=1"`, "people.test. 300 IN MX 10 mx.people.test.")
	// The policy host answers when the test opens the gate: until then
	// the scan runs and its page can be watched.
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	defer open()
	a.l.MustPolicyHost(t, "people.test", lab.PolicyHostOptions{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		rw.Write([]byte("version: STSv1\r\nmode: testing\r\nmx: mx.people.test\r\nmax_age: 86400\r\n"))
	})})
	mx := a.l.MustMX(t, "mx.people.test", []netip.Addr{a.l.NextAddr()}, lab.SMTPOptions{})
	// The SMTP stage arrives a while after the page from B is up.
	mx.SetAcceptLatency(3 * time.Second)
	for _, e := range []*env{a, b} {
		e.writeWebConfig("store: " + dbURL + "\n")
	}
	a.start(Options{WebNet: a.l.Net(), WebRoots: a.l.CA.Pool()})
	b.start(Options{WebNet: b.l.Net(), WebRoots: b.l.CA.Pool()})
	baseA, baseB := "http://"+a.addrs["web"][0], "http://"+b.addrs["web"][0]

	ctx, cancel := chromedp.NewContext(browser)
	defer cancel()
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(js string) []int {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(tctx, chromedp.Evaluate[[]int](js))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	var mu sync.Mutex
	var toA []string
	fromB := false
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			defer mu.Unlock()
			if fromB && !strings.HasPrefix(e.Request.URL, baseB+"/") {
				toA = append(toA, e.Request.URL)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}

	do(chromedp.Navigate(baseA+"/"), chromedp.WaitVisible(chromedp.ID("domain")),
		chromedp.SendKeys(chromedp.ID("domain"), "people.test"), chromedp.Click(chromedp.CSS(`form.scan button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("progress")))
	tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
	loc, err := chromedp.Run(tctx, chromedp.Location())
	tcancel()
	if err != nil {
		t.Fatal(err)
	}
	id := regexp.MustCompile(`/scan/([a-z2-7]{26})$`).FindStringSubmatch(loc)
	if id == nil || !strings.HasPrefix(loc, baseA+"/") {
		t.Fatalf("after submitting on A the browser is at %s", loc)
	}
	// The load balancer sends the next request elsewhere: the progress
	// page and its event stream come from B.
	mu.Lock()
	fromB = true
	mu.Unlock()
	do(chromedp.Navigate(baseB+"/scan/"+id[1]), chromedp.WaitVisible(chromedp.ID("progress")))
	progress := `document.getElementById("progress") ? [Number(document.getElementById("progress").dataset.seen), document.querySelectorAll("#stages li").length] : [-1, -1]`
	m := eval(progress)
	if m[0] < 0 {
		t.Fatal("B did not serve a progress page")
	}
	rendered := m[0]
	// Live: stages arrive in B's open page after it was rendered (the
	// SMTP probe waits 3s for its banner; the policy fetch for the gate).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m = eval(progress); m[1] > rendered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stage arrived live on B's page (rendered with %d)", rendered)
		}
	}
	if st := eval(`[document.getElementById("state").textContent.includes("Scanning") ? 1 : 0]`); st[0] != 1 {
		t.Error("B's page does not say the scan is running")
	}
	open()
	do(chromedp.WaitVisible(chromedp.CSS(".grade .letter")))
	tctx, tcancel = context.WithTimeout(ctx, 10*time.Second)
	loc, err = chromedp.Run(tctx, chromedp.Location())
	tcancel()
	if err != nil || !strings.HasPrefix(loc, baseB+"/scan/"+id[1]) {
		t.Errorf("the result is at %s (%v), want B's", loc, err)
	}
	mu.Lock()
	if len(toA) > 0 {
		t.Errorf("after the switch the page asked elsewhere than B: %v", toA)
	}
	mu.Unlock()
	// One scan, on A; B followed it and measured the notifications' lag.
	ma, mb := a.admin("/metrics"), b.admin("/metrics")
	for _, c := range []struct{ metrics, want string }{
		{ma, `mailtls_web_scan_requests_total{result="started"} 1`},
		{mb, `mailtls_web_scan_requests_total{result="started"} 0`},
		{mb, `mailtls_web_scans_total{outcome="graded"} 0`},
	} {
		if !strings.Contains(c.metrics, c.want) {
			t.Errorf("/metrics lacks %s", c.want)
		}
	}
	n := metricValue(mb, `mailtls_web_scan_notify_lag_seconds_count{via="notify"}`)
	if n < 1 {
		t.Errorf("B counted %v events by NOTIFY", n)
	}
	t.Logf("B: %v events by NOTIFY, lag sum %vs", n, metricValue(mb, `mailtls_web_scan_notify_lag_seconds_sum{via="notify"}`))
}

// metricValue reads one sample of a /metrics text (-1 when absent).
func metricValue(text, series string) float64 {
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
