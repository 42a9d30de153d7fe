package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/rollout"
)

// rolloutDocument is the JSON form of a lifecycle command's output.
type rolloutDocument struct {
	SchemaVersion int `json:"schema_version"`
	*rollout.Output
}

// WriteRolloutJSON writes the output of a policy command as one JSON
// document (docs/policy.md).
func WriteRolloutJSON(w io.Writer, o *rollout.Output) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(rolloutDocument{SchemaVersion: SchemaVersion, Output: o})
}

func when(t, now time.Time) string {
	s := t.UTC().Format("2006-01-02 15:04 UTC")
	if !t.After(now) {
		return "now, " + s
	}
	return s
}

// writeHeader writes the refusal, warnings and steps common to the text
// formats, with prefix starting comment lines.
func writeHeader(b *strings.Builder, o *rollout.Output, now time.Time, prefix string) {
	fmt.Fprintf(b, "%s mailtls policy %s %s, %s\n", prefix, o.Command, o.Domain, now.UTC().Format("2006-01-02 15:04 UTC"))
	if o.Refused {
		fmt.Fprintf(b, "%s REFUSED: %s is not ready:\n", prefix, o.Domain)
		for _, r := range o.Reasons {
			fmt.Fprintf(b, "%s   - %s\n", prefix, r)
		}
	}
	for _, w := range o.Warnings {
		fmt.Fprintf(b, "%s WARNING: %s\n", prefix, w)
	}
}

