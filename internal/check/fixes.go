package check

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// RecordTTL is the TTL suggested for the TXT records: short enough that a
// new id propagates within an hour (STS-TXT-21).
const RecordTTL = 3600

// TLSRPTPlaceholder is the report address suggested when the domain has
// none; the fix says it must be edited.
const TLSRPTPlaceholder = "tlsrpt@"

// fixes builds the steps that repair what was found: the exact records to
// publish or delete, the policy file built from the live MX set, and notes
// for what is not a record. Publishing them clears the record, policy and
// TLS-RPT errors (tested in check_test.go and the end-to-end tests).
//
// It reads what the steps before it decided (in) and every finding made.
func (e *evaluator) fixes(in fixInput) []Fix {
	if !e.receivesMail() {
		return nil
	}
	d := e.o.Domain
	id := in.id
	var out, dnsFixes []Fix

	policy, changed := e.policyFix(in)
	if changed {
		out = append(out, Fix{
			Kind: FixPolicy, URL: "https://" + e.o.PolicyHost + fetch.Path, Content: policy.String(),
			ContentType: "text/plain; charset=utf-8",
			Text:        "Serve this file (CRLF line endings, no byte-order mark) before you publish the TXT record with the new id.",
		})
	}

	// The _mta-sts record: a new one when it is missing or broken, or when
	// the policy content changes (a new id makes senders refetch).
	stsName := "_mta-sts." + d
	switch {
	case in.rec.state == recUndetermined:
	case changed || in.rec.state != recValid || in.hasProblem(finding.ComponentRecord,
		finding.STSRecordUnrelatedTXT, finding.STSRecordAtApex, finding.STSRecordDraftName, finding.STSPolicyNotAdvertised):
		// Replace whatever is there with one clean record; a CNAME that
		// leads nowhere has to go first.
		if a := e.o.DNS.STS; a != nil && len(a.CNAMEs) > 0 {
			c := a.CNAMEs[0]
			dnsFixes = append(dnsFixes, Fix{Kind: FixDNS, Action: "delete", Name: stsName, Type: "CNAME", TTL: int(c.TTL), Value: c.Host + "."})
		}
		dnsFixes = append(dnsFixes, e.deletions(stsName, e.o.DNS.STS, func(string) bool { return true })...)
		f := Fix{Kind: FixDNS, Action: "publish", Name: stsName, Type: "TXT", TTL: RecordTTL, Value: mtasts.VersionTag + "; id=" + id}
		if changed {
			f.Text = "Publish this record after the policy file is online: the new id makes senders fetch it."
		}
		dnsFixes = append(dnsFixes, f)
	default:
		// The record is fine; only what sits beside it goes (STS-TXT-3).
		dnsFixes = append(dnsFixes, e.deletions(stsName, e.o.DNS.STS, func(t string) bool { return !mtasts.IsCandidate(t) })...)
	}
	dnsFixes = append(dnsFixes, e.deletions(d, e.o.DNS.Apex, mtasts.LooksLikeRecord)...)
	dnsFixes = append(dnsFixes, e.deletions("_mta_sts."+d, e.o.DNS.STSDraft, mtasts.LooksLikeRecord)...)

	// The TLS-RPT record.
	rptName := "_smtp._tls." + d
	rptBroken := in.rpt.state == recInvalid || in.hasProblem(finding.ComponentTLSRPT) || in.rpt.draftName
	if in.rpt.state != recUndetermined && (rptBroken || in.rpt.state == recAbsent && in.status != StatusNone) {
		uris := e.reportURIs(in.rpt.rec)
		placeholder := len(uris) == 0
		if placeholder {
			uris = []string{"mailto:" + TLSRPTPlaceholder + d}
		}
		dnsFixes = append(dnsFixes, e.deletions(rptName, e.o.DNS.TLSRPT, func(string) bool { return true })...)
		f := Fix{Kind: FixDNS, Action: "publish", Name: rptName, Type: "TXT", TTL: RecordTTL, Value: tlsrpt.VersionTag + "; rua=" + strings.Join(uris, ",")}
		if placeholder {
			f.Text = "mailto:" + TLSRPTPlaceholder + d + " is a placeholder: replace it with a mailbox (or https: endpoint) that reads TLS reports."
		}
		dnsFixes = append(dnsFixes, f)
	}
	dnsFixes = append(dnsFixes, e.deletions("_smtp-tlsrpt."+d, e.o.DNS.TLSRPTDraft, tlsrpt.LooksLikeRecord)...)
	dnsFixes = append(dnsFixes, e.deletions("_smtp_tlsrpt."+d, e.o.DNS.TLSRPTDraftUnder, tlsrpt.LooksLikeRecord)...)
	dnsFixes = append(dnsFixes, in.tlsa...)
	out = append(out, dnsFixes...)

	// What is not a record: the web server of the policy host, the MX
	// hosts' TLS.
	var notes []string
	if changed && (in.host.state == hostNoAddress || in.rec.state == recAbsent && in.host.state != hostResolved) {
		notes = append(notes, fmt.Sprintf("Point %s at a web server (A/AAAA records, or a CNAME to your policy-hosting provider) that has a publicly trusted certificate for %s and serves the policy file above at https://%s%s.", e.o.PolicyHost, e.o.PolicyHost, e.o.PolicyHost, fetch.Path))
	}
	for _, f := range in.findings {
		hostNote := f.Component == finding.ComponentPolicyHost && f.ID != finding.PolicyHostNoAddress && f.ID != finding.PolicyHostUndetermined
		smtpNote := f.Component == finding.ComponentSMTP && f.ID != finding.SMTPUnreachable && f.ID != finding.SMTPBannerRefused && f.ID != finding.SMTPNoBanner
		if (hostNote || smtpNote) && f.Severity >= finding.Warning && !slices.Contains(notes, f.Fix) {
			notes = append(notes, f.Fix)
		}
	}
	for _, n := range notes {
		out = append(out, Fix{Kind: FixNote, Text: n})
	}
	return out
}

