package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Limits of the lab DNS server.
const (
	// maxChain caps how many CNAMEs the server follows for one query. A
	// longer chain, or a loop, is answered with the CNAMEs collected so far
	// and NOERROR, so that clients can exercise their own loop and depth
	// checks (RFC 1034 §3.6.2 asks resolvers to detect such chains).
	maxChain = 16

	// udpSizeNoEDNS is the largest UDP answer to a query without EDNS0
	// (RFC 1035 §4.2.1).
	udpSizeNoEDNS = 512

	// udpSizeAdvertised is the EDNS0 UDP payload size the server advertises
	// (the DNS Flag Day 2020 value).
	udpSizeAdvertised = 1232

	// listenAttempts is how often StartDNS tries to find a port that is free
	// for both UDP and TCP.
	listenAttempts = 10
)

// Query is one query received by the lab DNS server.
type Query struct {
	Name string // canonical: lower-case, fully qualified
	Type uint16
	Net  string // "udp" or "tcp"
	DO   bool   // the DNSSEC OK bit of the query's EDNS0 record
}

// DNS is a loopback DNS server that answers like a recursive resolver
// answering a stub: it sets RA, follows CNAMEs within its own data, and
// distinguishes NXDOMAIN from NODATA. Zone data and per-name controls may be
// changed while it runs; all methods are safe for concurrent use.
type DNS struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server
	wg   sync.WaitGroup // the two serve loops

	closeOnce sync.Once
	closed    chan struct{} // closed by Close; cuts latency sleeps short

	panics atomic.Int64

	mu       sync.RWMutex
	rrs      map[string]map[uint16][]dns.RR // owner → type → RRset
	owners   map[string]int                 // name → owners at or below it
	controls map[controlKey]control
	ad       map[string]bool // suffix → AD on/off
	latency  time.Duration
	queries  []Query
	negSOA   bool // negative answers carry the closest SOA (SetNegativeSOA)
}

type controlKey struct {
	name  string
	qtype uint16 // dns.TypeANY means every type
}

type control struct {
	rcode       int // -1: none
	drop        bool
	truncate    bool // UDP answers
	truncateTCP bool // TCP answers too
}

// StartDNS starts a DNS server on 127.0.0.1, UDP and TCP on the same
// ephemeral port. Call Close to stop it.
func StartDNS() (*DNS, error) {
	pc, ln, err := listenSamePort()
	if err != nil {
		return nil, err
	}
	return startDNS(pc, ln)
}

// StartDNSAt starts a DNS server listening on UDP and TCP at addr, a
// loopback "ip:port" with a non-zero port, such as "127.0.53.1:53" for
// clients that can only be pointed at port 53 (resolv.conf takes a bare
// IP). Other addresses are refused so that a lab never answers beyond the
// machine. Call Close to stop it.
func StartDNSAt(addr string) (*DNS, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("lab: dns address %q: %w", addr, err)
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return nil, fmt.Errorf("lab: dns address %q: not a loopback address", addr)
	}
	if ap.Port() == 0 {
		// UDP and TCP could get different ports; StartDNS handles that.
		return nil, fmt.Errorf("lab: dns address %q: port 0 (use StartDNS)", addr)
	}
	pc, err := net.ListenPacket("udp", ap.String())
	if err != nil {
		return nil, fmt.Errorf("lab: dns listen udp: %w", err)
	}
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("lab: dns listen tcp: %w", err)
	}
	return startDNS(pc, ln)
}

// udpReadBuffer is the receive buffer asked for the UDP socket: a burst of
// thousands of queries (a bulk scan) overflows the default one, and a
// dropped query costs the client a retry after its timeout. The kernel
// may grant less (net.core.rmem_max).
const udpReadBuffer = 4 << 20

// startDNS serves on pc and ln, which it owns from then on.
func startDNS(pc net.PacketConn, ln net.Listener) (*DNS, error) {
	if u, ok := pc.(*net.UDPConn); ok {
		_ = u.SetReadBuffer(udpReadBuffer) // best effort
	}
	d := &DNS{
		closed:   make(chan struct{}),
		rrs:      make(map[string]map[uint16][]dns.RR),
		owners:   make(map[string]int),
		controls: make(map[controlKey]control),
		ad:       make(map[string]bool),
	}
	d.addr = ln.Addr().String()
	h := dns.HandlerFunc(d.serveDNS)
	d.udp = &dns.Server{PacketConn: pc, Handler: h, UDPSize: dns.MaxMsgSize}
	d.tcp = &dns.Server{Listener: ln, Handler: h}
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		errc := make(chan error, 1)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			errc <- srv.ActivateAndServe()
		}()
		select {
		case <-started:
		case err := <-errc:
			d.Close()
			// A server that never started does not close its socket.
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("lab: start dns server: %w", err)
		}
	}
	return d, nil
}

