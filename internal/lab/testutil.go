package lab

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
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

// Shared returns the path of sub inside the project's shared folder
// (../shared next to the repository), whose files tests read at run time
// and never copy into the repository. Without it the test skips with a
// message; with CI set (non-empty) it fails instead.
func Shared(t testing.TB, sub string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("lab: go.mod not found above the test's directory")
		}
		dir = parent
	}
	p := filepath.Join(filepath.Dir(dir), "shared", sub)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("lab: %s is missing (CI is set, so this fails instead of skipping): %v", p, err)
		}
		t.Skipf("lab: %s is missing; this test reads it at run time: %v", p, err)
	}
	return p
}
