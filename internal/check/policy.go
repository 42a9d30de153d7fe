package check

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
)

// policyCodes maps policy problems to findings and severities
// (RFC 8461 §3.2, spec-checklist §C).
var policyCodes = map[mtasts.Code]struct {
	id  finding.ID
	sev finding.Severity
}{
	mtasts.PolicyEmpty:             {finding.PolicyEmpty, finding.Error},
	mtasts.PolicyBOM:               {finding.PolicyBOM, finding.Error},
	mtasts.PolicyBareCR:            {finding.PolicyBareCR, finding.Error},
	mtasts.PolicyBlankLine:         {finding.PolicyBlankLine, finding.Error},
	mtasts.PolicyLeadingSpace:      {finding.PolicyLeadingSpace, finding.Error},
	mtasts.PolicySpaceBeforeColon:  {finding.PolicySpaceBeforeColon, finding.Error},
	mtasts.PolicyNotKeyValue:       {finding.PolicyNotKeyValue, finding.Error},
	mtasts.PolicyControlChar:       {finding.PolicyControlChar, finding.Error},
	mtasts.PolicyInvalidUTF8:       {finding.PolicyInvalidUTF8, finding.Error},
	mtasts.PolicyVersion:           {finding.PolicyVersion, finding.Error},
	mtasts.PolicyMode:              {finding.PolicyMode, finding.Error},
	mtasts.PolicyMaxAge:            {finding.PolicyMaxAge, finding.Error},
	mtasts.PolicyMXInvalid:         {finding.PolicyMXInvalid, finding.Error},
	mtasts.PolicyMXMissing:         {finding.PolicyMXMissing, finding.Error},
	mtasts.PolicyKeyCase:           {finding.PolicyKeyCase, finding.Error},
	mtasts.PolicyKeyCaseShadowed:   {finding.PolicyKeyCase, finding.Warning},
	mtasts.PolicyDuplicateConflict: {finding.PolicyDuplicateKey, finding.Error},
	mtasts.PolicyDuplicateSame:     {finding.PolicyDuplicateKey, finding.Warning},
	mtasts.PolicyMXDuplicate:       {finding.PolicyMXDuplicate, finding.Info},
	mtasts.PolicyTrailingSpace:     {finding.PolicyTrailingSpace, finding.Info},
	mtasts.PolicyLineEndings:       {finding.PolicyLineEndings, finding.Info},
	mtasts.PolicyUnknownKey:        {finding.PolicyUnknownKey, finding.Info},
	mtasts.PolicyExtensionColon:    {finding.PolicyExtensionColon, finding.Warning},
	mtasts.PolicyFieldOrder:        {finding.PolicyFieldOrder, finding.Info},
}

// Recommended minimum max_age per mode (MISC-17; NCSC and Google advice).
const (
	minMaxAgeTesting = 86400  // one day
	minMaxAgeEnforce = 604800 // one week
)

// maxRepeats is how many problems of one kind become separate findings
// before the rest are summarised.
const maxRepeats = 3

// fileVerdict is the verdict on the policy file a sender would use.
type fileVerdict struct {
	// parsed is the file parsed (nil when no response is a policy file:
	// the fetch failed, or it is an HTML page).
	parsed *mtasts.ParsedPolicy
}

// policy returns the valid policy of the file, or nil.
func (f fileVerdict) policy() *mtasts.Policy {
	if f.parsed == nil {
		return nil
	}
	return f.parsed.Policy
}

// policyFile judges the body of the response a sender would use (v, nil
// when there is none).
func (e *evaluator) policyFile(v *fetchView) fileVerdict {
	// A fetch that failed, even after a 200 (a body cut off by the
	// deadline), has no policy to judge.
	if v == nil || v.r.Status != 200 || v.r.TooLarge || v.r.Error != "" || v.body == nil && len(v.r.Body) > 0 {
		return fileVerdict{}
	}
	url := v.r.URL
	if mtasts.LooksLikeHTML(v.body) {
		e.add(finding.PolicyHTML, finding.Error, url,
			fmt.Sprintf("%s answers 200 with an HTML page (%s…), not a policy.", url, preview(v.body)),
			e.fixText(finding.PolicyHTML))
		return fileVerdict{}
	}
	pp := mtasts.ParsePolicy(v.body)

	counts := map[mtasts.Code]int{}
	for _, p := range pp.Problems {
		m, ok := policyCodes[p.Code]
		if !ok {
			continue
		}
		counts[p.Code]++
		n := counts[p.Code]
		if n > maxRepeats {
			continue
		}
		subject := url
		if p.Line > 0 {
			subject = "line " + strconv.Itoa(p.Line)
		}
		msg := "mta-sts.txt: " + p.Detail + "."
		if p.Line > 0 {
			msg = fmt.Sprintf("mta-sts.txt line %d: %s.", p.Line, p.Detail)
		}
		if n == maxRepeats {
			if more := countCode(pp.Problems, p.Code) - maxRepeats; more > 0 {
				msg += fmt.Sprintf(" (%d more %s like this)", more, plural(more, "line", "lines"))
			}
		}
		e.add(m.id, m.sev, subject, msg, e.fixText(m.id))
	}

	d := pp.Draft
	if pp.Policy != nil {
		e.policyAdvice(pp.Policy)
	} else if d.Mode != "" && d.MaxAge > 0 {
		e.maxAgeAdvice(d.Mode, d.MaxAge)
	}
	return fileVerdict{parsed: pp}
}