// NewDNS is StartDNS for tests: it fails t on error and closes the server
// when the test ends.
func NewDNS(t testing.TB) *DNS {
	t.Helper()
	d, err := StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// NewDNSAt is StartDNSAt for tests: it fails t on error and closes the
// server when the test ends.
func NewDNSAt(t testing.TB, addr string) *DNS {
	t.Helper()
	d, err := StartDNSAt(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// listenSamePort opens UDP on 127.0.0.1:0 and then TCP on the same port,
// retrying with a new port when the TCP side is taken.
func listenSamePort() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range listenAttempts {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("lab: dns listen udp: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("lab: dns listen tcp on the udp port: %w", lastErr)
}

// Addr returns the server's address, "127.0.0.1:PORT" or the one given to
// StartDNSAt, for UDP and TCP.
func (d *DNS) Addr() string { return d.addr }

// NetResolver returns a pure-Go net.Resolver that sends every query to the
// lab server.
func (d *DNS) NetResolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, network, d.addr)
		},
	}
}

// Close stops the server and waits for its serve loops. It is safe to call
// more than once.
func (d *DNS) Close() {
	d.closeOnce.Do(func() {
		close(d.closed)
		for _, srv := range []*dns.Server{d.udp, d.tcp} {
			if srv != nil {
				_ = srv.Shutdown() // fails only if never started
			}
		}
		d.wg.Wait()
	})
}

// Panics returns how many handler panics were recovered. Tests should
// fail when it is not zero.
func (d *DNS) Panics() int { return int(d.panics.Load()) }

// canonical returns name lower-cased and fully qualified.
func canonical(name string) string {
	return dns.CanonicalName(name)
}

