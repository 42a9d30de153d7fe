package tlsrptintake

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
)

// hasFlag: flag names compare without case (RFC 3501 §2.3.2).
func hasFlag(fl []imap.Flag, f string) bool {
	return slices.ContainsFunc(fl, func(x imap.Flag) bool { return strings.EqualFold(string(x), f) })
}

func puller(l *lab.IMAPServer, w *world, startTLS bool, moveTo string) *IMAPPuller {
	return NewIMAPPuller(w.in, IMAPConfig{Server: l.Addr, StartTLS: startTLS, Username: "reports", Password: "secret", MoveTo: moveTo, TLS: l.Client})
}

// Periodic, idempotent, marks what it took, leaves what failed just now,
// never sets \Seen.
func TestIMAPPull(t *testing.T) {
	w := newWorld(t)
	l := lab.NewIMAP(t, lab.IMAPOptions{})
	signed := w.keys.Sign(t, reportMail("example.test", "i1", gz(jsonOf(t, report("reporter.test", "i1", "example.test", day, 20)))), "reporter.test", "s1", true)
	unsigned := reportMail("example.test", "i2", gz(jsonOf(t, report("reporter.test", "i2", "example.test", day, 30))))
	w.keys.Publish(t, w.dns, "flaky", "reporter.test", true, "")
	w.dns.SetRcode("flaky._domainkey.reporter.test", dns.TypeTXT, dns.RcodeServerFailure)
	flaky := w.keys.Sign(t, reportMail("example.test", "i3", gz(jsonOf(t, report("reporter.test", "i3", "example.test", day, 40)))), "reporter.test", "flaky", true)
	l.Deliver(t, "INBOX", signed, unsigned, "From: a@b.test\r\nSubject: hi\r\n\r\nnot a report\r\n", flaky)

	p := puller(l, w, false, "")
	st, err := p.Round(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Found != 4 || st.Processed != 3 || st.Refused != 1 || st.Deferred != 1 {
		t.Errorf("first round %+v", st)
	}
	if s := only(t, w.db, "reporter.test", "i1"); s.State != store.ReportCounted || s.Receipts[0].Channel != ChannelIMAP || !strings.HasPrefix(s.Receipts[0].FileName, "imap://") {
		t.Errorf("signed: %s %+v", s.State, s.Receipts)
	}
	if s := only(t, w.db, "reporter.test", "i2"); s.State != store.ReportIgnored {
		t.Errorf("unsigned: %s", s.State)
	}
	fl := l.Flags(t, "INBOX")
	for i, want := range []bool{true, true, true, false} {
		if got := hasFlag(fl[i], DefaultIMAPKeyword); got != want || hasFlag(fl[i], string(imap.FlagSeen)) {
			t.Errorf("message %d flags %v", i+1, fl[i])
		}
	}
	// The next round takes only what is left; once DNS answers, it counts.
	if st, err := p.Round(ctx(t)); err != nil || st.Found != 1 || st.Processed != 0 || st.Deferred != 1 {
		t.Errorf("second round %+v %v", st, err)
	}
	w.dns.Clear("flaky._domainkey.reporter.test", dns.TypeTXT)
	if st, err := p.Round(ctx(t)); err != nil || st.Processed != 1 {
		t.Errorf("third round %+v %v", st, err)
	}
	if s := only(t, w.db, "reporter.test", "i3"); s.State != store.ReportCounted || len(s.Receipts) != 1 {
		t.Errorf("deferred report: %s, %d receipts", s.State, len(s.Receipts))
	}
	if st, err := p.Round(ctx(t)); err != nil || st.Found != 0 {
		t.Errorf("idle round %+v %v", st, err)
	}
	if s := p.Status(); s.Processed != 4 || s.LastError != "" || s.LastSuccess.IsZero() {
		t.Errorf("status %+v", s)
	}

	// Run: a round at once, then every interval, until stopped.
	l.Deliver(t, "INBOX", w.keys.Sign(t, reportMail("example.test", "i4", gz(jsonOf(t, report("reporter.test", "i4", "example.test", day, 5)))), "reporter.test", "s1", true))
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(rctx); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for p.Status().Processed < 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	only(t, w.db, "reporter.test", "i4")
}

// STARTTLS, and move_to moves what was taken.
func TestIMAPStartTLSAndMove(t *testing.T) {
	w := newWorld(t)
	l := lab.NewIMAP(t, lab.IMAPOptions{StartTLS: true, Mailboxes: []string{"Done"}})
	l.Deliver(t, "INBOX", w.keys.Sign(t, reportMail("example.test", "m1", gz(jsonOf(t, report("reporter.test", "m1", "example.test", day, 20)))), "reporter.test", "s1", true))
	st, err := puller(l, w, true, "Done").Round(ctx(t))
	if err != nil || st.Processed != 1 {
		t.Fatalf("%+v %v", st, err)
	}
	if in, done := l.Flags(t, "INBOX"), l.Flags(t, "Done"); len(in) != 0 || len(done) != 1 || !hasFlag(done[0], DefaultIMAPKeyword) {
		t.Errorf("INBOX %v, Done %v", in, done)
	}
}

// TLS is required: a server whose certificate does not verify gets no
// password, and neither does one without STARTTLS.
func TestIMAPTLSRequired(t *testing.T) {
	w := newWorld(t)
	other := lab.MustCA(t, "other").MustIssue(t, lab.LeafOptions{DNSNames: []string{"imap.example.test"}})
	l := lab.NewIMAP(t, lab.IMAPOptions{Cert: &other})
	if _, err := puller(l, w, false, "").Round(ctx(t)); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("untrusted certificate: %v", err)
	}
	plain := lab.NewIMAP(t, lab.IMAPOptions{NoTLS: true})
	p := puller(plain, w, true, "")
	if _, err := p.Round(ctx(t)); err == nil {
		t.Error("a server without STARTTLS got a round")
	}
	if n := l.Logins() + plain.Logins(); n != 0 {
		t.Errorf("%d logins without TLS", n)
	}
	if s := p.Status(); s.LastError == "" {
		t.Errorf("status %+v", s)
	}
}
