package lab_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/lab"
)

// exchange sends one query to the lab server over network ("udp" or
// "tcp"). A nil edns sends no OPT record.
func exchange(t *testing.T, d *lab.DNS, network, name string, qtype uint16, edns *dns.OPT) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns != nil {
		m.Extra = append(m.Extra, edns)
	}
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	resp, _, err := c.Exchange(m, d.Addr())
	return resp, err
}

func mustExchange(t *testing.T, d *lab.DNS, network, name string, qtype uint16, edns *dns.OPT) *dns.Msg {
	t.Helper()
	resp, err := exchange(t, d, network, name, qtype, edns)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

func opt(size uint16, do bool) *dns.OPT {
	o := new(dns.OPT)
	o.Hdr.Name = "."
	o.Hdr.Rrtype = dns.TypeOPT
	o.SetUDPSize(size)
	if do {
		o.SetDo()
	}
	return o
}

// rrStrings renders records for comparison.
func rrStrings(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	return out
}

// parseRRs parses zone lines into their String form.
func parseRRs(t *testing.T, lines []string) []string {
	t.Helper()
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad want record %q: %v", l, err)
		}
		out = append(out, rr.String())
	}
	return out
}

const testZone = `
example.test.               300 IN MX    10 mx1.example.test.
example.test.               300 IN MX    20 mx2.example.test.
a.example.test.             300 IN A     127.0.0.10
a.example.test.             300 IN AAAA  ::1
txt.example.test.           300 IN TXT   "part one" "part two"
alias.example.test.         300 IN CNAME alias2.example.test.
alias2.example.test.        300 IN CNAME a.example.test.
dangling.example.test.      300 IN CNAME nowhere.example.test.
loop1.example.test.         300 IN CNAME loop2.example.test.
loop2.example.test.         300 IN CNAME loop1.example.test.
x.ent.example.test.         300 IN A     127.0.0.11
*.wild.example.test.        300 IN TXT   "wild"
host.wild.example.test.     300 IN A     127.0.0.12
*.cw.example.test.          300 IN CNAME a.example.test.
`