// Add parses zone-file lines ("example.test. 300 IN A 127.0.0.10") and
// adds the records. Each argument may hold several lines; relative names are
// taken relative to the root and a missing TTL defaults to 3600. On a parse
// error nothing is added.
func (d *DNS) Add(lines ...string) error {
	var rrs []dns.RR
	for _, text := range lines {
		zp := dns.NewZoneParser(strings.NewReader(text), ".", "")
		n := 0
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			rrs = append(rrs, rr)
			n++
		}
		if err := zp.Err(); err != nil {
			return fmt.Errorf("lab: dns add %q: %w", text, err)
		}
		if n == 0 {
			return fmt.Errorf("lab: dns add %q: no record", text)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, rr := range rrs {
		h := rr.Header()
		h.Name = canonical(h.Name)
		byType := d.rrs[h.Name]
		if byType == nil {
			byType = make(map[uint16][]dns.RR)
			d.rrs[h.Name] = byType
			d.countOwner(h.Name, 1)
		}
		set := byType[h.Rrtype]
		dup := false
		for _, old := range set {
			if dns.IsDuplicate(old, rr) {
				dup = true
				break
			}
		}
		if !dup {
			// Copy on write: answers being built hold the old slice.
			byType[h.Rrtype] = append(set[:len(set):len(set)], rr)
		}
	}
	return nil
}

// MustAdd is Add for tests: it fails t on a parse error.
func (d *DNS) MustAdd(t testing.TB, lines ...string) {
	t.Helper()
	if err := d.Add(lines...); err != nil {
		t.Fatal(err)
	}
}

// Remove deletes the RRset of type qtype at name.
func (d *DNS) Remove(name string, qtype uint16) {
	name = canonical(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	if byType := d.rrs[name]; byType != nil {
		delete(byType, qtype)
		if len(byType) == 0 {
			delete(d.rrs, name)
			d.countOwner(name, -1)
		}
	}
}

// RemoveName deletes every record at name (not below it).
func (d *DNS) RemoveName(name string) {
	name = canonical(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.rrs[name]; ok {
		delete(d.rrs, name)
		d.countOwner(name, -1)
	}
}

// countOwner adds delta to the owner count of name and of every ancestor,
// so that empty non-terminals exist. The caller holds d.mu.
func (d *DNS) countOwner(name string, delta int) {
	for s := name; ; s = parent(s) {
		d.owners[s] += delta
		if d.owners[s] <= 0 {
			delete(d.owners, s)
		}
		if s == "." {
			return
		}
	}
}

// parent returns the parent of a canonical name; the root's parent is the
// root.
func parent(name string) string {
	i, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[i:]
}

// SetRcode makes the server answer queries for (name, qtype) with rcode and
// no records; qtype dns.TypeANY means every type. The control also applies
// when name is reached through a CNAME, as a resolver would pass on a
// SERVFAIL for the target.
func (d *DNS) SetRcode(name string, qtype uint16, rcode int) {
	d.setControl(name, qtype, func(c *control) { c.rcode = rcode })
}

// Drop makes the server never answer queries for (name, qtype); qtype
// dns.TypeANY means every type. Clients time out.
func (d *DNS) Drop(name string, qtype uint16) {
	d.setControl(name, qtype, func(c *control) { c.drop = true })
}

// Truncate makes every UDP answer for (name, qtype) truncated (TC set, no
// records) whatever its size; TCP answers stay complete. qtype dns.TypeANY
// means every type.
func (d *DNS) Truncate(name string, qtype uint16) {
	d.setControl(name, qtype, func(c *control) { c.truncate = true })
}

// TruncateAlways makes every answer for (name, qtype) truncated (TC set,
// no records), over UDP and over TCP: a server that never gives the whole
// answer. qtype dns.TypeANY means every type.
func (d *DNS) TruncateAlways(name string, qtype uint16) {
	d.setControl(name, qtype, func(c *control) { c.truncate, c.truncateTCP = true, true })
}

// Clear removes the controls set for (name, qtype). It does not clear
// controls set with another qtype (dns.TypeANY is a key of its own here).
func (d *DNS) Clear(name string, qtype uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.controls, controlKey{canonical(name), qtype})
}

func (d *DNS) setControl(name string, qtype uint16, f func(*control)) {
	k := controlKey{canonical(name), qtype}
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.controls[k]
	if !ok {
		c = control{rcode: -1}
	}
	f(&c)
	d.controls[k] = c
}

// SetAD turns the AD bit on or off for answers about names equal to or
// below suffix ("." is every name). The most specific suffix wins; the
// default is off. An answer gets AD only when every name on its CNAME chain
// is covered, as a validating resolver sets AD only when all of the answer
// is secure (RFC 4035 §3.2.3).
func (d *DNS) SetAD(suffix string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ad[canonical(suffix)] = on
}

// SetLatency delays every answer by latency. Queries are answered
// concurrently, so two queries take about latency, not twice it.
func (d *DNS) SetLatency(latency time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.latency = latency
}

// Queries returns the queries received so far, oldest first.
func (d *DNS) Queries() []Query {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return append([]Query(nil), d.queries...)
}

// ResetQueries empties the query log.
func (d *DNS) ResetQueries() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries = nil
}

// serveDNS answers one query. miekg/dns calls it in a goroutine per UDP
// packet and per TCP connection.
func (d *DNS) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	defer func() {
		if r := recover(); r != nil {
			d.panics.Add(1)
		}
	}()
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	resp, truncate, drop := d.answer(req, network)
	if drop {
		return
	}
	if !d.sleep() {
		return
	}
	if network == "udp" {
		limit := udpSizeNoEDNS
		if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > limit {
			limit = int(opt.UDPSize())
		}
		truncate = truncate || resp.Len() > limit
	}
	if truncate {
		resp.Truncated = true
		resp.Answer, resp.Ns = nil, nil
		resp.Extra = onlyOPT(resp.Extra)
	}
	_ = w.WriteMsg(resp) // the client may be gone; nothing to do about it
}

// sleep waits for the configured latency; it reports false if the server
// was closed meanwhile.
func (d *DNS) sleep() bool {
	d.mu.RLock()
	latency := d.latency
	d.mu.RUnlock()
	if latency <= 0 {
		return true
	}
	t := time.NewTimer(latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.closed:
		return false
	}
}

// onlyOPT returns the OPT record of extra, if any, as a new slice.
func onlyOPT(extra []dns.RR) []dns.RR {
	var out []dns.RR
	for _, rr := range extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}

// answer builds the response to req, and reports whether the answer must
// be truncated (over network) and whether the query must be dropped. It
// logs the query.
func (d *DNS) answer(req *dns.Msg, network string) (resp *dns.Msg, truncate, drop bool) {
	resp = new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	resp.Compress = true
	opt := req.IsEdns0()
	if opt != nil {
		resp.SetEdns0(udpSizeAdvertised, opt.Do())
	}
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		resp.Rcode = dns.RcodeFormatError
		return resp, false, false
	}
	q := req.Question[0]
	qname := canonical(q.Name)

	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries = append(d.queries, Query{Name: qname, Type: q.Qtype, Net: network, DO: opt != nil && opt.Do()})

	c := d.controlFor(qname, q.Qtype)
	if c.drop {
		return resp, false, true
	}
	if c.rcode >= 0 {
		resp.Rcode = c.rcode
		return resp, false, false
	}
	res := d.resolve(qname, q.Qtype)
	resp.Rcode = res.rcode
	if res.forced {
		return resp, false, false
	}
	resp.Answer = res.answer
	// Records owned by the query name echo the question's spelling, as
	// resolvers do.
	for _, rr := range resp.Answer {
		if rr.Header().Name == qname {
			rr.Header().Name = q.Name
		}
	}
	ad := true
	for _, name := range res.names {
		ad = ad && d.adFor(name)
	}
	resp.AuthenticatedData = ad
	if d.negSOA && !hasType(res.answer, q.Qtype) {
		if soa := d.closestSOA(res.names[len(res.names)-1]); soa != nil {
			resp.Ns = []dns.RR{soa}
		}
	}
	return resp, c.truncate && network == "udp" || c.truncateTCP, false
}

