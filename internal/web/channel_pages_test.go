package web

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/store"
)

var secretRE = regexp.MustCompile(`value="(whsec_[0-9a-f]{64})"`)

// TestChannelPages: the alert channels' pages — the account's own address
// on at once, another address only after its reader opens the link mailed
// to it (test messages refused until then, the link single-use, no more
// than the per-address mail limit however often it is added), a webhook
// refused by the SSRF guard with the error shown, its secret shown once,
// send test and the delivery log, off/on, the daily digest, removal;
// every form refused without the CSRF token, another account's channel
// not found.
func TestChannelPages(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	h.signUp("ann@example.test")
	h.signUp("bob@example.test")
	a := h.logIn("ann@example.test", testPassword)
	b := h.logIn("bob@example.test", testPassword)
	ann, _ := h.db.GetUserByEmail(t.Context(), "ann@example.test")
	chans := func() map[string]store.Channel {
		cs, err := h.db.ListChannels(t.Context(), ann.ID)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]store.Channel{}
		for _, c := range cs {
			out[c.Target] = c
		}
		return out
	}

	if p := string(a.get("/settings").body); !strings.Contains(p, `href="/settings/channels"`) || !strings.Contains(p, `href="/shares"`) {
		t.Error("the settings page links neither channels nor shares")
	}
	if p := string(a.get("/settings/channels").body); !strings.Contains(p, "You have no alert channels") {
		t.Errorf("empty list:\n%s", truncate([]byte(p)))
	}
	if r := a.post("/settings/channels", "kind", "email", "address", "ann@example.test"); r.StatusCode != http.StatusForbidden {
		t.Errorf("add without a CSRF token: %d", r.StatusCode)
	}
	if r := a.post("/settings/channels", "csrf", a.csrf(), "kind", "email", "address", "Ann@Example.test"); r.StatusCode != http.StatusSeeOther ||
		r.Header.Get("Location") != "/settings/channels?done=email" {
		t.Fatalf("own address: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if c := chans()["ann@example.test"]; c.VerifiedAt.IsZero() {
		t.Errorf("own address not on: %+v", c)
	}

	// Another address: pending until its reader opens the link.
	if r := a.post("/settings/channels", "csrf", a.csrf(), "kind", "email", "address", "boss@example.test"); r.Header.Get("Location") != "/settings/channels?done=pending" {
		t.Fatalf("other address: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	boss := chans()["boss@example.test"]
	if !boss.VerifiedAt.IsZero() {
		t.Fatal("another address is on before confirmation")
	}
	bossPage := fmt.Sprintf("/settings/channels/%d", boss.ID)
	if p := string(a.get("/settings/channels").body); !strings.Contains(p, "waiting for confirmation") {
		t.Errorf("list:\n%s", truncate([]byte(p)))
	}
	if r := a.post(bossPage+"/test", "csrf", a.csrf()); r.StatusCode != http.StatusConflict {
		t.Errorf("test message to an unconfirmed address: %d", r.StatusCode)
	}
	link := h.link("boss@example.test")
	if !strings.HasPrefix(link, "/channels/confirm?token=") {
		t.Fatalf("link %q", link)
	}
	if m := h.mail.to("boss@example.test"); len(m) != 1 || !strings.Contains(m[0].Text, "ann@example.test") {
		t.Errorf("confirmation mail: %+v", m)
	}
	anon := h.agent()
	if p := string(anon.get(link).body); !strings.Contains(p, "Send me these alerts") || !chans()["boss@example.test"].VerifiedAt.IsZero() {
		t.Errorf("the GET of the link confirmed or showed no button:\n%s", truncate([]byte(p)))
	}
	tok := mustUnescape(t, strings.TrimPrefix(link, "/channels/confirm?token="))
	if r := anon.post("/channels/confirm", "token", tok); r.StatusCode != 200 || !strings.Contains(string(r.body), "Address confirmed") {
		t.Errorf("confirm: %d\n%s", r.StatusCode, truncate(r.body))
	}
	if chans()["boss@example.test"].VerifiedAt.IsZero() {
		t.Error("not on after confirmation")
	}
	if r := anon.post("/channels/confirm", "token", tok); r.StatusCode != 400 {
		t.Errorf("the link used twice: %d", r.StatusCode)
	}

	// Adding and removing an address again and again mails it no more
	// than the per-address limit allows (3 in 20 minutes).
	for range 5 {
		a.post("/settings/channels", "csrf", a.csrf(), "kind", "email", "address", "carol@example.test")
		c := chans()["carol@example.test"]
		a.post(fmt.Sprintf("/settings/channels/%d/delete", c.ID), "csrf", a.csrf())
	}
	h.accounts.Drain(t.Context())
	if n := len(h.mail.to("carol@example.test")); n != 3 {
		t.Errorf("%d mails to an address added five times, want 3", n)
	}

	// Webhooks: the guard refuses private targets, with the error shown
	// by the field; a good one shows its secret once.
	r := a.post("/settings/channels", "csrf", a.csrf(), "kind", "webhook", "url", "https://10.0.0.1/hook")
	if p := string(r.body); r.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(p, `id="webhook-error"`) || !strings.Contains(p, `value="https://10.0.0.1/hook"`) {
		t.Errorf("private webhook: %d\n%s", r.StatusCode, truncate(r.body))
	}
	r = a.post("/settings/channels", "csrf", a.csrf(), "kind", "webhook", "url", "https://hooks.example.com/mailtls")
	m := secretRE.FindStringSubmatch(string(r.body))
	hook := chans()["https://hooks.example.com/mailtls"]
	if r.StatusCode != 200 || m == nil || string(hook.Secret) != m[1] {
		t.Fatalf("webhook: %d\n%s", r.StatusCode, truncate(r.body))
	}
	hookPage := fmt.Sprintf("/settings/channels/%d", hook.ID)
	for _, p := range []string{"/settings/channels", hookPage} {
		if strings.Contains(string(a.get(p).body), m[1]) {
			t.Errorf("%s shows the secret again", p)
		}
	}

	// Send test, then the delivery log.
	if r := a.post(hookPage+"/test", "csrf", "wrong"); r.StatusCode != http.StatusForbidden {
		t.Errorf("test with a wrong CSRF token: %d", r.StatusCode)
	}
	if r := a.post(hookPage+"/test", "csrf", a.csrf()); r.Header.Get("Location") != hookPage+"?done=test" {
		t.Fatalf("test: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	w, err := monitor.New(monitor.Config{Notifier: true}, monitor.Options{Store: h.db, Deliver: okDeliverer{}, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.DeliverDue(t.Context()); n != 1 || err != nil {
		t.Fatalf("delivered %d: %v", n, err)
	}
	if p := string(a.get(hookPage).body); !strings.Contains(p, "delivered") || !strings.Contains(p, "HTTP 204") || !strings.Contains(p, "test #") {
		t.Errorf("delivery log:\n%s", truncate([]byte(p)))
	}

	// Off and on, digest and back.
	a.post(hookPage+"/state", "csrf", a.csrf(), "state", "off")
	if chans()[hook.Target].DisabledAt.IsZero() {
		t.Error("not off")
	}
	if r := a.post(hookPage+"/test", "csrf", a.csrf()); r.StatusCode != http.StatusConflict {
		t.Errorf("test to a channel that is off: %d", r.StatusCode)
	}
	a.post(hookPage+"/state", "csrf", a.csrf(), "state", "on")
	a.post(hookPage+"/digest", "csrf", a.csrf(), "hour", "7")
	if c := chans()[hook.Target]; !c.DisabledAt.IsZero() || !c.Digest || c.DigestHour != 7 {
		t.Errorf("on with a digest at 7: %+v", c)
	}
	if r := a.post(hookPage+"/digest", "csrf", a.csrf(), "hour", "24"); r.StatusCode != 400 {
		t.Errorf("hour 24: %d", r.StatusCode)
	}
	a.post(hookPage+"/digest", "csrf", a.csrf(), "hour", "none")
	if chans()[hook.Target].Digest {
		t.Error("still a digest")
	}

	// Another account's channel does not exist for bob.
	for _, p := range []string{hookPage} {
		if r := b.get(p); r.StatusCode != 404 {
			t.Errorf("bob GET %s: %d", p, r.StatusCode)
		}
	}
	for _, act := range []string{"/test", "/state", "/digest", "/delete"} {
		if r := b.post(hookPage+act, "csrf", b.csrf(), "state", "off", "hour", "3"); r.StatusCode != 404 {
			t.Errorf("bob POST %s: %d", act, r.StatusCode)
		}
	}
	if c := chans()[hook.Target]; !c.DisabledAt.IsZero() || c.Digest {
		t.Errorf("bob changed ann's channel: %+v", c)
	}
	if r := a.post(hookPage+"/delete", "csrf", a.csrf()); r.Header.Get("Location") != "/settings/channels?done=removed" {
		t.Errorf("remove: %d", r.StatusCode)
	}
	if _, ok := chans()[hook.Target]; ok {
		t.Error("not removed")
	}
}

// browserLogIn logs addr (signed up and confirmed) in through the login
// form of the browser tab.
func (b *browserEnv) logIn(ctx context.Context, h *harness, addr string) {
	b.t.Helper()
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/login"), chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), addr), chromedp.SendKeys(chromedp.ID("password"), testPassword),
		chromedp.Click(chromedp.CSS(`form.account button[type=submit]`)), chromedp.WaitVisible(chromedp.ID("token-name")))
}

// TestBrowserChannelPages: the alert channels' pages in chromium — the
// list, adding the own address, another one (pending), a refused webhook,
// a new webhook's secret, a channel with its delivery log, a pending one,
// and the confirmation link as its reader opens it — axe-core on each
// state.
func TestBrowserChannelPages(t *testing.T) {
	b := newBrowser(t)
	h := newHarness(t, harnessOptions{accounts: true})
	h.signUp("ann@example.test")
	ctx := b.tab(true)
	b.logIn(ctx, h, "ann@example.test")
	b.checkA11y(ctx, "settings with alerts and sharing")
	b.do(ctx, chromedp.Click(chromedp.CSS(`a[href="/settings/channels"]`)), chromedp.WaitVisible(chromedp.ID("address")))
	b.checkA11y(ctx, "no channels")
	addEmail := func(addr string) {
		b.do(ctx, chromedp.SetValue(chromedp.ID("address"), addr))
		b.submit(ctx, `section[aria-labelledby=email-h] button`, `p.notice`)
	}
	addEmail("ann@example.test")
	b.checkA11y(ctx, "own address added")
	addEmail("boss@example.test")
	if n := b.text(ctx, "p.notice"); !strings.Contains(n, "confirmation link") {
		t.Errorf("notice %q", n)
	}
	b.shot(ctx, "channels-pending")
	b.checkA11y(ctx, "other address pending")
	b.do(ctx, chromedp.SetValue(chromedp.ID("url"), "https://10.0.0.1/hook"))
	b.submit(ctx, `section[aria-labelledby=webhook-h] button`, `#webhook-error`)
	b.checkA11y(ctx, "webhook refused")
	b.do(ctx, chromedp.SetValue(chromedp.ID("url"), "https://hooks.example.com/mailtls"))
	b.submit(ctx, `section[aria-labelledby=webhook-h] button`, `#new-secret`)
	b.shot(ctx, "channels-secret")
	b.checkA11y(ctx, "webhook secret")

	// The webhook's page: send a test, deliver it, read the log.
	b.do(ctx, chromedp.Click(chromedp.CSS(`a[href^="/settings/channels/"][href$="3"]`)), chromedp.WaitVisible(chromedp.ID("log-h")))
	b.submit(ctx, `form[action$="/test"] button`, `p.notice`)
	w, err := monitor.New(monitor.Config{Notifier: true}, monitor.Options{Store: h.db, Deliver: okDeliverer{}, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.DeliverDue(t.Context()); n != 1 || err != nil {
		t.Fatalf("delivered %d: %v", n, err)
	}
	b.do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`table.deliveries`)))
	b.shot(ctx, "channel-log")
	b.checkA11y(ctx, "channel with its delivery log")
	b.submit(ctx, `form[action$="/state"] button`, `p.notice`)
	b.checkA11y(ctx, "channel off")
	b.do(ctx, chromedp.Navigate(h.srv.URL+"/settings/channels/2"), chromedp.WaitVisible(chromedp.ID("log-h")))
	b.checkA11y(ctx, "pending channel")

	// The reader of the other address opens the link (no login needed).
	anon := b.tab(true)
	b.do(anon, chromedp.Navigate(h.srv.URL+h.link("boss@example.test")), chromedp.WaitVisible(chromedp.CSS(`form.account button`)))
	b.checkA11y(anon, "confirm alert address")
	b.submit(anon, `form.account button`, `main p`)
	if got := b.text(anon, "h1"); got != "Address confirmed" {
		t.Errorf("after confirming: %q", got)
	}
	b.checkA11y(anon, "alert address confirmed")
}
