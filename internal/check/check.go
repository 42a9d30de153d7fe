// Package check turns scan Observations into a Report: findings from the
// catalog, the policy an RFC 8461 sender would apply, how real senders
// differ, a grade, and the exact records and policy file that fix what is
// broken. It is pure: no I/O, the clock is a parameter.
package check

import (
	"fmt"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// Status is the state of the domain's MTA-STS policy for senders.
type Status string

// Policy statuses.
const (
	StatusEnforce      Status = "enforce"
	StatusTesting      Status = "testing"
	StatusNone         Status = "none"
	StatusAbsent       Status = "absent"       // no MTA-STS TXT record
	StatusInvalid      Status = "invalid"      // record or policy invalid: senders ignore it
	StatusUnreachable  Status = "unreachable"  // record valid, policy cannot be fetched
	StatusUndetermined Status = "undetermined" // a temporary DNS failure hides the answer
)

// Report is the judgement of one scan.
type Report struct {
	Domain       string
	Notes        []string // about the input (set by the caller)
	Grade        finding.Grade
	GradeReasons []string
	Status       Status
	StatusReason string
	// Policy is the policy an RFC 8461 sender applies now (nil when none).
	Policy   *mtasts.Policy
	PolicyID string // the id of the TXT record, when valid
	MX       []MX
	TLSRPT   *tlsrpt.Record
	Senders  []mtasts.SenderView
	Findings []finding.Finding
	Fixes    []Fix
	Evidence *scan.Observations
}

// MX is one MX host and whether the policy covers it.
type MX struct {
	Host       string
	Preference uint16
	Implicit   bool
	Pattern    string // the first matching mx pattern
	Covered    *bool  // nil when there is no policy to match against
	// NotChecked says why the host's addresses, SMTP and DANE were not
	// looked at: scan.SkippedLimit, SkippedLocalhost or SkippedIPLiteral
	// ("" when they were); NotCheckedWhy says it in words.
	NotChecked string
	Addresses  []Address
	DANE       *DANEHost // nil for the implicit MX
}

// Fix kinds.
const (
	FixDNS    = "dns"
	FixPolicy = "policy"
	FixNote   = "note"
)

// Fix is one step that repairs what the scan found.
type Fix struct {
	Kind string
	// DNS fixes.
	Action string // "publish" or "delete"
	Name   string // owner name, no trailing dot
	Type   string // "TXT"
	TTL    int
	Value  string // the TXT value, unquoted; for "delete", the value to delete
	// Policy fixes.
	URL         string
	Content     string
	ContentType string
	// Notes, and the reason for any fix.
	Text string
}

// Evaluate judges the observations at time now (used for fresh policy ids).
//
// Each step takes what the steps before it decided and returns its own
// verdict; the findings go to one list that only the grade and the fixes
// read. The order of the steps is the order of the data: the record and
// the policy host before the effective policy, the effective policy before
// the MX hosts, the probes before DANE, everything before the grade.
func Evaluate(o *scan.Observations, now time.Time) *Report {
	e := &evaluator{o: o, now: now}
	r := &Report{Domain: o.Domain, Evidence: o}

	rec := e.record() // record.go
	if rec.state == recValid {
		r.PolicyID = rec.rec.ID
	}
	rpt := e.tlsrptRecord() // tlsrpt.go
	r.TLSRPT = rpt.rec
	host := e.policyHost(rec.state)           // host.go
	file := e.policyFile(host.primary)        // policy.go
	eff := e.effectivePolicy(rec, host, file) // status.go
	r.Status, r.StatusReason, r.Policy = eff.status, eff.reason, eff.policy
	cover := coveragePolicy(eff, rec.state, file)
	r.MX = e.mxCoverage(rec.state, cover)             // mx.go
	daneOf := e.daneStates()                          // dane.go
	misses := e.smtp(r.MX, cover, eff.policy, daneOf) // smtp.go
	tlsaFixes := e.daneFindings(r.MX, daneOf, misses)
	e.tlsrptAdvice(rpt, eff.status)
	r.Senders = e.senders(rec.state, host.primary, file)                // senders.go
	r.Grade, r.GradeReasons = e.grade(eff, rpt.state, r.MX, e.findings) // grade.go
	// Fix texts say "<id>" until the published id is known; a fresh id
	// always differs from it.
	id := mtasts.NewID(now, r.PolicyID)
	r.Fixes = e.fixes(fixInput{ // fixes.go
		id: id, rec: rec, rpt: rpt, host: host, file: file, status: eff.status, cover: cover, tlsa: tlsaFixes, findings: e.findings})
	for i := range e.findings {
		e.findings[i].Fix = strings.ReplaceAll(e.findings[i].Fix, "<id>", id)
	}
	r.Findings = e.findings
	finding.Sort(r.Findings)
	return r
}

// evaluator holds the input of one evaluation and collects its findings.
// The verdicts of the steps are values passed from one step to the next,
// never fields here.
type evaluator struct {
	o        *scan.Observations
	now      time.Time
	findings []finding.Finding
}

// recState is the state of a TXT record that senders look up (the
// _mta-sts record, the TLS-RPT record).
type recState int

const (
	recAbsent recState = iota
	recValid
	recInvalid
	recUndetermined
)

type hostState int

const (
	hostNoAddress hostState = iota
	hostResolved
	hostUndetermined
)

func (e *evaluator) add(id finding.ID, sev finding.Severity, subject, msg, fix string) {
	e.findings = append(e.findings, finding.New(id, sev, subject, msg, fix))
}

// fixText fills the placeholders of a catalog fix.
func (e *evaluator) fixText(id finding.ID, repl ...string) string {
	d := finding.Lookup(id)
	if d == nil {
		return ""
	}
	pairs := append([]string{"<domain>", e.o.Domain}, repl...)
	return strings.NewReplacer(pairs...).Replace(d.Fix)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// capList joins the first max items and says how many more there are.
func capList(items []string, max int) string {
	if len(items) > max {
		return strings.Join(items[:max], ", ") + fmt.Sprintf(" and %d more", len(items)-max)
	}
	return strings.Join(items, ", ")
}

func quoteList(items []string, max int) string {
	var q []string
	for i, s := range items {
		if i == max {
			q = append(q, fmt.Sprintf("and %d more", len(items)-max))
			break
		}
		q = append(q, fmt.Sprintf("%q", s))
	}
	return strings.Join(q, ", ")
}
