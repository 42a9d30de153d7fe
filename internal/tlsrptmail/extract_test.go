package tlsrptmail

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// testReport builds a report as a conforming sender writes it.
func testReport(t testing.TB, org, id, domain string, day time.Time, ok, failed int64) []byte {
	t.Helper()
	r := &tlsrpt.Report{
		OrganizationName: org,
		ContactInfo:      "smtp-tls-reporting@" + strings.ToLower(org),
		ReportID:         id,
		Start:            day,
		End:              day.Add(24*time.Hour - time.Second),
		Policies: []tlsrpt.Policy{{
			Type: tlsrpt.PolicySTS, Domain: domain,
			Strings:    []string{"version: STSv1", "mode: testing", "mx: mx." + domain, "max_age: 86400"},
			MXHost:     []string{"mx." + domain},
			Successful: ok, Failed: failed,
		}},
	}
	if failed > 0 {
		r.Policies[0].Failures = []tlsrpt.FailureDetail{{ResultType: tlsrpt.CertificateExpired, SendingMTAIP: "192.0.2.1", ReceivingMXHostname: "mx." + domain, FailedSessions: failed}}
	}
	b, err := r.MarshalRFC()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func b64(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s + "\r\n")
	return out.String()
}

var day = time.Date(2026, 5, 12, 0, 0, 0, 0, time.UTC)

// mailParts is a report mail in the RFC 8460 §5.3 form, with the parts
// given.
func reportMail(headers string, parts ...string) string {
	var b strings.Builder
	b.WriteString("From: noreply-smtp-tls-reporting@reporter.test\r\n")
	b.WriteString("To: tlsrpt@example.test\r\n")
	b.WriteString("Date: Wed, 13 May 2026 08:43:01 -0700\r\n")
	b.WriteString("Message-ID: <m1@reporter.test>\r\n")
	b.WriteString("TLS-Report-Domain: example.test\r\nTLS-Report-Submitter: reporter.test\r\n")
	b.WriteString("Subject: Report Domain: example.test Submitter: reporter.test Report-ID: <r1@reporter.test>\r\n")
	b.WriteString(headers)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=tlsrpt; boundary=\"BOUNDARY\"\r\n\r\n")
	b.WriteString("--BOUNDARY\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is an aggregate TLS report from reporter.test\r\n\r\n")
	for _, p := range parts {
		b.WriteString("--BOUNDARY\r\n" + p)
	}
	b.WriteString("--BOUNDARY--\r\n")
	return b.String()
}

func gzipPart(ctype string, rep []byte) string {
	return "Content-Type: " + ctype + "\r\nContent-Disposition: attachment; filename=\"reporter.test!example.test!1778544000!1778630399!001.json.gz\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(gzipBytes(rep))
}

func jsonPart(ctype string, rep []byte) string {
	return "Content-Type: " + ctype + "\r\nContent-Disposition: attachment; filename=\"reporter.test!example.test!1778544000!1778630399!001.json\"\r\n\r\n" + string(rep) + "\r\n"
}

func codes(notes []tlsrpt.Note) []tlsrpt.NoteCode {
	var out []tlsrpt.NoteCode
	for _, n := range notes {
		out = append(out, n.Code)
	}
	return out
}