// policyAdvice adds the advisories for a valid policy.
func (e *evaluator) policyAdvice(p *mtasts.Policy) {
	switch p.Mode {
	case mtasts.ModeNone:
		msg := fmt.Sprintf("The policy's mode is none: senders treat %s as having no policy.", e.o.Domain)
		if p.MaxAge < minMaxAgeTesting {
			// The max_age of a "none" policy says nothing about when the
			// records may go: senders may still cache the policy it replaced.
			msg += fmt.Sprintf(" Its max_age is only %s; when withdrawing MTA-STS, keep serving it and the TXT record until the max_age of the policy it replaced has passed, not just %s.", humanDuration(p.MaxAge), humanDuration(p.MaxAge))
		}
		e.add(finding.PolicyModeNone, finding.Info, e.o.PolicyHost, msg, e.fixText(finding.PolicyModeNone))
	case mtasts.ModeTesting:
		e.add(finding.PolicyTesting, finding.Info, e.o.PolicyHost,
			"The policy is in testing mode: senders deliver as before and only report failures.", e.fixText(finding.PolicyTesting))
	}
	e.maxAgeAdvice(p.Mode, p.MaxAge)
	for _, pat := range p.MX {
		parent, ok := strings.CutPrefix(strings.ToLower(pat), "*.")
		if !ok {
			continue
		}
		if isPublicSuffix(parent) {
			e.add(finding.PolicyMXPublicSuffix, finding.Warning, pat,
				fmt.Sprintf("The mx pattern %q allows any host directly under the public suffix %q, which is almost no restriction.", pat, parent),
				e.fixText(finding.PolicyMXPublicSuffix))
		}
	}
}

// isPublicSuffix reports whether name is a public suffix, where a "*."
// pattern would allow any registered domain's host (STS-POL-20).
func isPublicSuffix(name string) bool {
	suffix, icann := publicsuffix.PublicSuffix(name)
	return suffix == name && (icann || strings.Contains(name, "."))
}

// maxAgeAdvice warns about short lifetimes (STS-POL-8, MISC-17).
func (e *evaluator) maxAgeAdvice(mode mtasts.Mode, maxAge int64) {
	subject := e.o.PolicyHost
	switch {
	case mode == mtasts.ModeNone:
	case maxAge == 0:
		e.add(finding.PolicyMaxAgeLow, finding.Warning, subject,
			"max_age is 0: senders do not cache the policy at all (chasquid rejects such a policy), so an attacker who blocks the fetch removes the protection.",
			e.fixText(finding.PolicyMaxAgeLow))
	case mode == mtasts.ModeEnforce && maxAge < minMaxAgeEnforce:
		e.add(finding.PolicyMaxAgeLow, finding.Warning, subject,
			fmt.Sprintf("max_age is %d seconds (%s) in enforce mode; use at least 604800 (one week) so that a blocked refresh does not soon remove the protection.", maxAge, humanDuration(maxAge)),
			e.fixText(finding.PolicyMaxAgeLow))
	case maxAge < minMaxAgeTesting:
		e.add(finding.PolicyMaxAgeLow, finding.Warning, subject,
			fmt.Sprintf("max_age is %d seconds (%s); use at least 86400 (one day).", maxAge, humanDuration(maxAge)),
			e.fixText(finding.PolicyMaxAgeLow))
	}
}

func countCode(ps []mtasts.Problem, c mtasts.Code) int {
	n := 0
	for _, p := range ps {
		if p.Code == c {
			n++
		}
	}
	return n
}

func preview(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 40 {
		s = s[:40]
	}
	return fmt.Sprintf("%q", s)
}

// humanDuration renders seconds as days or hours.
func humanDuration(secs int64) string {
	switch {
	case secs >= 86400 && secs%86400 == 0:
		return fmt.Sprintf("%d %s", secs/86400, plural(int(secs/86400), "day", "days"))
	case secs >= 86400:
		return fmt.Sprintf("%.1f days", float64(secs)/86400)
	case secs >= 3600:
		return fmt.Sprintf("%.1f hours", float64(secs)/3600)
	}
	return fmt.Sprintf("%d minutes", secs/60)
}
