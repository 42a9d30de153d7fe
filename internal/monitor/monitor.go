// Package monitor is the worker of `mailtls serve`: it rescans saved
// domains on their schedule and tells their owners what changed.
//
//   - The scheduler claims due domains with leases in the store (package
//     store: ClaimDueDomains), so that several workers, or one restarted,
//     never scan one domain twice at once and lose no run; a run missed
//     during downtime runs once.
//   - The scanner runs the CLI's scan and judgement (behind the SSRF
//     guard, with the configured EHLO name), adds the findings that need
//     the previous scan (package history), decides the alerts (package
//     alert) and stores the scan, its findings, the alerts (outbox
//     messages) and the domain's new alert state in one transaction.
//   - The notifier delivers the outbox: e-mail through the mail relay,
//     webhooks signed with HMAC-SHA256 (package webhook), with retries and
//     backoff and a delivery log per channel.
//   - The janitor applies retention; the digest sends a daily summary to
//     the channels that asked for one.
//
// Each part is switched on by the configuration (roles as switches); all
// time comes from the injected clock.
package monitor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/mailtls/mailtls/internal/domainverify"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/alert"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
)

// ScanFunc scans a domain: the CLI's JSON document, evidence included. It
// must honour ctx; it returns nil only when ctx ended before a document
// could be made.
type ScanFunc func(ctx context.Context, domain string) *report.Document

// Config are the worker's settings; zero values take the defaults.
type Config struct {
	// Scheduler, Notifier, Janitor and Digest switch the parts on.
	Scheduler, Notifier, Janitor, Digest bool

	// Scans is how many domains are scanned at once (default 4).
	Scans int
	// Poll is how often the scheduler looks for due domains and the
	// notifier for due messages (default 30s); Poke wakes them at once.
	Poll time.Duration
	// LeaseTTL is the schedule lease of a domain being scanned, renewed
	// every third of it, and the lease of a message being delivered
	// (default 5m). A worker that dies loses its domains and messages
	// after it.
	LeaseTTL time.Duration
	// ScanTimeout bounds one scan (default 90s).
	ScanTimeout time.Duration
	// ConfirmAfter is when a transient problem is scanned again to be
	// confirmed (default 15m).
	ConfirmAfter time.Duration
	// RetryFailed is when a scan that could not run is tried again
	// (default 1h).
	RetryFailed time.Duration
	// Alerts are the alert knobs (reminders, resolved problems kept).
	Alerts alert.Policy
	// Reports are the knobs of the TLS-RPT report rules (recent and
	// baseline windows, thresholds; docs/reports.md#alerts).
	Reports tlsrptagg.WatchPolicy
	// Retry is the backoff of deliveries (default store.DefaultRetry).
	Retry store.RetryPolicy
	// Retention is what the janitor keeps (default store.DefaultRetention).
	Retention store.Retention
	// JanitorEvery is how often retention runs (default 1h).
	JanitorEvery time.Duration

	// ScannerVersion is stored with every scan.
	ScannerVersion string
	// BaseURL is where the web pages are, for links in alerts
	// ("https://checker.example.com"); "" leaves links out.
	BaseURL string
}

// Defaults.
const (
	DefaultScans        = 4
	DefaultPoll         = 30 * time.Second
	DefaultLeaseTTL     = 5 * time.Minute
	DefaultScanTimeout  = 90 * time.Second
	DefaultConfirmAfter = 15 * time.Minute
	DefaultRetryFailed  = time.Hour
	DefaultJanitorEvery = time.Hour
)

