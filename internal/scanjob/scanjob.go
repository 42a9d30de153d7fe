// Package scanjob runs scans on behalf of others (the web checker and its
// API): a bounded pool of workers behind a bounded queue, limits per
// client, a request for a domain that is already being scanned joins that
// scan, and a fresh result is reused for a short while. Each job records
// its progress as Events while it runs; a finished job is a Record in a
// Store, kept until it expires.
//
// A Record holds the CLI's JSON document (package report, evidence
// included) and the events, so that a store can keep a scan and a page can
// be rendered again from it later.
package scanjob

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/store"
)

// State is where a job is in its life.
type State string

// Job states. Done and Failed are final.
const (
	Queued  State = "queued"
	Running State = "running"
	Done    State = "done"   // the document is ready (whatever its grade)
	Failed  State = "failed" // no document: the scan could not run
)

// Final reports whether s is a final state.
func (s State) Final() bool { return s == Done || s == Failed }

// Request is what a client asks for.
type Request struct {
	Domain string // an A-label domain from domain.Parse
	SMTP   bool   // probe the MX hosts over SMTP
	Client string // the client's key for the limits (see web.ClientKey)
}

func (r Request) key() string { return fmt.Sprintf("%s smtp=%t", r.Domain, r.SMTP) }

// ScanFunc scans a domain and returns the CLI's JSON document of it; it
// reports evidence to progress as it is gathered. It must honour ctx.
type ScanFunc func(ctx context.Context, domain string, smtp bool, progress func(scan.Step)) *report.Document

// Outcome says how a submission was served.
type Outcome string

// Submission outcomes.
const (
	Started Outcome = "started" // a new job
	Joined  Outcome = "joined"  // a job for the same domain and options was queued or running
	Reused  Outcome = "reused"  // a job for the same domain and options finished moments ago
)

// Errors of Submit and Get.
var (
	ErrNotFound  = errors.New("scanjob: no such scan (unknown or expired)")
	ErrQueueFull = errors.New("scanjob: the scan queue is full")
	ErrClosed    = errors.New("scanjob: shutting down")
)

// LimitError is a submission refused by a per-client limit.
type LimitError struct {
	Limit      string // "rate" (scans started) or "concurrent" (scans in progress)
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	if e.Limit == "concurrent" {
		return "scanjob: too many scans in progress from this client; wait for one to finish"
	}
	return fmt.Sprintf("scanjob: too many scans from this client; retry in %s", e.RetryAfter.Round(time.Second))
}

// Config sets the limits of a Manager; zero values take the defaults.
type Config struct {
	Workers int // scans run at once (default 4)
	Queue   int // scans waiting for a worker (default 64)
	// Timeout is each scan's whole time budget (default 60s).
	Timeout time.Duration
	// TTL is how long a finished scan is kept (default and maximum 1h:
	// anonymous results are held no longer than that).
	TTL time.Duration
	// Reuse is how long a finished scan answers new requests for the same
	// domain and options (default 2m; negative: never).
	Reuse time.Duration
	// PerClientRate and PerClientBurst limit new scans per client (default
	// 10 a minute, burst 5; a negative rate: no limit).
	PerClientRate  rate.Limit
	PerClientBurst int
	// PerClientConcurrent bounds a client's queued and running scans
	// (default 2; negative: no limit).
	PerClientConcurrent int
	// MaxEvents bounds the progress events kept per job (default 2000).
	MaxEvents int
	Now       func() time.Time

	// With a Shared store (several instances, one database):
	// Instance names this manager among them (default a random id).
	Instance string
	// Heartbeat is how often the instance marks its live scans alive
	// (default 5s); Stale is how long a live scan of another instance may
	// go without one before it shows as interrupted (default 30s; more
	// than the instances' clock skew plus a heartbeat).
	Heartbeat, Stale time.Duration
	// Poll is how often scans followed from other instances are read
	// again whatever the notifications (default 2s): it recovers a lost
	// notification, and it is the only way on an engine without them.
	Poll time.Duration
}

