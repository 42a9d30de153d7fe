package resolve

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestHostAddrs: both families are asked; an answer with no address names
// what each family answered, so a SERVFAIL is not read as "no such host".
func TestHostAddrs(t *testing.T) {
	f := NewFake(
		&Answer{Name: "both.example", Type: "A", Status: StatusOK, Rcode: "NOERROR", Records: []Record{{Addr: netip.MustParseAddr("192.0.2.1")}}},
		&Answer{Name: "both.example", Type: "AAAA", Status: StatusOK, Rcode: "NOERROR", Records: []Record{{Addr: netip.MustParseAddr("2001:db8::1")}}},
		&Answer{Name: "v6.example", Type: "A", Status: StatusNoData, Rcode: "NOERROR"},
		&Answer{Name: "v6.example", Type: "AAAA", Status: StatusOK, Rcode: "NOERROR", Records: []Record{{Addr: netip.MustParseAddr("2001:db8::2")}}},
		&Answer{Name: "broken.example", Type: "A", Status: StatusServFail, Rcode: "SERVFAIL"},
		&Answer{Name: "broken.example", Type: "AAAA", Status: StatusServFail, Rcode: "SERVFAIL"},
	)
	ctx := context.Background()
	got, err := HostAddrs(ctx, f, "both.example")
	if err != nil || !slices.Equal(got, []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}) {
		t.Errorf("both.example: %v, %v", got, err)
	}
	if got, err := HostAddrs(ctx, f, "v6.example"); err != nil || len(got) != 1 {
		t.Errorf("v6.example: %v, %v", got, err)
	}
	if _, err := HostAddrs(ctx, f, "broken.example"); err == nil || !strings.Contains(err.Error(), "SERVFAIL, SERVFAIL") {
		t.Errorf("broken.example: %v, want the rcodes named", err)
	}
}
