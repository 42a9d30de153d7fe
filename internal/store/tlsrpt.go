package store

import (
	"context"
	"time"

	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
)

// TLS-RPT aggregate reports (RFC 8460 §4) as the report intake stores them.
// The parser (internal/tlsrpt) turns what arrives into a *tlsrpt.Report;
// the store deduplicates by (organization-name, report-id) across
// channels, keeps every copy's provenance, keeps a second report with the
// same key and other content as a visible conflict (the first stays
// counted), and gives the reports of a domain and window back for
// aggregation (internal/tlsrptagg).

// ReportID identifies a stored TLS-RPT report (not the report-id in it).
type ReportID int64

// ReportState is whether a stored report counts.
type ReportState string

// Report states.
const (
	ReportCounted  ReportState = "counted"  // counts; one per (organization, report-id)
	ReportConflict ReportState = "conflict" // same key as a counted report, other content: shown, never counted
	ReportIgnored  ReportState = "ignored"  // e.g. mail without a valid DKIM signature (RFC 8460 §3)
	ReportHeld     ReportState = "held"     // about a domain nobody configured
)

// ReportReceipt is where and how one copy of a report arrived.
type ReportReceipt struct {
	Channel    string    // https, smtp, imap, file
	ReceivedAt time.Time // zero: now
	ClientIP   string
	DKIM       string // the DKIM result: pass, fail, none, temperror…
	DKIMDomain string
	FileName   string
	MessageID  string
}

// NewTLSRPTReport is one arrival of a report.
type NewTLSRPTReport struct {
	Report  *tlsrpt.Report
	Raw     []byte // the bytes as received (compressed by the store)
	Receipt ReportReceipt
	// Ignore, when set, is why this copy must not count (e.g. "no valid
	// DKIM signature"); Hold keeps a report about an unconfigured domain
	// aside. A later copy of the same report that may count makes it
	// count (OutcomePromoted).
	Ignore string
	Hold   bool
}

// ReportOutcome is what AddTLSRPTReport did with an arrival.
type ReportOutcome string

// Outcomes.
const (
	OutcomeNew       ReportOutcome = "new"       // stored, in the state it was given (or conflict)
	OutcomeDuplicate ReportOutcome = "duplicate" // the same report again: receipt added, nothing counted twice
	OutcomePromoted  ReportOutcome = "promoted"  // seen before as ignored or held; counts now
)

// StoredTLSRPT is a stored report.
type StoredTLSRPT struct {
	ID        ReportID
	Report    *tlsrpt.Report
	State     ReportState
	Reason    string // why ignored, held or in conflict
	Receipts  []ReportReceipt
	Raw       []byte // only from GetTLSRPTReport with raw
	RawSize   int
	RawPruned bool // retention removed the raw bytes
	CreatedAt time.Time
}

// TLSRPTQuery selects stored reports.
type TLSRPTQuery struct {
	// Domain: reports with a policy for this domain ("" any).
	Domain string
	// From, To: reports whose date range overlaps [From, To) (zero: open).
	From, To time.Time
	// States: only these (nil: all).
	States []ReportState
	// After: the page after this cursor, "" the first; ordered by start
	// time, then id.
	After Cursor
	Limit int // default 1000
}

// TLSRPT stores TLS-RPT reports.
type TLSRPT interface {
	// AddTLSRPTReport stores one arrival of a report.
	AddTLSRPTReport(ctx context.Context, r NewTLSRPTReport) (StoredTLSRPT, ReportOutcome, error)
	// GetTLSRPTReport returns one report, with its raw bytes if raw.
	GetTLSRPTReport(ctx context.Context, id ReportID, raw bool) (StoredTLSRPT, error)
	// ListTLSRPTReports returns one page of reports and the cursor of the
	// next ("" after the last).
	ListTLSRPTReports(ctx context.Context, q TLSRPTQuery) ([]StoredTLSRPT, Cursor, error)
	// DeleteTLSRPTDomain deletes the reports with a policy for domain
	// (deleting a domain deletes its reports) and says how many.
	DeleteTLSRPTDomain(ctx context.Context, domain string) (int, error)
	// TLSRPTSummary sums the counted reports' figures for domain over the
	// UTC days [from, to) (zero: open), as tlsrptagg.Aggregate sums the
	// reports themselves: from rows kept per report, domain, day and
	// policy type, so that a year of reports is summed in milliseconds.
	TLSRPTSummary(ctx context.Context, domain string, from, to time.Time) (*tlsrptagg.Summary, error)
	// TLSRPTSums sums the same figures per policy type (what
	// Summary.Sums gives for domain), summed by the database: a year
	// of daily reports from many reporters answers in milliseconds.
	TLSRPTSums(ctx context.Context, domain string, from, to time.Time) (*tlsrptagg.Sums, error)
	// CountTLSRPTReports counts the reports q selects (Domain, From, To,
	// States) by state.
	CountTLSRPTReports(ctx context.Context, q TLSRPTQuery) (map[ReportState]int, error)
	// ReleaseHeldTLSRPT makes the held reports about domain count, now
	// that it is configured; one whose key another report took meanwhile
	// becomes a conflict. It says how many now count.
	ReleaseHeldTLSRPT(ctx context.Context, domain string) (int, error)
	// RecordPromoteOverride keeps the record of a promotion forced past
	// a readiness verdict; ListPromoteOverrides gives a domain's, newest
	// first. Deleting the domain's reports deletes them too.
	RecordPromoteOverride(ctx context.Context, o PromoteOverride) error
	ListPromoteOverrides(ctx context.Context, domain string) ([]PromoteOverride, error)
}

// PromoteOverride is `mailtls policy promote --force` on a domain whose
// readiness verdict was not "ready" (tlsrpt-landscape.md §5.2 C-7).
type PromoteOverride struct {
	Domain   string
	PolicyID string    // the policy the verdict was about
	Status   string    // the verdict overridden: not-ready, not-enough-data
	Reasons  []string  // its reasons
	At       time.Time // zero: now
}
