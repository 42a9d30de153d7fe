package lab

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The kinds of domain a Population mixes: the failure classes of the scan
// suite, each with its expected policy status.
const (
	KindEnforce    = "enforce"        // record, enforce policy covering its MX, TLS-RPT, STARTTLS: status enforce
	KindTesting    = "testing"        // the same in testing mode: status testing
	KindNoMTASTS   = "no-mta-sts"     // MX and nothing else: status absent
	KindNotCovered = "mx-not-covered" // enforce policy whose mx pattern misses the MX: status enforce, error finding
	KindPolicy404  = "policy-404"     // record, policy host answers 404: status invalid
	KindCertBad    = "policy-cert-expired"
	KindBadRecord  = "record-invalid" // _mta-sts TXT with a broken id: status invalid
	KindServFail   = "servfail"       // _mta-sts SERVFAIL: status undetermined
	KindNoSTARTTLS = "mx-no-starttls" // MX on a shared server without STARTTLS
	KindMX421      = "mx-421"         // MX on a shared server that greets with 421
	KindTenant     = "tenant-mx"      // its own MX name on one shared address (hosted mail, Microsoft 365 style)
	KindTarpit     = "mx-tarpit"      // MX on a shared server that never sends a banner (not in the default mix)
	// KindTenant421: its own MX name on one shared address that greets
	// every connection with 421 (a hosted-mail provider throttling a
	// scanner; not in the default mix).
	KindTenant421 = "tenant-mx-421"
)

// DefaultKinds is the default mix of a Population.
var DefaultKinds = []string{KindEnforce, KindTesting, KindNoMTASTS, KindNotCovered, KindPolicy404,
	KindCertBad, KindBadRecord, KindServFail, KindNoSTARTTLS, KindMX421, KindTenant, KindEnforce}

// PopulationOptions configures Lab.Populate.
type PopulationOptions struct {
	Domains int    // how many domains (names d00000.<Suffix>, d00001.<Suffix>, …)
	Suffix  string // "bulk.test" by default
	// SharedMX is how many well-behaved MX hosts (mx1.shared.<Suffix>, …,
	// one address each) the domains share; 5 by default.
	SharedMX int
	// Kinds is the mix: domain i is of kind Kinds[i mod len(Kinds)];
	// DefaultKinds when nil.
	Kinds []string
	// PolicyAddrs is how many addresses the policy hosts share
	// (mta-sts.<domain> of domain i is on address i mod PolicyAddrs, as
	// when a provider hosts its customers' policies); 16 by default.
	PolicyAddrs int
}

// Population is a generated set of domains that share a few MX hosts.
type Population struct {
	Suffix  string
	Domains []PopDomain
	// SharedMX are the well-behaved shared MX servers; NoSTARTTLS, Busy
	// (421), Tenant (every tenant MX name), BusyTenant (every 421 tenant
	// MX name) and Tarpit the others, each on one address.
	SharedMX                                     []*SMTPServer
	NoSTARTTLS, Busy, Tenant, BusyTenant, Tarpit *SMTPServer
	// MXAddrs maps each shared MX server to its address.
	MXAddrs map[*SMTPServer]netip.Addr
}

// PopDomain is one generated domain.
type PopDomain struct {
	Name string
	Kind string
	MX   string // its MX host
}

// List returns the domain names, one per line.
func (p *Population) List() string {
	var b strings.Builder
	for _, d := range p.Domains {
		b.WriteString(d.Name)
		b.WriteByte('\n')
	}
	return b.String()
}