func TestExtract(t *testing.T) {
	rep := testReport(t, "reporter.test", "r1@reporter.test", "example.test", day, 90, 10)
	tests := []struct {
		name  string
		mail  string
		notes []tlsrpt.NoteCode // mail notes expected on the report (in any order)
	}{
		{"RFC 8460 §5.3 gzip", reportMail("", gzipPart("application/tlsrpt+gzip", rep)), nil},
		{"RFC 8460 §5.3 json", reportMail("", jsonPart("application/tlsrpt+json", rep)), nil},
		{"json declared +gzip", reportMail("", jsonPart("application/tlsrpt+gzip", rep)), []tlsrpt.NoteCode{NoteMediaType}},
		{"gzip declared +json", reportMail("", gzipPart("application/tlsrpt+json", rep)), []tlsrpt.NoteCode{NoteMediaType}},
		{"bare application/tlsrpt (Stalwart fixture)", reportMail("", jsonPart("application/tlsrpt", rep)), []tlsrpt.NoteCode{NoteMediaType}},
		{"application/json", reportMail("", jsonPart("application/json", rep)), []tlsrpt.NoteCode{NoteMediaType}},
		{"application/gzip", reportMail("", gzipPart("application/gzip", rep)), []tlsrpt.NoteCode{NoteMediaType}},
		{"application/octet-stream", reportMail("", gzipPart("application/octet-stream", rep)), []tlsrpt.NoteCode{NoteMediaType}},
		{"base64 without Content-Transfer-Encoding", reportMail("", "Content-Type: application/tlsrpt+gzip\r\n\r\n"+b64(gzipBytes(rep))), []tlsrpt.NoteCode{NoteTransferEncoding}},
		{"closing boundary missing (Mail.ru)", strings.TrimSuffix(reportMail("", gzipPart("application/tlsrpt+gzip", rep)), "--BOUNDARY--\r\n") + "--BOUNDARY\r\n\r\n\r\n", []tlsrpt.NoteCode{NoteCloseBoundary}},
		{"closing boundary missing after the report", strings.TrimSuffix(reportMail("", gzipPart("application/tlsrpt+gzip", rep)), "--BOUNDARY--\r\n"), []tlsrpt.NoteCode{NoteCloseBoundary}},
		{"LF line endings (a gateway)", strings.ReplaceAll(reportMail("", gzipPart("application/tlsrpt+gzip", rep)), "\r\n", "\n"), nil},
		{"human part in text/html (Microsoft 2024+)", strings.Replace(reportMail("", gzipPart("application/tlsrpt+gzip", rep)), "Content-Type: text/plain; charset=us-ascii\r\n\r\nThis is", "Content-Type: text/html\r\n\r\n<p>This is", 1), nil},
		{"folded Subject without <> (Microsoft)", strings.Replace(reportMail("", gzipPart("application/tlsrpt+gzip", rep)), "Report-ID: <r1@reporter.test>", "Report-ID:\r\n r1@reporter.test", 1), nil},
		{"Subject Report-ID differs (Google)", strings.Replace(reportMail("", gzipPart("application/tlsrpt+gzip", rep)), "<r1@reporter.test>", "<2026.05.12T00.00.00Z+example.test@reporter.test>", 1), []tlsrpt.NoteCode{NoteSubjectReportID}},
		{"Submitter differs from contact-info domain (Mail.ru)", strings.Replace(reportMail("", gzipPart("application/tlsrpt+gzip", rep)), "TLS-Report-Submitter: reporter.test", "TLS-Report-Submitter: mail.reporter.test", 1), []tlsrpt.NoteCode{NoteSubmitterMismatch}},
		{"no TLS-Report headers", strings.Replace(reportMail("", gzipPart("application/tlsrpt+gzip", rep)), "TLS-Report-Domain: example.test\r\nTLS-Report-Submitter: reporter.test\r\n", "", 1), []tlsrpt.NoteCode{NoteHeaderMissing, NoteHeaderMissing}},
		{"nested multipart/mixed", reportMail("", "Content-Type: multipart/mixed; boundary=INNER\r\n\r\n--INNER\r\n"+gzipPart("application/tlsrpt+gzip", rep)+"--INNER--\r\n"), nil},
		{"a single-part message", "From: r@reporter.test\r\nTLS-Report-Domain: example.test\r\nTLS-Report-Submitter: reporter.test\r\nSubject: Report Domain: example.test Submitter: reporter.test Report-ID: <r1@reporter.test>\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(gzipBytes(rep)), []tlsrpt.NoteCode{NoteReportType}},
		{"report-type missing", strings.Replace(reportMail("", gzipPart("application/tlsrpt+gzip", rep)), "report-type=tlsrpt; ", "", 1), []tlsrpt.NoteCode{NoteReportType}},
		{"an mbox From line first", "From noreply@reporter.test Wed May 13 08:43:01 2026\r\n" + reportMail("", gzipPart("application/tlsrpt+gzip", rep)), nil},
		{"quoted-printable JSON", reportMail("", "Content-Type: application/tlsrpt+json\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+qp(string(rep))+"\r\n"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Extract(strings.NewReader(tt.mail), nil)
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			reps := m.Parsed()
			if len(reps) != 1 {
				t.Fatalf("%d reports: %+v", len(reps), m.Reports)
			}
			r := reps[0]
			if r.ReportID != "r1@reporter.test" || r.Policies[0].Successful != 90 || r.Policies[0].Failed != 10 {
				t.Errorf("report %+v", r)
			}
			var got []tlsrpt.NoteCode
			for _, c := range codes(r.Notes) {
				if isMailNote(c) {
					got = append(got, c)
				}
			}
			want := slices.Clone(tt.notes)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("notes %v, want %v\n%+v", got, want, r.Notes)
			}
		})
	}
}

