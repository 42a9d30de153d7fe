package resolve

import (
	"context"
	"net/netip"
	"reflect"
	"testing"

	"github.com/miekg/dns"
)

func TestFake(t *testing.T) {
	t.Parallel()
	mx := &Answer{Name: "Example.COM.", Type: "MX", Status: StatusOK, Rcode: "NOERROR", AD: true, Authenticated: true,
		Records: []Record{{Name: "example.com", Type: "MX", TTL: 60, Value: "10 mx.example.com.", Preference: 10, Host: "mx.example.com"}}}
	a := &Answer{Name: "mx.example.com", Type: "A", Status: StatusOK, Rcode: "NOERROR",
		Records: []Record{{Name: "mx.example.com", Type: "A", TTL: 60, Value: "192.0.2.1", Addr: netip.MustParseAddr("192.0.2.1")}}}
	fail := &Answer{Name: "_25._tcp.mx.example.com", Type: "TLSA", Status: StatusServFail, Rcode: "SERVFAIL", Error: "SERVFAIL"}
	f := NewFake(mx, a, fail)
	var _ Resolver = f
	var _ Resolver = &Client{}

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name       string
		f          *Fake
		ctx        context.Context
		qname      string
		qtype      uint16
		wantStatus Status
		wantRcode  string
		wantName   string
		wantN      int
	}{
		{"recorded, other case", f, context.Background(), "EXAMPLE.com", dns.TypeMX, StatusOK, "NOERROR", "example.com", 1},
		{"recorded", f, context.Background(), "mx.example.com.", dns.TypeA, StatusOK, "NOERROR", "mx.example.com", 1},
		{"recorded failure", f, context.Background(), "_25._tcp.mx.example.com", dns.TypeTLSA, StatusServFail, "SERVFAIL", "_25._tcp.mx.example.com", 0},
		{"missing defaults to nxdomain", f, context.Background(), "mx.example.com", dns.TypeAAAA, StatusNXDomain, "NXDOMAIN", "mx.example.com", 0},
		{"missing as error for replay", &Fake{Missing: StatusError}, context.Background(), "x.example", dns.TypeA, StatusError, "", "x.example", 0},
		{"missing as nodata", &Fake{Missing: StatusNoData}, context.Background(), "x.example", dns.TypeA, StatusNoData, "NOERROR", "x.example", 0},
		{"invalid name", f, context.Background(), "a..b", dns.TypeA, StatusError, "", "a..b", 0},
		{"canceled", f, canceled, "example.com", dns.TypeMX, StatusError, "", "example.com", 0},
	}
	for _, tt := range tests {
		got := tt.f.Lookup(tt.ctx, tt.qname, tt.qtype)
		if got.Status != tt.wantStatus || got.Rcode != tt.wantRcode || got.Name != tt.wantName || len(got.Records) != tt.wantN {
			t.Errorf("%s: Status, Rcode, Name, len(Records) = %q, %q, %q, %d; want %q, %q, %q, %d",
				tt.name, got.Status, got.Rcode, got.Name, len(got.Records), tt.wantStatus, tt.wantRcode, tt.wantName, tt.wantN)
		}
	}

	// Answers are copies: changing one does not change the Fake.
	got := f.Lookup(context.Background(), "example.com", dns.TypeMX)
	got.Records[0].Host = "changed"
	again := f.Lookup(context.Background(), "example.com", dns.TypeMX)
	if !reflect.DeepEqual(again.MX(), []MX{{10, "mx.example.com"}}) {
		t.Errorf("after changing a returned answer, MX() = %v", again.MX())
	}
}
