package dial

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGuardCheck: the web checker must not connect to special-purpose
// addresses (RFC 6890 registries) or to ports other than 25 and 443.
func TestGuardCheck(t *testing.T) {
	g := NewGuard()
	tests := []struct {
		addr string
		why  string // "" means allowed
	}{
		{"8.8.8.8:25", ""},
		{"8.8.8.8:443", ""},
		{"[2a00:1450:4001:80b::201a]:25", ""},
		{"8.8.8.8:80", "port 80"},
		{"8.8.8.8:22", "port 22"},
		{"127.0.0.1:25", "loopback"},
		{"127.0.0.10:443", "loopback"},
		{"[::1]:25", "loopback"},
		{"[::ffff:127.0.0.1]:25", "loopback"}, // IPv4-mapped is unmapped first
		{"10.1.2.3:25", "private-use"},
		{"172.16.0.1:25", "private-use"},
		{"192.168.1.1:443", "private-use"},
		{"[fd00::1]:25", "unique local"},
		{"100.64.0.1:25", "carrier-grade NAT"},
		{"169.254.169.254:443", "link-local"}, // cloud metadata
		{"[fe80::1]:25", "link-local"},
		{"224.0.0.1:25", "multicast"},
		{"0.0.0.0:25", "unspecified"},
		{"192.0.2.1:25", "documentation"},
		{"[2001:db8::1]:25", "documentation"},
		{"240.0.0.1:25", "reserved"},
		{"198.18.0.1:25", "special-purpose"}, // benchmarking (RFC 2544)
		{"[64:ff9b::7f00:1]:25", "special-purpose"},
	}
	for _, tt := range tests {
		err := g.Check(netip.MustParseAddrPort(tt.addr))
		if tt.why == "" {
			if err != nil {
				t.Errorf("Check(%s) = %v, want allowed", tt.addr, err)
			}
			continue
		}
		var be *BlockedError
		if !errors.As(err, &be) || !errors.Is(err, ErrBlocked) {
			t.Errorf("Check(%s) = %v, want a BlockedError", tt.addr, err)
			continue
		}
		if !strings.Contains(be.Why, tt.why) {
			t.Errorf("Check(%s): why = %q, want it to mention %q", tt.addr, be.Why, tt.why)
		}
	}
}

func TestGuardAllow(t *testing.T) {
	g := NewGuard(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"))
	for _, ok := range []string{"10.1.2.3:25", "[fd00::1]:443"} {
		if err := g.Check(netip.MustParseAddrPort(ok)); err != nil {
			t.Errorf("Check(%s) with the prefix allowed = %v", ok, err)
		}
	}
	for _, bad := range []string{"127.0.0.1:25", "10.1.2.3:8080", "192.168.0.1:25"} {
		if err := g.Check(netip.MustParseAddrPort(bad)); err == nil {
			t.Errorf("Check(%s) allowed; only the listed prefixes and ports should be", bad)
		}
	}
}

// TestGuardedDialer: a guarded Dialer refuses before connecting, whatever
// the rules say, and its default socket dialer checks again at connect
// time (the listener below is never reached).
func TestGuardedDialer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// The address itself is refused.
	d := &Dialer{Guard: NewGuard()}
	if _, err := d.Dial(ctx, "mx.example", netip.MustParseAddr("127.0.0.1"), port); !errors.Is(err, ErrBlocked) {
		t.Errorf("dial 127.0.0.1:%d: %v, want ErrBlocked", port, err)
	}
	// A public address redirected to loopback by a rule: the Control
	// function sees the real socket address and refuses it.
	d.Rules = []Rule{{Host: "8.8.8.8", Port: 25, ToHost: "127.0.0.1", ToPort: port}}
	if _, err := d.Dial(ctx, "mx.example", netip.MustParseAddr("8.8.8.8"), 25); !errors.Is(err, ErrBlocked) {
		t.Errorf("dial 8.8.8.8:25 → 127.0.0.1:%d: %v, want ErrBlocked from Control", port, err)
	}
	// No address at all (a host rule) cannot be checked, so it is refused.
	d.Rules = []Rule{{Host: "mx.example", Port: 25, ToHost: "127.0.0.1", ToPort: port}}
	if _, err := d.Dial(ctx, "mx.example", netip.Addr{}, 25); !errors.Is(err, ErrBlocked) {
		t.Errorf("dial by host rule: %v, want ErrBlocked", err)
	}
	select {
	case <-accepted:
		t.Error("the listener accepted a connection the guard should have refused")
	default:
	}
	// The unguarded dialer still connects anywhere (the CLI's behaviour).
	c, err := (&Dialer{}).Dial(ctx, "mx.example", netip.MustParseAddr("127.0.0.1"), port)
	if err != nil {
		t.Fatalf("unguarded dial: %v", err)
	}
	c.Close()
}

func TestGuardControl(t *testing.T) {
	g := NewGuard()
	for addr, want := range map[string]bool{
		"8.8.8.8:25":                      true,
		"127.0.0.1:" + strconv.Itoa(25):   false,
		"example.com:25":                  false,
		"[2a00:1450:4001:80b::201a]:443":  true,
		"[2a00:1450:4001:80b::201a]:8443": false,
	} {
		err := g.Control("tcp4", addr, nil)
		if (err == nil) != want {
			t.Errorf("Control(%s) = %v, want allowed=%v", addr, err, want)
		}
	}
	if err := g.Control("udp4", "8.8.8.8:443", nil); err == nil {
		t.Error("Control allowed udp")
	}
}
