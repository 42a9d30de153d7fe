package lab

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/resolve"
)

// firstFakeAddr is the first address NextAddr hands out; 127.0.0.1 to
// 127.0.0.9 are left alone for real listeners.
var firstFakeAddr = netip.AddrFrom4([4]byte{127, 0, 0, 10})

// lastFakeAddr is the last address NextAddr hands out.
var lastFakeAddr = netip.AddrFrom4([4]byte{127, 255, 255, 254})

// Lab is a hermetic stand-in for the internet: a DNS server, two CAs (one
// trusted, one not) and a shared virtual-host HTTPS server, plus connect-to
// rules that make fake public addresses reach the lab's listeners. A Lab is
// safe for concurrent use.
type Lab struct {
	DNS       *DNS
	CA        *CA // the CA clients are told to trust
	Untrusted *CA // a CA no client trusts
	HTTPS     *HTTPS

	closeOnce sync.Once

	mu     sync.Mutex
	closed bool
	rules  []dial.Rule
	next   netip.Addr    // the next address NextAddr returns
	smtp   []*SMTPServer // the MX servers, closed with the lab
	// closedPort refuses every connection (RefusedAddr); 0 until needed.
	closedPort    int
	releaseClosed func()
}

// Start starts a lab. Call Close to stop it.
func Start() (*Lab, error) {
	l := &Lab{next: firstFakeAddr}
	var err error
	if l.CA, err = NewCA("mailtls lab"); err != nil {
		return nil, err
	}
	if l.Untrusted, err = NewCA("mailtls untrusted"); err != nil {
		return nil, err
	}
	if l.DNS, err = StartDNS(); err != nil {
		return nil, err
	}
	if l.HTTPS, err = StartHTTPS(""); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// StartAt starts a lab whose DNS server listens on dnsAddr and whose HTTPS
// server listens on httpsAddr, both loopback "ip:port", for clients that
// cannot be given ports or dial rules (a resolver that reads resolv.conf,
// an HTTPS client that connects to port 443). When httpsAddr has port 443,
// PolicyHost publishes its IP address itself, needing no connect-to rule.
func StartAt(dnsAddr, httpsAddr string) (*Lab, error) {
	l := &Lab{next: firstFakeAddr}
	var err error
	if l.CA, err = NewCA("mailtls lab"); err != nil {
		return nil, err
	}
	if l.Untrusted, err = NewCA("mailtls untrusted"); err != nil {
		return nil, err
	}
	if l.DNS, err = StartDNSAt(dnsAddr); err != nil {
		return nil, err
	}
	if l.HTTPS, err = StartHTTPS(httpsAddr); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// New is Start for tests: it fails t on error, and when the test ends it
// closes the lab and fails t if a lab server (DNS, SMTP) or resolve.Lookup
// recovered a panic.
func New(t testing.TB) *Lab {
	t.Helper()
	l, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	dnsPanics := resolve.Panics()
	t.Cleanup(func() {
		l.Close()
		// resolve.Lookup recovers panics so that a server stays up; in a
		// test each is a bug. (Tests running in parallel may see another's.)
		if n := resolve.Panics() - dnsPanics; n > 0 {
			t.Errorf("resolve: Lookup recovered %d panics during the test", n)
		}
		if n := l.DNS.Panics(); n > 0 {
			t.Errorf("lab: dns handler panicked %d times", n)
		}
		for _, s := range l.smtpServers() {
			if n := s.Panics(); n > 0 {
				t.Errorf("lab: smtp server %s panicked %d times", s.Addr(), n)
			}
		}
	})
	return l
}

func (l *Lab) smtpServers() []*SMTPServer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*SMTPServer(nil), l.smtp...)
}

// Close stops every server of the lab. It is safe to call more than once.
func (l *Lab) Close() {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		for _, s := range l.smtpServers() {
			s.Close()
		}
		if l.HTTPS != nil {
			l.HTTPS.Close()
		}
		if l.DNS != nil {
			l.DNS.Close()
		}
		l.mu.Lock()
		if l.releaseClosed != nil {
			l.releaseClosed()
		}
		l.mu.Unlock()
	})
}

