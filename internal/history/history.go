// Package history holds the rules that need more than one scan: they
// compare a saved domain's new scan with the previous one and report what
// changed for the worse (finding/history.go has the catalog entries). They
// are pure: the previous scan and the current document in, findings out.
//
// Rules about a change see it in exactly one pair of scans; so that a
// problem stays open until it is fixed (and monitoring does not announce
// it resolved the day after), such a rule carries its finding forward from
// the previous scan while the condition lasts. When the current scan cannot
// tell (a temporary DNS failure, a failed fetch), the previous finding is
// carried as it was: temporary is not absent.
package history

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/diff"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/report"
)

// Certificate expiry steps (history-cert-expires): monitoring alerts once
// at each.
var ExpirySteps = []time.Duration{21 * 24 * time.Hour, 7 * 24 * time.Hour, 2 * 24 * time.Hour}

// Finding is a history finding and its stage: how far a problem has gone
// (the expiry step reached, the grades dropped). Alerts tell a problem
// again when its stage rises.
type Finding struct {
	finding.Finding
	Stage int
}

// GradeSubjectPrefix starts the subject of history-grade-dropped; the
// grade before the drop follows it.
const GradeSubjectPrefix = "grade before: "

// Evaluate runs the history rules on the current document cur (evidence
// included), scanned at now, against the previous scan prev (nil for the
// first scan of a domain: then only the certificate expiry rule runs).
func Evaluate(prev *diff.Scan, cur *report.Document, now time.Time) []Finding {
	e := &eval{prev: prev, cur: cur, now: now, had: map[string]report.Finding{}}
	if prev != nil {
		for _, f := range prev.Findings {
			if f.Component == string(finding.ComponentHistory) {
				e.had[diff.Key(f)] = f
			}
		}
		d := diff.Compare(*prev, diff.FromDocument(cur))
		e.diff = &d
	}
	e.certExpiry()
	if prev != nil {
		e.policyID()
		e.mxCoverage()
		e.tlsa()
		e.disappeared()
		e.grade()
	}
	sort.SliceStable(e.out, func(i, j int) bool {
		if e.out[i].ID != e.out[j].ID {
			return e.out[i].ID < e.out[j].ID
		}
		return e.out[i].Subject < e.out[j].Subject
	})
	return e.out
}

type eval struct {
	prev *diff.Scan
	cur  *report.Document
	now  time.Time
	diff *diff.Diff
	had  map[string]report.Finding // the previous scan's history findings by key
	out  []Finding
}

func (e *eval) add(id finding.ID, sev finding.Severity, stage int, subject, message, fix string) {
	e.out = append(e.out, Finding{Finding: finding.New(id, sev, subject, message, fix), Stage: stage})
}

// previous returns the previous scan's finding of id about subject.
func (e *eval) previous(id finding.ID, subject string) (report.Finding, bool) {
	f, ok := e.had[string(id)+"\x00"+subject]
	return f, ok
}

// previousOf lists the previous scan's findings of id.
func (e *eval) previousOf(id finding.ID) []report.Finding {
	var out []report.Finding
	for _, f := range e.had {
		if f.ID == string(id) {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subject < out[j].Subject })
	return out
}

// carry keeps a previous finding as it was (the current scan cannot tell).
func (e *eval) carry(f report.Finding, stage int) {
	var sev finding.Severity
	if err := sev.UnmarshalText([]byte(f.Severity)); err != nil || finding.Lookup(finding.ID(f.ID)) == nil {
		return // from a catalog this build does not know
	}
	d := finding.Lookup(finding.ID(f.ID))
	if !slices.Contains(d.Severities, sev) {
		return
	}
	e.out = append(e.out, Finding{Finding: finding.New(finding.ID(f.ID), sev, f.Subject, f.Message, f.Fix), Stage: stage})
}

// has reports whether the current scan has a finding of one of ids.
func (e *eval) has(ids ...finding.ID) bool {
	return slices.ContainsFunc(e.cur.Findings, func(f report.Finding) bool { return slices.Contains(ids, finding.ID(f.ID)) })
}

func (e *eval) fix(id finding.ID, repl ...string) string {
	pairs := append([]string{"<domain>", e.cur.Domain}, repl...)
	return strings.NewReplacer(pairs...).Replace(finding.Lookup(id).Fix)
}

