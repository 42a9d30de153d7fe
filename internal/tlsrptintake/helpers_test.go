package tlsrptintake

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/http/httptest"
	"net/smtp"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

var day = time.Date(2026, 5, 4, 0, 0, 0, 0, time.UTC)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func newStore(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "store.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// world is an intake on a fresh store, with a lab DNS publishing the DKIM
// keys of reporter.test (selector "s1", with s=tlsrpt) and configured
// domains example.test and dane.test.
type world struct {
	db   *sqlstore.DB
	in   *Intake
	dns  *lab.DNS
	keys *lab.DKIMKeys
	reg  *prometheus.Registry
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{db: newStore(t), dns: lab.NewDNS(t), keys: lab.NewDKIMKeys(), reg: prometheus.NewRegistry()}
	w.keys.Publish(t, w.dns, "s1", "reporter.test", true, "s=tlsrpt;")
	configured := map[string]bool{"example.test": true, "dane.test": true}
	w.in = &Intake{Store: w.db, Resolver: &resolve.Client{Servers: []string{w.dns.Addr()}, Timeout: 2 * time.Second, Attempts: 2},
		Configured: func(d string) bool { return configured[d] }, Metrics: NewMetrics(w.reg)}
	return w
}

// report is an RFC 8460 §4.4 report as a sender writes it.
func report(org, id, dom string, d time.Time, ok int64, failures ...tlsrpt.FailureDetail) *tlsrpt.Report {
	p := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: dom, Strings: []string{"version: STSv1", "mode: testing", "mx: mx1." + dom, "max_age: 86400"},
		MXHost: []string{"mx1." + dom}, Successful: ok, Failures: failures}
	for _, f := range failures {
		p.Failed += f.FailedSessions
	}
	return &tlsrpt.Report{OrganizationName: org, ContactInfo: "tlsrpt@" + org, ReportID: id, Start: d, End: d.Add(24*time.Hour - time.Second),
		Policies: []tlsrpt.Policy{p}}
}

func jsonOf(t testing.TB, r *tlsrpt.Report) []byte {
	t.Helper()
	b, err := r.MarshalRFC()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// reportMail is an RFC 8460 §5.3 report mail carrying body (gzip'd JSON)
// from reporter.test about dom.
func reportMail(dom, id string, body []byte) string {
	enc := base64.StdEncoding.EncodeToString(body)
	var lines strings.Builder
	for len(enc) > 76 {
		lines.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	lines.WriteString(enc + "\r\n")
	return "From: tlsrpt@reporter.test\r\nTo: tlsrpt@example.test\r\nDate: Tue, 05 May 2026 03:00:00 +0000\r\n" +
		"Message-ID: <" + id + "@reporter.test>\r\n" +
		"Subject: Report Domain: " + dom + " Submitter: reporter.test Report-ID: <" + id + "@reporter.test>\r\n" +
		"TLS-Report-Domain: " + dom + "\r\nTLS-Report-Submitter: reporter.test\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=tlsrpt; boundary=\"B\"\r\n\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate TLS report from reporter.test\r\n" +
		"--B\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"reporter.test!" + dom + "!1777852800!1777939199.json.gz\"\r\n\r\n" +
		lines.String() + "--B--\r\n"
}

// smtpWorld runs the SMTP intake of w on a loopback port with a lab
// certificate for reports.example.test.
func smtpWorld(t testing.TB, w *world, cfg SMTPConfig) (addr string, roots *tls.Config, srv *SMTPServer) {
	t.Helper()
	ca := lab.MustCA(t, "intake")
	cert := ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"reports.example.test"}})
	if cfg.Hostname == "" {
		cfg.Hostname = "reports.example.test"
	}
	if cfg.Addresses == nil {
		cfg.Addresses = []string{"tlsrpt@example.test"}
	}
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv = NewSMTPServer(w.in, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(c)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "reports.example.test"}, srv
}

// send submits msg over SMTP with STARTTLS (when tc is set) and returns
// the server's error, if any.
func send(t testing.TB, addr string, tc *tls.Config, rcpt, msg string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		return err // a 421 greeting, say
	}
	defer c.Close()
	if err := c.Hello("sender.test"); err != nil {
		return err
	}
	if tc != nil {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Fatal("no STARTTLS offered")
		}
		if err := c.StartTLS(tc); err != nil {
			return err
		}
	}
	if err := c.Mail("tlsrpt@reporter.test"); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt); err != nil {
		return err
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := wc.Write([]byte(msg)); err != nil {
		return err
	}
	if err := wc.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// only returns the one stored report with org and id, failing otherwise.
func only(t testing.TB, db *sqlstore.DB, org, id string) store.StoredTLSRPT {
	t.Helper()
	var found []store.StoredTLSRPT
	all, _, err := db.ListTLSRPTReports(ctx(t), store.TLSRPTQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if r.Report.OrganizationName == org && r.Report.ReportID == id {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d stored reports %s/%s, want 1: %+v", len(found), org, id, found)
	}
	return found[0]
}

func channels(s store.StoredTLSRPT) string {
	var cs []string
	for _, r := range s.Receipts {
		cs = append(cs, r.Channel)
	}
	return strings.Join(cs, " ")
}

func httpsServer(t testing.TB, h *HTTPHandler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// gzipBomb is about size bytes of gzip that expand 1000-fold: a member
// of 10 MiB of JSON-looking zeros, repeated (gzip readers join members).
func gzipBomb(size int) []byte {
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zw.Write([]byte(`{"organization-name":"`))
	zw.Write(make([]byte, 10<<20))
	zw.Close()
	var out bytes.Buffer
	for out.Len() < size {
		out.Write(member.Bytes())
	}
	return out.Bytes()
}
