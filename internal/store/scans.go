package store

import (
	"context"
	"time"
)

// ScanID identifies a scan.
type ScanID int64

// ScanState is where a scan is.
type ScanState string

// Scan states.
const (
	ScanQueued  ScanState = "queued"
	ScanRunning ScanState = "running"
	ScanDone    ScanState = "done"   // finished with a report (whatever its grade)
	ScanFailed  ScanState = "failed" // could not run to a report (Error says why)
)

// Trigger is why a scan ran.
type Trigger string

// Triggers.
const (
	TriggerAnonymous Trigger = "anonymous" // the public scan page; expires
	TriggerManual    Trigger = "manual"    // "rescan now"
	TriggerSchedule  Trigger = "schedule"
	TriggerAPI       Trigger = "api"
)

// Scan is a scan's metadata and summary; the full report is fetched with
// ScanReport and the findings with ScanFindings.
type Scan struct {
	ID       ScanID
	UserID   UserID   // 0 for an anonymous scan
	DomainID DomainID // 0 for an anonymous scan
	Name     string
	Trigger  Trigger
	State    ScanState

	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExpiresAt  time.Time // anonymous scans only

	// The versions a page from history needs to say "the rules have
	// changed since" (Internet.nl #14, #2040, #2070).
	ScannerVersion string
	CatalogVersion string
	ReportSchema   int // the JSON document's schema_version

	Grade        string // "" when undetermined
	PolicyStatus string
	Errors       int // findings by severity
	Warnings     int
	Infos        int
	Error        string // why a failed scan failed

	ReportSize   int      // bytes of the JSON document
	StoredSize   int      // bytes it takes compressed
	ReportSHA256 [32]byte // of the JSON document
	// Pruned: retention reduced the scan to its summary and findings.
	Pruned   bool
	PrunedAt time.Time
}

// Finding is one finding of a scan, as stored for diffs and queries
// (the report's findings[], without the fix text).
type Finding struct {
	ID        string // catalog ID, e.g. "policy-mx-not-covered"
	Severity  string // error, warning, info
	Component string
	Subject   string
	Message   string
}

// Key identifies a finding across scans for diffs: the same ID about the
// same subject is the same problem (added, removed or sustained).
func (f Finding) Key() string { return f.ID + "\x00" + f.Subject }

// NewScan is a scan to record before it runs.
type NewScan struct {
	DomainID  DomainID // 0: anonymous (then Name and ExpiresAt are required)
	Name      string   // taken from the domain when DomainID is set
	Trigger   Trigger
	ExpiresAt time.Time // anonymous scans: deleted by Prune after this
}

// Release gives a domain's schedule lease back as part of FinishScan.
type Release struct {
	Owner string
	Next  time.Time
	// AlertState, when not nil, replaces the domain's alert state: the
	// decision about this scan, stored with its alerts (Messages).
	AlertState []byte
	// OpenErrors and OpenWarnings count the open problems of AlertState
	// (stored with it; ignored when AlertState is nil).
	OpenErrors, OpenWarnings int
}

// ScanResult is what a finished scan stores, in one transaction.
type ScanResult struct {
	State          ScanState // ScanDone or ScanFailed
	Error          string
	ScannerVersion string
	CatalogVersion string
	ReportSchema   int
	Grade          string
	PolicyStatus   string
	Report         []byte // the CLI's JSON document, evidence included
	Findings       []Finding
	// Messages are alerts decided from this scan, queued in the same
	// transaction, so an alert is neither lost nor doubled by a crash
	// between deciding and storing.
	Messages []NewMessage
	// Release, when set, releases the domain's schedule lease with the
	// same transaction. If the lease was lost (another worker took the
	// domain over), nothing of the result is kept: the scan is marked
	// failed and FinishScan returns ErrLeaseLost.
	Release *Release
}

// Cursor is an opaque position in a paged list; "" is the start.
type Cursor string

// Scans are scans and their history.
type Scans interface {
	CreateScan(ctx context.Context, s NewScan) (Scan, error)
	// StartScan moves a queued scan to running; ErrConflict when it is not
	// queued.
	StartScan(ctx context.Context, id ScanID) error
	// FinishScan stores the result of a queued or running scan;
	// ErrConflict when it has finished already.
	FinishScan(ctx context.Context, id ScanID, r ScanResult) (Scan, error)
	GetScan(ctx context.Context, id ScanID) (Scan, error)
	// ScanReport is the JSON document as it was stored; ErrPruned for a
	// scan kept as a summary.
	ScanReport(ctx context.Context, id ScanID) ([]byte, error)
	ScanFindings(ctx context.Context, id ScanID) ([]Finding, error)
	// ListScans pages through a domain's history, newest first (by
	// creation time, then id). next is "" after the last page.
	ListScans(ctx context.Context, domain DomainID, before Cursor, limit int) (scans []Scan, next Cursor, err error)
}

// ScanEvent is one progress event of a scan, kept for SSE replay
// (Last-Event-ID is the Seq).
type ScanEvent struct {
	ScanID    ScanID
	Seq       int64 // 1, 2, 3… per scan
	CreatedAt time.Time
	Kind      string
	Data      []byte
}

// ScanEvents are progress events.
type ScanEvents interface {
	// AppendScanEvent adds the next event of the scan.
	AppendScanEvent(ctx context.Context, scan ScanID, kind string, data []byte) (ScanEvent, error)
	// ScanEventsAfter lists the events after seq, in order.
	ScanEventsAfter(ctx context.Context, scan ScanID, after int64, limit int) ([]ScanEvent, error)
}

// Share is an explicit, expiring, unguessable link to one saved scan.
type Share struct {
	ID        string // 128 random bits, base32
	ScanID    ScanID
	UserID    UserID
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Shares are share links.
type Shares interface {
	// CreateShare shares one of the user's saved scans for ttl;
	// ErrNotFound when the scan is not the user's.
	CreateShare(ctx context.Context, user UserID, scan ScanID, ttl time.Duration) (Share, error)
	// GetShare returns a live share; ErrNotFound when unknown or expired.
	GetShare(ctx context.Context, id string) (Share, error)
	ListShares(ctx context.Context, user UserID) ([]Share, error)
	DeleteShare(ctx context.Context, user UserID, id string) error
}

// Leases are named leases for singletons (a janitor, a digest run): one
// owner at a time, taken over after expiry.
type Leases interface {
	// AcquireLease takes or extends the lease; false when another owner
	// holds it unexpired.
	AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	// RenewLease extends a held lease; ErrLeaseLost otherwise.
	RenewLease(ctx context.Context, name, owner string, ttl time.Duration) error
	// ReleaseLease gives it back; ErrLeaseLost when not held by owner.
	ReleaseLease(ctx context.Context, name, owner string) error
}
