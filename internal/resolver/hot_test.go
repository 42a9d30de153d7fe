package resolver_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/resolver"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/socketmap"
	"github.com/mailtls/mailtls/internal/stscache"
)

// warmHandler is the socketmap handler with a.test (enforce) cached.
func warmHandler(tb testing.TB) (socketmap.Handler, socketmap.Request) {
	l := lab.New(tb)
	l.DNS.MustAdd(tb, `_mta-sts.a.test. 300 IN TXT "v=STSv1; id=1"`, "a.test. 300 IN MX 10 mx1.a.test.")
	l.MustPolicyHost(tb, "a.test", lab.PolicyHostOptions{Body: policy("enforce", "a.test", 86400)})
	cache, _ := stscache.Open(stscache.Options{})
	r := resolver.New(resolver.Options{
		DNS:     &resolve.Client{Servers: []string{l.DNS.Addr()}},
		Fetcher: &fetch.Fetcher{Dialer: &dial.Dialer{Net: l.Net()}, Roots: l.CA.Pool(), AcceptEncodings: []string{}},
		Cache:   cache,
		Metrics: resolver.NewMetrics(prometheus.NewRegistry(), func() float64 { return 0 }),
	})
	tb.Cleanup(r.Close)
	h := r.Handler(resolver.Zones{Default: sendpolicy.Zone{RequireSNI: true}})
	req := socketmap.Request{Name: "postfix", Key: "a.test"}
	if rep := h(context.Background(), req); rep.Status != socketmap.OK {
		tb.Fatalf("%v", rep)
	}
	return h, req
}

// TestWarmLookupAllocates nothing: a cached domain is answered without a
// heap allocation, so a busy Postfix does not drive the garbage collector
// (whose pauses would show in the tail latency).
func TestWarmLookupAllocatesNothing(t *testing.T) {
	h, req := warmHandler(t)
	var out []byte
	if n := testing.AllocsPerRun(1000, func() { out = h(context.Background(), req).Append(out[:0]) }); n != 0 {
		t.Errorf("a warm lookup allocates %.1f times", n)
	}
}

// BenchmarkWarmLookup is one socketmap lookup of a cached enforce domain,
// without the network: what the server does per request.
func BenchmarkWarmLookup(b *testing.B) {
	h, req := warmHandler(b)
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		out = h(context.Background(), req).Append(out[:0])
	}
}
