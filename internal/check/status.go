package check

import (
	"fmt"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
)

// consistency decides the effective policy (what an RFC 8461 sender applies
// now) and checks that record and policy belong together (spec-checklist
// §G: MISC-1, MISC-2, MISC-33).
func (e *evaluator) consistency() {
	r := e.r
	policyValid := e.bodyOK && e.parsed != nil && e.parsed.Policy != nil && len(e.usable) > 0
	switch e.recState {
	case recUndetermined:
		r.Status, r.StatusReason = StatusUndetermined, e.recWhy
	case recAbsent:
		r.Status, r.StatusReason = StatusAbsent, e.recWhy
		if !policyValid && !e.has(finding.STSRecordAtApex) && !e.has(finding.STSRecordDraftName) && !e.has(finding.STSRecordWildcard) && !e.has(finding.STSRecordDanglingCNAME) {
			e.add(finding.STSRecordMissing, finding.Info, "_mta-sts."+e.o.Domain,
				fmt.Sprintf("%s does not publish MTA-STS (no TXT record at _mta-sts.%s): senders deliver with opportunistic TLS only, which an attacker can strip.", e.o.Domain, e.o.Domain),
				e.fixText(finding.STSRecordMissing))
		}
		if policyValid {
			e.add(finding.STSPolicyNotAdvertised, finding.Error, "_mta-sts."+e.o.Domain,
				fmt.Sprintf("%s serves a valid %s policy, but there is no MTA-STS TXT record at _mta-sts.%s, so senders never fetch it.", e.o.PolicyHost, e.parsed.Policy.Mode, e.o.Domain),
				e.fixText(finding.STSPolicyNotAdvertised))
		}
	case recInvalid:
		r.Status, r.StatusReason = StatusInvalid, e.recWhy+"; senders treat the domain as having no policy"
	case recValid:
		switch {
		case e.hostState == hostUndetermined && len(e.usable) == 0:
			r.Status, r.StatusReason = StatusUndetermined, e.hostWhy
		case len(e.usable) == 0:
			why := e.hostWhy
			if why == "" {
				why = "the policy could not be fetched"
			}
			r.Status, r.StatusReason = StatusUnreachable, why+"; senders continue as if the domain had no policy (RFC 8461 §3.3)"
		case !e.bodyOK:
			r.Status, r.StatusReason = StatusInvalid, "https://"+e.o.PolicyHost+"/.well-known/mta-sts.txt does not serve a policy"
		case e.parsed.Policy == nil:
			r.Status, r.StatusReason = StatusInvalid, "the policy file is invalid ("+firstFatal(e.parsed)+"); senders ignore it"
		default:
			p := e.parsed.Policy
			r.Policy = p
			r.Status = Status(p.Mode)
			r.StatusReason = fmt.Sprintf("senders apply mode %s for up to %s", p.Mode, humanDuration(p.MaxAge))
		}
	}
	e.subdomain()
}

func firstFatal(pp *mtasts.ParsedPolicy) string {
	for _, p := range pp.Problems {
		if p.Fatal {
			return p.String()
		}
	}
	return "invalid"
}

// subdomain notes that a subdomain without a record does not inherit its
// parent's policy (RFC 8461 §3.4, STS-TXT-19, MISC-33).
func (e *evaluator) subdomain() {
	if e.recState != recAbsent {
		return
	}
	reg, err := publicsuffix.EffectiveTLDPlusOne(e.o.Domain)
	if err != nil || reg == e.o.Domain {
		return
	}
	parent := e.o.Domain[strings.Index(e.o.Domain, ".")+1:]
	e.add(finding.STSSubdomain, finding.Info, e.o.Domain,
		fmt.Sprintf("%s is a subdomain of %s; mail to %s uses only _mta-sts.%s, never the policy of %s.", e.o.Domain, reg, e.o.Domain, e.o.Domain, reg),
		e.fixText(finding.STSSubdomain, "<parent>", parent, "<sub>", strings.TrimSuffix(e.o.Domain, "."+parent)))
}
