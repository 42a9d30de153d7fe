package bulk

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// Bounds of the caches of one run. An entry pushed out early costs only a
// repeated lookup, fetch or probe.
const (
	dnsCacheSize   = 20000 // answers
	probeCacheSize = 4096  // SMTP probe results (with their certificates)
	// keepForRun is how long a probe result serves later domains
	// of the run: the run's view of a server is one observation.
	keepForRun = 24 * time.Hour
)

// Shared is the work shared by every domain of a run: a DNS cache that
// honours TTLs, policy fetches in flight per (host, address), SMTP probe results per
// (address, MX host name), and the per-address politeness Gate. Its
// Resolver, Fetcher and Prober wrap the real ones behind the interfaces
// package scan takes, so a scan does not know it runs in bulk.
type Shared struct {
	// base is the run's context: a shared operation outlives the domain
	// that started it, but not the run. Shared owns the operations'
	// goroutines (Wait).
	base   context.Context
	wg     sync.WaitGroup
	dns    *cache[dnsKey, timedAnswer]
	fetch  *cache[fetchKey, *fetch.Result]
	probe  *cache[probeKey, *smtpprobe.Result]
	gate   *Gate
	now    func() time.Time
	opTime time.Duration
}

type dnsKey struct {
	name  string
	qtype uint16
}

// timedAnswer is an answer and when it arrived.
type timedAnswer struct {
	a  *resolve.Answer
	at time.Time
}

type fetchKey struct {
	host string
	ip   netip.Addr
}

type probeKey struct {
	ip   netip.Addr
	host string
}

// NewShared returns the shared layer of the run whose context is ctx.
// opTimeout bounds one shared lookup, fetch or probe: it runs for every
// domain that waits on it, so no single domain's budget may cut it short,
// only the end of the run. gate spaces out connections. Call Wait when the
// run is over.
func NewShared(ctx context.Context, gate *Gate, opTimeout time.Duration, now func() time.Time) *Shared {
	if now == nil {
		now = time.Now
	}
	s := &Shared{
		base: ctx,
		dns:  newCache[dnsKey, timedAnswer](dnsCacheSize, now),
		// Policy fetches are shared only while in flight, never kept: a
		// fetch is of one domain's own policy host (the name is its SNI
		// and Host header), and a run scans each domain once, so a kept
		// result would never be asked for again; it would only hold up to
		// three 64 KiB bodies in memory.
		fetch:  newCache[fetchKey, *fetch.Result](0, now),
		probe:  newCache[probeKey, *smtpprobe.Result](probeCacheSize, now),
		gate:   gate,
		now:    now,
		opTime: opTimeout,
	}
	s.dns.wg, s.fetch.wg, s.probe.wg = &s.wg, &s.wg, &s.wg
	return s
}

// Wait waits for the shared operations still under way (they end with the
// run's context or their bound).
func (s *Shared) Wait() { s.wg.Wait() }

// op returns the context of a shared operation: the run's, with the
// per-operation bound.
func (s *Shared) op() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.base, s.opTime)
}

// Stats counts the shared work of a run.
type Stats struct {
	DNSQueries      int64 `json:"dns_lookups"`        // lookups sent to the resolver
	DNSShared       int64 `json:"dns_answers_shared"` // answers served from the cache or a lookup in flight
	Fetches         int64 `json:"policy_fetches"`     // policy fetches made (each with its Accept-Encoding variants)
	FetchesShared   int64 `json:"policy_fetches_shared"`
	Probes          int64 `json:"smtp_probes"` // SMTP probes made
	ProbesShared    int64 `json:"smtp_probes_shared"`
	PeakPerAddress  int   `json:"peak_per_address"` // most probes or fetches at once to one address
	InFlightEntries int   `json:"-"`
}

// Stats returns the counts so far.
func (s *Shared) Stats() Stats {
	return Stats{
		DNSQueries: s.dns.computed.Load(), DNSShared: s.dns.shared.Load(),
		Fetches: s.fetch.computed.Load(), FetchesShared: s.fetch.shared.Load(),
		Probes: s.probe.computed.Load(), ProbesShared: s.probe.shared.Load(),
		PeakPerAddress:  s.gate.Peak(),
		InFlightEntries: s.dns.len() + s.fetch.len() + s.probe.len(),
	}
}