// RefusedAddr allocates a fake address whose port refuses connections: a
// connect-to rule sends fake:port to a loopback port the lab holds without
// listening, which the kernel answers with a reset. Unlike a real address
// (127.0.0.2:443, say), nothing on the machine can be listening there.
func (l *Lab) RefusedAddr(port int) (netip.Addr, error) {
	l.mu.Lock()
	if l.closedPort == 0 {
		p, release, err := reserveClosedPort()
		if err != nil {
			l.mu.Unlock()
			return netip.Addr{}, err
		}
		l.closedPort, l.releaseClosed = p, release
	}
	closed := l.closedPort
	l.mu.Unlock()
	addr := l.NextAddr()
	if !addr.IsValid() {
		return netip.Addr{}, errors.New("lab: refused address: out of fake addresses")
	}
	if err := l.MapAddr(fmt.Sprintf("127.0.0.1:%d", closed), addr, port); err != nil {
		return netip.Addr{}, err
	}
	return addr, nil
}

// MustRefusedAddr is RefusedAddr for tests: it fails t on error.
func (l *Lab) MustRefusedAddr(t testing.TB, port int) netip.Addr {
	t.Helper()
	addr, err := l.RefusedAddr(port)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// NextAddr allocates a fake address for a host: 127.0.0.10, 127.0.0.11, …
// Nothing listens on it; MapAddr sends connections to it to a lab
// listener. After 127.255.255.254 it returns the zero Addr.
func (l *Lab) NextAddr() netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.next
	if !a.IsValid() {
		return netip.Addr{}
	}
	if a == lastFakeAddr {
		l.next = netip.Addr{}
	} else {
		l.next = a.Next()
	}
	return a
}

// NextAddr6 returns ::1, the only IPv6 loopback address: a lab has one
// IPv6 address, so MapAddr can map each port of it only once. Map ::1:443
// to the shared HTTPS server, which tells hosts apart by SNI.
func (l *Lab) NextAddr6() netip.Addr {
	return netip.IPv6Loopback()
}

// MapAddr adds a connect-to rule sending connections for fake:port to
// listener ("127.0.0.1:PORT" or "[::1]:PORT"). A rule for the same fake
// address and port is replaced.
func (l *Lab) MapAddr(listener string, fake netip.Addr, port int) error {
	r, err := mapRule(listener, fake, port)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if i := l.ruleIndexLocked(r.Host, r.Port); i >= 0 {
		l.rules[i] = r
		return nil
	}
	l.rules = append(l.rules, r)
	return nil
}

// mapRule makes the rule MapAddr adds.
func mapRule(listener string, fake netip.Addr, port int) (dial.Rule, error) {
	host, p, err := net.SplitHostPort(listener)
	if err != nil {
		return dial.Rule{}, fmt.Errorf("lab: map %s:%d: listener: %w", fake, port, err)
	}
	toPort, err := strconv.Atoi(p)
	if err != nil || toPort < 1 || toPort > 65535 {
		return dial.Rule{}, fmt.Errorf("lab: map %s:%d: listener %q: bad port", fake, port, listener)
	}
	if !fake.IsValid() {
		return dial.Rule{}, errors.New("lab: map: invalid fake address")
	}
	if port < 1 || port > 65535 {
		return dial.Rule{}, fmt.Errorf("lab: map %s: bad port %d", fake, port)
	}
	return dial.Rule{Host: fake.Unmap().String(), Port: port, ToHost: host, ToPort: toPort}, nil
}

// ruleIndexLocked returns the index of the rule for host:port, or -1. The
// caller holds l.mu.
func (l *Lab) ruleIndexLocked(host string, port int) int {
	for i, r := range l.rules {
		if r.Host == host && r.Port == port {
			return i
		}
	}
	return -1
}

