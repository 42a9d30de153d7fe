package lab_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
)

// recordingTB is a testing.TB that keeps the errors and cleanups of
// lab.New instead of acting on them.
type recordingTB struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (r *recordingTB) Helper()          {}
func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Fatal(args ...any) { r.TB.Fatal(args...) }

// TestLookupPanicFailsTheTest: resolve.Client.Lookup recovers a panic so
// that a server stays up, and counts it (the serve metric
// mailtls_dns_panics_total); a test during which one happens fails when
// its lab closes. Not parallel: another test's panic would be seen here.
func TestLookupPanicFailsTheTest(t *testing.T) {
	rec := &recordingTB{TB: t}
	lab.New(rec)
	before := resolve.Panics()
	c := &resolve.Client{Servers: []string{"127.0.0.1:53"}, Dial: func(context.Context, string, string) (net.Conn, error) {
		panic("a bug")
	}}
	if a := c.Lookup(context.Background(), "example.test", dns.TypeA); a.Status != resolve.StatusError {
		t.Errorf("answer %+v, want an error", a)
	}
	if got := resolve.Panics() - before; got != 1 {
		t.Errorf("%d panics counted, want 1", got)
	}
	for i := len(rec.cleanups) - 1; i >= 0; i-- {
		rec.cleanups[i]()
	}
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "Lookup recovered 1 panics") {
		t.Errorf("the test's errors %q, want the recovered panic", rec.errs)
	}
}
