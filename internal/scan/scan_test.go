package scan_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

func scanner(l *lab.Lab) *scan.Scanner {
	d := l.Dialer()
	return &scan.Scanner{
		Resolver: &resolve.Client{Servers: []string{l.DNS.Addr()}, Timeout: lab.DNSTimeout, Attempts: lab.DNSAttempts},
		Fetcher:  &fetch.Fetcher{Dialer: d, Roots: l.CA.Pool()},
		Dialer:   d,
	}
}

func queried(l *lab.Lab, name string, qtype uint16) bool {
	for _, q := range l.DNS.Queries() {
		if q.Name == dns.Fqdn(name) && q.Type == qtype {
			return true
		}
	}
	return false
}

func TestScanGathersEvidence(t *testing.T) {
	l := lab.New(t)
	l.DNS.MustAdd(t,
		`_mta-sts.a.test. 300 IN TXT "v=STSv1; id=1"`,
		`a.test. 300 IN MX 20 MX2.a.test.`, `a.test. 300 IN MX 10 mx1.a.test.`, `a.test. 300 IN MX 30 mx1.a.test.`,
		`mx1.a.test. 300 IN A 192.0.2.1`, `mx2.a.test. 300 IN AAAA 2001:db8::2`)
	l.MustPolicyHost(t, "a.test", lab.PolicyHostOptions{Body: "version: STSv1\n"})
	v6 := l.NextAddr6()
	l.DNS.MustAdd(t, "mta-sts.a.test. 300 IN AAAA "+v6.String())
	if err := l.MapAddr(l.HTTPS.Addr(), v6, 443); err != nil {
		t.Fatal(err)
	}
	o := scanner(l).Scan(context.Background(), "a.test")

	if len(o.MXHosts) != 2 || o.MXHosts[0].Host != "mx1.a.test" || o.MXHosts[1].Host != "mx2.a.test" {
		t.Fatalf("MX hosts %+v: want mx1 then mx2 (sorted, lower-cased, deduplicated)", o.MXHosts)
	}
	if len(o.MXHosts[0].Addrs()) != 1 || len(o.MXHosts[1].Addrs()) != 1 || !o.MXHosts[1].Addrs()[0].Is6() {
		t.Errorf("MX addresses not gathered: %v %v", o.MXHosts[0].Addrs(), o.MXHosts[1].Addrs())
	}
	if len(o.Fetches) != 2 || o.Fetches[0].Address != "127.0.0.10:443" || o.Fetches[1].Address != "[::1]:443" {
		t.Errorf("want one fetch per address, IPv4 first: %+v", o.Fetches)
	}
	for _, a := range []*resolve.Answer{o.DNS.STS, o.DNS.STSDraft, o.DNS.Apex, o.DNS.TLSRPT, o.DNS.TLSRPTDraft, o.DNS.TLSRPTDraftUnder, o.DNS.MX, o.DNS.PolicyHostA, o.DNS.PolicyHostAAAA} {
		if a == nil {
			t.Fatal("a lookup is missing from the evidence")
		}
	}
	if o.DNS.WildcardProbe != nil || queried(l, scan.WildcardProbeLabel+".a.test", dns.TypeTXT) {
		t.Error("the wildcard probe is only for _mta-sts answers without an MTA-STS record")
	}
	// Evidence is data: it survives JSON.
	data, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var back scan.Observations
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.DNS.MX.MX(), o.DNS.MX.MX()) || string(back.Fetches[1].Body) != string(o.Fetches[1].Body) {
		t.Error("observations do not round-trip through JSON")
	}
}

func TestImplicitAndNullMX(t *testing.T) {
	l := lab.New(t)
	l.DNS.MustAdd(t, `implicit.test. 300 IN A 192.0.2.9`, `null.test. 300 IN MX 0 .`, `null.test. 300 IN A 192.0.2.10`)
	s := scanner(l)
	o := s.Scan(context.Background(), "implicit.test")
	if len(o.MXHosts) != 1 || !o.MXHosts[0].Implicit || o.MXHosts[0].Host != "implicit.test" || len(o.MXHosts[0].Addrs()) != 1 {
		t.Errorf("implicit MX: %+v", o.MXHosts)
	}
	o = s.Scan(context.Background(), "null.test")
	if len(o.MXHosts) != 0 || !scan.IsNullMX(o.DNS.MX) {
		t.Errorf("null MX: hosts %+v", o.MXHosts)
	}
}