func TestDNSAnswers(t *testing.T) {
	t.Parallel()
	d := lab.NewDNS(t)
	d.MustAdd(t, testZone)
	// A chain longer than the server follows: c0 → c1 → … → c20.
	for i := range 20 {
		d.MustAdd(t, fmt.Sprintf("c%d.example.test. 300 IN CNAME c%d.example.test.", i, i+1))
	}
	d.MustAdd(t, "c20.example.test. 300 IN A 127.0.0.20")
	var longChain []string
	for i := range 16 {
		longChain = append(longChain, fmt.Sprintf("c%d.example.test. 300 IN CNAME c%d.example.test.", i, i+1))
	}

	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
	}{
		{"A", "a.example.test.", dns.TypeA, dns.RcodeSuccess,
			[]string{"a.example.test. 300 IN A 127.0.0.10"}},
		{"AAAA", "a.example.test.", dns.TypeAAAA, dns.RcodeSuccess,
			[]string{"a.example.test. 300 IN AAAA ::1"}},
		{"case-insensitive, spelling echoed", "A.Example.TEST.", dns.TypeA, dns.RcodeSuccess,
			[]string{"A.Example.TEST. 300 IN A 127.0.0.10"}},
		{"TXT with several strings", "txt.example.test.", dns.TypeTXT, dns.RcodeSuccess,
			[]string{`txt.example.test. 300 IN TXT "part one" "part two"`}},
		{"MX", "example.test.", dns.TypeMX, dns.RcodeSuccess,
			[]string{"example.test. 300 IN MX 10 mx1.example.test.", "example.test. 300 IN MX 20 mx2.example.test."}},
		{"CNAME chain", "alias.example.test.", dns.TypeA, dns.RcodeSuccess, []string{
			"alias.example.test. 300 IN CNAME alias2.example.test.",
			"alias2.example.test. 300 IN CNAME a.example.test.",
			"a.example.test. 300 IN A 127.0.0.10",
		}},
		{"CNAME chain to NODATA", "alias.example.test.", dns.TypeMX, dns.RcodeSuccess, []string{
			"alias.example.test. 300 IN CNAME alias2.example.test.",
			"alias2.example.test. 300 IN CNAME a.example.test.",
		}},
		{"CNAME query is not chased", "alias.example.test.", dns.TypeCNAME, dns.RcodeSuccess,
			[]string{"alias.example.test. 300 IN CNAME alias2.example.test."}},
		{"dangling CNAME", "dangling.example.test.", dns.TypeA, dns.RcodeNameError,
			[]string{"dangling.example.test. 300 IN CNAME nowhere.example.test."}},
		{"CNAME loop stops", "loop1.example.test.", dns.TypeA, dns.RcodeSuccess, []string{
			"loop1.example.test. 300 IN CNAME loop2.example.test.",
			"loop2.example.test. 300 IN CNAME loop1.example.test.",
		}},
		{"CNAME chain capped at 16", "c0.example.test.", dns.TypeA, dns.RcodeSuccess, longChain},
		{"NXDOMAIN", "nope.example.test.", dns.TypeA, dns.RcodeNameError, nil},
		{"NXDOMAIN outside the data", "example.org.", dns.TypeA, dns.RcodeNameError, nil},
		{"NODATA", "a.example.test.", dns.TypeTXT, dns.RcodeSuccess, nil},
		{"empty non-terminal is NODATA", "ent.example.test.", dns.TypeA, dns.RcodeSuccess, nil},
		{"below an empty non-terminal is NXDOMAIN", "y.ent.example.test.", dns.TypeA, dns.RcodeNameError, nil},
		{"wildcard (RFC 4592 §3.3.1)", "foo.wild.example.test.", dns.TypeTXT, dns.RcodeSuccess,
			[]string{`foo.wild.example.test. 300 IN TXT "wild"`}},
		{"wildcard several labels deep", "a.b.wild.example.test.", dns.TypeTXT, dns.RcodeSuccess,
			[]string{`a.b.wild.example.test. 300 IN TXT "wild"`}},
		{"wildcard without the type is NODATA", "foo.wild.example.test.", dns.TypeA, dns.RcodeSuccess, nil},
		{"wildcard does not cover existing names", "host.wild.example.test.", dns.TypeTXT, dns.RcodeSuccess, nil},
		{"wildcard only at the closest encloser", "sub.host.wild.example.test.", dns.TypeTXT, dns.RcodeNameError, nil},
		{"wildcard CNAME is chased", "x.cw.example.test.", dns.TypeA, dns.RcodeSuccess, []string{
			"x.cw.example.test. 300 IN CNAME a.example.test.",
			"a.example.test. 300 IN A 127.0.0.10",
		}},
		{"wildcard parent is an empty non-terminal", "wild.example.test.", dns.TypeTXT, dns.RcodeSuccess, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, network := range []string{"udp", "tcp"} {
				resp := mustExchange(t, d, network, tt.qname, tt.qtype, nil)
				if got := resp.Rcode; got != tt.rcode {
					t.Errorf("%s: rcode = %s, want %s", network, dns.RcodeToString[got], dns.RcodeToString[tt.rcode])
				}
				if got, want := rrStrings(resp.Answer), parseRRs(t, tt.answer); !slices.Equal(got, want) {
					t.Errorf("%s: answer =\n%s\nwant\n%s", network, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if !resp.RecursionAvailable || !resp.Response || resp.Truncated || resp.AuthenticatedData {
					t.Errorf("%s: flags RA=%v QR=%v TC=%v AD=%v, want RA QR !TC !AD", network,
						resp.RecursionAvailable, resp.Response, resp.Truncated, resp.AuthenticatedData)
				}
				if len(resp.Question) != 1 || resp.Question[0].Name != tt.qname || resp.Question[0].Qtype != tt.qtype {
					t.Errorf("%s: question = %v, want %s %s", network, resp.Question, tt.qname, dns.TypeToString[tt.qtype])
				}
			}
		})
	}
}

func TestDNSAddErrors(t *testing.T) {
	t.Parallel()
	d := lab.NewDNS(t)
	tests := []struct {
		name string
		line string
	}{
		{"garbage", "this is not a record"},
		{"bad address", "a.example.test. 300 IN A 999.0.0.1"},
		{"empty", ""},
		{"only a comment", "; nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := d.Add(tt.line); err == nil {
				t.Errorf("Add(%q) = nil, want an error", tt.line)
			}
		})
	}
	// A failed Add adds nothing, not even its good lines.
	if err := d.Add("ok.example.test. 300 IN A 127.0.0.1", "bad"); err == nil {
		t.Fatal("Add(good, bad) = nil, want an error")
	}
	if got := mustExchange(t, d, "udp", "ok.example.test.", dns.TypeA, nil).Rcode; got != dns.RcodeNameError {
		t.Errorf("after failed Add: rcode = %s, want NXDOMAIN", dns.RcodeToString[got])
	}
}

