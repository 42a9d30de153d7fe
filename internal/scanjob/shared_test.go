package scanjob

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// stepper is a ScanFunc that reports one event per release and finishes
// at the release after the last.
type stepper struct {
	n     int
	steps chan struct{}
	runs  atomic.Int32
}

func newStepper(n int) *stepper { return &stepper{n: n, steps: make(chan struct{})} }

func (s *stepper) scan(ctx context.Context, domain string, smtp bool, progress func(scan.Step)) *report.Document {
	s.runs.Add(1)
	grade := "A"
	doc := &report.Document{SchemaVersion: report.SchemaVersion, Domain: domain, Grade: &grade}
	for i := 1; i <= s.n+1; i++ {
		select {
		case <-s.steps:
		case <-ctx.Done():
			return doc
		}
		if i <= s.n {
			progress(scan.Step{DNS: &resolve.Answer{Name: fmt.Sprintf("h%d.%s", i, domain), Type: "A", Status: resolve.StatusNoData}})
		}
	}
	return doc
}

// release lets the scan take one step, or fails the test.
func (s *stepper) release(t *testing.T) {
	t.Helper()
	select {
	case s.steps <- struct{}{}:
	case <-time.After(30 * time.Second):
		t.Fatal("the scan did not take its next step")
	}
}

// lossy loses the notifications drop picks, as a reconnection or a full
// queue would.
type lossy struct {
	store.AnonScans
	drop    func(store.AnonNotice) bool
	dropped atomic.Int32
}

func (l *lossy) ListenAnonScans(ctx context.Context, ready func(), f func(store.AnonNotice)) error {
	return l.AnonScans.ListenAnonScans(ctx, ready, func(n store.AnonNotice) {
		if l.drop(n) {
			l.dropped.Add(1)
			return
		}
		f(n)
	})
}

