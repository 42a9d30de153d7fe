package resolve

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// deliberatePanics are the panics tests cause on purpose.
var deliberatePanics atomic.Int64

// TestMain fails the package when Lookup recovered a panic that no test
// caused on purpose: the recovery keeps a server up, but each one is a bug.
func TestMain(m *testing.M) {
	code := m.Run()
	if n := Panics() - deliberatePanics.Load(); n != 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "resolve: Lookup recovered %d panics during the tests\n", n)
		code = 1
	}
	os.Exit(code)
}

// TestLookupPanicIsCounted: a panic inside a lookup is an error answer,
// and counted.
func TestLookupPanicIsCounted(t *testing.T) {
	before := Panics()
	deliberatePanics.Add(1)
	c := &Client{Servers: []string{"127.0.0.1:53"}, Dial: func(context.Context, string, string) (net.Conn, error) {
		panic("a bug")
	}}
	a := c.Lookup(context.Background(), "example.com", dns.TypeA)
	if a.Status != StatusError || !strings.Contains(a.Error, "internal error: a bug") {
		t.Errorf("answer %+v", a)
	}
	if got := Panics() - before; got != 1 {
		t.Errorf("%d panics counted, want 1", got)
	}
}
