package resolve

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults for the zero fields of a [Client].
const (
	DefaultTimeout  = 2 * time.Second
	DefaultAttempts = 3
	DefaultUDPSize  = 1232 // EDNS0 buffer size recommended by DNS Flag Day 2020
	DefaultMaxCNAME = 8
)

// minUDPSize is the smallest EDNS0 buffer size; smaller values are treated as
// 512 (RFC 6891 §6.2.3).
const minUDPSize = 512

// maxMsgSize is the largest DNS message (two-octet length prefix on TCP,
// RFC 1035 §4.2.2); UDP reads use a buffer this big so that an oversize
// reply is not cut.
const maxMsgSize = 65535

// Client sends queries to recursive resolvers. The zero value is not usable:
// Servers must be set. A Client is safe for concurrent use if its fields are
// not changed while lookups run.
type Client struct {
	// Servers are the resolvers, "host:port" (IPv6 as "[::1]:53"). An entry
	// without a port gets port 53.
	Servers []string
	// Timeout bounds one exchange with one server; 0 means DefaultTimeout.
	// A TCP retry after a truncated UDP reply gets its own Timeout.
	Timeout time.Duration
	// Attempts is the total number of attempts for one query, rotating
	// through Servers; 0 means DefaultAttempts.
	Attempts int
	// UDPSize is the EDNS0 buffer size advertised; 0 means DefaultUDPSize.
	UDPSize uint16
	// MaxCNAME is the longest CNAME chain followed; 0 means DefaultMaxCNAME.
	MaxCNAME int
	// TrustAD reports whether the AD bit from server ("host:port" as in
	// Servers, port 53 added if missing) may be believed. nil trusts
	// loopback servers only ([IsLoopbackServer]); see the package comment
	// for why (RFC 7672 §2.1.1).
	TrustAD func(server string) bool
	// Dial, if set, replaces the network dialer (for tests). network is
	// "udp" or "tcp". nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// SystemServers returns the nameservers of a resolv.conf(5) file as
// "host:port" (path "" means /etc/resolv.conf). It fails if the file cannot
// be read or names no nameserver.
func SystemServers(path string) ([]string, error) {
	if path == "" {
		path = "/etc/resolv.conf"
	}
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("resolve: reading %s: %w", path, err)
	}
	if len(cfg.Servers) == 0 {
		return nil, fmt.Errorf("resolve: no nameserver in %s", path)
	}
	port := cfg.Port
	if port == "" {
		port = "53"
	}
	out := make([]string, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		out = append(out, net.JoinHostPort(s, port))
	}
	return out, nil
}

// IsLoopbackServer reports whether server ("host:port" or a bare address) is
// a loopback IP address (127.0.0.0/8 or ::1). Host names are not resolved
// and are never loopback. It is the default [Client.TrustAD].
func IsLoopbackServer(server string) bool {
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		host = strings.Trim(server, "[]")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.Unmap().IsLoopback()
}

// panics counts the panics Lookup recovered in this process.
var panics atomic.Int64

// Panics is the number of panics Lookup has recovered in this process.
// Each is a bug: a server exports the count as a metric, and the test lab
// fails the test in which one happens.
func Panics() int64 { return panics.Load() }

