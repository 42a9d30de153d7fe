package bulk

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// clock is an injected clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// countingResolver answers from a table and counts the lookups.
type countingResolver struct {
	n       atomic.Int64
	delay   time.Duration
	answers map[string]*resolve.Answer
}

func (r *countingResolver) Lookup(ctx context.Context, name string, qtype uint16) *resolve.Answer {
	r.n.Add(1)
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	a := *r.answers[name]
	return &a
}

func newShared(t *testing.T, c *clock) *Shared {
	t.Helper()
	s := NewShared(context.Background(), &Gate{Interval: -1}, 5*time.Second, c.Now)
	t.Cleanup(s.Wait)
	return s
}

// TestDNSCacheTTL: positive answers are kept for their smallest TTL and
// shown with the TTL counted down (RFC 1035 §3.2.1), negative ones for the
// SOA's negative TTL (RFC 2308 §5), temporary failures not at all
// ("temporary is not absent": the next domain asks again).
func TestDNSCacheTTL(t *testing.T) {
	c := &clock{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	next := &countingResolver{answers: map[string]*resolve.Answer{
		"mx.example":    {Name: "mx.example", Type: "A", Status: resolve.StatusOK, Records: []resolve.Record{{Name: "mx.example", Type: "A", TTL: 300, Addr: netip.MustParseAddr("192.0.2.1")}}},
		"none.example":  {Name: "none.example", Type: "A", Status: resolve.StatusNXDomain, NegativeTTL: 60},
		"bad.example":   {Name: "bad.example", Type: "A", Status: resolve.StatusServFail},
		"nosoa.example": {Name: "nosoa.example", Type: "A", Status: resolve.StatusNoData},
	}}
	s := newShared(t, c)
	r := s.Resolver(next)
	ctx := context.Background()
	ask := func(name string) *resolve.Answer { return r.Lookup(ctx, name, dns.TypeA) }
	count := func(name string, want int64) {
		t.Helper()
		next.n.Store(0)
		ask(name)
		if got := next.n.Load(); got != want {
			t.Errorf("%s: %d lookups sent, want %d", name, got, want)
		}
	}
	for _, n := range []string{"mx.example", "none.example", "bad.example", "nosoa.example"} {
		ask(n)
	}
	c.add(59 * time.Second)
	count("mx.example", 0)
	count("MX.Example.", 0) // the same question
	count("none.example", 0)
	count("bad.example", 1)
	count("nosoa.example", 1)
	if a := ask("mx.example"); a.Records[0].TTL != 241 {
		t.Errorf("TTL after 59 s: %d, want 241", a.Records[0].TTL)
	}
	c.add(2 * time.Second)
	count("none.example", 1) // negative TTL 60 s passed
	c.add(240 * time.Second)
	count("mx.example", 1) // TTL 300 s passed
}

// TestSharedInFlight: domains that ask the same question at once share one
// lookup; a domain whose budget ends while waiting gets a timeout of its
// own, and the lookup still serves the others.
func TestSharedInFlight(t *testing.T) {
	c := &clock{now: time.Now()}
	next := &countingResolver{delay: 200 * time.Millisecond, answers: map[string]*resolve.Answer{
		"mx.example": {Name: "mx.example", Type: "A", Status: resolve.StatusOK, Records: []resolve.Record{{TTL: 300, Type: "A", Addr: netip.MustParseAddr("192.0.2.1")}}},
	}}
	r := newShared(t, c).Resolver(next)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if a := r.Lookup(context.Background(), "mx.example", dns.TypeA); a.Status != resolve.StatusOK {
				t.Errorf("status %s", a.Status)
			}
		})
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	a := r.Lookup(short, "mx.example", dns.TypeA)
	wg.Wait()
	if a.Status != resolve.StatusTimeout || !a.Status.Temporary() {
		t.Errorf("a waiter out of budget got %s, want a timeout (temporary)", a.Status)
	}
	if n := next.n.Load(); n != 1 {
		t.Errorf("%d lookups for 21 domains asking at once, want 1", n)
	}
}

type countingProber struct {
	n     atomic.Int64
	class smtpprobe.Class
}

func (p *countingProber) Probe(ctx context.Context, host string, ip netip.Addr) *smtpprobe.Result {
	p.n.Add(1)
	return &smtpprobe.Result{Host: host, Address: netip.AddrPortFrom(ip, 25).String(), Class: p.class, STARTTLS: p.class == ""}
}

