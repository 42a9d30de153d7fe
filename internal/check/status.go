package check

import (
	"fmt"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
)

// effective is the policy an RFC 8461 sender applies now, and why.
type effective struct {
	status Status
	reason string
	policy *mtasts.Policy // nil unless the status is a mode
}

// effectivePolicy decides what an RFC 8461 sender applies now from the
// record, the policy host and the file, and checks that record and policy
// belong together (spec-checklist §G: MISC-1, MISC-2, MISC-33).
func (e *evaluator) effectivePolicy(rec recordVerdict, host hostVerdict, file fileVerdict) effective {
	var eff effective
	policyValid := file.policy() != nil && len(host.usable) > 0
	switch rec.state {
	case recUndetermined:
		eff.status, eff.reason = StatusUndetermined, rec.why
	case recAbsent:
		eff.status, eff.reason = StatusAbsent, rec.why
		if !policyValid && !rec.misplaced {
			e.add(finding.STSRecordMissing, finding.Info, "_mta-sts."+e.o.Domain,
				fmt.Sprintf("%s does not publish MTA-STS (no TXT record at _mta-sts.%s): senders deliver with opportunistic TLS only, which an attacker can strip.", e.o.Domain, e.o.Domain),
				e.fixText(finding.STSRecordMissing))
		}
		if policyValid {
			e.add(finding.STSPolicyNotAdvertised, finding.Error, "_mta-sts."+e.o.Domain,
				fmt.Sprintf("%s serves a valid %s policy, but there is no MTA-STS TXT record at _mta-sts.%s, so senders never fetch it.", e.o.PolicyHost, file.policy().Mode, e.o.Domain),
				e.fixText(finding.STSPolicyNotAdvertised))
		}
	case recInvalid:
		eff.status, eff.reason = StatusInvalid, rec.why+"; senders treat the domain as having no policy"
	case recValid:
		switch {
		case host.state == hostUndetermined && len(host.usable) == 0:
			eff.status, eff.reason = StatusUndetermined, host.why
		case len(host.usable) == 0:
			why := host.why
			if why == "" {
				why = "the policy could not be fetched"
			}
			eff.status, eff.reason = StatusUnreachable, why+"; senders continue as if the domain had no policy (RFC 8461 §3.3)"
		case file.parsed == nil:
			eff.status, eff.reason = StatusInvalid, "https://"+e.o.PolicyHost+"/.well-known/mta-sts.txt does not serve a policy"
		case file.parsed.Policy == nil:
			eff.status, eff.reason = StatusInvalid, "the policy file is invalid ("+firstFatal(file.parsed)+"); senders ignore it"
		default:
			p := file.parsed.Policy
			eff.policy = p
			eff.status = Status(p.Mode)
			eff.reason = fmt.Sprintf("senders apply mode %s for up to %s", p.Mode, humanDuration(p.MaxAge))
		}
	}
	if rec.state == recAbsent {
		e.subdomain()
	}
	return eff
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
	reg, err := publicsuffix.EffectiveTLDPlusOne(e.o.Domain)
	if err != nil || reg == e.o.Domain {
		return
	}
	parent := e.o.Domain[strings.Index(e.o.Domain, ".")+1:]
	e.add(finding.STSSubdomain, finding.Info, e.o.Domain,
		fmt.Sprintf("%s is a subdomain of %s; mail to %s uses only _mta-sts.%s, never the policy of %s.", e.o.Domain, reg, e.o.Domain, e.o.Domain, reg),
		e.fixText(finding.STSSubdomain, "<parent>", parent, "<sub>", strings.TrimSuffix(e.o.Domain, "."+parent)))
}
