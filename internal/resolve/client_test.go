package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// newClient returns a Client for the given test servers with a short
// per-attempt timeout.
func newClient(servers ...*testServer) *Client {
	c := &Client{Timeout: 500 * time.Millisecond}
	for _, s := range servers {
		c.Servers = append(c.Servers, s.Addr)
	}
	return c
}

func TestLookupRecords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		answer []string
		want   []Record
	}{
		{
			name:  "TXT multi-string (RFC 8461 §3.1)",
			qname: "_mta-sts.example.com",
			qtype: dns.TypeTXT,
			answer: []string{
				`_mta-sts.example.com. 300 IN TXT "v=STSv1; " "id=20240101"`,
				`_mta-sts.example.com. 300 IN TXT "other \"quoted\" \\ \001"`,
			},
			want: []Record{
				{Name: "_mta-sts.example.com", Type: "TXT", TTL: 300, Value: `"v=STSv1; " "id=20240101"`, Text: []string{"v=STSv1; ", "id=20240101"}},
				{Name: "_mta-sts.example.com", Type: "TXT", TTL: 300, Value: `"other \"quoted\" \\ \001"`, Text: []string{"other \"quoted\" \\ \x01"}},
			},
		},
		{
			name:  "MX",
			qname: "example.com",
			qtype: dns.TypeMX,
			answer: []string{
				"example.com. 3600 IN MX 10 MX1.Example.com.",
				"example.com. 3600 IN MX 20 mx2.example.net.",
			},
			want: []Record{
				{Name: "example.com", Type: "MX", TTL: 3600, Value: "10 MX1.Example.com.", Preference: 10, Host: "MX1.Example.com"},
				{Name: "example.com", Type: "MX", TTL: 3600, Value: "20 mx2.example.net.", Preference: 20, Host: "mx2.example.net"},
			},
		},
		{
			name:   "null MX (RFC 7505)",
			qname:  "nomail.example",
			qtype:  dns.TypeMX,
			answer: []string{"nomail.example. 60 IN MX 0 ."},
			want:   []Record{{Name: "nomail.example", Type: "MX", TTL: 60, Value: "0 .", Host: "."}},
		},
		{
			name:   "A",
			qname:  "mx.example.com",
			qtype:  dns.TypeA,
			answer: []string{"mx.example.com. 30 IN A 192.0.2.1"},
			want:   []Record{{Name: "mx.example.com", Type: "A", TTL: 30, Value: "192.0.2.1", Addr: netip.MustParseAddr("192.0.2.1")}},
		},
		{
			name:   "AAAA",
			qname:  "mx.example.com",
			qtype:  dns.TypeAAAA,
			answer: []string{"mx.example.com. 30 IN AAAA 2001:db8::1"},
			want:   []Record{{Name: "mx.example.com", Type: "AAAA", TTL: 30, Value: "2001:db8::1", Addr: netip.MustParseAddr("2001:db8::1")}},
		},
		{
			name:   "TLSA (RFC 6698 §2.1)",
			qname:  "_25._tcp.mx.example.com",
			qtype:  dns.TypeTLSA,
			answer: []string{"_25._tcp.mx.example.com. 300 IN TLSA 3 1 1 0A0B0C0D0E0F"},
			want: []Record{{Name: "_25._tcp.mx.example.com", Type: "TLSA", TTL: 300, Value: "3 1 1 0a0b0c0d0e0f",
				Usage: 3, Selector: 1, MatchingType: 1, Data: "0a0b0c0d0e0f"}},
		},
		{
			name:  "other types and names are skipped",
			qname: "mx.example.com",
			qtype: dns.TypeA,
			answer: []string{
				"mx.example.com. 30 IN AAAA 2001:db8::1",
				"other.example.com. 30 IN A 192.0.2.9",
				"mx.example.com. 30 IN RRSIG A 13 3 30 20300101000000 20200101000000 12345 example.com. AAAA",
				"MX.EXAMPLE.COM. 30 IN A 192.0.2.1",
			},
			want: []Record{{Name: "mx.example.com", Type: "A", TTL: 30, Value: "192.0.2.1", Addr: netip.MustParseAddr("192.0.2.1")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, answerWith(t, dns.RcodeSuccess, tt.answer...))
			got := newClient(srv).Lookup(context.Background(), tt.qname, tt.qtype)
			if got.Status != StatusOK {
				t.Fatalf("Status = %q (%s), want ok", got.Status, got.Error)
			}
			if !reflect.DeepEqual(got.Records, tt.want) {
				t.Errorf("Records:\ngot  %+v\nwant %+v", got.Records, tt.want)
			}
			if got.Rcode != "NOERROR" || got.Server != srv.Addr || got.TCP {
				t.Errorf("Rcode, Server, TCP = %q, %q, %v; want NOERROR, %q, false", got.Rcode, got.Server, got.TCP, srv.Addr)
			}
		})
	}
}