// TestProbeCache: one probe per (address, MX name) per run; another name
// on the same address is probed on its own (its SNI and certificate name
// differ); a probe cut off by the run says nothing and is not kept.
func TestProbeCache(t *testing.T) {
	c := &clock{now: time.Now()}
	s := newShared(t, c)
	next := &countingProber{}
	p := s.Prober(next)
	ip := netip.MustParseAddr("192.0.2.25")
	for range 5 {
		p.Probe(context.Background(), "mx1.example", ip)
		p.Probe(context.Background(), "MX1.example", ip)
	}
	if n := next.n.Load(); n != 1 {
		t.Errorf("%d probes of one (address, name), want 1", n)
	}
	p.Probe(context.Background(), "tenant.example", ip)
	if n := next.n.Load(); n != 2 {
		t.Errorf("%d probes, want 2 (a second name on the address)", n)
	}
	cut := &countingProber{class: smtpprobe.CutOff}
	pc := s.Prober(cut)
	pc.Probe(context.Background(), "cut.example", ip)
	pc.Probe(context.Background(), "cut.example", ip)
	if n := cut.n.Load(); n != 2 {
		t.Errorf("a cut-off probe was kept (%d probes, want 2)", n)
	}
	if st := s.Stats(); st.Probes != 4 || st.ProbesShared != 9 {
		t.Errorf("stats %+v", st)
	}
}

// TestGate: at most Max at once per address, starts Interval apart, other
// addresses unaffected, and a 421 or tarpit spaces its address out.
func TestGate(t *testing.T) {
	g := &Gate{Max: 2, Interval: 50 * time.Millisecond}
	var busy, peak atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 6 {
		wg.Go(func() {
			release, err := g.Acquire(context.Background(), "192.0.2.1")
			if err != nil {
				t.Error(err)
				return
			}
			n := busy.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(80 * time.Millisecond)
			busy.Add(-1)
			release(false)
		})
	}
	// Another address goes through at once.
	t0 := time.Now()
	release, err := g.Acquire(context.Background(), "192.0.2.2")
	if err != nil || time.Since(t0) > 40*time.Millisecond {
		t.Errorf("another address waited %v (%v)", time.Since(t0), err)
	}
	release(false)
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Errorf("peak %d at once, want 2", p)
	}
	if g.Peak() != 2 {
		t.Errorf("Peak() = %d", g.Peak())
	}
	// Six starts 50 ms apart take at least 250 ms.
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("six starts in %v: not spaced", d)
	}

	// After a 421 the address waits at least a second; a context that
	// ends first gives up with its error.
	release, _ = g.Acquire(context.Background(), "192.0.2.3")
	release(true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := g.Acquire(ctx, "192.0.2.3"); err == nil {
		t.Error("no backoff after a 421")
	}
}

// TestLoadDone: --resume finds the domains already written, drops a
// cut-off last record, and refuses a file that is not ours.
func TestLoadDone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.jsonl")
	whole := `{"schema_version":1,"domain":"a.example","line":1}` + "\n" + `{"schema_version":1,"domain":"b.example","line":2}` + "\n"
	os.WriteFile(path, []byte(whole+`{"schema_version":1,"dom`), 0o644)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := LoadDone(f, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 2 || !res.Done.Has("a.example") || !res.Done.Has("b.example") || res.Done.Has("c.example") || res.CutBytes != int64(len(`{"schema_version":1,"dom`)) {
		t.Errorf("resumed %+v", res)
	}
	if b, _ := os.ReadFile(path); string(b) != whole {
		t.Errorf("file after LoadDone:\n%s", b)
	}

	bad := filepath.Join(dir, "notours.txt")
	os.WriteFile(bad, []byte("hello\nworld\n"), 0o644)
	g, _ := os.OpenFile(bad, os.O_RDWR|os.O_APPEND, 0)
	defer g.Close()
	if _, err := LoadDone(g, FormatJSON); !errors.As(err, new(*InputError)) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a foreign file: %v", err)
	}
	if b, _ := os.ReadFile(bad); string(b) != "hello\nworld\n" {
		t.Error("a foreign file was changed")
	}

	csvPath := filepath.Join(dir, "out.csv")
	os.WriteFile(csvPath, append(EncodeCSVHeader(), []byte("3,c.example,A,enforce,enforce,604800,1,1,0,none,true,,12\n4,d.exa")...), 0o644)
	h, _ := os.OpenFile(csvPath, os.O_RDWR|os.O_APPEND, 0)
	defer h.Close()
	res, err = LoadDone(h, FormatCSV)
	if err != nil || !res.HasHeader || res.Records != 1 || !res.Done.Has("c.example") || res.CutBytes == 0 {
		t.Errorf("CSV: %+v %v", res, err)
	}
}