func (e *eval) since() string {
	if e.prev.Doc != nil && e.prev.Doc.ScannedAt != "" {
		if t, err := time.Parse(time.RFC3339, e.prev.Doc.ScannedAt); err == nil {
			return "since the scan of " + t.UTC().Format("2006-01-02 15:04 UTC")
		}
	}
	return "since the previous scan"
}

// certExpiry: a certificate of the policy host or of an MX host expires
// within 21, 7 or 2 days (RFC 8461 §3.3, §4.2). One finding per host, for
// the certificate that expires first; certificates that have expired
// already are the scan's own findings (policy-cert-expired,
// smtp-cert-expired).
func (e *eval) certExpiry() {
	type soonest struct {
		role  string
		at    time.Time
		addrs []string
	}
	hosts := map[string]*soonest{}
	for loc, c := range diff.Leaves(e.cur) {
		if c == nil || !c.NotAfter.After(e.now) || c.NotAfter.Sub(e.now) > ExpirySteps[0] {
			continue
		}
		s := hosts[loc.Host]
		switch {
		case s == nil:
			hosts[loc.Host] = &soonest{role: loc.Role, at: c.NotAfter, addrs: []string{loc.Address}}
		case c.NotAfter.Before(s.at):
			s.at, s.addrs = c.NotAfter, []string{loc.Address}
		case c.NotAfter.Equal(s.at):
			s.addrs = append(s.addrs, loc.Address)
		}
	}
	for host, s := range hosts {
		left := s.at.Sub(e.now)
		stage := 0
		for i, step := range ExpirySteps {
			if left <= step {
				stage = i + 1
			}
		}
		sev := finding.Warning
		if stage == len(ExpirySteps) {
			sev = finding.Error
		}
		what := "The certificate of the MX host " + host
		if s.role == diff.RolePolicyHost {
			what = "The certificate of the policy host " + host
		}
		slices.Sort(s.addrs)
		e.add(finding.HistoryCertExpires, sev, stage, host,
			fmt.Sprintf("%s (at %s) expires on %s, in %s.", what, strings.Join(s.addrs, ", "), s.at.UTC().Format("2006-01-02 15:04 UTC"), days(left)),
			e.fix(finding.HistoryCertExpires, "<host>", host))
	}
}