func isMailNote(c tlsrpt.NoteCode) bool {
	switch c {
	case NoteCloseBoundary, NoteMIMEBroken, NoteMediaType, NoteReportType, NoteTransferEncoding, NoteHeaderMissing,
		NoteSubjectReportID, NoteSubjectForm, NoteSubmitterMismatch, NoteForwardedSkipped, NoteSeveralReports, NoteReportDomainAbsent:
		return true
	}
	return false
}

func qp(s string) string {
	var b strings.Builder
	for i, c := range []byte(s) {
		if c == '=' {
			b.WriteString("=3D")
		} else {
			b.WriteByte(c)
		}
		if i%70 == 69 {
			b.WriteString("=\r\n")
		}
	}
	return b.String()
}

// Two reports in one mail (never seen, §2.4) are both read.
func TestExtractSeveral(t *testing.T) {
	a := testReport(t, "reporter.test", "r1@reporter.test", "example.test", day, 5, 0)
	b := testReport(t, "reporter.test", "r2@reporter.test", "example.test", day, 7, 0)
	m, err := Extract(strings.NewReader(reportMail("", gzipPart("application/tlsrpt+gzip", a), jsonPart("application/tlsrpt+json", b))), nil)
	if err != nil {
		t.Fatal(err)
	}
	reps := m.Parsed()
	if len(reps) != 2 || reps[0].ReportID != "r1@reporter.test" || reps[1].ReportID != "r2@reporter.test" {
		t.Fatalf("%+v", m.Reports)
	}
	if !reps[0].HasNote(NoteSeveralReports) {
		t.Errorf("notes %+v", reps[0].Notes)
	}
}

// a mail without a report is refused with "no TLS-RPT report found".
func TestExtractNoReport(t *testing.T) {
	tests := []struct{ name, mail, why string }{
		{"plain text", "From: a@b.test\r\nSubject: hello\r\n\r\nHello, how are you?\r\n", "no part"},
		{"html only", "From: a@b.test\r\nContent-Type: text/html\r\n\r\n<p>{\"x\": 1}</p>\r\n", "no part"},
		{"a DMARC-like zip of XML", reportMail("", "Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"+b64([]byte("PK\x03\x04junk"))), "zip"},
		{"JSON that is not a report", reportMail("", jsonPart("application/tlsrpt+json", []byte(`{"hello":"world"}`))), "no policies"},
		{"broken gzip declared +gzip", reportMail("", "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n"+b64([]byte{0x1f, 0x8b, 0, 1, 2})), "gzip"},
		{"forwarded report", reportMail("", "Content-Type: message/rfc822\r\n\r\n"+strings.ReplaceAll(reportMail("", gzipPart("application/tlsrpt+gzip", testReport(t, "r.test", "x", "example.test", day, 1, 0))), "BOUNDARY", "INNER")), "no part"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Extract(strings.NewReader(tt.mail), nil)
			if !errors.Is(err, ErrNoReport) || !strings.Contains(err.Error(), "no TLS-RPT report found") || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("err = %v", err)
			}
			if m == nil || len(m.Parsed()) != 0 {
				t.Errorf("message %+v", m)
			}
		})
	}
	if _, err := Extract(strings.NewReader("just some bytes without a header"), nil); !errors.Is(err, ErrNotMessage) {
		t.Errorf("no header: %v", err)
	}
}

type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	e.n += int64(len(p))
	return len(p), nil
}

// Oversized mail: refused at the cap without reading on; too many parts
// and too deep nesting are bounded.
func TestExtractBounds(t *testing.T) {
	e := &endless{}
	if _, err := Extract(e, &Limits{MaxMessage: 1 << 20}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("endless mail: %v", err)
	}
	if e.n > 2<<20 {
		t.Errorf("read %d bytes with a 1 MiB cap", e.n)
	}
	rep := testReport(t, "reporter.test", "r1@reporter.test", "example.test", day, 1, 0)
	var parts []string
	for range 200 {
		parts = append(parts, "Content-Type: text/plain\r\n\r\nfiller\r\n")
	}
	parts = append(parts, gzipPart("application/tlsrpt+gzip", rep))
	m, err := Extract(strings.NewReader(reportMail("", parts...)), nil)
	if !errors.Is(err, ErrNoReport) || !slices.Contains(codes(m.Notes), NoteMIMEBroken) {
		t.Errorf("200 parts: %v %+v", err, m.Notes)
	}
	deep := gzipPart("application/tlsrpt+gzip", rep)
	for i := range 20 {
		deep = fmt.Sprintf("Content-Type: multipart/mixed; boundary=B%d\r\n\r\n--B%d\r\n%s--B%d--\r\n", i, i, deep, i)
	}
	m, err = Extract(strings.NewReader(reportMail("", deep)), nil)
	if !errors.Is(err, ErrNoReport) || !slices.Contains(codes(m.Notes), NoteMIMEBroken) {
		t.Errorf("deep: %v %+v", err, m.Notes)
	}
}