// Lookup asks for name and qtype and returns the evidence. It never returns
// nil and never panics (a panic inside is recovered, counted in Panics
// and reported as StatusError); failures are reported in Answer.Status
// and Answer.Error.
//
// name may have a trailing dot and any case. Invalid names (empty, an empty
// label, a label over 63 octets, over 253 characters, unescaped spaces or
// non-ASCII) give StatusError without sending anything.
//
// CNAMEs are followed (except for qtype CNAME): first inside the reply, by
// owner name, then by asking again for the target if the reply ends at an
// alias without data (the chain may cross zones). A loop or a chain longer
// than MaxCNAME gives StatusError. A chain ending in NXDOMAIN gives
// StatusNXDomain with the CNAMEs kept, so a report can name the dangling
// alias.
//
// Each query is tried up to Attempts times, attempt i going to
// Servers[i mod len(Servers)]. Timeouts, network errors, malformed replies and
// rcodes other than NOERROR and NXDOMAIN are retried. When every attempt
// fails, the status is that of the last attempt that got a reply from a
// server (SERVFAIL, REFUSED or another rcode), because a server's explicit
// verdict says more than silence; only when no server replied is it the last
// timeout or network error. If ctx is canceled the lookup stops at once with
// StatusError "canceled"; if its deadline passes, that counts as a timeout of
// the running attempt.
func (c *Client) Lookup(ctx context.Context, name string, qtype uint16) (a *Answer) {
	start := time.Now()
	a = &Answer{Name: displayName(name), Type: typeString(qtype)}
	defer func() {
		if p := recover(); p != nil {
			panics.Add(1)
			*a = Answer{Name: a.Name, Type: a.Type, Status: StatusError, Error: fmt.Sprintf("internal error: %v", p)}
		}
		a.Duration = time.Since(start)
		a.DurationMS = durationMS(a.Duration)
	}()
	if ctx == nil {
		ctx = context.Background()
	}
	qname, err := canonicalName(name)
	if err != nil {
		a.Status = StatusError
		a.Error = fmt.Sprintf("invalid name %q: %v", name, err)
		return a
	}
	a.Name = qname
	if c == nil || len(c.Servers) == 0 {
		a.Status = StatusError
		a.Error = "no DNS servers configured"
		return a
	}
	c.lookup(ctx, a, qtype)
	return a
}

// lookup fills a for the question (a.Name, qtype).
func (c *Client) lookup(ctx context.Context, a *Answer, qtype uint16) {
	maxCNAME := c.MaxCNAME
	if maxCNAME <= 0 {
		maxCNAME = DefaultMaxCNAME
	}
	seen := map[string]bool{a.Name: true}
	cur := a.Name
	ad, auth, validating := true, true, true
	for {
		res := c.query(ctx, cur, qtype)
		a.Server = res.server
		a.TCP = res.tcp
		if res.msg == nil {
			// No reply at all: nothing vouches for the outcome.
			a.Status, a.Error = res.status, res.detail
			a.Rcode, a.AD, a.Authenticated, a.Validating = "", false, false, false
			return
		}
		msg := res.msg
		ad = ad && msg.AuthenticatedData
		validating = validating && c.trustAD(res.server)
		auth = auth && msg.AuthenticatedData && validating
		a.AD, a.Authenticated, a.Validating = ad, auth, validating
		a.Rcode = rcodeString(msg.Rcode)
		if !res.final {
			a.Status, a.Error = res.status, res.detail
			return
		}

		asked := cur
		if qtype != dns.TypeCNAME {
			for len(recordsAt(msg.Answer, cur, qtype)) == 0 {
				cn := cnameAt(msg.Answer, cur)
				if cn == nil {
					break
				}
				if len(a.CNAMEs) >= maxCNAME {
					a.Status = StatusError
					a.Error = fmt.Sprintf("CNAME chain longer than %d at %s", maxCNAME, cur)
					return
				}
				rec := newRecord(cn)
				a.CNAMEs = append(a.CNAMEs, rec)
				next := ownerName(rec.Host)
				if seen[next] {
					a.Status = StatusError
					a.Error = "CNAME loop at " + next
					return
				}
				seen[next] = true
				cur = next
			}
		}

		if rrs := recordsAt(msg.Answer, cur, qtype); len(rrs) > 0 {
			a.Status = StatusOK
			for _, rr := range rrs {
				a.Records = append(a.Records, newRecord(rr))
			}
			return
		}
		if msg.Rcode == dns.RcodeNameError {
			// RFC 6604 §3: the rcode is about the last name of the chain.
			a.Status = StatusNXDomain
			a.NegativeTTL = negativeTTL(msg)
			return
		}
		if cur == asked {
			a.Status = StatusNoData
			a.NegativeTTL = negativeTTL(msg)
			return
		}
		// NOERROR, the chain in this reply ended at an alias target without
		// data: the server may not have followed it across zones. Ask again.
	}
}

