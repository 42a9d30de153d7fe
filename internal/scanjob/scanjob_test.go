package scanjob

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
)

// gate is a ScanFunc whose scans wait until released; each reports one
// DNS step first.
type gate struct {
	release chan struct{}
	started atomic.Int32
	panicOn string
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) scan(ctx context.Context, domain string, smtp bool, progress func(scan.Step)) *report.Document {
	g.started.Add(1)
	if domain == g.panicOn {
		panic("boom")
	}
	progress(scan.Step{DNS: &resolve.Answer{Name: "_mta-sts." + domain, Type: "TXT", Status: resolve.StatusNoData}})
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	grade := "A"
	return &report.Document{SchemaVersion: report.SchemaVersion, Domain: domain, Grade: &grade}
}

func newManager(t *testing.T, cfg Config, g *gate) (*Manager, *lab.Clock, *MemoryStore) {
	t.Helper()
	c := lab.NewClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	cfg.Now = c.Now
	st := NewMemoryStore()
	m := New(cfg, g.scan, st, nil, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m, c, st
}

func wait(t *testing.T, j *Job) Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		s := j.Snapshot()
		if s.State.Final() {
			return s
		}
		select {
		case <-j.Changed():
		case <-ctx.Done():
			t.Fatalf("job %s did not finish: %+v", j.ID(), s)
		}
	}
}

func TestJoinReuseAndExpiry(t *testing.T) {
	g := newGate()
	m, c, st := newManager(t, Config{Workers: 1, Queue: 4}, g)
	ctx := context.Background()
	a, out, err := m.Submit(ctx, Request{Domain: "a.test", SMTP: true, Client: "1"})
	if err != nil || out != Started {
		t.Fatalf("submit: %v %v", out, err)
	}
	// The same domain and options while it runs: the same job.
	b, out, err := m.Submit(ctx, Request{Domain: "a.test", SMTP: true, Client: "2"})
	if err != nil || out != Joined || b != a {
		t.Fatalf("second submit = %v %v (same job %v), want joined", out, err, b == a)
	}
	// Other options are another scan.
	other, out, _ := m.Submit(ctx, Request{Domain: "a.test", SMTP: false, Client: "2"})
	if out != Started || other == a {
		t.Fatalf("smtp=false: %v, want a new scan", out)
	}
	close(g.release)
	s := wait(t, a)
	if s.State != Done || s.Record == nil || len(s.Record.Document) == 0 || len(s.Events) != 1 || s.Events[0].Seq != 1 {
		t.Fatalf("finished job: %+v", s)
	}
	wait(t, other)
	// Within the reuse window the finished scan answers.
	c.Add(time.Minute)
	r, out, err := m.Submit(ctx, Request{Domain: "a.test", SMTP: true, Client: "3"})
	if err != nil || out != Reused || r.ID() != a.ID() {
		t.Fatalf("submit after 1m = %v %v, want reused %s", out, err, a.ID())
	}
	// After it, a new scan.
	c.Add(2 * time.Minute)
	n, out, _ := m.Submit(ctx, Request{Domain: "a.test", SMTP: true, Client: "3"})
	if out != Started || n.ID() == a.ID() {
		t.Fatalf("submit after 3m = %v, want a new scan", out)
	}
	wait(t, n)
	if got := g.started.Load(); got != 3 {
		t.Errorf("%d scans ran, want 3", got)
	}

	// Expiry: nothing is left after the TTL (1 h), and the ids are gone.
	if _, err := m.Get(ctx, a.ID()); err != nil {
		t.Fatalf("get before expiry: %v", err)
	}
	c.Add(MaxTTL)
	if _, err := m.Get(ctx, a.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after expiry, before the sweep: %v, want ErrNotFound", err)
	}
	if err := m.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if recs, idx := st.Len(); recs != 0 || idx != 0 {
		t.Errorf("after the sweep the store holds %d records and %d index entries, want none", recs, idx)
	}
	m.mu.Lock()
	live, keys, clients := len(m.live), len(m.byKey), len(m.clients)
	m.mu.Unlock()
	if live+keys+clients != 0 {
		t.Errorf("after the sweep the manager holds %d live jobs, %d keys, %d clients", live, keys, clients)
	}
	for _, id := range []string{a.ID(), other.ID(), n.ID()} {
		if _, err := m.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("get %s after expiry: %v", id, err)
		}
	}
}