func TestWildcardProbe(t *testing.T) {
	l := lab.New(t)
	l.DNS.MustAdd(t, `*.w.test. 300 IN TXT "v=spf1 -all"`)
	o := scanner(l).Scan(context.Background(), "w.test")
	if o.DNS.WildcardProbe == nil || len(o.DNS.WildcardProbe.TXT()) != 1 {
		t.Errorf("want the wildcard probe answered: %+v", o.DNS.WildcardProbe)
	}
}

func TestHostOverrideFetchesOnce(t *testing.T) {
	l := lab.New(t)
	l.MustPolicyHost(t, "o.test", lab.PolicyHostOptions{Body: "version: STSv1\n"})
	s := scanner(l)
	s.Dialer = &dial.Dialer{Rules: append(l.Rules(), dial.Rule{Host: "mta-sts.o.test", Port: 443, ToHost: "127.0.0.1", ToPort: portOf(t, l.HTTPS.Addr())})}
	s.Fetcher.(*fetch.Fetcher).Dialer = s.Dialer
	o := s.Scan(context.Background(), "o.test")
	if o.PolicyHostOverride == "" || len(o.Fetches) != 1 || o.Fetches[0].Status != 200 {
		t.Errorf("override %q fetches %+v", o.PolicyHostOverride, o.Fetches)
	}
}

