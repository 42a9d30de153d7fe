package check

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/webpki"
)

// Address is one probed address of an MX host, as senders see it.
type Address struct {
	IP           string
	Probe        *smtpprobe.Result
	STARTTLS     bool      // STARTTLS offered
	TLSVersion   string    // negotiated version, "" without TLS
	CertValid    bool      // WebPKI-valid for the MX host name (RFC 8461 §4.2)
	CertError    string    // why not, in plain words
	CertNotAfter time.Time // of the leaf
	// PolicyMatch reports whether a certificate DNS-ID matches a policy mx
	// pattern, which is what Postfix checks when it enforces MTA-STS with
	// "secure match=" (nil when there is no policy or no certificate).
	PolicyMatch *bool
	DANE        string // DANE verdict for this address (see DANE* constants)
	DANERecord  string // the TLSA record that matched
	// ResultType is the RFC 8460 result type a reporting sender would use
	// for a failed session here ("" when the session succeeds or never
	// reached TLS).
	ResultType tlsrpt.ResultType
	// Pass: the address passes as senders see it: STARTTLS with TLS 1.2+
	// and a certificate valid for the MX name and a policy pattern, or
	// valid DANE.
	Pass bool
}

var smtpCertCodes = map[webpki.Code]finding.ID{
	webpki.NoCertificate:   finding.SMTPCertUntrusted,
	webpki.Expired:         finding.SMTPCertExpired,
	webpki.NotYetValid:     finding.SMTPCertNotYetValid,
	webpki.SelfSigned:      finding.SMTPCertUntrusted,
	webpki.IncompleteChain: finding.SMTPCertIncompleteChain,
	webpki.Untrusted:       finding.SMTPCertUntrusted,
	webpki.Invalid:         finding.SMTPCertUntrusted,
	webpki.NameMismatch:    finding.SMTPCertNameMismatch,
	webpki.ExpiresSoon:     finding.SMTPCertExpiring,
}

// modeSeverity is the weight of an MX failure: senders refuse the host
// under enforce (and with DANE), report it under testing, and otherwise it
// only blocks a future enforce policy.
func modeSeverity(policy *mtasts.Policy, daneApplies bool) (finding.Severity, string) {
	switch {
	case policy != nil && policy.Mode == mtasts.ModeEnforce:
		return finding.Error, "senders that honour your enforce policy will not deliver to this host"
	case daneApplies:
		return finding.Error, "DANE senders will not deliver to this host"
	case policy != nil && policy.Mode == mtasts.ModeTesting:
		return finding.Warning, "under your testing policy senders deliver anyway but report the failure; it must be fixed before enforce"
	}
	return finding.Info, "senders fall back to opportunistic TLS today, but an enforce policy would make them refuse this host"
}

