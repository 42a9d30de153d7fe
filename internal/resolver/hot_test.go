package resolver_test

import (
	"context"
	"testing"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/resolver"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/socketmap"
	"github.com/mailtls/mailtls/internal/stscache"
)

// BenchmarkWarmLookup is one socketmap lookup of a cached enforce domain,
// without the network: what the server does per request.
func BenchmarkWarmLookup(b *testing.B) {
	l := lab.New(b)
	l.DNS.MustAdd(b, `_mta-sts.a.test. 300 IN TXT "v=STSv1; id=1"`, "a.test. 300 IN MX 10 mx1.a.test.")
	l.MustPolicyHost(b, "a.test", lab.PolicyHostOptions{Body: policy("enforce", "a.test", 86400)})
	cache, _ := stscache.Open(stscache.Options{})
	r := resolver.New(resolver.Options{
		DNS:     &resolve.Client{Servers: []string{l.DNS.Addr()}},
		Fetcher: &fetch.Fetcher{Dialer: &dial.Dialer{Net: l.Net()}, Roots: l.CA.Pool(), AcceptEncodings: []string{}},
		Cache:   cache,
	})
	defer r.Close()
	h := r.Handler(resolver.Zones{Default: sendpolicy.Zone{RequireSNI: true}})
	req := socketmap.Request{Name: "postfix", Key: "a.test"}
	if rep := h(context.Background(), req); rep.Status != socketmap.OK {
		b.Fatalf("%v", rep)
	}
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		out = h(context.Background(), req).Append(out[:0])
	}
}
