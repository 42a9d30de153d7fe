package monitor

import (
	"fmt"
	"strings"
)

// Email is an alert rendered for e-mail: the subject, the text body and
// the header fields of a one-click unsubscribe (RFC 8058).
type Email struct {
	Subject string
	Text    string
	Header  map[string]string
}

var kindWords = map[string]string{
	"opened": "New problems", "worse": "Worse", "resolved": "Resolved", "reminder": "Still open",
}

var severityMark = map[string]string{"error": "✖ error  ", "warning": "▲ warning", "info": "ℹ info   "}

// RenderEmail writes a notification as a plain-text mail. Everything in it
// comes from the notification, so a mail sent again after a crash says the
// same.
func RenderEmail(n Notification) Email {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	e := Email{Header: map[string]string{}}
	if n.UnsubscribeURL != "" {
		// RFC 8058: a POST of "List-Unsubscribe=One-Click" to the URL
		// unsubscribes without further interaction.
		e.Header["List-Unsubscribe"] = "<" + n.UnsubscribeURL + ">"
		e.Header["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
	}
	switch n.Type {
	case TypeTest:
		e.Subject = "[mailtls] Test message"
		p("%s\n", n.Text)
	case TypeDigest:
		e.Subject = fmt.Sprintf("[mailtls] Daily summary: %s, %s open", plural(len(n.Domains), "domain", "domains"), plural(n.Open, "problem", "problems"))
		p("Your saved domains on %s.\n", n.Created.UTC().Format("2006-01-02"))
		for _, d := range n.Domains {
			grade := "no grade yet"
			if d.Grade != nil {
				grade = "grade " + *d.Grade
			}
			p("\n%s — %s", d.Domain, grade)
			if d.Muted {
				p(" (alerts muted)")
			}
			p("\n")
			if d.DomainURL != "" {
				p("  %s\n", d.DomainURL)
			}
			if len(d.Open) == 0 {
				p("  ✓ no open problems\n")
			}
			for _, ev := range d.Open {
				writeEvent(&b, ev, false)
			}
			for _, ev := range d.Resolved {
				p("  ✓ resolved: %s%s\n", ev.Title, subjectSuffix(ev.Finding.Subject))
			}
		}
	default:
		e.Subject = alertSubject(n)
		p("%s", n.Domain)
		if s := n.Scan; s != nil {
			p(" — scanned %s", s.At.UTC().Format("2006-01-02 15:04 UTC"))
			if s.Grade != nil {
				p(", grade %s", *s.Grade)
				if s.PreviousGrade != nil && *s.PreviousGrade != *s.Grade {
					p(" (was %s)", *s.PreviousGrade)
				}
			} else {
				p(", grade undetermined")
			}
		}
		p(".\n")
		last := ""
		for _, ev := range n.Events {
			if w := kindWords[ev.Kind]; w != last {
				p("\n%s\n", w)
				last = w
			}
			writeEvent(&b, ev, ev.Kind != "resolved")
		}
		p("\n")
		switch n.Open {
		case 0:
			p("No problem is open now.\n")
		default:
			p("%s open now.\n", plural(n.Open, "problem is", "problems are"))
		}
		if n.DomainURL != "" {
			p("History, the full report and a diff of the scans: %s\n(mute the domain's alerts there)\n", n.DomainURL)
		}
	}
	p("\n-- \nYou get this because this address is an alert channel of your mailtls account.\n")
	if n.UnsubscribeURL != "" {
		p("Unsubscribe this address: %s\n", n.UnsubscribeURL)
	}
	e.Text = b.String()
	return e
}

func writeEvent(b *strings.Builder, ev Event, details bool) {
	mark := severityMark[ev.Finding.Severity]
	if ev.Kind == "resolved" {
		mark = "✓ resolved"
	}
	title := ev.Title
	if title == "" {
		title = ev.Finding.ID
	}
	fmt.Fprintf(b, "  %s  %s%s\n", mark, title, subjectSuffix(ev.Finding.Subject))
	if !details {
		return
	}
	fmt.Fprintf(b, "    %s\n", ev.Finding.Message)
	if ev.Kind == "worse" && ev.Before != "" && ev.Before != ev.Finding.Severity {
		fmt.Fprintf(b, "    (was %s)\n", ev.Before)
	}
	if ev.Finding.Fix != "" {
		fmt.Fprintf(b, "    Fix: %s\n", ev.Finding.Fix)
	}
	ref := ev.Finding.ID
	if ev.Finding.Ref != "" {
		ref += ", " + ev.Finding.Ref
	}
	since := ""
	if !ev.Since.IsZero() && ev.Kind == "reminder" {
		since = ", open since " + ev.Since.UTC().Format("2006-01-02")
	}
	fmt.Fprintf(b, "    (%s%s)\n", ref, since)
}

func subjectSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " — " + s
}

func alertSubject(n Notification) string {
	count := map[string]int{}
	for _, ev := range n.Events {
		count[ev.Kind]++
	}
	var parts []string
	if c := count["opened"]; c > 0 {
		parts = append(parts, plural(c, "new problem", "new problems"))
	}
	if c := count["worse"]; c > 0 {
		parts = append(parts, plural(c, "problem worse", "problems worse"))
	}
	if c := count["resolved"]; c > 0 {
		parts = append(parts, plural(c, "problem resolved", "problems resolved"))
	}
	if c := count["reminder"]; c > 0 && len(parts) == 0 {
		parts = append(parts, plural(c, "problem still open", "problems still open"))
	}
	if len(n.Events) == 1 && n.Events[0].Title != "" && n.Events[0].Kind != "reminder" {
		parts = []string{kindWord(n.Events[0].Kind) + n.Events[0].Title}
	}
	s := "[mailtls] " + n.Domain + ": " + strings.Join(parts, ", ")
	if sc := n.Scan; sc != nil && sc.Grade != nil && sc.PreviousGrade != nil && *sc.Grade != *sc.PreviousGrade {
		s += fmt.Sprintf(" (grade %s → %s)", *sc.PreviousGrade, *sc.Grade)
	}
	return s
}

func kindWord(kind string) string {
	switch kind {
	case "resolved":
		return "resolved: "
	case "worse":
		return "worse: "
	}
	return ""
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
