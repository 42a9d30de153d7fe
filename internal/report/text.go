package report

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// TextOptions control the human report.
type TextOptions struct {
	Color bool // ANSI colours (for a terminal)
}

// styles are ANSI sequences, or empty strings without colour.
type styles struct{ bold, dim, red, yellow, cyan, green, reset string }

func newStyles(color bool) styles {
	if !color {
		return styles{}
	}
	return styles{bold: "\x1b[1m", dim: "\x1b[2m", red: "\x1b[31m", yellow: "\x1b[33m", cyan: "\x1b[36m", green: "\x1b[32m", reset: "\x1b[0m"}
}

func (s styles) sev(v finding.Severity) string {
	label := fmt.Sprintf("%-7s", v.String())
	switch v {
	case finding.Error:
		return s.red + s.bold + label + s.reset
	case finding.Warning:
		return s.yellow + label + s.reset
	}
	return s.cyan + label + s.reset
}

func (s styles) grade(g finding.Grade) string {
	if g == "" {
		return s.yellow + s.bold + "?" + s.reset
	}
	c := s.green
	switch g {
	case finding.GradeB, finding.GradeC:
		c = s.yellow
	case finding.GradeD, finding.GradeF:
		c = s.red
	}
	return c + s.bold + string(g) + s.reset
}