// SetNegativeSOA makes NXDOMAIN and NODATA answers carry the SOA record of
// the closest enclosing zone (the nearest name at or above the name that
// has one) in the authority section, as real servers do so that resolvers
// can cache the absence (RFC 2308 §3).
func (d *DNS) SetNegativeSOA(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.negSOA = on
}

// closestSOA returns a copy of the SOA at name or its nearest ancestor, or
// nil. The caller holds d.mu.
func (d *DNS) closestSOA(name string) dns.RR {
	for s := name; ; s = parent(s) {
		if set := d.rrs[s][dns.TypeSOA]; len(set) > 0 {
			return dns.Copy(set[0])
		}
		if s == "." {
			return nil
		}
	}
}

func hasType(rrs []dns.RR, t uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == t {
			return true
		}
	}
	return false
}

// controlFor merges the controls for (name, qtype) and (name, ANY); the
// exact type's rcode wins. The caller holds d.mu.
func (d *DNS) controlFor(name string, qtype uint16) control {
	c := control{rcode: -1}
	for _, k := range []controlKey{{name, dns.TypeANY}, {name, qtype}} {
		x, ok := d.controls[k]
		if !ok {
			continue
		}
		c.drop = c.drop || x.drop
		c.truncate = c.truncate || x.truncate
		c.truncateTCP = c.truncateTCP || x.truncateTCP
		if x.rcode >= 0 {
			c.rcode = x.rcode
		}
	}
	return c
}

// adFor reports whether answers about name get AD. The caller holds d.mu.
func (d *DNS) adFor(name string) bool {
	for s := name; ; s = parent(s) {
		if on, ok := d.ad[s]; ok {
			return on
		}
		if s == "." {
			return false
		}
	}
}

type result struct {
	answer []dns.RR
	rcode  int
	names  []string // names visited, for AD
	forced bool     // rcode comes from a control: send no records
}

// resolve looks name up, following CNAMEs. The caller holds d.mu.
func (d *DNS) resolve(name string, qtype uint16) result {
	var res result // NOERROR
	seen := make(map[string]bool)
	for {
		res.names = append(res.names, name)
		if name != res.names[0] {
			if c := d.controlFor(name, qtype); c.rcode >= 0 {
				return result{rcode: c.rcode, forced: true}
			}
		}
		byType := d.lookup(name)
		if byType == nil {
			res.rcode = dns.RcodeNameError
			return res
		}
		if set := byType[qtype]; len(set) > 0 {
			res.answer = append(res.answer, copyRRs(set, name)...)
			return res
		}
		cname := byType[dns.TypeCNAME]
		if qtype == dns.TypeCNAME || len(cname) == 0 {
			return res // NODATA
		}
		res.answer = append(res.answer, copyRRs(cname[:1], name)...)
		seen[name] = true
		name = canonical(cname[0].(*dns.CNAME).Target)
		if seen[name] || len(seen) >= maxChain {
			return res
		}
	}
}

// copyRRs copies rrs and sets their owner to name (which differs from
// theirs when synthesised from a wildcard).
func copyRRs(rrs []dns.RR, name string) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
		out[i].Header().Name = name
	}
	return out
}

var noRecords = map[uint16][]dns.RR{}

// lookup returns the records at name, synthesised from a wildcard if name
// does not exist (RFC 4592 §3.3.1), an empty map for an existing name
// without records (an empty non-terminal), or nil if name does not exist.
// The caller holds d.mu.
func (d *DNS) lookup(name string) map[uint16][]dns.RR {
	if d.owners[name] > 0 {
		if byType, ok := d.rrs[name]; ok {
			return byType
		}
		return noRecords
	}
	// The closest encloser is the nearest existing ancestor; only a
	// wildcard directly below it applies.
	for s := parent(name); ; s = parent(s) {
		if d.owners[s] > 0 {
			src := "*." + s
			if s == "." {
				src = "*."
			}
			return d.rrs[src] // nil if there is no wildcard
		}
		if s == "." {
			return nil
		}
	}
}