// smtp judges the probes of every MX address (RFC 8461 §4, §5; RFC 3207)
// and adds the addresses to mx. The certificates are matched against pol,
// the patterns of the coverage policy; the severities follow the mode of
// the effective policy (effective, nil without one) and DANE. It returns
// the addresses whose chain DANE rejects, for daneFindings.
func (e *evaluator) smtp(mx []MX, pol, effective *mtasts.Policy, daneOf map[*scan.MXHost]*daneState) []daneMiss {
	var misses []daneMiss
	var all, unreachable int
	var budget, limit []string // addresses not probed, by reason
	for _, h := range e.o.MXHosts {
		m := mxFor(mx, h.Host)
		if m == nil {
			continue
		}
		st := daneOf[h]
		daneApplies := !h.Implicit && st.applies
		// STARTTLS and TLS failures stop DANE senders too; certificate
		// problems only matter to MTA-STS (DANE ignores the WebPKI).
		sev, effect := modeSeverity(effective, daneApplies)
		certSev, certEffect := modeSeverity(effective, false)
		var pend []addrProblem
		observed := 0
		for _, p := range h.Probes {
			a := Address{IP: p.Address, Probe: p, STARTTLS: p.STARTTLS}
			if ap, err := netip.ParseAddrPort(p.Address); err == nil {
				a.IP = ap.Addr().String()
			}
			if !p.Class.Observed() {
				// The scan did not look (or stopped looking): no verdict
				// about the server.
				if p.Class == smtpprobe.NotProbedLimit {
					limit = append(limit, h.Host+" ("+a.IP+")")
				} else {
					budget = append(budget, h.Host+" ("+a.IP+")")
				}
				m.Addresses = append(m.Addresses, a)
				continue
			}
			all++
			observed++
			add := func(id finding.ID, s finding.Severity, format string, args ...any) {
				pend = append(pend, addrProblem{id: id, sev: s, ip: a.IP, detail: fmt.Sprintf(format, args...)})
			}
			switch p.Class {
			case smtpprobe.ConnectRefused, smtpprobe.ConnectTimeout, smtpprobe.ConnectError:
				unreachable++
				add(finding.SMTPUnreachable, finding.Warning, "%s", p.Error)
			case smtpprobe.ConnectBlocked:
				add(finding.MXAddressNotPublic, finding.Warning, "%s", p.Error)
			case smtpprobe.BannerTemporary, smtpprobe.BannerPermanent:
				add(finding.SMTPBannerRefused, finding.Warning, "%s", p.Error)
			case smtpprobe.BannerTimeout, smtpprobe.BannerClosed, smtpprobe.BannerMalformed, smtpprobe.EHLOFailed:
				add(finding.SMTPNoBanner, finding.Warning, "%s", p.Error)
			case smtpprobe.STARTTLSNotOffered:
				a.ResultType = tlsrpt.STARTTLSNotSupported
				add(finding.SMTPSTARTTLSMissing, sev, "%s; %s", p.Error, effect)
			case smtpprobe.STARTTLSRefused:
				a.ResultType = tlsrpt.STARTTLSNotSupported
				add(finding.SMTPSTARTTLSFailed, sev, "%s; %s", p.Error, effect)
			case smtpprobe.TLSHandshake, smtpprobe.TLSTimeout, smtpprobe.TLSPlaintext:
				a.ResultType = tlsrpt.ValidationFailure
				add(finding.SMTPSTARTTLSFailed, sev, "%s; %s", p.Error, effect)
			}
			if t := p.TLS; t != nil {
				a.TLSVersion = t.Version
				a.CertValid = t.Verdict.OK()
				a.CertNotAfter = t.Verdict.NotAfter
				if n := webpki.CertificateMessageSize(t.Chain, t.Version); n > webpki.OpenSSLMaxCertList {
					add(finding.SMTPCertChainTooLarge, finding.Warning, "its certificate chain takes at least %d bytes in the TLS handshake, more than the %d bytes OpenSSL accepts by default, so Postfix and other OpenSSL-based senders fail the STARTTLS handshake, while Go-based senders accept it", n, webpki.OpenSSLMaxCertList)
				}
				if tlsOld(t.Version) {
					a.ResultType = tlsrpt.ValidationFailure
					add(finding.SMTPTLSVersion, sev, "it negotiated %s; %s", t.Version, effect)
				}
				var errs []string
				for _, q := range t.Verdict.Problems {
					if q.Code == webpki.ExpiresSoon {
						add(finding.SMTPCertExpiring, finding.Warning, "%s", q.Detail)
						continue
					}
					errs = append(errs, q.Detail)
					if a.ResultType == "" {
						a.ResultType = certResultType(q.Code)
					}
					detail := q.Detail
					if q.Code == webpki.NameMismatch && pol != nil && certMatchesPatterns(t.Chain, pol.MX) {
						detail += " (Postfix before 3.10.5, which checks certificate names against the policy patterns instead, would accept it)"
					}
					add(smtpCertCodes[q.Code], certSev, "%s; %s", detail, certEffect)
				}
				a.CertError = strings.Join(errs, "; ")
				if pol != nil {
					match := certMatchesPatterns(t.Chain, pol.MX)
					a.PolicyMatch = &match
				}
			}
			if miss := e.daneAddress(h, st, &a); miss != nil {
				misses = append(misses, *miss)
			}
			tlsOK := a.TLSVersion != "" && !tlsOld(a.TLSVersion)
			a.Pass = tlsOK && (a.CertValid && (a.PolicyMatch == nil || *a.PolicyMatch) || a.DANE == DANEAddrValid)
			m.Addresses = append(m.Addresses, a)
		}
		e.addAddressProblems(h, pend, observed)
	}
	if len(budget) > 0 {
		e.add(finding.SMTPNotProbed, finding.Info, e.o.Domain,
			fmt.Sprintf("The scan's time budget ran out before %d MX %s could be probed, or while they were: %s. Nothing is known about them; this is not a fault of the servers. Scan again with a longer --timeout.",
				len(budget), plural(len(budget), "address", "addresses"), capList(budget, 8)),
			e.fixText(finding.SMTPNotProbed))
	}
	if len(limit) > 0 {
		e.add(finding.SMTPNotProbed, finding.Info, e.o.Domain,
			fmt.Sprintf("%d MX %s not probed because a host has more addresses than the scan probes (4 per address family): %s.",
				len(limit), plural(len(limit), "address was", "addresses were"), capList(limit, 8)),
			"Nothing to change for the scan: it checks at most 4 addresses per host and family, so make sure the others are set up like the ones it checked.")
	}
	if all > 0 && unreachable == all {
		e.add(finding.SMTPUnreachable, finding.Warning, e.o.Domain,
			fmt.Sprintf("No MX address of %s accepted a connection on port 25. When every host fails like this, the scanner's own network most likely blocks outgoing port 25.", e.o.Domain),
			e.fixText(finding.SMTPUnreachable, "<mx>", "the MX hosts"))
	}
	return misses
}

