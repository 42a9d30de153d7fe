// Package report renders check Reports: a versioned JSON document (the
// contract documented in docs/json.md) and a human text report. Renderers
// decide nothing; everything they show comes from the Report.
package report

import (
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/scan"
)

// SchemaVersion is the version of the JSON document. It changes only when
// a field changes meaning or disappears; new fields may be added within a
// version.
const SchemaVersion = 1

// Document is the JSON form of one scanned domain.
type Document struct {
	SchemaVersion int       `json:"schema_version"`
	Domain        string    `json:"domain"`
	Input         string    `json:"input,omitempty"`
	Line          int       `json:"line,omitempty"` // the input line (mailtls check -f)
	Notes         []string  `json:"notes,omitempty"`
	ScannedAt     string    `json:"scanned_at"`
	DurationMS    float64   `json:"duration_ms"`
	Grade         *string   `json:"grade"` // null when the scan could not determine the policy
	GradeReasons  []string  `json:"grade_reasons"`
	PolicyStatus  string    `json:"policy_status"`
	PolicyReason  string    `json:"policy_reason"`
	Policy        *Policy   `json:"policy"`
	MX            []MX      `json:"mx"`
	TLSRPT        *TLSRPT   `json:"tlsrpt"`
	Senders       []Sender  `json:"senders,omitempty"`
	Findings      []Finding `json:"findings"`
	// NotRead names the finding components whose evidence this scan did
	// not read, with why (monitoring: the TLS-RPT reports of a domain not
	// verified, or with no recent report): their findings are unknown
	// here, not gone.
	NotRead  []NotRead          `json:"not_read,omitempty"`
	Fixes    []Fix              `json:"fixes"`
	Evidence *scan.Observations `json:"evidence,omitempty"`
	Error    string             `json:"error,omitempty"`
}

// NotRead is a component of findings a scan did not judge.
type NotRead struct {
	Component string `json:"component"`
	Reason    string `json:"reason"`
}

// Policy is the effective policy.
type Policy struct {
	ID         string             `json:"id"`
	Mode       string             `json:"mode"`
	MX         []string           `json:"mx"`
	MaxAge     int64              `json:"max_age"`
	Extensions []mtasts.Extension `json:"extensions,omitempty"`
}

// MX is one MX host.
type MX struct {
	Host        string    `json:"host"`
	Preference  uint16    `json:"preference"`
	Implicit    bool      `json:"implicit,omitempty"`
	PolicyMatch *bool     `json:"policy_match"`              // null when there is no policy
	Pattern     string    `json:"matched_pattern,omitempty"` // the first pattern that matches
	NotChecked  string    `json:"not_checked,omitempty"`     // why the host was not looked up: mx-limit, localhost, ip-literal
	Addresses   []Address `json:"addresses"`                 // one per probed address (empty with --no-smtp)
	DANE        *MXDANE   `json:"dane"`                      // null for the implicit MX
}

// Address is one probed address of an MX host.
type Address struct {
	IP           string       `json:"ip"`
	STARTTLS     bool         `json:"starttls"`
	TLSVersion   *string      `json:"tls_version"`    // null without a TLS session
	CertValid    bool         `json:"cert_valid"`     // publicly trusted, in date, and valid for the MX host name
	CertError    *string      `json:"cert_error"`     // why not
	CertNotAfter *string      `json:"cert_not_after"` // RFC 3339
	PolicyMatch  *bool        `json:"policy_match"`   // a certificate name matches a policy mx pattern; null without policy or certificate
	DANE         *AddressDANE `json:"dane"`
	ResultType   *string      `json:"result_type"`       // RFC 8460 result type of the failure, null when none
	Failure      string       `json:"failure,omitempty"` // where the probe stopped
	Error        string       `json:"error,omitempty"`
	Pass         bool         `json:"pass"` // passes as senders see it (STARTTLS, TLS 1.2+, certificate valid for the name and a pattern, or valid DANE)
}

// AddressDANE is the DANE verdict for one address.
type AddressDANE struct {
	Status        string `json:"status"` // valid, mismatch, unverified, or not-applicable
	MatchedRecord string `json:"matched_record,omitempty"`
}

// MXDANE is the DANE state of an MX host.
type MXDANE struct {
	Status   string   `json:"status"` // none, unknown, insecure, lookup-failed, unusable, valid, invalid, unverified
	DNSSEC   string   `json:"dnssec"` // of the TLSA RRset: secure, insecure, unknown, failed
	Owner    string   `json:"owner"`
	Records  []string `json:"records"`
	Rollover string   `json:"rollover,omitempty"`
}

// TLSRPT is the TLS-RPT record.
type TLSRPT struct {
	RUA       []string `json:"rua"`
	UsableRUA []string `json:"usable_rua"`
}

// Sender is how one sender implementation reads the policy.
type Sender struct {
	Sender  string   `json:"sender"`
	Applies bool     `json:"applies"`
	Mode    string   `json:"mode,omitempty"`
	MaxAge  *int64   `json:"max_age,omitempty"`
	MX      []string `json:"mx,omitempty"`
	Reason  string   `json:"reason,omitempty"`
}

// Finding is one finding.
type Finding struct {
	ID        string `json:"id"`
	Severity  string `json:"severity"`
	Component string `json:"component"`
	Subject   string `json:"subject,omitempty"`
	Message   string `json:"message"`
	Ref       string `json:"ref"`
	Fix       string `json:"fix,omitempty"`
}

