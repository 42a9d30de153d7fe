package lab

import (
	"io"
	"net/http"
	"net/netip"
	"sync"
	"testing"
)

// HookSink is a webhook receiver at a fake public address of the lab
// (HTTPS on port 443, a certificate of the lab's CA): it records every
// request and answers 204. Tests check the signatures of what it got
// (webhook.Verify) as a user's receiver would.
type HookSink struct {
	mu  sync.Mutex
	got []HookRequest
}

// HookRequest is one request the sink got.
type HookRequest struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// MustHookSink serves a HookSink at https://host/ (a new fake address,
// with an A record in the lab's DNS; in a lab whose HTTPS server listens
// on port 443, NewWellKnown, the server's own address, which needs no
// connect-to rule).
func (l *Lab) MustHookSink(t testing.TB, host string) *HookSink {
	t.Helper()
	s := &HookSink{}
	direct, _ := netip.ParseAddrPort(l.HTTPS.Addr())
	addr := direct.Addr()
	if direct.Port() != 443 {
		addr = l.NextAddr()
	}
	l.DNS.MustAdd(t, host+". 300 IN A "+addr.String())
	l.HTTPS.Host(host, l.CA.MustIssue(t, LeafOptions{DNSNames: []string{host}}), s)
	if direct.Port() == 443 {
		return s
	}
	if err := l.MapAddr(l.HTTPS.Addr(), addr, 443); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *HookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	s.got = append(s.got, HookRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Requests returns what the sink got so far, in order.
func (s *HookSink) Requests() []HookRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]HookRequest(nil), s.got...)
}
