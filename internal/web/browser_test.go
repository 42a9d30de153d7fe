package web

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/scanjob"
)

// The browser tests drive Debian's chromium through chromedp and check
// every page state with axe-core (WCAG 2.0, 2.1 and 2.2, levels A and AA).
// They need:
//
//   - chromium: MAILTLS_CHROMIUM, or chromium on PATH (apt-get install chromium);
//   - axe-core's axe.min.js: MAILTLS_AXE_JS, or the copy .ci/run unpacks
//     from the npm package into /var/cache/mailtls/axe-4.14.1.
//
// Without them the tests skip, except under CI, where they fail.
// Screenshots go to MAILTLS_SCREENSHOTS (default: a mailtls-screenshots
// folder in the temporary directory), one folder per test; -update-screenshot
// also writes docs/web-checker.png for the README.

var updateScreenshot = flag.Bool("update-screenshot", false, "write docs/web-checker.png from the browser test")

const defaultAxe = "/var/cache/mailtls/axe-4.14.1/package/axe.min.js" // where .ci/run unpacks it

// need skips or, under CI, fails a test that lacks a component.
func need(t *testing.T, what, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing: %s (CI installs it in .ci/run)", what, why)
	}
	t.Skipf("%s is missing: %s", what, why)
}

// browserEnv is a headless chromium and axe-core for one test.
type browserEnv struct {
	t     *testing.T
	ctx   context.Context // the browser; tabs derive from it
	axe   string
	shots string
}

func newBrowser(t *testing.T) *browserEnv {
	t.Helper()
	exe := os.Getenv("MAILTLS_CHROMIUM")
	if exe == "" {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				exe = p
				break
			}
		}
	}
	if exe == "" {
		need(t, "chromium", "set MAILTLS_CHROMIUM or install the chromium package")
	}
	axePath := os.Getenv("MAILTLS_AXE_JS")
	if axePath == "" {
		axePath = defaultAxe
	}
	axe, err := os.ReadFile(axePath)
	if err != nil {
		need(t, "axe-core", fmt.Sprintf("%v (set MAILTLS_AXE_JS, or run: npm pack axe-core@4.14.1 and unpack it into %s)", err, filepath.Dir(filepath.Dir(defaultAxe))))
	}
	shots := os.Getenv("MAILTLS_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "mailtls-screenshots")
	}
	shots = filepath.Join(shots, t.Name())
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)
	profile, err := os.MkdirTemp("", "mailtls-chromium")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // CI runs as root
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "en-US"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		for range 50 { // chromium's helpers may still write for a moment
			if os.RemoveAll(profile) == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return &browserEnv{t: t, ctx: ctx, axe: string(axe), shots: shots}
}

// tab opens a new tab; js false disables JavaScript in it.
func (b *browserEnv) tab(js bool) context.Context {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: !js})
		return err
	})); err != nil {
		b.t.Fatal(err)
	}
	return ctx
}