func TestAnswerHelpers(t *testing.T) {
	t.Parallel()
	srv := startServer(t, zoneHandler(t, map[string]zoneReply{
		"example.com TXT": {answer: []string{
			`example.com. 300 IN TXT "v=TLSRPTv1; " "rua=mailto:r@example.com"`,
			`example.com. 200 IN TXT "single"`,
		}},
		"example.com MX": {answer: []string{
			"example.com. 300 IN MX 10 mx1.example.com.",
			"example.com. 300 IN MX 0 .",
		}},
		"alias.example.com A": {answer: []string{
			"alias.example.com. 100 IN CNAME Host.Example.com.",
			"host.example.com. 50 IN A 192.0.2.1",
			"host.example.com. 70 IN A 192.0.2.2",
		}},
	}))
	c := newClient(srv)
	ctx := context.Background()

	txt := c.Lookup(ctx, "example.com", dns.TypeTXT)
	if got, want := txt.TXT(), []string{"v=TLSRPTv1; rua=mailto:r@example.com", "single"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TXT() = %q, want %q", got, want)
	}
	if got, want := txt.MinTTL(), uint32(200); got != want {
		t.Errorf("TXT MinTTL() = %d, want %d", got, want)
	}
	if got, want := txt.Target(), "example.com"; got != want {
		t.Errorf("TXT Target() = %q, want %q", got, want)
	}

	mx := c.Lookup(ctx, "example.com", dns.TypeMX)
	if got, want := mx.MX(), []MX{{10, "mx1.example.com"}, {0, "."}}; !reflect.DeepEqual(got, want) {
		t.Errorf("MX() = %v, want %v", got, want)
	}

	a := c.Lookup(ctx, "alias.example.com", dns.TypeA)
	if got, want := a.Addrs(), []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}; !reflect.DeepEqual(got, want) {
		t.Errorf("Addrs() = %v, want %v", got, want)
	}
	if got, want := a.Target(), "host.example.com"; got != want {
		t.Errorf("Target() = %q, want %q", got, want)
	}
	if got, want := a.MinTTL(), uint32(50); got != want {
		t.Errorf("MinTTL() = %d, want %d", got, want)
	}
	if got := (&Answer{}).MinTTL(); got != 0 {
		t.Errorf("empty MinTTL() = %d, want 0", got)
	}
}

func TestCNAME(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		qname      string
		qtype      uint16
		maxCNAME   int
		zone       map[string]zoneReply
		wantStatus Status
		wantCNAMEs []string // owner -> host
		wantAddrs  []string
		wantErr    string // substring of Error
		wantAsked  []string
	}{
		{
			name:  "chain in one answer, out of order",
			qname: "a.example.com",
			qtype: dns.TypeA,
			zone: map[string]zoneReply{"a.example.com A": {answer: []string{
				"c.example.net. 60 IN A 192.0.2.7",
				"b.example.org. 60 IN CNAME c.example.net.",
				"a.example.com. 60 IN CNAME B.example.org.",
			}}},
			wantStatus: StatusOK,
			wantCNAMEs: []string{"a.example.com -> B.example.org", "b.example.org -> c.example.net"},
			wantAddrs:  []string{"192.0.2.7"},
			wantAsked:  []string{"a.example.com."},
		},
		{
			name:  "chain crossing zones needs a re-query",
			qname: "a.example.com",
			qtype: dns.TypeA,
			zone: map[string]zoneReply{
				"a.example.com A": {answer: []string{"a.example.com. 60 IN CNAME b.example.net."}},
				"b.example.net A": {answer: []string{"b.example.net. 60 IN A 192.0.2.8"}},
			},
			wantStatus: StatusOK,
			wantCNAMEs: []string{"a.example.com -> b.example.net"},
			wantAddrs:  []string{"192.0.2.8"},
			wantAsked:  []string{"a.example.com.", "b.example.net."},
		},
		{
			name:  "re-query returns NODATA",
			qname: "a.example.com",
			qtype: dns.TypeTLSA,
			zone: map[string]zoneReply{
				"a.example.com TLSA": {answer: []string{"a.example.com. 60 IN CNAME b.example.net."}},
				"b.example.net TLSA": {},
			},
			wantStatus: StatusNoData,
			wantCNAMEs: []string{"a.example.com -> b.example.net"},
			wantAsked:  []string{"a.example.com.", "b.example.net."},
		},
		{
			name:  "dangling CNAME is nxdomain with the chain kept",
			qname: "mta-sts.example.com",
			qtype: dns.TypeA,
			zone: map[string]zoneReply{"mta-sts.example.com A": {rcode: dns.RcodeNameError, answer: []string{
				"mta-sts.example.com. 60 IN CNAME gone.hosting.example.",
			}}},
			wantStatus: StatusNXDomain,
			wantCNAMEs: []string{"mta-sts.example.com -> gone.hosting.example"},
			wantAsked:  []string{"mta-sts.example.com."},
		},
		{
			name:  "dangling CNAME found by re-query",
			qname: "mta-sts.example.com",
			qtype: dns.TypeA,
			zone: map[string]zoneReply{"mta-sts.example.com A": {answer: []string{
				"mta-sts.example.com. 60 IN CNAME gone.hosting.example.",
			}}},
			wantStatus: StatusNXDomain,
			wantCNAMEs: []string{"mta-sts.example.com -> gone.hosting.example"},
			wantAsked:  []string{"mta-sts.example.com.", "gone.hosting.example."},
		},
		{
			name:  "loop inside one answer",
			qname: "a.example.com",
			qtype: dns.TypeA,
			zone: map[string]zoneReply{"a.example.com A": {answer: []string{
				"a.example.com. 60 IN CNAME b.example.com.",
				"b.example.com. 60 IN CNAME A.example.com.",
			}}},
			wantStatus: StatusError,
			wantCNAMEs: []string{"a.example.com -> b.example.com", "b.example.com -> A.example.com"},
			wantErr:    "CNAME loop at a.example.com",
			wantAsked:  []string{"a.example.com."},
		},
		{
			name:  "loop across re-queries",
			qname: "a.example.com",
			qtype: dns.TypeA,
			zone: map[string]zoneReply{
				"a.example.com A": {answer: []string{"a.example.com. 60 IN CNAME b.example.net."}},
				"b.example.net A": {answer: []string{"b.example.net. 60 IN CNAME a.example.com."}},
			},
			wantStatus: StatusError,
			wantCNAMEs: []string{"a.example.com -> b.example.net", "b.example.net -> a.example.com"},
			wantErr:    "CNAME loop at a.example.com",
			wantAsked:  []string{"a.example.com.", "b.example.net."},
		},
		{
			name:     "chain longer than MaxCNAME",
			qname:    "a.example.com",
			qtype:    dns.TypeA,
			maxCNAME: 2,
			zone: map[string]zoneReply{"a.example.com A": {answer: []string{
				"a.example.com. 60 IN CNAME b.example.com.",
				"b.example.com. 60 IN CNAME c.example.com.",
				"c.example.com. 60 IN CNAME d.example.com.",
				"d.example.com. 60 IN A 192.0.2.1",
			}}},
			wantStatus: StatusError,
			wantCNAMEs: []string{"a.example.com -> b.example.com", "b.example.com -> c.example.com"},
			wantErr:    "CNAME chain longer than 2",
			wantAsked:  []string{"a.example.com."},
		},
		{
			name:     "chain of exactly MaxCNAME",
			qname:    "a.example.com",
			qtype:    dns.TypeA,
			maxCNAME: 2,
			zone: map[string]zoneReply{"a.example.com A": {answer: []string{
				"a.example.com. 60 IN CNAME b.example.com.",
				"b.example.com. 60 IN CNAME c.example.com.",
				"c.example.com. 60 IN A 192.0.2.1",
			}}},
			wantStatus: StatusOK,
			wantCNAMEs: []string{"a.example.com -> b.example.com", "b.example.com -> c.example.com"},
			wantAddrs:  []string{"192.0.2.1"},
			wantAsked:  []string{"a.example.com."},
		},
		{
			name:  "qtype CNAME is not chased",
			qname: "a.example.com",
			qtype: dns.TypeCNAME,
			zone: map[string]zoneReply{"a.example.com CNAME": {answer: []string{
				"a.example.com. 60 IN CNAME b.example.net.",
			}}},
			wantStatus: StatusOK,
			wantAsked:  []string{"a.example.com."},
		},
		{
			name:  "CNAME at the TLSA owner (RFC 7672 §2.2.3)",
			qname: "_25._tcp.mx1.example.com",
			qtype: dns.TypeTLSA,
			zone: map[string]zoneReply{"_25._tcp.mx1.example.com TLSA": {answer: []string{
				"_25._tcp.mx1.example.com. 60 IN CNAME tlsa201._dane.example.com.",
				"tlsa201._dane.example.com. 60 IN TLSA 2 1 1 abcd",
			}}},
			wantStatus: StatusOK,
			wantCNAMEs: []string{"_25._tcp.mx1.example.com -> tlsa201._dane.example.com"},
			wantAsked:  []string{"_25._tcp.mx1.example.com."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, zoneHandler(t, tt.zone))
			c := newClient(srv)
			c.MaxCNAME = tt.maxCNAME
			got := c.Lookup(context.Background(), tt.qname, tt.qtype)
			if got.Status != tt.wantStatus {
				t.Errorf("Status = %q (%s), want %q", got.Status, got.Error, tt.wantStatus)
			}
			var chain []string
			for _, r := range got.CNAMEs {
				chain = append(chain, r.Name+" -> "+r.Host)
			}
			if !reflect.DeepEqual(chain, tt.wantCNAMEs) {
				t.Errorf("CNAMEs = %q, want %q", chain, tt.wantCNAMEs)
			}
			var addrs []string
			for _, a := range got.Addrs() {
				addrs = append(addrs, a.String())
			}
			if !reflect.DeepEqual(addrs, tt.wantAddrs) {
				t.Errorf("Addrs() = %q, want %q", addrs, tt.wantAddrs)
			}
			if !strings.Contains(got.Error, tt.wantErr) || (tt.wantErr == "" && got.Error != "") {
				t.Errorf("Error = %q, want it to contain %q", got.Error, tt.wantErr)
			}
			var asked []string
			for _, q := range srv.Queries() {
				asked = append(asked, q.Msg.Question[0].Name)
			}
			if !reflect.DeepEqual(asked, tt.wantAsked) {
				t.Errorf("server asked for %q, want %q", asked, tt.wantAsked)
			}
			for _, r := range got.Records {
				if r.Type != typeString(tt.qtype) || r.Name != got.Target() {
					t.Errorf("record %s %s not of the asked type at the target %s", r.Name, r.Type, got.Target())
				}
			}
		})
	}
}

