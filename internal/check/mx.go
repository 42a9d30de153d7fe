package check

import (
	"fmt"
	"strings"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
)

// coveragePolicy returns the policy MX hosts are matched against: the
// effective one, or the best-effort draft of an invalid policy so that
// coverage problems show up together with the syntax problems.
func coveragePolicy(eff effective, rec recState, file fileVerdict) *mtasts.Policy {
	if eff.policy != nil {
		return eff.policy
	}
	if rec == recValid && file.parsed != nil && len(file.parsed.Draft.MX) > 0 {
		d := file.parsed.Draft
		return &d
	}
	return nil
}

// mxCoverage matches every MX host against pol, the policy patterns (RFC
// 8461 §4.1, MISC-9, MISC-10, STS-POL-21), checks the MX hosts' addresses
// and returns the MX hosts of the report.
func (e *evaluator) mxCoverage(rec recState, pol *mtasts.Policy) []MX {
	d := e.o.Domain
	a := e.o.DNS.MX
	switch {
	case a == nil || a.Status.Temporary():
		e.add(finding.MXUndetermined, finding.Warning, d,
			fmt.Sprintf("Could not look up the MX records of %s: %s; retry.", d, temporaryWhy(a)), e.fixText(finding.MXUndetermined))
		return nil
	case a.Status == resolve.StatusNXDomain:
		e.add(finding.MXDomainNXDomain, finding.Error, d, fmt.Sprintf("%s does not exist (NXDOMAIN).", d), e.fixText(finding.MXDomainNXDomain))
		return nil
	case scan.IsNullMX(a):
		if rec != recAbsent {
			e.add(finding.MXNull, finding.Info, d, fmt.Sprintf("%s publishes a null MX (\"0 .\"): it accepts no mail, so MTA-STS has no effect.", d), e.fixText(finding.MXNull))
		}
		return nil
	}

	e.mxTargets(a)
	var out []MX
	mode := mtasts.Mode("")
	if pol != nil {
		mode = pol.Mode
	}
	used := map[string]bool{}
	var uncovered []*scan.MXHost
	for _, h := range e.o.MXHosts {
		m := MX{Host: h.Host, Preference: h.Preference, Implicit: h.Implicit, NotChecked: h.Skipped}
		if h.Implicit {
			if len(h.Addrs()) == 0 && h.A != nil && h.AAAA != nil && !h.A.Status.Temporary() && !h.AAAA.Status.Temporary() {
				continue // no MX and no address: the domain receives no mail
			}
			e.add(finding.MXImplicit, finding.Info, d,
				fmt.Sprintf("%s has no MX records; senders deliver to its own address, so the policy must list \"mx: %s\".", d, d), e.fixText(finding.MXImplicit))
		}
		if pol != nil {
			pat, ok := pol.Match(h.Host)
			m.Pattern, m.Covered = pat, &ok
			switch {
			case ok:
				used[strings.ToLower(pat)] = true
			case !deliverable(h):
				// Its own finding says to delete the record; no pattern helps.
			case mode == mtasts.ModeEnforce || mode == mtasts.ModeTesting:
				uncovered = append(uncovered, h)
			}
		}
		out = append(out, m)
		e.mxAddresses(h)
	}
	e.notCovered(uncovered, pol)
	if pol != nil && len(e.o.MXHosts) > 0 {
		for _, pat := range pol.MX {
			if !used[strings.ToLower(pat)] {
				e.add(finding.MXPatternStale, finding.Info, pat,
					fmt.Sprintf("The mx pattern %q matches none of the MX hosts (%s).", pat, hostList(e.o.MXHosts)), e.fixText(finding.MXPatternStale))
			}
		}
	}
	return out
}

// deliverable reports whether senders can deliver to h at all: not when
// the MX record names localhost or an IP address.
func deliverable(h *scan.MXHost) bool {
	return h.Skipped != scan.SkippedLocalhost && h.Skipped != scan.SkippedIPLiteral
}

// NotCheckedWhy says in words why the host was not looked at ("" when it
// was).
func (m MX) NotCheckedWhy() string {
	switch m.NotChecked {
	case scan.SkippedLimit:
		return "beyond the scan's limit of MX hosts (--max-mx)"
	case scan.SkippedLocalhost:
		return "localhost sends every sender to itself"
	case scan.SkippedIPLiteral:
		return "an IP address is not a host name"
	}
	return m.NotChecked
}

