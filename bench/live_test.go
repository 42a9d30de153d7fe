package bench

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/scanjob"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// BenchmarkLiveProgress: two web checker instances (scanjob managers) on
// one PostgreSQL (MAILTLS_TEST_POSTGRES). A scan on A reports one event
// per operation; the time until a watcher on B has it (written, NOTIFY,
// read by B) is set beside the time until a watcher on A itself has it.
func BenchmarkLiveProgress(b *testing.B) {
	url := lab.NewPostgresDB(b)
	ctx := context.Background()
	open := func() *scanjob.Shared {
		db, err := sqlstore.OpenPostgres(ctx, url, sqlstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		as, err := db.AnonScans(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return scanjob.NewShared(as)
	}
	const perScan = 500
	step := make(chan struct{})
	scanFn := func(ctx context.Context, domain string, smtp bool, progress func(scan.Step)) *report.Document {
		for i := 0; ; i++ {
			select {
			case _, ok := <-step:
				if !ok || i == perScan {
					return &report.Document{SchemaVersion: report.SchemaVersion, Domain: domain}
				}
			case <-ctx.Done():
				return &report.Document{SchemaVersion: report.SchemaVersion, Domain: domain}
			}
			progress(scan.Step{DNS: &resolve.Answer{Name: fmt.Sprintf("h%d.%s", i, domain), Type: "A", Status: resolve.StatusNoData}})
		}
	}
	// Polling is off: B has the events by NOTIFY.
	cfg := scanjob.Config{Workers: 1, Poll: time.Hour, PerClientRate: -1, PerClientConcurrent: -1}
	cfg.Instance = "A"
	a := scanjob.New(cfg, scanFn, open(), nil, nil)
	cfg.Instance = "B"
	bm := scanjob.New(cfg, scanFn, open(), nil, nil)
	defer func() {
		close(step)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		a.Close(cctx)
		bm.Close(cctx)
	}()
	// B listens on a connection of its own; give it a moment to be up.
	time.Sleep(500 * time.Millisecond)
	var remote, local []time.Duration
	var ja, jb *scanjob.Job
	n := 0
	wait := func(j *scanjob.Job, have int) {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if s := j.Wait(wctx, have); len(s.Events) <= have {
			b.Fatalf("no event %d", have+1)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if ja == nil || n == perScan {
			if ja != nil {
				step <- struct{}{} // the scan ends
			}
			var err error
			ja, _, err = a.Submit(ctx, scanjob.Request{Domain: fmt.Sprintf("d%d.test", i), SMTP: true, Client: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			if jb, err = bm.Get(ctx, ja.ID()); err != nil {
				b.Fatal(err)
			}
			n = 0
		}
		start := time.Now()
		step <- struct{}{}
		done := make(chan time.Duration, 1)
		go func() { wait(ja, n); done <- time.Since(start) }()
		wait(jb, n)
		remote = append(remote, time.Since(start))
		local = append(local, <-done)
		n++
	}
	b.StopTimer()
	slices.Sort(remote)
	slices.Sort(local)
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[int(float64(len(d)-1)*p)]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(remote, 0.5), "notify-p50-ms")
	b.ReportMetric(pct(remote, 0.95), "notify-p95-ms")
	b.ReportMetric(pct(local, 0.5), "local-p50-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkAnonAdmit: what the per-client limits shared by instances add
// to filing a new anonymous scan on PostgreSQL (docs/scaling.md, "Limits
// per client"). Each operation files one scan without limits and one with
// them (rate, burst and concurrency, none reached; clients in turn over
// 1,000), alternating, and the two are set side by side.
func BenchmarkAnonAdmit(b *testing.B) {
	url := lab.NewPostgresDB(b)
	ctx := context.Background()
	db, err := sqlstore.OpenPostgres(ctx, url, sqlstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	as, err := db.AnonScans(ctx)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	file := func(i int, lim store.AnonLimits) time.Duration {
		start := time.Now()
		s := store.AnonScan{ID: fmt.Sprintf("%t%d", lim.Client != "", i), Domain: fmt.Sprintf("%t%d.test", lim.Client != "", i),
			State: "queued", Owner: "A", Heartbeat: now, Created: now}
		if _, err := as.BeginAnonScan(ctx, s, lim); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var plain, limited []time.Duration
	b.ResetTimer()
	for i := range b.N {
		lim := store.AnonLimits{Client: fmt.Sprintf("192.0.2.%d/%d", i%250, i%4), Rate: 1e6, Burst: 1 << 20,
			Concurrent: 1 << 20, Now: now.Add(time.Duration(i) * time.Microsecond)}
		if i%2 == 0 {
			plain = append(plain, file(i, store.AnonLimits{}))
			limited = append(limited, file(i, lim))
		} else {
			limited = append(limited, file(i, lim))
			plain = append(plain, file(i, store.AnonLimits{}))
		}
	}
	b.StopTimer()
	slices.Sort(plain)
	slices.Sort(limited)
	p50 := func(d []time.Duration) float64 { return float64(d[len(d)/2]) / float64(time.Millisecond) }
	b.ReportMetric(p50(plain), "plain-p50-ms")
	b.ReportMetric(p50(limited), "limited-p50-ms")
	b.ReportMetric(0, "ns/op")
}
