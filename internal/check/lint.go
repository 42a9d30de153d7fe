package check

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/webpki"
)

// LintOptions control Lint.
type LintOptions struct {
	// ServedAs is the Content-Type the file will be served with; "" means
	// "text/plain; charset=utf-8".
	ServedAs string
	// Live is a scan of the domain, for MX coverage in both directions and
	// for comparing the draft with the published policy; nil lints the file
	// alone.
	Live *scan.Observations
	Now  time.Time
}

// Lint checks a draft policy before it is published, with the same rules
// and finding IDs as a scan: every rule of the policy grammar and the advice
// per mode, how real senders would read it when served as ServedAs, and
// with a live scan the MX coverage and whether the published id must
// change (RFC 8461 §3.1, §3.2, §4.1).
func Lint(draft []byte, o LintOptions) *Report {
	ct := o.ServedAs
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	obs := &scan.Observations{Domain: "draft.invalid"}
	var published *mtasts.Policy
	id := "draft"
	if o.Live != nil {
		live := *o.Live
		obs = &live
		pub := Evaluate(o.Live, o.Now)
		published = pub.Policy
		if pub.PolicyID != "" {
			id = pub.PolicyID
		}
	}
	obs.PolicyHost = "mta-sts." + obs.Domain
	// The draft is judged as if it were served, under a valid record.
	ip := netip.MustParseAddr("192.0.2.1")
	obs.DNS.STS = &resolve.Answer{Name: "_mta-sts." + obs.Domain, Type: "TXT", Status: resolve.StatusOK, Records: []resolve.Record{
		{Name: "_mta-sts." + obs.Domain, Type: "TXT", TTL: 300, Text: []string{mtasts.RecordText(id)}}}}
	obs.DNS.PolicyHostA = &resolve.Answer{Name: obs.PolicyHost, Type: "A", Status: resolve.StatusOK, Records: []resolve.Record{{Name: obs.PolicyHost, Type: "A", Addr: ip}}}
	obs.DNS.PolicyHostAAAA = &resolve.Answer{Name: obs.PolicyHost, Type: "AAAA", Status: resolve.StatusNoData}
	body := draft
	tooLarge := len(body) > mtasts.MaxPolicySize
	if tooLarge {
		body = body[:mtasts.MaxPolicySize]
	}
	obs.Fetches = []*fetch.Result{{
		URL: "https://" + obs.PolicyHost + mtasts.PolicyPath, Host: obs.PolicyHost, Address: "(draft)",
		TLS:    &fetch.TLS{Version: "TLS 1.3", Verdict: webpki.Verdict{Trusted: true, NameMatch: true}},
		Status: 200, Header: map[string]string{"Content-Type": ct}, Body: body, BodyBytes: int64(len(draft)), TooLarge: tooLarge,
	}}
	r := Evaluate(obs, o.Now)

	// Keep what is about the file and its coverage.
	keep := func(f finding.Finding) bool {
		switch f.Component {
		case finding.ComponentPolicy:
			return true
		case finding.ComponentMX:
			return o.Live != nil && slices.Contains([]finding.ID{finding.MXNotCovered, finding.MXPatternStale, finding.MXImplicit, finding.MXNull}, f.ID)
		case finding.ComponentPolicyHost:
			return slices.Contains([]finding.ID{finding.PolicyContentType, finding.PolicyCharset, finding.PolicyTooLarge, finding.PolicyHTML}, f.ID)
		}
		return false
	}
	r.Findings = slices.DeleteFunc(r.Findings, func(f finding.Finding) bool { return !keep(f) })
	r.Fixes = slices.DeleteFunc(r.Fixes, func(f Fix) bool { return f.Kind != FixPolicy })
	r.Grade, r.GradeReasons, r.Evidence = "", nil, o.Live

	if o.Live != nil && published != nil && r.Policy != nil && (!r.Policy.Equal(published)) {
		next := mtasts.NewID(o.Now, id)
		r.Findings = append(r.Findings, finding.New(finding.STSIDUnchanged, finding.Warning, "_mta-sts."+obs.Domain,
			fmt.Sprintf("The draft differs from the policy published at %s (id %s); senders that cached the published policy keep it until they see a new id.", obs.PolicyHost, id),
			fmt.Sprintf("Serve the draft first, then publish TXT _mta-sts.%s %q.", obs.Domain, mtasts.RecordText(next))))
		r.Fixes = append(r.Fixes, Fix{Kind: FixDNS, Record: STSRecord(obs.Domain, next), Text: "Publish after the new policy file is online."})
	}
	if o.Live == nil {
		r.Domain = ""
		// Without the live MX set, the canonical rewrite keeps the draft's
		// own patterns.
		pp := mtasts.ParsePolicy(body)
		if len(r.Fixes) == 0 && pp.Draft.Mode != "" && slices.ContainsFunc(r.Findings, func(f finding.Finding) bool {
			return f.Component == finding.ComponentPolicy && f.Severity >= finding.Warning && f.ID != finding.PolicySenderDivergence
		}) {
			p := pp.Draft
			p.Version = "STSv1"
			for _, q := range pp.Problems {
				if q.Code != mtasts.PolicyMXInvalid {
					continue
				}
				_, v, _ := strings.Cut(q.Text, ":")
				for _, fixed := range mtasts.RepairPattern(strings.TrimSpace(v)) {
					if !slices.Contains(p.MX, fixed) {
						p.MX = append(p.MX, fixed)
					}
				}
			}
			if p.Mode == mtasts.ModeEnforce && p.MaxAge < mtasts.EnforceMaxAge {
				p.MaxAge = mtasts.EnforceMaxAge
			} else if p.MaxAge < mtasts.TestingMaxAge {
				p.MaxAge = mtasts.TestingMaxAge
			}
			if p.Mode == mtasts.ModeNone || len(p.MX) > 0 {
				r.Fixes = append(r.Fixes, Fix{Kind: FixPolicy, URL: "https://mta-sts.<domain>" + mtasts.PolicyPath, Content: p.String(), ContentType: "text/plain; charset=utf-8",
					Text: "The draft in canonical form (CRLF, version first, one line per field)."})
			}
		}
	}
	finding.Sort(r.Findings)
	return r
}
