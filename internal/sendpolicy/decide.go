package sendpolicy

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/socketmap"
)

// STS is the MTA-STS side of a decision: the policy in force for the
// domain (a fresh one, or an unexpired cached one after a failed refresh,
// RFC 8461 §3.3, §5.1) or nil, and whether the discovery failed
// temporarily with nothing cached (STS-SND-16).
type STS struct {
	Policy    *mtasts.Policy
	Temporary bool   // no policy in force because the TXT lookup failed
	Reason    string // why there is or is not a policy, for --explain
	// Why, if set, computes Reason when it is needed (the words cost more
	// than the decision).
	Why func() string
}

func (s STS) reason() string {
	if s.Reason == "" && s.Why != nil {
		return s.Why()
	}
	return s.Reason
}

// Zone is the per-socketmap-name configuration (the last field of
// socketmap:inet:HOST:PORT:NAME), as in postfix-mta-sts-resolver.
type Zone struct {
	// StrictTesting applies "testing" policies as "enforce"
	// (non-compliant with RFC 8461 §5, for a staged rollout).
	StrictTesting bool
	// RequireSNI adds servername=hostname (Postfix 3.4+; RFC 8461 §4.2
	// requires SNI).
	RequireSNI bool
	// TLSRPT adds the Postfix 3.10+ attributes policy_type, policy_domain,
	// mx_host_pattern and policy_string to secure replies.
	TLSRPT bool
	// DeferOnSTSFailure answers TEMP instead of NOTFOUND when the _mta-sts
	// lookup fails temporarily and nothing is cached (STS-SND-16: a local
	// choice; the default delivers as without MTA-STS).
	DeferOnSTSFailure bool
}

// Kind is the kind of answer.
type Kind string

// Kinds of answer; the values are metric labels.
const (
	KindDANEOnly Kind = "dane-only" // mandatory DANE
	KindDANE     Kind = "dane"      // opportunistic DANE (mandatory where usable TLSA records exist)
	KindSecure   Kind = "secure"    // MTA-STS: WebPKI and the policy's mx patterns
	KindNotFound Kind = "notfound"  // no policy: Postfix applies its default level
	KindTemp     Kind = "temp"      // defer: the answer cannot be determined now
	KindInvalid  Kind = "invalid"   // the key cannot have a policy (answered NOTFOUND)
)

// Kinds lists every kind, for metrics with fixed label values.
var Kinds = []Kind{KindDANEOnly, KindDANE, KindSecure, KindNotFound, KindTemp, KindInvalid}

// Rule names the rule that decided; the values are stable.
type Rule string

// Rules, in the order Decide tries them.
const (
	RuleDANETemporary  Rule = "dane-temporary"      // RFC 7672 §2.2, RFC 8461 §2: a DANE lookup error is never downgraded
	RuleDANEAll        Rule = "dane-all"            // RFC 7672 §2.2, RFC 8461 §2: DANE first
	RuleDANESomeSTS    Rule = "dane-some-sts"       // some hosts DANE, MTA-STS enforce: mandatory DANE, the stricter combination
	RuleDANESome       Rule = "dane-some"           // some hosts DANE, no MTA-STS to enforce
	RuleDANEUnusable   Rule = "dane-unusable-sts"   // STS-DANE-4: unusable TLSA + enforce: WebPKI checks
	RuleDANEUnusableNo Rule = "dane-unusable"       // RFC 7672 §2.2: mandatory encryption
	RuleSTSEnforce     Rule = "sts-enforce"         // RFC 8461 §5
	RuleSTSStrict      Rule = "sts-testing-strict"  // testing applied as enforce (zone strict_testing)
	RuleSTSTesting     Rule = "sts-testing"         // RFC 8461 §5: deliver as without a policy
	RuleSTSNone        Rule = "sts-none"            // RFC 8461 §5, §8.3
	RuleSTSTempDefer   Rule = "sts-temporary-defer" // STS-SND-16, local choice: defer
	RuleSTSTempOpen    Rule = "sts-temporary-open"  // STS-SND-16, default: deliver without MTA-STS
	RuleNoPolicy       Rule = "no-policy"           // RFC 8461 §3.3: no policy in force
	RuleInvalidKey     Rule = "invalid-key"         // the key cannot have a policy
)