// sharedStores opens one database twice, as two instances would.
func sharedStores(t *testing.T, engine string) (store.AnonScans, store.AnonScans) {
	t.Helper()
	ctx := context.Background()
	var open func() (*sqlstore.DB, error)
	switch engine {
	case "postgres":
		url := lab.NewPostgresDB(t)
		open = func() (*sqlstore.DB, error) { return sqlstore.OpenPostgres(ctx, url, sqlstore.Options{}) }
	default:
		path := filepath.Join(t.TempDir(), "store.db")
		open = func() (*sqlstore.DB, error) { return sqlstore.Open(ctx, path, sqlstore.Options{}) }
	}
	var out [2]store.AnonScans
	for i := range out {
		db, err := open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if out[i], err = db.AnonScans(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return out[0], out[1]
}

func closeOnCleanup(t *testing.T, m *Manager) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

func histCount(t *testing.T, m *Manager, via string) uint64 {
	t.Helper()
	var d dto.Metric
	if err := m.Metrics().NotifyLag.WithLabelValues(via).(interface{ Write(*dto.Metric) error }).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

func histMean(t *testing.T, m *Manager, via string) time.Duration {
	var d dto.Metric
	if err := m.Metrics().NotifyLag.WithLabelValues(via).(interface{ Write(*dto.Metric) error }).Write(&d); err != nil {
		t.Fatal(err)
	}
	h := d.GetHistogram()
	if h.GetSampleCount() == 0 {
		return 0
	}
	return time.Duration(h.GetSampleSum() / float64(h.GetSampleCount()) * float64(time.Second))
}

// watch consumes j as the event stream does (Wait after the events seen)
// and returns the sequence numbers in the order seen and the final
// snapshot; a number seen twice or out of order fails the test.
func watch(t *testing.T, j *Job, out chan<- []int, final chan<- Snapshot) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var seqs []int
	for {
		s := j.Wait(ctx, len(seqs))
		for _, e := range s.Events[len(seqs):] {
			if e.Seq != len(seqs)+1 {
				t.Errorf("event %d after %d events", e.Seq, len(seqs))
			}
			seqs = append(seqs, e.Seq)
		}
		if s.State.Final() || ctx.Err() != nil {
			out <- seqs
			final <- s
			return
		}
	}
}

// TestSharedFollow: a scan runs on instance A; instance B, asked for it,
// shows every event as the scan gathers it, in order, exactly once, and
// the result — over PostgreSQL's notifications, when notifications are
// lost (recovered by reading after the last seq), and on SQLite by
// polling alone.
func TestSharedFollow(t *testing.T) {
	const steps = 12
	for _, c := range []struct {
		name, engine string
		poll         time.Duration
		drop         func(store.AnonNotice) bool
		via          string // the path that must have delivered events
		pages        bool   // pages on B read the scan all along
	}{
		// No polling to speak of: everything after the first read comes
		// by NOTIFY.
		{"notify", "postgres", time.Hour, nil, "notify", false},
		// Every event with an even number is not notified: the next
		// notice or the poll reads it, never twice.
		{"lost-notifications", "postgres", 300 * time.Millisecond, func(n store.AnonNotice) bool { return n.Seq%2 == 0 && n.Seq > 0 }, "poll", false},
		{"sqlite-polling", "sqlite", 100 * time.Millisecond, nil, "poll", false},
		// Pages opened meanwhile on B read the scan too, concurrently
		// with the follower: still every event once.
		{"concurrent-pages", "postgres", 300 * time.Millisecond, nil, "get", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			sa, sb := sharedStores(t, c.engine)
			var lb *lossy
			if c.drop != nil {
				lb = &lossy{AnonScans: sb, drop: c.drop}
				sb = lb
			}
			st := newStepper(steps)
			a := New(Config{Instance: "A", Workers: 1, Poll: c.poll}, st.scan, NewShared(sa), nil, nil)
			closeOnCleanup(t, a)
			idle := newStepper(0)
			b := New(Config{Instance: "B", Workers: 1, Poll: c.poll}, idle.scan, NewShared(sb), nil, nil)
			closeOnCleanup(t, b)
			if c.engine == "postgres" {
				waitListening(t, b)
			}
			ctx := t.Context()
			ja, out, err := a.Submit(ctx, Request{Domain: "example.test", SMTP: true, Client: "x"})
			if err != nil || out != Started {
				t.Fatalf("submit on A: %v %v", out, err)
			}
			jb, err := b.Get(ctx, ja.ID())
			if err != nil {
				t.Fatalf("B does not know A's scan: %v", err)
			}
			if jb == ja {
				t.Fatal("B returned A's own job")
			}
			seqsc, finalc := make(chan []int, 1), make(chan Snapshot, 1)
			go watch(t, jb, seqsc, finalc)
			// A second request on B joins the scan running on A.
			jb2, out, err := b.Submit(ctx, Request{Domain: "example.test", SMTP: true, Client: "y"})
			if err != nil || out != Joined || jb2.ID() != ja.ID() {
				t.Fatalf("submit on B while A scans: %v %v %v", jb2, out, err)
			}
			stopGets := make(chan struct{})
			getsDone := make(chan struct{})
			go func() {
				defer close(getsDone)
				for c.pages {
					select {
					case <-stopGets:
						return
					default:
					}
					for range 4 {
						go b.Get(ctx, ja.ID())
					}
					time.Sleep(time.Millisecond)
				}
			}()
			for i := 1; i <= steps; i++ {
				st.release(t)
				// Live: B has event i while the scan is still running.
				waitEvents(t, jb, i)
				if s := jb.Snapshot(); s.State != Running {
					t.Fatalf("B shows %s after event %d", s.State, i)
				}
			}
			st.release(t)
			seqs, final := <-seqsc, <-finalc
			close(stopGets)
			<-getsDone
			if len(seqs) != steps {
				t.Fatalf("B's watcher saw %v, want 1..%d", seqs, steps)
			}
			if final.State != Done || final.Record == nil || len(final.Record.Document) == 0 {
				t.Fatalf("B's final state: %+v", final)
			}
			for i, e := range final.Events {
				if want := fmt.Sprintf("h%d.example.test A", i+1); e.Subject != want {
					t.Errorf("event %d is %q, want %q", i+1, e.Subject, want)
				}
			}
			if idle.runs.Load() != 0 || st.runs.Load() != 1 {
				t.Errorf("scans run: A %d, B %d; want one, on A", st.runs.Load(), idle.runs.Load())
			}
			if n := histCount(t, b, c.via); n == 0 {
				t.Errorf("no event came to B by %s", c.via)
			}
			if c.drop == nil && c.via == "notify" && histCount(t, b, "poll") != 0 {
				t.Errorf("events came by polling with polling off")
			}
			if lb != nil && lb.dropped.Load() < steps/2 {
				t.Errorf("only %d notifications lost: the test lost too few", lb.dropped.Load())
			}
			t.Logf("B: %d events by notify (mean lag %s), %d by poll (mean %s)", histCount(t, b, "notify"), histMean(t, b, "notify"),
				histCount(t, b, "poll"), histMean(t, b, "poll"))
			// Reuse across instances: B answers with A's fresh result.
			jr, out, err := b.Submit(ctx, Request{Domain: "example.test", SMTP: true, Client: "z"})
			if err != nil || out != Reused || jr.ID() != ja.ID() {
				t.Fatalf("submit on B after A's scan: %v %v", out, err)
			}
		})
	}
}

func waitListening(t *testing.T, m *Manager) {
	t.Helper()
	// The listener connects in the background; a notice sent before it
	// listens would be lost (and found by polling, which one case turns
	// off). Wait until the connection counts as listening.
	deadline := time.Now().Add(30 * time.Second)
	for !m.listening.Load() {
		if time.Now().After(deadline) {
			t.Fatal("B is not listening")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitEvents(t *testing.T, j *Job, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s := j.Wait(ctx, n-1); len(s.Events) < n {
		t.Fatalf("B has %d events, want %d", len(s.Events), n)
	}
}

// TestSharedInterrupted: a live scan whose instance stopped (no heartbeat
// past Stale) shows as interrupted on another instance, not running
// forever, and the janitor files it so for every instance.
func TestSharedInterrupted(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			sa, sb := sharedStores(t, engine)
			clock := lab.NewClock(time.Now().UTC().Truncate(time.Second))
			// The dead instance's scan as it left it: running, two events.
			if _, err := sa.BeginAnonScan(t.Context(), store.AnonScan{ID: newID(), Domain: "dead.test", SMTP: true, State: "running",
				Owner: "dead", Heartbeat: clock.Now(), Created: clock.Now(), Started: clock.Now()}, store.AnonLimits{}); err != nil {
				t.Fatal(err)
			}
			row, err := sa.RecentAnonScan(t.Context(), "dead.test", true, time.Time{})
			if err != nil || row != nil {
				t.Fatalf("a live scan counted as recent: %+v %v", row, err)
			}
			idle := newStepper(0)
			b := New(Config{Instance: "B", Poll: 50 * time.Millisecond, Stale: 30 * time.Second, Now: clock.Now}, idle.scan, NewShared(sb), nil, nil)
			closeOnCleanup(t, b)
			// Find the id through a join: B's submission finds it live.
			j, out, err := b.Submit(t.Context(), Request{Domain: "dead.test", SMTP: true, Client: "x"})
			if err != nil || out != Joined {
				t.Fatalf("submit: %v %v", out, err)
			}
			if s := j.Snapshot(); s.State != Running {
				t.Fatalf("state %s before the deadline", s.State)
			}
			clock.Add(31 * time.Second)
			s := wait(t, j)
			if s.State != Failed || s.Record == nil || s.Record.Error != interrupted {
				t.Fatalf("after the deadline: %+v", s)
			}
			// Filed so by the janitor: a third instance reads it final.
			if err := b.Sweep(t.Context()); err != nil {
				t.Fatal(err)
			}
			c := New(Config{Instance: "C", Now: clock.Now}, idle.scan, NewShared(sa), nil, nil)
			closeOnCleanup(t, c)
			jc, err := c.Get(t.Context(), j.ID())
			if err != nil {
				t.Fatal(err)
			}
			if s := jc.Snapshot(); s.State != Failed || s.Record.Error != interrupted {
				t.Fatalf("C reads %+v", s)
			}
			// And a new request for the domain starts a new scan.
			if _, out, err := c.Submit(t.Context(), Request{Domain: "dead.test", SMTP: true, Client: "x"}); err != nil || out != Started {
				t.Fatalf("submit after the interruption: %v %v", out, err)
			}
			// Expired after TTL, for every instance.
			clock.Add(2 * time.Hour)
			if err := c.Sweep(t.Context()); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Get(t.Context(), j.ID()); err != ErrNotFound {
				t.Fatalf("after the TTL: %v", err)
			}
		})
	}
}

// TestSharedHeartbeat: a scan that runs longer than the deadline is not
// taken for interrupted while its instance lives (its heartbeats go on).
func TestSharedHeartbeat(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			sa, sb := sharedStores(t, engine)
			clock := lab.NewClock(time.Now().UTC().Truncate(time.Second))
			st := newStepper(1)
			a := New(Config{Instance: "A", Heartbeat: 10 * time.Millisecond, Timeout: time.Hour, Now: clock.Now}, st.scan, NewShared(sa), nil, nil)
			closeOnCleanup(t, a)
			b := New(Config{Instance: "B", Poll: 10 * time.Millisecond, Stale: 30 * time.Second, Now: clock.Now}, newStepper(0).scan, NewShared(sb), nil, nil)
			closeOnCleanup(t, b)
			ja, _, err := a.Submit(t.Context(), Request{Domain: "long.test", SMTP: true, Client: "x"})
			if err != nil {
				t.Fatal(err)
			}
			jb, err := b.Get(t.Context(), ja.ID())
			if err != nil {
				t.Fatal(err)
			}
			// Two minutes of scanning in steps of 10s, each followed by
			// A's heartbeat and B's polls.
			for range 12 {
				clock.Add(10 * time.Second)
				time.Sleep(150 * time.Millisecond)
				if s := jb.Snapshot(); s.State.Final() {
					t.Fatalf("after %s B shows %s: %+v", clock.Now().Sub(jb.Snapshot().Created), s.State, s.Record)
				}
			}
			st.release(t)
			st.release(t)
			if s := wait(t, jb); s.State != Done {
				t.Fatalf("B's final state %s", s.State)
			}
		})
	}
}