// mxFor returns the report entry of an MX host.
func mxFor(mx []MX, host string) *MX {
	for i := range mx {
		if mx[i].Host == host {
			return &mx[i]
		}
	}
	return nil
}

// addrProblem is a problem at one address, merged per host before it
// becomes a finding.
type addrProblem struct {
	id     finding.ID
	sev    finding.Severity
	ip     string
	detail string
}

// addAddressProblems reports a problem once per host when every probed
// address of the host (observed of them) has it, else once per address.
func (e *evaluator) addAddressProblems(h *scan.MXHost, ps []addrProblem, observed int) {
	type key struct {
		id     finding.ID
		sev    finding.Severity
		detail string
	}
	var order []key
	ips := map[key][]string{}
	for _, p := range ps {
		k := key{p.id, p.sev, p.detail}
		if _, ok := ips[k]; !ok {
			order = append(order, k)
		}
		ips[k] = append(ips[k], p.ip)
	}
	for _, k := range order {
		where := strings.Join(ips[k], ", ")
		subject := h.Host
		if len(ips[k]) < observed {
			subject = h.Host + " (" + where + ")"
		}
		msg := fmt.Sprintf("%s at %s: %s.", h.Host, where, k.detail)
		e.add(k.id, k.sev, subject, msg, e.fixText(k.id, "<mx>", h.Host))
	}
}

func certResultType(c webpki.Code) tlsrpt.ResultType {
	switch c {
	case webpki.NameMismatch:
		return tlsrpt.CertificateHostMismatch
	case webpki.Expired, webpki.NotYetValid:
		return tlsrpt.CertificateExpired
	}
	return tlsrpt.CertificateNotTrusted
}

// certMatchesPatterns reports whether any DNS-ID of the leaf matches any
// policy pattern: a concrete name through the pattern rule of RFC 8461
// §4.1, a wildcard name only an identical wildcard pattern (Postfix's
// "secure match=" semantics, STS-SND-15).
func certMatchesPatterns(chain []webpki.Cert, patterns []string) bool {
	if len(chain) == 0 {
		return false
	}
	for _, name := range chain[0].DNSNames {
		for _, p := range patterns {
			if strings.HasPrefix(name, "*.") && strings.EqualFold(name, p) || mtasts.MatchMX(p, name) {
				return true
			}
		}
	}
	return false
}

// allPass reports whether every MX host has probes and every probed address
// passes (the A+ condition).
func (e *evaluator) allPass(mx []MX) (bool, string) {
	if len(e.o.MXHosts) == 0 {
		return false, "there are no MX hosts to check"
	}
	for _, m := range mx {
		if m.NotChecked != "" {
			return false, fmt.Sprintf("%s was not checked (%s)", m.Host, m.NotCheckedWhy())
		}
		if len(m.Addresses) == 0 {
			return false, fmt.Sprintf("%s was not probed over SMTP", m.Host)
		}
		for _, a := range m.Addresses {
			if a.Probe != nil && !a.Probe.Class.Observed() {
				return false, fmt.Sprintf("%s (%s) was not probed: %s", m.Host, a.IP, a.Probe.Error)
			}
			if !a.Pass {
				return false, fmt.Sprintf("%s (%s) does not pass STARTTLS and certificate checks", m.Host, a.IP)
			}
		}
	}
	return true, ""
}

// ProbeVerdict judges one probe as an MTA-STS sender would under a policy
// with the given patterns: STARTTLS, TLS 1.2 or newer, and a certificate
// that is trusted, in date, valid for the MX host and names a pattern. It
// returns why not in plain words. (DANE is judged separately.)
func ProbeVerdict(p *smtpprobe.Result, patterns []string) (bool, string) {
	switch {
	case p == nil:
		return false, "not probed"
	case p.TLS == nil && p.Class != "":
		return false, p.Error
	case p.TLS == nil:
		return false, "no TLS session"
	case tlsOld(p.TLS.Version):
		return false, "it negotiates " + p.TLS.Version + "; senders require TLS 1.2 or newer"
	case !p.TLS.Verdict.OK():
		var why []string
		for _, q := range p.TLS.Verdict.Problems {
			if q.Code != webpki.ExpiresSoon {
				why = append(why, q.Detail)
			}
		}
		return false, strings.Join(why, "; ")
	case len(patterns) > 0 && !certMatchesPatterns(p.TLS.Chain, patterns):
		return false, "its certificate names none of the policy's mx patterns"
	}
	return true, ""
}