// mxTargets checks what the MX records point at (RFC 7505 §3, RFC 6761
// §6.3, RFC 5321 §5.1) and says which hosts the scan left out.
func (e *evaluator) mxTargets(a *resolve.Answer) {
	d := e.o.Domain
	var null bool
	for _, mx := range a.MX() {
		null = null || mx.Host == "." || mx.Host == ""
	}
	if null {
		e.add(finding.MXNullMixed, finding.Error, d,
			fmt.Sprintf("%s publishes a null MX (\"0 .\") beside %d other MX %s (%s); RFC 7505 §3 forbids that. Most senders skip the null entry and deliver to the others; a sender that honours it refuses all mail.",
				d, len(e.o.MXHosts), plural(len(e.o.MXHosts), "record", "records"), hostList(e.o.MXHosts)),
			e.fixText(finding.MXNullMixed))
	}
	// The most preferred host that senders can use, for the severities.
	best := -1
	for _, h := range e.o.MXHosts {
		if deliverable(h) {
			best = int(h.Preference)
			break
		}
	}
	var limited []*scan.MXHost
	for _, h := range e.o.MXHosts {
		switch h.Skipped {
		case scan.SkippedLimit:
			limited = append(limited, h)
		case scan.SkippedLocalhost:
			// Postfix takes the loopback address for itself: as the best
			// MX it bounces the mail, as a backup it is skipped.
			sev, effect := finding.Warning, "senders that try it reach themselves and go on to the next MX host"
			if best < 0 || int(h.Preference) <= best {
				sev, effect = finding.Error, "senders that try it first reach themselves: Postfix bounces the mail (\"loops back to myself\")"
			}
			e.add(finding.MXLocalhost, sev, h.Host,
				fmt.Sprintf("The MX record %d %s points every sender at itself; %s.", h.Preference, h.Host, effect), e.fixText(finding.MXLocalhost, "<mx>", h.Host))
		case scan.SkippedIPLiteral:
			sev, effect := finding.Warning, "senders ignore it and use the other MX hosts"
			if best < 0 {
				sev, effect = finding.Error, "senders ignore it, and no other MX host is left"
			}
			e.add(finding.MXIPLiteral, sev, h.Host,
				fmt.Sprintf("The MX record %d %s names an IP address, not a host name; %s.", h.Preference, h.Host, effect), e.fixText(finding.MXIPLiteral, "<mx>", h.Host))
		}
	}
	if len(limited) > 0 {
		looked := 0
		for _, h := range e.o.MXHosts {
			if h.Skipped == "" {
				looked++
			}
		}
		e.add(finding.MXNotChecked, finding.Info, d,
			fmt.Sprintf("%s has %d MX hosts; the scan looked at the %d most preferred. The other %d (%s) were matched against the policy, and the policy fix covers them, but their addresses, STARTTLS, certificates and DANE were not checked.",
				d, len(e.o.MXHosts), looked, len(limited), hostList(limited)),
			e.fixText(finding.MXNotChecked))
	}
}

// maxCoverageFindings is how many MX hosts get a coverage finding each;
// beyond it one finding names them all (a domain may list hundreds).
const maxCoverageFindings = 10

// notCovered reports the MX hosts that no pattern matches.
func (e *evaluator) notCovered(hosts []*scan.MXHost, pol *mtasts.Policy) {
	if len(hosts) == 0 {
		return
	}
	sev, effect := finding.Warning, "in testing mode senders deliver anyway but report a failure"
	if pol.Mode == mtasts.ModeEnforce {
		sev, effect = finding.Error, "senders that honour the enforce policy will not deliver to "+plural(len(hosts), "it", "them")
	}
	if len(hosts) > maxCoverageFindings {
		e.add(finding.MXNotCovered, sev, fmt.Sprintf("%d MX hosts", len(hosts)),
			fmt.Sprintf("%d MX hosts match none of the policy's mx patterns (%s): %s; %s.", len(hosts), quoteList(pol.MX, 5), hostList(hosts), effect),
			"Serve the policy file of the fixes, which covers every MX host, and publish a new id in the TXT record.")
		return
	}
	for _, h := range hosts {
		e.notCoveredHost(h, pol, sev, effect)
	}
}