// Decision is the answer for one domain and the reason for it. Deciding
// allocates nothing; Reason assembles the words when they are needed.
type Decision struct {
	Domain string         `json:"domain"`
	Kind   Kind           `json:"kind"`
	Rule   Rule           `json:"rule"`
	Policy *mtasts.Policy `json:"policy,omitempty"` // the MTA-STS policy applied by a secure answer
	mode   mtasts.Mode
	detail string // the DANE reason the rule builds on
	sts    STS    // the MTA-STS side, whose reason is computed when needed
}

// Decide applies DANE first (RFC 8461 §2), then MTA-STS (RFC 8461 §5).
func Decide(domain string, d DANEVerdict, s STS, z Zone) Decision {
	dec := Decision{Domain: domain, sts: s}
	if s.Policy != nil {
		dec.mode = s.Policy.Mode
	}
	enforce := dec.mode == mtasts.ModeEnforce || dec.mode == mtasts.ModeTesting && z.StrictTesting
	set := func(k Kind, r Rule, detail string) Decision {
		dec.Kind, dec.Rule, dec.detail = k, r, detail
		if k == KindSecure {
			dec.Policy = s.Policy
		}
		return dec
	}
	switch d.State {
	case DANETemporary:
		return set(KindTemp, RuleDANETemporary, d.Reason)
	case DANEAll:
		return set(KindDANEOnly, RuleDANEAll, d.Reason)
	case DANESome:
		if enforce {
			return set(KindDANEOnly, RuleDANESomeSTS, d.Reason)
		}
		return set(KindDANE, RuleDANESome, d.Reason)
	case DANEUnusable:
		if enforce {
			return set(KindSecure, RuleDANEUnusable, d.Reason)
		}
		return set(KindDANE, RuleDANEUnusableNo, d.Reason)
	}
	switch {
	case dec.mode == mtasts.ModeEnforce:
		return set(KindSecure, RuleSTSEnforce, "")
	case dec.mode == mtasts.ModeTesting && z.StrictTesting:
		return set(KindSecure, RuleSTSStrict, "")
	case dec.mode == mtasts.ModeTesting:
		return set(KindNotFound, RuleSTSTesting, "")
	case dec.mode == mtasts.ModeNone:
		return set(KindNotFound, RuleSTSNone, "")
	case s.Temporary && z.DeferOnSTSFailure:
		return set(KindTemp, RuleSTSTempDefer, "")
	case s.Temporary:
		return set(KindNotFound, RuleSTSTempOpen, "")
	}
	return set(KindNotFound, RuleNoPolicy, "")
}

// Reason says in plain words why the rule decided, with the RFC section.
func (d Decision) Reason() string {
	detail := d.detail
	if detail == "" {
		detail = d.sts.reason()
	}
	if detail == "" {
		detail = "no MTA-STS policy is in force"
	}
	switch d.Rule {
	case RuleDANETemporary, RuleDANEUnusableNo, RuleInvalidKey:
		return detail
	case RuleDANEAll:
		return detail + "; DANE takes precedence over MTA-STS (RFC 8461 §2)"
	case RuleDANESomeSTS:
		return detail + "; with MTA-STS in " + string(d.mode) + " mode, mandatory DANE is the only level that neither downgrades the DANE hosts nor leaves the others without authentication (RFC 8461 §2)"
	case RuleDANESome:
		return detail + "; DANE authenticates the hosts with TLSA records"
	case RuleDANEUnusable:
		return detail + "; MTA-STS " + string(d.mode) + " adds the WebPKI checks, the stricter combination (STS-DANE-4)"
	case RuleSTSEnforce:
		return "MTA-STS policy in enforce mode (RFC 8461 §5): " + detail
	case RuleSTSStrict:
		return "MTA-STS policy in testing mode, applied as enforce because the zone sets strict_testing: " + detail
	case RuleSTSTesting:
		return "MTA-STS policy in testing mode: deliver as without a policy (RFC 8461 §5): " + detail
	case RuleSTSNone:
		return "MTA-STS policy in mode none: the domain has no active policy (RFC 8461 §5, §8.3)"
	case RuleSTSTempDefer:
		return detail + "; the zone defers on temporary MTA-STS failures (STS-SND-16)"
	case RuleSTSTempOpen:
		return detail + "; delivering as without MTA-STS (STS-SND-16, RFC 8461 §3.3)"
	}
	return detail + " (RFC 8461 §3.3: deliver as without MTA-STS)"
}