// WriteText writes the human report for one domain.
func WriteText(w io.Writer, r *check.Report, opt TextOptions) error {
	s := newStyles(opt.Color)
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("%s%s%s", s.bold, r.Domain, s.reset)
	if ev := r.Evidence; ev != nil {
		p("  %sscanned %s in %s%s", s.dim, ev.StartedAt.UTC().Format("2006-01-02 15:04:05 UTC"), ms(ev.DurationMS), s.reset)
	}
	p("\n")
	for _, n := range r.Notes {
		p("%snote: %s%s\n", s.dim, n, s.reset)
	}
	p("\nGrade %s   policy %s%s%s: %s\n", s.grade(r.Grade), s.bold, r.Status, s.reset, r.StatusReason)
	for _, reason := range r.GradeReasons {
		p("  %s%s%s\n", s.dim, reason, s.reset)
	}
	if pol := r.Policy; pol != nil {
		p("\nEffective policy  id %s, mode %s, max_age %d\n", r.PolicyID, pol.Mode, pol.MaxAge)
		if len(pol.MX) > 0 {
			p("  mx: %s\n", strings.Join(pol.MX, ", "))
		}
	}

	byComp := map[finding.Component][]finding.Finding{}
	for _, f := range r.Findings {
		byComp[f.Component] = append(byComp[f.Component], f)
	}
	for _, c := range finding.Components {
		if (c == finding.ComponentHistory || c == finding.ComponentReports) && len(byComp[c]) == 0 {
			continue // only monitoring compares scans and reads reports
		}
		p("\n%s%s%s\n", s.bold, c.Title(), s.reset)
		for _, line := range observed(r, c) {
			p("  %s%s%s\n", s.dim, line, s.reset)
		}
		fs := byComp[c]
		if len(fs) == 0 && !(c == finding.ComponentSMTP && len(r.MX) > 0 && !probed(r)) {
			p("  %s✓%s no problems\n", s.green, s.reset)
		}
		for _, f := range fs {
			p("  %s %s%s%s  %s\n", s.sev(f.Severity), s.dim, f.ID, s.reset, f.Message)
			if f.Fix != "" && f.Severity >= finding.Warning {
				p("          %sfix:%s %s\n", s.bold, s.reset, f.Fix)
			}
		}
	}

	if len(r.Senders) > 0 {
		p("\n%sHow senders read it%s\n", s.bold, s.reset)
		for _, v := range r.Senders {
			what := "no policy: " + v.Reason
			if v.Applies {
				what = fmt.Sprintf("mode %s, max_age %d, mx %s", v.Mode, v.MaxAge, strings.Join(v.MX, ", "))
			}
			p("  %-26s %s\n", v.Sender, what)
		}
	}

	if len(r.Fixes) > 0 {
		p("\n%sFixes%s\n", s.bold, s.reset)
		n := 0
		for _, f := range r.Fixes {
			switch f.Kind {
			case check.FixPolicy:
				n++
				p("%d. Serve this file at %s with Content-Type: %s\n", n, f.URL, f.ContentType)
				if f.Text != "" {
					p("   %s\n", f.Text)
				}
				p("----- mta-sts.txt -----\n%s----- end -----\n", strings.ReplaceAll(f.Content, "\r\n", "\n"))
			case check.FixDNS:
				n++
				verb := "Publish"
				if f.Action == "delete" {
					verb = "Delete"
				}
				p("%d. %s in DNS:\n%s\n", n, verb, ZoneLine(f.Record))
				if f.Text != "" {
					p("   %s\n", f.Text)
				}
			case check.FixNote:
				n++
				p("%d. %s\n", n, f.Text)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// observed summarises the evidence of one component in a few lines.
func observed(r *check.Report, c finding.Component) []string {
	o := r.Evidence
	if o == nil {
		return nil
	}
	switch c {
	case finding.ComponentRecord:
		return txtLines("_mta-sts."+o.Domain, o.DNS.STS)
	case finding.ComponentPolicyHost:
		var out []string
		if o.PolicyHostOverride != "" {
			out = append(out, fmt.Sprintf("%s: connect-to %s", o.PolicyHost, o.PolicyHostOverride))
		}
		for _, a := range []*resolve.Answer{o.DNS.PolicyHostA, o.DNS.PolicyHostAAAA} {
			if a != nil && a.Status != resolve.StatusOK && a.Status != resolve.StatusNoData {
				out = append(out, fmt.Sprintf("%s %s: %s", o.PolicyHost, a.Type, a.Status))
			}
		}
		for _, f := range o.Fetches {
			out = append(out, fetchLine(f))
		}
		return out
	case finding.ComponentPolicy:
		if len(o.Fetches) == 0 {
			return nil
		}
		for _, f := range o.Fetches {
			if f.Status == 200 {
				return []string{fmt.Sprintf("%d bytes, %d lines", len(f.Body), strings.Count(string(f.Body), "\n")+boolInt(len(f.Body) > 0 && !strings.HasSuffix(string(f.Body), "\n")))}
			}
		}
	case finding.ComponentMX:
		var out []string
		if a := o.DNS.MX; a != nil && a.Status != resolve.StatusOK {
			out = append(out, fmt.Sprintf("%s MX: %s", o.Domain, a.Status))
		}
		var beyond []check.MX // over the MX limit: one summary line
		for _, m := range r.MX {
			if m.NotChecked == scan.SkippedLimit {
				beyond = append(beyond, m)
				continue
			}
			cov := coverage(m)
			pref := fmt.Sprintf("%5d", m.Preference)
			if m.Implicit {
				pref = "(implicit)"
			}
			if m.NotChecked != "" {
				out = append(out, fmt.Sprintf("%s %-32s %s, not looked up: %s", pref, m.Host, cov, m.NotCheckedWhy()))
				continue
			}
			if len(m.Addresses) > 0 {
				out = append(out, fmt.Sprintf("%s %-32s %s", pref, m.Host, cov))
				for _, a := range m.Addresses {
					out = append(out, "           "+addressLine(a))
				}
				continue
			}
			out = append(out, fmt.Sprintf("%s %-32s %s%s", pref, m.Host, cov, addrSummary(o, m.Host)))
		}
		if len(beyond) > 0 {
			var uncovered []string
			for _, m := range beyond {
				if m.Covered != nil && !*m.Covered {
					uncovered = append(uncovered, m.Host)
				}
			}
			line := fmt.Sprintf("%d more MX hosts (preference %d to %d), not looked up: %s", len(beyond), beyond[0].Preference, beyond[len(beyond)-1].Preference, beyond[0].NotCheckedWhy())
			switch {
			case beyond[0].Covered == nil:
			case len(uncovered) == 0:
				line += "; all covered by the policy"
			default:
				line += fmt.Sprintf("; %d NOT covered by the policy", len(uncovered))
			}
			out = append(out, line)
		}
		return out
	case finding.ComponentSMTP:
		if len(r.MX) > 0 && !probed(r) {
			return []string{"not probed (--no-smtp)"}
		}
	case finding.ComponentDANE:
		var out []string
		for _, m := range r.MX {
			if m.DANE == nil || len(m.DANE.Records) == 0 {
				continue
			}
			out = append(out, fmt.Sprintf("%s (%s): %s", m.DANE.Owner, m.DANE.DNSSEC, strings.Join(m.DANE.Records, ", ")))
		}
		if len(out) == 0 && len(r.MX) > 0 {
			out = append(out, "no TLSA records for the MX hosts")
		}
		return out
	case finding.ComponentTLSRPT:
		return txtLines("_smtp._tls."+o.Domain, o.DNS.TLSRPT)
	}
	return nil
}

func txtLines(name string, a *resolve.Answer) []string {
	if a == nil {
		return nil
	}
	if a.Status != resolve.StatusOK {
		return []string{fmt.Sprintf("%s TXT: %s", name, a.Status)}
	}
	var out []string
	for _, t := range a.TXT() {
		out = append(out, fmt.Sprintf("%s TXT %s (TTL %d)", name, QuoteTXT(t), a.MinTTL()))
	}
	return out
}

func fetchLine(f *fetch.Result) string {
	where := f.Address
	if where == "" {
		where = f.Dialed
	}
	if f.TLS == nil {
		return fmt.Sprintf("%s  %s", where, f.Error)
	}
	cert := "certificate OK"
	if !f.TLS.Verdict.OK() {
		cert = "certificate NOT accepted"
	}
	if !f.TLS.Verdict.NotAfter.IsZero() {
		cert += ", valid until " + f.TLS.Verdict.NotAfter.Format(time.DateOnly)
	}
	status := "no response"
	if f.Status != 0 {
		status = fmt.Sprintf("HTTP %d", f.Status)
		if ct, ok := f.Header["Content-Type"]; ok {
			status += " " + ct
		}
	}
	return fmt.Sprintf("%s  %s, %s, %s, %s", where, f.TLS.Version, cert, status, ms(f.Timings.Total))
}

// coverage says whether the policy covers an MX host.
func coverage(m check.MX) string {
	switch {
	case m.Covered == nil:
		return "no policy to match"
	case *m.Covered:
		return "covered by " + m.Pattern
	}
	return "NOT covered by the policy"
}

// notProbed words the classes of probes that did not look at the server.
var notProbed = map[smtpprobe.Class]string{
	smtpprobe.NotProbedBudget: "not probed (time budget)",
	smtpprobe.NotProbedLimit:  "not probed (address limit)",
	smtpprobe.CutOff:          "not finished (time budget)",
}

// addressLine summarises one probed MX address.
func addressLine(a check.Address) string {
	if a.Probe != nil && !a.Probe.Class.Observed() {
		return fmt.Sprintf("? %-15s %s", a.IP, notProbed[a.Probe.Class])
	}
	var parts []string
	switch {
	case a.Probe != nil && a.Probe.Class != "" && a.TLSVersion == "" && a.ResultType == "":
		parts = append(parts, "not checked: "+a.Probe.Error)
	case a.Probe != nil && a.Probe.Class != "" && a.TLSVersion == "":
		parts = append(parts, "NO TLS: "+a.Probe.Error)
	default:
		parts = append(parts, "STARTTLS "+a.TLSVersion)
		switch {
		case a.CertValid:
			parts = append(parts, "certificate valid until "+a.CertNotAfter.Format(time.DateOnly))
		default:
			parts = append(parts, "certificate NOT valid: "+a.CertError)
		}
		if a.PolicyMatch != nil {
			if *a.PolicyMatch {
				parts = append(parts, "names a policy pattern")
			} else {
				parts = append(parts, "names no policy pattern")
			}
		}
	}
	switch a.DANE {
	case check.DANEAddrValid:
		parts = append(parts, "DANE valid ("+a.DANERecord+")")
	case check.DANEAddrMismatch:
		parts = append(parts, "DANE MISMATCH")
	case check.DANEAddrUnverified:
		parts = append(parts, "DANE not verified")
	}
	mark := "✗"
	if a.Pass {
		mark = "✓"
	}
	return fmt.Sprintf("%s %-15s %s", mark, a.IP, strings.Join(parts, ", "))
}

func probed(r *check.Report) bool {
	for _, m := range r.MX {
		if len(m.Addresses) > 0 {
			return true
		}
	}
	return false
}

func addrSummary(o *scan.Observations, host string) string {
	for _, h := range o.MXHosts {
		if h.Host != host {
			continue
		}
		var addrs []string
		for _, a := range h.Addrs() {
			addrs = append(addrs, a.String())
		}
		if len(addrs) == 0 {
			return ""
		}
		return "  [" + strings.Join(addrs, " ") + "]"
	}
	return ""
}

func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