// Fix is one repair step. Kind "dns" has action, name, type, ttl, value and
// zone (the record as a zone-file line); kind "policy" has url,
// content_type and content; kind "note" has text. Any fix may have text.
type Fix struct {
	Kind        string `json:"kind"`
	Action      string `json:"action,omitempty"`
	Name        string `json:"name,omitempty"`
	Type        string `json:"type,omitempty"`
	TTL         int    `json:"ttl,omitempty"`
	Value       string `json:"value,omitempty"`
	Zone        string `json:"zone,omitempty"`
	URL         string `json:"url,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Content     string `json:"content,omitempty"`
	Text        string `json:"text,omitempty"`
}

// NewDocument converts a Report to its JSON form.
func NewDocument(r *check.Report, input string) *Document {
	d := &Document{
		SchemaVersion: SchemaVersion,
		Domain:        r.Domain,
		Input:         input,
		Notes:         r.Notes,
		GradeReasons:  nonNil(r.GradeReasons),
		PolicyStatus:  string(r.Status),
		PolicyReason:  r.StatusReason,
		MX:            []MX{},
		Findings:      []Finding{},
		Fixes:         []Fix{},
		Evidence:      r.Evidence,
	}
	if input == r.Domain {
		d.Input = ""
	}
	if r.Evidence != nil {
		d.ScannedAt = r.Evidence.StartedAt.UTC().Format(time.RFC3339)
		d.DurationMS = r.Evidence.DurationMS
	}
	if r.Grade != "" {
		g := string(r.Grade)
		d.Grade = &g
	}
	if p := r.Policy; p != nil {
		d.Policy = &Policy{ID: r.PolicyID, Mode: string(p.Mode), MX: nonNil(p.MX), MaxAge: p.MaxAge, Extensions: p.Extensions}
	}
	for _, m := range r.MX {
		wm := MX{Host: m.Host, Preference: m.Preference, Implicit: m.Implicit, PolicyMatch: m.Covered, Pattern: m.Pattern, NotChecked: m.NotChecked, Addresses: []Address{}}
		for _, a := range m.Addresses {
			wm.Addresses = append(wm.Addresses, wireAddress(a))
		}
		if x := m.DANE; x != nil {
			wm.DANE = &MXDANE{Status: x.Status, DNSSEC: x.DNSSEC, Owner: x.Owner, Records: nonNil(x.Records), Rollover: x.Rollover}
		}
		d.MX = append(d.MX, wm)
	}
	if t := r.TLSRPT; t != nil {
		d.TLSRPT = &TLSRPT{RUA: nonNil(t.RUA), UsableRUA: nonNil(t.Usable)}
	}
	for _, s := range r.Senders {
		ws := Sender{Sender: s.Sender, Applies: s.Applies, Reason: s.Reason}
		if s.Applies {
			age := s.MaxAge
			ws.Mode, ws.MaxAge, ws.MX = string(s.Mode), &age, nonNil(s.MX)
		}
		d.Senders = append(d.Senders, ws)
	}
	for _, f := range r.Findings {
		d.Findings = append(d.Findings, wireFinding(f))
	}
	for _, f := range r.Fixes {
		wf := Fix{Kind: f.Kind, Action: f.Action, Name: f.Name, Type: f.Type, TTL: f.TTL, Value: f.Value,
			URL: f.URL, ContentType: f.ContentType, Content: f.Content, Text: f.Text}
		if f.Kind == check.FixDNS {
			wf.Zone = ZoneLine(f.Record)
		}
		d.Fixes = append(d.Fixes, wf)
	}
	return d
}

func wireAddress(a check.Address) Address {
	w := Address{IP: a.IP, STARTTLS: a.STARTTLS, CertValid: a.CertValid, PolicyMatch: a.PolicyMatch, Pass: a.Pass}
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	w.TLSVersion, w.CertError, w.ResultType = str(a.TLSVersion), str(a.CertError), str(string(a.ResultType))
	if !a.CertNotAfter.IsZero() {
		w.CertNotAfter = str(a.CertNotAfter.UTC().Format(time.RFC3339))
	}
	status := a.DANE
	if status == "" {
		status = "not-applicable"
	}
	w.DANE = &AddressDANE{Status: status, MatchedRecord: a.DANERecord}
	if a.Probe != nil {
		w.Failure, w.Error = string(a.Probe.Class), a.Probe.Error
	}
	return w
}

func wireFinding(f finding.Finding) Finding {
	return Finding{ID: string(f.ID), Severity: f.Severity.String(), Component: string(f.Component), Subject: f.Subject, Message: f.Message, Ref: f.Ref, Fix: f.Fix}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// WriteJSON writes one document as a single line of JSON (JSON Lines when
// called once per domain).
func WriteJSON(w io.Writer, d any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}

// ZoneLine renders a DNS record as a zone-file line, splitting TXT values into
// strings of at most 255 octets (RFC 1035 §3.3.14) and escaping '"' and '\'.
func ZoneLine(f check.Record) string {
	var b strings.Builder
	b.WriteString(f.Name)
	b.WriteString(". ")
	if f.TTL > 0 {
		b.WriteString(strconv.Itoa(f.TTL))
		b.WriteString(" ")
	}
	b.WriteString("IN ")
	b.WriteString(f.Type)
	b.WriteString(" ")
	if f.Type == "TXT" {
		b.WriteString(QuoteTXT(f.Value))
	} else {
		b.WriteString(f.Value)
	}
	return b.String()
}

// QuoteTXT renders a TXT value as one or more quoted character-strings.
func QuoteTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, v[:255])
		v = v[255:]
	}
	parts = append(parts, v)
	for i, p := range parts {
		var b strings.Builder
		b.WriteByte('"')
		for j := 0; j < len(p); j++ {
			c := p[j]
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c >= 0x7f:
				b.WriteString("\\")
				b.WriteString(pad3(int(c)))
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		parts[i] = b.String()
	}
	return strings.Join(parts, " ")
}

func pad3(n int) string {
	s := strconv.Itoa(n)
	for len(s) < 3 {
		s = "0" + s
	}
	return s
}