// fixInput is what the fixes are built from: the verdicts of the other
// steps, the findings, and the id to publish.
type fixInput struct {
	id       string // the fresh policy id
	rec      recordVerdict
	rpt      rptVerdict
	host     hostVerdict
	file     fileVerdict
	status   Status
	cover    *mtasts.Policy // the policy MX hosts were matched against
	tlsa     []Fix          // TLSA records to publish (daneFindings)
	findings []finding.Finding
}

// has reports whether a finding with id was made.
func (in fixInput) has(id finding.ID) bool {
	return slices.ContainsFunc(in.findings, func(f finding.Finding) bool { return f.ID == id })
}

// receivesMail reports whether the domain takes mail at all: MTA-STS fixes
// make no sense for a domain that does not exist or has a null MX.
func (e *evaluator) receivesMail() bool {
	a := e.o.DNS.MX
	if a == nil {
		return false
	}
	if a.Status == resolve.StatusNXDomain || scan.IsNullMX(a) {
		return false
	}
	if a.Status == resolve.StatusNoData {
		for _, h := range e.o.MXHosts {
			if len(h.Addrs()) > 0 {
				return true
			}
		}
		return false
	}
	return true
}

// hasProblem reports whether a finding of at least warning severity
// exists in component c, ignoring the listed IDs.
func (in fixInput) hasProblem(c finding.Component, ignore ...finding.ID) bool {
	for _, f := range in.findings {
		if f.Component == c && f.Severity >= finding.Warning && !slices.Contains(ignore, f.ID) {
			return true
		}
	}
	return false
}

// policyFix returns the policy to serve and whether it differs from what is
// served now (or nothing valid is served). It keeps the current mode (testing
// for a new policy), keeps existing patterns that cover an MX host, adds the
// MX hosts nothing covers and drops stale patterns; max_age is raised to the
// recommended minimum for the mode (MISC-17).
func (e *evaluator) policyFix(in fixInput) (*mtasts.Policy, bool) {
	if in.rec.state == recUndetermined || in.host.state == hostUndetermined || e.o.DNS.MX == nil || e.o.DNS.MX.Status.Temporary() {
		return nil, false
	}
	var cur *mtasts.Policy
	if in.file.policy() != nil && len(in.host.usable) > 0 {
		cur = in.file.policy()
	}
	base := mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeTesting}
	if in.file.parsed != nil {
		d := in.file.parsed.Draft
		if d.Mode != "" {
			base.Mode = d.Mode
		}
		base.MaxAge = d.MaxAge
		for _, x := range d.Extensions {
			if !strings.Contains(x.Value, ":") {
				base.Extensions = append(base.Extensions, x)
			}
		}
	}
	want := base
	want.MX = e.wantedPatterns(in.cover)
	if len(want.MX) == 0 && want.Mode != mtasts.ModeNone {
		return nil, false
	}
	// Never print a policy that leaves a live MX host out (RFC 8461 §4.1):
	// under enforce, senders would refuse to deliver there. Nor one that
	// senders would not read whole (RFC 8461 §3.3: 64 KiB).
	for _, h := range e.o.MXHosts {
		if _, ok := want.Match(h.Host); !ok && deliverable(h) && !(h.Implicit && len(h.Addrs()) == 0) {
			return nil, false
		}
	}
	if len(want.String()) > mtasts.MaxPolicySize {
		return nil, false
	}
	switch {
	case want.Mode == mtasts.ModeEnforce && want.MaxAge < minMaxAgeEnforce:
		want.MaxAge = minMaxAgeEnforce
	case want.Mode == mtasts.ModeTesting && want.MaxAge < minMaxAgeTesting:
		want.MaxAge = minMaxAgeTesting
	case want.Mode == mtasts.ModeNone && want.MaxAge == 0:
		want.MaxAge = minMaxAgeTesting
	}
	if cur == nil {
		return &want, true
	}
	// A problem in the file means rewriting it, even when RFC 8461 senders
	// would read the same policy: other senders may not (duplicates), and
	// the new bytes need a new id.
	problems := in.hasProblem(finding.ComponentPolicy, finding.PolicySenderDivergence) || in.has(finding.MXNotCovered)
	if !problems || want.String() == string(in.host.primary.r.Body) {
		return cur, false
	}
	return &want, true
}

