package tlsrptagg

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// Label says what a reported failure means for the domain now
// (tlsrpt-landscape.md §5.1.7).
type Label string

// Labels.
const (
	// Blocking: the failure would bounce mail under enforce, and today's
	// scan shows it is still there (or the MX is not covered by the
	// policy).
	Blocking Label = "blocking"
	// Resolved: today's scan shows it fixed and reports after the failure
	// no longer show it, or the host is no longer an MX.
	Resolved Label = "resolved"
	// PolicyHost: senders could not fetch or validate the policy; they
	// fall back to no policy. A protection gap, not a bounce risk.
	PolicyHost Label = "policy-host"
	// Unexplained: nothing at hand explains it (or confirms it fixed).
	Unexplained Label = "unexplained"
)

// Scopes: what a failure is judged for.
const (
	ScopeMTASTS   = "mta-sts"   // an sts policy's sessions
	ScopeDANE     = "dane"      // a tlsa policy's sessions, judged for DANE
	ScopeNoPolicy = "no-policy" // sessions without a policy: opportunistic TLS
)

// Group is the failures of one kind to one MX host over a period.
type Group struct {
	Domain        string            `json:"domain"`
	Type          tlsrpt.PolicyType `json:"type"`
	ResultType    tlsrpt.ResultType `json:"result_type"`
	MX            string            `json:"receiving_mx"`
	Count         int64             `json:"count"`
	First         time.Time         `json:"first_day"`
	Last          time.Time         `json:"last_day"`
	Organizations []string          `json:"organizations"`
	Reasons       []string          `json:"failure_reason_codes,omitempty"` // up to 5
	Reports       []Ref             `json:"reports"`
}

// Groups collects the failures of the rows matching f (any policy type)
// into groups by policy type, result type and MX host, largest first.
func (s *Summary) Groups(f Filter) []Group {
	idx := map[[3]string]int{}
	var out []Group
	for _, r := range s.Rows {
		if !f.match(r.Domain, r.Day, r.Type, r.Organization) {
			continue
		}
		for _, fl := range r.Failures {
			k := [3]string{string(r.Type), string(fl.ResultType), fl.MX}
			i, ok := idx[k]
			if !ok {
				i = len(out)
				idx[k] = i
				out = append(out, Group{Domain: r.Domain, Type: r.Type, ResultType: fl.ResultType, MX: fl.MX, First: r.Day})
			}
			g := &out[i]
			g.Count += fl.Count
			if r.Day.Before(g.First) {
				g.First = r.Day
			}
			if r.Day.After(g.Last) {
				g.Last = r.Day
			}
			if !slices.Contains(g.Organizations, r.Organization) {
				g.Organizations = append(g.Organizations, r.Organization)
			}
			if fl.Reason != "" && len(g.Reasons) < 5 && !slices.Contains(g.Reasons, fl.Reason) {
				g.Reasons = append(g.Reasons, fl.Reason)
			}
			for _, ref := range r.Reports {
				if !slices.Contains(g.Reports, ref) {
					g.Reports = append(g.Reports, ref)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Type, b.Type), cmp.Compare(a.MX, b.MX), cmp.Compare(a.ResultType, b.ResultType))
	})
	return out
}

// LastReportDay is the last day with sessions of type typ for domain, or
// the zero time.
func (s *Summary) LastReportDay(domain string, typ tlsrpt.PolicyType) time.Time {
	return s.lastDay(domain, typ, time.Time{}, time.Time{})
}

// lastDay is LastReportDay among the days [from, to) (zero: open).
func (s *Summary) lastDay(domain string, typ tlsrpt.PolicyType, from, to time.Time) time.Time {
	var last time.Time
	f := Filter{Domain: domain, Type: typ, From: from, To: to}
	for _, r := range s.Rows {
		if f.match(r.Domain, r.Day, r.Type, r.Organization) && r.Successful+r.Failed > 0 && r.Day.After(last) {
			last = r.Day
		}
	}
	return last
}

// Scan is what today's scan of the domain says, reduced to what failure
// explanation needs. [FromCheck] builds it from a check report.
type Scan struct {
	At time.Time `json:"at"`
	// MXKnown: the MX lookup gave an answer (records, or none: the
	// domain itself is the MX). False when it failed: then the MX set is
	// unknown, not empty.
	MXKnown bool               `json:"mx_known"`
	MX      map[string]MXState `json:"mx"` // by lower-case host name
}