func TestAbsent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		rcode     int
		answer    []string
		wantState Status
		wantRcode string
	}{
		{"NXDOMAIN", dns.RcodeNameError, nil, StatusNXDomain, "NXDOMAIN"},
		{"NODATA", dns.RcodeSuccess, nil, StatusNoData, "NOERROR"},
		{"NODATA with other types only", dns.RcodeSuccess, []string{"example.com. 60 IN A 192.0.2.1"}, StatusNoData, "NOERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, answerWith(t, tt.rcode, tt.answer...))
			got := newClient(srv).Lookup(context.Background(), "example.com", dns.TypeTXT)
			if got.Status != tt.wantState || got.Rcode != tt.wantRcode {
				t.Errorf("Status, Rcode = %q, %q; want %q, %q", got.Status, got.Rcode, tt.wantState, tt.wantRcode)
			}
			if !got.Status.Absent() || got.Status.Temporary() {
				t.Errorf("%q: Absent, Temporary = %v, %v; want true, false", got.Status, got.Status.Absent(), got.Status.Temporary())
			}
			if len(got.Records) != 0 || got.Error != "" {
				t.Errorf("Records, Error = %v, %q; want none", got.Records, got.Error)
			}
			if n := len(srv.Queries()); n != 1 {
				t.Errorf("server asked %d times, want 1 (absent answers are not retried)", n)
			}
		})
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	ok := []string{"example.com. 60 IN A 192.0.2.1"}
	tests := []struct {
		name       string
		first      func(t *testing.T) dns.HandlerFunc
		second     func(t *testing.T) dns.HandlerFunc
		attempts   int
		wantStatus Status
		wantRcode  string
		wantServer int // index of the server in Answer.Server
		wantAsked  [2]int
	}{
		{
			name:       "SERVFAIL then data from the second server",
			first:      func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeServerFailure) },
			second:     func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeSuccess, ok...) },
			wantStatus: StatusOK, wantRcode: "NOERROR", wantServer: 1, wantAsked: [2]int{1, 1},
		},
		{
			name:       "REFUSED then data from the second server",
			first:      func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeRefused) },
			second:     func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeSuccess, ok...) },
			wantStatus: StatusOK, wantRcode: "NOERROR", wantServer: 1, wantAsked: [2]int{1, 1},
		},
		{
			name:       "SERVFAIL everywhere",
			first:      func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeServerFailure) },
			second:     func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeServerFailure) },
			wantStatus: StatusServFail, wantRcode: "SERVFAIL", wantServer: 0, wantAsked: [2]int{2, 1},
		},
		{
			name:       "REFUSED everywhere",
			first:      func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeRefused) },
			second:     func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeRefused) },
			attempts:   2,
			wantStatus: StatusRefused, wantRcode: "REFUSED", wantServer: 1, wantAsked: [2]int{1, 1},
		},
		{
			name:       "SERVFAIL beats a later timeout",
			first:      func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeServerFailure) },
			second:     func(*testing.T) dns.HandlerFunc { return silent },
			attempts:   2,
			wantStatus: StatusServFail, wantRcode: "SERVFAIL", wantServer: 0, wantAsked: [2]int{1, 1},
		},
		{
			name:       "other rcode is an error",
			first:      func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeNotImplemented) },
			second:     func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeFormatError) },
			attempts:   2,
			wantStatus: StatusError, wantRcode: "FORMERR", wantServer: 1, wantAsked: [2]int{1, 1},
		},
		{
			name:       "NXDOMAIN is not retried",
			first:      func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeNameError) },
			second:     func(t *testing.T) dns.HandlerFunc { return answerWith(t, dns.RcodeSuccess, ok...) },
			wantStatus: StatusNXDomain, wantRcode: "NXDOMAIN", wantServer: 0, wantAsked: [2]int{1, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s0 := startServer(t, tt.first(t))
			s1 := startServer(t, tt.second(t))
			c := newClient(s0, s1)
			c.Timeout = 200 * time.Millisecond
			c.Attempts = tt.attempts
			got := c.Lookup(context.Background(), "example.com", dns.TypeA)
			if got.Status != tt.wantStatus || got.Rcode != tt.wantRcode {
				t.Errorf("Status, Rcode = %q, %q (%s); want %q, %q", got.Status, got.Rcode, got.Error, tt.wantStatus, tt.wantRcode)
			}
			if want := []string{s0.Addr, s1.Addr}[tt.wantServer]; got.Server != want {
				t.Errorf("Server = %q, want %q", got.Server, want)
			}
			asked := [2]int{len(s0.Queries()), len(s1.Queries())}
			if asked != tt.wantAsked {
				t.Errorf("servers asked %v times, want %v", asked, tt.wantAsked)
			}
			if tt.wantStatus.Temporary() && got.Error == "" {
				t.Errorf("Error is empty for temporary status %q", got.Status)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	srv := startServer(t, silent)
	c := newClient(srv)
	c.Timeout = 100 * time.Millisecond
	c.Attempts = 2
	start := time.Now()
	got := c.Lookup(context.Background(), "example.com", dns.TypeMX)
	elapsed := time.Since(start)
	if got.Status != StatusTimeout || !got.Status.Temporary() {
		t.Errorf("Status = %q (%s), want timeout", got.Status, got.Error)
	}
	if elapsed < 200*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("Lookup took %v, want about 200ms", elapsed)
	}
	if got.Duration < 200*time.Millisecond || got.DurationMS < 200 {
		t.Errorf("Duration, DurationMS = %v, %v; want >= 200ms", got.Duration, got.DurationMS)
	}
	if n := len(srv.Queries()); n != 2 {
		t.Errorf("server asked %d times, want 2", n)
	}
	if got.Rcode != "" || got.AD || got.Authenticated {
		t.Errorf("Rcode, AD, Authenticated = %q, %v, %v; want empty, false, false", got.Rcode, got.AD, got.Authenticated)
	}
}