// notCoveredHost reports one MX host that no pattern matches.
func (e *evaluator) notCoveredHost(h *scan.MXHost, pol *mtasts.Policy, sev finding.Severity, effect string) {
	msg := fmt.Sprintf("The MX host %s matches none of the policy's mx patterns (%s); %s.", h.Host, quoteList(pol.MX, 5), effect)
	for _, pat := range pol.MX {
		parent, ok := strings.CutPrefix(strings.ToLower(pat), "*.")
		switch {
		case !ok:
		case h.Host == parent:
			msg += fmt.Sprintf(" %q matches exactly one label below %s, not %s itself.", pat, parent, parent)
		case domain.IsSubdomainOf(h.Host, parent):
			msg += fmt.Sprintf(" %q matches exactly one label below %s, not the %d labels of %s.", pat, parent, strings.Count(strings.TrimSuffix(h.Host, parent), "."), h.Host)
		}
	}
	parent := h.Host
	if i := strings.Index(h.Host, "."); i > 0 {
		parent = h.Host[i+1:]
	}
	fix := e.fixText(finding.MXNotCovered, "<mx>", h.Host, "<parent>", parent)
	if domain.CheckHostname(h.Host) != nil {
		fix = fmt.Sprintf("%s cannot be listed as an mx pattern (it is not a valid host name); add \"mx: *.%s\" and publish a new id in the TXT record.", h.Host, parent)
	}
	e.add(finding.MXNotCovered, sev, h.Host, msg, fix)
}

// mxAddresses checks that an MX host resolves and is not an alias
// (MISC-39).
func (e *evaluator) mxAddresses(h *scan.MXHost) {
	if h.A == nil || h.AAAA == nil {
		return
	}
	for _, ans := range []*resolve.Answer{h.A, h.AAAA} {
		if len(ans.CNAMEs) > 0 && !h.Implicit {
			e.add(finding.MXCNAME, finding.Warning, h.Host,
				fmt.Sprintf("The MX host %s is a CNAME to %s.", h.Host, ans.Target()), e.fixText(finding.MXCNAME, "<mx>", h.Host))
			break
		}
	}
	if failed, answered := familyFailure(h.A, h.AAAA); failed != nil {
		e.add(finding.MXAddressFamilyUndetermined, finding.Warning, h.Host,
			fmt.Sprintf("The %s lookup of %s failed (%s) while %s answered (%s): its %s addresses, if any, were not seen and not probed; senders that meet the same failure deliver over %s only.",
				failed.Type, h.Host, temporaryWhy(failed), answered.Type, addrList(answered), family(failed), family(answered)),
			e.fixText(finding.MXAddressFamilyUndetermined, "<mx>", h.Host))
	}
	if len(h.Addrs()) > 0 || h.Implicit {
		return
	}
	if h.A.Status.Temporary() || h.AAAA.Status.Temporary() {
		why := temporaryWhy(h.A)
		if !h.A.Status.Temporary() {
			why = temporaryWhy(h.AAAA)
		}
		e.add(finding.MXAddressUndetermined, finding.Warning, h.Host,
			fmt.Sprintf("Could not look up the addresses of the MX host %s: %s; retry.", h.Host, why), e.fixText(finding.MXAddressUndetermined, "<mx>", h.Host))
		return
	}
	sev := finding.Warning
	if len(e.o.MXHosts) == 1 {
		sev = finding.Error
	}
	e.add(finding.MXNoAddress, sev, h.Host,
		fmt.Sprintf("The MX host %s has no A or AAAA record (%s); senders cannot deliver to it.", h.Host, h.A.Status), e.fixText(finding.MXNoAddress, "<mx>", h.Host))
}

// hostList names the hosts, the first eight of them.
func hostList(hosts []*scan.MXHost) string {
	var names []string
	for _, h := range hosts {
		names = append(names, h.Host)
	}
	return capList(names, 8)
}

// familyFailure reports an address lookup that failed temporarily while
// the other family's answered with addresses (RFC 2308 §2.2: a family
// without addresses is NODATA, never an error): the scan then sees only
// part of the host's addresses.
func familyFailure(a, aaaa *resolve.Answer) (failed, answered *resolve.Answer) {
	if a == nil || aaaa == nil {
		return nil, nil
	}
	switch {
	case a.Status.Temporary() && len(aaaa.Addrs()) > 0:
		return a, aaaa
	case aaaa.Status.Temporary() && len(a.Addrs()) > 0:
		return aaaa, a
	}
	return nil, nil
}

// family names the address family of an A or AAAA answer.
func family(a *resolve.Answer) string {
	if a.Type == "AAAA" {
		return "IPv6"
	}
	return "IPv4"
}

// addrList lists an answer's addresses, the first four of them.
func addrList(a *resolve.Answer) string {
	var out []string
	for _, ip := range a.Addrs() {
		out = append(out, ip.String())
	}
	return capList(out, 4)
}
