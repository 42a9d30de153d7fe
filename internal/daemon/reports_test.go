package daemon

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// tlsReport is a gzip'd RFC 8460 report from reporter.test about dom.
func tlsReport(t *testing.T, id, dom string) []byte {
	t.Helper()
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	r := &tlsrpt.Report{OrganizationName: "reporter.test", ContactInfo: "tlsrpt@reporter.test", ReportID: id, Start: day, End: day.Add(24*time.Hour - time.Second),
		Policies: []tlsrpt.Policy{{Type: tlsrpt.PolicySTS, Domain: dom, Strings: []string{"version: STSv1", "mode: testing", "mx: mx." + dom, "max_age: 86400"}, Successful: 10}}}
	b, err := r.MarshalRFC()
	if err != nil {
		t.Fatal(err)
	}
	return gzipped(b)
}

func signedMail(t *testing.T, keys *lab.DKIMKeys, id, dom string) string {
	return keys.Sign(t, lab.ReportMail("reporter.test", "tlsrpt@example.test", dom, id, tlsReport(t, id, dom)), "reporter.test", "s1", true)
}

// The reports role end to end: the HTTPS intake on the host listener, the
// SMTP listener with STARTTLS from the host's certificate, an IMAP
// mailbox, metrics and health, held reports released by a reload.
func TestReportsRole(t *testing.T) {
	e := newEnv(t)
	keys := lab.NewDKIMKeys()
	keys.Publish(t, e.l.DNS, "s1", "reporter.test", true, "s=tlsrpt;")
	mbox := lab.NewIMAP(t, lab.IMAPOptions{})
	mbox.Deliver(t, "INBOX", signedMail(t, keys, "imap-1", "example.test"))
	pw := filepath.Join(e.dir, "imap-password")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	dbPath := filepath.Join(e.dir, "store.db")
	reports := func(domains string) string {
		return fmt.Sprintf(`store: %s
reports:
  domains: [%s]
  smtp:
    listen: ["127.0.0.1:0"]
    hostname: mta-sts.example.test
    addresses: [tlsrpt@example.test]
  imap:
    - server: %s
      username: reports
      password_file: %s
      interval: 10s
`, dbPath, domains, "imap.example.test:993", pw)
	}
	writeAll := func(domains string) {
		e.writeConfig("", e.domainYAML("example.test", "testing", "mx.example.test"))
		b, _ := os.ReadFile(e.cfgPath)
		os.WriteFile(e.cfgPath+".new", append(b, []byte(reports(domains))...), 0o600)
		os.Rename(e.cfgPath+".new", e.cfgPath)
	}
	writeAll("other.test")
	imapDial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, mbox.Addr)
	}
	e.start(Options{Resolver: &resolve.Client{Servers: []string{e.l.DNS.Addr()}}, IMAPRoots: mbox.Client.RootCAs, IMAPDial: imapDial, WatchInterval: -1})

	// HTTPS POST to https://mta-sts.example.test/tlsrpt (RFC 8460 §5.4).
	post := func(body []byte) int {
		resp, err := e.client().Post("https://mta-sts.example.test/tlsrpt", "application/tlsrpt+gzip", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(tlsReport(t, "https-1", "example.test")); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	if code := post(tlsReport(t, "held-1", "stranger.test")); code != http.StatusCreated {
		t.Fatalf("POST about an unconfigured domain: %d", code)
	}
	if code, _ := e.get(e.client(), "https://mta-sts.example.test/.well-known/mta-sts.txt"); code != 200 {
		t.Errorf("the policy next to the intake: %d", code)
	}

	// SMTP with STARTTLS: the host's certificate for mta-sts.example.test,
	// asked for by name and without SNI.
	for i, sni := range []string{"mta-sts.example.test", ""} {
		c, err := smtp.Dial(e.addrs["reports-smtp"][0])
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{RootCAs: e.l.CA.Pool(), ServerName: sni}
		if sni == "" {
			tc.InsecureSkipVerify = true // no SNI sent; the chain is checked below
		}
		if err := c.StartTLS(tc); err != nil {
			t.Fatalf("STARTTLS (SNI %q): %v", sni, err)
		}
		st, _ := c.TLSConnectionState()
		if err := st.PeerCertificates[0].VerifyHostname("mta-sts.example.test"); err != nil {
			t.Errorf("certificate (SNI %q): %v", sni, err)
		}
		id := fmt.Sprint("smtp-", i)
		err = c.Mail("tlsrpt@reporter.test")
		if err == nil {
			err = c.Rcpt("tlsrpt@example.test")
		}
		if err == nil {
			var w interface {
				Write([]byte) (int, error)
				Close() error
			}
			if w, err = c.Data(); err == nil {
				w.Write([]byte(signedMail(t, keys, id, "example.test")))
				err = w.Close()
			}
		}
		if err != nil {
			t.Fatalf("SMTP: %v", err)
		}
		c.Quit()
	}

	db, err := sqlstore.Open(context.Background(), dbPath, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	states := func() map[string]store.ReportState {
		all, _, err := db.ListTLSRPTReports(context.Background(), store.TLSRPTQuery{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]store.ReportState{}
		for _, r := range all {
			out[r.Report.ReportID] = r.State
		}
		return out
	}
	eventually(t, "the IMAP round", func() bool { return states()["imap-1"] == store.ReportCounted })
	got := states()
	for id, want := range map[string]store.ReportState{"https-1": store.ReportCounted, "held-1": store.ReportHeld, "smtp-0": store.ReportCounted, "smtp-1": store.ReportCounted} {
		if got[id] != want {
			t.Errorf("%s: %s, want %s", id, got[id], want)
		}
	}
	if f := mbox.Flags(t, "INBOX"); len(f) != 1 || len(f[0]) == 0 {
		t.Errorf("IMAP flags %v", f)
	}

	metrics := e.admin("/metrics")
	for _, want := range []string{`mailtls_reports_received_total{channel="https",result="new"} 1`, `mailtls_reports_received_total{channel="https",result="held"} 1`,
		`mailtls_reports_received_total{channel="smtp",result="new"} 2`, `mailtls_reports_received_total{channel="imap",result="new"} 1`,
		`mailtls_reports_sessions_total{domain="example.test",policy_type="sts",result="successful"} 40`, `mailtls_reports_dkim_total{status="pass"} 3`,
		`mailtls_host_requests_total{result="extra"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, "stranger.test") || strings.Contains(metrics, "reporter.test") {
		t.Error("/metrics has a label from report text")
	}
	if h := e.admin("/healthz"); !strings.Contains(h, "reports: 2 configured domain(s), intake https /tlsrpt, smtp, 1 imap mailbox(es)") || !strings.Contains(h, "imap reports@") {
		t.Errorf("/healthz: %s", h)
	}

	// A reload that configures stranger.test makes its held report count.
	writeAll("other.test, stranger.test")
	if err := Reload(e); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the held report released", func() bool { return states()["held-1"] == store.ReportCounted })
	if err := e.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// Reload triggers a reload through the signal channel and waits for it.
func Reload(e *env) error {
	before := strings.Count(e.logs.String(), "configuration reloaded")
	e.reload <- struct{}{}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(e.logs.String(), "configuration reloaded") == before {
		if time.Now().After(deadline) {
			return fmt.Errorf("no reload:\n%s", e.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// The HTTPS intake answers on the web role's listener too; the checker's
// pages stay where they were.
func TestReportsOnWebListener(t *testing.T) {
	e := newEnv(t)
	dbPath := filepath.Join(e.dir, "store.db")
	e.writeWebConfig(fmt.Sprintf("store: %s\nreports:\n  domains: [example.test]\n  https: {path: /reports/tlsrpt}\n", dbPath))
	e.start(Options{Resolver: &resolve.Client{Servers: []string{e.l.DNS.Addr()}}})
	base := "http://" + e.addrs["web"][0]
	resp, err := http.Post(base+"/reports/tlsrpt", "application/tlsrpt+gzip", bytes.NewReader(tlsReport(t, "web-1", "example.test")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	if r, err := http.Get(base + "/reports/tlsrpt"); err != nil || r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v", r, err)
	}
	if page := get(t, base+"/"); !strings.Contains(page, "<form") {
		t.Errorf("the checker's page: %.200s", page)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(context.Background(), dbPath, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if all, _, _ := db.ListTLSRPTReports(context.Background(), store.TLSRPTQuery{}); len(all) != 1 || all[0].State != store.ReportCounted {
		t.Errorf("stored %+v", all)
	}
}

// reports.retention reaches the store: at start the reports role deletes
// the reports whose range ended longer ago than `reports` and drops the
// raw bytes of those that arrived longer ago than `raw`; a recent report
// keeps both.
func TestReportsRetention(t *testing.T) {
	e := newEnv(t)
	dbPath := filepath.Join(e.dir, "store.db")
	now := time.Now().UTC()
	add := func(id string, arrived, day time.Time) store.ReportID {
		t.Helper()
		db, err := sqlstore.Open(context.Background(), dbPath, sqlstore.Options{Now: func() time.Time { return arrived }})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		raw := tlsReport(t, id, "example.test")
		r, err := tlsrpt.Parse(bytes.NewReader(raw), nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Start, r.End = day, day.Add(24*time.Hour-time.Second)
		s, _, err := db.AddTLSRPTReport(context.Background(), store.NewTLSRPTReport{Report: r, Raw: raw, Receipt: store.ReportReceipt{Channel: "file", DKIM: "n/a"}})
		if err != nil {
			t.Fatal(err)
		}
		return s.ID
	}
	today := now.Truncate(24 * time.Hour)
	old := add("old", now.Add(-30*24*time.Hour), today.AddDate(0, 0, -30))          // range ended 29 days ago
	arrivedEarly := add("early", now.Add(-3*24*time.Hour), today.AddDate(0, 0, -3)) // raw 3 days old
	fresh := add("fresh", now, today.AddDate(0, 0, -1))
	e.writeWebConfig(fmt.Sprintf("store: %s\nreports:\n  domains: [example.test]\n  retention: {raw: 48h, reports: 240h}\n", dbPath))
	e.start(Options{Resolver: &resolve.Client{Servers: []string{e.l.DNS.Addr()}}})
	db, err := sqlstore.Open(context.Background(), dbPath, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	get := func(id store.ReportID) (store.StoredTLSRPT, error) {
		return db.GetTLSRPTReport(context.Background(), id, true)
	}
	eventually(t, "retention applied at start", func() bool {
		_, err := get(old)
		s, _ := get(arrivedEarly)
		return errors.Is(err, store.ErrNotFound) && s.RawPruned
	})
	if s, err := get(arrivedEarly); err != nil || s.State != store.ReportCounted || s.Report.Policies[0].Successful != 10 {
		t.Errorf("a report past raw retention keeps its parsed form: %v %+v", err, s)
	}
	if s, err := get(fresh); err != nil || s.RawPruned || len(s.Raw) == 0 {
		t.Errorf("a recent report: %v pruned=%v raw=%d bytes", err, s.RawPruned, len(s.Raw))
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
}