// Resolver wraps next with the run's DNS cache.
func (s *Shared) Resolver(next scan.Resolver) scan.Resolver { return &cachedResolver{s, next} }

// Fetcher wraps next with the run's fetch cache and the Gate.
func (s *Shared) Fetcher(next scan.Fetcher) scan.Fetcher { return &cachedFetcher{s, next} }

// Prober wraps next with the run's probe cache and the Gate.
func (s *Shared) Prober(next scan.Prober) scan.Prober { return &cachedProber{s, next} }

type cachedResolver struct {
	s    *Shared
	next scan.Resolver
}

// Lookup answers from the cache while the answer's TTL lasts, with the
// TTLs counted down as a caching resolver does (RFC 1035 §3.2.1); negative
// answers are kept for their SOA's negative TTL (RFC 2308 §5), temporary
// failures not at all (they are for the next domain to retry).
func (r *cachedResolver) Lookup(ctx context.Context, name string, qtype uint16) *resolve.Answer {
	key := dnsKey{strings.TrimSuffix(strings.ToLower(name), "."), qtype}
	if key.name == "" {
		key.name = "."
	}
	ta, ok := r.s.dns.get(ctx, key, func() (timedAnswer, time.Duration) {
		octx, cancel := r.s.op()
		defer cancel()
		a := r.next.Lookup(octx, name, qtype)
		return timedAnswer{a, r.s.now()}, answerTTL(a)
	})
	if !ok {
		return waitedOut(ctx, key.name, qtype)
	}
	return aged(ta.a, r.s.now().Sub(ta.at))
}

// answerTTL is how long a may be kept.
func answerTTL(a *resolve.Answer) time.Duration {
	switch {
	case a.Status == resolve.StatusOK:
		return time.Duration(a.MinTTL()) * time.Second
	case a.Status.Absent():
		ttl := a.NegativeTTL
		if len(a.CNAMEs) > 0 {
			ttl = min(ttl, a.MinTTL())
		}
		return time.Duration(ttl) * time.Second
	}
	return 0
}

// aged returns a copy of a with its TTLs lowered by the time since the
// answer arrived, so that every report shows what a resolver would show.
func aged(a *resolve.Answer, since time.Duration) *resolve.Answer {
	age := uint32(max(since, 0) / time.Second)
	if age == 0 {
		return a
	}
	c := *a
	c.CNAMEs = ageRecords(a.CNAMEs, age)
	c.Records = ageRecords(a.Records, age)
	c.NegativeTTL -= min(age, c.NegativeTTL)
	return &c
}

func ageRecords(rs []resolve.Record, age uint32) []resolve.Record {
	if rs == nil {
		return nil
	}
	out := make([]resolve.Record, len(rs))
	for i, r := range rs {
		r.TTL -= min(age, r.TTL)
		out[i] = r
	}
	return out
}

// waitedOut is the answer for a scan whose budget ended while another
// domain's lookup of the same question was under way.
func waitedOut(ctx context.Context, name string, qtype uint16) *resolve.Answer {
	a := &resolve.Answer{Name: name, Type: resolve.TypeString(qtype), Status: resolve.StatusTimeout,
		Error: "no answer before the scan's time budget ran out (the lookup was shared with another domain)"}
	if ctx.Err() == context.Canceled {
		a.Status, a.Error = resolve.StatusError, "canceled"
	}
	return a
}

type cachedFetcher struct {
	s    *Shared
	next scan.Fetcher
}