// negativeTTL is the negative caching TTL of a reply without records: the
// smaller of the SOA record's own TTL and its MINIMUM field (RFC 2308 §5),
// or 0 when the authority section has no SOA.
func negativeTTL(m *dns.Msg) uint32 {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl)
		}
	}
	return 0
}

// recordsAt returns the RRs of type t owned by name (canonical form).
func recordsAt(rrs []dns.RR, name string, t uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype == t && h.Class == dns.ClassINET && ownerName(h.Name) == name {
			out = append(out, rr)
		}
	}
	return out
}

// cnameAt returns the first CNAME owned by name, or nil.
func cnameAt(rrs []dns.RR, name string) *dns.CNAME {
	for _, rr := range rrs {
		if cn, ok := rr.(*dns.CNAME); ok && cn.Hdr.Class == dns.ClassINET && ownerName(cn.Hdr.Name) == name {
			return cn
		}
	}
	return nil
}

func rcodeString(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

func (c *Client) trustAD(server string) bool {
	if c.TrustAD == nil {
		return IsLoopbackServer(server)
	}
	return c.TrustAD(server)
}

// result is the outcome of one query (all its attempts) or one attempt.
type result struct {
	msg    *dns.Msg // the reply; nil if none was received
	final  bool     // msg is NOERROR or NXDOMAIN: no retry
	server string
	tcp    bool
	status Status // for !final
	detail string // for !final
}

// query asks one question, retrying across servers, and returns the final
// reply or the most informative failure.
func (c *Client) query(ctx context.Context, qname string, qtype uint16) result {
	servers := c.Servers
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	var (
		best  result
		have  bool
		notes []string
	)
	for i := 0; i < attempts; i++ {
		server := normServer(servers[i%len(servers)])
		if ctx.Err() != nil {
			if !have {
				best = result{server: server}
				best.status, best.detail = classify(ctx, ctx.Err())
				notes = append(notes, best.detail)
			}
			break
		}
		r := c.attempt(ctx, server, qname, qtype)
		if r.final {
			return r
		}
		notes = append(notes, server+": "+r.detail)
		// Prefer a server's explicit verdict (an rcode) over silence.
		if !have || r.msg != nil || best.msg == nil {
			best, have = r, true
		}
		if ctx.Err() != nil {
			break
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// The caller gave up: that is the outcome, not a DNS verdict.
		return result{server: best.server, status: StatusError, detail: "canceled"}
	}
	best.detail = strings.Join(notes, "; ")
	return best
}

// normServer adds port 53 to a server without one.
func normServer(s string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), "53")
}

// attempt is one exchange with one server: UDP, then TCP if the UDP reply
// was truncated.
func (c *Client) attempt(ctx context.Context, server, qname string, qtype uint16) result {
	r := result{server: server}
	q := c.newQuery(qname, qtype)
	wire, err := q.Pack()
	if err != nil {
		r.status, r.detail = StatusError, "packing query: "+err.Error()
		return r
	}
	resp, truncated, err := c.exchange(ctx, "udp", server, q, wire)
	if err == nil && truncated {
		r.tcp = true
		resp, _, err = c.exchange(ctx, "tcp", server, q, wire)
	}
	if err != nil {
		r.status, r.detail = classify(ctx, err)
		if r.tcp {
			r.detail = "tcp after truncated udp reply: " + r.detail
		}
		return r
	}
	r.msg = resp
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		if len(resp.Answer) == 0 && !resp.RecursionAvailable && !resp.Authoritative {
			// Neither a recursive answer nor the zone's own: a referral
			// (RFC 1034 §4.3.1) or a lame server. Its empty answer says
			// nothing about the name.
			r.status, r.detail = StatusError, "the server neither recursed (RA) nor answered for the zone (AA): a referral is not an answer"
			return r
		}
		r.final = true
	case dns.RcodeServerFailure:
		r.status, r.detail = StatusServFail, "SERVFAIL"
	case dns.RcodeRefused:
		r.status, r.detail = StatusRefused, "REFUSED"
	default:
		r.status, r.detail = StatusError, "rcode "+rcodeString(resp.Rcode)
	}
	return r
}