func TestDNSRemove(t *testing.T) {
	t.Parallel()
	d := lab.NewDNS(t)
	d.MustAdd(t,
		"a.example.test. 300 IN A 127.0.0.10",
		"a.example.test. 300 IN TXT \"x\"",
		"b.example.test. 300 IN A 127.0.0.11",
	)
	d.Remove("A.example.test", dns.TypeA)
	if resp := mustExchange(t, d, "udp", "a.example.test.", dns.TypeA, nil); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Errorf("after Remove(A): rcode %s, %d answers; want NODATA", dns.RcodeToString[resp.Rcode], len(resp.Answer))
	}
	d.RemoveName("b.example.test.")
	if got := mustExchange(t, d, "udp", "b.example.test.", dns.TypeA, nil).Rcode; got != dns.RcodeNameError {
		t.Errorf("after RemoveName: rcode = %s, want NXDOMAIN", dns.RcodeToString[got])
	}
	d.Remove("a.example.test.", dns.TypeTXT)
	if got := mustExchange(t, d, "udp", "a.example.test.", dns.TypeTXT, nil).Rcode; got != dns.RcodeNameError {
		t.Errorf("after removing the last RRset: rcode = %s, want NXDOMAIN", dns.RcodeToString[got])
	}
}

func TestDNSEDNS(t *testing.T) {
	t.Parallel()
	d := lab.NewDNS(t)
	d.MustAdd(t, "a.example.test. 300 IN A 127.0.0.10")
	tests := []struct {
		name    string
		edns    *dns.OPT
		wantOPT bool
		wantDO  bool
	}{
		{"no EDNS", nil, false, false},
		{"EDNS", opt(4096, false), true, false},
		{"EDNS with DO", opt(4096, true), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := mustExchange(t, d, "udp", "a.example.test.", dns.TypeA, tt.edns)
			o := resp.IsEdns0()
			if got := o != nil; got != tt.wantOPT {
				t.Fatalf("OPT in answer = %v, want %v", got, tt.wantOPT)
			}
			if o == nil {
				return
			}
			if got := o.UDPSize(); got != 1232 {
				t.Errorf("advertised UDP size = %d, want 1232", got)
			}
			if got := o.Do(); got != tt.wantDO {
				t.Errorf("DO = %v, want %v", got, tt.wantDO)
			}
		})
	}
}

func TestDNSTruncation(t *testing.T) {
	t.Parallel()
	d := lab.NewDNS(t)
	// Ten 200-byte TXT records: over 2000 bytes.
	for i := range 10 {
		d.MustAdd(t, fmt.Sprintf("big.example.test. 300 IN TXT \"%d%s\"", i, strings.Repeat("x", 199)))
	}
	d.MustAdd(t, "small.example.test. 300 IN A 127.0.0.10", "forced.example.test. 300 IN A 127.0.0.11", "always.example.test. 300 IN A 127.0.0.12")
	d.Truncate("forced.example.test", dns.TypeANY)
	d.TruncateAlways("always.example.test", dns.TypeA)

	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		network string
		edns    *dns.OPT
		wantTC  bool
		wantN   int
	}{
		{"big over UDP without EDNS", "big.example.test.", dns.TypeTXT, "udp", nil, true, 0},
		{"big over UDP with EDNS 1232", "big.example.test.", dns.TypeTXT, "udp", opt(1232, false), true, 0},
		{"big over UDP with EDNS 4096", "big.example.test.", dns.TypeTXT, "udp", opt(4096, false), false, 10},
		{"big over TCP", "big.example.test.", dns.TypeTXT, "tcp", nil, false, 10},
		{"small over UDP", "small.example.test.", dns.TypeA, "udp", nil, false, 1},
		{"forced over UDP", "forced.example.test.", dns.TypeA, "udp", opt(4096, false), true, 0},
		{"forced over TCP", "forced.example.test.", dns.TypeA, "tcp", nil, false, 1},
		{"always over UDP", "always.example.test.", dns.TypeA, "udp", opt(4096, false), true, 0},
		{"always over TCP", "always.example.test.", dns.TypeA, "tcp", nil, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := mustExchange(t, d, tt.network, tt.qname, tt.qtype, tt.edns)
			if resp.Truncated != tt.wantTC || len(resp.Answer) != tt.wantN {
				t.Errorf("TC=%v with %d answers, want TC=%v with %d", resp.Truncated, len(resp.Answer), tt.wantTC, tt.wantN)
			}
			if tt.edns != nil && resp.IsEdns0() == nil {
				t.Errorf("answer has no OPT record")
			}
		})
	}
}

