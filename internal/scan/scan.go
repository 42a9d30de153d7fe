// Package scan gathers the evidence about a domain's inbound mail transport
// security: DNS answers and policy fetches. It judges nothing; package check
// turns Observations into findings. Observations are plain data that
// marshal to JSON, so a scan can be saved, replayed and diffed.
//
// Independent lookups run concurrently: the scan's wall time is close to its
// critical path (one DNS round trip for the policy host's addresses, then one
// HTTPS fetch per address), not the sum of its lookups.
package scan

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
)

// Resolver answers DNS questions; *resolve.Client is the real one.
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) *resolve.Answer
}

// Fetcher gets a policy from one address; *fetch.Fetcher is the real one.
type Fetcher interface {
	Fetch(ctx context.Context, host string, ip netip.Addr) *fetch.Result
}

// Limits on how much one scan looks at.
const (
	DefaultMaxAddrs = 4  // addresses per host and family that are fetched or probed
	DefaultMaxMX    = 16 // MX hosts whose addresses are looked up
)

// WildcardProbeLabel is the label queried to tell whether a zone wildcard
// answers for _mta-sts (STS-TXT-18).
const WildcardProbeLabel = "_mailtls-wildcard-probe"

// Scanner gathers Observations. Resolver and Fetcher are required.
type Scanner struct {
	Resolver Resolver
	Fetcher  Fetcher
	// Dialer tells the scan about connect-to rules: a rule for the policy
	// host replaces the per-address fetches by one fetch. May be nil.
	Dialer   *dial.Dialer
	Now      func() time.Time
	MaxAddrs int
	MaxMX    int
}