// wildcardAfter is how many MX hosts one label below the same parent are
// listed one by one; more are covered by "*.<parent>" (RFC 8461 §4.1: the
// wildcard matches exactly one label), which keeps the policy short when a
// domain has many MX hosts.
const wildcardAfter = 8

// wantedPatterns builds the mx patterns from the whole MX set (every host
// of the RRset, looked up or not): an existing pattern that covers a host
// is kept, otherwise the host itself is listed, or its provider's
// one-label wildcard (mtasts.SuggestPatterns), and more than wildcardAfter
// hosts under one parent become that parent's wildcard. Hosts that senders
// cannot use (localhost, an IP address) are left out: their records must go.
func (e *evaluator) wantedPatterns(old *mtasts.Policy) []string {
	var out []string
	add := func(p string) {
		if !slices.ContainsFunc(out, func(x string) bool { return strings.EqualFold(x, p) }) {
			out = append(out, p)
		}
	}
	var listed []string // hosts listed as themselves
	for _, h := range e.o.MXHosts {
		if h.Implicit && len(h.Addrs()) == 0 || !deliverable(h) {
			continue
		}
		if old != nil {
			if pat, ok := old.Match(h.Host); ok && mtasts.CheckPattern(pat) == nil {
				add(strings.ToLower(pat))
				continue
			}
		}
		for _, p := range mtasts.SuggestPatterns([]string{h.Host}) {
			add(p)
			if p == h.Host {
				listed = append(listed, p)
			}
		}
	}
	perParent := map[string]int{}
	for _, h := range listed {
		if _, parent, ok := strings.Cut(h, "."); ok {
			perParent[parent]++
		}
	}
	for _, parent := range slices.Sorted(maps.Keys(perParent)) {
		if n := perParent[parent]; n <= wildcardAfter || mtasts.CheckPattern("*."+parent) != nil || isPublicSuffix(parent) {
			continue
		}
		out = slices.DeleteFunc(out, func(p string) bool {
			_, pp, _ := strings.Cut(p, ".")
			return pp == parent && !strings.HasPrefix(p, "*.")
		})
		add("*." + parent)
	}
	return out
}

// deletions lists the TXT records at name that match del, as delete fixes.
func (e *evaluator) deletions(name string, a *resolve.Answer, del func(string) bool) []Fix {
	if a == nil || a.Status != resolve.StatusOK {
		return nil
	}
	var out []Fix
	for _, t := range a.TXT() {
		if del(t) {
			out = append(out, Fix{Kind: FixDNS, Action: "delete", Name: name, Type: "TXT", TTL: int(a.MinTTL()), Value: t})
		}
	}
	return out
}

// reportURIs returns the usable report URIs already published (rec, the
// record senders read, or the broken records at the name), to keep them in
// a repaired record.
func (e *evaluator) reportURIs(rec *tlsrpt.Record) []string {
	if rec != nil {
		return rec.Usable
	}
	a := e.o.DNS.TLSRPT
	if a == nil || a.Status != resolve.StatusOK {
		return nil
	}
	var out []string
	for _, t := range a.TXT() {
		if !tlsrpt.LooksLikeRecord(t) {
			continue
		}
		// Salvage the usable URIs of a broken record: a record of its own
		// made from each candidate field parses or it does not.
		for _, part := range strings.FieldsFunc(t, func(r rune) bool { return r == ';' || r == ',' || r == ' ' || r == '\t' }) {
			u := strings.TrimPrefix(part, "rua=")
			if rec, _ := tlsrpt.ParseRecord(tlsrpt.VersionTag + "; rua=" + u); rec != nil && len(rec.Usable) == 1 && !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out
}