func TestDNSRcodeControl(t *testing.T) {
	t.Parallel()
	d := lab.NewDNS(t)
	d.MustAdd(t,
		"a.example.test. 300 IN A 127.0.0.10",
		"a.example.test. 300 IN AAAA ::1",
		"alias.example.test. 300 IN CNAME b.example.test.",
		"b.example.test. 300 IN A 127.0.0.11",
	)
	d.SetRcode("a.example.test", dns.TypeA, dns.RcodeServerFailure)
	d.SetRcode("b.example.test", dns.TypeANY, dns.RcodeRefused)

	tests := []struct {
		name  string
		qname string
		qtype uint16
		rcode int
		n     int
	}{
		{"controlled type", "a.example.test.", dns.TypeA, dns.RcodeServerFailure, 0},
		{"other type", "a.example.test.", dns.TypeAAAA, dns.RcodeSuccess, 1},
		{"ANY control", "b.example.test.", dns.TypeTXT, dns.RcodeRefused, 0},
		{"through a CNAME", "alias.example.test.", dns.TypeA, dns.RcodeRefused, 0},
		{"CNAME itself", "alias.example.test.", dns.TypeCNAME, dns.RcodeSuccess, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := mustExchange(t, d, "udp", tt.qname, tt.qtype, nil)
			if resp.Rcode != tt.rcode || len(resp.Answer) != tt.n {
				t.Errorf("rcode %s with %d answers, want %s with %d",
					dns.RcodeToString[resp.Rcode], len(resp.Answer), dns.RcodeToString[tt.rcode], tt.n)
			}
		})
	}

	d.Clear("a.example.test", dns.TypeA)
	if got := mustExchange(t, d, "udp", "a.example.test.", dns.TypeA, nil).Rcode; got != dns.RcodeSuccess {
		t.Errorf("after Clear: rcode = %s, want NOERROR", dns.RcodeToString[got])
	}
}

func TestDNSDrop(t *testing.T) {
	t.Parallel()
	d := lab.NewDNS(t)
	d.MustAdd(t, "a.example.test. 300 IN A 127.0.0.10")
	d.Drop("a.example.test", dns.TypeA)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			m := new(dns.Msg)
			m.SetQuestion("a.example.test.", dns.TypeA)
			c := &dns.Client{Net: network, Timeout: 150 * time.Millisecond}
			_, _, err := c.Exchange(m, d.Addr())
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("dropped query: err = %v, want a timeout", err)
			}
		})
	}
	// Other types are still answered.
	if got := mustExchange(t, d, "udp", "a.example.test.", dns.TypeAAAA, nil).Rcode; got != dns.RcodeSuccess {
		t.Errorf("AAAA: rcode = %s, want NOERROR", dns.RcodeToString[got])
	}
}

func TestDNSAD(t *testing.T) {
	t.Parallel()
	d := lab.NewDNS(t)
	d.MustAdd(t,
		"a.secure.test. 300 IN A 127.0.0.10",
		"a.insecure.secure.test. 300 IN A 127.0.0.11",
		"out.secure.test. 300 IN CNAME a.other.test.",
		"a.other.test. 300 IN A 127.0.0.12",
	)
	d.SetAD("secure.test", true)
	d.SetAD("insecure.secure.test.", false)

	tests := []struct {
		name  string
		qname string
		want  bool
	}{
		{"below an AD suffix", "a.secure.test.", true},
		{"the suffix itself", "secure.test.", true},
		{"more specific suffix off", "a.insecure.secure.test.", false},
		{"NXDOMAIN below the suffix", "nope.secure.test.", true},
		{"outside", "a.other.test.", false},
		{"CNAME into an insecure zone", "out.secure.test.", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := mustExchange(t, d, "udp", tt.qname, dns.TypeA, opt(1232, true))
			if got := resp.AuthenticatedData; got != tt.want {
				t.Errorf("AD = %v, want %v", got, tt.want)
			}
		})
	}

	d.SetAD(".", true)
	if !mustExchange(t, d, "udp", "a.other.test.", dns.TypeA, nil).AuthenticatedData {
		t.Errorf(`after SetAD(".", true): AD = false, want true`)
	}
}

