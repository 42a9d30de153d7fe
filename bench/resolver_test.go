package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/resolver"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/stscache"
)

// resolverCriticalPath is the fewest sequential round trips of a cold
// lookup: the _mta-sts TXT answer, the policy host's address, the
// connection to it (TLS and HTTP over loopback add nothing measurable).
// The DANE lookups (the root SOA, then MX) are two answers and run beside
// it.
const resolverCriticalPath = 3 * latency

// BenchmarkResolverCold reports the wall time of a lookup with nothing
// cached, as a ratio to the critical path (50 ms per DNS answer and TCP
// connection).
func BenchmarkResolverCold(b *testing.B) {
	l := lab.New(b)
	l.DNS.MustAdd(b,
		`_mta-sts.bench.test. 300 IN TXT "v=STSv1; id=20261101"`,
		`bench.test. 300 IN MX 10 mx1.bench.test.`, `mx1.bench.test. 300 IN A 192.0.2.25`)
	l.MustPolicyHost(b, "bench.test", lab.PolicyHostOptions{Body: "version: STSv1\r\nmode: enforce\r\nmx: mx1.bench.test\r\nmax_age: 604800\r\n"})
	l.DNS.SetLatency(latency)
	d := l.Dialer()
	d.Net = l.SlowNet(latency)
	once := func() time.Duration {
		cache, _ := stscache.Open(stscache.Options{})
		r := resolver.New(resolver.Options{
			DNS:     &resolve.Client{Servers: []string{l.DNS.Addr()}},
			Fetcher: &fetch.Fetcher{Dialer: d, Roots: l.CA.Pool(), AcceptEncodings: []string{}},
			Dialer:  d, Cache: cache,
		})
		defer r.Close()
		start := time.Now()
		dec, _ := r.Decide(context.Background(), "bench.test", sendpolicy.Zone{RequireSNI: true})
		took := time.Since(start)
		if dec.Kind != sendpolicy.KindSecure {
			b.Fatalf("want secure, got %s: %s", dec.Kind, dec.Reason())
		}
		return took
	}
	once()
	b.ResetTimer()
	var total time.Duration
	for b.Loop() {
		total += once()
	}
	b.ReportMetric(float64(total)/float64(b.N)/float64(resolverCriticalPath), "x-critical-path")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkResolverMemory fills the policy cache with synthetic policies
// as real ones look (an id, two mx patterns of the domain, fetch and check
// times, a DANE verdict) and reports the resident memory of the process
// per cached domain and in all. CACHE_ENTRIES sets the count (default one
// million).
func BenchmarkResolverMemory(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("CACHE_ENTRIES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	{ // once, whatever -benchtime says: it takes seconds and half a GiB
		runtime.GC()
		debug.FreeOSMemory()
		before := rss(b)
		cache, err := stscache.Open(stscache.Options{MaxEntries: n})
		if err != nil {
			b.Fatal(err)
		}
		now := stscache.Sec(time.Now().Unix())
		none := &sendpolicy.DANEVerdict{State: sendpolicy.DANENone, Reason: "the MX records are not DNSSEC-signed"}
		for i := range n {
			d := fmt.Sprintf("d%07d.example", i)
			// Parsed like a fetched body, so the strings are what the
			// parser makes (the cache compacts them).
			body := "version: STSv1\r\nmode: enforce\r\nmx: mx1." + d + "\r\nmx: *.mail." + d + "\r\nmax_age: 604800\r\n"
			pol := mtasts.ParsePolicy([]byte(body)).Policy
			cache.Put(&stscache.Entry{Domain: d, ID: "2026112" + strconv.Itoa(i%10), Policy: pol, FetchedAt: now, CheckedAt: now,
				Outcome: stscache.OutcomePolicy, At: now, NextCheck: now + 300, RefreshAt: now + 43200,
				DANE: none, DANEUntil: now + 3600})
		}
		runtime.GC()
		debug.FreeOSMemory()
		after := rss(b)
		if cache.Len() != n {
			b.Fatalf("%d entries cached, want %d", cache.Len(), n)
		}
		b.ReportMetric(float64(after)/(1<<20), "MiB-rss")
		b.ReportMetric(float64(after-before)/float64(n), "B/domain")
		runtime.KeepAlive(cache)
	}
	for b.Loop() {
	}
	b.ReportMetric(0, "ns/op")
}

// rss is the resident set size of the process (VmRSS), in bytes.
func rss(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	b.Skip("no VmRSS")
	return 0
}
