package bulk

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// SummaryVersion is the version of the summary JSON (docs/bulk.md).
const SummaryVersion = 1

// topFindings is how many finding IDs the summary lists.
const topFindings = 20

// Summary says what a run did and what it found. Counts of domains are of
// the records this run wrote (not those a resumed run found in the file).
type Summary struct {
	SchemaVersion int     `json:"schema_version"`
	StartedAt     string  `json:"started_at"`
	FinishedAt    string  `json:"finished_at"`
	Seconds       float64 `json:"seconds"`
	// Interrupted: the run was stopped (Ctrl-C, SIGTERM) before the end of
	// its input; Complete: every domain of the input (of this shard) has a
	// record in the output, from this run or an earlier one (--resume).
	Interrupted bool   `json:"interrupted"`
	Complete    bool   `json:"complete"`
	Error       string `json:"error,omitempty"` // what stopped the run, when not an interrupt

	Input InputCounts `json:"input"`

	Scanned   int `json:"scanned"`   // records written by this run
	Abandoned int `json:"abandoned"` // in flight when the run was stopped; no record written
	// NotStarted is how many domains of the input were never started
	// (null when the input was not read to its end).
	NotStarted       *int    `json:"not_started"`
	DomainsPerSecond float64 `json:"domains_per_second"`

	MTASTSRecord       int            `json:"mta_sts_record"`
	ValidPolicy        int            `json:"valid_policy"`
	Modes              map[string]int `json:"modes"`
	PolicyStatus       map[string]int `json:"policy_status"`
	FullMXCoverage     int            `json:"full_mx_coverage"`
	STARTTLSEverywhere int            `json:"starttls_everywhere"`
	DANE               int            `json:"dane"` // every MX host DANE-valid
	TLSRPT             int            `json:"tlsrpt"`
	Grades             map[string]int `json:"grades"` // "undetermined" when no grade
	TopFindings        []FindingCount `json:"top_findings"`
	ScanErrors         map[string]int `json:"scan_errors"` // domains per kind
	ErrorFindings      int            `json:"domains_with_error_findings"`

	Shared Stats `json:"shared"`

	findings map[string]int
}

// InputCounts account for every line of the input.
type InputCounts struct {
	Lines        int         `json:"lines"`         // lines read
	Domains      int         `json:"domains"`       // distinct valid domains in this shard
	InvalidLines int         `json:"invalid_lines"` // lines that are not a domain (skipped)
	Invalid      []LineError `json:"invalid,omitempty"`
	Duplicates   int         `json:"duplicates"`   // repeated domains (scanned once)
	OtherShards  int         `json:"other_shards"` // domains left to other --shard partitions
	AlreadyDone  int         `json:"already_done"` // found in the output file (--resume)
	Remaining    int         `json:"to_scan"`      // domains this run had to scan
	Complete     bool        `json:"read_to_end"`  // the whole input was read
}

// FindingCount is how many domains have one finding ID.
type FindingCount struct {
	ID      string `json:"id"`
	Domains int    `json:"domains"`
}

// maxInvalidKept is how many invalid lines the summary lists (all are
// counted).
const maxInvalidKept = 100

func newSummary(start time.Time) *Summary {
	return &Summary{
		SchemaVersion: SummaryVersion,
		StartedAt:     start.UTC().Format(time.RFC3339),
		Modes:         map[string]int{},
		PolicyStatus:  map[string]int{},
		Grades:        map[string]int{},
		ScanErrors:    map[string]int{},
		findings:      map[string]int{},
	}
}

// add counts one written record.
func (s *Summary) add(f Facts) {
	s.Scanned++
	if f.MTASTSRecord {
		s.MTASTSRecord++
	}
	if f.Mode != "" {
		s.ValidPolicy++
		s.Modes[f.Mode]++
	}
	s.PolicyStatus[f.Status]++
	if f.FullCoverage {
		s.FullMXCoverage++
	}
	if f.STARTTLSEverywhere {
		s.STARTTLSEverywhere++
	}
	if f.DANE == "valid" {
		s.DANE++
	}
	if f.TLSRPT {
		s.TLSRPT++
	}
	s.Grades[cmp.Or(f.Grade, "undetermined")]++
	for _, id := range f.Findings {
		s.findings[id]++
	}
	for _, k := range f.ScanErrors {
		s.ScanErrors[k]++
	}
	if len(f.ErrorFindings) > 0 {
		s.ErrorFindings++
	}
}