// Rules returns a copy of the lab's connect-to rules.
func (l *Lab) Rules() []dial.Rule {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]dial.Rule(nil), l.rules...)
}

// Dialer returns a dialer applying the lab's current rules; it dials for
// real. Rules added later need a new Dialer.
func (l *Lab) Dialer() *dial.Dialer {
	return &dial.Dialer{Rules: l.Rules()}
}

// Net returns a dial function that applies the lab's rules as they are
// when it dials (rules added later count) and then dials for real. It is
// for a dial.Dialer that must see the fake addresses themselves, such as
// one with a dial.Guard: the guard checks the fake address, Net reaches
// the listener behind it.
func (l *Lab) Net() dial.NetDial {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if ap, err := netip.ParseAddrPort(address); err == nil {
			address = (&dial.Dialer{Rules: l.Rules()}).Target("", ap.Addr(), int(ap.Port()))
		}
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
}

// ConnectToFlags returns the rules as --connect-to flag values.
func (l *Lab) ConnectToFlags() []string {
	rules := l.Rules()
	flags := make([]string, len(rules))
	for i, r := range rules {
		flags[i] = r.String()
	}
	return flags
}

// SlowNet returns a dial function that waits latency (or until ctx is done)
// before each connection, to emulate a distant server.
func (l *Lab) SlowNet(latency time.Duration) dial.NetDial {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		t := time.NewTimer(latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
}

// PolicyHostOptions configures Lab.PolicyHost.
type PolicyHostOptions struct {
	// Body is the policy served (200, text/plain) at every path when
	// Handler is nil.
	Body string
	// Handler, if set, serves every request instead of Body.
	Handler http.Handler
	// Cert is the server certificate; if it is the zero value a good one
	// for mta-sts.<domain> is issued by the lab CA.
	Cert tls.Certificate
	// TLS bounds the TLS versions offered.
	TLS HostOptions
}

// PolicyHost sets up the MTA-STS policy host of domain (RFC 8461 §3.3): it
// allocates an address, publishes "mta-sts.<domain>. 300 IN A <addr>",
// serves the host on the lab's HTTPS server and maps <addr>:443 to it. It
// returns the address.
func (l *Lab) PolicyHost(domain string, o PolicyHostOptions) (netip.Addr, error) {
	host := "mta-sts." + strings.TrimSuffix(strings.ToLower(domain), ".")
	direct, _ := netip.ParseAddrPort(l.HTTPS.Addr())
	addr := direct.Addr()
	if direct.Port() != 443 {
		addr = l.NextAddr()
	}
	if !addr.IsValid() {
		return netip.Addr{}, errors.New("lab: policy host: out of fake addresses")
	}
	if err := l.DNS.Add(fmt.Sprintf("%s. 300 IN A %s", host, addr)); err != nil {
		return netip.Addr{}, fmt.Errorf("lab: policy host %s: %w", host, err)
	}
	cert := o.Cert
	if len(cert.Certificate) == 0 {
		var err error
		if cert, err = l.CA.Issue(LeafOptions{DNSNames: []string{host}}); err != nil {
			return netip.Addr{}, fmt.Errorf("lab: policy host %s: %w", host, err)
		}
	}
	h := o.Handler
	if h == nil {
		h = Static(http.StatusOK, "text/plain", o.Body)
	}
	l.HTTPS.HostWith(host, cert, h, o.TLS)
	if direct.Port() == 443 {
		return addr, nil // the listener itself: no rule needed
	}
	if err := l.MapAddr(l.HTTPS.Addr(), addr, 443); err != nil {
		return netip.Addr{}, err
	}
	return addr, nil
}

// MustPolicyHost is PolicyHost for tests: it fails t on error.
func (l *Lab) MustPolicyHost(t testing.TB, domain string, o PolicyHostOptions) netip.Addr {
	t.Helper()
	addr, err := l.PolicyHost(domain, o)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
