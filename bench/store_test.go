package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// realReport is the JSON document of a real scan of a lab domain with two
// MX hosts of two addresses each (STARTTLS, certificates, transcripts):
// what a saved scan holds, evidence included.
func realReport(b *testing.B) ([]byte, []store.Finding, string) {
	l := lab.New(b)
	l.DNS.MustAdd(b,
		`_mta-sts.bench.test. 300 IN TXT "v=STSv1; id=20261101"`,
		`_smtp._tls.bench.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@bench.test"`,
		`bench.test. 300 IN MX 10 mx1.bench.test.`, `bench.test. 300 IN MX 20 mx2.bench.test.`)
	l.MustPolicyHost(b, "bench.test", lab.PolicyHostOptions{Body: "version: STSv1\r\nmode: testing\r\nmx: mx1.bench.test\r\nmax_age: 86400\r\n"})
	for _, h := range []string{"mx1.bench.test", "mx2.bench.test"} {
		l.MustMX(b, h, []netip.Addr{l.NextAddr(), l.NextAddr()}, lab.SMTPOptions{})
	}
	d := l.Dialer()
	s := &scan.Scanner{
		Resolver: &resolve.Client{Servers: []string{l.DNS.Addr()}},
		Fetcher:  &fetch.Fetcher{Dialer: d, Roots: l.CA.Pool()},
		Dialer:   d,
		Prober:   &smtpprobe.Prober{Dialer: d, Roots: l.CA.Pool(), EHLO: "bench.example"},
	}
	o := s.Scan(context.Background(), "bench.test")
	r := check.Evaluate(o, time.Now())
	doc := report.NewDocument(r, "bench.test")
	var buf bytes.Buffer
	if err := report.WriteJSON(&buf, doc); err != nil {
		b.Fatal(err)
	}
	var fs []store.Finding
	for _, f := range doc.Findings {
		fs = append(fs, store.Finding{ID: f.ID, Severity: f.Severity, Component: f.Component, Subject: f.Subject, Message: f.Message})
	}
	grade := ""
	if doc.Grade != nil {
		grade = *doc.Grade
	}
	return buf.Bytes(), fs, grade
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkStore measures the store for saved domains (issue 11), on
// SQLite and, side by side, on PostgreSQL (issue 15; the server of
// MAILTLS_TEST_POSTGRES, skipped without it): a rescan burst of 10,000
// scans (1,000 domains × 10, four workers, each scan created, finished
// with a real report and its findings, its lease released), the database
// size per stored scan, and the dashboard query of an account with those
// 1,000 domains (target p95 < 100 ms). It ignores b.N: run it with
// -benchtime 1x (bench/run.sh does).
func BenchmarkStore(b *testing.B) {
	ctx := context.Background()
	b.Run("sqlite", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "bench.db")
		db, err := sqlstore.Open(ctx, path, sqlstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		// The file's size with every free page given back (VACUUM), so
		// that sizes before and after retention compare.
		benchStore(b, db, func() int64 {
			if _, err := db.SQL().Exec("VACUUM"); err != nil {
				b.Fatal(err)
			}
			if _, err := db.SQL().Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				b.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			return st.Size()
		})
	})
	b.Run("postgres", func(b *testing.B) {
		db, err := sqlstore.OpenPostgres(ctx, lab.NewPostgresDB(b), sqlstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		benchStore(b, db, func() int64 {
			if _, err := db.SQL().Exec("VACUUM FULL"); err != nil { // gives freed pages back, as on SQLite
				b.Fatal(err)
			}
			var n int64
			if err := db.SQL().QueryRow("SELECT pg_database_size(current_database())").Scan(&n); err != nil {
				b.Fatal(err)
			}
			return n
		})
	})
}

// benchStore runs BenchmarkStore's work on db; size is the database's
// size on disk.
func benchStore(b *testing.B, db *sqlstore.DB, size func() int64) {
	domains, perDomain, workers := 1000, 10, 4
	if testing.Short() {
		domains, perDomain = 100, 2
	}
	doc, findings, grade := realReport(b)
	ctx := context.Background()
	u, err := db.CreateUser(ctx, "msp@bench.example", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
	if err != nil {
		b.Fatal(err)
	}
	for i := range domains {
		if _, err := db.AddDomain(ctx, store.NewDomain{UserID: u.ID, Name: fmt.Sprintf("customer%04d.example", i), NextScanAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	base := size()

	b.ResetTimer()
	start := time.Now()
	var mu sync.Mutex
	var finish []time.Duration
	for round := range perDomain {
		// Every domain is due: one day's rescan burst.
		if round > 0 {
			b.StopTimer()
			if _, err := db.SQL().Exec("UPDATE domains SET next_scan_at = 0"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		var wg sync.WaitGroup
		for w := range workers {
			owner := fmt.Sprint("worker-", w)
			wg.Go(func() {
				for {
					claimed, err := db.ClaimDueDomains(ctx, owner, 10, time.Minute)
					if err != nil {
						b.Error(err)
						return
					}
					if len(claimed) == 0 {
						return
					}
					for _, d := range claimed {
						sc, err := db.CreateScan(ctx, store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule})
						if err != nil {
							b.Error(err)
							return
						}
						t0 := time.Now()
						_, err = db.FinishScan(ctx, sc.ID, store.ScanResult{State: store.ScanDone, ScannerVersion: "bench", CatalogVersion: "bench",
							ReportSchema: 1, Grade: grade, PolicyStatus: "testing", Report: doc, Findings: findings,
							Release: &store.Release{Owner: owner, Next: store.NextScan(d.Name, d.Interval, time.Now())}})
						if err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						finish = append(finish, time.Since(t0))
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	n := len(finish)
	grown := size() - base

	var dash []time.Duration
	for range 200 {
		t0 := time.Now()
		rows, err := db.Dashboard(ctx, u.ID)
		if err != nil {
			b.Fatal(err)
		}
		dash = append(dash, time.Since(t0))
		if len(rows) != domains || rows[0].Last == nil || !rows[0].HasPrevious {
			b.Fatalf("dashboard has %d rows, first %+v", len(rows), rows[0])
		}
	}
	// Retention reduces every scan but each domain's latest to its
	// summary (grade, counts, findings): the size of a summary follows
	// from the sizes before and after, the latest scans staying full.
	full := float64(grown) / float64(n)
	pr, err := db.Prune(ctx, store.Retention{FullScans: time.Nanosecond, KeepFull: 1})
	if err != nil || pr.Summarised != int64(n-domains) {
		b.Fatalf("Prune = %+v, %v; want %d summarised", pr, err, n-domains)
	}
	summary := (float64(size()-base) - float64(domains)*full) / float64(n-domains)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "scans/s")
	b.ReportMetric(float64(percentile(finish, 0.95).Microseconds())/1000, "finish-p95-ms")
	b.ReportMetric(full, "db-bytes/scan")
	b.ReportMetric(summary, "summary-bytes/scan")
	b.ReportMetric(float64(len(doc)), "json-bytes/scan")
	b.ReportMetric(float64(percentile(dash, 0.5).Microseconds())/1000, "dashboard-p50-ms")
	b.ReportMetric(float64(percentile(dash, 0.95).Microseconds())/1000, "dashboard-p95-ms")
	b.ReportMetric(float64(len(findings)), "findings/scan")
}
