package scanjob

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/report"
)

// Job is one scan. Its methods are safe for concurrent use.
type Job struct {
	id      string
	req     Request
	created time.Time
	m       *Manager   // nil for a job made from a Record
	place   uint64     // its number in the queue
	pub     sync.Mutex // orders the shared store's writes of its events

	mu       sync.Mutex
	state    State
	started  time.Time
	finished time.Time
	expires  time.Time
	events   []Event
	dropped  int           // events not kept (MaxEvents)
	rec      *Record       // set when final
	changed  chan struct{} // closed and replaced at every change
}

// ID is the job's unguessable id.
func (j *Job) ID() string { return j.id }

// Snapshot is a consistent copy of a job's state.
type Snapshot struct {
	ID       string
	Domain   string
	SMTP     bool
	State    State
	Position int // 1 for the next to run, while queued
	Created  time.Time
	Started  time.Time // zero until running
	Finished time.Time // zero until final
	Expires  time.Time // zero until final
	Events   []Event
	// Record is the finished scan (Done or Failed), nil before.
	Record *Record
}

// Snapshot returns the job's state now.
func (j *Job) Snapshot() Snapshot {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.snapshotLocked()
}

func (j *Job) snapshotLocked() Snapshot {
	s := Snapshot{ID: j.id, Domain: j.req.Domain, SMTP: j.req.SMTP, State: j.state, Created: j.created,
		Started: j.started, Finished: j.finished, Expires: j.expires, Events: j.events[:len(j.events):len(j.events)], Record: j.rec}
	if j.state == Queued && j.m != nil {
		j.m.mu.Lock()
		s.Position = int(j.place - j.m.dequeued)
		j.m.mu.Unlock()
	}
	return s
}

// Wait returns when the job has more than after events, is final, or ctx
// ends, whichever is first, with the state at that moment.
func (j *Job) Wait(ctx context.Context, after int) Snapshot {
	for {
		j.mu.Lock()
		if len(j.events) > after || j.state.Final() {
			s := j.snapshotLocked()
			j.mu.Unlock()
			return s
		}
		ch := j.changed
		j.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return j.Snapshot()
		}
	}
}

// Changed returns a channel closed at the job's next change (a new event,
// a new state); a final job's channel is closed already.
func (j *Job) Changed() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.changed
}

func (j *Job) broadcast() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.broadcastLocked()
}

func (j *Job) broadcastLocked() {
	close(j.changed)
	if j.state.Final() {
		return // stays closed: every later waiter returns at once
	}
	j.changed = make(chan struct{})
}

func (j *Job) setState(s State, now time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.state = s
	if s == Running {
		j.started = now.UTC()
	}
	j.broadcastLocked()
}

// addEvent numbers and keeps e; it returns it numbered, or false when
// the job keeps no more events (maxEvents).
func (j *Job) addEvent(e Event, maxEvents int) (Event, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.events) >= maxEvents {
		j.dropped++
		return e, false
	}
	e.Seq = len(j.events) + 1
	j.events = append(j.events, e)
	j.broadcastLocked()
	return e, true
}

// finish makes the job final and returns its record. The caller
// broadcasts once the record is filed.
func (j *Job) finish(now time.Time, ttl time.Duration, body []byte, doc *report.Document, failure string) *Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.finished = now.UTC()
	j.expires = j.finished.Add(ttl)
	j.state = Done
	if failure != "" {
		j.state = Failed
	}
	rec := &Record{ID: j.id, Domain: j.req.Domain, SMTP: j.req.SMTP, State: j.state, Created: j.created,
		Started: j.started, Finished: j.finished, Expires: j.expires, Events: j.events, DroppedEvents: j.dropped,
		Document: body, Error: failure, doc: doc}
	j.rec = rec
	return rec
}

// addRemote appends the events of a followed job that come next in
// order (Seq one more than the last one it has): one already there is
// not added again, and none after a gap until the gap is filled. It
// returns those added.
func (j *Job) addRemote(evs []storedEvent) []storedEvent {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state.Final() {
		return nil
	}
	var added []storedEvent
	for _, e := range evs {
		if e.Seq <= len(j.events) {
			continue
		}
		if e.Seq != len(j.events)+1 {
			break
		}
		j.events = append(j.events, e.Event)
		added = append(added, e)
	}
	if len(added) > 0 {
		// Only a running scan writes events: a watcher woken by one never
		// sees the job still queued, whichever read of the row comes first.
		if j.state == Queued {
			j.state, j.started = Running, added[0].written
		}
		j.broadcastLocked()
	}
	return added
}

