package dial

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		in   string
		want Rule
	}{
		{"mta-sts.example.com:443:127.0.0.1:8443", Rule{"mta-sts.example.com", 443, "127.0.0.1", 8443}},
		{"MTA-STS.Example.com.:443:127.0.0.1:8443", Rule{"mta-sts.example.com", 443, "127.0.0.1", 8443}},
		{"[2001:db8::1]:25:[::1]:2525", Rule{"2001:db8::1", 25, "::1", 2525}},
		{"::127.0.0.1:8443", Rule{"", 0, "127.0.0.1", 8443}},
		{"mx.example.com:25::2525", Rule{"mx.example.com", 25, "", 2525}},
	}
	for _, tt := range tests {
		got, err := ParseRule(tt.in)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseRule(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		again, err := ParseRule(got.String())
		if err != nil || again != got {
			t.Errorf("ParseRule(%q.String()=%q) = %+v, %v", tt.in, got.String(), again, err)
		}
	}
	for _, bad := range []string{"", "a:b", "a:1:b", "a:1:b:c", "a:99999:b:1", "a:1::", "[::1:1:b:2", "a:1:::1:2", "[[]::0:", "[host]:1:b:2", "..::0:", "a b:1:c:2", "a:1:c..d:2"} {
		r, err := ParseRule(bad)
		var re *RuleError
		if !errors.As(err, &re) || re.Rule != bad || re.Reason == "" {
			t.Errorf("ParseRule(%q) = %+v, %v; want a *RuleError naming the rule and why", bad, r, err)
		}
	}
}

func TestTarget(t *testing.T) {
	d := &Dialer{Rules: []Rule{
		{Host: "mta-sts.example.com", Port: 443, ToHost: "127.0.0.1", ToPort: 8443},
		{Host: "192.0.2.1", Port: 25, ToHost: "127.0.0.1", ToPort: 2525},
		{Host: "2001:db8::1", Port: 25, ToHost: "::1", ToPort: 2526},
	}}
	tests := []struct {
		host string
		ip   string
		port int
		want string
	}{
		{"mta-sts.example.com", "198.51.100.1", 443, "127.0.0.1:8443"},
		{"MTA-STS.example.com.", "", 443, "127.0.0.1:8443"},
		{"mta-sts.example.com", "198.51.100.1", 80, "198.51.100.1:80"},
		{"mx.example.com", "192.0.2.1", 25, "127.0.0.1:2525"},
		{"mx.example.com", "2001:db8::1", 25, "[::1]:2526"},
		{"mx.example.com", "192.0.2.2", 25, "192.0.2.2:25"},
	}
	for _, tt := range tests {
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		if got := d.Target(tt.host, ip, tt.port); got != tt.want {
			t.Errorf("Target(%q, %q, %d) = %q, want %q", tt.host, tt.ip, tt.port, got, tt.want)
		}
	}
	if _, ok := d.HostOverride("mx.example.com", 25); ok {
		t.Error("address rules must not count as host overrides")
	}
}

func TestDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	d := &Dialer{Rules: []Rule{{Host: "192.0.2.10", Port: 443, ToHost: "127.0.0.1", ToPort: port}}}
	c, err := d.Dial(context.Background(), "mta-sts.example.com", netip.MustParseAddr("192.0.2.10"), 443)
	if err != nil {
		t.Fatalf("Dial through rule: %v", err)
	}
	c.Close()
	if _, err := d.Dial(context.Background(), "mta-sts.example.com", netip.Addr{}, 443); err != ErrNoAddress {
		t.Errorf("Dial without address = %v, want ErrNoAddress", err)
	}
}

// FuzzParseRule: any string gives a rule or an error, never a panic; an
// accepted rule printed with String parses back to the same rule, and it
// changes something.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"mta-sts.example.com:443:127.0.0.1:8443", "::127.0.0.1:", "[::1]:25:[::1]:2525", "192.0.2.1::127.0.0.2:", "a:b:c:d", "[:1:2:3", ":::", "x:1:[y]:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		if r.ToHost == "" && r.ToPort == 0 {
			t.Fatalf("%q: a rule that changes nothing was accepted", s)
		}
		back, err := ParseRule(r.String())
		if err != nil || back != r {
			t.Fatalf("%q: parsed %+v, printed %q, parsed back %+v (%v)", s, r, r.String(), back, err)
		}
	})
}