func portOf(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestBudget: a domain whose DNS never answers finishes within the ctx
// budget with every lookup recorded as a timeout (temporary, not absent).
func TestBudget(t *testing.T) {
	l := lab.New(t)
	for _, n := range []string{"silent.test", "_mta-sts.silent.test", "_mta_sts.silent.test", "mta-sts.silent.test", "_smtp._tls.silent.test", "_smtp-tlsrpt.silent.test", "_smtp_tlsrpt.silent.test"} {
		l.DNS.Drop(n, dns.TypeANY)
	}
	s := scanner(l)
	s.Resolver = &resolve.Client{Servers: []string{l.DNS.Addr()}, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	o := s.Scan(ctx, "silent.test")
	// Well under the resolver's own 5 s timeout: the budget ended it (the
	// margin allows for a loaded machine).
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("scan took %v with a 500 ms budget", d)
	}
	if !o.DNS.STS.Status.Temporary() || !o.DNS.MX.Status.Temporary() {
		t.Errorf("want temporary statuses, got %s and %s", o.DNS.STS.Status, o.DNS.MX.Status)
	}
}

// TestProgress: every DNS answer, policy fetch and SMTP probe of the
// Observations is reported once, as the same value, and an MX host's
// address lookups come after the MX answer that named it.
func TestProgress(t *testing.T) {
	l := lab.New(t)
	l.DNS.MustAdd(t, `_mta-sts.p.test. 300 IN TXT "v=STSv1; id=1"`, `p.test. 300 IN MX 10 mx1.p.test.`)
	l.MustPolicyHost(t, "p.test", lab.PolicyHostOptions{Body: "version: STSv1\n"})
	l.MustMX(t, "mx1.p.test", []netip.Addr{l.NextAddr()}, lab.SMTPOptions{})
	s := scanner(l)
	s.Dialer = l.Dialer()
	s.Fetcher = &fetch.Fetcher{Dialer: s.Dialer, Roots: l.CA.Pool()}
	s.Prober = &smtpprobe.Prober{Dialer: s.Dialer, Roots: l.CA.Pool()}
	var (
		steps    []scan.Step
		inflight atomic.Int32
		overlap  atomic.Bool
	)
	s.Progress = func(st scan.Step) {
		if inflight.Add(1) > 1 {
			overlap.Store(true)
		}
		steps = append(steps, st)
		inflight.Add(-1)
	}
	o := s.Scan(context.Background(), "p.test")
	if overlap.Load() {
		t.Error("Progress calls overlapped")
	}
	seen := map[any]int{}
	mxAt, mxHostAt := -1, -1
	for i, st := range steps {
		n := 0
		switch {
		case st.DNS != nil:
			n++
			seen[st.DNS]++
			if st.DNS.Name == "p.test" && st.DNS.Type == "MX" {
				mxAt = i
			}
			if st.DNS.Name == "mx1.p.test" && st.DNS.Type == "A" {
				mxHostAt = i
			}
		case st.Fetch != nil:
			n++
			seen[st.Fetch]++
		case st.Probe != nil:
			n++
			seen[st.Probe]++
		}
		if n != 1 {
			t.Errorf("step %d has %d values set, want 1", i, n)
		}
	}
	if mxAt < 0 || mxHostAt < mxAt {
		t.Errorf("MX answer at step %d, mx1 A at %d: want the MX answer first", mxAt, mxHostAt)
	}
	var want []any
	for _, a := range []*resolve.Answer{o.DNS.STS, o.DNS.STSDraft, o.DNS.Apex, o.DNS.TLSRPT, o.DNS.TLSRPTDraft, o.DNS.TLSRPTDraftUnder, o.DNS.MX, o.DNS.PolicyHostA, o.DNS.PolicyHostAAAA, o.DNS.Root} {
		want = append(want, a)
	}
	for _, f := range o.Fetches {
		want = append(want, f)
	}
	for _, h := range o.MXHosts {
		want = append(want, h.A, h.AAAA, h.TLSA)
		for _, p := range h.Probes {
			want = append(want, p)
		}
	}
	for _, v := range want {
		if seen[v] != 1 {
			t.Errorf("%+v reported %d times, want once", v, seen[v])
		}
	}
	if len(o.MXHosts) != 1 || len(o.MXHosts[0].Probes) != 1 || len(o.Fetches) != 1 {
		t.Fatalf("scan did not gather the expected evidence: %d MX hosts, %d fetches", len(o.MXHosts), len(o.Fetches))
	}
}

// fakeProber records the probes it is asked for; each takes d (or until
// ctx ends). It tracks how many probes of one address overlap, and calls
// started (if set) with the number of each probe as it starts.
type fakeProber struct {
	d       time.Duration
	started func(n int)
	mu      sync.Mutex
	calls   []string // host of each probe, in start order
	running map[netip.Addr]int
	overlap bool // two probes of one address at once
}

func (p *fakeProber) Probe(ctx context.Context, host string, ip netip.Addr) *smtpprobe.Result {
	p.mu.Lock()
	p.calls = append(p.calls, host)
	if p.running == nil {
		p.running = map[netip.Addr]int{}
	}
	p.running[ip]++
	p.overlap = p.overlap || p.running[ip] > 1
	n := len(p.calls)
	p.mu.Unlock()
	if p.started != nil {
		p.started(n)
	}
	defer func() {
		p.mu.Lock()
		p.running[ip]--
		p.mu.Unlock()
	}()
	r := &smtpprobe.Result{Host: host, Address: netip.AddrPortFrom(ip, 25).String(), Transcript: []string{}}
	select {
	case <-time.After(p.d):
	case <-ctx.Done():
		r.Class, r.Error = smtpprobe.CutOff, "cut off"
	}
	return r
}

// TestProbeScheduling: when the budget runs out, probes still waiting for
// a slot are recorded as not probed (never as unreachable servers), and
// slots go to every MX host's first address before any host's second.
func TestProbeScheduling(t *testing.T) {
	l := lab.New(t)
	hosts := []string{"mx1.p.test", "mx2.p.test", "mx3.p.test"}
	for i, h := range hosts {
		l.DNS.MustAdd(t, fmt.Sprintf("p.test. 300 IN MX %d %s.", 10*(i+1), h))
		for j := range 3 {
			l.DNS.MustAdd(t, fmt.Sprintf("%s. 300 IN A 192.0.2.%d", h, 10*(i+1)+j))
		}
	}
	// One probe at a time; the budget ends as the third starts, whatever
	// the machine's speed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fp := &fakeProber{d: 50 * time.Millisecond, started: func(n int) {
		if n == 3 {
			cancel()
		}
	}}
	s := scanner(l)
	s.Prober, s.MaxProbes = fp, 1
	o := s.Scan(ctx, "p.test")

	fp.mu.Lock()
	calls := append([]string(nil), fp.calls...)
	fp.mu.Unlock()
	if len(calls) < 3 {
		t.Fatalf("%d probes ran (%q), want at least the 3 before the budget ended", len(calls), calls)
	}
	if first := calls[:3]; !slices.Contains(first, hosts[0]) || !slices.Contains(first, hosts[1]) || !slices.Contains(first, hosts[2]) {
		t.Errorf("first probes %q: want one address of every host before a second of any", first)
	}
	notProbed := 0
	for _, h := range o.MXHosts {
		if len(h.Probes) != 3 {
			t.Errorf("%s: %d probe results, want one per address (3)", h.Host, len(h.Probes))
		}
		for _, p := range h.Probes {
			switch p.Class {
			case smtpprobe.NotProbedBudget:
				notProbed++
				if !strings.Contains(p.Error, "time budget") || p.Class.Observed() {
					t.Errorf("not-probed result %+v", p)
				}
			case "", smtpprobe.CutOff:
			default:
				t.Errorf("%s %s: class %q; a probe that never ran is not a server failure", h.Host, p.Address, p.Class)
			}
		}
	}
	if notProbed != 9-len(calls) {
		t.Errorf("%d addresses recorded as not probed, want %d", notProbed, 9-len(calls))
	}
}