func TestNetworkError(t *testing.T) {
	t.Parallel()
	c := &Client{
		Servers: []string{"192.0.2.1:53", "192.0.2.2"},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, errors.New("dial " + addr + ": boom")
		},
	}
	got := c.Lookup(context.Background(), "example.com", dns.TypeA)
	if got.Status != StatusError {
		t.Errorf("Status = %q, want error", got.Status)
	}
	want := "192.0.2.1:53: dial 192.0.2.1:53: boom; 192.0.2.2:53: dial 192.0.2.2:53: boom; 192.0.2.1:53: dial 192.0.2.1:53: boom"
	if got.Error != want {
		t.Errorf("Error = %q, want %q", got.Error, want)
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	t.Parallel()
	var many []string
	for i := range 40 {
		many = append(many, "big.example.com. 60 IN TXT \""+strings.Repeat("x", 200)+"\" \""+string(rune('a'+i%26))+"\"")
	}
	tests := []struct {
		name string
		udp  func(t *testing.T, full []dns.RR) dns.HandlerFunc
	}{
		{
			name: "TC with empty answer",
			udp: func(t *testing.T, _ []dns.RR) dns.HandlerFunc {
				return func(w dns.ResponseWriter, r *dns.Msg) {
					m := reply(r, dns.RcodeSuccess, nil)
					m.Truncated = true
					w.WriteMsg(m)
				}
			},
		},
		{
			name: "TC cut in the middle of a record",
			udp: func(t *testing.T, full []dns.RR) dns.HandlerFunc {
				return func(w dns.ResponseWriter, r *dns.Msg) {
					m := reply(r, dns.RcodeSuccess, full)
					m.Truncated = true
					b, err := m.Pack()
					if err != nil {
						return
					}
					w.Write(b[:600])
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			full := mustRRs(t, many...)
			udp := tt.udp(t, full)
			srv := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
				if w.LocalAddr().Network() == "udp" {
					udp(w, r)
					return
				}
				w.WriteMsg(reply(r, dns.RcodeSuccess, full))
			})
			got := newClient(srv).Lookup(context.Background(), "big.example.com", dns.TypeTXT)
			if got.Status != StatusOK || !got.TCP {
				t.Fatalf("Status, TCP = %q, %v (%s); want ok, true", got.Status, got.TCP, got.Error)
			}
			if len(got.Records) != len(many) {
				t.Errorf("got %d records, want %d", len(got.Records), len(many))
			}
			var nets []string
			for _, q := range srv.Queries() {
				nets = append(nets, q.Net)
			}
			if want := []string{"udp", "tcp"}; !reflect.DeepEqual(nets, want) {
				t.Errorf("transports = %q, want %q", nets, want)
			}
		})
	}
}

func TestQueryFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		udpSize  uint16
		wantSize uint16
	}{
		{"default buffer", 0, 1232},
		{"custom buffer", 4096, 4096},
		{"below minimum", 100, 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, answerWith(t, dns.RcodeSuccess))
			c := newClient(srv)
			c.UDPSize = tt.udpSize
			for range 3 {
				c.Lookup(context.Background(), "Example.COM.", dns.TypeTLSA)
			}
			ids := map[uint16]bool{}
			for _, q := range srv.Queries() {
				m := q.Msg
				ids[m.Id] = true
				opt := m.IsEdns0()
				if opt == nil {
					t.Fatal("query has no EDNS0 OPT record")
				}
				if !opt.Do() || opt.UDPSize() != tt.wantSize {
					t.Errorf("DO, UDPSize = %v, %d; want true, %d", opt.Do(), opt.UDPSize(), tt.wantSize)
				}
				if !m.RecursionDesired || m.CheckingDisabled || m.Response {
					t.Errorf("RD, CD, QR = %v, %v, %v; want true, false, false", m.RecursionDesired, m.CheckingDisabled, m.Response)
				}
				want := dns.Question{Name: "example.com.", Qtype: dns.TypeTLSA, Qclass: dns.ClassINET}
				if len(m.Question) != 1 || m.Question[0] != want {
					t.Errorf("Question = %v, want [%v]", m.Question, want)
				}
			}
			if len(ids) < 2 {
				t.Errorf("3 queries used %d distinct IDs; want random IDs", len(ids))
			}
		})
	}
}

func TestAD(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		setAD     bool
		trustAD   func(string) bool
		wantAD    bool
		wantAuth  bool
		wantTrust []string // servers TrustAD was asked about ("" = not checked)
	}{
		{name: "AD from loopback, default trust", setAD: true, wantAD: true, wantAuth: true},
		{name: "no AD from loopback", setAD: false, wantAD: false, wantAuth: false},
		{name: "AD from an untrusted server", setAD: true, trustAD: func(string) bool { return false }, wantAD: true, wantAuth: false},
		{name: "AD from a named server", setAD: true, trustAD: func(string) bool { return true }, wantAD: true, wantAuth: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rrs := mustRRs(t, "_25._tcp.mx.example.com. 60 IN TLSA 3 1 1 abcdef")
			srv := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
				m := reply(r, dns.RcodeSuccess, rrs)
				m.AuthenticatedData = tt.setAD
				w.WriteMsg(m)
			})
			c := newClient(srv)
			var mu sync.Mutex
			var asked []string
			if tt.trustAD != nil {
				c.TrustAD = func(s string) bool {
					mu.Lock()
					asked = append(asked, s)
					mu.Unlock()
					return tt.trustAD(s)
				}
			}
			got := c.Lookup(context.Background(), "_25._tcp.mx.example.com", dns.TypeTLSA)
			if got.AD != tt.wantAD || got.Authenticated != tt.wantAuth {
				t.Errorf("AD, Authenticated = %v, %v; want %v, %v", got.AD, got.Authenticated, tt.wantAD, tt.wantAuth)
			}
			if tt.trustAD != nil && (len(asked) != 1 || asked[0] != srv.Addr) {
				t.Errorf("TrustAD asked about %q, want [%q]", asked, srv.Addr)
			}
		})
	}
}

func TestADAcrossRequeries(t *testing.T) {
	t.Parallel()
	// An insecure step makes everything after it insecure (RFC 7672 §2.2.2).
	alias := mustRRs(t, "mx.example.com. 60 IN CNAME mx.host.net.")
	target := mustRRs(t, "mx.host.net. 60 IN A 192.0.2.1")
	srv := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if strings.EqualFold(r.Question[0].Name, "mx.example.com.") {
			w.WriteMsg(reply(r, dns.RcodeSuccess, alias)) // no AD
			return
		}
		m := reply(r, dns.RcodeSuccess, target)
		m.AuthenticatedData = true
		w.WriteMsg(m)
	})
	got := newClient(srv).Lookup(context.Background(), "mx.example.com", dns.TypeA)
	if got.Status != StatusOK || got.AD || got.Authenticated {
		t.Errorf("Status, AD, Authenticated = %q, %v, %v; want ok, false, false", got.Status, got.AD, got.Authenticated)
	}
}

