package resolve

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// testServer is a loopback DNS server (UDP and TCP on one port) whose
// replies are programmed by a handler. It records every query it receives.
type testServer struct {
	Addr string // "127.0.0.1:port"

	handler dns.HandlerFunc
	mu      sync.Mutex
	queries []seenQuery
}

// seenQuery is one query as the server received it.
type seenQuery struct {
	Net string // "udp" or "tcp"
	Msg *dns.Msg
}

// startServer starts a testServer answering with h and stops it when the
// test ends.
func startServer(t *testing.T, h dns.HandlerFunc) *testServer {
	t.Helper()
	s := &testServer{handler: h}
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	// The UDP port may be taken on the TCP side; try a few ports.
	for range 10 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("listen tcp: %v", err)
	}
	s.Addr = pc.LocalAddr().String()

	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: l, Handler: s}
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ActivateAndServe()
		}()
		<-started
		t.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
	}
	return s
}

// ServeDNS records the query and hands it to the handler.
func (s *testServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	s.mu.Lock()
	s.queries = append(s.queries, seenQuery{Net: w.LocalAddr().Network(), Msg: r.Copy()})
	s.mu.Unlock()
	if s.handler != nil {
		s.handler(w, r)
	}
}

// Queries returns the queries received so far.
func (s *testServer) Queries() []seenQuery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenQuery(nil), s.queries...)
}

// mustRRs parses RRs in zone-file form.
func mustRRs(t *testing.T, rrs ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad test RR %q: %v", s, err)
		}
		out = append(out, rr)
	}
	return out
}

// reply builds a reply to r with rcode and answer RRs. It is safe to call
// from a handler (it does not touch testing.T).
func reply(r *dns.Msg, rcode int, answer []dns.RR) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(r, rcode)
	m.RecursionAvailable = true
	m.Answer = answer
	return m
}

// answerWith returns a handler that always replies with rcode and answer.
func answerWith(t *testing.T, rcode int, answer ...string) dns.HandlerFunc {
	t.Helper()
	rrs := mustRRs(t, answer...)
	return func(w dns.ResponseWriter, r *dns.Msg) {
		w.WriteMsg(reply(r, rcode, rrs))
	}
}

// zoneReply describes the reply for one question in a zoneHandler.
type zoneReply struct {
	rcode  int
	answer []string
}

// zoneHandler answers from a table keyed by "name TYPE" (name lower-case
// without trailing dot); questions not in the table get NXDOMAIN.
func zoneHandler(t *testing.T, zone map[string]zoneReply) dns.HandlerFunc {
	t.Helper()
	type parsed struct {
		rcode  int
		answer []dns.RR
	}
	table := make(map[string]parsed, len(zone))
	for k, zr := range zone {
		table[k] = parsed{zr.rcode, mustRRs(t, zr.answer...)}
	}
	return func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		key := strings.ToLower(strings.TrimSuffix(q.Name, ".")) + " " + dns.TypeToString[q.Qtype]
		p, ok := table[key]
		if !ok {
			p = parsed{rcode: dns.RcodeNameError}
		}
		w.WriteMsg(reply(r, p.rcode, p.answer))
	}
}

// silent never answers.
func silent(dns.ResponseWriter, *dns.Msg) {}