func TestLimits(t *testing.T) {
	ctx := context.Background()
	t.Run("queue", func(t *testing.T) {
		g := newGate()
		defer close(g.release)
		m, _, _ := newManager(t, Config{Workers: 1, Queue: 2, PerClientConcurrent: -1, PerClientRate: -1}, g)
		// One runs, two wait, the fourth finds the queue full.
		var jobs []*Job
		for i, d := range []string{"a.test", "b.test", "c.test"} {
			j, _, err := m.Submit(ctx, Request{Domain: d, Client: "x"})
			if err != nil {
				t.Fatalf("submit %d: %v", i, err)
			}
			jobs = append(jobs, j)
			if i == 0 {
				for g.started.Load() == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}
		if _, _, err := m.Submit(ctx, Request{Domain: "d.test", Client: "x"}); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("fourth submit: %v, want ErrQueueFull", err)
		}
		if p := jobs[2].Snapshot().Position; p != 2 {
			t.Errorf("position of the third job = %d, want 2", p)
		}
		if q, r := m.Counts(); q != 2 || r != 1 {
			t.Errorf("counts = %d queued, %d running; want 2, 1", q, r)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		g := newGate()
		m, _, _ := newManager(t, Config{Workers: 4, PerClientConcurrent: 2, PerClientRate: -1}, g)
		for _, d := range []string{"a.test", "b.test"} {
			if _, _, err := m.Submit(ctx, Request{Domain: d, Client: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		var le *LimitError
		j3, _, err := m.Submit(ctx, Request{Domain: "c.test", Client: "x"})
		if !errors.As(err, &le) || le.Limit != "concurrent" {
			t.Fatalf("third scan of one client: %v, want a concurrent LimitError", err)
		}
		// Another client is not affected; joining costs nothing.
		if _, _, err := m.Submit(ctx, Request{Domain: "c.test", Client: "y"}); err != nil {
			t.Errorf("other client: %v", err)
		}
		if _, out, err := m.Submit(ctx, Request{Domain: "c.test", Client: "x"}); err != nil || out != Joined {
			t.Errorf("joining while at the limit: %v %v", out, err)
		}
		_ = j3
		close(g.release)
		// Once they finish the client may start again.
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, _, err := m.Submit(ctx, Request{Domain: "d.test", Client: "x"})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("client still refused after its scans finished: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("rate", func(t *testing.T) {
		g := newGate()
		close(g.release)
		m, c, _ := newManager(t, Config{Workers: 4, PerClientConcurrent: -1, PerClientRate: 1.0 / 60, PerClientBurst: 2, Reuse: -1}, g)
		for i := range 2 {
			if _, _, err := m.Submit(ctx, Request{Domain: "a.test", Client: "x"}); err != nil {
				t.Fatalf("scan %d: %v", i, err)
			}
			for g.started.Load() != int32(i+1) {
				time.Sleep(time.Millisecond)
			}
			for {
				if q, r := m.Counts(); q+r == 0 {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		_, _, err := m.Submit(ctx, Request{Domain: "a.test", Client: "x"})
		var le *LimitError
		if !errors.As(err, &le) || le.Limit != "rate" || le.RetryAfter < 50*time.Second || le.RetryAfter > 61*time.Second {
			t.Fatalf("third scan within a minute: %v, want a rate LimitError with Retry-After about 60s", err)
		}
		c.Add(time.Minute)
		if _, _, err := m.Submit(ctx, Request{Domain: "a.test", Client: "x"}); err != nil {
			t.Errorf("a minute later: %v", err)
		}
	})
}

func TestPanicFailsTheJobOnly(t *testing.T) {
	g := newGate()
	g.panicOn = "boom.test"
	close(g.release)
	m, _, _ := newManager(t, Config{Workers: 1}, g)
	ctx := context.Background()
	j, _, err := m.Submit(ctx, Request{Domain: "boom.test", Client: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if s := wait(t, j); s.State != Failed || s.Record.Error == "" || len(s.Record.Document) != 0 {
		t.Errorf("panicking scan: %+v", s)
	}
	// The worker survives.
	j2, _, _ := m.Submit(ctx, Request{Domain: "ok.test", Client: "x"})
	if s := wait(t, j2); s.State != Done {
		t.Errorf("next scan: %s", s.State)
	}
	if got := testutilCount(m.metrics.Panics); got != 1 {
		t.Errorf("panics counted = %v, want 1", got)
	}
	// A failed scan is not reused.
	_, out, _ := m.Submit(ctx, Request{Domain: "boom.test", Client: "y"})
	if out != Started {
		t.Errorf("resubmitting a failed scan: %s, want a new scan", out)
	}
}

func TestWaitAndEvents(t *testing.T) {
	g := newGate()
	m, _, _ := newManager(t, Config{Workers: 1}, g)
	ctx := context.Background()
	j, _, _ := m.Submit(ctx, Request{Domain: "w.test", Client: "x"})
	s := j.Wait(ctx, 0)
	if len(s.Events) != 1 || s.Events[0].Stage != StageRecord || s.Events[0].Status != StatusAbsent {
		t.Fatalf("first event: %+v", s.Events)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	s = j.Wait(short, 1)
	cancel()
	if s.State != Running || len(s.Events) != 1 {
		t.Errorf("wait with nothing new: %+v", s)
	}
	close(g.release)
	if s := j.Wait(ctx, 1); s.State != Done {
		t.Errorf("wait for the end: %s", s.State)
	}
}

func TestValidID(t *testing.T) {
	id := newID()
	if !ValidID(id) || ValidID(id[1:]) || ValidID("ABCDEFGHIJKLMNOPQRSTUVWXYZ") || ValidID("../../../../../../etc/pass") {
		t.Errorf("ValidID wrong for %q", id)
	}
	if newID() == id {
		t.Error("two ids alike")
	}
}

func testutilCount(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
