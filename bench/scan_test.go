// Package bench holds the performance measurements of mailtls. Run
// bench/run.sh; it prints the figures quoted in the issues.
package bench

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
)

// latency is injected on every DNS answer and every TCP connection.
const latency = 50 * time.Millisecond

// criticalPath is the fewest sequential round trips a scan can need: the
// policy host's address (one DNS answer), then the connection to it (one
// TCP connection); the MX chain (MX, then the MX hosts' addresses) is two
// DNS answers and runs beside it. TLS and HTTP over loopback add nothing
// measurable.
const criticalPath = 2 * latency

// world is a lab domain as a real one looks: record, policy host with A and
// AAAA, two MX hosts with both families, TLS-RPT.
func world(b *testing.B) (*lab.Lab, *scan.Scanner) {
	l := lab.New(b)
	d := "bench.test"
	l.DNS.MustAdd(b,
		`_mta-sts.bench.test. 300 IN TXT "v=STSv1; id=20261101"`,
		`_smtp._tls.bench.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@bench.test"`,
		`bench.test. 300 IN MX 10 mx1.bench.test.`, `bench.test. 300 IN MX 20 mx2.bench.test.`,
		`mx1.bench.test. 300 IN A 192.0.2.25`, `mx1.bench.test. 300 IN AAAA 2001:db8::25`,
		`mx2.bench.test. 300 IN A 192.0.2.26`, `mx2.bench.test. 300 IN AAAA 2001:db8::26`)
	l.MustPolicyHost(b, d, lab.PolicyHostOptions{Body: "version: STSv1\r\nmode: enforce\r\nmx: mx1.bench.test\r\nmx: mx2.bench.test\r\nmax_age: 604800\r\n"})
	v6 := l.NextAddr6()
	l.DNS.MustAdd(b, "mta-sts.bench.test. 300 IN AAAA "+v6.String())
	if err := l.MapAddr(l.HTTPS.Addr(), v6, 443); err != nil {
		b.Fatal(err)
	}
	l.DNS.SetLatency(latency)
	dialer := l.Dialer()
	dialer.Net = l.SlowNet(latency)
	s := &scan.Scanner{
		Resolver: &resolve.Client{Servers: []string{l.DNS.Addr()}},
		Fetcher:  &fetch.Fetcher{Dialer: dialer, Roots: l.CA.Pool()},
		Dialer:   dialer,
	}
	return l, s
}

// serial makes every lookup and fetch wait for the previous one: the naive
// sequential scan the concurrent one is compared with.
type serial struct {
	mu sync.Mutex
	r  scan.Resolver
	f  scan.Fetcher
}

func (s *serial) Lookup(ctx context.Context, name string, qtype uint16) *resolve.Answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Lookup(ctx, name, qtype)
}

func (s *serial) Fetch(ctx context.Context, host string, ip netip.Addr) *fetch.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Fetch(ctx, host, ip)
}

func scanOnce(b *testing.B, s *scan.Scanner) time.Duration {
	start := time.Now()
	o := s.Scan(context.Background(), "bench.test")
	d := time.Since(start)
	r := check.Evaluate(o, time.Now())
	if r.Grade != "A" {
		b.Fatalf("the bench domain should grade A, got %q: %v", r.Grade, r.Findings)
	}
	return d
}

// BenchmarkScan reports the wall time of one scan as a ratio to the
// critical path (target: at most 1.3), side by side with a naive serial
// scan of the same domain in the same run, and allocations per scan.
func BenchmarkScan(b *testing.B) {
	for _, mode := range []string{"concurrent", "serial"} {
		b.Run(mode, func(b *testing.B) {
			_, s := world(b)
			if mode == "serial" {
				ser := &serial{r: s.Resolver, f: s.Fetcher}
				s.Resolver, s.Fetcher = ser, ser
			}
			scanOnce(b, s) // warm up: certificates, connections to the lab
			b.ReportAllocs()
			b.ResetTimer()
			var total time.Duration
			for b.Loop() {
				total += scanOnce(b, s)
			}
			b.ReportMetric(float64(total)/float64(b.N)/float64(criticalPath), "x-critical-path")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkEvaluate measures the pure judgement of one scan's evidence.
func BenchmarkEvaluate(b *testing.B) {
	l, s := world(b)
	l.DNS.SetLatency(0)
	o := s.Scan(context.Background(), "bench.test")
	b.ReportAllocs()
	for b.Loop() {
		if r := check.Evaluate(o, time.Now()); r.Grade != "A" {
			b.Fatal(fmt.Sprint(r.Grade))
		}
	}
}