// Observations is the evidence of one scan.
type Observations struct {
	Domain     string    `json:"domain"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS float64   `json:"duration_ms"`
	DNS        DNS       `json:"dns"`
	PolicyHost string    `json:"policy_host"`
	// PolicyHostOverride is set when a connect-to rule sent the policy
	// fetch to a fixed address instead of the host's DNS addresses.
	PolicyHostOverride string          `json:"policy_host_override,omitempty"`
	Fetches            []*fetch.Result `json:"policy_fetches"`
	MXHosts            []*MXHost       `json:"mx_hosts"`
}

// DNS holds every DNS answer of a scan. Answers that were not needed are nil.
type DNS struct {
	STS              *resolve.Answer `json:"mta_sts_txt"`                  // _mta-sts.<domain> TXT
	STSDraft         *resolve.Answer `json:"mta_sts_draft_txt"`            // _mta_sts.<domain> TXT
	Apex             *resolve.Answer `json:"apex_txt"`                     // <domain> TXT
	WildcardProbe    *resolve.Answer `json:"wildcard_probe_txt,omitempty"` // asked only when _mta-sts has TXT but no MTA-STS record
	TLSRPT           *resolve.Answer `json:"tlsrpt_txt"`                   // _smtp._tls.<domain> TXT
	TLSRPTDraft      *resolve.Answer `json:"tlsrpt_draft_txt"`             // _smtp-tlsrpt.<domain> TXT
	TLSRPTDraftUnder *resolve.Answer `json:"tlsrpt_draft2_txt"`            // _smtp_tlsrpt.<domain> TXT
	MX               *resolve.Answer `json:"mx"`
	PolicyHostA      *resolve.Answer `json:"policy_host_a"`
	PolicyHostAAAA   *resolve.Answer `json:"policy_host_aaaa"`
}

// MXHost is one MX host (or the domain itself as implicit MX) and its
// address lookups.
type MXHost struct {
	Host       string          `json:"host"`
	Preference uint16          `json:"preference"`
	Implicit   bool            `json:"implicit,omitempty"` // no MX records: the domain's own addresses (RFC 5321 §5.1)
	A          *resolve.Answer `json:"a"`
	AAAA       *resolve.Answer `json:"aaaa"`
}

// Addrs returns the host's addresses, IPv4 first.
func (h *MXHost) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, a := range []*resolve.Answer{h.A, h.AAAA} {
		if a != nil {
			out = append(out, a.Addrs()...)
		}
	}
	return out
}

// IsNullMX reports whether an MX answer is a null MX (RFC 7505: a single MX
// record with the root as exchange).
func IsNullMX(a *resolve.Answer) bool {
	mx := a.MX()
	return len(mx) == 1 && (mx[0].Host == "." || mx[0].Host == "")
}

// Scan gathers the evidence for domain (an A-label name from
// domain.Parse). It always returns Observations; failures are recorded in
// them. ctx bounds the whole scan.
func (s *Scanner) Scan(ctx context.Context, domain string) *Observations {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	start := time.Now()
	o := &Observations{Domain: domain, StartedAt: now().UTC(), PolicyHost: "mta-sts." + domain}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	lookup := func(name string, qtype uint16, then func(*resolve.Answer)) {
		wg.Go(func() {
			a := s.Resolver.Lookup(ctx, name, qtype)
			mu.Lock()
			then(a)
			mu.Unlock()
		})
	}
	// set returns a callback that stores an answer; callers hold mu.
	set := func(dst **resolve.Answer) func(*resolve.Answer) { return func(a *resolve.Answer) { *dst = a } }
	fetchFrom := func(ip netip.Addr) {
		wg.Go(func() {
			r := s.Fetcher.Fetch(ctx, o.PolicyHost, ip)
			mu.Lock()
			o.Fetches = append(o.Fetches, r)
			mu.Unlock()
		})
	}

	// The policy host: fetch from every address as soon as it is known.
	override, overridden := s.Dialer.HostOverride(o.PolicyHost, 443)
	if overridden {
		o.PolicyHostOverride = override
		fetchFrom(netip.Addr{})
	}
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		dst := &o.DNS.PolicyHostA
		if qt == dns.TypeAAAA {
			dst = &o.DNS.PolicyHostAAAA
		}
		lookup(o.PolicyHost, qt, func(a *resolve.Answer) {
			*dst = a
			if overridden {
				return
			}
			for _, ip := range limit(a.Addrs(), s.maxAddrs()) {
				fetchFrom(ip)
			}
		})
	}

	lookup("_mta-sts."+domain, dns.TypeTXT, func(a *resolve.Answer) {
		o.DNS.STS = a
		if needsWildcardProbe(a) {
			lookup(WildcardProbeLabel+"."+domain, dns.TypeTXT, set(&o.DNS.WildcardProbe))
		}
	})
	lookup("_mta_sts."+domain, dns.TypeTXT, set(&o.DNS.STSDraft))
	lookup(domain, dns.TypeTXT, set(&o.DNS.Apex))
	lookup("_smtp._tls."+domain, dns.TypeTXT, set(&o.DNS.TLSRPT))
	lookup("_smtp-tlsrpt."+domain, dns.TypeTXT, set(&o.DNS.TLSRPTDraft))
	lookup("_smtp_tlsrpt."+domain, dns.TypeTXT, set(&o.DNS.TLSRPTDraftUnder))

	lookup(domain, dns.TypeMX, func(a *resolve.Answer) {
		o.DNS.MX = a
		var hosts []*MXHost
		switch {
		case a.Status == resolve.StatusOK && !IsNullMX(a):
			seen := map[string]bool{}
			for _, mx := range a.MX() {
				h := strings.ToLower(mx.Host)
				if h == "." || h == "" || seen[h] {
					continue
				}
				seen[h] = true
				hosts = append(hosts, &MXHost{Host: h, Preference: mx.Preference})
			}
			slices.SortStableFunc(hosts, func(x, y *MXHost) int { return cmp.Compare(x.Preference, y.Preference) })
			hosts = limit(hosts, s.maxMX())
		case a.Status == resolve.StatusNoData:
			hosts = []*MXHost{{Host: domain, Implicit: true}}
		}
		o.MXHosts = hosts
		for _, h := range hosts {
			lookup(h.Host, dns.TypeA, set(&h.A))
			lookup(h.Host, dns.TypeAAAA, set(&h.AAAA))
		}
	})

	wg.Wait()
	slices.SortFunc(o.Fetches, func(x, y *fetch.Result) int { return compareAddr(x.Address, y.Address) })
	o.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	return o
}

func (s *Scanner) maxAddrs() int {
	if s.MaxAddrs > 0 {
		return s.MaxAddrs
	}
	return DefaultMaxAddrs
}

func (s *Scanner) maxMX() int {
	if s.MaxMX > 0 {
		return s.MaxMX
	}
	return DefaultMaxMX
}

// needsWildcardProbe reports whether _mta-sts answered TXT records of which
// none looks like MTA-STS: a zone wildcard is then a likely cause.
func needsWildcardProbe(a *resolve.Answer) bool {
	if a.Status != resolve.StatusOK {
		return false
	}
	for _, t := range a.TXT() {
		if mtasts.LooksLikeRecord(t) {
			return false
		}
	}
	return true
}

func limit[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// compareAddr orders "ip:port" strings IPv4 first, then by address.
func compareAddr(a, b string) int {
	pa, ea := netip.ParseAddrPort(a)
	pb, eb := netip.ParseAddrPort(b)
	if ea != nil || eb != nil {
		return strings.Compare(a, b)
	}
	if pa.Addr().Is4() != pb.Addr().Is4() {
		if pa.Addr().Is4() {
			return -1
		}
		return 1
	}
	return pa.Addr().Compare(pb.Addr())
}
