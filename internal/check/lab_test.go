package check_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
)

// scanLab scans domain in the lab and evaluates it.
func scanLab(t *testing.T, l *lab.Lab, domain string) *check.Report {
	t.Helper()
	d := l.Dialer()
	s := &scan.Scanner{
		Resolver: &resolve.Client{Servers: []string{l.DNS.Addr()}, Timeout: 500 * time.Millisecond, Attempts: 2},
		Fetcher:  &fetch.Fetcher{Dialer: d, Roots: l.CA.Pool(), ConnectTimeout: time.Second, HandshakeTimeout: time.Second, ResponseTimeout: 2 * time.Second},
		Dialer:   d,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return check.Evaluate(s.Scan(ctx, domain), time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
}

func TestSmoke(t *testing.T) {
	l := lab.New(t)
	l.DNS.MustAdd(t, `_mta-sts.example.test. 300 IN TXT "v=STSv1; id=1"`,
		`example.test. 300 IN MX 10 mx1.example.test.`,
		`example.test. 300 IN MX 20 mx2.example.test.`,
		`mx1.example.test. 300 IN A 192.0.2.25`,
		`mx2.example.test. 300 IN A 192.0.2.26`)
	l.MustPolicyHost(t, "example.test", lab.PolicyHostOptions{Body: "version: STSv1\nmode: enforce\nmx: mx1.example.test\nmax_age: 86400\n"})
	r := scanLab(t, l, "example.test")
	report.WriteText(os.Stdout, r, report.TextOptions{})
}
