package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/diff/difftest"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// monitorNames are 10,000 saved-domain names of the kinds a monitoring
// service holds: one customer's numbered domains, look-alike brands,
// subdomains of one organisation, IDNs in A-label form.
func monitorNames(n int) []string {
	var names []string
	for i := 0; len(names) < n; i++ {
		switch i % 4 {
		case 0:
			names = append(names, fmt.Sprintf("customer%05d.example", i))
		case 1:
			names = append(names, fmt.Sprintf("shop-%d.example.com", i))
		case 2:
			names = append(names, fmt.Sprintf("mail%d.corp.example.net", i))
		default:
			names = append(names, fmt.Sprintf("xn--bcher-%d-kva.example", i))
		}
	}
	return names
}

// BenchmarkSchedule is the spread of the daily rescans of 10,000 saved
// domains over the day (store.NextScan: a per-domain phase from the
// name's hash): the busiest and the quietest 10-minute window against its
// fair share (issue 11 target: no window above 2x). It logs the scans
// started in each hour (bench/run.sh draws the histogram).
func BenchmarkSchedule(b *testing.B) {
	names := monitorNames(10000)
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var windows [144]int
	var hours [24]int
	for b.Loop() {
		windows, hours = [144]int{}, [24]int{}
		for _, n := range names {
			at := store.NextScan(n, 24*time.Hour, day).Sub(day)
			windows[int(at/(10*time.Minute))%144]++
			hours[int(at/time.Hour)%24]++
		}
	}
	share := float64(len(names)) / 144
	b.ReportMetric(float64(slices.Max(windows[:]))/share, "x-busiest-10min")
	b.ReportMetric(float64(slices.Min(windows[:]))/share, "x-quietest-10min")
	counts := make([]string, len(hours))
	for h, c := range hours {
		counts[h] = strconv.Itoa(c)
	}
	b.Logf("spread-hours %s", strings.Join(counts, " "))
}

// BenchmarkMonitor runs the monitor's worker (scheduler, history rules,
// alert decisions, outbox) over 10,000 saved domains of 10 accounts in
// SQLite: a first round makes every domain's baseline, then every domain
// is due again at once (a day's rescans after downtime, the worst burst)
// and 5% of them regress. The scan itself is a stored real report, so the
// figures are the worker and the store's: scans stored per second, alert
// messages queued, database size per scan. It ignores b.N (bench/run.sh
// runs it with -benchtime 1x).
func BenchmarkMonitor(b *testing.B) {
	domains, accounts := 10000, 10
	if testing.Short() {
		domains = 500
	}
	raw, _, _ := realReport(b)
	var healthy report.Document
	if err := json.Unmarshal(raw, &healthy); err != nil {
		b.Fatal(err)
	}
	regressed := healthy
	regressed.Findings = slices.Clone(healthy.Findings)
	difftest.AddFinding(&regressed, "mx-not-covered", "error", "mx", "mx9.bench.test", "mx9.bench.test is not covered by the policy")
	difftest.SetGrade(&regressed, "D")

	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "monitor.db")
	db, err := sqlstore.Open(ctx, path, sqlstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	names := monitorNames(domains)
	regress := map[string]bool{}
	for a := range accounts {
		u, err := db.CreateUser(ctx, fmt.Sprintf("admin%d@bench.example", a), "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
		if err != nil {
			b.Fatal(err)
		}
		ch, err := db.CreateChannel(ctx, store.NewChannel{UserID: u.ID, Kind: store.ChannelWebhook, Target: "https://hooks.bench.example/x", Secret: []byte("s")})
		if err != nil {
			b.Fatal(err)
		}
		if err := db.MarkChannelVerified(ctx, ch.ID); err != nil {
			b.Fatal(err)
		}
		for i := a; i < domains; i += accounts {
			if _, err := db.AddDomain(ctx, store.NewDomain{UserID: u.ID, Name: names[i], NextScanAt: time.Now()}); err != nil {
				b.Fatal(err)
			}
			if i%20 == 0 {
				regress[names[i]] = true
			}
		}
	}

	var mu sync.Mutex
	round := 0
	scanFunc := func(_ context.Context, name string) *report.Document {
		mu.Lock()
		r := round
		mu.Unlock()
		src := &healthy
		if r > 0 && regress[name] {
			src = &regressed
		}
		d := *src
		d.Domain = name
		d.Findings = slices.Clone(src.Findings)
		return &d
	}
	w, err := monitor.New(monitor.Config{Scheduler: true, Scans: 4, Poll: 20 * time.Millisecond, ScannerVersion: "bench"},
		monitor.Options{Store: db, Scan: scanFunc, Owner: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	// burst runs the worker until it has stored want more scans.
	burst := func(want int64) time.Duration {
		rctx, cancel := context.WithCancel(ctx)
		before := w.Stats().Scanned
		start := time.Now()
		done := make(chan struct{})
		go func() { w.Run(rctx); close(done) }()
		for w.Stats().Scanned-before < want {
			if s := w.Stats(); s.Failed > 0 || s.LeaseLost > 0 {
				b.Fatalf("worker stats %+v", s)
			}
			time.Sleep(10 * time.Millisecond)
		}
		elapsed := time.Since(start)
		cancel()
		<-done
		return elapsed
	}
	burst(int64(domains)) // the baselines
	size0 := fileSize(b, db, path)

	mu.Lock()
	round = 1
	mu.Unlock()
	if _, err := db.SQL().Exec("UPDATE domains SET next_scan_at = 0"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	elapsed := burst(int64(domains))
	b.StopTimer()
	size1 := fileSize(b, db, path)

	var queued int
	if err := db.SQL().QueryRow("SELECT count(*) FROM outbox").Scan(&queued); err != nil {
		b.Fatal(err)
	}
	if queued != len(regress) {
		b.Fatalf("%d alerts queued for %d regressed domains", queued, len(regress))
	}
	b.ReportMetric(float64(domains)/elapsed.Seconds(), "scans/s")
	b.ReportMetric(float64(queued), "alerts")
	b.ReportMetric(float64(size1-size0)/float64(domains), "db-bytes/scan")
	b.ReportMetric(float64(len(raw)), "json-bytes/scan")
}

func fileSize(b *testing.B, db *sqlstore.DB, path string) int64 {
	var pages, size int64
	if _, err := db.SQL().Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		b.Fatal(err)
	}
	if err := db.SQL().QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		b.Fatal(err)
	}
	if err := db.SQL().QueryRow("PRAGMA page_size").Scan(&size); err != nil {
		b.Fatal(err)
	}
	return pages * size
}