// Fetch fetches the policy of host from ip after the Gate lets it through;
// callers asking for the same fetch while it is under way share it.
func (f *cachedFetcher) Fetch(ctx context.Context, host string, ip netip.Addr) *fetch.Result {
	key := fetchKey{strings.ToLower(host), ip}
	r, ok := f.s.fetch.get(ctx, key, func() (*fetch.Result, time.Duration) {
		octx, cancel := f.s.op()
		defer cancel()
		release, err := f.s.gate.Acquire(octx, gateKey(host, ip))
		if err != nil {
			return &fetch.Result{URL: "https://" + host + mtasts.PolicyPath, Host: host, Address: addrPort(ip, 443),
				Class: fetch.ConnectTimeout, Error: "not fetched: the address was busy for longer than the time budget (politeness limit)", StartedAt: f.s.now().UTC()}, 0
		}
		r := f.next.Fetch(octx, host, ip)
		release(fetchSlow(r))
		return r, 0 // shared with the callers waiting, not kept (NewShared)
	})
	if !ok {
		return &fetch.Result{URL: "https://" + host + mtasts.PolicyPath, Host: host, Address: addrPort(ip, 443),
			Class: fetch.ConnectTimeout, Error: "not fetched in time: the scan's time budget ran out while the address was busy (politeness limit) or fetched for another domain", StartedAt: f.s.now().UTC()}
	}
	return r
}

func fetchSlow(r *fetch.Result) bool {
	switch r.Class {
	case fetch.ConnectTimeout, fetch.TLSTimeout, fetch.HTTPTimeout:
		return true
	}
	return r.Status == 429 || r.Status == 503
}

type cachedProber struct {
	s    *Shared
	next scan.Prober
}

// Probe probes ip for host once per run, after the Gate lets it through.
// Results that say nothing about the server (cut off by the run's bound)
// are not kept.
func (p *cachedProber) Probe(ctx context.Context, host string, ip netip.Addr) *smtpprobe.Result {
	key := probeKey{ip, strings.ToLower(host)}
	r, ok := p.s.probe.get(ctx, key, func() (*smtpprobe.Result, time.Duration) {
		octx, cancel := p.s.op()
		defer cancel()
		release, err := p.s.gate.Acquire(octx, gateKey(host, ip))
		if err != nil {
			return smtpprobe.NotProbed(host, ip, smtpprobe.NotProbedBudget,
				"not probed: the address was busy for longer than the time budget (politeness limit)", p.s.now()), 0
		}
		r := p.next.Probe(octx, host, ip)
		release(probeSlow(r))
		if !r.Class.Observed() {
			return r, 0
		}
		return r, keepForRun
	})
	if !ok {
		return smtpprobe.NotProbed(host, ip, smtpprobe.NotProbedBudget,
			"not probed: the scan's time budget ran out while the address was busy (politeness limit) or probed for another domain", p.s.now())
	}
	return r
}

// probeSlow tells a server that asks to be left alone (a 4xx greeting such
// as 421, RFC 5321 §3.8) or that tarpits (no banner, a stall, a handshake
// that never ends).
func probeSlow(r *smtpprobe.Result) bool {
	switch r.Class {
	case smtpprobe.BannerTemporary, smtpprobe.BannerTimeout, smtpprobe.ConnectTimeout, smtpprobe.TLSTimeout:
		return true
	}
	return false
}

// gateKey is the destination a connection goes to: the address, or the
// host when a connect-to rule replaced its addresses.
func gateKey(host string, ip netip.Addr) string {
	if ip.IsValid() {
		return ip.Unmap().String()
	}
	return strings.ToLower(host)
}

func addrPort(ip netip.Addr, port uint16) string {
	if !ip.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(ip, port).String()
}

// ResolverDial returns a resolve.Client Dial function that lets at most
// perSecond queries a second go to each resolver (every attempt, UDP or
// TCP, is one query); perSecond <= 0 means no cap.
func ResolverDial(perSecond float64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var (
		mu       sync.Mutex
		limiters = map[string]*rate.Limiter{}
		d        net.Dialer
	)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if perSecond > 0 {
			mu.Lock()
			l := limiters[addr]
			if l == nil {
				l = rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10)))
				limiters[addr] = l
			}
			mu.Unlock()
			if err := l.Wait(ctx); err != nil {
				return nil, err
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}
