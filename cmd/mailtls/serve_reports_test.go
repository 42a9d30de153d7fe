package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptview"
)

// gzipReport is r as RFC 8460 gzip'd JSON.
func gzipReport(t *testing.T, r *tlsrpt.Report) []byte {
	t.Helper()
	b, err := r.MarshalRFC()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// TestServeReportsEndToEnd: `mailtls serve` with the reports role takes
// one report in by HTTPS POST (RFC 8460 §5.4) on the host listener, by
// SMTP with STARTTLS from the host's certificate, and from an IMAP
// mailbox; the three arrivals are one report with three receipts
// (deduplicated by organization and report-id), counted once in the
// summary, and `mailtls reports list` shows it beside an unsigned mail,
// which is ignored (RFC 8460 §3).
func TestServeReportsEndToEnd(t *testing.T) {
	l, _, cfg := servedLab(t)
	dir := filepath.Dir(cfg)
	keys := lab.NewDKIMKeys()
	keys.Publish(t, l.DNS, "s1", "reporter.test", true, "s=tlsrpt;")

	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	rep := dailyReport("reporter.test", "served.test", day, []string{"mx1.served.test"}, 90,
		tlsrpt.FailureDetail{ResultType: tlsrpt.CertificateExpired, ReceivingMXHostname: "mx1.served.test", FailedSessions: 3})
	gz := gzipReport(t, rep)
	signed := keys.Sign(t, lab.ReportMail("reporter.test", "tlsrpt@served.test", "served.test", rep.ReportID, gz), "reporter.test", "s1", true)
	other := dailyReport("reporter.test", "served.test", day, []string{"mx1.served.test"}, 1000)
	other.ReportID = "unsigned-1"
	unsigned := lab.ReportMail("reporter.test", "tlsrpt@served.test", "served.test", other.ReportID, gzipReport(t, other))

	// The mailbox: an IMAP server with a private CA (ca_file), reached
	// as 127.0.0.1.
	imapDir := t.TempDir()
	mbox := lab.NewIMAP(t, lab.IMAPOptions{})
	mbox.Deliver(t, "INBOX", signed)
	caFile, err := mbox.CA.WriteRootPEM(imapDir)
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(imapDir, "password")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	dbPath := filepath.Join(dir, "reports.db")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `store: %s
reports:
  resolvers: [%q]
  smtp:
    listen: ["127.0.0.1:0"]
    hostname: mta-sts.served.test
    addresses: [tlsrpt@served.test]
  imap:
    - server: %q
      username: reports
      password_file: %s
      ca_file: %s
`, dbPath, l.DNS.Addr(), mbox.Addr, pw, caFile)
	f.Close()

	s := startServe(t, cfg)

	// HTTPS POST to https://mta-sts.served.test/tlsrpt: 201 once stored,
	// or 200 when the IMAP round at start took the same report first.
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: l.CA.Pool()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.Addr("host-https"))
		}}}
	resp, err := hc.Post("https://mta-sts.served.test/tlsrpt", "application/tlsrpt+gzip", bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("POST: %d", resp.StatusCode)
	}

	// SMTP with STARTTLS, verified against the host's certificate.
	c, err := smtp.Dial(s.Addr("reports-smtp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(&tls.Config{RootCAs: l.CA.Pool(), ServerName: "mta-sts.served.test"}); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	for _, m := range []string{signed, unsigned} {
		if err := c.Mail("tlsrpt@reporter.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("tlsrpt@served.test"); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(m))
		if err := w.Close(); err != nil {
			t.Fatalf("SMTP DATA: %v", err)
		}
	}
	c.Quit()

	// The IMAP round runs at start; wait until the report has its three
	// receipts.
	list := func() map[string]tlsrptview.Item {
		r := run(t, "reports", "list", "--json", "--store", dbPath)
		if r.code != ExitOK {
			t.Fatalf("reports list: exit %d\n%s", r.code, r.stderr)
		}
		out := map[string]tlsrptview.Item{}
		for line := range strings.Lines(r.stdout) {
			var it tlsrptview.Item
			if err := json.Unmarshal([]byte(line), &it); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			out[it.ReportID] = it
		}
		return out
	}
	var items map[string]tlsrptview.Item
	deadline := time.Now().Add(30 * time.Second)
	for {
		items = list()
		if len(items[rep.ReportID].Receipts) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(items) != 2 {
		t.Errorf("%d reports stored, want 2: %v", len(items), slices.Sorted(maps.Keys(items)))
	}
	it := items[rep.ReportID]
	var channels []string
	for _, rc := range it.Receipts {
		channels = append(channels, rc.Channel)
		if rc.Channel != "https" && rc.DKIM != "pass" {
			t.Errorf("%s receipt: DKIM %q", rc.Channel, rc.DKIM)
		}
	}
	slices.Sort(channels)
	if it.State != "counted" || !slices.Equal(channels, []string{"https", "imap", "smtp"}) {
		t.Errorf("the report: state %s, receipts by %v\n%s", it.State, channels, s.Logs())
	}
	if len(it.Policies) != 1 || it.Policies[0].Successful != 90 || it.Policies[0].Failed != 3 || it.Policies[0].FailuresByMX["mx1.served.test"] != 3 {
		t.Errorf("the report's policies: %+v", it.Policies)
	}
	if u := items["unsigned-1"]; u.State != "ignored" || !strings.Contains(u.Reason, "DKIM") {
		t.Errorf("the unsigned mail: state %q, reason %q", u.State, u.Reason)
	}
	if f := mbox.Flags(t, "INBOX"); len(f) != 1 || len(f[0]) == 0 {
		t.Errorf("the IMAP message was not marked: %v", f)
	}

	// Counted once: 93 sessions, not three times as many, and the
	// ignored report adds nothing.
	r := run(t, "reports", "summary", "--json", "--days", "7", "--store", dbPath, "served.test")
	var sum tlsrptview.Summary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("summary: %v\n%s%s", err, r.stdout, r.stderr)
	}
	if sum.Sessions != 93 || sum.Failed != 3 {
		t.Errorf("summary: %d sessions, %d failed; want 93 and 3", sum.Sessions, sum.Failed)
	}

	if err := s.Stop(20 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, s.Logs())
	}
}
