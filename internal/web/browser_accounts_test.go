package web

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserAccount: a person signs up in chromium, opens the link of the
// confirmation mail, logs in, creates an API token (shown once), scans a
// lab domain and saves it, finds it on the domains page, and logs out.
// axe-core checks every page state.
func TestBrowserAccount(t *testing.T) {
	b := newBrowser(t)
	h := newHarness(t, harnessOptions{accounts: true})
	world{t, h.lab}.grade("watched.test", "A")
	ctx := b.tab(true)
	const addr, pw = "ann@example.test", "a long browser password"

	b.do(ctx, chromedp.Navigate(h.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`nav.account a[href="/signup"]`)))
	b.do(ctx, chromedp.Click(chromedp.CSS(`nav.account a[href="/signup"]`)), chromedp.WaitVisible(chromedp.ID("email")))
	b.checkA11y(ctx, "sign-up")
	// A too short password: the error is announced and the address kept.
	b.do(ctx, chromedp.SendKeys(chromedp.ID("email"), addr), chromedp.SendKeys(chromedp.ID("password"), "short"),
		chromedp.Click(chromedp.CSS(`form.account button[type=submit]`)), chromedp.WaitVisible(chromedp.ID("form-error")))
	b.checkA11y(ctx, "sign-up with an error")
	if v := run(b, ctx, chromedp.Evaluate[string](`document.getElementById("email").value`)); v != addr {
		t.Errorf("the address was not kept: %q", v)
	}
	b.do(ctx, chromedp.SetValue(chromedp.ID("password"), pw), chromedp.Click(chromedp.CSS(`form.account button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`main p[role=status]`)))
	if msg := b.text(ctx, "main"); !strings.Contains(msg, "Check your mail") {
		t.Fatalf("after sign-up:\n%s", msg)
	}
	b.shot(ctx, "01-check-mail")
	b.checkA11y(ctx, "check your mail")

	// The mail's link, opened in the browser: a button, then confirmed.
	b.do(ctx, chromedp.Navigate(h.srv.URL+h.link(addr)), chromedp.WaitVisible(chromedp.CSS(`form.account button`)))
	b.checkA11y(ctx, "confirm address")
	b.do(ctx, chromedp.Click(chromedp.CSS(`form.account button`)), chromedp.WaitVisible(chromedp.CSS(`main a[href="/login"]`)))
	if msg := b.text(ctx, "h1"); msg != "Address confirmed" {
		t.Fatalf("after confirming: %q", msg)
	}
	b.checkA11y(ctx, "address confirmed")

	b.do(ctx, chromedp.Click(chromedp.CSS(`main a[href="/login"]`)), chromedp.WaitVisible(chromedp.ID("email")))
	b.checkA11y(ctx, "login")
	b.do(ctx, chromedp.SendKeys(chromedp.ID("email"), addr), chromedp.SendKeys(chromedp.ID("password"), "wrong password here"),
		chromedp.Click(chromedp.CSS(`form.account button[type=submit]`)), chromedp.WaitVisible(chromedp.ID("form-error")))
	if e := b.text(ctx, "#form-error"); !strings.Contains(e, "Wrong e-mail address or password") {
		t.Errorf("wrong password: %q", e)
	}
	b.checkA11y(ctx, "login with an error")
	b.do(ctx, chromedp.SetValue(chromedp.ID("password"), pw), chromedp.Click(chromedp.CSS(`form.account button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("token-name")))
	b.shot(ctx, "02-settings")
	b.checkA11y(ctx, "settings")

	// An API token, shown once.
	b.do(ctx, chromedp.SendKeys(chromedp.ID("token-name"), "deploy"), chromedp.Click(chromedp.ID("scope-scan")),
		chromedp.Click(chromedp.CSS(`form[action="/settings/tokens"] button[type=submit]`)), chromedp.WaitVisible(chromedp.ID("new-token")))
	tok := run(b, ctx, chromedp.Evaluate[string](`document.getElementById("new-token").value`))
	if !strings.HasPrefix(tok, "mtls_") || len(tok) != 48 {
		t.Fatalf("token %q", tok)
	}
	b.shot(ctx, "03-token")
	b.checkA11y(ctx, "new token")
	if r := h.do("GET", "/api/v1/me", "", "", "Authorization", "Bearer "+tok); r.StatusCode != 200 {
		t.Errorf("the token from the page: %d", r.StatusCode)
	}
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/settings"), chromedp.WaitVisible(chromedp.CSS(`table.tokens`)))
	if html := run(b, ctx, chromedp.Evaluate[string](`document.body.innerHTML`)); strings.Contains(html, tok) {
		t.Error("the token is shown again")
	}

	// Scan, then save from the result page.
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("domain")),
		chromedp.SendKeys(chromedp.ID("domain"), "watched.test"), chromedp.Click(chromedp.CSS(`form.scan button[type=submit]`)))
	b.do(ctx, chromedp.WaitVisible(chromedp.CSS(`form.save button`)))
	b.checkA11y(ctx, "result, logged in")
	b.do(ctx, chromedp.Click(chromedp.CSS(`form.save button`)), chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	if n := b.text(ctx, "p.notice"); !strings.Contains(n, "The domain is saved") {
		t.Errorf("notice %q", n)
	}
	b.shot(ctx, "04-domain")
	b.checkA11y(ctx, "saved domain")
	b.do(ctx, chromedp.Click(chromedp.CSS(`p.crumbs a`)), chromedp.WaitVisible(chromedp.CSS(`table.domains`)))
	if n := b.text(ctx, "table.domains"); !strings.Contains(n, "watched.test") {
		t.Errorf("dashboard %q", n)
	}
	b.checkA11y(ctx, "dashboard")

	// Logout: the settings need a login again.
	b.do(ctx, chromedp.Click(chromedp.CSS(`nav.account button`)), chromedp.WaitVisible(chromedp.CSS(`nav.account a[href="/login"]`)))
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/settings"), chromedp.WaitVisible(chromedp.ID("password")))
	if u := run(b, ctx, chromedp.Location()); !strings.Contains(u, "/login?next=%2Fsettings") {
		t.Errorf("settings after logout: %s", u)
	}
}
