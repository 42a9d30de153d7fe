package tlsrptintake

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/store"
)

func smtpCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// RFC 8460 §3: reports by mail count only with a valid DKIM signature by
// the reporting domain and without l=; the others are kept aside, visible
// as "ignored: no valid DKIM signature", and never counted.
func TestSMTPDKIM(t *testing.T) {
	w := newWorld(t)
	addr, tc, _ := smtpWorld(t, w, SMTPConfig{})
	mail := func(id string) string {
		return reportMail("example.test", id, gz(jsonOf(t, report("reporter.test", id, "example.test", day, 50))))
	}
	w.keys.Publish(t, w.dns, "flaky", "reporter.test", true, "")
	w.dns.SetRcode("flaky._domainkey.reporter.test", dns.TypeTXT, dns.RcodeServerFailure)

	for _, c := range []struct {
		name, msg string
		state     store.ReportState
		dkim      string
		reason    string
	}{
		{"signed by the reporting domain", w.keys.Sign(t, mail("signed"), "reporter.test", "s1", true), store.ReportCounted, "pass", ""},
		{"unsigned", mail("unsigned"), store.ReportIgnored, "none", "ignored: no valid DKIM signature"},
		{"l= signature", w.keys.SignWithL(t, mail("lsig"), "reporter.test", "s1"), store.ReportIgnored, "body-length", "l="},
		{"tampered", strings.Replace(w.keys.Sign(t, mail("tampered"), "reporter.test", "s1", true), "aggregate TLS report", "forged TLS report", 1), store.ReportIgnored, "fail", "body hash"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := send(t, addr, tc, "tlsrpt@example.test", c.msg); err != nil {
				t.Fatalf("send: %v", err)
			}
			id := strings.Fields(c.name)[0]
			id = map[string]string{"signed": "signed", "unsigned": "unsigned", "l=": "lsig", "tampered": "tampered"}[id]
			s := only(t, w.db, "reporter.test", id)
			if s.State != c.state || s.Receipts[0].DKIM != c.dkim || !strings.Contains(s.Reason, c.reason) || s.Receipts[0].Channel != ChannelSMTP {
				t.Errorf("stored %s (%s), dkim %q", s.State, s.Reason, s.Receipts[0].DKIM)
			}
		})
	}
	// Only the signed report is in the figures.
	sum, err := w.db.TLSRPTSummary(ctx(t), "example.test", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Rows) != 1 || sum.Rows[0].Successful != 50 {
		t.Errorf("rows %+v", sum.Rows)
	}
	counts, _ := w.db.CountTLSRPTReports(ctx(t), store.TLSRPTQuery{Domain: "example.test"})
	if counts[store.ReportIgnored] != 3 || counts[store.ReportCounted] != 1 {
		t.Errorf("counts %v", counts)
	}

	// A key that cannot be looked up just now: 451, nothing stored; once
	// DNS answers, the retry counts.
	flaky := w.keys.Sign(t, mail("flaky"), "reporter.test", "flaky", true)
	if err := send(t, addr, tc, "tlsrpt@example.test", flaky); smtpCode(err) != 451 {
		t.Fatalf("SERVFAIL key: %v", err)
	}
	if all, _, _ := w.db.ListTLSRPTReports(ctx(t), store.TLSRPTQuery{}); len(all) != 4 {
		t.Fatalf("%d reports after the deferral", len(all))
	}
	w.dns.Clear("flaky._domainkey.reporter.test", dns.TypeTXT)
	if err := send(t, addr, tc, "tlsrpt@example.test", flaky); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if s := only(t, w.db, "reporter.test", "flaky"); s.State != store.ReportCounted {
		t.Errorf("retry stored %s %s", s.State, s.Reason)
	}
	// A signed copy of an ignored report makes it count (one report, two
	// receipts).
	if err := send(t, addr, nil, "tlsrpt@example.test", w.keys.Sign(t, mail("unsigned"), "reporter.test", "s1", true)); err != nil {
		t.Fatal(err)
	}
	if s := only(t, w.db, "reporter.test", "unsigned"); s.State != store.ReportCounted || len(s.Receipts) != 2 {
		t.Errorf("signed copy: %s, %d receipts", s.State, len(s.Receipts))
	}
}

// The SMTP listener accepts mail for the report addresses only, refuses a
// mail without a report with the reason, refuses oversized mail and
// keeps serving.
func TestSMTPRefusals(t *testing.T) {
	w := newWorld(t)
	addr, tc, _ := smtpWorld(t, w, SMTPConfig{MaxMessageBytes: 200 << 10, Addresses: []string{"TLSRPT@Example.TEST", "<reports@example.test>"}})
	signed := func(id string) string {
		return w.keys.Sign(t, reportMail("example.test", id, gz(jsonOf(t, report("reporter.test", id, "example.test", day, 5)))), "reporter.test", "s1", true)
	}
	if err := send(t, addr, tc, "someone@elsewhere.test", signed("relay")); smtpCode(err) != 550 {
		t.Errorf("relay attempt: %v", err)
	}
	if err := send(t, addr, tc, "Reports@EXAMPLE.test", signed("case")); err != nil {
		t.Errorf("address in another case: %v", err)
	}
	plain := "From: a@b.test\r\nTo: tlsrpt@example.test\r\nSubject: hello\r\n\r\nJust a note.\r\n"
	err := send(t, addr, tc, "tlsrpt@example.test", plain)
	if smtpCode(err) != 550 || !strings.Contains(err.Error(), "no TLS-RPT report found") {
		t.Errorf("ordinary mail: %v", err)
	}
	big := reportMail("example.test", "big", make([]byte, 300<<10))
	if err := send(t, addr, tc, "tlsrpt@example.test", big); smtpCode(err) != 552 {
		t.Errorf("oversized mail: %v", err)
	}
	if err := send(t, addr, tc, "tlsrpt@example.test", signed("after")); err != nil {
		t.Errorf("after the refusals: %v", err)
	}
	all, _, _ := w.db.ListTLSRPTReports(ctx(t), store.TLSRPTQuery{})
	if len(all) != 2 {
		t.Errorf("%d reports stored, want case and after", len(all))
	}
}

// Connections beyond the per-address limit get a 421 greeting; messages
// beyond the rate are deferred with 450.
func TestSMTPLimits(t *testing.T) {
	w := newWorld(t)
	addr, _, _ := smtpWorld(t, w, SMTPConfig{MaxConnsPerIP: 2, MessagesPerMinute: 1, Burst: 2})
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		if !strings.HasPrefix(line, "220 ") {
			t.Fatalf("greeting %q", line)
		}
		conns = append(conns, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(line, "421 ") {
		t.Errorf("third connection: %q", line)
	}
	for _, c := range conns {
		c.Close()
	}
	var codes []int
	for i := range 3 {
		msg := w.keys.Sign(t, reportMail("example.test", fmt.Sprint("r", i), gz(jsonOf(t, report("reporter.test", fmt.Sprint("r", i), "example.test", day, 5)))), "reporter.test", "s1", true)
		var err error
		for try := 0; try < 50; try++ { // the closed connections are released asynchronously
			if err = send(t, addr, nil, "tlsrpt@example.test", msg); smtpCode(err) != 421 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		codes = append(codes, smtpCode(err))
	}
	if fmt.Sprint(codes) != "[0 0 450]" {
		t.Errorf("codes %v", codes)
	}
}