func days(d time.Duration) string {
	n := int(d.Hours() / 24)
	switch {
	case n == 0:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	case n == 1:
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// policyID: the policy changed and the id did not (RFC 8461 §3.1, §8.1;
// STS-TXT-11, MISC-15), or the id changed and the policy did not
// (harmless, info). The subject names the id, so the problem stays open
// exactly while that id is published.
func (e *eval) policyID() {
	subject := func(id string) string { return "_mta-sts." + e.cur.Domain + " id=" + id }
	open := map[string]bool{}
	for _, f := range e.previousOf(finding.HistoryPolicyChangedSameID) {
		_, id, _ := strings.Cut(f.Subject, " id=")
		switch {
		case e.cur.Policy != nil && e.cur.Policy.ID == id,
			// No policy now: a known problem stays open, unless the
			// record is definitely gone (history-disappeared says so).
			e.cur.Policy == nil && !e.has(finding.STSRecordMissing):
			e.carry(f, 0)
			open[f.Subject] = true
		}
	}
	p := e.diff.Policy
	if p == nil || p.From == nil || p.To == nil {
		return // no policy on one side: nothing to compare
	}
	switch {
	case !p.IDChanged && p.BodyChanged() && !open[subject(p.To.ID)]:
		e.add(finding.HistoryPolicyChangedSameID, finding.Error, 0, subject(p.To.ID),
			fmt.Sprintf("The policy changed %s (%s) but _mta-sts.%s still has id %s: senders that cached the policy keep applying the old one for up to %d seconds (its max_age).",
				e.since(), policyChanges(p), e.cur.Domain, p.To.ID, p.From.MaxAge),
			e.fix(finding.HistoryPolicyChangedSameID, "<id>", mtasts.NewID(e.now, p.To.ID)))
	case p.IDChanged && !p.BodyChanged():
		e.add(finding.HistoryIDChangedSamePolicy, finding.Info, 0, "_mta-sts."+e.cur.Domain,
			fmt.Sprintf("The id changed from %s to %s %s, but the policy says the same; senders fetch it again and find what they had.", p.From.ID, p.To.ID, e.since()),
			e.fix(finding.HistoryIDChangedSamePolicy))
	}
}

func policyChanges(p *diff.PolicyChange) string {
	var parts []string
	if p.Mode {
		parts = append(parts, fmt.Sprintf("mode %s → %s", p.From.Mode, p.To.Mode))
	}
	if p.MaxAge {
		parts = append(parts, fmt.Sprintf("max_age %d → %d", p.From.MaxAge, p.To.MaxAge))
	}
	if len(p.MXAdded) > 0 {
		parts = append(parts, "mx added: "+strings.Join(p.MXAdded, ", "))
	}
	if len(p.MXRemoved) > 0 {
		parts = append(parts, "mx removed: "+strings.Join(p.MXRemoved, ", "))
	}
	if p.Extensions {
		parts = append(parts, "extension fields changed")
	}
	return strings.Join(parts, "; ")
}

// mxCoverage: an MX host that was added, or that the policy covered
// before, is not covered by an enforce or testing policy now (RFC 8461
// §4.1, §8.1).
func (e *eval) mxCoverage() {
	if e.cur.Policy == nil || e.cur.Policy.Mode == string(mtasts.ModeNone) || len(e.cur.MX) == 0 {
		// Without a policy (or the MX set) now, nothing can be matched:
		// known problems stay open unless the policy is definitely gone
		// or in mode none (then nothing is enforced).
		if e.cur.Policy == nil && !e.has(finding.STSRecordMissing) || len(e.cur.MX) == 0 && e.has(finding.MXUndetermined) {
			for _, f := range e.previousOf(finding.HistoryMXNotCovered) {
				e.carry(f, 0)
			}
		}
		return
	}
	sev, effect := finding.Warning, "under the testing policy senders deliver anyway and report the failure"
	if e.cur.Policy.Mode == string(mtasts.ModeEnforce) {
		sev, effect = finding.Error, "senders that apply the enforce policy will not deliver to it"
	}
	var before map[string]*bool
	if e.prev.Doc != nil {
		before = map[string]*bool{}
		for _, m := range e.prev.Doc.MX {
			before[m.Host] = m.PolicyMatch
		}
	}
	for _, m := range e.cur.MX {
		if m.PolicyMatch == nil || *m.PolicyMatch {
			continue
		}
		fix := e.fix(finding.HistoryMXNotCovered, "<mx>", m.Host, "<id>", mtasts.NewID(e.now, e.cur.Policy.ID))
		if _, had := e.previous(finding.HistoryMXNotCovered, m.Host); had {
			e.add(finding.HistoryMXNotCovered, sev, 0, m.Host,
				fmt.Sprintf("%s is still not covered by the policy (mode %s, mx %s): %s.", m.Host, e.cur.Policy.Mode, strings.Join(e.cur.Policy.MX, ", "), effect), fix)
			continue
		}
		if before == nil {
			continue // the previous MX set is not known (a summary)
		}
		was, inPrev := before[m.Host]
		switch {
		case !inPrev:
			e.add(finding.HistoryMXNotCovered, sev, 0, m.Host,
				fmt.Sprintf("%s was added to the MX records %s and no mx pattern of the policy (mode %s, mx %s) covers it: %s.", m.Host, e.since(), e.cur.Policy.Mode, strings.Join(e.cur.Policy.MX, ", "), effect), fix)
		case was != nil && *was:
			e.add(finding.HistoryMXNotCovered, sev, 0, m.Host,
				fmt.Sprintf("The policy covered %s at the previous scan but no longer does %s (mode %s, mx %s): %s.", m.Host, e.since(), e.cur.Policy.Mode, strings.Join(e.cur.Policy.MX, ", "), effect), fix)
		}
	}
}

// tlsa: DANE authenticated an MX host's addresses at the previous scan and
// no longer does, because the certificate or the TLSA records changed
// (RFC 7672 §3.2; RFC 7671 §8.1; MISC-40).
func (e *eval) tlsa() {
	mismatch := map[string][]string{} // host → addresses whose chain no longer matches
	for _, m := range e.cur.MX {
		for _, a := range m.Addresses {
			if a.DANE != nil && a.DANE.Status == "mismatch" {
				mismatch[m.Host] = append(mismatch[m.Host], a.IP)
			}
		}
	}
	if e.prev.Doc == nil {
		for _, f := range e.previousOf(finding.HistoryTLSAMismatch) {
			if len(mismatch[f.Subject]) > 0 {
				e.carry(f, 0)
			}
		}
		return
	}
	validBefore := map[string]bool{} // "host ip" that DANE authenticated
	for _, m := range e.prev.Doc.MX {
		for _, a := range m.Addresses {
			if a.DANE != nil && a.DANE.Status == "valid" {
				validBefore[m.Host+" "+a.IP] = true
			}
		}
	}
	hosts := make([]string, 0, len(mismatch))
	for h := range mismatch {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		var broken []string
		for _, ip := range mismatch[h] {
			if validBefore[h+" "+ip] {
				broken = append(broken, ip)
			}
		}
		old, had := e.previous(finding.HistoryTLSAMismatch, h)
		if len(broken) == 0 {
			if had {
				e.carry(old, 0)
			}
			continue
		}
		var why []string
		for _, c := range e.diff.Certs {
			if c.Role == diff.RoleMX && c.Host == h && slices.Contains(broken, c.Address) && c.From != nil && c.To != nil && (c.Key || c.From.SHA256 != c.To.SHA256) {
				if c.Key {
					why = append(why, "the certificate at "+c.Address+" has a new key")
				} else {
					why = append(why, "the certificate at "+c.Address+" changed")
				}
			}
		}
		for _, t := range e.diff.TLSA {
			if t.Host == h {
				why = append(why, "the TLSA records changed")
			}
		}
		cause := "the certificate or the TLSA records changed"
		if len(why) > 0 {
			cause = strings.Join(why, "; ")
		}
		e.add(finding.HistoryTLSAMismatch, finding.Error, 0, h,
			fmt.Sprintf("The TLSA records of %s matched the certificate at %s at the previous scan and no longer do: %s. DANE senders will not deliver to %s.", h, strings.Join(broken, ", "), cause, h),
			e.fix(finding.HistoryTLSAMismatch, "<mx>", h))
	}
}

// disappeared: something the previous scan found is definitely gone now
// (NXDOMAIN or NODATA, never a temporary failure): the MTA-STS record,
// the policy host, the TLS-RPT record, an MX host's TLSA records (RFC 8461
// §3.1, §5.1, §8.3; RFC 8460 §3; RFC 7672 §2.2).
func (e *eval) disappeared() {
	prevMode := ""
	if e.prev.Doc != nil && e.prev.Doc.Policy != nil {
		prevMode = e.prev.Doc.Policy.Mode
	}
	stsSev := func() (finding.Severity, string) {
		if prevMode == string(mtasts.ModeNone) {
			return finding.Info, "the policy was in mode none, so nothing is enforced"
		}
		return finding.Error, fmt.Sprintf("senders that cached the %s policy keep applying it until its max_age runs out, while new senders see no MTA-STS", prevMode)
	}
	type gone struct {
		subject string
		before  bool // the previous scan had it
		now     bool // the current scan says definitely absent
		unsure  bool // the current scan cannot tell
		say     func() (finding.Severity, string)
	}
	checks := []gone{
		{subject: "_mta-sts." + e.cur.Domain,
			before: e.prev.Doc != nil && e.prev.Doc.Policy != nil,
			now:    e.has(finding.STSRecordMissing),
			unsure: e.has(finding.STSRecordUndetermined),
			say: func() (finding.Severity, string) {
				s, effect := stsSev()
				return s, fmt.Sprintf("The MTA-STS record _mta-sts.%s is gone (%s had policy id %s): %s.", e.cur.Domain, e.sinceWord(), e.prev.Doc.Policy.ID, effect)
			}},
		{subject: "mta-sts." + e.cur.Domain,
			before: e.prev.Doc != nil && e.prev.Doc.Policy != nil,
			now:    e.has(finding.PolicyHostNoAddress) && !e.has(finding.STSRecordMissing),
			unsure: e.has(finding.PolicyHostUndetermined),
			say: func() (finding.Severity, string) {
				s, effect := stsSev()
				return s, fmt.Sprintf("The policy host mta-sts.%s has no address any more, while the record still points senders at it: %s.", e.cur.Domain, effect)
			}},
		{subject: "_smtp._tls." + e.cur.Domain,
			before: e.prev.Doc != nil && e.prev.Doc.TLSRPT != nil,
			now:    e.has(finding.TLSRPTMissing),
			unsure: e.has(finding.TLSRPTUndetermined),
			say: func() (finding.Severity, string) {
				return finding.Warning, fmt.Sprintf("The TLS-RPT record _smtp._tls.%s is gone: senders stop reporting failed TLS connections.", e.cur.Domain)
			}},
	}
	if e.prev.Doc != nil {
		for _, m := range e.cur.MX {
			if m.DANE == nil {
				continue
			}
			var before *report.MXDANE
			for _, pm := range e.prev.Doc.MX {
				if pm.Host == m.Host {
					before = pm.DANE
				}
			}
			owner := m.DANE.Owner
			if owner == "" {
				owner = "_25._tcp." + m.Host
			}
			host := m.Host
			checks = append(checks, gone{subject: owner,
				before: before != nil && len(before.Records) > 0 && before.DNSSEC == "secure",
				now:    m.DANE.Status == "none",
				unsure: m.DANE.Status == "lookup-failed",
				say: func() (finding.Severity, string) {
					return finding.Warning, fmt.Sprintf("The TLSA records of %s at %s are gone: DANE no longer protects mail to %s.", host, owner, host)
				}})
		}
	}
	for _, c := range checks {
		old, had := e.previous(finding.HistoryDisappeared, c.subject)
		switch {
		case c.before && c.now && !had:
			sev, msg := c.say()
			e.add(finding.HistoryDisappeared, sev, 0, c.subject, msg, e.fix(finding.HistoryDisappeared))
		case had && (c.now || c.unsure):
			e.carry(old, 0)
		}
	}
	// A disappeared item whose check did not run now (the previous report
	// is a summary, or the MX host is gone): kept while unsure.
	for _, f := range e.previousOf(finding.HistoryDisappeared) {
		if !slices.ContainsFunc(checks, func(c gone) bool { return c.subject == f.Subject }) && e.prev.Doc == nil {
			e.carry(f, 0)
		}
	}
}

func (e *eval) sinceWord() string {
	if s := e.since(); strings.HasPrefix(s, "since the scan of ") {
		return "the scan of " + strings.TrimPrefix(s, "since the scan of ")
	}
	return "the previous scan"
}

// grade: the grade is worse than before the drop. The grade before the
// drop is kept in the subject, so the finding stays open until the grade
// is back there, and its stage is how many grades it fell.
func (e *eval) grade() {
	cur := ""
	if e.cur.Grade != nil {
		cur = *e.cur.Grade
	}
	olds := e.previousOf(finding.HistoryGradeDropped)
	ref := e.prev.Grade
	if len(olds) > 0 {
		ref = strings.TrimPrefix(olds[0].Subject, GradeSubjectPrefix)
	}
	if cur == "" {
		// Undetermined now: no verdict; a drop stays open.
		for _, f := range olds {
			e.carry(f, max(0, diff.Rank(e.prev.Grade)-diff.Rank(ref)))
		}
		return
	}
	if diff.Rank(ref) < 0 || diff.Rank(cur) <= diff.Rank(ref) {
		return
	}
	sev := finding.Warning
	if cur == string(finding.GradeD) || cur == string(finding.GradeF) {
		sev = finding.Error
	}
	msg := fmt.Sprintf("The grade dropped from %s to %s %s.", ref, cur, e.since())
	if len(olds) > 0 {
		msg = fmt.Sprintf("The grade is %s; it was %s before it dropped.", cur, ref)
	}
	if n := len(e.cur.GradeReasons); n > 0 {
		msg += " Grade reason: " + e.cur.GradeReasons[n-1] + "."
	}
	e.add(finding.HistoryGradeDropped, sev, diff.Rank(cur)-diff.Rank(ref), GradeSubjectPrefix+ref, msg, e.fix(finding.HistoryGradeDropped))
}