// MXState is one MX host in today's scan.
type MXState struct {
	// Probed: at least one address was reached and its STARTTLS and TLS
	// judged. Addresses the scanner could not connect to (its own network
	// often blocks port 25) do not count: not seen is not fine.
	Probed bool `json:"probed"`
	// Pass: every judged address passes as MTA-STS senders see it.
	Pass       bool              `json:"pass"`
	Problem    string            `json:"problem,omitempty"`     // why not, in plain words
	ResultType tlsrpt.ResultType `json:"result_type,omitempty"` // what a reporting sender would say now
	// DANE is the scan's DANE status for the host ("valid", "invalid",
	// "none", ...; see check.DANEHost).
	DANE string `json:"dane,omitempty"`
}

// FromCheck reduces a check report to a Scan taken at at.
func FromCheck(r *check.Report, at time.Time) *Scan {
	s := &Scan{At: at, MX: map[string]MXState{}}
	if r.Evidence != nil && r.Evidence.DNS.MX != nil {
		st := r.Evidence.DNS.MX.Status
		s.MXKnown = !st.Temporary()
	} else {
		s.MXKnown = len(r.MX) > 0
	}
	for _, m := range r.MX {
		st := MXState{Pass: true}
		for _, a := range m.Addresses {
			if a.Probe == nil || unreachable(a.Probe.Class) {
				continue
			}
			st.Probed = true
			if !a.Pass {
				st.Pass = false
				if st.Problem == "" {
					st.Problem = a.IP + ": " + firstNonEmpty(a.CertError, a.Probe.Error, "does not pass STARTTLS and certificate checks")
					st.ResultType = a.ResultType
				}
			}
		}
		if !st.Probed {
			st.Pass = false
		}
		if m.DANE != nil {
			st.DANE = m.DANE.Status
		}
		s.MX[domain.Canonical(m.Host)] = st
	}
	return s
}