// finish fills the derived fields.
func (s *Summary) finish(end time.Time, start time.Time) {
	s.FinishedAt = end.UTC().Format(time.RFC3339)
	s.Seconds = end.Sub(start).Seconds()
	if s.Seconds > 0 {
		s.DomainsPerSecond = float64(s.Scanned) / s.Seconds
	}
	ids := slices.Collect(maps.Keys(s.findings))
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Or(cmp.Compare(s.findings[b], s.findings[a]), cmp.Compare(a, b))
	})
	s.TopFindings = []FindingCount{}
	for _, id := range ids[:min(len(ids), topFindings)] {
		s.TopFindings = append(s.TopFindings, FindingCount{ID: id, Domains: s.findings[id]})
	}
}

// WriteText writes the summary for a person (stderr at the end of a run).
func (s *Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	in := s.Input
	switch {
	case s.Error != "":
		fmt.Fprintf(&b, "stopped: %s\n", s.Error)
	case s.Interrupted:
		fmt.Fprintf(&b, "interrupted after %s: %d of %s domains scanned", dur(s.Seconds), s.Scanned, remaining(s))
		fmt.Fprintf(&b, ", %d abandoned in flight (no record written)", s.Abandoned)
		if s.NotStarted != nil {
			fmt.Fprintf(&b, ", %d not started", *s.NotStarted)
		}
		b.WriteString("; run again with --resume to finish\n")
	default:
		fmt.Fprintf(&b, "scanned %d domains in %s (%.1f/s)\n", s.Scanned, dur(s.Seconds), s.DomainsPerSecond)
	}
	fmt.Fprintf(&b, "input: %d lines, %d domains", in.Lines, in.Domains)
	for _, x := range []struct {
		n    int
		what string
	}{{in.InvalidLines, "invalid lines skipped"}, {in.Duplicates, "duplicates"}, {in.OtherShards, "in other shards"}, {in.AlreadyDone, "already in the output"}} {
		if x.n > 0 {
			fmt.Fprintf(&b, ", %d %s", x.n, x.what)
		}
	}
	b.WriteString("\n")
	if s.Scanned > 0 {
		pct := func(n int) string { return fmt.Sprintf("%d (%.0f%%)", n, 100*float64(n)/float64(s.Scanned)) }
		fmt.Fprintf(&b, "MTA-STS record: %s; valid policy: %s (enforce %d, testing %d, none %d)\n",
			pct(s.MTASTSRecord), pct(s.ValidPolicy), s.Modes["enforce"], s.Modes["testing"], s.Modes["none"])
		fmt.Fprintf(&b, "policy covers every MX: %s; STARTTLS on every MX address: %s; DANE on every MX: %s; TLS-RPT: %s\n",
			pct(s.FullMXCoverage), pct(s.STARTTLSEverywhere), pct(s.DANE), pct(s.TLSRPT))
		b.WriteString("grades:")
		for _, g := range []string{"A+", "A", "B", "C", "D", "F", "undetermined"} {
			if n := s.Grades[g]; n > 0 {
				fmt.Fprintf(&b, " %s %d", g, n)
			}
		}
		b.WriteString("\n")
		if len(s.TopFindings) > 0 {
			b.WriteString("most common findings:")
			for _, f := range s.TopFindings[:min(len(s.TopFindings), 5)] {
				fmt.Fprintf(&b, " %s %d,", f.ID, f.Domains)
			}
			b.WriteString("\n")
		}
		if len(s.ScanErrors) > 0 {
			b.WriteString("could not look (domains by kind):")
			keys := slices.Sorted(maps.Keys(s.ScanErrors))
			for _, k := range keys {
				fmt.Fprintf(&b, " %s %d,", k, s.ScanErrors[k])
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "shared work: %d DNS lookups (%d answers shared), %d policy fetches, %d SMTP probes (%d results shared)\n",
		s.Shared.DNSQueries, s.Shared.DNSShared, s.Shared.Fetches, s.Shared.Probes, s.Shared.ProbesShared)
	_, err := io.WriteString(w, strings.ReplaceAll(b.String(), ",\n", "\n"))
	return err
}

func remaining(s *Summary) string {
	if s.NotStarted != nil {
		return fmt.Sprint(s.Scanned + s.Abandoned + *s.NotStarted)
	}
	return "?"
}

func dur(sec float64) string {
	return (time.Duration(sec*float64(time.Second)) / time.Millisecond * time.Millisecond).String()
}
