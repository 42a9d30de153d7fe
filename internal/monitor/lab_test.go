package monitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/store/storetest"
	"github.com/mailtls/mailtls/internal/webhook"
)

// hookReceiver is a webhook endpoint in the lab that verifies every
// delivery's signature, as a user's receiver would.
type hookReceiver struct {
	secret []byte
	now    func() time.Time
	mu     sync.Mutex
	got    []monitor.Notification
	ids    []string
	bad    []string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	switch r.URL.Path {
	case "/gone":
		http.Error(w, "this hook was removed", http.StatusGone)
		return
	case "/busy":
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := webhook.Verify(h.secret, r.Header.Get(webhook.SignatureHeader), body, h.now(), 0); err != nil {
		h.bad = append(h.bad, err.Error())
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	n, err := decode(body)
	if err != nil || n.Type != r.Header.Get(webhook.EventHeader) {
		h.bad = append(h.bad, fmt.Sprintf("body %q: %v", body, err))
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	h.got = append(h.got, n)
	h.ids = append(h.ids, r.Header.Get(webhook.DeliveryHeader))
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) take() []monitor.Notification {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.got
	h.got = nil
	return out
}

// mailbox records the mails the notifier handed to the mail transport.
type mailbox struct {
	mu  sync.Mutex
	got []sentMail
}

type sentMail struct {
	to, id string
	mail   monitor.Email
}

func (m *mailbox) send(_ context.Context, to string, e monitor.Email, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = append(m.got, sentMail{to, id, e})
	return nil
}

func (m *mailbox) take() []sentMail {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.got
	m.got = nil
	return out
}

// TestLabRegressionsAlertOnce watches a domain of the lab through the
// real scanner (DNS, policy fetch, SMTP probes): each way of breaking it
// the issue names — the policy changed without a new id (RFC 8461 §3.1),
// an MX the policy does not cover (§4.1), an expired MX certificate
// (§4.2) — gives exactly one alert mail and one signed webhook naming the
// new problem at the next scheduled scan, and the repair one "resolved"
// notice on each channel.
func TestLabRegressionsAlertOnce(t *testing.T) {
	l := lab.New(t)
	const d = "watched.example"
	start := time.Now().UTC()
	clock := storetest.NewClock(start)

	// The domain: enforce, one MX with a good certificate, TLS-RPT.
	var policyMu sync.Mutex
	policy := "version: STSv1\r\nmode: enforce\r\nmx: mx1." + d + "\r\nmax_age: 604800\r\n"
	l.DNS.MustAdd(t, d+`. 300 IN MX 10 mx1.`+d+`.`, `_mta-sts.`+d+`. 300 IN TXT "v=STSv1; id=1"`,
		`_smtp._tls.`+d+`. 300 IN TXT "v=TLSRPTv1; rua=mailto:tls@`+d+`"`)
	l.MustPolicyHost(t, d, lab.PolicyHostOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		policyMu.Lock()
		body := policy
		policyMu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	})})
	setPolicy := func(p string) { policyMu.Lock(); policy = p; policyMu.Unlock() }
	l.MustMX(t, "mx1."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})

	// The webhook receiver, on the lab's HTTPS server at a fake public
	// address.
	hooks := &hookReceiver{secret: []byte("whsec-lab"), now: clock.Now} // signed and checked on the test clock
	hookAddr := l.NextAddr()
	l.DNS.MustAdd(t, "hooks.receiver.example. 300 IN A "+hookAddr.String())
	l.HTTPS.Host("hooks.receiver.example", l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"hooks.receiver.example"}}), hooks)
	if err := l.MapAddr(l.HTTPS.Addr(), hookAddr, 443); err != nil {
		t.Fatal(err)
	}
	// The lab's fake public addresses are loopback ones; the guard lets
	// 127.0.0.0/8 through and refuses every other private range.
	guard := dial.NewGuardPorts(dial.WebhookPorts, netip.MustParsePrefix("127.0.0.0/8"))
	wh, err := webhook.New(webhook.Options{Dialer: &dial.Dialer{Guard: guard, Net: l.Net()}, Roots: l.CA.Pool(), Timeout: 10 * time.Second,
		Lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return l.DNS.NetResolver().LookupNetIP(ctx, "ip4", host)
		}})
	if err != nil {
		t.Fatal(err)
	}

	// The scanner of the server, SMTP probes included, behind the SSRF
	// guard as in serve (rules added later count: Net reads them at each
	// dial).
	ld := &dial.Dialer{Guard: dial.NewGuard(netip.MustParsePrefix("127.0.0.0/8")), Net: l.Net()}
	sc := &scan.Scanner{
		Resolver: &resolve.Client{Servers: []string{l.DNS.Addr()}, Timeout: lab.DNSTimeout, Attempts: lab.DNSAttempts},
		Fetcher: &fetch.Fetcher{Dialer: ld, Roots: l.CA.Pool(),
			ConnectTimeout: lab.ConnectTimeout, HandshakeTimeout: lab.HandshakeTimeout, ResponseTimeout: lab.ResponseTimeout},
		Dialer: ld,
		Prober: &smtpprobe.Prober{Dialer: ld, Roots: l.CA.Pool(), EHLO: "monitor.example.test",
			ConnectTimeout: lab.ConnectTimeout, BannerTimeout: lab.SMTPTimeout, CommandTimeout: lab.SMTPTimeout, HandshakeTimeout: lab.HandshakeTimeout},
	}
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "m.db"), sqlstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := t.Context()
	u, err := st.CreateUser(ctx, "ann@"+d, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
	if err != nil {
		t.Fatal(err)
	}
	for _, nc := range []store.NewChannel{
		{UserID: u.ID, Kind: store.ChannelEmail, Target: "ann@" + d},
		{UserID: u.ID, Kind: store.ChannelWebhook, Target: "https://hooks.receiver.example/mailtls", Secret: hooks.secret},
	} {
		ch, err := st.CreateChannel(ctx, nc)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.MarkChannelVerified(ctx, ch.ID); err != nil {
			t.Fatal(err)
		}
	}
	mails := &mailbox{}
	// The worker as serve builds it.
	w, err := monitor.NewServe(monitor.Config{ScannerVersion: "lab", BaseURL: "https://checker.example.test", ScanTimeout: lab.ScanBudget},
		monitor.ServeOptions{Store: st, Scanner: sc, Mail: mails.send, Webhook: wh, MessageIDHost: "checker.example.test", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	dom, err := st.AddDomain(ctx, store.NewDomain{UserID: u.ID, Name: d})
	if err != nil {
		t.Fatal(err)
	}

	// step moves the clock to the domain's next scheduled scan and runs
	// it, and any confirming rescan that a transient problem asks for
	// (within the hour), then delivers the outbox.
	step := func() {
		t.Helper()
		for i := 0; ; i++ {
			got, err := st.GetDomain(ctx, dom.ID)
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 && got.NextScanAt.Sub(clock.Now()) > time.Hour {
				break
			}
			if i > 3 {
				t.Fatal("the domain keeps asking for confirming scans")
			}
			clock.Set(got.NextScanAt)
			if n, err := w.RunDue(ctx); err != nil || n != 1 {
				t.Fatalf("%d scans at the slot: %v", n, err)
			}
		}
		for {
			n, err := w.DeliverDue(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
	}
	// expect checks that each channel got exactly one notification of
	// type typ whose events include want (kind and finding ID), and
	// returns the webhook's.
	expect := func(what, typ string, want ...string) monitor.Notification {
		t.Helper()
		got, ms := hooks.take(), mails.take()
		if hooks.bad != nil {
			t.Fatalf("%s: the receiver refused deliveries: %v", what, hooks.bad)
		}
		if len(got) != 1 || len(ms) != 1 {
			var evs [][]string
			for _, n := range got {
				evs = append(evs, events(n))
			}
			t.Fatalf("%s: %d webhooks %v and %d mails, want one each", what, len(got), evs, len(ms))
		}
		n := got[0]
		var kinds []string
		for _, e := range n.Events {
			kinds = append(kinds, e.Kind+" "+e.Finding.ID)
		}
		for _, w := range want {
			if !slices.Contains(kinds, w) {
				t.Errorf("%s: events %v lack %q", what, kinds, w)
			}
		}
		if n.Type != typ {
			t.Errorf("%s: type %s, want %s (events %v)", what, n.Type, typ, kinds)
		}
		m := ms[0]
		if m.to != "ann@"+d || !strings.HasPrefix(m.mail.Subject, "[mailtls] "+d+": ") ||
			m.mail.Header["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" || !strings.HasSuffix(m.id, "@checker.example.test") {
			t.Errorf("%s: mail to %s, id %s, subject %q, header %v", what, m.to, m.id, m.mail.Subject, m.mail.Header)
		}
		for _, e := range n.Events {
			if e.Kind != "resolved" && !strings.Contains(m.mail.Text, e.Finding.Message) {
				t.Errorf("%s: the mail does not say %q:\n%s", what, e.Finding.Message, m.mail.Text)
			}
		}
		t.Logf("%s: %s %v", what, m.mail.Subject, kinds)
		return n
	}
	quiet := func(what string) {
		t.Helper()
		if got, ms := hooks.take(), mails.take(); len(got) != 0 || len(ms) != 0 {
			var evs [][]string
			for _, n := range got {
				evs = append(evs, events(n))
			}
			t.Fatalf("%s: %d webhooks %v and %d mails, want none", what, len(got), evs, len(ms))
		}
	}

	// The first scheduled scan is the baseline; the next one, unchanged,
	// says nothing.
	step()
	quiet("baseline")
	first := lastDoc(t, st, dom.ID)
	if first.Grade == nil || *first.Grade != "A+" && *first.Grade != "A" {
		t.Fatalf("the healthy lab domain graded %v: %v", first.Grade, first.Findings)
	}
	step()
	quiet("unchanged")

	// 1. The policy edited without a new id.
	setPolicy("version: STSv1\r\nmode: enforce\r\nmx: mx1." + d + "\r\nmx: backup." + d + "\r\nmax_age: 604800\r\n")
	step()
	expect("policy changed, same id", monitor.TypeAlert, "opened history-policy-changed-same-id")
	// A day later, still open: one reminder, not a new alert.
	step()
	expect("daily reminder", monitor.TypeReminder, "reminder history-policy-changed-same-id")

	// 2. A new MX the policy does not cover.
	l.DNS.MustAdd(t, d+`. 300 IN MX 20 mx2.`+d+`.`)
	l.MustMX(t, "mx2."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	step()
	expect("uncovered MX", monitor.TypeAlert, "opened mx-not-covered", "opened history-mx-not-covered")

	// 3. mx1's certificate expired: a new server at a new address.
	l.DNS.Remove("mx1."+d, dns.TypeA)
	expired := l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mx1." + d}, NotBefore: time.Now().Add(-30 * 24 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	l.MustMX(t, "mx1."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS, Cert: expired})
	step()
	expect("expired MX certificate", monitor.TypeAlert, "opened smtp-cert-expired")

	// The repair: a new id with a policy covering both hosts, mx1 with a
	// good certificate again.
	setPolicy("version: STSv1\r\nmode: enforce\r\nmx: mx1." + d + "\r\nmx: mx2." + d + "\r\nmax_age: 604800\r\n")
	l.DNS.Remove(`_mta-sts.`+d, dns.TypeTXT)
	l.DNS.MustAdd(t, `_mta-sts.`+d+`. 300 IN TXT "v=STSv1; id=2"`)
	l.DNS.Remove("mx1."+d, dns.TypeA)
	l.MustMX(t, "mx1."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	step()
	n := expect("repaired", monitor.TypeResolved, "resolved history-policy-changed-same-id", "resolved mx-not-covered", "resolved smtp-cert-expired")
	if n.Open != 0 {
		t.Errorf("%d problems open after the repair: %v", n.Open, events(n))
	}
	step()
	quiet("after the repair")

	// Failures that retrying does not fix are permanent: a target gone
	// (HTTP 410), a private address, a channel kind without a transport.
	gone := store.Channel{Kind: store.ChannelWebhook, Target: "https://hooks.receiver.example/gone", Secret: hooks.secret}
	private := store.Channel{Kind: store.ChannelWebhook, Target: "https://private.receiver.example/x", Secret: hooks.secret}
	l.DNS.MustAdd(t, "private.receiver.example. 300 IN A 10.0.0.7")
	msg := store.Message{ID: 99, Payload: []byte(`{"version":1,"type":"test","key":"t","open_problems":0}`)}
	deliver := monitor.Channels{Mail: mails.send, Webhook: wh}
	for _, c := range []struct {
		name      string
		d         monitor.Channels
		ch        store.Channel
		permanent bool
	}{
		{"410", deliver, gone, true},
		{"private address", deliver, private, true},
		{"no mail transport", monitor.Channels{Webhook: wh}, store.Channel{Kind: store.ChannelEmail, Target: "ann@" + d}, true},
		{"unknown kind", deliver, store.Channel{Kind: "pager"}, true},
		{"503", deliver, store.Channel{Kind: store.ChannelWebhook, Target: "https://hooks.receiver.example/busy", Secret: hooks.secret}, false},
	} {
		_, err := c.d.Deliver(ctx, c.ch, msg)
		if err == nil || monitor.IsPermanent(err) != c.permanent {
			t.Errorf("%s: %v (permanent %t), want permanent %t", c.name, err, monitor.IsPermanent(err), c.permanent)
		}
	}
}

func decode(body []byte) (monitor.Notification, error) {
	var n monitor.Notification
	err := json.Unmarshal(body, &n)
	return n, err
}

func lastDoc(t *testing.T, st *sqlstore.DB, id store.DomainID) *report.Document {
	t.Helper()
	scans, _, err := st.ListScans(t.Context(), id, "", 1)
	if err != nil || len(scans) == 0 {
		t.Fatalf("scans: %v", err)
	}
	raw, err := st.ScanReport(t.Context(), scans[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	var doc report.Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return &doc
}
