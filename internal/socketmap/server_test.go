package socketmap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo answers "OK <name>:<key>", NOTFOUND for "missing", sleeps for
// "slow", and panics for "boom".
func echo(ctx context.Context, req Request) Reply {
	switch req.Key {
	case "missing":
		return Reply{Status: NotFound}
	case "slow":
		time.Sleep(100 * time.Millisecond)
	case "boom":
		panic("boom")
	}
	return Reply{Status: OK, Data: req.Name + ":" + req.Key}
}

func startServer(t *testing.T, s *Server) string {
	t.Helper()
	if s.Handler == nil {
		s.Handler = echo
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return l.Addr().String()
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// readAll reads replies until the server closes the connection.
func readAll(t *testing.T, c net.Conn) ([]Reply, error) {
	t.Helper()
	r := NewReader(bufio.NewReader(c), MaxReply)
	var out []Reply
	for {
		p, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, ParseReply(string(p)))
	}
}

func TestPipelinedRepliesInOrder(t *testing.T) {
	addr := startServer(t, &Server{})
	c := dialRaw(t, addr)
	var req []byte
	keys := []string{"a.test", "slow", "missing", "b.test", "boom", "c.test"}
	for _, k := range keys {
		req = AppendNetstring(req, "postfix "+k)
	}
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := readAll(t, c)
	if err != io.EOF {
		t.Fatalf("connection should end cleanly, got %v", err)
	}
	want := []string{"OK postfix:a.test", "OK postfix:slow", "NOTFOUND ", "OK postfix:b.test", "TEMP internal error", "OK postfix:c.test"}
	if len(got) != len(want) {
		t.Fatalf("got %d replies %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("reply %d: %q, want %q", i, got[i], want[i])
		}
	}
}

func TestMalformedClosesAfterEarlierReplies(t *testing.T) {
	for name, bad := range map[string]string{
		"bad terminator":   "3:abc;",
		"non-digit length": "x:abc,",
		"oversized":        "1025:" + strings.Repeat("a", 1025) + ",",
		"huge length":      "99999999999:",
	} {
		t.Run(name, func(t *testing.T) {
			var malformed atomic.Int32
			addr := startServer(t, &Server{Events: Events{Malformed: func(error) { malformed.Add(1) }}})
			c := dialRaw(t, addr)
			req := AppendNetstring(nil, "postfix first.test")
			req = append(req, bad...)
			req = AppendNetstring(req, "postfix never.test")
			c.Write(req)
			got, err := readAll(t, c)
			if err != io.EOF {
				t.Errorf("want a clean close, got %v", err)
			}
			if len(got) != 1 || got[0].String() != "OK postfix:first.test" {
				t.Errorf("want only the reply before the bad netstring, got %v", got)
			}
			if malformed.Load() != 1 {
				t.Errorf("malformed counted %d times", malformed.Load())
			}
		})
	}
}

func TestSlowClientTimesOut(t *testing.T) {
	addr := startServer(t, &Server{ReadTimeout: 200 * time.Millisecond, IdleTimeout: time.Hour})
	c := dialRaw(t, addr)
	c.Write([]byte("20:postfix exa")) // and then nothing
	start := time.Now()
	got, err := readAll(t, c)
	if err != io.EOF || len(got) != 0 {
		t.Fatalf("want the connection closed without a reply, got %v %v", got, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v; the read timeout is 200ms", d)
	}
}

func TestIdleTimeout(t *testing.T) {
	addr := startServer(t, &Server{IdleTimeout: 200 * time.Millisecond})
	c := dialRaw(t, addr)
	cl := NewClient(c)
	if rep, err := cl.Query(context.Background(), "postfix", "a.test"); err != nil || rep.Status != OK {
		t.Fatalf("first query: %v %v", rep, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := cl.Receive(); err != io.EOF {
		t.Errorf("an idle connection should be closed, got %v", err)
	}
}

func TestConnectionLimits(t *testing.T) {
	var rejected sync.Map
	s := &Server{MaxConns: 3, Events: Events{Rejected: func(why string) { rejected.Store(why, true) }}}
	addr := startServer(t, s)
	var open []*Client
	for range 3 {
		cl := NewClient(dialRaw(t, addr))
		if _, err := cl.Query(context.Background(), "postfix", "x.test"); err != nil {
			t.Fatal(err)
		}
		open = append(open, cl)
	}
	extra := NewClient(dialRaw(t, addr))
	if _, err := extra.Query(context.Background(), "postfix", "x.test"); err == nil {
		t.Fatal("a fourth connection over MaxConns=3 was served")
	}
	if _, ok := rejected.Load("max_conns"); !ok {
		t.Error("the rejection was not counted")
	}
	open[0].Close()
	waitFor(t, func() bool { return s.Conns() == 2 })
	again := NewClient(dialRaw(t, addr))
	if _, err := again.Query(context.Background(), "postfix", "x.test"); err != nil {
		t.Errorf("after one closed, a new connection must be served: %v", err)
	}

	perIP := &Server{MaxConnsIP: 1}
	addr = startServer(t, perIP)
	first := NewClient(dialRaw(t, addr))
	if _, err := first.Query(context.Background(), "postfix", "x.test"); err != nil {
		t.Fatal(err)
	}
	second := NewClient(dialRaw(t, addr))
	if _, err := second.Query(context.Background(), "postfix", "x.test"); err == nil {
		t.Error("a second connection from one IP over MaxConnsIP=1 was served")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 10s")
}

func TestManyConnections(t *testing.T) {
	addr := startServer(t, &Server{})
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			cl, err := Dial(context.Background(), addr)
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			for j := range 20 {
				key := fmt.Sprintf("d%d-%d.test", i, j)
				rep, err := cl.Query(context.Background(), "postfix", key)
				if err != nil || rep.Data != "postfix:"+key {
					errs <- fmt.Errorf("%s: %v %v", key, rep, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestShutdownFinishesTheRequestInFlight(t *testing.T) {
	started := make(chan struct{}, 1)
	s := &Server{Handler: func(ctx context.Context, req Request) Reply {
		if req.Key == "slow" {
			started <- struct{}{}
		}
		return echo(ctx, req)
	}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	busy := NewClient(dialRaw(t, l.Addr().String()))
	idle := NewClient(dialRaw(t, l.Addr().String()))
	if _, err := idle.Query(context.Background(), "postfix", "x.test"); err != nil {
		t.Fatal(err)
	}
	busy.Send(Request{Name: "postfix", Key: "slow"})
	<-started // the slow request is being handled
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if rep, err := busy.Receive(); err != nil || rep.Status != OK {
		t.Errorf("the request in flight must be answered, got %v %v", rep, err)
	}
	if _, err := idle.Receive(); err != io.EOF {
		t.Errorf("an idle connection must be closed, got %v", err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}