func TestContextDone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		ctx        func() (context.Context, context.CancelFunc)
		wantStatus Status
		wantErr    string
	}{
		{
			name: "canceled",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantStatus: StatusError,
			wantErr:    "canceled",
		},
		{
			name: "deadline",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			},
			wantStatus: StatusTimeout,
			wantErr:    "timeout",
		},
		{
			name: "already canceled",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			wantStatus: StatusError,
			wantErr:    "canceled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, silent)
			c := newClient(srv)
			c.Timeout = 10 * time.Second
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			got := c.Lookup(ctx, "example.com", dns.TypeA)
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("Lookup took %v after ctx was done, want prompt return", elapsed)
			}
			if got.Status != tt.wantStatus || !strings.Contains(got.Error, tt.wantErr) {
				t.Errorf("Status, Error = %q, %q; want %q, containing %q", got.Status, got.Error, tt.wantStatus, tt.wantErr)
			}
			if n := len(srv.Queries()); n > 1 {
				t.Errorf("server asked %d times, want at most 1", n)
			}
		})
	}
}

func TestMismatchedReplies(t *testing.T) {
	t.Parallel()
	good := []string{"example.com. 60 IN A 192.0.2.1"}
	tests := []struct {
		name       string
		bad        func(r *dns.Msg) []byte // one bad datagram sent before the good reply
		sendGood   bool
		wantStatus Status
		wantErr    string
	}{
		{
			name:       "wrong ID is ignored",
			bad:        func(r *dns.Msg) []byte { m := reply(r, dns.RcodeNameError, nil); m.Id = r.Id + 1; return pack(m) },
			sendGood:   true,
			wantStatus: StatusOK,
		},
		{
			name: "wrong question is ignored",
			bad: func(r *dns.Msg) []byte {
				m := reply(r, dns.RcodeNameError, nil)
				m.Question[0].Name = "other.example."
				return pack(m)
			},
			sendGood:   true,
			wantStatus: StatusOK,
		},
		{
			name:       "garbage is ignored",
			bad:        func(*dns.Msg) []byte { return []byte{1, 2, 3} },
			sendGood:   true,
			wantStatus: StatusOK,
		},
		{
			name:       "query echoed without QR is ignored",
			bad:        func(r *dns.Msg) []byte { return pack(r) },
			sendGood:   true,
			wantStatus: StatusOK,
		},
		{
			name:       "only a wrong ID",
			bad:        func(r *dns.Msg) []byte { m := reply(r, dns.RcodeSuccess, nil); m.Id = r.Id ^ 0xffff; return pack(m) },
			wantStatus: StatusError,
			wantErr:    "does not match query ID",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rrs := mustRRs(t, good...)
			srv := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
				w.Write(tt.bad(r))
				if tt.sendGood {
					w.WriteMsg(reply(r, dns.RcodeSuccess, rrs))
				}
			})
			c := newClient(srv)
			c.Timeout = 200 * time.Millisecond
			c.Attempts = 1
			got := c.Lookup(context.Background(), "example.com", dns.TypeA)
			if got.Status != tt.wantStatus || !strings.Contains(got.Error, tt.wantErr) {
				t.Errorf("Status, Error = %q, %q; want %q, containing %q", got.Status, got.Error, tt.wantStatus, tt.wantErr)
			}
		})
	}
}

func pack(m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

func TestInvalidNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		qname string
	}{
		{"empty", ""},
		{"empty label", "a..example"},
		{"leading dot", ".example"},
		{"label of 64 octets", strings.Repeat("a", 64) + ".example"},
		{"name of 254 characters", strings.Repeat(strings.Repeat("a", 49)+".", 5) + "abcd"},
		{"space", "bad name.example"},
		{"non-ASCII", "bücher.example"},
		{"bad escape", `a\25.example`},
		{"escape over 255", `a\256.example`},
		{"trailing backslash", `example\`},
	}
	srv := startServer(t, answerWith(t, dns.RcodeSuccess))
	c := newClient(srv)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Lookup(context.Background(), tt.qname, dns.TypeA)
			if got.Status != StatusError || !strings.HasPrefix(got.Error, "invalid name") {
				t.Errorf("Lookup(%q): Status, Error = %q, %q; want error, invalid name", tt.qname, got.Status, got.Error)
			}
		})
	}
	if n := len(srv.Queries()); n != 0 {
		t.Errorf("server asked %d times for invalid names, want 0", n)
	}
	// The longest valid name is sent.
	longest := strings.Repeat(strings.Repeat("a", 49)+".", 5) + "abc"
	if got := c.Lookup(context.Background(), longest+".", dns.TypeA); got.Status != StatusNoData || got.Name != longest {
		t.Errorf("Lookup(253 characters): Status, Name = %q (%s), %q; want nodata, the name", got.Status, got.Error, got.Name)
	}
}

func TestNoServers(t *testing.T) {
	t.Parallel()
	var nilClient *Client
	for _, c := range []*Client{{}, nilClient} {
		got := c.Lookup(context.Background(), "example.com", dns.TypeA)
		if got.Status != StatusError || got.Error == "" {
			t.Errorf("Status, Error = %q, %q; want error with a cause", got.Status, got.Error)
		}
	}
}

func TestAnswerJSONRoundTrip(t *testing.T) {
	t.Parallel()
	srv := startServer(t, zoneHandler(t, map[string]zoneReply{
		"example.com MX":             {answer: []string{"example.com. 300 IN MX 10 mx.example.com.", "example.com. 300 IN MX 0 ."}},
		"_smtp._tls.example.com TXT": {answer: []string{`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1;" "rua=mailto:a@example.com" "\000\001"`}},
		"mx.example.com A":           {answer: []string{"mx.example.com. 300 IN CNAME host.example.net.", "host.example.net. 300 IN A 192.0.2.1"}},
		"mx.example.com AAAA":        {answer: []string{"mx.example.com. 300 IN AAAA 2001:db8::25"}},
		"_25._tcp.mx.example.com TLSA": {answer: []string{
			"_25._tcp.mx.example.com. 300 IN TLSA 3 1 1 8CB0FC6C527506A053F4F14C8464BEBBD6DEDE2738D11468DD953D7D6A3021F1",
			"_25._tcp.mx.example.com. 300 IN TLSA 0 0 0 abcd",
		}},
	}))
	c := newClient(srv)
	questions := []struct {
		name  string
		qtype uint16
	}{
		{"example.com", dns.TypeMX},
		{"_smtp._tls.example.com", dns.TypeTXT},
		{"mx.example.com", dns.TypeA},
		{"mx.example.com", dns.TypeAAAA},
		{"_25._tcp.mx.example.com", dns.TypeTLSA},
		{"nothing.example.com", dns.TypeA},
	}
	for _, q := range questions {
		orig := c.Lookup(context.Background(), q.name, q.qtype)
		b, err := json.Marshal(orig)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		var back Answer
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if !reflect.DeepEqual(&back, orig) {
			t.Errorf("round trip of %s:\ngot  %+v\nwant %+v", b, &back, orig)
		}
	}

	// The wire names are part of the evidence format.
	a := c.Lookup(context.Background(), "_25._tcp.mx.example.com", dns.TypeTLSA)
	b, _ := json.Marshal(a)
	for _, key := range []string{`"name":`, `"type":"TLSA"`, `"status":"ok"`, `"rcode":"NOERROR"`, `"ad":false`, `"authenticated":false`,
		`"usage":3`, `"selector":1`, `"matching_type":1`, `"data":"8cb0fc6c`, `"duration_ms":`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
	if strings.Contains(string(b), `"Duration"`) || strings.Contains(string(b), `"addr"`) {
		t.Errorf("JSON %s has a Go duration or an empty addr", b)
	}
}