// do runs steps with a deadline.
func (b *browserEnv) do(ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

// submit clicks sel (a form's button or a link) and waits until the next
// page has loaded, then for wait: a WaitVisible alone could match the page
// that is being left.
func (b *browserEnv) submit(ctx context.Context, sel, wait string) {
	b.t.Helper()
	run(b, ctx, chromedp.Evaluate[bool](`window.__leaving = true`))
	b.do(ctx, chromedp.Click(chromedp.CSS(sel)))
	deadline := time.Now().Add(60 * time.Second)
	for !run(b, ctx, chromedp.Evaluate[bool](`!window.__leaving && document.readyState === "complete"`)) {
		if time.Now().After(deadline) {
			b.t.Fatalf("clicking %s loaded no new page", sel)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.do(ctx, chromedp.WaitVisible(chromedp.CSS(wait)))
}

func run[T any](b *browserEnv, ctx context.Context, a chromedp.Action[T]) T {
	b.t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		b.t.Fatal(err)
	}
	return v
}

// shot saves a full-page screenshot as name.png.
func (b *browserEnv) shot(ctx context.Context, name string) []byte {
	b.t.Helper()
	png := run(b, ctx, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return png
}

// axeViolation is what the test reports of an axe-core violation.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target  []any  `json:"target"`
		HTML    string `json:"html"`
		Summary string `json:"failureSummary"`
	} `json:"nodes"`
}

// checkA11y runs axe-core on the page (WCAG 2.0, 2.1 and 2.2 at A and
// AA) and fails on any violation. The script is injected through the
// DevTools protocol, which the page's CSP does not govern; it runs even
// when the page's own scripts are disabled.
func (b *browserEnv) checkA11y(ctx context.Context, state string) {
	b.t.Helper()
	run(b, ctx, chromedp.Evaluate[any](b.axe+";0"))
	out := run(b, ctx, chromedp.Evaluate[string](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]}, resultTypes: ["violations"]}).then(r => JSON.stringify(r.violations))`,
		chromedp.EvalAwaitPromise))
	var vs []axeViolation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		b.t.Fatalf("%s: axe result: %v", state, err)
	}
	for _, v := range vs {
		var where []string
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprintf("%v %s: %s", n.Target, n.HTML, n.Summary))
		}
		b.t.Errorf("%s: axe %s (%s): %s\n  %s", state, v.ID, v.Impact, v.Help, strings.Join(where, "\n  "))
	}
}

// checkA11yNoJS is checkA11y for a tab without JavaScript: axe-core needs
// timers, so scripts are allowed for the check alone. Nothing of the page
// runs then: its scripts were skipped when it loaded, and its <noscript>
// content stays in the DOM.
func (b *browserEnv) checkA11yNoJS(ctx context.Context, state string) {
	b.t.Helper()
	set := func(disabled bool) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: disabled})
			return err
		})
	}
	b.do(ctx, set(false))
	defer b.do(ctx, set(true))
	if n := run(b, ctx, chromedp.Evaluate[int](`document.querySelectorAll(".copy-button").length`)); n != 0 {
		b.t.Errorf("%s: the page's script ran", state)
	}
	b.checkA11y(ctx, state)
}

// text returns the text of the first element matching css.
func (b *browserEnv) text(ctx context.Context, css string) string {
	b.t.Helper()
	return run(b, ctx, chromedp.Text(chromedp.CSS(css)))
}

// TestBrowserScan: a person types a lab domain, watches the stages
// arrive, sees the grade and a fix, copies the fix with the button, and
// downloads the policy file and the JSON report.
func TestBrowserScan(t *testing.T) {
	b := newBrowser(t)
	h := newHarness(t, harnessOptions{fetchTimeout: time.Minute})
	world{t, h.lab}.grade("people.test", "F")
	// The policy host answers only when the test opens the gate (no record
	// points at it, so the grade stays F): until then the scan runs, and
	// the page can be watched and checked at leisure.
	gate := make(chan struct{})
	var closeGate sync.Once
	open := func() { closeGate.Do(func() { close(gate) }) }
	defer open()
	h.lab.MustPolicyHost(t, "people.test", lab.PolicyHostOptions{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
		}
		http.NotFound(rw, r)
	})})
	h.lab.DNS.SetLatency(400 * time.Millisecond) // the page is up before the first stage
	ctx := b.tab(true)
	// Every request the pages make goes to the checker itself: no
	// third-party host, no tracking (the privacy promise).
	var netMu sync.Mutex
	var own int
	var foreign []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			netMu.Lock()
			defer netMu.Unlock()
			if strings.HasPrefix(e.Request.URL, h.srv.URL+"/") {
				own++
			} else {
				foreign = append(foreign, e.Request.URL)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		netMu.Lock()
		defer netMu.Unlock()
		if own < 5 || len(foreign) > 0 {
			t.Errorf("the pages made %d requests to the checker and these elsewhere: %v", own, foreign)
		}
	}()
	downloads := t.TempDir()
	b.do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads}); err != nil {
			return err
		}
		for _, p := range []string{"clipboard-read", "clipboard-write"} {
			if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
				Permission: &browser.PermissionDescriptor{Name: p}, Setting: browser.PermissionSettingGranted, Origin: h.srv.URL}); err != nil {
				return err
			}
		}
		return nil
	}))

	b.do(ctx, chromedp.Navigate(h.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("domain")))
	b.shot(ctx, "01-home")
	b.checkA11y(ctx, "home")
	b.do(ctx, chromedp.SendKeys(chromedp.ID("domain"), "postmaster@people.test"), chromedp.Click(chromedp.CSS(`form.scan button[type=submit]`)))

	// Live progress: while the policy fetch waits, every other stage
	// arrives in the open page, after it was rendered.
	var rendered, shown int
	for n, still, deadline := -1, 0, time.Now().Add(30*time.Second); still < 10; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the progress page did not settle (%d stages)", n)
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := chromedp.Run(tctx, chromedp.Evaluate[[]int](`document.getElementById("progress") ? [Number(document.getElementById("progress").dataset.seen), document.querySelectorAll("#stages li").length] : [-1, -1]`))
		cancel()
		if err != nil || m[0] < 0 {
			continue // still on the way to the progress page
		}
		if m[1] == n && n > 0 {
			still++
		} else {
			n, still = m[1], 0
		}
		rendered, shown = m[0], m[1]
	}
	if shown <= rendered {
		t.Errorf("the progress page was rendered with %d stages and shows %d: none arrived live", rendered, shown)
	}
	b.shot(ctx, "02-progress")
	b.checkA11y(ctx, "progress")
	if st := b.text(ctx, "#state"); !strings.Contains(st, "Scanning") {
		t.Errorf("state line %q", st)
	}
	open() // the last stage, then the report
	h.lab.DNS.SetLatency(0)
	b.do(ctx, chromedp.WaitVisible(chromedp.CSS(".grade .letter")))
	if g := b.text(ctx, ".grade .letter"); g != "F" {
		t.Errorf("grade %q, want F", g)
	}
	if !strings.Contains(b.text(ctx, "h1"), "Report for people.test") {
		t.Errorf("heading %q", b.text(ctx, "h1"))
	}
	b.shot(ctx, "03-result")
	b.checkA11y(ctx, "result")
	if *updateScreenshot {
		png := run(b, ctx, chromedp.CaptureScreenshot())
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "web-checker.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The copy button puts the zone-file line on the clipboard.
	want := b.text(ctx, "li.fix-dns pre.copy")
	b.do(ctx, chromedp.Click(chromedp.CSS("li.fix-dns .copy-button")))
	got := run(b, ctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if got != want || !strings.HasPrefix(got, "_mta-sts.people.test. 3600 IN TXT \"v=STSv1; id=") {
		t.Errorf("clipboard %q, want the record %q", got, want)
	}
	if label := b.text(ctx, "li.fix-dns .copy-button"); label != "Copied" {
		t.Errorf("button says %q after copying", label)
	}

	// Downloads.
	b.do(ctx, chromedp.Click(chromedp.CSS(`.downloads a[href$="mta-sts.txt"]`)), chromedp.Click(chromedp.CSS(`.downloads a[href$="report.json"]`)))
	policy := waitFile(t, filepath.Join(downloads, "mta-sts.txt"))
	if !strings.HasPrefix(policy, "version: STSv1\r\n") || strings.Count(policy, "\n") != strings.Count(policy, "\r\n") {
		t.Errorf("downloaded policy %q", policy)
	}
	report := waitFile(t, filepath.Join(downloads, "people.test.mailtls.json"))
	var doc map[string]any
	if err := json.Unmarshal([]byte(report), &doc); err != nil || doc["schema_version"] != float64(1) || doc["domain"] != "people.test" {
		t.Errorf("downloaded report: %v %.200s", err, report)
	}

	// A link to one finding lands on it.
	loc := run(b, ctx, chromedp.Location())
	b.do(ctx, chromedp.Navigate(loc+"#finding-sts-record-missing"))
	if m := run(b, ctx, chromedp.Evaluate[bool](`document.querySelector(":target") && document.querySelector(":target").id === "finding-sts-record-missing"`)); !m {
		t.Error("#finding-sts-record-missing is not the target")
	}

	// Mobile width and print.
	b.do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	b.shot(ctx, "04-result-mobile")
	b.checkA11y(ctx, "result on a phone")
	if w := run(b, ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
		t.Errorf("the result page is %d px wide on a 390 px phone", w)
	}
	b.do(ctx, chromedp.EmulateReset(), chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
		return err
	}))
	if v := run(b, ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("form")).display`)); v != "none" {
		t.Errorf("print: the form is shown (%s)", v)
	}
	b.shot(ctx, "05-result-print")
}