// newQuery builds the query: random ID, RD set, CD clear, EDNS0 with the DO
// bit so that a validating resolver reports the AD bit.
func (c *Client) newQuery(qname string, qtype uint16) *dns.Msg {
	size := c.UDPSize
	if size == 0 {
		size = DefaultUDPSize
	}
	if size < minUDPSize {
		size = minUDPSize
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(qname), qtype) // random ID (dns.Id), RD set
	q.RecursionDesired = true
	q.CheckingDisabled = false
	q.SetEdns0(size, true)
	return q
}

// malformedError is a reply that could not be used.
type malformedError struct{ reason string }

func (e *malformedError) Error() string { return "malformed reply: " + e.reason }

// incompleteError is a reply that may lack records: it cannot say that
// something is absent, nor give a whole RRset.
type incompleteError struct{ reason string }

func (e *incompleteError) Error() string { return "incomplete reply: " + e.reason }

// classify maps an exchange error to a status and a description.
func classify(ctx context.Context, err error) (Status, string) {
	if errors.Is(ctx.Err(), context.Canceled) {
		return StatusError, "canceled"
	}
	var me *malformedError
	if errors.As(err, &me) {
		return StatusError, me.Error()
	}
	var ie *incompleteError
	if errors.As(err, &ie) {
		return StatusError, ie.Error()
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return StatusTimeout, "timeout (context deadline)"
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return StatusTimeout, "timeout"
	}
	return StatusError, err.Error()
}

// exchange sends wire over network to server and reads the reply to q, all
// within one Timeout. It reports whether the reply was truncated (TC). The
// connection is closed and every helper goroutine finished when it returns.
func (c *Client) exchange(ctx context.Context, network, server string, q *dns.Msg, wire []byte) (*dns.Msg, bool, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	dial := c.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, network, server)
	if err != nil {
		return nil, false, err
	}
	if conn == nil {
		return nil, false, errors.New("dialer returned no connection")
	}
	// The deadline covers the per-attempt timeout and the ctx deadline; the
	// AfterFunc unblocks I/O at once when ctx is canceled.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
		conn.Close()
	}()

	if network == "tcp" {
		resp, err := exchangeTCP(conn, q, wire)
		return resp, false, err
	}
	return exchangeUDP(conn, q, wire)
}

// exchangeUDP sends one datagram and reads until a reply matching q arrives
// or the deadline passes. Replies that do not parse or do not match the
// query (ID, question) are discarded, not believed: they may be forged or
// stale. If only such replies arrived, that is reported instead of a timeout.
func exchangeUDP(conn net.Conn, q *dns.Msg, wire []byte) (*dns.Msg, bool, error) {
	if _, err := conn.Write(wire); err != nil {
		return nil, false, err
	}
	var discarded error
	for {
		b, err := readDatagram(conn)
		if err != nil {
			if discarded != nil {
				return nil, false, discarded
			}
			return nil, false, err
		}
		resp, truncated, err := parseReply(q, b)
		if err != nil {
			discarded = err
			continue
		}
		return resp, truncated, nil
	}
}

// readMax reads one datagram into a buffer of the largest DNS message, so
// that an oversize reply is not cut.
func readMax(conn net.Conn) ([]byte, error) {
	buf := make([]byte, maxMsgSize)
	n, err := conn.Read(buf)
	return buf[:n], err
}

