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
func Evaluate(o *scan.Observations, now time.Time) *Report {
	e := &evaluator{o: o, now: now, r: &Report{Domain: o.Domain, Evidence: o}}
	e.record()
	e.tlsrptRecord()
	e.policyHost()
	e.policyFile()
	e.consistency()
	e.mxCoverage()
	e.smtp()
	e.daneFindings()
	e.tlsrptAdvice()
	e.senders()
	e.grade()
	e.fixes()
	// Fix texts say "<id>" until the published id is known; a fresh id
	// always differs from it.
	id := e.newID()
	for i := range e.r.Findings {
		e.r.Findings[i].Fix = strings.ReplaceAll(e.r.Findings[i].Fix, "<id>", id)
	}
	finding.Sort(e.r.Findings)
	return e.r
}

// newID returns a fresh policy id that differs from the published one.
func (e *evaluator) newID() string {
	return mtasts.NewID(e.now, e.r.PolicyID)
}

// evaluator carries the state shared by the rules of one evaluation.
type evaluator struct {
	o   *scan.Observations
	now time.Time
	r   *Report

	// MTA-STS record.
	recState recState
	rec      *mtasts.Record
	recWhy   string
	// Policy host and file.
	hostState hostState
	hostWhy   string
	primary   *fetchView   // the fetch a sender would use (or the best one to lint)
	usable    []*fetchView // fetches a sender accepts
	parsed    *mtasts.ParsedPolicy
	bodyOK    bool // a 200 response with a body that is a policy (valid or not), not HTML
	// TLS-RPT.
	rptState recState
	// SMTP and DANE.
	dane        map[*scan.MXHost]*daneState
	danePending []daneMiss
	tlsaFixes   []Fix
}

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
	e.r.Findings = append(e.r.Findings, finding.New(id, sev, subject, msg, fix))
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

// has reports whether a finding with id was made.
func (e *evaluator) has(id finding.ID) bool {
	for _, f := range e.r.Findings {
		if f.ID == id {
			return true
		}
	}
	return false
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