func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 {
			return string(b)
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(filepath.Dir(path))
			t.Fatalf("%s was not downloaded (folder has %v)", path, entries)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBrowserWithoutJavaScript: the form posts, the progress page
// refreshes itself until the report is there, and the downloads work.
func TestBrowserWithoutJavaScript(t *testing.T) {
	b := newBrowser(t)
	h := newHarness(t, harnessOptions{fetchTimeout: time.Minute})
	world{t, h.lab}.grade("nojs.test", "B")
	h.lab.DNS.SetLatency(800 * time.Millisecond) // a scan of a few seconds
	ctx := b.tab(false)
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/"), chromedp.WaitReady(chromedp.ID("domain")))
	b.checkA11yNoJS(ctx, "home without JavaScript")
	b.do(ctx, chromedp.SendKeys(chromedp.ID("domain"), "nojs.test"), chromedp.Click(chromedp.CSS(`form.scan button[type=submit]`)))
	// The progress page reloads itself (a refresh in <noscript>) with more
	// stages each time, until the report replaces it. Nothing here may
	// hold the page: it is watched only.
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		done, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`document.querySelector(".grade") !== null`))
		cancel()
		if err == nil && done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The browser asked again and again, each time for what came after
	// the stages it had (?seen=N, N growing).
	var asked []int
	for _, r := range h.Requests() {
		if m := regexp.MustCompile(`^GET /scan/[a-z2-7]+\?seen=(\d+)$`).FindStringSubmatch(r); m != nil {
			n, _ := strconv.Atoi(m[1])
			asked = append(asked, n)
		}
	}
	if len(asked) < 2 || !slices.IsSorted(asked) || asked[0] == asked[len(asked)-1] {
		t.Errorf("the progress page refreshed with ?seen= %v; want it to ask again with more stages each time", asked)
	}
	h.lab.DNS.SetLatency(0)
	b.do(ctx, chromedp.WaitReady(chromedp.CSS(".grade .letter")))
	if g := b.text(ctx, ".grade .letter"); g != "B" {
		t.Errorf("grade %q, want B", g)
	}
	if n := run(b, ctx, chromedp.Evaluate[int](`document.querySelectorAll(".copy-button").length`)); n != 0 {
		t.Errorf("%d copy buttons without JavaScript", n)
	}
	b.shot(ctx, "02-result")
	b.checkA11yNoJS(ctx, "result without JavaScript")
	// The downloads are plain links: they need no script either. (A
	// report with a policy file among its fixes: an F.)
	world{t, h.lab}.grade("nojsfix.test", "F")
	fix := h.startScan("nojsfix.test", true)
	h.finish(fix)
	downloads := t.TempDir()
	b.do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
		return err
	}), chromedp.Navigate(h.srv.URL+"/scan/"+fix), chromedp.WaitReady(chromedp.CSS(`.downloads a[href$="mta-sts.txt"]`)),
		chromedp.Click(chromedp.CSS(`.downloads a[href$="mta-sts.txt"]`)), chromedp.Click(chromedp.CSS(`.downloads a[href$="report.json"]`)))
	if p := waitFile(t, filepath.Join(downloads, "mta-sts.txt")); !strings.HasPrefix(p, "version: STSv1\r\n") || strings.Count(p, "\n") != strings.Count(p, "\r\n") {
		t.Errorf("downloaded policy without JavaScript %q", p)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(waitFile(t, filepath.Join(downloads, "nojsfix.test.mailtls.json"))), &doc); err != nil || doc["grade"] != "F" {
		t.Errorf("downloaded report without JavaScript: %v, grade %v", err, doc["grade"])
	}

	// A progress page with stages, held still to be checked: the policy
	// fetch waits for a gate, so no stage comes while the page is looked
	// at, and Stop cancels the refresh that waits for the next one.
	h.lab.DNS.SetLatency(0)
	gate := make(chan struct{})
	defer func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}()
	w := world{t, h.lab}
	w.dns("held.test", `_mta-sts.$D. 300 IN TXT "v=STSv1; id=1"`, "$D. 300 IN MX 10 mx.$D.")
	h.lab.MustMX(t, "mx.held.test", []netip.Addr{h.lab.NextAddr()}, lab.SMTPOptions{})
	h.lab.MustPolicyHost(t, "held.test", lab.PolicyHostOptions{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
		}
		rw.Write([]byte("version: STSv1\r\nmode: testing\r\nmx: mx.held.test\r\nmax_age: 86400\r\n"))
	})})
	id := h.startScan("held.test", true)
	j, _ := h.jobs.Get(context.Background(), id)
	for n, still := -1, 0; still < 10; time.Sleep(50 * time.Millisecond) { // every other stage is in
		if m := len(j.Snapshot().Events); m == n {
			still++
		} else {
			n, still = m, 0
		}
	}
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/scan/"+id+"?seen=0"), chromedp.Stop())
	if n := run(b, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#stages li").length`)); n == 0 {
		t.Errorf("the progress page shows no stages")
	}
	b.shot(ctx, "01-progress")
	b.checkA11yNoJS(ctx, "progress without JavaScript")
	close(gate)
	h.finish(id)
}

