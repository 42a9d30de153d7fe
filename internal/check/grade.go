package check

import (
	"fmt"

	"github.com/mailtls/mailtls/internal/finding"
)

// grade assigns the letter grade (docs/grading.md): the policy status sets
// the ceiling, the TLS-RPT record is needed for A, and each finding may cap
// the grade further (finding.Def.Caps).
//
// eff is the effective policy, rpt the state of the TLS-RPT record, mx the
// MX hosts with their probed addresses and findings every finding made.
func (e *evaluator) grade(eff effective, rpt recState, mx []MX, findings []finding.Finding) (finding.Grade, []string) {
	var g finding.Grade
	var reasons []string
	switch eff.status {
	case StatusUndetermined:
		return "", []string{"no grade: the scan could not determine the policy (" + eff.reason + "); retry"}
	case StatusAbsent, StatusInvalid, StatusUnreachable, StatusNone:
		return finding.GradeF, []string{"F: no MTA-STS policy is in effect (" + string(eff.status) + ": " + eff.reason + ")"}
	case StatusTesting:
		g = finding.GradeB
		reasons = append(reasons, "at most B: mode testing gives no protection, senders only report failures")
	case StatusEnforce:
		g = finding.GradeAPlus
		switch ok, why := e.allPass(mx); {
		case !e.probed():
			g = finding.GradeA
			reasons = append(reasons, "at most A: A+ needs every address of every MX host to pass STARTTLS and certificate checks, and this scan did not probe them (--no-smtp)")
		case !ok:
			g = finding.GradeA
			reasons = append(reasons, "at most A: A+ needs every address of every MX host to pass STARTTLS and certificate checks (or DANE); "+why)
		}
	}
	seen := map[finding.ID]bool{}
	rptCapped := false
	for _, f := range findings {
		c := f.Cap()
		if c == "" || seen[f.ID] {
			continue
		}
		seen[f.ID] = true
		if finding.Worse(g, c) != g || c == g {
			reasons = append(reasons, fmt.Sprintf("at most %s: %s (%s)", c, finding.Lookup(f.ID).Title, f.ID))
		}
		g = finding.Worse(g, c)
		rptCapped = rptCapped || f.Component == finding.ComponentTLSRPT
	}
	if rpt != recValid && !rptCapped {
		g = finding.Worse(g, finding.GradeB)
		reasons = append(reasons, "at most B: no working TLS-RPT record, so failures go unreported")
	}
	return g, reasons
}

// probed reports whether the scan probed the MX hosts over SMTP.
func (e *evaluator) probed() bool {
	for _, h := range e.o.MXHosts {
		if len(h.Probes) > 0 {
			return true
		}
	}
	return false
}
