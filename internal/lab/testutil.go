package lab

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// LogBuffer collects what servers log from many goroutines (a
// bytes.Buffer is not safe for that). It may outlive the test: background
// jobs can still log a little after a server is closed.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// FreePorts returns n TCP ports on 127.0.0.1 that were free a moment ago,
// for a server that must be configured with its ports before it starts (a
// process started later, or an ACME CA that must know where to validate).
// Prefer listening on port 0 where the server allows it.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