// Populate adds a population of domains to the lab: their DNS records, the
// shared MX servers, and policy hosts on the lab's HTTPS server. Negative
// answers of the lab DNS carry the zone's SOA from then on (so resolvers
// can cache absence, RFC 2308), with a negative TTL of 300 s.
func (l *Lab) Populate(o PopulationOptions) (*Population, error) {
	if o.Domains < 0 {
		return nil, errors.New("lab: populate: negative number of domains")
	}
	if o.Suffix == "" {
		o.Suffix = "bulk.test"
	}
	if o.SharedMX <= 0 {
		o.SharedMX = 5
	}
	if len(o.Kinds) == 0 {
		o.Kinds = DefaultKinds
	}
	if o.PolicyAddrs <= 0 {
		o.PolicyAddrs = 16
	}
	sfx := strings.ToLower(strings.TrimSuffix(o.Suffix, "."))
	p := &Population{Suffix: sfx, MXAddrs: map[*SMTPServer]netip.Addr{}}
	if err := l.DNS.Add(fmt.Sprintf("%s. 3600 IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300", sfx, sfx, sfx)); err != nil {
		return nil, err
	}
	l.DNS.SetNegativeSOA(true)

	mx := func(host string, mode SMTPMode) (*SMTPServer, error) {
		addr := l.NextAddr()
		s, err := l.MX(host, []netip.Addr{addr}, SMTPOptions{Mode: mode})
		if err == nil {
			p.MXAddrs[s] = addr
		}
		return s, err
	}
	var err error
	for i := range o.SharedMX {
		s, err := mx(fmt.Sprintf("mx%d.shared.%s", i+1, sfx), SMTPStartTLS)
		if err != nil {
			return nil, err
		}
		p.SharedMX = append(p.SharedMX, s)
	}
	if p.NoSTARTTLS, err = mx("plain.shared."+sfx, SMTPNoStartTLS); err != nil {
		return nil, err
	}
	if p.Busy, err = mx("busy.shared."+sfx, SMTPBanner421); err != nil {
		return nil, err
	}
	if p.Tarpit, err = mx("tarpit.shared."+sfx, SMTPNoBanner); err != nil {
		return nil, err
	}
	// Tenant MX names: *.tenants.<sfx>, all on one address, one wildcard
	// certificate.
	tenantAddr := l.NextAddr()
	tenantCert, err := l.CA.Issue(LeafOptions{DNSNames: []string{"*.tenants." + sfx}})
	if err != nil {
		return nil, err
	}
	if p.Tenant, err = StartSMTP(SMTPOptions{Name: "tenants." + sfx, Cert: tenantCert}, l.CA); err != nil {
		return nil, err
	}
	if err := l.addMX(p.Tenant, "tenants."+sfx, []netip.Addr{tenantAddr}); err != nil {
		p.Tenant.Close()
		return nil, err
	}
	p.MXAddrs[p.Tenant] = tenantAddr
	if err := l.DNS.Add(fmt.Sprintf("*.tenants.%s. 300 IN A %s", sfx, tenantAddr)); err != nil {
		return nil, err
	}

	// 421 tenant MX names: *.busy-tenants.<sfx>, on one address.
	busyAddr := l.NextAddr()
	if p.BusyTenant, err = StartSMTP(SMTPOptions{Name: "busy-tenants." + sfx, Mode: SMTPBanner421}, l.CA); err != nil {
		return nil, err
	}
	if err := l.addMX(p.BusyTenant, "busy-tenants."+sfx, []netip.Addr{busyAddr}); err != nil {
		p.BusyTenant.Close()
		return nil, err
	}
	p.MXAddrs[p.BusyTenant] = busyAddr
	if err := l.DNS.Add(fmt.Sprintf("*.busy-tenants.%s. 300 IN A %s", sfx, busyAddr)); err != nil {
		return nil, err
	}

	policyAddrs := make([]netip.Addr, o.PolicyAddrs)
	for i := range policyAddrs {
		policyAddrs[i] = l.NextAddr()
		if err := l.MapAddr(l.HTTPS.Addr(), policyAddrs[i], 443); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	for i := range o.Domains {
		name := fmt.Sprintf("d%05d.%s", i, sfx)
		kind := o.Kinds[i%len(o.Kinds)]
		d := PopDomain{Name: name, Kind: kind, MX: fmt.Sprintf("mx%d.shared.%s", i%o.SharedMX+1, sfx)}
		switch kind {
		case KindNoSTARTTLS:
			d.MX = "plain.shared." + sfx
		case KindMX421:
			d.MX = "busy.shared." + sfx
		case KindTarpit:
			d.MX = "tarpit.shared." + sfx
		case KindTenant:
			d.MX = strings.ReplaceAll(strings.TrimSuffix(name, "."+sfx), ".", "-") + ".tenants." + sfx
		case KindTenant421:
			d.MX = strings.ReplaceAll(strings.TrimSuffix(name, "."+sfx), ".", "-") + ".busy-tenants." + sfx
		}
		recs := []string{fmt.Sprintf("%s. 300 IN MX 10 %s.", name, d.MX)}
		mode, cover := "enforce", "*.shared."+sfx
		switch kind {
		case KindTesting:
			mode = "testing"
		case KindNotCovered:
			cover = "mail.elsewhere.test"
		case KindTenant:
			cover = "*.tenants." + sfx
		case KindTenant421:
			cover = "*.busy-tenants." + sfx
		}
		hasPolicy := kind != KindNoMTASTS
		if hasPolicy {
			id := "20260101"
			if kind == KindBadRecord {
				id = "not valid!"
			}
			recs = append(recs,
				fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=%s"`, name, id),
				fmt.Sprintf(`_smtp._tls.%s. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@%s"`, name, name),
				fmt.Sprintf("mta-sts.%s. 300 IN A %s", name, policyAddrs[i%len(policyAddrs)]))
		}
		if err := l.DNS.Add(recs...); err != nil {
			return nil, err
		}
		if kind == KindServFail {
			l.DNS.SetRcode("_mta-sts."+name, dns.TypeTXT, dns.RcodeServerFailure)
		}
		if hasPolicy {
			host := "mta-sts." + name
			lo := LeafOptions{DNSNames: []string{host}}
			if kind == KindCertBad {
				lo.NotBefore, lo.NotAfter = now.Add(-100*24*time.Hour), now.Add(-10*24*time.Hour)
			}
			cert, err := l.CA.Issue(lo)
			if err != nil {
				return nil, err
			}
			var h http.Handler = Static(http.StatusOK, "text/plain",
				fmt.Sprintf("version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: 604800\r\n", mode, cover))
			if kind == KindPolicy404 {
				h = Static(http.StatusNotFound, "text/plain", "not found\n")
			}
			l.HTTPS.Host(host, cert, h)
		}
		p.Domains = append(p.Domains, d)
	}
	return p, nil
}
