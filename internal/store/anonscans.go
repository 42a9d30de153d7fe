package store

import (
	"context"
	"errors"
	"time"
)

// AnonScan is an anonymous scan of the web checker in a store that several
// instances share (docs/scaling.md, "Live scan progress"): live (queued or
// running on its Owner) or final. Anonymous scans are never listed: they
// are found by their unguessable id, or by domain for reuse, and deleted
// when they expire.
type AnonScan struct {
	ID     string
	Domain string
	SMTP   bool
	State  string // scanjob's states: queued, running, done, failed
	Final  bool
	Owner  string // the instance running it
	// Heartbeat is the owner's last sign of life while the scan is live.
	Heartbeat time.Time
	Created   time.Time
	Started   time.Time
	Finished  time.Time
	Expires   time.Time // a final scan is deleted then
	Error     string    // why a final scan failed without a record (interrupted)
	Record    []byte    // the finished scan (scanjob.Record as JSON); nil while live
}

// AnonEvent is one progress event of a live anonymous scan.
type AnonEvent struct {
	Seq     int
	Body    []byte    // scanjob.Event as JSON
	Written time.Time // the writer's wall clock when it was written
}

// AnonNotice is a signal that a scan changed: a new event (Seq > 0) or a
// new state (Seq 0).
type AnonNotice struct {
	ID  string
	Seq int
}

// ErrNoListen is ListenAnonScans' answer on an engine without
// notifications (SQLite): readers poll instead.
var ErrNoListen = errors.New("store: this engine has no notifications; poll")

// AnonLimits are the per-client limits a new anonymous scan is admitted
// under, held across every instance of the store (docs/scaling.md, "Limits
// per client"). The zero value admits every scan.
type AnonLimits struct {
	// Client is the client's key (web.ClientKey: an IPv4 address or an
	// IPv6 /64). The store keeps only a keyed hash of it, and only while
	// the client's scans are live and its rate is being counted.
	Client string
	// Rate and Burst: new scans per second, at most Burst at once (a token
	// bucket; Rate <= 0: no limit).
	Rate  float64
	Burst int
	// Concurrent bounds the client's live scans (<= 0: no limit).
	Concurrent int
	Now        time.Time // the clock of the rate
}

// AnonLimitError is BeginAnonScan's refusal of a client over a limit.
type AnonLimitError struct {
	Limit      string        // "rate" or "concurrent"
	RetryAfter time.Duration // rate: when the next scan is admitted
}

func (e *AnonLimitError) Error() string { return "store: client over its " + e.Limit + " limit" }

// AnonScans keeps anonymous scans shared by instances.
type AnonScans interface {
	// BeginAnonScan files a live scan, if the client is within its limits.
	// If a live scan of the same domain and options exists, it returns
	// that one and ErrConflict, whatever the limits (joining is free); a
	// client over a limit gets an *AnonLimitError and nothing is filed or
	// counted. An admitted scan counts against the rate and, while live,
	// against Concurrent. The check and the filing are atomic across
	// instances.
	BeginAnonScan(ctx context.Context, s AnonScan, lim AnonLimits) (*AnonScan, error)
	// SetAnonState moves a live scan to a live state and signals it.
	SetAnonState(ctx context.Context, id, state string, started time.Time) error
	// AddAnonEvent files event seq of a live scan and signals it.
	AddAnonEvent(ctx context.Context, id string, e AnonEvent) error
	// FinishAnonScan makes a scan final (inserting it if needed) and
	// signals it.
	FinishAnonScan(ctx context.Context, s AnonScan) error
	// GetAnonScan returns a scan by id, or ErrNotFound.
	GetAnonScan(ctx context.Context, id string) (*AnonScan, error)
	// RecentAnonScan returns the newest final "done" scan of domain with
	// these options that finished at or after since, or nil.
	RecentAnonScan(ctx context.Context, domain string, smtp bool, since time.Time) (*AnonScan, error)
	// AnonEvents returns the events of a scan after seq after, in order,
	// at most limit.
	AnonEvents(ctx context.Context, id string, after, limit int) ([]AnonEvent, error)
	// HeartbeatAnonScans marks the live scans ids of owner alive at t
	// (a scan its owner no longer runs, say one whose final write failed,
	// goes stale and is interrupted).
	HeartbeatAnonScans(ctx context.Context, owner string, ids []string, t time.Time) error
	// InterruptAnonScans makes final ("failed", with reason) the live
	// scans whose heartbeat is older than staleBefore (their owner died),
	// to expire at expires, signals them and returns how many.
	InterruptAnonScans(ctx context.Context, staleBefore, now, expires time.Time, reason string) (int, error)
	// DeleteExpiredAnonScans deletes the final scans that expire at or
	// before now, with their events, and returns how many. It also forgets
	// the rate of clients whose bucket is full again at now.
	DeleteExpiredAnonScans(ctx context.Context, now time.Time) (int, error)
	// ListenAnonScans calls f for every signal until ctx ends or the
	// connection fails (it returns the error); ErrNoListen without
	// notifications. Signals may be lost (a reconnection, a full queue):
	// readers catch up from AnonEvents.
	ListenAnonScans(ctx context.Context, ready func(), f func(AnonNotice)) error
}
