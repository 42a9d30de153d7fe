package lab

import (
	"testing"

	"github.com/miekg/dns"
)

func TestDNSHandlerPanicIsRecovered(t *testing.T) {
	t.Parallel()
	d := NewDNS(t)
	req := new(dns.Msg)
	req.SetQuestion("a.example.test.", dns.TypeA)
	d.serveDNS(nil, req) // a nil ResponseWriter panics inside the handler
	if got := d.Panics(); got != 1 {
		t.Errorf("Panics() = %d, want 1", got)
	}
}