// TestDNSLatencyIsConcurrent is not parallel: it measures time, so it runs
// before the parallel tests load the CPUs; the best of three tries counts.
func TestDNSLatencyIsConcurrent(t *testing.T) {
	const (
		latency = 100 * time.Millisecond
		bound   = 180 * time.Millisecond // serialised answers would take 200ms
	)
	d := lab.NewDNS(t)
	d.MustAdd(t, "a.example.test. 300 IN A 127.0.0.10", "b.example.test. 300 IN A 127.0.0.11")
	d.SetLatency(latency)
	best := time.Hour
	for range 3 {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, name := range []string{"a.example.test.", "b.example.test."} {
			wg.Go(func() {
				_, errs[i] = exchange(t, d, "udp", name, dns.TypeA, nil)
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if elapsed < latency {
			t.Fatalf("two parallel queries took %v, want at least %v", elapsed, latency)
		}
		best = min(best, elapsed)
		if best < bound {
			return
		}
	}
	t.Errorf("two parallel queries took %v at best, want under %v", best, bound)
}

func TestDNSQueryLog(t *testing.T) {
	t.Parallel()
	d := lab.NewDNS(t)
	mustExchange(t, d, "udp", "Old.Example.Test.", dns.TypeA, nil)
	d.ResetQueries()
	mustExchange(t, d, "udp", "A.Example.Test.", dns.TypeTXT, opt(1232, true))
	mustExchange(t, d, "tcp", "b.example.test.", dns.TypeMX, nil)
	got := d.Queries()
	want := []lab.Query{
		{Name: "a.example.test.", Type: dns.TypeTXT, Net: "udp", DO: true},
		{Name: "b.example.test.", Type: dns.TypeMX, Net: "tcp", DO: false},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Queries() = %+v, want %+v", got, want)
	}
}

func TestDNSNetResolver(t *testing.T) {
	t.Parallel()
	d := lab.NewDNS(t)
	d.MustAdd(t, "a.example.test. 300 IN A 127.0.0.10", `_mta-sts.example.test. 300 IN TXT "v=STSv1; " "id=1"`)
	r := d.NetResolver()
	addrs, err := r.LookupHost(t.Context(), "a.example.test")
	if err != nil || !slices.Equal(addrs, []string{"127.0.0.10"}) {
		t.Errorf("LookupHost = %v, %v; want [127.0.0.10]", addrs, err)
	}
	txt, err := r.LookupTXT(t.Context(), "_mta-sts.example.test")
	if err != nil || !slices.Equal(txt, []string{"v=STSv1; id=1"}) {
		t.Errorf("LookupTXT = %q, %v; want [\"v=STSv1; id=1\"]", txt, err)
	}
	_, err = r.LookupHost(t.Context(), "nope.example.test")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("LookupHost(nope) err = %v, want not found", err)
	}
}

// TestStartDNSAt: a fixed loopback address, for clients that only speak to
// port 53; anything else is refused.
func TestStartDNSAt(t *testing.T) {
	for _, bad := range []string{"192.0.2.1:53", "127.0.53.9:0", "localhost:53", "127.0.53.9"} {
		if d, err := lab.StartDNSAt(bad); err == nil {
			d.Close()
			t.Errorf("StartDNSAt(%q) accepted", bad)
		}
	}
	var d *lab.DNS
	ip, err := lab.FreeLoopback(func(ip netip.Addr) error {
		var err error
		d, err = lab.StartDNSAt(lab.AddrPort(ip, 5353))
		return err
	})
	if err != nil {
		t.Skipf("cannot bind a 127/8 address other than 127.0.0.1 here: %v", err)
	}
	defer d.Close()
	addr := lab.AddrPort(ip, 5353)
	if d.Addr() != addr || d.IP() != ip {
		t.Errorf("Addr %s, IP %s, want %s", d.Addr(), d.IP(), addr)
	}
	d.MustAdd(t, "a.test. 300 IN A 192.0.2.7")
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 2 * time.Second}
		m := new(dns.Msg)
		m.SetQuestion("a.test.", dns.TypeA)
		r, _, err := c.Exchange(m, addr)
		if err != nil || len(r.Answer) != 1 {
			t.Errorf("%s: %v %v", network, err, r)
		}
	}
	// A second server on the same address fails with EADDRINUSE, which is
	// what FreeLoopback retries on.
	if _, err := lab.StartDNSAt(addr); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("a second server on a busy address: %v, want EADDRINUSE", err)
	}
}