// MarshalJSON adds the reason.
func (d Decision) MarshalJSON() ([]byte, error) {
	type plain Decision
	return json.Marshal(struct {
		plain
		Reason string `json:"reason"`
	}{plain(d), d.Reason()})
}

// Invalid is the decision for a key that cannot have a policy.
func Invalid(key, why string) Decision {
	return Decision{Domain: key, Kind: KindInvalid, Rule: RuleInvalidKey, detail: "no policy for this key: " + why}
}

// Reply renders the decision as Postfix reads an smtp_tls_policy_maps
// result (postconf(5), TLS_README "TLS policy table"; TLSRPT_README for the
// Postfix 3.10 attributes).
func (d Decision) Reply(z Zone) socketmap.Reply {
	switch d.Kind {
	case KindDANEOnly, KindDANE:
		return socketmap.Reply{Status: socketmap.OK, Data: string(d.Kind)}
	case KindSecure:
		return socketmap.Reply{Status: socketmap.OK, Data: SecureValue(d.Domain, d.Policy, z)}
	case KindTemp:
		return socketmap.Reply{Status: socketmap.Temp, Data: printable(d.Reason(), 200)}
	}
	return socketmap.Reply{Status: socketmap.NotFound}
}

// MatchPatterns converts mx patterns to Postfix match= names: "*.x" becomes
// ".x" (which Postfix matches against one or more labels, wider than RFC
// 8461 §4.1's exactly one; the TLSRPT attributes carry the exact patterns
// for Postfix 3.10's smtp_tls_enforce_sts_mx_patterns). Lower-cased,
// duplicates dropped, the policy's order kept.
func MatchPatterns(mx []string) []string {
	out := make([]string, 0, len(mx))
	for _, p := range mx {
		p = strings.ToLower(strings.TrimSuffix(p, "."))
		if rest, ok := strings.CutPrefix(p, "*."); ok {
			p = "." + rest
		}
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// SecureValue is the value of a secure reply for domain under policy p.
func SecureValue(domain string, p *mtasts.Policy, z Zone) string {
	var b strings.Builder
	b.Grow(64 + 24*len(p.MX))
	b.WriteString("secure match=")
	for i, m := range MatchPatterns(p.MX) {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(m)
	}
	if z.RequireSNI {
		b.WriteString(" servername=hostname")
	}
	if !z.TLSRPT {
		return b.String()
	}
	// TLSRPT_README "MTA-STS Support via smtp_tls_policy_maps": one
	// mx_host_pattern per mx line, one { policy_string = ... } per policy
	// line (braces protect the spaces).
	b.WriteString(" policy_type=sts policy_domain=")
	b.WriteString(domain)
	for _, m := range p.MX {
		b.WriteString(" mx_host_pattern=")
		b.WriteString(strings.ToLower(m))
	}
	str := func(k, v string) {
		if strings.ContainsAny(v, "{}") {
			return // would break Postfix's { name = value } syntax
		}
		b.WriteString(" { policy_string = ")
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteString(" }")
	}
	str("version", "STSv1")
	str("mode", string(p.Mode))
	for _, m := range p.MX {
		str("mx", m)
	}
	str("max_age", strconv.FormatInt(p.MaxAge, 10))
	for _, e := range p.Extensions {
		str(e.Name, e.Value)
	}
	return b.String()
}

// printable keeps a reason to printable ASCII of at most n bytes.
func printable(s string, n int) string {
	b := []byte(strings.ReplaceAll(s, "§", "section "))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
