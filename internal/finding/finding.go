// Package finding is the vocabulary of mailtls reports: every problem a scan
// can report has a stable ID in one catalog, with its component, possible
// severities, RFC reference, checklist IDs, an explanation and a fix.
//
// IDs never change meaning and retired IDs are never reused. The catalog is
// the source of docs/findings.md and of the grading caps in docs/grading.md.
package finding

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"sync"
)

// Severity says how bad a finding is.
type Severity uint8

// Severities, from least to most severe.
const (
	Info    Severity = 1 // advisory or state reporting
	Warning Severity = 2 // breaks a SHOULD, or is legal but breaks or weakens widely deployed senders
	Error   Severity = 3 // breaks a MUST, or makes senders ignore the policy, refuse mail or lose protection
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return fmt.Sprintf("severity(%d)", uint8(s))
}

// MarshalText encodes the severity as its name.
func (s Severity) MarshalText() ([]byte, error) {
	if s < Info || s > Error {
		return nil, fmt.Errorf("finding: bad severity %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	for _, v := range []Severity{Info, Warning, Error} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("finding: unknown severity %q", b)
}

// Component is the part of the setup a finding is about. Reports group
// findings by component, in the order of Components.
type Component string

// Components of a domain's inbound mail transport security.
const (
	ComponentRecord     Component = "mta-sts-record" // the _mta-sts TXT record
	ComponentPolicyHost Component = "policy-host"    // mta-sts.<domain>: DNS, HTTPS, certificate
	ComponentPolicy     Component = "policy"         // the policy file
	ComponentMX         Component = "mx"             // MX hosts and policy coverage
	ComponentSMTP       Component = "smtp"           // STARTTLS and certificates of every MX address
	ComponentDANE       Component = "dane"           // TLSA records, DNSSEC, DANE verification
	ComponentTLSRPT     Component = "tls-rpt"        // the _smtp._tls TXT record
	// ComponentHistory holds what monitoring finds by comparing a saved
	// domain's scan with the previous one (finding/history.go).
	ComponentHistory Component = "history"
	// ComponentReports holds what monitoring finds in the TLS-RPT
	// reports a saved domain receives (internal/tlsrptagg.Watch).
	ComponentReports Component = "tls-rpt-reports"
)

// Components lists every component in report order.
var Components = []Component{ComponentRecord, ComponentPolicyHost, ComponentPolicy, ComponentMX, ComponentSMTP, ComponentDANE, ComponentTLSRPT, ComponentHistory, ComponentReports}

// Title is the heading reports use for the component.
func (c Component) Title() string {
	switch c {
	case ComponentRecord:
		return "MTA-STS record"
	case ComponentPolicyHost:
		return "Policy host"
	case ComponentPolicy:
		return "Policy file"
	case ComponentMX:
		return "MX hosts"
	case ComponentSMTP:
		return "STARTTLS on the MX hosts"
	case ComponentDANE:
		return "DANE"
	case ComponentTLSRPT:
		return "TLS-RPT"
	case ComponentHistory:
		return "Changes since the previous scan"
	case ComponentReports:
		return "What the TLS-RPT reports show"
	}
	return string(c)
}

// ID identifies a kind of finding. IDs are kebab-case and stable.
type ID string

// Grade is a letter grade, best first: A+ A B C D F.
type Grade string

// Grades, best first.
const (
	GradeAPlus Grade = "A+"
	GradeA     Grade = "A"
	GradeB     Grade = "B"
	GradeC     Grade = "C"
	GradeD     Grade = "D"
	GradeF     Grade = "F"
)

var gradeOrder = []Grade{GradeAPlus, GradeA, GradeB, GradeC, GradeD, GradeF}

// Worse returns the worse of two grades; the empty grade means "no cap".
func Worse(a, b Grade) Grade {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	if slices.Index(gradeOrder, b) > slices.Index(gradeOrder, a) {
		return b
	}
	return a
}

// Def describes one kind of finding.
type Def struct {
	ID         ID
	Component  Component
	Severities []Severity // the severities this finding can carry
	Title      string     // short description, for docs and listings
	Explain    string     // why it matters, in plain words
	Fix        string     // the fix, with <domain>, <mx>, <id> placeholders
	Ref        string     // RFC section(s), e.g. "RFC 8461 §3.1"
	Checklist  []string   // spec-checklist IDs
	// Caps limit the grade while a finding of that severity is present. An
	// error without an explicit cap limits the grade to C; other
	// severities do not limit it unless listed.
	Caps map[Severity]Grade
}

// Cap returns the grade cap for a finding of this kind at severity s.
// Findings of monitoring (history, reports) never cap the grade: it
// describes one scan.
func (d *Def) Cap(s Severity) Grade {
	if d.Monitoring() {
		return ""
	}
	if g, ok := d.Caps[s]; ok {
		return g
	}
	if s == Error {
		return GradeC
	}
	return ""
}

var registry = map[ID]*Def{}

func def(d Def) ID {
	if _, dup := registry[d.ID]; dup {
		panic("finding: duplicate ID " + string(d.ID))
	}
	if len(d.Severities) == 0 || d.Component == "" || d.Ref == "" || d.Title == "" || d.Fix == "" {
		panic("finding: incomplete definition of " + string(d.ID))
	}
	registry[d.ID] = &d
	return d.ID
}

// Monitoring reports whether only monitoring reports findings of this
// kind (they need earlier scans or received reports); `mailtls check`
// never does.
func (d *Def) Monitoring() bool {
	return d.Component == ComponentHistory || d.Component == ComponentReports
}

// Lookup returns the definition of id, or nil.
func Lookup(id ID) *Def { return registry[id] }

// Catalog returns every definition, sorted by component then ID.
func Catalog() []*Def {
	out := make([]*Def, 0, len(registry))
	for _, d := range registry {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		ci, cj := slices.Index(Components, out[i].Component), slices.Index(Components, out[j].Component)
		if ci != cj {
			return ci < cj
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Finding is one observed problem or fact about a domain.
type Finding struct {
	ID        ID        `json:"id"`
	Severity  Severity  `json:"severity"`
	Component Component `json:"component"`
	Subject   string    `json:"subject,omitempty"` // what it is about: a record name, a host, an address, a line
	Message   string    `json:"message"`           // plain words naming the observed value
	Ref       string    `json:"ref"`
	Fix       string    `json:"fix,omitempty"`
}

// New makes a finding of a catalogued kind. It panics if id is not in the
// catalog or sev is not one of its severities: both are programming errors
// that the package tests catch.
func New(id ID, sev Severity, subject, message, fix string) Finding {
	d := registry[id]
	if d == nil {
		panic("finding: unknown ID " + string(id))
	}
	if !slices.Contains(d.Severities, sev) {
		panic(fmt.Sprintf("finding: %s cannot have severity %s", id, sev))
	}
	return Finding{ID: id, Severity: sev, Component: d.Component, Subject: subject, Message: message, Ref: d.Ref, Fix: fix}
}

// Cap returns the grade cap this finding imposes ("" for none).
func (f Finding) Cap() Grade {
	if d := registry[f.ID]; d != nil {
		return d.Cap(f.Severity)
	}
	return ""
}

// Sort orders findings by component, then severity (worst first), then ID
// and subject, so reports are stable.
func Sort(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		ci, cj := slices.Index(Components, fs[i].Component), slices.Index(Components, fs[j].Component)
		if ci != cj {
			return ci < cj
		}
		if fs[i].Severity != fs[j].Severity {
			return fs[i].Severity > fs[j].Severity
		}
		if fs[i].ID != fs[j].ID {
			return fs[i].ID < fs[j].ID
		}
		return fs[i].Subject < fs[j].Subject
	})
}

// Worst returns the highest severity among fs, or 0 if fs is empty.
func Worst(fs []Finding) Severity {
	var w Severity
	for _, f := range fs {
		w = max(w, f.Severity)
	}
	return w
}

// CatalogVersion identifies the catalog's content: a digest of every
// definition (IDs, severities, texts, references, caps). A saved scan
// keeps it, so a page from history can say that the rules have changed
// since the scan (Internet.nl #14, #2040, #2070).
func CatalogVersion() string {
	catalogOnce.Do(func() { catalogVersion = versionOf(Catalog()) })
	return catalogVersion
}

var (
	catalogOnce    sync.Once
	catalogVersion string
)

func versionOf(defs []*Def) string {
	h := sha256.New()
	for _, d := range defs {
		fmt.Fprintf(h, "%s\x00%s\x00%v\x00%s\x00%s\x00%s\x00%s\x00%q\x00", d.ID, d.Component, d.Severities, d.Title, d.Explain, d.Fix, d.Ref, d.Checklist)
		for _, s := range d.Severities {
			fmt.Fprintf(h, "%s=%s\x00", s, d.Cap(s))
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
