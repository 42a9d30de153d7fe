package bench

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
	"github.com/mailtls/mailtls/internal/tlsrptmail"
)

// benchReport is a daily report of one organisation with n failure
// details, as a sender writes it.
func benchReport(b *testing.B, org string, day time.Time, details int) *tlsrpt.Report {
	p := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "example.com",
		Strings: []string{"version: STSv1", "mode: testing", "mx: mx1.example.com", "mx: mx2.example.com", "max_age: 604800"},
		MXHost:  []string{"mx1.example.com", "mx2.example.com"}, Successful: 5000}
	for i := range details {
		p.Failures = append(p.Failures, tlsrpt.FailureDetail{ResultType: tlsrpt.CertificateExpired,
			SendingMTAIP: fmt.Sprintf("192.0.2.%d", i%250), ReceivingMXHostname: "mx2.example.com", ReceivingIP: "198.51.100.7", FailedSessions: 1})
		p.Failed++
	}
	r := &tlsrpt.Report{OrganizationName: org, ContactInfo: "tlsrpt@" + org, ReportID: day.Format(time.RFC3339) + "_" + org,
		Start: day, End: day.Add(24*time.Hour - time.Second), Policies: []tlsrpt.Policy{p}}
	// Read back as the intake would, so derived fields are set.
	js, err := r.MarshalRFC()
	if err != nil {
		b.Fatal(err)
	}
	r, err = tlsrpt.ParseJSON(js, nil)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// wire is the RFC 8460 §4.4 shape for a plain encoding/json decode, the
// baseline a strict parser would cost.
type wire struct {
	Org       string `json:"organization-name"`
	DateRange struct {
		Start time.Time `json:"start-datetime"`
		End   time.Time `json:"end-datetime"`
	} `json:"date-range"`
	Contact  string `json:"contact-info"`
	ReportID string `json:"report-id"`
	Policies []struct {
		Policy struct {
			Type   string   `json:"policy-type"`
			String []string `json:"policy-string"`
			Domain string   `json:"policy-domain"`
			MXHost []string `json:"mx-host"`
		} `json:"policy"`
		Summary struct {
			Successful int64 `json:"total-successful-session-count"`
			Failed     int64 `json:"total-failure-session-count"`
		} `json:"summary"`
		Details []struct {
			ResultType string `json:"result-type"`
			SendingIP  string `json:"sending-mta-ip"`
			MX         string `json:"receiving-mx-hostname"`
			RecvIP     string `json:"receiving-ip"`
			Count      int64  `json:"failed-session-count"`
		} `json:"failure-details"`
	} `json:"policies"`
}

// BenchmarkParseReport: the tolerant parser (gunzip, bounded walk, notes)
// beside a plain gunzip and encoding/json decode into fixed structs, for a
// typical report (2 failure details) and a large one (5,000).
func BenchmarkParseReport(b *testing.B) {
	for _, n := range []int{2, 5000} {
		js, err := benchReport(b, "google.com", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), n).MarshalRFC()
		if err != nil {
			b.Fatal(err)
		}
		gz := gzipped(js)
		b.Run(fmt.Sprintf("details=%d/mailtls", n), func(b *testing.B) {
			b.SetBytes(int64(len(js)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tlsrpt.Parse(bytes.NewReader(gz), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("details=%d/encoding-json", n), func(b *testing.B) {
			b.SetBytes(int64(len(js)))
			b.ReportAllocs()
			for b.Loop() {
				zr, _ := gzip.NewReader(bytes.NewReader(gz))
				var w wire
				if err := json.NewDecoder(zr).Decode(&w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExtract takes a report mail apart and parses its report.
func BenchmarkExtract(b *testing.B) {
	js, _ := benchReport(b, "google.com", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), 2).MarshalRFC()
	var mail strings.Builder
	mail.WriteString("From: noreply@google.com\r\nSubject: Report Domain: example.com Submitter: google.com Report-ID: <x@google.com>\r\nTLS-Report-Domain: example.com\r\nTLS-Report-Submitter: google.com\r\nContent-Type: multipart/report; report-type=tlsrpt; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate TLS report from google.com\r\n--B\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64Lines(gzipped(js))
	mail.WriteString(enc + "--B--\r\n")
	raw := []byte(mail.String())
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tlsrptmail.Extract(bytes.NewReader(raw), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func base64Lines(b []byte) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var buf strings.Builder
	for len(enc) > 76 {
		buf.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	buf.WriteString(enc + "\r\n")
	return buf.String()
}

// BenchmarkReadiness: the pure part of the issue's "readiness and summary
// for a domain with a year of daily reports from 20 organisations"
// (target < 50 ms including the store, which comes later): Readiness over
// the 14-day window and Aggregate plus the year's totals.
func BenchmarkReadiness(b *testing.B) {
	now := time.Date(2026, 12, 31, 9, 0, 0, 0, time.UTC)
	var reps []*tlsrpt.Report
	for org := range 20 {
		for day := 1; day <= 365; day++ {
			reps = append(reps, benchReport(b, fmt.Sprintf("org%d.example", org), tlsrptagg.Day(now).AddDate(0, 0, -day), day%3))
		}
	}
	cur := tlsrptagg.Current{Policy: &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeTesting, MaxAge: 604800, MX: []string{"mx1.example.com", "mx2.example.com"}},
		Scan: &tlsrptagg.Scan{MXKnown: true, MX: map[string]tlsrptagg.MXState{"mx1.example.com": {Probed: true, Pass: true}, "mx2.example.com": {Probed: true, Pass: true}}}}
	b.Run("readiness", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v := tlsrptagg.Readiness(tlsrptagg.Input{Domain: "example.com", Now: now, Current: cur, Reports: reps})
			if v.Sessions == 0 {
				b.Fatal("no evidence")
			}
		}
		b.ReportMetric(float64(len(reps)), "reports")
	})
	b.Run("year-summary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s := tlsrptagg.Aggregate(reps)
			if t := s.Totals(tlsrptagg.Filter{Domain: "example.com", Type: tlsrpt.PolicySTS}); t.Sessions() == 0 {
				b.Fatal("no sessions")
			}
		}
		b.ReportMetric(float64(len(reps)), "reports")
	})
}