// trackedConn decrements a count of open connections when closed.
type trackedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

func TestConnsClosed(t *testing.T) {
	t.Parallel()
	// Every connection a Lookup opens is closed by the time it returns,
	// whatever the outcome.
	silentSrv := startServer(t, silent)
	tcSrv := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := reply(r, dns.RcodeSuccess, nil)
		m.Truncated = w.LocalAddr().Network() == "udp"
		w.WriteMsg(m)
	})
	tests := []struct {
		name       string
		srv        *testServer
		ctxFor     time.Duration
		wantDialed int64
	}{
		{"timeout", silentSrv, 0, 3},
		{"ctx deadline", silentSrv, 30 * time.Millisecond, 1},
		{"udp then tcp", tcSrv, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var open, dialed atomic.Int64
			var d net.Dialer
			c := newClient(tt.srv)
			c.Timeout = 100 * time.Millisecond
			c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				conn, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				dialed.Add(1)
				open.Add(1)
				return &trackedConn{Conn: conn, open: &open}, nil
			}
			ctx := context.Background()
			if tt.ctxFor > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxFor)
				defer cancel()
			}
			c.Lookup(ctx, "example.com", dns.TypeA)
			if n := open.Load(); n != 0 {
				t.Errorf("%d connections still open after Lookup returned", n)
			}
			if got := dialed.Load(); got != tt.wantDialed {
				t.Errorf("dialed %d connections, want %d", got, tt.wantDialed)
			}
		})
	}
}

func TestSystemServers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		want    []string
		wantErr bool
	}{
		{"IPv4 and IPv6", "# comment\nnameserver 127.0.0.53\nnameserver ::1\nsearch example.com\n", []string{"127.0.0.53:53", "[::1]:53"}, false},
		{"no nameserver", "search example.com\noptions ndots:1\n", nil, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "resolv"+string(rune('0'+i))+".conf")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := SystemServers(path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("SystemServers() error = %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SystemServers() = %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := SystemServers(filepath.Join(dir, "missing.conf")); err == nil || !strings.HasPrefix(err.Error(), "resolve: ") {
		t.Errorf("SystemServers(missing) error = %v, want a resolve: error", err)
	}
}

func TestIsLoopbackServer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		server string
		want   bool
	}{
		{"127.0.0.1:53", true},
		{"127.0.0.53:53", true},
		{"127.255.255.254:5353", true},
		{"[::1]:53", true},
		{"::1", true},
		{"127.0.0.1", true},
		{"[::ffff:127.0.0.1]:53", true},
		{"192.0.2.1:53", false},
		{"[2001:db8::1]:53", false},
		{"localhost:53", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsLoopbackServer(tt.server); got != tt.want {
			t.Errorf("IsLoopbackServer(%q) = %v, want %v", tt.server, got, tt.want)
		}
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s                 Status
		temporary, absent bool
	}{
		{StatusOK, false, false},
		{StatusNXDomain, false, true},
		{StatusNoData, false, true},
		{StatusServFail, true, false},
		{StatusRefused, true, false},
		{StatusTimeout, true, false},
		{StatusError, true, false},
	}
	for _, tt := range tests {
		if got := tt.s.Temporary(); got != tt.temporary {
			t.Errorf("%q.Temporary() = %v, want %v", tt.s, got, tt.temporary)
		}
		if got := tt.s.Absent(); got != tt.absent {
			t.Errorf("%q.Absent() = %v, want %v", tt.s, got, tt.absent)
		}
	}
}

