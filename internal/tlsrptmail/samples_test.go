package tlsrptmail

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// readSample reads one file of ../shared/tlsrpt-samples the way a file
// import will: told by content, a report body or a mail.
func readSample(t *testing.T, path string) ([]*tlsrpt.Report, *Message) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	switch k := Detect(raw); k {
	case KindReport:
		r, err := tlsrpt.Parse(bytes.NewReader(raw), &tlsrpt.Options{Hints: tlsrpt.Hints{FileName: filepath.Base(path)}})
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return []*tlsrpt.Report{r}, nil
	case KindMessage, KindMbox:
		m, err := Extract(bytes.NewReader(raw), nil)
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return m.Parsed(), m
	default:
		t.Fatalf("Detect says %s", k)
	}
	return nil, nil
}

// TestSamples reads every file of ../shared/tlsrpt-samples (53 real
// reports, mails and fixtures) and checks that each yields its report and
// numbers. Numbers are cross-checked two ways: files holding the same
// report (an .eml and its .json, the RFC example copied by several
// projects) must agree, and the mails' numbers must match what Python's
// email package decoded from them when the samples were collected
// (mailFacts).
func TestSamples(t *testing.T) {
	dir := lab.Shared(t, "tlsrpt-samples")
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	type seen struct {
		file string
		sig  string
	}
	byKey := map[string][]seen{}
	n := 0
	for _, f := range files {
		name := filepath.Base(f)
		if filepath.Ext(name) == ".md" {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			reps, m := readSample(t, f)
			if len(reps) != 1 {
				t.Fatalf("%d reports", len(reps))
			}
			r := reps[0]
			if r.ReportID == "" || r.OrganizationName == "" || len(r.Policies) == 0 || r.Start.IsZero() {
				t.Errorf("incomplete report %+v", r)
			}
			if fact, ok := mailFacts[name]; ok {
				fact(t, r, m)
			} else if m != nil {
				t.Errorf("no facts for mail sample %s", name)
			}
			k := r.OrganizationName + "\x00" + r.ReportID
			byKey[k] = append(byKey[k], seen{name, numbers(r)})
		})
	}
	if n != 53 {
		t.Errorf("%d samples, want 53", n)
	}
	// Same report, same numbers; the one known exception is a developer's
	// edit of a real Microsoft report, which keeps the id (a conflict a
	// deduplicating store must show).
	for k, group := range byKey {
		for _, s := range group[1:] {
			if s.sig != group[0].sig && !(slices.Contains([]string{group[0].file, s.file}, "neztore-microsoft-2025-08-03-edited.json")) {
				t.Errorf("%q: %s has %s, %s has %s", k, group[0].file, group[0].sig, s.file, s.sig)
			}
		}
	}
	if len(byKey["Company-X\x005065427c-23d3-47ca-b6e0-946ea0e8c4be"]) != 6 {
		t.Errorf("the RFC example appears %d times, want 6", len(byKey["Company-X\x005065427c-23d3-47ca-b6e0-946ea0e8c4be"]))
	}
}

// numbers is the report's figures in one string.
func numbers(r *tlsrpt.Report) string {
	s := r.Start.Format("2006-01-02")
	for _, p := range r.Policies {
		s += fmt.Sprintf(" %s:%s:%d/%d/%d", p.Type, p.Domain, p.Successful, p.Failed, p.DetailsFailed)
	}
	return s
}

type mailFact func(t *testing.T, r *tlsrpt.Report, m *Message)

// want checks the report's figures and notes.
func want(nums string, notes ...tlsrpt.NoteCode) mailFact {
	return func(t *testing.T, r *tlsrpt.Report, m *Message) {
		t.Helper()
		if got := numbers(r); got != nums {
			t.Errorf("numbers %s, want %s", got, nums)
		}
		for _, c := range notes {
			if !r.HasNote(c) {
				t.Errorf("no %s note: %+v", c, r.Notes)
			}
		}
	}
}

// mailFacts: figures of the .eml samples as decoded independently (Python
// email + gzip) when they were collected, and the quirks each shows.
var mailFacts = map[string]mailFact{
	"ghtower-google-2022-01-09.eml":            want("2022-01-09 sts:digilicious.com:5/0/0", tlsrpt.NotePolicyStringCR, NoteSubjectReportID, NoteHeaderMissing),
	"isseis-tlsrpt_failure.eml":                want("2026-02-08 sts:example.com:4523/2/2", NoteSubjectReportID),
	"isseis-tlsrpt_success_google_1.eml":       want("2026-05-11 sts:example.com:1/0/0", NoteSubjectReportID),
	"isseis-tlsrpt_success_google_2.eml":       want("2026-05-12 sts:example.com:4/0/0", NoteSubjectReportID),
	"isseis-tlsrpt_success_microsoft.eml":      want("2026-05-13 sts:example.com:2/0/0", tlsrpt.NoteMXHostMissing),
	"kravietz-google1.eml":                     want("2024-09-15 sts:krvtz.net:1/0/0", NoteSubjectReportID),
	"kravietz-google2.eml":                     want("2024-09-18 sts:krvtz.net:2/0/0", NoteSubjectReportID),
	"kravietz-mail.ru.eml":                     want("2023-01-25 sts:krvtz.net:0/1/1", NoteCloseBoundary, NoteSubmitterMismatch, tlsrpt.NotePolicyStringMissing),
	"kravietz-microsoft1.eml":                  tlsaFact("2024-09-13 sts:krvtz.net:2/0/0 tlsa:krvtz.net:2/0/0", 13),
	"marcbradshaw-google-2020-03-02.eml":       want("2020-03-02 no-policy-found:fastmaildmarc.com:343/0/0", NoteSubjectReportID),
	"mox-google-2022-09-15.eml":                want("2022-09-15 sts:test.xmox.nl:3/0/0", NoteSubjectReportID),
	"mox-microsoft-2023-01-10.eml":             want("2023-01-10 sts:test.xmox.nl:2/0/0", tlsrpt.NoteDateNoZone),
	"parsedmarc-google-2024-09-03.eml":         want("2024-09-03 no-policy-found:cardinalhealth.ca:48/0/0", NoteSubjectReportID),
	"robalexdev-test.eml":                      want("2016-04-01 sts:company-y.example:5326/303/303", NoteCloseBoundary, tlsrpt.NoteMXHostString),
	"stalwart-rpt01.eml":                       want("2016-04-01 sts:company-y.example:5326/303/303", NoteReportDomainAbsent),
	"stalwart-rpt02.eml":                       want("2020-01-01 sts:example.com:23/1/1", NoteMediaType, tlsrpt.NoteDateNotOneDay),
	"blog-jamieweb-google-2019-12-11.json":     want("2019-12-11 sts:example.com:773/0/0", tlsrpt.NoteMXHostMissing),
	"parsedmarc-mailru-2024-02-22.json":        want("2024-02-22 sts:example.com:0/1/2", tlsrpt.NoteTotalsDisagree),
	"issue-cryinc57-microsoft-2025-06-14.json": want("2025-06-14 sts:xxxxxxxx.xx:0/3/3", tlsrpt.NoteSendingIPMissing, tlsrpt.NoteMXHostnameMissing),
}

func tlsaFact(nums string, records int) mailFact {
	return func(t *testing.T, r *tlsrpt.Report, m *Message) {
		want(nums, tlsrpt.NotePolicyStringTLSA)(t, r, m)
		if len(r.Policies[1].Strings) != records {
			t.Errorf("%d TLSA records, want %d", len(r.Policies[1].Strings), records)
		}
	}
}
