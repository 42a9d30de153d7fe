package scanjob

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

// Shared is the Store of instances that share one database
// (docs/scaling.md, "Live scan progress"): finished scans and, while a scan
// runs on one instance, its state and progress events, so that any
// instance serves its page and streams its progress. A Manager given a
// Shared store writes every event of its scans to it and follows the scans
// of other instances on notifications (PostgreSQL's LISTEN/NOTIFY) and by
// polling, which also recovers a lost notification.
type Shared struct{ s store.AnonScans }

// NewShared returns the Store kept in s.
func NewShared(s store.AnonScans) *Shared { return &Shared{s: s} }

// interrupted is the error of a scan whose instance stopped sending
// heartbeats.
const interrupted = "interrupted: the server running this scan stopped before it finished; start the scan again"

// Put implements Store.
func (s *Shared) Put(ctx context.Context, r *Record) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.s.FinishAnonScan(ctx, store.AnonScan{ID: r.ID, Domain: r.Domain, SMTP: r.SMTP, State: string(r.State), Final: true,
		Created: r.Created, Started: r.Started, Finished: r.Finished, Expires: r.Expires, Error: r.Error, Record: body})
}

// record returns the final record of a final row.
func (s *Shared) record(ctx context.Context, row *store.AnonScan) (*Record, error) {
	if row.Record != nil {
		var r Record
		if err := json.Unmarshal(row.Record, &r); err != nil {
			return nil, err
		}
		return &r, nil
	}
	// Interrupted: what was written of its progress, and why it ended.
	r := &Record{ID: row.ID, Domain: row.Domain, SMTP: row.SMTP, State: State(row.State), Created: row.Created,
		Started: row.Started, Finished: row.Finished, Expires: row.Expires, Error: row.Error}
	evs, err := s.events(ctx, row.ID, 0, DefaultMaxEvents)
	if err != nil {
		return nil, err
	}
	for _, e := range evs {
		r.Events = append(r.Events, e.Event)
	}
	return r, nil
}

// storedEvent is an event with the time its writer filed it.
type storedEvent struct {
	Event
	written time.Time
}

func (s *Shared) events(ctx context.Context, id string, after, limit int) ([]storedEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.s.AnonEvents(ctx, id, after, limit)
	if err != nil {
		return nil, err
	}
	evs := make([]storedEvent, 0, len(rows))
	for _, r := range rows {
		var e Event
		if err := json.Unmarshal(r.Body, &e); err != nil {
			return nil, err
		}
		e.Seq = r.Seq
		evs = append(evs, storedEvent{e, r.Written})
	}
	return evs, nil
}

// Get implements Store: final scans only (a live one is ErrNotFound).
func (s *Shared) Get(ctx context.Context, id string) (*Record, error) {
	row, err := s.s.GetAnonScan(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && !row.Final {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return s.record(ctx, row)
}

// Recent implements Store.
func (s *Shared) Recent(ctx context.Context, domain string, smtp bool, since time.Time) (*Record, error) {
	row, err := s.s.RecentAnonScan(ctx, domain, smtp, since)
	if err != nil || row == nil {
		return nil, err
	}
	return s.record(ctx, row)
}

// DeleteExpired implements Store.
func (s *Shared) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	return s.s.DeleteExpiredAnonScans(ctx, now)
}