// TestFreeLoopback: addresses in use are skipped, other errors end the
// search, and the addresses stay clear of 127.0.0.0/16.
func TestFreeLoopback(t *testing.T) {
	var tried []netip.Addr
	ip, err := lab.FreeLoopback(func(ip netip.Addr) error {
		tried = append(tried, ip)
		if len(tried) < 3 {
			return fmt.Errorf("listen: %w", &net.OpError{Op: "listen", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)})
		}
		return nil
	})
	if err != nil || len(tried) != 3 || ip != tried[2] {
		t.Errorf("after two addresses in use: %v %v, tried %v", ip, err, tried)
	}
	boom := errors.New("permission denied")
	n := 0
	if _, err := lab.FreeLoopback(func(netip.Addr) error { n++; return boom }); !errors.Is(err, boom) || n != 1 {
		t.Errorf("another error: %v after %d attempts, want it at once", err, n)
	}
	n = 0
	if _, err := lab.FreeLoopback(func(netip.Addr) error { n++; return syscall.EADDRINUSE }); err == nil || n < 2 {
		t.Errorf("always in use: %v after %d attempts", err, n)
	}
	seen := map[netip.Addr]bool{}
	for range 1000 {
		a := lab.RandomLoopback().As4()
		if a[0] != 127 || a[1] < 64 || a[1] == 255 || a[3] == 0 || a[3] == 255 {
			t.Fatalf("RandomLoopback gave %v", netip.AddrFrom4(a))
		}
		seen[netip.AddrFrom4(a)] = true
	}
	if len(seen) < 990 {
		t.Errorf("only %d different addresses in 1000 draws", len(seen))
	}
}

// TestWellKnown: DNS on port 53 and HTTPS on port 443 of one address, as a
// resolver that reads resolv.conf and an HTTPS client on the default port
// need them; two labs at once get different addresses.
func TestWellKnown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ports 53 and 443 need root")
	}
	a, b := lab.NewWellKnown(t), lab.NewWellKnown(t)
	if a.DNS.IP() == b.DNS.IP() {
		t.Errorf("two labs on %s", a.DNS.IP())
	}
	for _, l := range []*lab.Lab{a, b} {
		if want := lab.AddrPort(l.DNS.IP(), 53); l.DNS.Addr() != want {
			t.Errorf("dns on %s, want %s", l.DNS.Addr(), want)
		}
		if want := lab.AddrPort(l.DNS.IP(), 443); l.HTTPS.Addr() != want {
			t.Errorf("https on %s, want %s", l.HTTPS.Addr(), want)
		}
	}
}

// TestNegativeSOA: with SetNegativeSOA, NXDOMAIN and NODATA answers carry
// the SOA of the closest enclosing zone (RFC 2308 §3); answers with records
// do not.
func TestNegativeSOA(t *testing.T) {
	d := lab.NewDNS(t)
	d.MustAdd(t, "zone.test. 3600 IN SOA ns.zone.test. h.zone.test. 1 3600 600 86400 300",
		"www.zone.test. 300 IN A 192.0.2.1")
	ask := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, err := dns.Exchange(m, d.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := ask("gone.zone.test.", dns.TypeA); len(r.Ns) != 0 {
		t.Errorf("SOA without SetNegativeSOA: %v", r.Ns)
	}
	d.SetNegativeSOA(true)
	for _, q := range []struct {
		name  string
		qtype uint16
		soa   bool
	}{{"gone.zone.test.", dns.TypeA, true}, {"www.zone.test.", dns.TypeAAAA, true}, {"www.zone.test.", dns.TypeA, false}, {"other.test.", dns.TypeA, false}} {
		r := ask(q.name, q.qtype)
		got := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA && r.Ns[0].Header().Name == "zone.test."
		if got != q.soa {
			t.Errorf("%s %s: authority %v, want SOA %v", q.name, dns.TypeToString[q.qtype], r.Ns, q.soa)
		}
	}
}