// Defaults.
const (
	DefaultWorkers             = 4
	DefaultQueue               = 64
	DefaultTimeout             = 60 * time.Second
	MaxTTL                     = time.Hour
	DefaultReuse               = 2 * time.Minute
	DefaultPerClientPerMinute  = 10
	DefaultPerClientBurst      = 5
	DefaultPerClientConcurrent = 2
	DefaultMaxEvents           = 2000
	maxClients                 = 100000 // client limiter entries kept
)

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Queue <= 0 {
		c.Queue = DefaultQueue
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.TTL <= 0 || c.TTL > MaxTTL {
		c.TTL = MaxTTL
	}
	if c.Reuse == 0 {
		c.Reuse = DefaultReuse
	}
	if c.PerClientRate == 0 {
		c.PerClientRate = rate.Limit(DefaultPerClientPerMinute / 60.0)
	}
	if c.PerClientBurst <= 0 {
		c.PerClientBurst = DefaultPerClientBurst
	}
	if c.PerClientConcurrent == 0 {
		c.PerClientConcurrent = DefaultPerClientConcurrent
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Instance == "" {
		c.Instance = newID()
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Stale <= 0 {
		c.Stale = DefaultStale
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
}

// Manager runs jobs. Create it with New and stop it with Close.
type Manager struct {
	cfg    Config
	scan   ScanFunc
	store  Store
	shared *Shared // store, when instances share it; nil otherwise
	// listening is true while the notification connection listens.
	listening atomic.Bool
	log       *slog.Logger
	metrics   *Metrics

	ctx    context.Context
	cancel context.CancelFunc
	queue  chan *Job
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	live     map[string]*Job // queued and running, by id
	byKey    map[string]*Job // queued and running, by request key
	remote   map[string]*Job // live scans of other instances followed here (Shared)
	clients  map[string]*client
	enqueued uint64 // jobs ever queued; a job's place is its number minus dequeued
	dequeued uint64
}

type client struct {
	lim     *rate.Limiter
	active  int
	lastUse time.Time
}

// New starts a manager with cfg.Workers workers. store keeps finished jobs
// (NewMemoryStore when nil); with a *Shared store the manager also shares
// its live scans and follows those of other instances. m may be nil.
func New(cfg Config, scan ScanFunc, store Store, log *slog.Logger, m *Metrics) *Manager {
	cfg.defaults()
	if store == nil {
		store = NewMemoryStore()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mg := &Manager{cfg: cfg, scan: scan, store: store, log: log, metrics: m, ctx: ctx, cancel: cancel,
		queue: make(chan *Job, cfg.Queue), live: map[string]*Job{}, byKey: map[string]*Job{}, remote: map[string]*Job{},
		clients: map[string]*client{}}
	mg.shared, _ = store.(*Shared)
	for range cfg.Workers {
		mg.wg.Go(mg.work)
	}
	if mg.shared != nil {
		mg.wg.Go(mg.follow)
	}
	return mg
}

// Config returns the effective configuration.
func (m *Manager) Config() Config { return m.cfg }

// Submit starts a scan, or joins or reuses one for the same domain and
// options. It returns ErrQueueFull, a *LimitError, or ErrClosed.
func (m *Manager) Submit(ctx context.Context, req Request) (*Job, Outcome, error) {
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, "", ErrClosed
	}
	key := req.key()
	if j := m.byKey[key]; j != nil {
		m.metrics.Requests.WithLabelValues(string(Joined)).Inc()
		return j, Joined, nil
	}
	if m.cfg.Reuse > 0 {
		rec, err := m.store.Recent(ctx, req.Domain, req.SMTP, now.Add(-m.cfg.Reuse))
		if err == nil && rec != nil {
			m.metrics.Requests.WithLabelValues(string(Reused)).Inc()
			return finishedJob(rec), Reused, nil
		}
	}
	// With a shared store the store counts the client's scans on every
	// instance (in begin); otherwise this instance's count is the count.
	c := m.clientLocked(req.Client, now)
	var res *rate.Reservation
	if m.shared == nil {
		if m.cfg.PerClientConcurrent > 0 && c.active >= m.cfg.PerClientConcurrent {
			return nil, "", m.refused(&LimitError{Limit: "concurrent"})
		}
		if c.lim != nil {
			res = c.lim.ReserveN(now, 1)
			if d := res.DelayFrom(now); !res.OK() || d > 0 {
				res.CancelAt(now)
				return nil, "", m.refused(&LimitError{Limit: "rate", RetryAfter: d})
			}
		}
	}
	if len(m.queue) >= cap(m.queue) {
		if res != nil {
			res.CancelAt(now)
		}
		m.metrics.Requests.WithLabelValues("refused_queue_full").Inc()
		return nil, "", ErrQueueFull
	}
	j := &Job{id: newID(), req: req, created: now.UTC(), state: Queued, changed: make(chan struct{}), m: m}
	if m.shared != nil {
		// Filed before it is queued, so that another instance finds it;
		// the store's one live scan per domain and options joins a
		// request to a scan running elsewhere.
		other, err := m.begin(ctx, j, now)
		var le *store.AnonLimitError
		if errors.As(err, &le) {
			return nil, "", m.refused(&LimitError{Limit: le.Limit, RetryAfter: le.RetryAfter})
		}
		if err != nil {
			m.log.Warn("could not file a scan in the shared store", "error", err)
			return nil, "", err
		}
		if other != nil {
			m.metrics.Requests.WithLabelValues(string(Joined)).Inc()
			m.mu.Unlock()
			defer m.mu.Lock() // the deferred Unlock above
			return m.remoteJob(ctx, other), Joined, nil
		}
	}
	m.enqueued++
	j.place = m.enqueued
	m.queue <- j // never blocks: checked above under m.mu
	m.live[j.id] = j
	m.byKey[key] = j
	c.active++
	m.metrics.Requests.WithLabelValues(string(Started)).Inc()
	m.metrics.Queued.Set(float64(len(m.queue)))
	return j, Started, nil
}

// refused counts a refusal by a per-client limit and returns it, with the
// time a client should wait: until the rate admits a scan (at least a
// second), or 10s for one of its scans to finish.
func (m *Manager) refused(e *LimitError) error {
	m.metrics.Requests.WithLabelValues("refused_" + e.Limit).Inc()
	if e.Limit == "concurrent" {
		e.RetryAfter = 10 * time.Second
	} else {
		e.RetryAfter = max(e.RetryAfter, time.Second)
	}
	return e
}

// clientLocked returns the limits of a client; m.mu is held.
func (m *Manager) clientLocked(key string, now time.Time) *client {
	c := m.clients[key]
	if c == nil {
		if len(m.clients) >= maxClients {
			m.sweepClientsLocked(now, 0)
		}
		c = &client{}
		if m.cfg.PerClientRate > 0 {
			c.lim = rate.NewLimiter(m.cfg.PerClientRate, m.cfg.PerClientBurst)
		}
		m.clients[key] = c
	}
	c.lastUse = now
	return c
}

// sweepClientsLocked drops idle clients whose limiter is full again.
func (m *Manager) sweepClientsLocked(now time.Time, idle time.Duration) {
	for k, c := range m.clients {
		if c.active == 0 && now.Sub(c.lastUse) >= idle && (c.lim == nil || c.lim.TokensAt(now) >= float64(m.cfg.PerClientBurst)) {
			delete(m.clients, k)
		}
	}
}

// Get returns the job with id: a live one, or a finished one from the
// store. It returns ErrNotFound for unknown and expired ids.
func (m *Manager) Get(ctx context.Context, id string) (*Job, error) {
	m.mu.Lock()
	j := m.live[id]
	m.mu.Unlock()
	if j != nil {
		return j, nil
	}
	if m.shared != nil {
		row, err := m.shared.s.GetAnonScan(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		if !row.Final {
			return m.remoteJob(ctx, row), nil
		}
	}
	rec, err := m.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !m.cfg.Now().Before(rec.Expires) {
		return nil, ErrNotFound
	}
	return finishedJob(rec), nil
}

// Sweep deletes expired records and idle client limiters. A janitor calls
// it every minute; tests call it with a moved clock.
func (m *Manager) Sweep(ctx context.Context) error {
	now := m.cfg.Now()
	m.mu.Lock()
	m.sweepClientsLocked(now, time.Minute)
	m.mu.Unlock()
	if m.shared != nil {
		if _, err := m.shared.s.InterruptAnonScans(ctx, now.Add(-m.cfg.Stale), now, now.Add(m.cfg.TTL), interrupted); err != nil {
			return err
		}
	}
	_, err := m.store.DeleteExpired(ctx, now)
	return err
}

// Janitor sweeps every interval until ctx ends.
func (m *Manager) Janitor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Sweep(ctx); err != nil {
				m.log.Warn("scan store sweep failed", "error", err)
			}
		}
	}
}

// Close stops taking scans, cancels the running ones (they finish with
// what they gathered) and waits for the workers, at most until ctx ends.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.queue)
	}
	m.mu.Unlock()
	m.cancel()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Counts returns the queued and running scans.