func TestMbox(t *testing.T) {
	a := reportMail("", gzipPart("application/tlsrpt+gzip", testReport(t, "reporter.test", "r1@reporter.test", "example.test", day, 1, 0)))
	b := "From: x@y.test\nSubject: hi\n\nline one\n>From the body, escaped\n>>From twice\n"
	c := reportMail("", jsonPart("application/tlsrpt+json", testReport(t, "reporter.test", "r3@reporter.test", "example.test", day, 3, 0)))
	big := "From: x@y.test\n\n" + strings.Repeat("x", 5000) + "\n"
	mbox := "From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n" + a + "\nFrom someone Thu Jan  1 00:00:00 2026\n" + b + "\nFrom big Thu Jan  1 00:00:00 2026\n" + big + "\nFrom x Thu Jan  1 00:00:00 2026\n" + c
	var got []string
	var errs []error
	err := Mbox(strings.NewReader(mbox), 4096, func(i int, raw []byte, err error) error {
		if err != nil {
			errs = append(errs, err)
			got = append(got, "")
			return nil
		}
		got = append(got, string(raw))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || len(errs) != 1 || !errors.Is(errs[0], ErrTooLarge) || got[2] != "" {
		t.Fatalf("%d messages, errors %v", len(got), errs)
	}
	if !strings.Contains(got[1], "\nFrom the body, escaped\n>From twice\n") {
		t.Errorf("unescaping: %q", got[1])
	}
	for _, i := range []int{0, 3} {
		m, err := Extract(strings.NewReader(got[i]), nil)
		if err != nil || len(m.Parsed()) != 1 {
			t.Errorf("message %d: %v", i, err)
		}
	}
	// A file without a separator is one message.
	n := 0
	Mbox(strings.NewReader(a), 0, func(int, []byte, error) error { n++; return nil })
	if n != 1 {
		t.Errorf("no separator: %d messages", n)
	}
	stop := errors.New("stop")
	if err := Mbox(strings.NewReader(mbox), 0, func(int, []byte, error) error { return stop }); err != stop {
		t.Errorf("callback error: %v", err)
	}
}

func TestMaildir(t *testing.T) {
	a := reportMail("", gzipPart("application/tlsrpt+gzip", testReport(t, "reporter.test", "r1@reporter.test", "example.test", day, 1, 0)))
	fsys := fstest.MapFS{
		"cur/2:2,S":     {Data: []byte(a)},
		"cur/1:2,S":     {Data: []byte(a)},
		"new/3":         {Data: []byte(strings.Repeat("x", 9000))},
		"tmp/4":         {Data: []byte(a)},
		"cur/.hidden":   {Data: []byte(a)},
		"new/sub/inner": {Data: []byte(a)},
	}
	var names []string
	var tooLarge int
	err := Maildir(fsys, 8192, func(name string, raw []byte, err error) error {
		names = append(names, name)
		if errors.Is(err, ErrTooLarge) {
			tooLarge++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"cur/1:2,S", "cur/2:2,S", "new/3"}) || tooLarge != 1 {
		t.Errorf("names %v, too large %d", names, tooLarge)
	}
	if err := Maildir(fstest.MapFS{"x": {}}, 0, func(string, []byte, error) error { return nil }); err == nil {
		t.Error("a folder without cur/ and new/ was accepted")
	}
}

func TestDetect(t *testing.T) {
	for in, want := range map[string]string{
		"{\"policies\":[]}":          KindReport,
		"\x1f\x8b\x08":               KindReport,
		"From a@b Thu Jan 1\n":       KindMbox,
		"Received: from x\r\n":       KindMessage,
		"Return-Path: <a@b>\n":       KindMessage,
		"hello world\n":              KindUnknown,
		"<html>\n":                   KindUnknown,
		"Subject with space: x\n":    KindUnknown,
		"X-Mox-Reason: no-bad-sig\n": KindMessage,
	} {
		if got := Detect([]byte(in)); got != want {
			t.Errorf("Detect(%q) = %s, want %s", in, got, want)
		}
	}
}