// WriteRolloutZone writes the output as zone-file lines (comments start
// with ';') with each policy file between marker lines, ready to paste.
func WriteRolloutZone(w io.Writer, o *rollout.Output, now time.Time) error {
	var b strings.Builder
	writeHeader(&b, o, now, ";")
	for i, st := range o.Stages {
		fmt.Fprintf(&b, "\n; Step %d (%s): %s\n", i+1, when(st.At, now), st.Title)
		if st.Text != "" {
			fmt.Fprintf(&b, "; %s\n", st.Text)
		}
		if st.Policy != nil {
			fmt.Fprintf(&b, "; Serve this file at %s with Content-Type: text/plain; charset=utf-8:\n", st.PolicyURL)
			fmt.Fprintf(&b, "----- mta-sts.txt -----\n%s----- end -----\n", strings.ReplaceAll(st.PolicyText, "\r\n", "\n"))
		}
		for _, r := range st.Records {
			b.WriteString(ZoneRecord(r))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ZoneRecord renders a record to publish or delete as a zone-file line
// (with a newline); a delete or a placeholder becomes a comment.
func ZoneRecord(r check.Record) string {
	if r.Action == "delete" {
		if r.Value == "" || strings.Contains(r.Type, "/") {
			return fmt.Sprintf("; delete: the %s records of %s\n", r.Type, r.Name)
		}
		r.TTL = 0
		return "; delete: " + ZoneLine(r) + "\n"
	}
	line := ZoneLine(r) + "\n"
	if r.Placeholder != "" {
		line = "; EDIT: " + r.Placeholder + "\n" + line
	}
	return line
}

// WriteRolloutOctoDNS writes the records of each step for an octoDNS zone
// file of the domain (names relative to the zone; ';' escaped as '\;' in
// TXT values, as octoDNS requires), and each policy file between markers.
func WriteRolloutOctoDNS(w io.Writer, o *rollout.Output, now time.Time) error {
	var b strings.Builder
	writeHeader(&b, o, now, "#")
	for i, st := range o.Stages {
		fmt.Fprintf(&b, "\n# Step %d (%s): %s\n", i+1, when(st.At, now), st.Title)
		if st.Text != "" {
			fmt.Fprintf(&b, "# %s\n", st.Text)
		}
		if st.Policy != nil {
			fmt.Fprintf(&b, "# Serve this file at %s with Content-Type: text/plain; charset=utf-8:\n", st.PolicyURL)
			fmt.Fprintf(&b, "----- mta-sts.txt -----\n%s----- end -----\n", strings.ReplaceAll(st.PolicyText, "\r\n", "\n"))
		}
		writeOctoRecords(&b, o.Domain, st.Records)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeOctoRecords(b *strings.Builder, zone string, recs []check.Record) {
	type key struct{ name, typ string }
	var order []key
	groups := map[key][]check.Record{}
	for _, r := range recs {
		if r.Action == "delete" {
			fmt.Fprintf(b, "# delete: %s %s %s\n", relName(r.Name, zone), r.Type, r.Value)
			continue
		}
		k := key{relName(r.Name, zone), r.Type}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	if len(order) == 0 {
		return
	}
	b.WriteString("---\n")
	byName := map[string][]key{}
	var names []string
	for _, k := range order {
		if _, ok := byName[k.name]; !ok {
			names = append(names, k.name)
		}
		byName[k.name] = append(byName[k.name], k)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(b, "'%s':\n", n)
		keys := byName[n]
		for _, k := range keys {
			rs := groups[k]
			item := "  "
			if len(keys) > 1 {
				item = "  - "
				b.WriteString("")
			}
			for _, r := range rs {
				if r.Placeholder != "" {
					fmt.Fprintf(b, "  # EDIT: %s\n", r.Placeholder)
				}
			}
			fmt.Fprintf(b, "%stype: %s\n", item, k.typ)
			pad := strings.Repeat(" ", len(item))
			fmt.Fprintf(b, "%sttl: %d\n", pad, rs[0].TTL)
			if len(rs) == 1 {
				fmt.Fprintf(b, "%svalue: %s\n", pad, octoValue(rs[0]))
				continue
			}
			fmt.Fprintf(b, "%svalues:\n", pad)
			for _, r := range rs {
				fmt.Fprintf(b, "%s  - %s\n", pad, octoValue(r))
			}
		}
	}
}

// octoValue renders a record value for octoDNS YAML.
func octoValue(r check.Record) string {
	v := r.Value
	if r.Type == "TXT" {
		v = strings.ReplaceAll(v, ";", `\;`)
	}
	if r.Type == "MX" {
		var pref int
		var ex string
		fmt.Sscanf(v, "%d %s", &pref, &ex)
		return fmt.Sprintf("{preference: %d, exchange: '%s'}", pref, ex)
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

func relName(name, zone string) string {
	if name == zone {
		return ""
	}
	return strings.TrimSuffix(name, "."+zone)
}

// LintDocument is the JSON form of mailtls policy lint.
type LintDocument struct {
	SchemaVersion int       `json:"schema_version"`
	Command       string    `json:"command"`
	Domain        string    `json:"domain,omitempty"`
	Valid         bool      `json:"valid"` // the draft matches the RFC 8461 grammar
	Policy        *Policy   `json:"policy"`
	MX            []MX      `json:"mx,omitempty"`
	Senders       []Sender  `json:"senders,omitempty"`
	Findings      []Finding `json:"findings"`
	Fixes         []Fix     `json:"fixes"`
}

// NewLintDocument converts a lint report.
func NewLintDocument(r *check.Report) *LintDocument {
	full := NewDocument(r, "")
	d := &LintDocument{SchemaVersion: SchemaVersion, Command: "lint", Domain: r.Domain, Valid: r.Policy != nil,
		Policy: full.Policy, Senders: full.Senders, Findings: full.Findings, Fixes: full.Fixes}
	if d.Policy != nil {
		d.Policy.ID = ""
	}
	if r.Domain != "" {
		d.MX = full.MX
	}
	return d
}

// WriteLintText writes the human report of mailtls policy lint.
func WriteLintText(w io.Writer, r *check.Report, opt TextOptions) error {
	s := newStyles(opt.Color)
	var b strings.Builder
	verdict := s.green + "valid" + s.reset
	if r.Policy == nil {
		verdict = s.red + s.bold + "INVALID: RFC 8461 senders would ignore it" + s.reset
	}
	fmt.Fprintf(&b, "%sDraft policy%s: %s\n", s.bold, s.reset, verdict)
	if p := r.Policy; p != nil {
		fmt.Fprintf(&b, "  mode %s, max_age %d, mx %s\n", p.Mode, p.MaxAge, strings.Join(p.MX, ", "))
	}
	if r.Domain != "" {
		fmt.Fprintf(&b, "  checked against the live MX set of %s\n", r.Domain)
		for _, m := range r.MX {
			cov := "NOT covered"
			if m.Covered != nil && *m.Covered {
				cov = "covered by " + m.Pattern
			}
			fmt.Fprintf(&b, "    %5d %-32s %s\n", m.Preference, m.Host, cov)
		}
	}
	if len(r.Findings) == 0 {
		fmt.Fprintf(&b, "  %s✓%s no problems\n", s.green, s.reset)
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  %s %s%s%s  %s\n", s.sev(f.Severity), s.dim, f.ID, s.reset, f.Message)
		if f.Fix != "" && f.Severity >= finding.Warning {
			fmt.Fprintf(&b, "          %sfix:%s %s\n", s.bold, s.reset, f.Fix)
		}
	}
	if len(r.Senders) > 0 {
		fmt.Fprintf(&b, "\n%sHow senders would read it%s\n", s.bold, s.reset)
		for _, v := range r.Senders {
			what := "no policy: " + v.Reason
			if v.Applies {
				what = fmt.Sprintf("mode %s, max_age %d, mx %s", v.Mode, v.MaxAge, strings.Join(v.MX, ", "))
			}
			fmt.Fprintf(&b, "  %-26s %s\n", v.Sender, what)
		}
	}
	for _, f := range r.Fixes {
		switch f.Kind {
		case check.FixPolicy:
			fmt.Fprintf(&b, "\n%s\n----- mta-sts.txt -----\n%s----- end -----\n", f.Text, strings.ReplaceAll(f.Content, "\r\n", "\n"))
		case check.FixDNS:
			fmt.Fprintf(&b, "\n%s\n%s\n", f.Text, ZoneLine(f.Record))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