// TestOneConnectionPerAddress: an address shared by two MX hosts is never
// probed twice at once, even with free slots.
func TestOneConnectionPerAddress(t *testing.T) {
	l := lab.New(t)
	l.DNS.MustAdd(t, "q.test. 300 IN MX 10 a.q.test.", "q.test. 300 IN MX 20 b.q.test.",
		"a.q.test. 300 IN A 192.0.2.1", "b.q.test. 300 IN A 192.0.2.1", "b.q.test. 300 IN A 192.0.2.2")
	fp := &fakeProber{d: 100 * time.Millisecond}
	s := scanner(l)
	s.Prober, s.MaxProbes = fp, 8
	o := s.Scan(context.Background(), "q.test")
	if fp.overlap || len(fp.calls) != 3 {
		t.Errorf("overlap %v, %d probes; want 3 probes, none overlapping at one address", fp.overlap, len(fp.calls))
	}
	if len(o.MXHosts[0].Probes)+len(o.MXHosts[1].Probes) != 3 {
		t.Errorf("probes %+v %+v", o.MXHosts[0].Probes, o.MXHosts[1].Probes)
	}
}

// TestMXLimits: every host of the MX RRset is listed; beyond MaxMX, and
// for localhost or an IP address as exchange, nothing is looked up, and
// the host says why. Addresses beyond MaxAddrs are recorded as not probed.
func TestMXLimits(t *testing.T) {
	l := lab.New(t)
	for i := range 20 {
		l.DNS.MustAdd(t, fmt.Sprintf("many.test. 300 IN MX %d mx%02d.many.test.", 10+i, i), fmt.Sprintf("mx%02d.many.test. 300 IN A 192.0.2.%d", i, 100+i))
	}
	l.DNS.MustAdd(t, "many.test. 300 IN MX 5 localhost.", "many.test. 300 IN MX 6 192.0.2.99.", "many.test. 300 IN MX 0 .")
	for j := range 6 {
		l.DNS.MustAdd(t, fmt.Sprintf("mx00.many.test. 300 IN A 192.0.2.%d", 200+j))
	}
	fp := &fakeProber{}
	s := scanner(l)
	s.Prober, s.MaxMX = fp, 5
	o := s.Scan(context.Background(), "many.test")
	if len(o.MXHosts) != 22 {
		t.Fatalf("%d MX hosts, want all 22 (the null MX entry left out)", len(o.MXHosts))
	}
	skipped := map[string]int{}
	for _, h := range o.MXHosts {
		skipped[h.Skipped]++
		if h.Skipped != "" {
			if h.A != nil || h.AAAA != nil || h.TLSA != nil || len(h.Probes) > 0 || queried(l, h.Host, dns.TypeA) {
				t.Errorf("%s (%s) was looked at", h.Host, h.Skipped)
			}
		} else if h.A == nil || h.AAAA == nil || h.TLSA == nil {
			t.Errorf("%s was not looked up", h.Host)
		}
	}
	if skipped[""] != 5 || skipped[scan.SkippedLimit] != 15 || skipped[scan.SkippedLocalhost] != 1 || skipped[scan.SkippedIPLiteral] != 1 {
		t.Errorf("skipped %v", skipped)
	}
	if o.MXHosts[0].Host != "localhost" || o.MXHosts[2].Host != "mx00.many.test" || o.MXHosts[6].Skipped != "" || o.MXHosts[7].Skipped != scan.SkippedLimit {
		t.Errorf("want preference order with the 5 most preferred names looked at: %s %s %q %q", o.MXHosts[0].Host, o.MXHosts[2].Host, o.MXHosts[6].Skipped, o.MXHosts[7].Skipped)
	}
	var limited, probed int
	for _, p := range o.MXHosts[2].Probes {
		switch p.Class {
		case smtpprobe.NotProbedLimit:
			limited++
		case "":
			probed++
		}
	}
	if probed != 4 || limited != 3 {
		t.Errorf("mx00 with 7 addresses: %d probed, %d recorded as over the limit; want 4 and 3", probed, limited)
	}
}
