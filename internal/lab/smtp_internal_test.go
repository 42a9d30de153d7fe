package lab

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestSMTPPanicIsRecovered(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	s, err := startSMTP(SMTPOptions{Mode: SMTPNoStartTLS}, nil, func() {
		if calls.Add(1) == 1 {
			panic("lab test panic")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 2 {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, _ := c.Read(buf) // EOF after the panic, the banner after that
		c.Close()
		t.Logf("read %q", buf[:n])
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Panics(); got != 1 {
		t.Errorf("Panics() = %d, want 1", got)
	}
	if got := len(s.Sessions()); got != 2 {
		t.Errorf("%d sessions, want 2: the server goes on after a panic", got)
	}
}