func (c *Config) defaults() {
	if c.Scans <= 0 {
		c.Scans = DefaultScans
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.ScanTimeout <= 0 {
		c.ScanTimeout = DefaultScanTimeout
	}
	if c.ConfirmAfter <= 0 {
		c.ConfirmAfter = DefaultConfirmAfter
	}
	if c.RetryFailed <= 0 {
		c.RetryFailed = DefaultRetryFailed
	}
	if c.Retry == (store.RetryPolicy{}) {
		c.Retry = store.DefaultRetry
	}
	c.Retention = c.Retention.WithDefaults()
	if c.JanitorEvery <= 0 {
		c.JanitorEvery = DefaultJanitorEvery
	}
}

// Worker runs the parts. Create it with New, start it with Run.
type Worker struct {
	cfg   Config
	store store.Store
	scan  ScanFunc
	// resolver rechecks domain verifications (nil: not rechecked).
	resolver domainverify.Resolver
	send     *sender
	now      func() time.Time
	log      *slog.Logger
	owner    string

	pokeScheduler chan struct{}
	pokeNotifier  chan struct{}

	mu      sync.Mutex
	running map[store.DomainID]bool // domains this worker is scanning
	stats   Stats
}

// Stats count what the worker did, for /healthz, /metrics and tests.
// Rescued and MessagesRescued are takeovers: domains and messages this
// worker claimed while another owner's lease on them had run out (that
// worker died or stalled).
type Stats struct {
	Claimed, Rescued       int64
	Scanned, Failed        int64
	Interrupted, LeaseLost int64
	Delivered, Retried     int64
	Abandoned              int64
	MessagesRescued        int64
}

// Queue is the shared queues as this worker sees them: how many domains
// wait to be scanned and messages to be delivered, and how late the
// oldest of each is (zero when none waits). It is the same for every
// worker on one store, up to their clocks.
type Queue struct {
	DueRescans, DueDeliveries int
	RescanLag, DeliveryLag    time.Duration
}

// Queue reads the queues' state from the store.
func (w *Worker) Queue(ctx context.Context) (Queue, error) {
	b, err := w.store.Backlog(ctx)
	if err != nil {
		return Queue{}, err
	}
	now := w.now()
	lag := func(oldest time.Time) time.Duration {
		if oldest.IsZero() {
			return 0
		}
		return max(0, now.Sub(oldest))
	}
	return Queue{DueRescans: b.DueDomains, DueDeliveries: b.DueMessages, RescanLag: lag(b.OldestDomain), DeliveryLag: lag(b.OldestMessage)}, nil
}

// Options are what the worker is built from.
type Options struct {
	Store store.Store
	Scan  ScanFunc
	// Deliver sends messages; nil leaves the notifier off.
	Deliver Deliverer
	Now     func() time.Time
	Log     *slog.Logger
	// Owner names this worker in leases (default: host name, process id
	// and a random suffix).
	Owner string
	// Resolver looks the domain verification records up again at each
	// scan (docs/accounts.md, "Verifying a domain"); nil: they are not
	// looked at, and a verification neither starts nor lapses here.
	Resolver domainverify.Resolver
}

// New makes a worker.
func New(cfg Config, o Options) (*Worker, error) {
	cfg.defaults()
	if o.Store == nil {
		return nil, errors.New("monitor: no store")
	}
	if cfg.Scheduler && o.Scan == nil {
		return nil, errors.New("monitor: the scheduler needs a scan function")
	}
	if cfg.Notifier && o.Deliver == nil {
		return nil, errors.New("monitor: the notifier needs a deliverer")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		o.Owner = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	w := &Worker{cfg: cfg, store: o.Store, scan: o.Scan, now: o.Now, log: o.Log, owner: o.Owner, resolver: o.Resolver,
		pokeScheduler: make(chan struct{}, 1), pokeNotifier: make(chan struct{}, 1), running: map[store.DomainID]bool{}}
	if o.Deliver != nil {
		w.send = &sender{deliver: o.Deliver}
	}
	return w, nil
}

// Owner is the worker's lease owner name.
func (w *Worker) Owner() string { return w.owner }

// Stats returns the counters.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

func (w *Worker) count(f func(*Stats)) {
	w.mu.Lock()
	f(&w.stats)
	w.mu.Unlock()
}

// Poke makes the scheduler and the notifier look at once (after "rescan
// now", a new channel's test message, or a test's clock change).
func (w *Worker) Poke() {
	for _, c := range []chan struct{}{w.pokeScheduler, w.pokeNotifier} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Run runs the parts switched on until ctx ends; scans in progress are
// then interrupted and their domains left due, so that the next start
// (or another worker) runs them.
func (w *Worker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if w.cfg.Scheduler {
		wg.Go(func() { w.schedule(ctx) })
	}
	if w.cfg.Notifier {
		wg.Go(func() { w.notify(ctx) })
	}
	if w.cfg.Janitor {
		wg.Go(func() { w.every(ctx, w.cfg.JanitorEvery, w.janitor) })
	}
	if w.cfg.Digest && w.send != nil {
		wg.Go(func() { w.every(ctx, 5*time.Minute, w.digest) })
	}
	wg.Wait()
}

// every runs f now and then every d (real time) until ctx ends.
func (w *Worker) every(ctx context.Context, d time.Duration, f func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		w.safely("periodic job", func() { f(ctx) })
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// safely runs f, logging a panic instead of ending the process.
func (w *Worker) safely(what string, f func()) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("panic in the worker", "in", what, "panic", p)
		}
	}()
	f()
}

// janitor applies retention, once across workers (a named lease).
func (w *Worker) janitor(ctx context.Context) {
	ok, err := w.store.AcquireLease(ctx, "janitor", w.owner, 10*time.Minute)
	if err != nil || !ok {
		return
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		w.store.ReleaseLease(rctx, "janitor", w.owner)
	}()
	st, err := w.store.Prune(ctx, w.cfg.Retention)
	if err != nil {
		w.log.Error("retention failed", "error", err)
		return
	}
	w.log.Info("retention applied", "sessions", st.Sessions, "shares", st.Shares, "anonymous_scans", st.AnonymousScans,
		"stale_scans", st.StaleScans, "summarised", st.Summarised, "scans_deleted", st.ScansDeleted, "messages", st.Messages)
}