// unreachable: the scanner could not get to the TLS stage for reasons
// that say nothing about the host's TLS.
func unreachable(c smtpprobe.Class) bool {
	switch c {
	case smtpprobe.ConnectRefused, smtpprobe.ConnectTimeout, smtpprobe.ConnectError, smtpprobe.ConnectBlocked,
		smtpprobe.BannerTimeout, smtpprobe.BannerClosed, smtpprobe.BannerTemporary, smtpprobe.BannerPermanent,
		smtpprobe.BannerMalformed, smtpprobe.EHLOFailed:
		return true
	}
	return false
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// Current is what mailtls knows about a domain now.
type Current struct {
	Policy   *mtasts.Policy `json:"policy"`    // the policy served now; nil when none
	PolicyID string         `json:"policy_id"` // its id
	Scan     *Scan          `json:"scan"`      // today's scan; nil when there is none
}

// Explanation is a failure group with what it means now.
type Explanation struct {
	Group
	Label Label  `json:"label"`
	Scope string `json:"scope"`
	Why   string `json:"why"`
}

// Explain labels a failure group against the current policy and scan
// (tlsrpt-landscape.md §5.1.7). lastDay is the last day the domain has
// reports of the group's policy type: a failure seen before it, on an MX
// today's scan shows healthy, is resolved; one seen on it is not yet.
func Explain(g Group, cur Current, lastDay time.Time) Explanation {
	e := Explanation{Group: g, Scope: scope(g)}
	mx := domain.Canonical(g.MX)
	var st MXState
	inScan := false
	if cur.Scan != nil {
		st, inScan = cur.Scan.MX[mx]
	}
	switch {
	case g.ResultType == tlsrpt.STSPolicyFetchError || g.ResultType == tlsrpt.STSWebPKIInvalid || g.ResultType == tlsrpt.STSPolicyInvalid:
		e.Label = PolicyHost
		what := map[tlsrpt.ResultType]string{
			tlsrpt.STSPolicyFetchError: "could not fetch the policy",
			tlsrpt.STSWebPKIInvalid:    "did not trust the policy host's certificate",
			tlsrpt.STSPolicyInvalid:    "found the policy invalid",
		}[g.ResultType]
		e.Why = fmt.Sprintf("%d session(s) where senders %s from mta-sts.%s (RFC 8461 §3.3): they fall back to no policy, a protection gap rather than a bounce risk; check the policy host", g.Count, what, g.Domain)
		if len(g.Reasons) > 0 {
			e.Why += fmt.Sprintf(" (senders said: %s)", strings.Join(g.Reasons, "; "))
		}
		return e
	case g.MX == UnknownMX || mx == "":
		e.Label = Unexplained
		e.Why = fmt.Sprintf("%d %s session(s) without a receiving MX host in the reports, so they cannot be matched to a host", g.Count, g.ResultType)
		return e
	}
	if e.Scope == ScopeMTASTS && cur.Policy != nil {
		if _, ok := cur.Policy.Match(mx); !ok {
			if cur.Scan != nil && cur.Scan.MXKnown && !inScan {
				e.Label = Resolved
				e.Why = fmt.Sprintf("%s is not an MX of %s in today's scan, and the current policy does not name it either", g.MX, g.Domain)
				return e
			}
			e.Label = Blocking
			e.Why = fmt.Sprintf("MX not covered by policy: %s matches none of the policy's patterns %s (RFC 8461 §4.1: a \"*.\" pattern matches one label only); under enforce, senders refuse to deliver to it", g.MX, quoteAll(cur.Policy.MX))
			return e
		}
	}
	switch {
	case cur.Scan == nil:
		e.Label = Unexplained
		e.Why = fmt.Sprintf("there is no scan of today to tell whether %s's %s is still there", g.MX, g.ResultType)
	case !inScan && cur.Scan.MXKnown:
		e.Label = Resolved
		e.Why = fmt.Sprintf("%s is no longer an MX of %s in today's scan", g.MX, g.Domain)
	case !inScan:
		e.Label = Unexplained
		e.Why = fmt.Sprintf("today's MX lookup failed, so it is unknown whether %s is still an MX", g.MX)
	case e.Scope == ScopeDANE:
		e = explainDANE(e, st, lastDay)
	case !st.Probed:
		e.Label = Unexplained
		e.Why = fmt.Sprintf("today's scan could not reach %s over SMTP, so it cannot tell whether the %s is fixed", g.MX, g.ResultType)
	case !st.Pass:
		e.Label = Blocking
		e.Why = fmt.Sprintf("%s: %s in today's scan too", g.MX, st.Problem)
		if e.Scope == ScopeMTASTS {
			e.Why += "; under enforce, senders refuse to deliver to it"
		}
	case g.Last.Before(lastDay):
		e.Label = Resolved
		e.Why = fmt.Sprintf("today's scan shows %s healthy, and the reports after %s no longer show the %s", g.MX, g.Last.Format(time.DateOnly), g.ResultType)
	default:
		e.Label = Unexplained
		e.Why = fmt.Sprintf("today's scan shows %s healthy, yet senders reported %s on %s and no later report shows it gone", g.MX, g.ResultType, g.Last.Format(time.DateOnly))
		if g.ResultType == tlsrpt.ValidationFailure {
			e.Why += "; a validation-failure the scan cannot reproduce can come from the TLS library of one sender (Microsoft reported TLS 1.3 session-ticket problems this way, mox #237)"
		}
	}
	return e
}

func explainDANE(e Explanation, st MXState, lastDay time.Time) Explanation {
	switch st.DANE {
	case "valid":
		if e.Last.Before(lastDay) {
			e.Label = Resolved
			e.Why = fmt.Sprintf("today's scan shows DANE valid for %s, and the reports after %s no longer show the %s", e.MX, e.Last.Format(time.DateOnly), e.ResultType)
		} else {
			e.Label = Unexplained
			e.Why = fmt.Sprintf("today's scan shows DANE valid for %s, yet senders reported %s on %s", e.MX, e.ResultType, e.Last.Format(time.DateOnly))
		}
	case "invalid", "unusable", "lookup-failed":
		e.Label = Blocking
		e.Why = fmt.Sprintf("DANE for %s is %s in today's scan too: DANE senders (RFC 7672) refuse to deliver to it", e.MX, st.DANE)
	default:
		e.Label = Unexplained
		e.Why = fmt.Sprintf("today's scan gives no DANE verdict for %s (%s)", e.MX, firstNonEmpty(st.DANE, "unknown"))
	}
	return e
}

// scope: DANE results and tlsa policies are judged for DANE; failures
// under no policy are opportunistic TLS (tlsrpt-landscape.md §5.1.7).
func scope(g Group) string {
	switch {
	case g.Type == tlsrpt.PolicyTLSA:
		return ScopeDANE
	case g.Type == tlsrpt.PolicySTS:
		return ScopeMTASTS
	case g.ResultType == tlsrpt.TLSAInvalid || g.ResultType == tlsrpt.DNSSECInvalid || g.ResultType == tlsrpt.DANERequired:
		return ScopeDANE
	}
	return ScopeNoPolicy
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