// exchangeTCP sends the query with its two-octet length prefix and reads one
// reply (RFC 1035 §4.2.2). On a stream a wrong reply is fatal.
func exchangeTCP(conn net.Conn, q *dns.Msg, wire []byte) (*dns.Msg, error) {
	out := make([]byte, 2+len(wire))
	binary.BigEndian.PutUint16(out, uint16(len(wire)))
	copy(out[2:], wire)
	if _, err := conn.Write(out); err != nil {
		return nil, err
	}
	var lenBuf [2]byte
	if _, err := io.ReadFull(conn, lenBuf[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(lenBuf[:]))
	if n < headerLen {
		return nil, &malformedError{fmt.Sprintf("tcp message of %d octets", n)}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, err
	}
	resp, truncated, err := parseReply(q, buf)
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, &malformedError{"unparsable truncated reply over tcp"}
	}
	if truncated {
		// TCP is the last resort for a truncated answer (RFC 7766 §6.2.1):
		// what is left may be missing records, so it proves nothing.
		return nil, &incompleteError{"reply truncated (TC set) over tcp"}
	}
	return resp, nil
}

const headerLen = 12 // DNS header octets (RFC 1035 §4.1.1)

// parseReply unpacks b and checks it answers q. A reply with the TC bit that
// does not parse (cut mid-record) is reported as truncated with a nil
// message, since it will be asked again over TCP.
//
// miekg/dns accepts a message that ends before the records its header
// announces (RFC 1035 §4.1.1), keeping what is there; a NOERROR or
// NXDOMAIN reply cut like that would read as NODATA or as part of an
// RRset. Such a reply is truncated when it says so (TC) and incomplete
// otherwise; it is never believed.
func parseReply(q *dns.Msg, b []byte) (*dns.Msg, bool, error) {
	resp := new(dns.Msg)
	if err := resp.Unpack(b); err != nil {
		if len(b) >= headerLen && binary.BigEndian.Uint16(b) == q.Id && b[2]&0x80 != 0 && b[2]&0x02 != 0 {
			return nil, true, nil
		}
		return nil, false, &malformedError{err.Error()}
	}
	final := resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError
	if final && resp.Response && resp.Id == q.Id {
		if missing := missingRecords(resp, b); missing != "" {
			if resp.Truncated {
				return nil, true, nil
			}
			return nil, false, &incompleteError{missing}
		}
	}
	if err := matchReply(q, resp); err != nil {
		return nil, false, err
	}
	return resp, resp.Truncated, nil
}

// missingRecords compares the section counts of the header b starts with
// to what was unpacked into m; it describes the shortfall, or returns "".
func missingRecords(m *dns.Msg, b []byte) string {
	counts := [4]int{}
	for i := range counts {
		counts[i] = int(binary.BigEndian.Uint16(b[4+2*i:]))
	}
	got := [4]int{len(m.Question), len(m.Answer), len(m.Ns), len(m.Extra)}
	names := [4]string{"questions", "answer records", "authority records", "additional records"}
	for i := range counts {
		if got[i] < counts[i] {
			return fmt.Sprintf("the reply announces %d %s but holds %d", counts[i], names[i], got[i])
		}
	}
	return ""
}

// matchReply checks that resp is a reply to q: QR set, same ID, opcode and
// question. Some servers leave the question out of error replies (REFUSED,
// SERVFAIL, ...) and of truncated ones; that is accepted, never for NOERROR
// or NXDOMAIN.
func matchReply(q, resp *dns.Msg) error {
	if !resp.Response {
		return &malformedError{"QR bit not set"}
	}
	if resp.Id != q.Id {
		return &malformedError{fmt.Sprintf("reply ID %d does not match query ID %d", resp.Id, q.Id)}
	}
	if resp.Opcode != q.Opcode {
		return &malformedError{fmt.Sprintf("reply opcode %d does not match query", resp.Opcode)}
	}
	if len(resp.Question) == 0 && (resp.Truncated || (resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError)) {
		return nil
	}
	if len(resp.Question) != 1 {
		return &malformedError{fmt.Sprintf("reply has %d questions", len(resp.Question))}
	}
	got, want := resp.Question[0], q.Question[0]
	if !strings.EqualFold(got.Name, want.Name) || got.Qtype != want.Qtype || got.Qclass != want.Qclass {
		return &malformedError{fmt.Sprintf("reply question %s %s does not match query", got.Name, typeString(got.Qtype))}
	}
	return nil
}
