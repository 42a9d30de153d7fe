package bench

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// rttConn adds one round trip of latency to the first read after each
// write: a request/response exchange costs one RTT, as on a real link.
type rttConn struct {
	net.Conn
	rtt   time.Duration
	mu    sync.Mutex
	wrote bool
}

func (c *rttConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.wrote = true
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *rttConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	wait := c.wrote
	c.wrote = false
	c.mu.Unlock()
	if wait {
		time.Sleep(c.rtt)
	}
	return c.Conn.Read(b)
}

// rttNet dials with one RTT for the connection and one per exchange.
func rttNet(base dial.NetDial, rtt time.Duration) dial.NetDial {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := base(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &rttConn{Conn: c, rtt: rtt}, nil
	}
}

// smtpCriticalPath is the fewest sequential round trips of a scan with
// SMTP probes: the MX answer, the MX host's address, then one probe:
// connect, EHLO, STARTTLS, the TLS 1.3 handshake, EHLO over TLS, QUIT.
const smtpCriticalPath = 8 * latency

// smtpWorld is the bench domain with two MX hosts of two addresses each,
// every address a real STARTTLS server.
func smtpWorld(b *testing.B) *scan.Scanner {
	l := lab.New(b)
	l.DNS.MustAdd(b,
		`_mta-sts.bench.test. 300 IN TXT "v=STSv1; id=20261101"`,
		`_smtp._tls.bench.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@bench.test"`,
		`bench.test. 300 IN MX 10 mx1.bench.test.`, `bench.test. 300 IN MX 20 mx2.bench.test.`)
	l.MustPolicyHost(b, "bench.test", lab.PolicyHostOptions{Body: "version: STSv1\r\nmode: enforce\r\nmx: mx1.bench.test\r\nmx: mx2.bench.test\r\nmax_age: 604800\r\n"})
	for _, h := range []string{"mx1.bench.test", "mx2.bench.test"} {
		l.MustMX(b, h, []netip.Addr{l.NextAddr(), l.NextAddr()}, lab.SMTPOptions{})
	}
	l.DNS.SetLatency(latency)
	d := l.Dialer()
	d.Net = rttNet(l.SlowNet(latency), latency)
	return &scan.Scanner{
		Resolver: &resolve.Client{Servers: []string{l.DNS.Addr()}},
		Fetcher:  &fetch.Fetcher{Dialer: d, Roots: l.CA.Pool()},
		Dialer:   d,
		Prober:   &smtpprobe.Prober{Dialer: d, Roots: l.CA.Pool(), EHLO: "bench.example"},
	}
}

type serialProber struct {
	mu sync.Mutex
	p  scan.Prober
}

func (s *serialProber) Probe(ctx context.Context, host string, ip netip.Addr) *smtpprobe.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p.Probe(ctx, host, ip)
}

// BenchmarkSMTPScan reports the wall time of a scan that probes two MX
// hosts with two addresses each, as a ratio to the critical path (target:
// at most 1.3), beside a scan whose probes run one at a time.
func BenchmarkSMTPScan(b *testing.B) {
	for _, mode := range []string{"concurrent", "serial-probes"} {
		b.Run(mode, func(b *testing.B) {
			s := smtpWorld(b)
			if mode == "serial-probes" {
				s.Prober = &serialProber{p: s.Prober}
			}
			run := func() time.Duration {
				start := time.Now()
				o := s.Scan(context.Background(), "bench.test")
				d := time.Since(start)
				r := check.Evaluate(o, time.Now())
				if r.Grade != "A+" {
					b.Fatalf("the bench domain should grade A+, got %q: %q", r.Grade, r.GradeReasons)
				}
				return d
			}
			run()
			b.ReportAllocs()
			b.ResetTimer()
			var total time.Duration
			for b.Loop() {
				total += run()
			}
			b.ReportMetric(float64(total)/float64(b.N)/float64(smtpCriticalPath), "x-critical-path")
			b.ReportMetric(0, "ns/op")
		})
	}
}
