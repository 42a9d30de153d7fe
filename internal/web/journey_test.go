package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/webhook"
)

var sinkLinkRE = regexp.MustCompile(`https?://[^\s]+(/[a-z/]+\?token=[A-Za-z0-9_%-]+)`)

// TestBrowserJourney is the issue's end-to-end journey in chromium, with
// the account's and the alerts' mail going through a relay to the lab's
// SMTP sink and a webhook receiver in the lab: sign up, open the
// verification mail's link, log in, scan a lab domain and save it, add a
// webhook; then the lab breaks the domain three ways, one at a time (RFC
// 8461 §3.1: the policy changed without a new id; §4.1: an MX the policy
// does not cover; §4.2: an expired MX certificate), and each scheduled
// rescan (on the injected clock) gives exactly one alert mail and one
// webhook with a valid signature naming the new problem; the dashboard
// shows the regression, the domain page the open problems and the diff
// what changed; the repair gives one "resolved" notice on each channel and
// nothing more after. axe-core checks every page state.
func TestBrowserJourney(t *testing.T) {
	b := newBrowser(t)
	h := newHarness(t, harnessOptions{accounts: true, relay: true, idle: 60 * 24 * time.Hour, lifetime: 90 * 24 * time.Hour})
	l := h.lab
	const d = "journey.test"
	const addr = "ann@example.test"

	// The domain: enforce, one MX with a good certificate, TLS-RPT.
	var mu sync.Mutex
	policy := "version: STSv1\r\nmode: enforce\r\nmx: mx1." + d + "\r\nmax_age: 604800\r\n"
	l.DNS.MustAdd(t, d+`. 300 IN MX 10 mx1.`+d+`.`, `_mta-sts.`+d+`. 300 IN TXT "v=STSv1; id=1"`,
		`_smtp._tls.`+d+`. 300 IN TXT "v=TLSRPTv1; rua=mailto:tls@`+d+`"`)
	l.MustPolicyHost(t, d, lab.PolicyHostOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, policy)
	})})
	setPolicy := func(p string) { mu.Lock(); policy = p; mu.Unlock() }
	l.MustMX(t, "mx1."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	hooks := l.MustHookSink(t, "hooks.journey.test")

	// The worker as serve builds it: the checker's scanner, alert mail
	// through the same relay, webhooks behind the guard.
	wh, err := webhook.New(webhook.Options{Dialer: &dial.Dialer{Guard: dial.NewGuardPorts(dial.WebhookPorts, labAllow...), Net: l.Net()},
		Roots: l.CA.Pool(), Timeout: 10 * time.Second,
		Lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return resolve.HostAddrs(ctx, &resolve.Client{Servers: []string{l.DNS.Addr()}, Timeout: lab.DNSTimeout, Attempts: lab.DNSAttempts}, host)
		}})
	if err != nil {
		t.Fatal(err)
	}
	worker, err := monitor.NewServe(monitor.Config{ScannerVersion: "lab", BaseURL: h.srv.URL, ScanTimeout: lab.ScanBudget},
		monitor.ServeOptions{Store: h.db, Scanner: h.scanner, Mail: monitor.MailVia(h.relay), Webhook: wh, MessageIDHost: "checker.example.test", Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}

	// Sign up, the verification mail's link, log in.
	ctx := b.tab(true)
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/signup"), chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), addr), chromedp.SendKeys(chromedp.ID("password"), testPassword))
	b.submit(ctx, `form.account button[type=submit]`, `main p[role=status]`)
	b.checkA11y(ctx, "check your mail")
	b.do(ctx, chromedp.Navigate(h.srv.URL+h.sinkLink(addr, "/verify")), chromedp.WaitVisible(chromedp.CSS(`form.account button`)))
	b.submit(ctx, `form.account button`, `main a[href="/login"]`)
	b.checkA11y(ctx, "address confirmed")
	b.logIn(ctx, h, addr)

	// Scan the lab domain and save it: the first scheduled scan is the
	// baseline and alerts nothing.
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("domain")), chromedp.SendKeys(chromedp.ID("domain"), d))
	b.submit(ctx, `form.scan button[type=submit]`, `form.save button`)
	b.checkA11y(ctx, "result")
	b.submit(ctx, `form.save button`, `p.notice`)
	b.checkA11y(ctx, "domain saved")
	ann, err := h.db.GetUserByEmail(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := h.db.ListDomains(t.Context(), ann.ID, "", 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("saved domains %v: %v", ds, err)
	}
	dom := ds[0]

	// A webhook; its secret is shown once.
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/settings/channels"), chromedp.WaitVisible(chromedp.ID("url")),
		chromedp.SetValue(chromedp.ID("url"), "https://hooks.journey.test/mailtls"))
	b.submit(ctx, `section[aria-labelledby=webhook-h] button`, `#new-secret`)
	secret := []byte(run(b, ctx, chromedp.Evaluate[string](`document.getElementById("new-secret").value`)))
	b.checkA11y(ctx, "webhook added")
	if p := b.text(ctx, "table.channels"); !strings.Contains(p, addr) || !strings.Contains(p, "hooks.journey.test") {
		t.Fatalf("channels: %s", p)
	}

	// step moves the clock to the domain's next scheduled scan and runs
	// it, and any confirming rescan a transient problem asks for, then
	// delivers the outbox.
	step := func() {
		t.Helper()
		for i := 0; ; i++ {
			got, err := h.db.GetDomain(t.Context(), dom.ID)
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 && got.NextScanAt.Sub(h.clock.Now()) > time.Hour {
				break
			}
			if i > 3 {
				t.Fatal("the domain keeps asking for confirming scans")
			}
			if wait := got.NextScanAt.Sub(h.clock.Now()); wait > 0 {
				h.clock.Add(wait)
			}
			if n, err := worker.RunDue(t.Context()); err != nil || n != 1 {
				t.Fatalf("%d scans at the slot: %v", n, err)
			}
		}
		for {
			n, err := worker.DeliverDue(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
	}
	// notices returns the alert mails to ann and the webhooks (signatures
	// verified) that came since the last call.
	seenMail, seenHooks := len(h.sink.Messages()), 0
	notices := func(what string) (mails []*lab.SinkMessage, notes []monitor.Notification) {
		t.Helper()
		for _, m := range h.sink.Messages()[seenMail:] {
			if slices.Contains(m.To, addr) {
				mails = append(mails, m)
			}
		}
		seenMail = len(h.sink.Messages())
		for _, r := range hooks.Requests()[seenHooks:] {
			// RFC-style check a receiver does: the HMAC-SHA256 of the
			// timestamp and the body with the secret shown once.
			if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), r.Body, h.clock.Now(), 0); err != nil {
				t.Errorf("%s: a webhook with a bad signature: %v", what, err)
			}
			var n monitor.Notification
			if err := json.Unmarshal(r.Body, &n); err != nil || n.Type != r.Header.Get(webhook.EventHeader) {
				t.Errorf("%s: webhook body %s: %v", what, r.Body, err)
			}
			notes = append(notes, n)
		}
		seenHooks = len(hooks.Requests())
		return mails, notes
	}
	// expect checks one mail and one webhook of type typ whose events
	// include each of want ("opened mx-not-covered").
	expect := func(what, typ string, want ...string) {
		t.Helper()
		mails, notes := notices(what)
		if len(mails) != 1 || len(notes) != 1 {
			t.Fatalf("%s: %d mails and %d webhooks, want one each", what, len(mails), len(notes))
		}
		var kinds []string
		for _, e := range notes[0].Events {
			kinds = append(kinds, e.Kind+" "+e.Finding.ID)
		}
		if notes[0].Type != typ {
			t.Errorf("%s: webhook type %s, want %s (%v)", what, notes[0].Type, typ, kinds)
		}
		m := mails[0]
		for _, w := range want {
			// The mail names the finding by its catalog title.
			title := w
			if def := finding.Lookup(finding.ID(w[strings.Index(w, " ")+1:])); def != nil {
				title = def.Title
			}
			if !slices.Contains(kinds, w) || !strings.Contains(m.Body, title) {
				t.Errorf("%s: %q missing: webhook events %v, mail:\n%s", what, w, kinds, m.Body)
			}
		}
		if m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" || !strings.HasPrefix(m.Header.Get("List-Unsubscribe"), "<"+h.srv.URL+"/unsubscribe/") {
			t.Errorf("%s: the mail lacks the one-click unsubscribe (RFC 8058): %v", what, m.Header)
		}
	}
	quiet := func(what string) {
		t.Helper()
		if mails, notes := notices(what); len(mails) != 0 || len(notes) != 0 {
			t.Fatalf("%s: %d mails and %d webhooks, want none", what, len(mails), len(notes))
		}
	}

	step()
	quiet("baseline")
	scans, _, _ := h.db.ListScans(t.Context(), dom.ID, "", 100)
	baseline := scans[0]
	if baseline.Grade != "A+" && baseline.Grade != "A" {
		t.Fatalf("the healthy lab domain graded %q", baseline.Grade)
	}

	// 1. The policy edited without a new id (RFC 8461 §3.1).
	setPolicy("version: STSv1\r\nmode: enforce\r\nmx: mx1." + d + "\r\nmx: backup." + d + "\r\nmax_age: 604800\r\n")
	step()
	expect("policy changed, same id", monitor.TypeAlert, "opened history-policy-changed-same-id")
	// 2. A new MX the policy does not cover (§4.1).
	l.DNS.MustAdd(t, d+`. 300 IN MX 20 mx2.`+d+`.`)
	l.MustMX(t, "mx2."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	step()
	expect("uncovered MX", monitor.TypeAlert, "opened mx-not-covered")
	// 3. mx1's certificate expired (§4.2): a new server at a new address.
	l.DNS.Remove("mx1."+d, dns.TypeA)
	expired := l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mx1." + d}, NotBefore: time.Now().Add(-30 * 24 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	l.MustMX(t, "mx1."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS, Cert: expired})
	step()
	expect("expired MX certificate", monitor.TypeAlert, "opened smtp-cert-expired")

	// The dashboard shows the regression; the domain page the open
	// problems; the diff from the baseline what changed.
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/domains"), chromedp.WaitVisible(chromedp.CSS(`table.domains`)))
	// The grade fell from the baseline's A to D (the trend compares with
	// the scan before, already D) and the errors are counted.
	if row := b.text(ctx, "table.domains tbody"); !strings.Contains(row, d+"\tD\t") || !strings.Contains(row, "errors") {
		t.Errorf("dashboard row: %q", row)
	}
	b.shot(ctx, "journey-dashboard")
	b.checkA11y(ctx, "dashboard with a regression")
	b.do(ctx, chromedp.Navigate(fmt.Sprintf("%s/domains/%d", h.srv.URL, dom.ID)), chromedp.WaitVisible(chromedp.CSS(`table.timeline`)))
	problems := b.text(ctx, "section[aria-labelledby=open-h]")
	for _, want := range []string{"history-policy-changed-same-id", "mx-not-covered", "smtp-cert-expired"} {
		if def := finding.Lookup(finding.ID(want)); def == nil || !strings.Contains(problems, def.Title) {
			t.Errorf("open problems lack %s:\n%s", want, problems)
		}
	}
	b.checkA11y(ctx, "domain with open problems")
	b.do(ctx, chromedp.Navigate(fmt.Sprintf("%s/domains/%d/diff?from=%d&to=%d", h.srv.URL, dom.ID, baseline.ID, mustLatest(t, h, dom.ID).ID)), chromedp.WaitVisible(chromedp.CSS(`h1`)))
	diff := b.text(ctx, "main")
	for _, want := range []string{"worse", "mx-not-covered", "smtp-cert-expired", "mx2." + d} {
		if !strings.Contains(diff, want) {
			t.Errorf("the diff lacks %q:\n%s", want, diff)
		}
	}
	b.shot(ctx, "journey-diff")
	b.checkA11y(ctx, "diff of the regression")

	// The repair: a new id with a policy covering both hosts, mx1 with a
	// good certificate again; one resolved notice, then nothing.
	setPolicy("version: STSv1\r\nmode: enforce\r\nmx: mx1." + d + "\r\nmx: mx2." + d + "\r\nmax_age: 604800\r\n")
	l.DNS.Remove(`_mta-sts.`+d, dns.TypeTXT)
	l.DNS.MustAdd(t, `_mta-sts.`+d+`. 300 IN TXT "v=STSv1; id=2"`)
	l.DNS.Remove("mx1."+d, dns.TypeA)
	l.MustMX(t, "mx1."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	step()
	expect("repaired", monitor.TypeResolved, "resolved history-policy-changed-same-id", "resolved mx-not-covered", "resolved smtp-cert-expired")
	step()
	quiet("after the repair")
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/domains"), chromedp.WaitVisible(chromedp.CSS(`table.domains`)))
	if row := b.text(ctx, "table.domains tbody"); !strings.Contains(row, "none") {
		t.Errorf("dashboard after the repair: %q", row)
	}
	b.checkA11y(ctx, "dashboard after the repair")
	b.do(ctx, chromedp.Navigate(fmt.Sprintf("%s/domains/%d", h.srv.URL, dom.ID)), chromedp.WaitVisible(chromedp.CSS(`table.timeline`)))
	if p := b.text(ctx, "section[aria-labelledby=open-h]"); !strings.Contains(p, "None") {
		t.Errorf("open problems after the repair: %s", p)
	}
	b.checkA11y(ctx, "domain after the repair")
}

// mustLatest is the domain's newest scan.
func mustLatest(t *testing.T, h *harness, id store.DomainID) store.Scan {
	t.Helper()
	scans, _, err := h.db.ListScans(t.Context(), id, "", 1)
	if err != nil || len(scans) == 0 {
		t.Fatalf("scans: %v", err)
	}
	return scans[0]
}

// sinkLink waits for the account's background mail and returns the path
// and query of the link to path in the last mail to addr the sink got.
func (h *harness) sinkLink(addr, path string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.accounts.Drain(ctx); err != nil {
		h.t.Fatal(err)
	}
	var last *lab.SinkMessage
	for _, m := range h.sink.Messages() {
		if slices.Contains(m.To, addr) {
			last = m
		}
	}
	if last == nil {
		h.t.Fatalf("no mail to %s", addr)
	}
	for _, m := range sinkLinkRE.FindAllStringSubmatch(last.Body, -1) {
		if strings.HasPrefix(m[1], path+"?") {
			return m[1]
		}
	}
	h.t.Fatalf("no %s link in the mail to %s:\n%s", path, addr, last.Body)
	return ""
}
