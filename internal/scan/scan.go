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
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// Resolver answers DNS questions; *resolve.Client is the real one.
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) *resolve.Answer
}

// Fetcher gets a policy from one address; *fetch.Fetcher is the real one.
type Fetcher interface {
	Fetch(ctx context.Context, host string, ip netip.Addr) *fetch.Result
}

// Prober probes one address of an MX host over SMTP; *smtpprobe.Prober is
// the real one.
type Prober interface {
	Probe(ctx context.Context, host string, ip netip.Addr) *smtpprobe.Result
}

// Limits on how much one scan looks at. What a limit leaves out is
// recorded as such (MXHost.Skipped, smtpprobe.NotProbedLimit), never
// dropped.
const (
	DefaultMaxAddrs = 4 // addresses per host and family that are fetched or probed
	// DefaultMaxMX is how many MX hosts, the most preferred, have their
	// addresses, TLSA records and SMTP looked at: each costs several
	// lookups and probes. Every host of the MX RRset is listed (and so
	// matched against the policy) whatever the limit: the RRset is bounded
	// by the size of a DNS message.
	DefaultMaxMX = 16
	// DefaultMaxProbes bounds the SMTP probes in flight; probes of one
	// address never overlap (one connection at a time per IP address).
	DefaultMaxProbes = 8
)

// Why an MX host was not looked at (MXHost.Skipped).
const (
	// SkippedLimit: the host is beyond the Scanner's MaxMX most preferred.
	SkippedLimit = "mx-limit"
	// SkippedLocalhost: "localhost" (or a name below it) points every
	// sender at itself (RFC 6761 §6.3); a probe would reach the scanner's
	// own machine.
	SkippedLocalhost = "localhost"
	// SkippedIPLiteral: the exchange is an IP address, not a host name
	// (RFC 5321 §5.1 wants a name); senders do not look it up as one.
	SkippedIPLiteral = "ip-literal"
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
	// Prober probes every address of every MX host; nil skips the SMTP
	// probes (DNS and HTTPS only).
	Prober    Prober
	MaxProbes int
	// Progress, if set, is told about each piece of evidence as soon as it
	// is gathered, so a caller can show the scan as it runs. Calls never
	// overlap; Progress must return quickly and must not change the Step.
	Progress func(Step)
}

// Step is one piece of evidence that has just been gathered: exactly one
// field is set. It is the same value that ends up in the Observations.
type Step struct {
	DNS   *resolve.Answer
	Fetch *fetch.Result
	Probe *smtpprobe.Result
}

// progress reports a step; the caller holds the scan's lock.
func (s *Scanner) progress(st Step) {
	if s.Progress != nil {
		s.Progress(st)
	}
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
	// Planned are hosts the caller means to add to the MX set (`mailtls
	// policy plan`), looked up and probed like MX hosts.
	Planned []*MXHost `json:"planned_mx_hosts,omitempty"`
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
	// Root is ". SOA": a resolver that validates DNSSEC sets AD on it (the
	// root zone is signed), so it tells whether AD bits mean anything.
	Root *resolve.Answer `json:"root_soa"`
}