// TestSharedLimits: with a shared store, a client's limits hold across
// the instances it reaches (docs/scaling.md, "Limits per client"), with
// the same refusals as on one instance: concurrent (retry in 10s) while
// its scans run anywhere, then the rate with the exact wait.
func TestSharedLimits(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			sa, sb := sharedStores(t, engine)
			clock := lab.NewClock(time.Now().UTC().Truncate(time.Second))
			cfg := Config{PerClientRate: rate.Every(time.Minute), PerClientBurst: 2, PerClientConcurrent: 2, Reuse: -1,
				Poll: 50 * time.Millisecond, Now: clock.Now}
			stA, stB := newStepper(0), newStepper(0)
			cfg.Instance = "A"
			a := New(cfg, stA.scan, NewShared(sa), nil, nil)
			closeOnCleanup(t, a)
			cfg.Instance = "B"
			b := New(cfg, stB.scan, NewShared(sb), nil, nil)
			closeOnCleanup(t, b)
			ctx := t.Context()
			submit := func(m *Manager, domain string) (*Job, error) {
				j, _, err := m.Submit(ctx, Request{Domain: domain, SMTP: true, Client: "192.0.2.1"})
				return j, err
			}
			refusal := func(err error, limit string, retry time.Duration) {
				t.Helper()
				var le *LimitError
				if !errors.As(err, &le) || le.Limit != limit || le.RetryAfter != retry {
					t.Fatalf("got %v; want the %s limit, retry in %s", err, limit, retry)
				}
			}
			j1, err := submit(a, "d1.test")
			if err != nil {
				t.Fatal(err)
			}
			j2, err := submit(b, "d2.test")
			if err != nil {
				t.Fatal(err)
			}
			// One scan runs on each instance: neither admits a third.
			_, err = submit(a, "d3.test")
			refusal(err, "concurrent", 10*time.Second)
			_, err = submit(b, "d3.test")
			refusal(err, "concurrent", 10*time.Second)
			stA.release(t)
			stB.release(t)
			for _, j := range []*Job{j1, j2} {
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				s := j.Wait(wctx, 0)
				for !s.State.Final() && wctx.Err() == nil {
					s = j.Wait(wctx, len(s.Events))
				}
				cancel()
				if s.State != Done {
					t.Fatalf("scan %s: %s", j.ID(), s.State)
				}
			}
			// Both places are free; the burst of 2 is spent, on two
			// instances: a minute to the next scan.
			_, err = submit(b, "d3.test")
			refusal(err, "rate", time.Minute)
			clock.Add(45 * time.Second)
			_, err = submit(a, "d3.test")
			refusal(err, "rate", 15*time.Second)
			clock.Add(15 * time.Second)
			if _, err := submit(a, "d3.test"); err != nil {
				t.Fatalf("a minute on: %v", err)
			}
		})
	}
}