func (m *Manager) Counts() (queued, running int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	queued = len(m.queue)
	return queued, len(m.live) - queued
}

func (m *Manager) work() {
	for j := range m.queue {
		m.mu.Lock()
		m.dequeued++
		m.metrics.Queued.Set(float64(len(m.queue)))
		m.mu.Unlock()
		m.run(j)
	}
}

// run scans one job and files its record. A panic in the scan fails the
// job and is counted; it never takes the worker down.
func (m *Manager) run(j *Job) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Timeout)
	defer cancel()
	j.setState(Running, m.cfg.Now())
	if m.shared != nil {
		sctx, scancel := context.WithTimeout(m.ctx, dbTimeout)
		if err := m.shared.s.SetAnonState(sctx, j.id, string(Running), j.Snapshot().Started); err != nil {
			m.log.Warn("could not share a scan's state", "scan", j.id, "error", err)
		}
		scancel()
	}
	m.metrics.Running.Inc()
	defer m.metrics.Running.Dec()
	start := time.Now()
	var doc *report.Document
	var failure string
	func() {
		defer func() {
			if p := recover(); p != nil {
				m.metrics.Panics.Inc()
				m.log.Error("panic in a scan", "scan", j.id, "panic", p)
				failure = "internal error: the scan stopped unexpectedly"
			}
		}()
		doc = m.scan(ctx, j.req.Domain, j.req.SMTP, func(st scan.Step) {
			e := describe(j.req.Domain, st, ctx.Err() != nil)
			e.At = m.cfg.Now().UTC()
			j.pub.Lock() // the store gets the events in order
			defer j.pub.Unlock()
			if e, ok := j.addEvent(e, m.cfg.MaxEvents); ok && m.shared != nil {
				m.publish(j, e)
			}
		})
	}()
	var body []byte
	if doc != nil {
		var err error
		if body, err = json.Marshal(doc); err != nil {
			failure = "internal error: " + err.Error()
		}
	} else if failure == "" {
		failure = "internal error: the scan returned nothing"
	}
	m.metrics.Duration.Observe(time.Since(start).Seconds())
	now := m.cfg.Now()
	rec := j.finish(now, m.cfg.TTL, body, doc, failure)
	switch {
	case failure != "":
		m.metrics.Scans.WithLabelValues("error").Inc()
	case doc.Grade == nil:
		m.metrics.Scans.WithLabelValues("ungraded").Inc()
	default:
		m.metrics.Scans.WithLabelValues("graded").Inc()
	}
	// File the record before the job leaves the live set, so that Get
	// always finds one or the other.
	if err := m.store.Put(context.WithoutCancel(ctx), rec); err != nil {
		m.log.Error("could not keep a finished scan", "scan", j.id, "error", err)
	}
	m.mu.Lock()
	delete(m.live, j.id)
	if m.byKey[j.req.key()] == j {
		delete(m.byKey, j.req.key())
	}
	if c := m.clients[j.req.Client]; c != nil && c.active > 0 {
		c.active--
	}
	m.mu.Unlock()
	j.broadcast()
}

// newID returns an unguessable scan id: 128 random bits in lower-case
// base32 (26 characters).
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// ValidID reports whether s has the form of a scan id.
func ValidID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// Metrics returns the manager's metrics.
func (m *Manager) Metrics() *Metrics { return m.metrics }