// MXHost is one MX host (or the domain itself as implicit MX) and its
// address lookups.
type MXHost struct {
	Host       string `json:"host"`
	Preference uint16 `json:"preference"`
	Implicit   bool   `json:"implicit,omitempty"` // no MX records: the domain's own addresses (RFC 5321 §5.1)
	// Skipped says why the host's addresses, TLSA records and SMTP were not
	// looked at (SkippedLimit, SkippedLocalhost, SkippedIPLiteral); empty
	// when they were. A, AAAA and TLSA are then nil.
	Skipped string          `json:"skipped,omitempty"`
	A       *resolve.Answer `json:"a"`
	AAAA    *resolve.Answer `json:"aaaa"`
	// Probes has one SMTP probe per address, IPv4 first (absent with
	// --no-smtp).
	Probes []*smtpprobe.Result `json:"probes,omitempty"`
	// TLSA is _25._tcp.<host> (RFC 7672 §2.2.3); TLSAExpanded the same at
	// the CNAME target when the host is an alias (RFC 7672 §2.2.3 tries the
	// expanded name first).
	TLSA         *resolve.Answer `json:"tlsa"`
	TLSAExpanded *resolve.Answer `json:"tlsa_expanded,omitempty"`
	// TCPNode is _tcp.<host>, asked when TLSA records exist: NXDOMAIN there
	// breaks resolvers that minimise queries (DANE-DNS-9).
	TCPNode *resolve.Answer `json:"tcp_node,omitempty"`
	// TLSRPT is _smtp._tls.<host>, where DANE reports go (RFC 8460 §1.1),
	// asked when TLSA records exist.
	TLSRPT *resolve.Answer `json:"tlsrpt,omitempty"`
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

// Scan gathers the evidence for domain (an A-label name from
// domain.Parse). It always returns Observations; failures are recorded in
// them. ctx bounds the whole scan.
func (s *Scanner) Scan(ctx context.Context, domain string) *Observations {
	return s.ScanPlanned(ctx, domain, nil)
}

// ScanPlanned is Scan, plus the addresses and SMTP probes of the hosts
// planned to join the MX set (Observations.Planned), in the same probe
// schedule (one connection at a time per address). A planned host that a
// connect-to rule sends elsewhere on port 25 is probed once, there.
func (s *Scanner) ScanPlanned(ctx context.Context, domain string, planned []string) *Observations {
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
			s.progress(Step{DNS: a}) // before what then derives from it
			then(a)
			mu.Unlock()
		})
	}
	// set returns a callback that stores an answer; callers hold mu.
	set := func(dst **resolve.Answer) func(*resolve.Answer) { return func(a *resolve.Answer) { *dst = a } }
	// SMTP probes: every address (up to maxAddrs per family), scheduled by
	// probeSlots; what is not probed is recorded as such.
	slots, stopSlots := newProbeSlots(ctx, cmp.Or(s.MaxProbes, DefaultMaxProbes))
	defer stopSlots()
	addProbe := func(h *MXHost, r *smtpprobe.Result) { // caller holds mu
		h.Probes = append(h.Probes, r)
		s.progress(Step{Probe: r})
	}
	ranks, seq := map[*MXHost]int{}, 0
	probeAddrs := func(h *MXHost, hostIdx int, addrs []netip.Addr, family string) { // caller holds mu
		if s.Prober == nil {
			return
		}
		for i, ip := range addrs {
			if i >= s.maxAddrs() {
				addProbe(h, smtpprobe.NotProbed(h.Host, ip, smtpprobe.NotProbedLimit,
					fmt.Sprintf("not probed: the scan probes at most %d %s addresses per host", s.maxAddrs(), family), now()))
				continue
			}
			t := &probeTurn{ip: ip, rank: ranks[h], host: hostIdx, seq: seq}
			ranks[h]++
			seq++
			slots.add(t)
			wg.Go(func() {
				var r *smtpprobe.Result
				if slots.wait(t) {
					func() {
						defer slots.release(t)
						r = s.Prober.Probe(ctx, h.Host, ip)
					}()
				} else {
					r = smtpprobe.NotProbed(h.Host, ip, smtpprobe.NotProbedBudget,
						"not probed: the scan's time budget ran out before this address's turn", now())
				}
				mu.Lock()
				addProbe(h, r)
				mu.Unlock()
			})
		}
	}
	probe := func(h *MXHost, hostIdx int, a *resolve.Answer) { probeAddrs(h, hostIdx, a.Addrs(), a.Type) }
	fetchFrom := func(ip netip.Addr) {
		wg.Go(func() {
			r := s.Fetcher.Fetch(ctx, o.PolicyHost, ip)
			mu.Lock()
			o.Fetches = append(o.Fetches, r)
			s.progress(Step{Fetch: r})
			mu.Unlock()
		})
	}

	// The policy host: fetch from every address as soon as it is known.
	override, overridden := s.Dialer.HostOverride(o.PolicyHost, 443)
	if overridden {
		o.PolicyHostOverride = override
		fetchFrom(netip.Addr{})
	}
	for _, qt := range []uint16{resolve.TypeA, resolve.TypeAAAA} {
		dst := &o.DNS.PolicyHostA
		if qt == resolve.TypeAAAA {
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

	lookup("_mta-sts."+domain, resolve.TypeTXT, func(a *resolve.Answer) {
		o.DNS.STS = a
		if needsWildcardProbe(a) {
			lookup(WildcardProbeLabel+"."+domain, resolve.TypeTXT, set(&o.DNS.WildcardProbe))
		}
	})
	lookup("_mta_sts."+domain, resolve.TypeTXT, set(&o.DNS.STSDraft))
	lookup(".", resolve.TypeSOA, set(&o.DNS.Root))
	lookup(domain, resolve.TypeTXT, set(&o.DNS.Apex))
	lookup("_smtp._tls."+domain, resolve.TypeTXT, set(&o.DNS.TLSRPT))
	lookup("_smtp-tlsrpt."+domain, resolve.TypeTXT, set(&o.DNS.TLSRPTDraft))
	lookup("_smtp_tlsrpt."+domain, resolve.TypeTXT, set(&o.DNS.TLSRPTDraftUnder))

	lookup(domain, resolve.TypeMX, func(a *resolve.Answer) {
		o.DNS.MX = a
		var hosts []*MXHost
		switch {
		case a.Status == resolve.StatusOK && !a.NullMX():
			hosts = s.mxHosts(a)
		case a.Status == resolve.StatusNoData:
			hosts = []*MXHost{{Host: domain, Implicit: true}}
		}
		o.MXHosts = hosts
		for i, h := range hosts {
			if h.Skipped != "" {
				continue
			}
			lookup(h.Host, resolve.TypeA, func(a *resolve.Answer) {
				h.A = a
				probe(h, i, a)
				if len(a.CNAMEs) > 0 && a.Status == resolve.StatusOK {
					lookup("_25._tcp."+a.Target(), resolve.TypeTLSA, set(&h.TLSAExpanded))
				}
			})
			lookup(h.Host, resolve.TypeAAAA, func(a *resolve.Answer) {
				h.AAAA = a
				probe(h, i, a)
			})
			if h.Implicit {
				continue // DANE applies to MX hosts (RFC 7672 §2.2)
			}
			lookup("_25._tcp."+h.Host, resolve.TypeTLSA, func(a *resolve.Answer) {
				h.TLSA = a
				if a.Status == resolve.StatusOK {
					lookup("_tcp."+h.Host, resolve.TypeTXT, set(&h.TCPNode))
					lookup("_smtp._tls."+h.Host, resolve.TypeTXT, set(&h.TLSRPT))
				}
			})
		}
	})

	// Planned hosts rank after every MX host in the probe schedule.
	for i, name := range planned {
		h := &MXHost{Host: name}
		o.Planned = append(o.Planned, h)
		rank := s.maxMX() + i
		if _, ok := s.Dialer.HostOverride(name, 25); ok {
			mu.Lock()
			probeAddrs(h, rank, []netip.Addr{netip.IPv4Unspecified()}, "")
			mu.Unlock()
			lookup(name, resolve.TypeA, set(&h.A))
			lookup(name, resolve.TypeAAAA, set(&h.AAAA))
			continue
		}
		lookup(name, resolve.TypeA, func(a *resolve.Answer) { h.A = a; probe(h, rank, a) })
		lookup(name, resolve.TypeAAAA, func(a *resolve.Answer) { h.AAAA = a; probe(h, rank, a) })
	}

	wg.Wait()
	for _, h := range slices.Concat(o.MXHosts, o.Planned) {
		slices.SortFunc(h.Probes, func(x, y *smtpprobe.Result) int { return compareAddr(x.Address, y.Address) })
	}
	slices.SortFunc(o.Fetches, func(x, y *fetch.Result) int { return compareAddr(x.Address, y.Address) })
	o.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	return o
}

// mxHosts lists every distinct exchange of an MX answer, most preferred
// first ("." of a null MX among other records is left out), and marks the
// ones that are not looked at and why.
func (s *Scanner) mxHosts(a *resolve.Answer) []*MXHost {
	var hosts []*MXHost
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
	looked := 0
	for _, h := range hosts {
		_, ipErr := netip.ParseAddr(h.Host)
		switch {
		case h.Host == "localhost" || strings.HasSuffix(h.Host, ".localhost"):
			h.Skipped = SkippedLocalhost
		case ipErr == nil:
			h.Skipped = SkippedIPLiteral
		case looked >= s.maxMX():
			h.Skipped = SkippedLimit
		default:
			looked++
		}
	}
	return hosts
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
