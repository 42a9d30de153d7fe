package main

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/webhook"
)

// Sizes of TestServeWorkers.
const (
	workersDomains  = 500
	workersChanged  = 50 // domains whose policy changes between periods
	workersMX       = 4  // MX hosts the domains share
	workersInterval = 7 * 24 * time.Hour
	// workersLease is web.worker.lease: short, so that a killed
	// instance's domains are taken over within the test.
	workersLease = 15 * time.Second
	// workersPeriod bounds one period's work: generous, for a loaded
	// machine; the test asserts counts, never how long a period took.
	workersPeriod = 5 * time.Minute
)

// TestServeWorkers: three `mailtls serve` processes with the worker role
// (the first also with web) on one PostgreSQL database and one lab
// (docs/scaling.md, "What the tests prove"). 500 saved domains share four
// MX hosts; each period the test moves every domain's next scan to ten
// minutes ago, as the clock reaching its slot after a pause would, and the
// three instances race for them. Then, counted in the database and at the
// webhook receiver:
//
//   - every domain is scanned exactly once per period (one finished scan,
//     none failed) and is due again only at its next slot;
//   - a tenth of the domains changes its policy (enforce to testing under
//     the same id) between periods 1 and 2 and back before period 3: one
//     alert, then one resolved notice for each of them, none for the
//     others; every outbox message reaches the receiver exactly once,
//     signed;
//   - in period 3 one instance is SIGKILLed while it holds leases: the
//     others take its domains over when the leases run out (counted on
//     their /metrics), nothing is lost or doubled, and the abandoned
//     scans are marked failed;
//   - the queue lag (/metrics and /healthz) shows the oldest due rescan
//     while the queue drains, and none at the end of a period.
func TestServeWorkers(t *testing.T) {
	if os.Geteuid() != 0 {
		// serve has no connect-to: the lab's servers must be where DNS
		// points, on ports 53, 443 and 25 (lab.NewWellKnown).
		skipOrFail(t, "needs root: binds ports 53, 443 and 25 of loopback addresses")
	}
	db := lab.NewPostgresDB(t)
	ctx := t.Context()
	w := newWorkersWorld(t, db)

	srv := lab.StartServes(t, 3, func(i int) lab.ServeOptions {
		roles := []string{"worker", "admin"}
		if i == 0 {
			roles = []string{"web", "worker", "admin"}
		}
		return lab.ServeOptions{Binary: binary, Config: w.cfg, Roles: roles, Env: []string{"SSL_CERT_FILE=" + w.rootPEM, "SSL_CERT_DIR=/nonexistent"}}
	})

	// Period 1: the first scan of every domain, its baseline.
	p1 := w.period(t, srv, nil)
	w.checkPeriod(t, p1, nil)
	if got := w.messagesIn(t, p1); len(got) != 0 {
		t.Errorf("period 1 (baselines) queued %d messages, want none: %v", len(got), got)
	}
	// The three shared the work, and their counts add up to the
	// database's.
	stored := make([]float64, len(srv))
	for i, s := range srv {
		v, ok, err := s.Metric(ctx, `mailtls_worker_scans_total{result="stored"}`)
		if err != nil || !ok || v == 0 {
			t.Errorf("%s stored %v scans in period 1 (%v)", s.Name(), v, err)
		}
		stored[i] = v
	}
	if stored[0]+stored[1]+stored[2] != workersDomains {
		t.Errorf("the instances count %v stored scans, want %d", stored, workersDomains)
	}
	t.Logf("scans stored in period 1 by each instance: %v", stored)

	// Period 2: a tenth of the domains changed their policy.
	w.setChanged(true)
	p2 := w.period(t, srv, func() {
		// While the queue drains, its lag is the ten minutes the domains
		// are late (or more): on every instance, the same shared queue.
		for _, s := range srv {
			page, err := s.Get(ctx, "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			due, _ := lab.MetricValue(page, `mailtls_worker_queue_due{queue="rescans"}`)
			lag, ok := lab.MetricValue(page, `mailtls_worker_queue_lag_seconds{queue="rescans"}`)
			if !ok || (due > 0 && lag < 600) || (due == 0 && lag != 0) {
				t.Errorf("%s: %v rescans due, lag %vs (series there: %v); want at least 600s while any is due", s.Name(), due, lag, ok)
			}
			t.Logf("%s as the period starts: %v rescans due, the oldest %.0fs late", s.Name(), due, lag)
		}
		// Half way: fewer due, the oldest later still (read from the
		// database at the scrape, not a figure the instance keeps).
		for w.doneSince(t, w.start) < workersDomains/2 {
			time.Sleep(50 * time.Millisecond)
		}
		page, err := srv[2].Get(ctx, "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		late := time.Since(w.start.Add(-10 * time.Minute)).Seconds()
		due, _ := lab.MetricValue(page, `mailtls_worker_queue_due{queue="rescans"}`)
		lag, _ := lab.MetricValue(page, `mailtls_worker_queue_lag_seconds{queue="rescans"}`)
		if due >= workersDomains/2 || (due > 0 && (lag < 600 || lag > late)) {
			t.Errorf("half way: %v rescans due, lag %vs; want under %d due, %.0fs late", due, lag, workersDomains/2, late)
		}
		t.Logf("half way: %v rescans due, the oldest %.0fs late", due, lag)
	})
	w.checkPeriod(t, p2, nil)
	w.checkNotices(t, p2, "alert")

	// Period 3: the changes are undone, and an instance dies mid-period.
	w.setChanged(false)
	victim := srv[1]
	var held, heldMsgs int
	p3 := w.period(t, srv, func() {
		// Kill it once a fifth of the domains is done and it holds
		// leases (a scan in flight), as a crash would: no shutdown.
		deadline := time.Now().Add(workersPeriod)
		for {
			if w.doneSince(t, w.start) >= workersDomains/5 && w.heldBy(t, victim) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never held a lease in period 3", victim.Name())
			}
			time.Sleep(20 * time.Millisecond)
		}
		w.killed[victim] = true
		victim.Kill()
		held = w.heldBy(t, victim)
		heldMsgs = w.heldMessagesBy(t, victim)
		t.Logf("killed %s holding %d domain lease(s) and %d message lease(s)", victim.Name(), held, heldMsgs)
	})
	survivors := []*lab.Serve{srv[0], srv[2]}
	w.checkPeriod(t, p3, victim)
	w.checkNotices(t, p3, "resolved")
	if held == 0 {
		t.Fatal("the killed instance held no lease after it died: nothing was taken over")
	}
	takeovers := 0.0
	for _, s := range survivors {
		v, ok, err := s.Metric(ctx, `mailtls_worker_lease_takeovers_total{lease="domain"}`)
		if err != nil || !ok {
			t.Fatalf("%s: takeovers: %v (series there: %v)", s.Name(), err, ok)
		}
		takeovers += v
	}
	// Each of the dead instance's domains is taken over once; a survivor
	// stalled past its own lease (a loaded machine) may add to it.
	if takeovers < float64(held) {
		t.Errorf("the survivors counted %v domain takeovers, want at least the %d leases the killed instance held", takeovers, held)
	}
	t.Logf("takeovers counted by the survivors: %v (the killed instance held %d)", takeovers, held)
	msgTakeovers := 0.0
	for _, s := range survivors {
		v, _, err := s.Metric(ctx, `mailtls_worker_lease_takeovers_total{lease="message"}`)
		if err != nil {
			t.Fatal(err)
		}
		msgTakeovers += v
	}
	if msgTakeovers < float64(heldMsgs) {
		t.Errorf("the survivors counted %v alert takeovers, want at least the %d the killed instance held", msgTakeovers, heldMsgs)
	}

	// At rest: nothing due, no lag, on what is left of the cluster.
	for _, s := range survivors {
		h, err := s.Get(ctx, "/healthz")
		if err != nil || !strings.Contains(h, "monitor: queue: 0 rescan(s) due, the oldest 0s late; 0 alert(s) due, the oldest 0s late") {
			t.Errorf("%s: /healthz at rest: %v\n%s", s.Name(), err, h)
		}
	}
	// Every message once at the receiver (twice only for one the killed
	// instance may have sent before it died: delivery is at least once,
	// docs/monitoring.md), and nothing else.
	w.checkDeliveries(t, victim)
	for _, s := range survivors {
		if err := s.Stop(30 * time.Second); err != nil {
			t.Errorf("%s: %v", s.Name(), err)
		}
	}
}

// workersWorld is the lab, the store and the receiver of TestServeWorkers.
type workersWorld struct {
	l       *lab.Lab
	db      *pgx.Conn
	st      *sqlstore.DB
	sink    *lab.HookSink
	cfg     string
	rootPEM string
	domains []string
	ids     map[store.DomainID]string
	changed map[string]bool // the domains whose policy changes
	start   time.Time       // of the current period
	killed  map[*lab.Serve]bool

	mu       sync.Mutex
	changeOn bool // the changed domains serve their changed policy
}

// period is one scheduling period of every domain: [from, to).
type period struct{ from, to time.Time }

func newWorkersWorld(t *testing.T, dbURL string) *workersWorld {
	t.Helper()
	ctx := t.Context()
	w := &workersWorld{l: lab.NewWellKnown(t), ids: map[store.DomainID]string{}, changed: map[string]bool{}, killed: map[*lab.Serve]bool{}}
	dir := t.TempDir()
	var err error
	if w.rootPEM, err = w.l.CA.WriteRootPEM(dir); err != nil {
		t.Fatal(err)
	}
	// MX hosts on port 25 of loopback addresses of their own: the binary
	// dials what DNS says (no connect-to in serve).
	var mx []string
	for i := range workersMX {
		host := fmt.Sprintf("mx%d.workers.test", i)
		_, err := lab.FreeLoopback(func(ip netip.Addr) error {
			_, err := w.l.MX(host, []netip.Addr{ip}, lab.SMTPOptions{Mode: lab.SMTPStartTLS, Addr: lab.AddrPort(ip, 25)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		mx = append(mx, host)
	}
	w.sink = w.l.MustHookSink(t, "hooks.workers.test")

	w.st, err = sqlstore.OpenPostgres(ctx, dbURL, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.st.Close() })
	if w.db, err = pgx.Connect(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.db.Close(context.Background()) })
	u, err := w.st.CreateUser(ctx, "msp@workers.test", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := w.st.CreateChannel(ctx, store.NewChannel{UserID: u.ID, Kind: store.ChannelWebhook, Target: "https://hooks.workers.test/alerts", Secret: []byte("workers")})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.st.MarkChannelVerified(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	// Weekly domains whose own slot is not within the next day, so that
	// only the test's periods make them due.
	now := time.Now()
	for i := 0; len(w.domains) < workersDomains; i++ {
		d := fmt.Sprintf("d%04d.workers.test", i)
		if store.NextScan(d, workersInterval, now).Before(now.Add(24 * time.Hour)) {
			continue
		}
		host := mx[len(w.domains)%workersMX]
		w.l.DNS.MustAdd(t, d+". 300 IN MX 10 "+host+".", `_mta-sts.`+d+`. 300 IN TXT "v=STSv1; id=1"`,
			`_smtp._tls.`+d+`. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@`+d+`"`)
		w.l.MustPolicyHost(t, d, lab.PolicyHostOptions{Handler: w.policy(host)})
		if len(w.domains)%(workersDomains/workersChanged) == 0 {
			w.changed[d] = true
		}
		dom, err := w.st.AddDomain(ctx, store.NewDomain{UserID: u.ID, Name: d, Interval: workersInterval, NextScanAt: now.Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		w.domains = append(w.domains, d)
		w.ids[dom.ID] = d
	}

	w.cfg = filepath.Join(dir, "mailtls.yaml")
	yaml := fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
store: %q
web:
  listen: ["127.0.0.1:0"]
  public_url: https://check.workers.test
  scanner:
    resolvers: [%q]
    ehlo: checker.workers.test
    allow_networks: ["127.0.0.0/8"]
    timeout: 60s
  worker: {scans: 8, poll: 1s, lease: %s}
`, dbURL, w.l.DNS.Addr(), workersLease)
	if err := os.WriteFile(w.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// policy serves the policy of a domain whose MX is host: enforce, or,
// while the domain is changed, testing under the same id.
func (w *workersWorld) policy(host string) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		d := strings.TrimPrefix(strings.ToLower(r.Host), "mta-sts.")
		mode := "enforce"
		w.mu.Lock()
		if w.changeOn && w.changed[d] {
			mode = "testing"
		}
		w.mu.Unlock()
		rw.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(rw, "version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: 604800\r\n", mode, host)
	})
}

func (w *workersWorld) setChanged(on bool) {
	w.mu.Lock()
	w.changeOn = on
	w.mu.Unlock()
}

// period makes every domain due ten minutes ago (the clock reaching its
// slot), runs during (if not nil) while the instances work, and waits
// until every domain has a finished scan of the period, none is leased
// and no message waits for delivery.
func (w *workersWorld) period(t *testing.T, srv []*lab.Serve, during func()) period {
	t.Helper()
	ctx := t.Context()
	w.start = time.Now()
	if _, err := w.db.Exec(ctx, "UPDATE domains SET next_scan_at = $1", w.start.Add(-10*time.Minute).UnixMicro()); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		during()
	}
	deadline := time.Now().Add(workersPeriod)
	for {
		done := w.doneSince(t, w.start)
		var leased, pending int
		err := w.db.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM domains WHERE lease_owner IS NOT NULL),
			(SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL)`).Scan(&leased, &pending)
		if err != nil {
			t.Fatal(err)
		}
		if done == workersDomains && leased == 0 && pending == 0 {
			break
		}
		if len(w.killed) == 0 {
			// With every instance alive a domain is scanned once: a second
			// scan (finished, failed or running) fails the test at once.
			var twice []string
			rows, err := w.db.Query(ctx, `SELECT domain_id, string_agg(state || ' ' || error, '; ') FROM scans
				WHERE created_at >= $1 GROUP BY domain_id HAVING COUNT(*) > 1`, w.start.UnixMicro())
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id store.DomainID
				var scans string
				if err := rows.Scan(&id, &scans); err != nil {
					t.Fatal(err)
				}
				twice = append(twice, w.ids[id]+": "+scans)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if len(twice) > 0 {
				t.Fatalf("%d domains scanned more than once in the period, every instance alive:\n%s", len(twice), strings.Join(twice, "\n"))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("period not over after %v: %d of %d domains scanned, %d leased, %d messages pending", workersPeriod, done, workersDomains, leased, pending)
		}
		for _, s := range srv {
			select {
			case <-s.Done():
				if !w.killed[s] {
					t.Fatalf("%s exited", s.Name())
				}
			default:
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return period{from: w.start, to: time.Now()}
}

// doneSince counts the domains with a finished scan created since from.
func (w *workersWorld) doneSince(t *testing.T, from time.Time) int {
	t.Helper()
	var n int
	if err := w.db.QueryRow(t.Context(), "SELECT COUNT(DISTINCT domain_id) FROM scans WHERE state = 'done' AND created_at >= $1",
		from.UnixMicro()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// owner is the LIKE pattern of an instance's lease owner names
// (host/pid/random, monitor.Options.Owner).
func owner(s *lab.Serve) string { return "%/" + strconv.Itoa(s.Pid()) + "/%" }

// heldBy counts the domains whose lease s holds.
func (w *workersWorld) heldBy(t *testing.T, s *lab.Serve) int {
	t.Helper()
	var n int
	if err := w.db.QueryRow(t.Context(), "SELECT COUNT(*) FROM domains WHERE lease_owner LIKE $1", owner(s)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// heldMessagesBy counts the undelivered messages whose lease s holds.
func (w *workersWorld) heldMessagesBy(t *testing.T, s *lab.Serve) int {
	t.Helper()
	var n int
	if err := w.db.QueryRow(t.Context(), "SELECT COUNT(*) FROM outbox WHERE lease_owner LIKE $1 AND delivered_at IS NULL", owner(s)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkPeriod: every domain has exactly one finished scan created in p,
// and is next due at its own slot, after the period. Failed scans are
// allowed only when victim died in the period: those it left running,
// marked abandoned by the instance that took the domain over.
func (w *workersWorld) checkPeriod(t *testing.T, p period, victim *lab.Serve) {
	t.Helper()
	ctx := t.Context()
	rows, err := w.db.Query(ctx, `SELECT d.id, d.next_scan_at,
		(SELECT COUNT(*) FROM scans s WHERE s.domain_id = d.id AND s.state = 'done' AND s.created_at >= $1 AND s.created_at < $2),
		(SELECT COUNT(*) FROM scans s WHERE s.domain_id = d.id AND s.state <> 'done' AND s.created_at >= $1 AND s.created_at < $2),
		(SELECT COUNT(*) FROM scans s WHERE s.domain_id = d.id AND s.state = 'failed' AND s.error LIKE 'abandoned: %' AND s.created_at >= $1 AND s.created_at < $2)
		FROM domains d`, p.from.UnixMicro(), p.to.UnixMicro())
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		id                     store.DomainID
		next                   int64
		done, other, abandoned int
	}
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.id, &x.next, &x.done, &x.other, &x.abandoned)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != workersDomains {
		t.Fatalf("%d domains in the store, want %d", len(rs), workersDomains)
	}
	bad, abandoned := 0, 0
	for _, r := range rs {
		name := w.ids[r.id]
		next := time.UnixMicro(r.next)
		okOther := r.other == 0 || (victim != nil && r.other == r.abandoned)
		if r.done != 1 || !okOther || !next.Equal(store.NextScan(name, workersInterval, next.Add(-time.Microsecond))) || !next.After(p.to) {
			if bad++; bad <= 10 {
				t.Errorf("%s: %d finished scans and %d others in the period (%d abandoned), next scan %v", name, r.done, r.other, r.abandoned, next)
			}
		}
		abandoned += r.abandoned
	}
	if bad > 0 {
		t.Errorf("%d of %d domains not scanned exactly once in the period", bad, workersDomains)
	}
	if victim != nil {
		t.Logf("period with %s killed: %d scans it left running were marked abandoned", victim.Name(), abandoned)
	}
}

// messagesIn returns the kind of each message queued in p, by domain.
func (w *workersWorld) messagesIn(t *testing.T, p period) map[string][]string {
	t.Helper()
	rows, err := w.db.Query(t.Context(), "SELECT domain_id, kind FROM outbox WHERE created_at >= $1 AND created_at < $2", p.from.UnixMicro(), p.to.UnixMicro())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for rows.Next() {
		var id store.DomainID
		var kind string
		if err := rows.Scan(&id, &kind); err != nil {
			t.Fatal(err)
		}
		out[w.ids[id]] = append(out[w.ids[id]], kind)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkNotices: in p, each changed domain queued exactly one message of
// kind, and no other domain queued any.
func (w *workersWorld) checkNotices(t *testing.T, p period, kind string) {
	t.Helper()
	got := w.messagesIn(t, p)
	for d := range w.changed {
		if k := got[d]; len(k) != 1 || k[0] != kind {
			t.Errorf("%s (changed): messages %v in the period, want one %s", d, k, kind)
		}
	}
	for d, k := range got {
		if !w.changed[d] {
			t.Errorf("%s (unchanged): messages %v in the period, want none", d, k)
		}
	}
}

// checkDeliveries: every outbox message was delivered, and the receiver
// got each exactly once, signed with the channel's secret, and nothing
// else; a message the killed instance held when it died may have been
// received twice (at least once), no other.
func (w *workersWorld) checkDeliveries(t *testing.T, victim *lab.Serve) {
	t.Helper()
	rows, err := w.db.Query(t.Context(), "SELECT id, delivered_at IS NOT NULL, COALESCE(rescued_from, '') LIKE $1 FROM outbox", owner(victim))
	if err != nil {
		t.Fatal(err)
	}
	type msg struct{ delivered, fromVictim bool }
	msgs := map[string]msg{}
	for rows.Next() {
		var id int64
		var m msg
		if err := rows.Scan(&id, &m.delivered, &m.fromVictim); err != nil {
			t.Fatal(err)
		}
		msgs[strconv.FormatInt(id, 10)] = m
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, r := range w.sink.Requests() {
		id := r.Header.Get(webhook.DeliveryHeader)
		got[id]++
		if err := webhook.Verify([]byte("workers"), r.Header.Get(webhook.SignatureHeader), r.Body, time.Now(), time.Hour); err != nil {
			t.Errorf("delivery %s: %v", id, err)
		}
	}
	twice := 0
	for id, m := range msgs {
		switch n := got[id]; {
		case !m.delivered:
			t.Errorf("message %s was never marked delivered", id)
		case n == 1:
		case n == 2 && m.fromVictim:
			twice++
		default:
			t.Errorf("message %s received %d times", id, n)
		}
	}
	for id := range got {
		if _, ok := msgs[id]; !ok {
			t.Errorf("the receiver got message %q, which is not in the outbox", id)
		}
	}
	t.Logf("%d messages, each received once (%d twice: sent by the killed instance as it died)", len(msgs), twice)
}
