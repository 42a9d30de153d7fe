package monitor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/alert"
	"github.com/mailtls/mailtls/internal/diff/difftest"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/store/storetest"
)

// t0 is a moment with every saved domain of the tests due later that day.
var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// env is a store on a test clock, a scripted scanner and a recording
// deliverer.
type env struct {
	t     *testing.T
	clock *storetest.Clock
	st    *sqlstore.DB
	user  store.User
	ch    store.Channel
	scans *scripted
	deliv *recorder
	// dns answers the domain verification lookups (NXDOMAIN unless set).
	dns *resolve.Fake
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := storetest.NewClock(t0)
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "m.db"), sqlstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	u, err := st.CreateUser(t.Context(), "ann@example.test", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := st.CreateChannel(t.Context(), store.NewChannel{UserID: u.ID, Kind: store.ChannelWebhook, Target: "https://hooks.example.test/x", Secret: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.MarkChannelVerified(t.Context(), ch.ID); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, clock: clock, st: st, user: u, ch: ch, scans: &scripted{docs: map[string]*report.Document{}}, deliv: &recorder{},
		dns: resolve.NewFake()}
}

func (e *env) worker(owner string, mod ...func(*monitor.Config)) *monitor.Worker {
	e.t.Helper()
	cfg := monitor.Config{Scheduler: true, Notifier: true, ScannerVersion: "test", BaseURL: "https://checker.example.test"}
	for _, m := range mod {
		m(&cfg)
	}
	w, err := monitor.New(cfg, monitor.Options{Store: e.st, Scan: e.scans.scan, Deliver: e.deliv, Now: e.clock.Now, Owner: owner, Resolver: e.dns})
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

// save saves a domain whose first scan is doc (the result page's scan).
func (e *env) save(name string, doc *report.Document) store.Domain {
	e.t.Helper()
	d, err := e.st.AddDomain(e.t.Context(), store.NewDomain{UserID: e.user.ID, Name: name})
	if err != nil {
		e.t.Fatal(err)
	}
	if doc != nil {
		sc, err := e.st.CreateScan(e.t.Context(), store.NewScan{DomainID: d.ID, Trigger: store.TriggerManual})
		if err != nil {
			e.t.Fatal(err)
		}
		raw, _ := json.Marshal(doc)
		var fs []store.Finding
		for _, f := range doc.Findings {
			fs = append(fs, store.Finding{ID: f.ID, Severity: f.Severity, Component: f.Component, Subject: f.Subject, Message: f.Message})
		}
		if _, err := e.st.FinishScan(e.t.Context(), sc.ID, store.ScanResult{State: store.ScanDone, Report: raw, Grade: *doc.Grade, Findings: fs}); err != nil {
			e.t.Fatal(err)
		}
	}
	return d
}

// at moves the clock to a domain's next slot.
func (e *env) toSlot(id store.DomainID) time.Time {
	e.t.Helper()
	d, err := e.st.GetDomain(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	e.clock.Set(d.NextScanAt)
	return d.NextScanAt
}

func (e *env) runDue(w *monitor.Worker) int {
	e.t.Helper()
	n, err := w.RunDue(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) deliver(w *monitor.Worker) {
	e.t.Helper()
	for {
		n, err := w.DeliverDue(e.t.Context())
		if err != nil {
			e.t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func (e *env) doneScans(id store.DomainID) []store.Scan {
	e.t.Helper()
	scans, _, err := e.st.ListScans(e.t.Context(), id, "", 100)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.Scan
	for _, s := range scans {
		if s.State == store.ScanDone {
			out = append(out, s)
		}
	}
	return out
}

// scripted returns the document set for a domain, scanned "now".
type scripted struct {
	mu    sync.Mutex
	docs  map[string]*report.Document
	count map[string]int
	// block, when set for a domain, holds its scans until the channel
	// closes (a worker stuck mid-scan).
	block map[string]chan struct{}
}

func (s *scripted) set(name string, d *report.Document) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.Domain = name
	s.docs[name] = d
}

// started says how many scans of name began.
func (s *scripted) started(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[name]
}

func (s *scripted) scan(ctx context.Context, name string) *report.Document {
	s.mu.Lock()
	if s.count == nil {
		s.count = map[string]int{}
	}
	s.count[name]++
	gate := s.block[name]
	d := s.docs[name]
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil
		}
	}
	// A copy: the worker appends the history findings.
	raw, _ := json.Marshal(d)
	var c report.Document
	json.Unmarshal(raw, &c)
	return &c
}

// recorder is a Deliverer keeping what it delivered, failing on demand.
type recorder struct {
	mu   sync.Mutex
	got  []delivered
	fail []error // errors for the next deliveries, in order
}

type delivered struct {
	channel store.ChannelID
	id      store.MessageID
	n       monitor.Notification
}

func (r *recorder) Deliver(_ context.Context, ch store.Channel, m store.Message) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.fail) > 0 {
		err := r.fail[0]
		r.fail = r.fail[1:]
		if err != nil {
			return "HTTP 503", err
		}
	}
	var n monitor.Notification
	if err := json.Unmarshal(m.Payload, &n); err != nil {
		return "", monitor.Permanent(err)
	}
	r.got = append(r.got, delivered{ch.ID, m.ID, n})
	return "HTTP 204", nil
}

func (r *recorder) take() []delivered {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

// events lists "kind id@subject" of a notification.
func events(n monitor.Notification) []string {
	var out []string
	for _, e := range n.Events {
		out = append(out, e.Kind+" "+e.Finding.ID+"@"+e.Finding.Subject)
	}
	sort.Strings(out)
	return out
}

func broken(at time.Time) *report.Document {
	d := difftest.Healthy(at)
	d.Policy.MX = append(d.Policy.MX, "mx9.example.com") // changed without a new id
	no := false
	difftest.AddMX(d, "mx3.example.com", "192.0.2.30", false, difftest.Cert("mx3.example.com", "CN=Test CA", "k3", difftest.Expiry))
	d.MX[2].PolicyMatch = &no
	difftest.AddFinding(d, "mx-not-covered", "error", "mx", "mx3.example.com", "mx3.example.com is not covered")
	difftest.SetGrade(d, "D")
	return d
}

// TestScheduleAndAlerts walks one saved domain through its life: the
// scheduled scans fall on its slot, the saved scan is the baseline, a
// regression is told once, its repair once, and nothing else.
func TestScheduleAndAlerts(t *testing.T) {
	e := newEnv(t)
	w := e.worker("w1")
	e.scans.set("example.com", difftest.Healthy(t0))
	d := e.save("example.com", difftest.Healthy(t0))
	if n := e.runDue(w); n != 0 {
		t.Fatalf("%d scans before the slot", n)
	}
	slot := e.toSlot(d.ID)
	if !slot.After(t0) || slot.Sub(t0) > 24*time.Hour {
		t.Fatalf("first slot %v", slot)
	}
	if n := e.runDue(w); n != 1 {
		t.Fatalf("%d scans at the slot", n)
	}
	if n := e.runDue(w); n != 0 {
		t.Fatalf("scanned again at once: %d", n)
	}
	got, _ := e.st.GetDomain(t.Context(), d.ID)
	if !got.NextScanAt.Equal(slot.Add(24 * time.Hour)) {
		t.Errorf("next run %v, want the slot a day later %v", got.NextScanAt, slot.Add(24*time.Hour))
	}
	e.deliver(w)
	if got := e.deliv.take(); len(got) != 0 {
		t.Fatalf("a healthy rescan alerted: %+v", got)
	}
	scans := e.doneScans(d.ID)
	if len(scans) != 2 || scans[0].ScannerVersion != "test" || scans[0].CatalogVersion == "" || scans[0].Trigger != store.TriggerSchedule {
		t.Fatalf("history %+v", scans)
	}

	// The regression.
	e.scans.set("example.com", broken(slot))
	e.toSlot(d.ID)
	e.runDue(w)
	e.deliver(w)
	got1 := e.deliv.take()
	if len(got1) != 1 {
		t.Fatalf("%d deliveries for one regression", len(got1))
	}
	n := got1[0].n
	want := []string{"opened history-grade-dropped@grade before: A", "opened history-mx-not-covered@mx3.example.com",
		"opened history-policy-changed-same-id@_mta-sts.example.com id=1", "opened mx-not-covered@mx3.example.com"}
	if !slices.Equal(events(n), want) || n.Type != monitor.TypeAlert || n.Domain != "example.com" || n.Open != 4 {
		t.Errorf("alert %v (type %s, open %d), want %v", events(n), n.Type, n.Open, want)
	}
	if n.Scan == nil || *n.Scan.Grade != "D" || *n.Scan.PreviousGrade != "A" || n.UnsubscribeURL != "https://checker.example.test/unsubscribe/"+e.ch.UnsubscribeID {
		t.Errorf("alert scan %+v, unsubscribe %q", n.Scan, n.UnsubscribeURL)
	}
	// The stored scan carries the history findings.
	last := e.doneScans(d.ID)[0]
	fs, _ := e.st.ScanFindings(t.Context(), last.ID)
	if !slices.ContainsFunc(fs, func(f store.Finding) bool {
		return f.ID == "history-policy-changed-same-id" && f.Component == "history"
	}) {
		t.Errorf("stored findings %+v", fs)
	}
	// The dashboard's counts of open problems are stored with the state.
	openCounts(t, e, d.ID, 4)

	// Sustained: nothing new (the next day's reminder aside).
	e.clock.Set(e.toSlot(d.ID).Add(-time.Hour))
	if _, err := e.st.RequestRescan(t.Context(), e.user.ID, d.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	e.runDue(w)
	e.deliver(w)
	if got := e.deliv.take(); len(got) != 0 {
		t.Fatalf("a sustained problem was told again: %v", events(got[0].n))
	}
	if s := e.doneScans(d.ID)[0]; s.Trigger != store.TriggerManual {
		t.Errorf("rescan now ran as %s", s.Trigger)
	}
	e.toSlot(d.ID)
	e.runDue(w)
	e.deliver(w)
	rem := e.deliv.take()
	if len(rem) != 1 || rem[0].n.Type != monitor.TypeReminder || len(rem[0].n.Events) != 4 {
		t.Fatalf("the daily reminder: %+v", rem)
	}

	// The repair.
	fixed := difftest.Healthy(t0)
	fixed.Policy.ID = "2"
	e.scans.set("example.com", fixed)
	e.toSlot(d.ID)
	e.runDue(w)
	e.deliver(w)
	res := e.deliv.take()
	if len(res) != 1 || res[0].n.Type != monitor.TypeResolved || len(res[0].n.Events) != 4 || res[0].n.Open != 0 {
		t.Fatalf("resolved: %+v", res)
	}
	openCounts(t, e, d.ID, 0)
	e.toSlot(d.ID)
	e.runDue(w)
	e.deliver(w)
	if got := e.deliv.take(); len(got) != 0 {
		t.Fatalf("told again after the repair: %v", events(got[0].n))
	}
}

// openCounts checks the open-problem counts stored with a domain's alert
// state: known, equal to the state's own, and open in all.
func openCounts(t *testing.T, e *env, id store.DomainID, open int) {
	t.Helper()
	got, err := e.st.GetDomain(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	errs, warns, err := alert.OpenCounts(got.AlertState)
	if err != nil || !got.OpenCounted || got.OpenErrors != errs || got.OpenWarnings != warns || errs+warns != open {
		t.Errorf("stored counts %d errors, %d warnings (counted %v); the state has %d, %d (%v); want %d open",
			got.OpenErrors, got.OpenWarnings, got.OpenCounted, errs, warns, err, open)
	}
}

// TestTransientConfirmed: an unreachable MX is told only when the
// confirming scan, soon after, sees it again.
func TestTransientConfirmed(t *testing.T) {
	e := newEnv(t)
	w := e.worker("w1")
	e.scans.set("example.com", difftest.Healthy(t0))
	d := e.save("example.com", difftest.Healthy(t0))
	slot := e.toSlot(d.ID)
	down := difftest.Healthy(t0)
	difftest.AddFinding(down, "smtp-unreachable", "warning", "smtp", "mx2.example.com", "timeout")
	e.scans.set("example.com", down)
	e.runDue(w)
	e.deliver(w)
	if got := e.deliv.take(); len(got) != 0 {
		t.Fatalf("told before confirmation: %v", events(got[0].n))
	}
	got, _ := e.st.GetDomain(t.Context(), d.ID)
	if want := slot.Add(monitor.DefaultConfirmAfter); !got.NextScanAt.Equal(want) {
		t.Fatalf("confirming scan at %v, want %v", got.NextScanAt, want)
	}
	e.toSlot(d.ID)
	e.runDue(w)
	e.deliver(w)
	alerts := e.deliv.take()
	if len(alerts) != 1 || !slices.Equal(events(alerts[0].n), []string{"opened smtp-unreachable@mx2.example.com"}) {
		t.Fatalf("confirmed: %+v", alerts)
	}
	if got, _ := e.st.GetDomain(t.Context(), d.ID); !got.NextScanAt.Equal(slot.Add(24 * time.Hour)) {
		t.Errorf("after confirmation the domain is back on its slot: %v", got.NextScanAt)
	}
}

// TestMutedAndDigestChannels: a muted domain tells nothing; a channel on
// a daily digest gets no alert but the digest at its hour, once a day.
func TestMutedAndDigestChannels(t *testing.T) {
	e := newEnv(t)
	w := e.worker("w1")
	mail, err := e.st.CreateChannel(t.Context(), store.NewChannel{UserID: e.user.ID, Kind: store.ChannelEmail, Target: "ann@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	e.st.MarkChannelVerified(t.Context(), mail.ID)
	if err := e.st.SetChannelDigest(t.Context(), e.user.ID, mail.ID, true, 7); err != nil {
		t.Fatal(err)
	}
	e.scans.set("example.com", difftest.Healthy(t0))
	d := e.save("example.com", difftest.Healthy(t0))
	e.scans.set("example.com", broken(t0))
	slot := e.toSlot(d.ID)
	e.runDue(w)
	e.deliver(w)
	got := e.deliv.take()
	if len(got) != 1 || got[0].channel != e.ch.ID {
		t.Fatalf("only the webhook gets the alert: %+v", got)
	}
	// The digest at 07:00 UTC the next day.
	e.clock.Set(time.Date(slot.Year(), slot.Month(), slot.Day()+1, 7, 10, 0, 0, time.UTC))
	for range 2 {
		if _, err := w.QueueDigests(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	e.deliver(w)
	got = e.deliv.take()
	if len(got) != 1 || got[0].channel != mail.ID || got[0].n.Type != monitor.TypeDigest || len(got[0].n.Domains) != 1 || len(got[0].n.Domains[0].Open) != 4 {
		t.Fatalf("digest: %+v", got)
	}
	e.clock.Set(e.clock.Now().Add(time.Hour))
	if n, _ := w.QueueDigests(t.Context()); n != 0 {
		t.Errorf("a digest at 08:00 for a 07:00 channel")
	}

	// Muted: the repair is not told.
	if err := e.st.Mute(t.Context(), e.user.ID, d.ID, e.clock.Now().Add(7*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.scans.set("example.com", difftest.Healthy(t0))
	e.toSlot(d.ID)
	e.runDue(w)
	e.deliver(w)
	if got := e.deliv.take(); len(got) != 0 {
		t.Fatalf("a muted domain told: %v", events(got[0].n))
	}
}

// TestDeliveryRetries: a failing endpoint is retried with backoff, each
// attempt logged; a permanent failure is not retried.
func TestDeliveryRetries(t *testing.T) {
	e := newEnv(t)
	w := e.worker("w1")
	e.deliv.fail = []error{errors.New("503"), errors.New("503")}
	id, err := w.SendTest(t.Context(), e.user.ID, e.ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.SendTest(t.Context(), e.user.ID+1, e.ch.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another account's channel: %v", err)
	}
	e.deliver(w)
	m, _ := e.st.GetMessage(t.Context(), id)
	if m.Attempts != 1 || !m.NextAttemptAt.Equal(store.UTC(t0.Add(store.DefaultRetry.Base))) || m.LastError != "503" {
		t.Fatalf("after one failure %+v", m)
	}
	e.clock.Set(m.NextAttemptAt)
	e.deliver(w)
	m, _ = e.st.GetMessage(t.Context(), id)
	if m.Attempts != 2 || !m.NextAttemptAt.Equal(store.UTC(e.clock.Now().Add(2*store.DefaultRetry.Base))) {
		t.Fatalf("after two failures %+v", m)
	}
	e.clock.Set(m.NextAttemptAt)
	e.deliver(w)
	got := e.deliv.take()
	if len(got) != 1 || got[0].n.Type != monitor.TypeTest || got[0].id != id {
		t.Fatalf("delivered %+v", got)
	}
	log, _ := e.st.ListDeliveries(t.Context(), e.user.ID, e.ch.ID, 10)
	if len(log) != 3 || log[0].Error != "" || log[0].Detail != "HTTP 204" || log[2].Error != "503" {
		t.Fatalf("delivery log %+v", log)
	}

	e.deliv.fail = []error{monitor.Permanent(errors.New("no such mailbox"))}
	id, _ = w.SendTest(t.Context(), e.user.ID, e.ch.ID)
	e.deliver(w)
	if m, _ := e.st.GetMessage(t.Context(), id); m.AbandonedAt.IsZero() || m.Attempts != 1 {
		t.Fatalf("a permanent failure is retried: %+v", m)
	}
}

// frozen is a store as a paused (or dead) worker sees it: while frozen,
// every write waits, as if the process had stopped; thawed, a zombie's
// late writes go through to the store, which must refuse what it no longer
// owns.
type frozen struct {
	store.Store
	mu   sync.Mutex
	cond *sync.Cond
	ice  bool
}

func newFrozen(s store.Store) *frozen {
	f := &frozen{Store: s}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *frozen) set(ice bool) {
	f.mu.Lock()
	f.ice = ice
	f.mu.Unlock()
	f.cond.Broadcast()
}

func (f *frozen) wait() {
	f.mu.Lock()
	for f.ice {
		f.cond.Wait()
	}
	f.mu.Unlock()
}

func (f *frozen) ClaimDueDomains(ctx context.Context, owner string, limit int, ttl time.Duration) ([]store.ClaimedDomain, error) {
	f.wait()
	return f.Store.ClaimDueDomains(ctx, owner, limit, ttl)
}

func (f *frozen) RenewDomainLease(ctx context.Context, id store.DomainID, owner string, ttl time.Duration) error {
	f.wait()
	return f.Store.RenewDomainLease(ctx, id, owner, ttl)
}

func (f *frozen) FinishScan(ctx context.Context, id store.ScanID, r store.ScanResult) (store.Scan, error) {
	f.wait()
	return f.Store.FinishScan(ctx, id, r)
}

func (f *frozen) ClaimMessages(ctx context.Context, owner string, limit int, ttl time.Duration) ([]store.Message, error) {
	f.wait()
	return f.Store.ClaimMessages(ctx, owner, limit, ttl)
}

// TestRestartMidRun: a rescan run of many domains; the worker running it
// stops mid-run with scans in flight (frozen: it writes nothing more);
// another worker takes the domains over when their leases expire. Every
// domain has exactly one finished scan for the run, every regression is
// told exactly once, and when the stopped worker comes back (a paused
// process), its late results are thrown away.
func TestRestartMidRun(t *testing.T) {
	e := newEnv(t)
	const n = 12
	var ids []store.DomainID
	for i := range n {
		name := fmt.Sprintf("d%02d.example", i)
		e.scans.set(name, difftest.Healthy(t0))
		d, err := e.st.AddDomain(t.Context(), store.NewDomain{UserID: e.user.ID, Name: name, NextScanAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	// The baseline run.
	if got := e.runDue(e.worker("base")); got != n {
		t.Fatalf("baseline run scanned %d", got)
	}
	for i := range n {
		e.scans.set(fmt.Sprintf("d%02d.example", i), broken(t0))
	}
	e.clock.Set(t0.Add(24 * time.Hour))
	// Worker a runs the loop; the scans of d04 to d06 hang.
	gate := make(chan struct{})
	e.scans.mu.Lock()
	e.scans.block = map[string]chan struct{}{"d04.example": gate, "d05.example": gate, "d06.example": gate}
	e.scans.mu.Unlock()
	fa := newFrozen(e.st)
	a, err := monitor.New(monitor.Config{Scheduler: true, Notifier: true, Scans: 3, ScannerVersion: "test"},
		monitor.Options{Store: fa, Scan: e.scans.scan, Deliver: e.deliv, Now: e.clock.Now, Owner: "a"})
	if err != nil {
		t.Fatal(err)
	}
	actx, kill := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(actx); close(done) }()
	defer func() { fa.set(false); kill(); <-done }()
	// Wait until a holds the three hung domains.
	deadline := time.Now().Add(10 * time.Second)
	for {
		held := 0
		for _, id := range ids[4:7] {
			if d, _ := e.st.GetDomain(t.Context(), id); d.LeaseOwner == "a" {
				held++
			}
		}
		if held == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("worker a did not reach the hung scans")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// a stops: it writes nothing more. (Other workers' scans do not hang.)
	fa.set(true)
	e.scans.mu.Lock()
	e.scans.block = nil
	e.scans.mu.Unlock()
	// b starts at once: the hung domains are a's until the lease expires.
	b := e.worker("b")
	e.runDue(b)
	for _, id := range ids[4:7] {
		if s := e.doneScans(id); len(s) != 1 {
			t.Errorf("domain %d scanned while a held it", id)
		}
	}
	e.clock.Set(e.clock.Now().Add(monitor.DefaultLeaseTTL + time.Second))
	e.runDue(b)
	if b.Stats().Rescued != 3 {
		t.Errorf("b rescued %d domains, want 3", b.Stats().Rescued)
	}
	e.deliver(b)

	// a comes back: its hung scans finish late and must be thrown away.
	close(gate)
	fa.set(false)
	deadline = time.Now().Add(10 * time.Second)
	for st := a.Stats(); st.LeaseLost < 3; st = a.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("a's late scans: %+v, want 3 refused", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	kill()
	<-done
	e.deliver(b)

	told := map[string]int{}
	for _, got := range e.deliv.take() {
		if got.n.Type == monitor.TypeAlert {
			told[got.n.Domain]++
		}
	}
	for i, id := range ids {
		name := fmt.Sprintf("d%02d.example", i)
		if s := e.doneScans(id); len(s) != 2 {
			t.Errorf("%s: %d finished scans, want the baseline and one for the run", name, len(s))
		}
		if told[name] != 1 {
			t.Errorf("%s: told %d times", name, told[name])
		}
		all, _, _ := e.st.ListScans(t.Context(), id, "", 10)
		for _, s := range all {
			if s.State == store.ScanRunning || s.State == store.ScanQueued {
				t.Errorf("%s: scan %d left %s", name, s.ID, s.State)
			}
		}
	}
}

// TestGracefulStop: a scan interrupted by shutdown leaves its domain due,
// and the next start runs it; nothing is told twice.
func TestGracefulStop(t *testing.T) {
	e := newEnv(t)
	e.scans.set("example.com", difftest.Healthy(t0))
	d := e.save("example.com", difftest.Healthy(t0))
	e.scans.set("example.com", broken(t0))
	slot := e.toSlot(d.ID)
	gate := make(chan struct{})
	e.scans.block = map[string]chan struct{}{"example.com": gate}
	a := e.worker("a")
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	// Stop once the scan is under way (held at the gate); a stop before
	// it started is TestStopBeforeTheScanStarts.
	for e.scans.started("example.com") == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	<-done
	if a.Stats().Interrupted != 1 {
		t.Fatalf("stats %+v", a.Stats())
	}
	got, _ := e.st.GetDomain(t.Context(), d.ID)
	if !got.NextScanAt.Equal(slot) || got.LeaseOwner != "" {
		t.Fatalf("after the stop: next %v owner %q, want due at %v and free", got.NextScanAt, got.LeaseOwner, slot)
	}
	e.scans.block = nil
	b := e.worker("b")
	if n := e.runDue(b); n != 1 {
		t.Fatalf("the next start ran %d", n)
	}
	e.deliver(b)
	if got := e.deliv.take(); len(got) != 1 || got[0].n.Type != monitor.TypeAlert {
		t.Fatalf("told %+v", got)
	}
	all, _, _ := e.st.ListScans(t.Context(), d.ID, "", 10)
	if len(all) != 3 || all[1].State != store.ScanFailed || all[1].Error == "" {
		t.Errorf("history %+v: the interrupted scan is kept as failed, with why", all)
	}
}

// TestStopBeforeTheScanStarts: a worker stopped after claiming a domain
// but before recording its scan leaves the domain due at its slot (not
// pushed back by the failure retry) and counts the interruption.
func TestStopBeforeTheScanStarts(t *testing.T) {
	e := newEnv(t)
	e.scans.set("example.com", difftest.Healthy(t0))
	d := e.save("example.com", difftest.Healthy(t0))
	slot := e.toSlot(d.ID)
	a := e.worker("a")
	ctx, stop := context.WithCancel(context.Background())
	stop()
	claimed, err := e.st.ClaimDueDomains(t.Context(), a.Owner(), 1, time.Minute)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	a.RunClaimed(ctx, claimed[0])
	if s := a.Stats(); s.Interrupted != 1 || s.Scanned != 0 {
		t.Fatalf("stats %+v", s)
	}
	got, _ := e.st.GetDomain(t.Context(), d.ID)
	if !got.NextScanAt.Equal(slot) || got.LeaseOwner != "" {
		t.Fatalf("next %v owner %q, want due at %v and free", got.NextScanAt, got.LeaseOwner, slot)
	}
}

// TestMissedRunsRunOnce: after three days down, a domain is scanned once
// and goes back to its slot.
func TestMissedRunsRunOnce(t *testing.T) {
	e := newEnv(t)
	w := e.worker("w1")
	e.scans.set("example.com", difftest.Healthy(t0))
	d := e.save("example.com", nil)
	slot := e.toSlot(d.ID)
	e.clock.Set(slot.Add(72*time.Hour + time.Minute))
	if n := e.runDue(w); n != 1 {
		t.Fatalf("%d runs after downtime", n)
	}
	got, _ := e.st.GetDomain(t.Context(), d.ID)
	if !got.NextScanAt.Equal(slot.Add(96 * time.Hour)) {
		t.Errorf("next %v, want %v", got.NextScanAt, slot.Add(96*time.Hour))
	}
}

// TestTakeoversAndQueue: a domain and a message left leased by a worker
// that died are taken over once the leases run out, and counted as
// takeovers; Queue reports what waits and how late the oldest is.
func TestTakeoversAndQueue(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	d := e.save("taken.example.test", nil)
	at := e.toSlot(d.ID)
	if _, err := monitor.QueueTest(ctx, e.st, e.ch, at, "", nil); err != nil {
		t.Fatal(err)
	}
	w := e.worker("alive", func(c *monitor.Config) { c.LeaseTTL = time.Minute })
	e.clock.Advance(10 * time.Minute)
	q, err := w.Queue(ctx)
	if err != nil || q != (monitor.Queue{DueRescans: 1, DueDeliveries: 1, RescanLag: 10 * time.Minute, DeliveryLag: 10 * time.Minute}) {
		t.Fatalf("queue = %+v, %v; want one of each, 10 minutes late", q, err)
	}
	// The dead worker claims both and stops.
	if c, err := e.st.ClaimDueDomains(ctx, "dead", 10, time.Minute); err != nil || len(c) != 1 {
		t.Fatalf("dead worker's claim: %v %v", c, err)
	}
	if m, err := e.st.ClaimMessages(ctx, "dead", 10, time.Minute); err != nil || len(m) != 1 {
		t.Fatalf("dead worker's claim: %v %v", m, err)
	}
	if q, err := w.Queue(ctx); err != nil || q != (monitor.Queue{}) {
		t.Fatalf("queue with everything leased = %+v, %v; want nothing waiting", q, err)
	}
	// Before the leases run out nothing is taken.
	e.clock.Advance(59 * time.Second)
	if n := e.runDue(w); n != 0 {
		t.Fatalf("a live lease was taken over: %d scans", n)
	}
	e.deliver(w)
	if s := w.Stats(); s.Rescued != 0 || s.MessagesRescued != 0 || len(e.deliv.got) != 0 {
		t.Fatalf("before expiry: %+v, %d deliveries", s, len(e.deliv.got))
	}
	e.clock.Advance(time.Second)
	e.scans.set("taken.example.test", difftest.Healthy(e.clock.Now()))
	if n := e.runDue(w); n != 1 {
		t.Fatalf("takeover scanned %d domains, want 1", n)
	}
	e.deliver(w)
	if s := w.Stats(); s.Rescued != 1 || s.MessagesRescued != 1 || len(e.deliv.got) != 1 {
		t.Fatalf("after expiry: %+v, %d deliveries; want one takeover of each and one delivery", s, len(e.deliv.got))
	}
	if q, err := w.Queue(ctx); err != nil || q != (monitor.Queue{}) {
		t.Fatalf("queue at the end = %+v, %v", q, err)
	}
}

// TestDeliveryWithinLease: a claimed message whose lease is nearly over
// is not delivered (another worker may claim it any moment and deliver it
// too); it is left to the next claim, and then delivered once.
func TestDeliveryWithinLease(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := monitor.QueueTest(ctx, e.st, e.ch, t0, "", nil); err != nil {
		t.Fatal(err)
	}
	w := e.worker("next", func(c *monitor.Config) { c.LeaseTTL = time.Minute })
	// The clock jumps between the claim and the delivery (earlier
	// deliveries of the batch took long): the lease has 5s left, under
	// the fifth of it kept as margin.
	slow := &slowClock{Clock: e.clock, step: 55 * time.Second}
	w2, err := monitor.New(monitor.Config{Notifier: true, LeaseTTL: time.Minute}, monitor.Options{Store: e.st, Deliver: e.deliv, Now: slow.Now, Owner: "late"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w2.DeliverDue(ctx); n != 1 || err != nil {
		t.Fatalf("claim: %d, %v", n, err)
	}
	if len(e.deliv.got) != 0 {
		t.Fatal("delivered with 5s of its lease left")
	}
	e.clock.Set(slow.Clock.Now().Add(time.Minute))
	e.deliver(w)
	if len(e.deliv.got) != 1 {
		t.Fatalf("%d deliveries after the lease ran out, want 1", len(e.deliv.got))
	}
}

// slowClock advances by step each time the worker reads it (the
// store's clock is the one under it).
type slowClock struct {
	*storetest.Clock
	step time.Duration
}

func (c *slowClock) Now() time.Time {
	c.Clock.Advance(c.step)
	return c.Clock.Now()
}