// setRemoteState sets the live state of a followed job.
func (j *Job) setRemoteState(s State, started time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state.Final() || s.Final() || s == j.state && started.Equal(j.started) ||
		s == Queued && j.state == Running { // a row read before the scan began, applied late
		return
	}
	j.state, j.started = s, started
	j.broadcastLocked()
}

// finishRemote makes a followed job final with the record its owner filed.
func (j *Job) finishRemote(rec *Record) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state.Final() {
		return
	}
	j.state, j.started, j.finished, j.expires = rec.State, rec.Started, rec.Finished, rec.Expires
	if len(rec.Events) >= len(j.events) {
		j.events = rec.Events
	}
	j.dropped, j.rec = rec.DroppedEvents, rec
	j.broadcastLocked()
}

// finishedJob wraps a stored record.
func finishedJob(r *Record) *Job {
	j := &Job{id: r.ID, req: Request{Domain: r.Domain, SMTP: r.SMTP}, created: r.Created, state: r.State,
		started: r.Started, finished: r.Finished, expires: r.Expires, events: r.Events, dropped: r.DroppedEvents,
		rec: r, changed: make(chan struct{})}
	close(j.changed)
	return j
}

// Record is a finished scan as a store keeps it: the CLI's JSON document
// (evidence included) and the progress events.
type Record struct {
	ID       string    `json:"id"`
	Domain   string    `json:"domain"`
	SMTP     bool      `json:"smtp"`
	State    State     `json:"state"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Expires is when an anonymous scan is deleted.
	Expires       time.Time `json:"expires"`
	Events        []Event   `json:"events"`
	DroppedEvents int       `json:"dropped_events,omitempty"`
	// Document is the report.Document as JSON (schema_version inside);
	// empty when the scan failed.
	Document json.RawMessage `json:"document,omitempty"`
	Error    string          `json:"error,omitempty"`

	doc *report.Document // decoded Document, cached by the memory store
}

// Doc returns the decoded document (nil when the scan failed).
func (r *Record) Doc() (*report.Document, error) {
	if r.doc != nil || len(r.Document) == 0 {
		return r.doc, nil
	}
	var d report.Document
	if err := json.Unmarshal(r.Document, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Store keeps finished scans. Implementations are safe for concurrent use.
type Store interface {
	// Put files a finished scan.
	Put(ctx context.Context, r *Record) error
	// Get returns the record with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Record, error)
	// Recent returns the newest Done record of domain with these options
	// that finished at or after since, or nil.
	Recent(ctx context.Context, domain string, smtp bool, since time.Time) (*Record, error)
	// DeleteExpired deletes the records that expire at or before now and
	// returns how many.
	DeleteExpired(ctx context.Context, now time.Time) (int, error)
}

// MemoryStore is the default Store: records live in memory until they
// expire and are gone with the process.
type MemoryStore struct {
	mu     sync.Mutex
	byID   map[string]*Record
	latest map[string]*Record // the newest Done record by domain and options
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{byID: map[string]*Record{}, latest: map[string]*Record{}}
}

func (r *Record) key() string { return Request{Domain: r.Domain, SMTP: r.SMTP}.key() }

// Put implements Store.
func (s *MemoryStore) Put(_ context.Context, r *Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[r.ID] = r
	if l := s.latest[r.key()]; r.State == Done && (l == nil || !r.Finished.Before(l.Finished)) {
		s.latest[r.key()] = r
	}
	return nil
}

// Get implements Store.
func (s *MemoryStore) Get(_ context.Context, id string) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.byID[id]; r != nil {
		return r, nil
	}
	return nil, ErrNotFound
}

// Recent implements Store.
func (s *MemoryStore) Recent(_ context.Context, domain string, smtp bool, since time.Time) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.latest[Request{Domain: domain, SMTP: smtp}.key()]
	if r == nil || r.Finished.Before(since) {
		return nil, nil
	}
	return r, nil
}

// DeleteExpired implements Store.
func (s *MemoryStore) DeleteExpired(_ context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, r := range s.byID {
		if !r.Expires.After(now) {
			delete(s.byID, id)
			if s.latest[r.key()] == r {
				delete(s.latest, r.key())
			}
			n++
		}
	}
	return n, nil
}

// Len returns the number of records held (and of index entries).
func (s *MemoryStore) Len() (records, index int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID), len(s.latest)
}