// TestBrowserGrades: a report for every grade and for an undetermined
// result, each checked with axe-core; and the error pages.
func TestBrowserGrades(t *testing.T) {
	b := newBrowser(t)
	h := newHarness(t, harnessOptions{jobs: scanjob.Config{PerClientRate: -1, PerClientConcurrent: -1}})
	w := world{t, h.lab}
	grades := []struct{ domain, setup, want string }{
		{"aplus.test", "A+", "A+"}, {"a.test", "A", "A"}, {"b.test", "B", "B"}, {"c.test", "C", "C"},
		{"d.test", "D", "D"}, {"f.test", "F", "F"}, {"undetermined.test", "undetermined", "none"},
	}
	ids := map[string]string{}
	for _, g := range grades {
		w.grade(g.domain, g.setup)
		ids[g.domain] = h.startScan(g.domain, g.setup != "A")
	}
	ctx := b.tab(true)
	for _, g := range grades {
		h.finish(ids[g.domain])
		b.do(ctx, chromedp.Navigate(h.srv.URL+"/scan/"+ids[g.domain]), chromedp.WaitVisible(chromedp.CSS(".grade .letter")))
		if got := b.text(ctx, ".grade .letter"); got != g.want {
			t.Errorf("%s: grade %q, want %q", g.domain, got, g.want)
		}
		name := "grade-" + regexp.MustCompile(`[^a-z]`).ReplaceAllString(strings.ToLower(strings.ReplaceAll(g.want, "+", "plus")), "")
		b.shot(ctx, name)
		b.checkA11y(ctx, "report with grade "+g.want)
	}
	for name, path := range map[string]string{"not-found": "/scan/aaaaaaaaaaaaaaaaaaaaaaaaaa", "no-page": "/nope"} {
		b.do(ctx, chromedp.Navigate(h.srv.URL+path), chromedp.WaitVisible(chromedp.CSS("h1")))
		b.shot(ctx, "error-"+name)
		b.checkA11y(ctx, "error page "+name)
	}
	// A refused input, shown on the home page.
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/"), chromedp.SendKeys(chromedp.ID("domain"), "not a domain"), chromedp.Click(chromedp.CSS(`form.scan button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("domain-error")))
	b.shot(ctx, "home-error")
	b.checkA11y(ctx, "home with an input error")
}