// TestIncompleteRepliesAreUndetermined: an answer that cannot be trusted
// to be complete is never read as absence (or as the whole RRset): a reply
// still truncated over TCP, with or without records, and a reply whose
// header announces more records than it holds. RFC 1035 §4.1.1 (TC, the
// section counts), RFC 7766 §6.2.1 (TCP is the fallback for TC).
func TestIncompleteRepliesAreUndetermined(t *testing.T) {
	t.Parallel()
	mx := []string{"example.com. 60 IN MX 10 mx1.example.com.", "example.com. 60 IN MX 20 mx2.example.com."}
	// short packs m and cuts it after its question and first answer record,
	// leaving the header's counts as they were.
	short := func(m *dns.Msg) []byte {
		one := m.Copy()
		one.Answer = one.Answer[:1]
		one.Extra = nil
		m.Extra = nil
		return pack(m)[:len(pack(one))]
	}
	tests := []struct {
		name    string
		udp     func(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR)
		tcp     func(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR)
		wantErr string
	}{
		{
			name: "TC over UDP and over TCP, no records",
			udp: func(w dns.ResponseWriter, r *dns.Msg, _ []dns.RR) {
				m := reply(r, dns.RcodeSuccess, nil)
				m.Truncated = true
				w.WriteMsg(m)
			},
			tcp: func(w dns.ResponseWriter, r *dns.Msg, _ []dns.RR) {
				m := reply(r, dns.RcodeSuccess, nil)
				m.Truncated = true
				w.WriteMsg(m)
			},
			wantErr: "truncated",
		},
		{
			name: "TC over TCP with part of the records",
			udp: func(w dns.ResponseWriter, r *dns.Msg, _ []dns.RR) {
				m := reply(r, dns.RcodeSuccess, nil)
				m.Truncated = true
				w.WriteMsg(m)
			},
			tcp: func(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR) {
				m := reply(r, dns.RcodeSuccess, rrs[:1])
				m.Truncated = true
				w.WriteMsg(m)
			},
			wantErr: "truncated",
		},
		{
			name:    "fewer records than the header announces, no TC",
			udp:     func(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR) { w.Write(short(reply(r, dns.RcodeSuccess, rrs))) },
			tcp:     func(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR) { w.Write(short(reply(r, dns.RcodeSuccess, rrs))) },
			wantErr: "announces",
		},
		{
			name: "a referral from a server that does not recurse",
			udp: func(w dns.ResponseWriter, r *dns.Msg, _ []dns.RR) {
				m := new(dns.Msg)
				m.SetReply(r)
				ns, _ := dns.NewRR("example.com. 3600 IN NS ns1.example.net.")
				m.Ns = []dns.RR{ns}
				w.WriteMsg(m)
			},
			wantErr: "referral",
		},
		{
			name: "header only, answer announced",
			udp: func(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR) {
				w.Write(pack(reply(r, dns.RcodeSuccess, rrs))[:headerLen])
			},
			tcp: func(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR) {
				w.Write(pack(reply(r, dns.RcodeSuccess, rrs))[:headerLen])
			},
			wantErr: "announces",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rrs := mustRRs(t, mx...)
			srv := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
				if w.LocalAddr().Network() == "udp" || tt.tcp == nil {
					tt.udp(w, r, rrs)
					return
				}
				tt.tcp(w, r, rrs)
			})
			c := newClient(srv)
			c.Attempts = 1
			got := c.Lookup(context.Background(), "example.com", dns.TypeMX)
			if !got.Status.Temporary() || len(got.Records) != 0 {
				t.Fatalf("Status %q with %d records (%s); want undetermined, no records", got.Status, len(got.Records), got.Error)
			}
			if !strings.Contains(got.Error, tt.wantErr) {
				t.Errorf("Error %q, want it to mention %q", got.Error, tt.wantErr)
			}
		})
	}
	// An authoritative server asked directly (AA, no RA) is believed.
	t.Run("NODATA from an authoritative server that does not recurse", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Authoritative = true
			w.WriteMsg(m)
		})
		if got := newClient(srv).Lookup(context.Background(), "example.com", dns.TypeMX); got.Status != StatusNoData {
			t.Errorf("Status %q (%s), want nodata", got.Status, got.Error)
		}
	})
	// The truncated UDP reply whose records are cut still goes to TCP,
	// and a complete TCP answer is believed.
	t.Run("TC over UDP with fewer records, complete over TCP", func(t *testing.T) {
		t.Parallel()
		rrs := mustRRs(t, mx...)
		srv := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
			m := reply(r, dns.RcodeSuccess, rrs)
			if w.LocalAddr().Network() == "udp" {
				m.Truncated = true
				w.Write(short(m))
				return
			}
			w.WriteMsg(m)
		})
		got := newClient(srv).Lookup(context.Background(), "example.com", dns.TypeMX)
		if got.Status != StatusOK || !got.TCP || len(got.Records) != 2 {
			t.Errorf("Status %q TCP %v records %d (%s); want ok over TCP with both records", got.Status, got.TCP, len(got.Records), got.Error)
		}
	})
}

// TestNegativeTTL: an NXDOMAIN or NODATA reply carries the zone's SOA, and
// the negative answer may be cached for the smaller of its TTL and its
// MINIMUM field (RFC 2308 §5); without an SOA, nothing says how long.
func TestNegativeTTL(t *testing.T) {
	soa := func(ttl, minimum uint32) dns.RR {
		return &dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns: "ns.example.", Mbox: "h.example.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: minimum}
	}
	s := startServer(t, func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		switch req.Question[0].Name {
		case "gone.example.":
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa(3600, 300)}
		case "empty.example.":
			m.Ns = []dns.RR{soa(120, 900)}
		}
		_ = w.WriteMsg(m)
	})
	c := newClient(s)
	for _, tt := range []struct {
		name   string
		status Status
		ttl    uint32
	}{{"gone.example", StatusNXDomain, 300}, {"empty.example", StatusNoData, 120}, {"bare.example", StatusNoData, 0}} {
		a := c.Lookup(context.Background(), tt.name, dns.TypeA)
		if a.Status != tt.status || a.NegativeTTL != tt.ttl {
			t.Errorf("%s: %s with negative TTL %d, want %s and %d", tt.name, a.Status, a.NegativeTTL, tt.status, tt.ttl)
		}
	}
}
