package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
	"github.com/mailtls/mailtls/internal/tlsrptintake"
	"github.com/mailtls/mailtls/internal/tlsrptview"
)

// BenchmarkReportsYear: the issue's "readiness and summary queries for a
// domain with a year of daily reports from 20 organisations" (target
// < 50 ms) against the SQLite store: the summary of the year as
// `mailtls reports summary` gives it (the day rows the store keeps per
// report, summed in SQL) and the readiness verdict over 14 days (the day
// rows merged in Go), beside the same year's summary from the day rows
// merged in Go and from the stored reports themselves (read back and
// aggregated); and the summary of the last 14 days.
func BenchmarkReportsYear(b *testing.B) {
	ctx := context.Background()
	now := time.Date(2026, 12, 31, 9, 0, 0, 0, time.UTC)
	db, err := sqlstore.Open(ctx, filepath.Join(b.TempDir(), "reports.db"), sqlstore.Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	n := 0
	for org := range 20 {
		for day := 1; day <= 365; day++ {
			r := benchReport(b, fmt.Sprintf("org%d.example", org), tlsrptagg.Day(now).AddDate(0, 0, -day), day%3)
			js, err := r.MarshalRFC()
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := db.AddTLSRPTReport(ctx, store.NewTLSRPTReport{Report: r, Raw: gzipped(js), Receipt: store.ReportReceipt{Channel: "file", DKIM: "n/a"}}); err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	v := &tlsrptview.View{Store: db, Now: func() time.Time { return now }}
	year := tlsrptview.LastDays(now, 365)
	cur := tlsrptagg.Current{Policy: &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeTesting, MaxAge: 604800, MX: []string{"mx1.example.com", "mx2.example.com"}},
		Scan: &tlsrptagg.Scan{MXKnown: true, MX: map[string]tlsrptagg.MXState{"mx1.example.com": {Probed: true, Pass: true}, "mx2.example.com": {Probed: true, Pass: true}}}}
	var want int64

	b.Run("summary/sql", func(b *testing.B) {
		cpu0 := selfCPU()
		for b.Loop() {
			s, err := v.Summary(ctx, "example.com", year)
			if err != nil {
				b.Fatal(err)
			}
			want = s.Sessions
		}
		b.ReportMetric(float64(n), "reports")
		perQuery(b, cpu0)
	})
	// The CLI's and the web page's default window, beside the year.
	b.Run("summary/sql-14d", func(b *testing.B) {
		cpu0 := selfCPU()
		for b.Loop() {
			s, err := v.Summary(ctx, "example.com", tlsrptview.LastDays(now, 14))
			if err != nil || s.Sessions == 0 {
				b.Fatal(s, err)
			}
		}
		perQuery(b, cpu0)
	})
	b.Run("summary/day-rows", func(b *testing.B) {
		cpu0 := selfCPU()
		for b.Loop() {
			sum, err := db.TLSRPTSummary(ctx, "example.com", year.From, year.To)
			if err != nil {
				b.Fatal(err)
			}
			if s := sum.Sums("example.com"); s.Sessions != want {
				b.Fatalf("day rows merged in Go sum to %d sessions, the SQL sums to %d", s.Sessions, want)
			}
		}
		perQuery(b, cpu0)
	})
	b.Run("readiness/day-rows", func(b *testing.B) {
		cpu0 := selfCPU()
		for b.Loop() {
			verdict, err := v.Readiness(ctx, "example.com", cur, tlsrptagg.Thresholds{})
			if err != nil {
				b.Fatal(err)
			}
			if verdict.Sessions == 0 {
				b.Fatal("no evidence")
			}
		}
		perQuery(b, cpu0)
	})
	b.Run("summary/raw-reports", func(b *testing.B) {
		cpu0 := selfCPU()
		for b.Loop() {
			var reps []*tlsrpt.Report
			q := store.TLSRPTQuery{Domain: "example.com", From: year.From, To: year.To, States: []store.ReportState{store.ReportCounted}}
			for {
				page, next, err := db.ListTLSRPTReports(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range page {
					reps = append(reps, s.Report)
				}
				if next == "" {
					break
				}
				q.After = next
			}
			sessions, _ := tlsrptagg.Aggregate(reps).DomainTotals(tlsrptagg.Filter{Domain: "example.com"})
			if sessions != want {
				b.Fatalf("raw reports sum to %d sessions, the day rows to %d", sessions, want)
			}
		}
		perQuery(b, cpu0)
	})
}

// perQuery reports the wall time and the process's CPU time per query
// since cpu0 (on a loaded machine the wall time includes waiting for a
// core; the CPU time does not).
func perQuery(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/query")
	b.ReportMetric(float64((selfCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/query")
}

// BenchmarkReportsIngest: the ingest rate, reports per second
// into the SQLite store through the file import's path (Intake.Body, as
// `mailtls reports import` calls it for .json.gz files) and through the
// HTTPS POST handler (RFC 8460 §5.4) over loopback HTTP, for
// $BENCH_REPORTS synthetic reports each (default 100,000, as the issue
// asks); and the store's size per report.
func BenchmarkReportsIngest(b *testing.B) {
	n := 100000
	if s := os.Getenv("BENCH_REPORTS"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n = v
		}
	}
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Distinct reports: 100 organisations, one a day each, 2 failure
	// details (a typical report), about domains d0..d9.
	bodies := make([][]byte, n)
	for i := range n {
		r := benchReport(b, fmt.Sprintf("org%d.example", i%100), start.AddDate(0, 0, i/100), 2)
		r.Policies[0].Domain = fmt.Sprintf("d%d.example", i%10)
		js, err := r.MarshalRFC()
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = gzipped(js)
	}
	open := func(b *testing.B) (*sqlstore.DB, string) {
		path := filepath.Join(b.TempDir(), "reports.db")
		db, err := sqlstore.Open(ctx, path, sqlstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db, path
	}
	b.Run("file-import", func(b *testing.B) {
		for b.Loop() {
			db, path := open(b)
			in := &tlsrptintake.Intake{Store: db}
			t0 := time.Now()
			for i, body := range bodies {
				res, err := in.Body(ctx, body, tlsrptintake.Source{Channel: tlsrptintake.ChannelFile, FileName: fmt.Sprintf("r%d.json.gz", i), AdminImport: true})
				if err != nil || res.Outcome != store.OutcomeNew {
					b.Fatalf("report %d: %v %s", i, err, res.Outcome)
				}
			}
			b.ReportMetric(float64(n)/time.Since(t0).Seconds(), "reports/s")
			db.Close()
			size := 0
			for _, suffix := range []string{"", "-wal"} {
				if fi, err := os.Stat(path + suffix); err == nil {
					size += int(fi.Size())
				}
			}
			b.ReportMetric(float64(size)/float64(n), "db-bytes/report")
			b.ReportMetric(float64(len(bodies[0])), "gzip-bytes/report")
		}
		b.ReportMetric(float64(n), "reports")
	})
	b.Run("https-post", func(b *testing.B) {
		for b.Loop() {
			db, _ := open(b)
			srv := httptest.NewServer(&tlsrptintake.HTTPHandler{Intake: &tlsrptintake.Intake{Store: db}, PerMinute: -1})
			t0 := time.Now()
			for i, body := range bodies {
				resp, err := srv.Client().Post(srv.URL, "application/tlsrpt+gzip", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Fatalf("report %d: %d", i, resp.StatusCode)
				}
			}
			b.ReportMetric(float64(n)/time.Since(t0).Seconds(), "reports/s")
			srv.Close()
		}
	})
}
