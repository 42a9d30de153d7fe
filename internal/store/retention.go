package store

import "time"

// Retention says how long Prune keeps what. Zero fields take the defaults
// of DefaultRetention; a negative duration means "forever".
type Retention struct {
	// FullScans: scans younger than this keep their full report (the
	// evidence); older ones are reduced to their summary and findings.
	FullScans time.Duration
	// KeepFull: the latest KeepFull finished scans of each domain keep
	// their full report whatever their age.
	KeepFull int
	// Scans: summaries older than this are deleted. The latest finished
	// scan of a domain is never deleted.
	Scans time.Duration
	// StaleScan: a scan queued or running for longer than this was
	// abandoned by a worker that died; it is marked failed.
	StaleScan time.Duration
	// Outbox: delivered or abandoned messages, and delivery log entries,
	// older than this are deleted.
	Outbox time.Duration
	// UsedTokens: used or expired one-time tokens are kept this long
	// (so a second click says "already used" rather than "unknown").
	UsedTokens time.Duration
	// TLSRPTRaw: the raw bytes of TLS-RPT reports are kept this long after
	// they arrived; the parsed report stays.
	TLSRPTRaw time.Duration
	// TLSRPTReports: reports whose date range ended longer ago are deleted.
	TLSRPTReports time.Duration
}

// DefaultRetention keeps full scan reports for 30 days (and always the
// last 10 of each domain), summaries for two years, raw TLS-RPT reports for
// 90 days and parsed ones for two years.
func DefaultRetention() Retention {
	return Retention{
		FullScans:     30 * 24 * time.Hour,
		KeepFull:      10,
		Scans:         2 * 365 * 24 * time.Hour,
		StaleScan:     time.Hour,
		Outbox:        30 * 24 * time.Hour,
		UsedTokens:    7 * 24 * time.Hour,
		TLSRPTRaw:     90 * 24 * time.Hour,
		TLSRPTReports: 2 * 365 * 24 * time.Hour,
	}
}

// WithDefaults fills zero fields from DefaultRetention.
func (r Retention) WithDefaults() Retention {
	d := DefaultRetention()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&r.FullScans, d.FullScans)
	set(&r.Scans, d.Scans)
	set(&r.StaleScan, d.StaleScan)
	set(&r.Outbox, d.Outbox)
	set(&r.UsedTokens, d.UsedTokens)
	set(&r.TLSRPTRaw, d.TLSRPTRaw)
	set(&r.TLSRPTReports, d.TLSRPTReports)
	if r.KeepFull == 0 {
		r.KeepFull = d.KeepFull
	}
	return r
}

// PruneStats counts what Prune removed or changed.
type PruneStats struct {
	Sessions       int64
	OneTimeTokens  int64
	Shares         int64
	Leases         int64
	AnonymousScans int64
	StaleScans     int64 // marked failed
	Summarised     int64 // full reports removed
	ScansDeleted   int64
	Messages       int64
	Deliveries     int64
	TLSRPTRaw      int64 // raw bytes removed
	TLSRPTReports  int64
}
