package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// The scaling benchmark (issue 15): saved domains rescanned by 1, 2 and 3
// built `mailtls serve --roles worker` processes sharing one PostgreSQL
// (the server of MAILTLS_TEST_POSTGRES, a database of its own), and the
// API's latency at a fixed request rate through a `--roles web` process
// while they work, beside the same with the workers idle.
//
// The rescans are real scans of lab domains (DNS, the policy fetch over
// HTTPS, STARTTLS probes of the MX) with latency injected on every DNS
// answer and TCP accept, as on the internet (250 ms: a rescan then takes
// about a second, as one of a real domain does), and each instance scans
// at most 4 domains at once (web.worker.scans, its default): a worker is
// latency-bound, so what adding instances shows is how they coordinate
// through the database (claims with leases, the scans stored), not how
// fast this machine's cores are.
//
// The processes reach the lab as they would the internet, without dial
// rules: the lab's DNS and HTTPS servers listen on ports 53 and 443 of a
// loopback address (lab.StartWellKnown), the MX servers on port 25 of
// addresses of their own, and the lab's CA is their system roots
// (SSL_CERT_FILE); binding those ports needs root. The CPU time of the
// instances (each process's, from /proc), of the lab (this process: the
// servers' side of every handshake, the API client) and of the database's
// backends serving the benchmark's database (/proc) are measured apart.
//
// What the database does per rescan comes from its own statistics
// (pg_stat_database of the benchmark's database: transactions, tuples,
// blocks), read with every instance stopped, so that each backend has
// flushed its counters. (Not pg_stat_statements, which would name the
// queries: it must be in shared_preload_libraries, a restart of the
// server, which a benchmark sharing the tests' server does not do.)
//
// SCALE_DOMAINS (300), SCALE_INSTANCES (3), SCALE_SCANS (per instance,
// 4), SCALE_LATENCY_MS (250), SCALE_API_RATE (requests per second, 20) and
// SCALE_API_IDLE_S (10) change the sizes. It ignores b.N: run it with
// -benchtime 1x (bench/run.sh does).
func BenchmarkScale(b *testing.B) {
	e := newScaleEnv(b)
	ctx := context.Background()

	// The first scan of each domain (no previous scan, alert baselines)
	// is not a rescan: it is done before the measured rounds.
	first := e.round(ctx, e.maxInst, nil)
	b.Logf("first scans: %d domains by %d instances in %.1f s", e.domains, e.maxInst, first.span.Seconds())

	var rounds []scaleRound
	for n := 1; n <= e.maxInst; n++ {
		r := e.round(ctx, n, nil)
		rounds = append(rounds, r)
		b.Logf("%d instance(s): %.0f domains/h, %.0f ms a rescan (mean), x%.2f the slots' bound, CPU a rescan %.1f ms (instances) + %.1f ms (lab) + %.1f ms (PostgreSQL); others %.2f cores, steal %.2f",
			n, r.perHour(), r.meanMS, r.perHour()/r.bound(), ms(r.cpu, r.domains), ms(r.labCPU, r.domains), ms(r.pgCPU, r.domains), r.othersCores(), r.stealCores())
	}

	// The API at a fixed rate through a web instance: the workers idle,
	// then while the most instances rescan every domain.
	web := e.start(1, "web")[0]
	base := "http://" + web.Addr("web")
	e.checkAPI(ctx, base)
	// The web process's CPU and the database backends' during the load:
	// what a request costs where.
	admin := e.connect(ctx, e.admin)
	defer admin.Close(ctx)
	pg := &pgBackends{base: map[int]time.Duration{}, last: map[int]time.Duration{}}
	pg.sample(ctx, admin, e.dbName, true)
	web0, _ := procCPU(web.Pid())
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, time.Duration(envInt("SCALE_API_IDLE_S", 10))*time.Second)
	idle := apiLoad(actx, base, e.token, e.ids, e.apiRate)
	cancel()
	idleWall := time.Since(start)
	pg.sample(ctx, admin, e.dbName, false)
	web1, _ := procCPU(web.Pid())
	busy := e.round(ctx, e.maxInst, func(ctx context.Context) []apiSample { return apiLoad(ctx, base, e.token, e.ids, e.apiRate) })
	web2, _ := procCPU(web.Pid())
	if err := web.Stop(time.Minute); err != nil {
		b.Fatalf("stopping the web instance: %v", err)
	}
	b.StopTimer()
	for _, s := range [][]apiSample{idle, busy.api} {
		if err := apiFailed(s); err != nil {
			b.Fatal(err)
		}
	}

	for i, r := range rounds {
		n := i + 1
		sfx := "-" + strconv.Itoa(n)
		b.ReportMetric(r.perHour(), "domains/h"+sfx)
		b.ReportMetric(r.meanMS, "ms-rescan"+sfx)
		b.ReportMetric(r.perHour()/r.bound(), "x-bound"+sfx)
		b.ReportMetric(ms(r.cpu, r.domains), "cpu-ms/rescan"+sfx)
		b.ReportMetric(ms(r.labCPU, r.domains), "lab-cpu-ms/rescan"+sfx)
		b.ReportMetric(ms(r.pgCPU, r.domains), "pg-cpu-ms/rescan"+sfx)
		b.ReportMetric(r.othersCores(), "others-cores"+sfx)
		b.ReportMetric(r.stealCores(), "steal-cores"+sfx)
		b.ReportMetric(r.cores(), "cores"+sfx)
		d := r.db
		per := func(v int64) float64 { return float64(v) / float64(r.domains) }
		b.ReportMetric(per(d.xactCommit), "xact/rescan"+sfx)
		b.ReportMetric(per(d.tupReturned), "tup-returned/rescan"+sfx)
		b.ReportMetric(per(d.tupFetched), "tup-fetched/rescan"+sfx)
		b.ReportMetric(per(d.tupInserted), "tup-inserted/rescan"+sfx)
		b.ReportMetric(per(d.tupUpdated), "tup-updated/rescan"+sfx)
		b.ReportMetric(per(d.tupDeleted), "tup-deleted/rescan"+sfx)
		b.ReportMetric(per(d.blksHit), "blks-hit/rescan"+sfx)
		b.ReportMetric(per(d.blksRead), "blks-read/rescan"+sfx)
		b.ReportMetric(per(d.size), "db-bytes/rescan"+sfx)
		b.ReportMetric(float64(r.polls), "bench-polls"+sfx)
		b.ReportMetric(float64(r.again), "scanned-twice"+sfx)
	}
	b.ReportMetric(float64(e.domains), "domains")
	b.ReportMetric(float64(e.scans), "scans-per-instance")
	b.ReportMetric(float64(e.latency.Milliseconds()), "ms-latency")
	b.ReportMetric(float64(runtime.NumCPU()), "machine-cores")
	b.ReportMetric(e.apiRate, "api-req/s")
	for _, p := range []struct {
		name string
		s    []apiSample
	}{{"idle", idle}, {"busy", busy.api}} {
		all, list := apiPercentiles(p.s)
		b.ReportMetric(all.p50, "api-p50-ms-"+p.name)
		b.ReportMetric(all.p95, "api-p95-ms-"+p.name)
		b.ReportMetric(all.max, "api-max-ms-"+p.name)
		b.ReportMetric(list.p95, "api-list-p95-ms-"+p.name)
		b.ReportMetric(float64(len(p.s)), "api-requests-"+p.name)
	}
	b.ReportMetric(busy.perHour(), "domains/h-busy")
	b.ReportMetric(busy.cores(), "cores-busy")
	b.ReportMetric(ms(web1-web0, len(idle)), "web-cpu-ms/request-idle")
	b.ReportMetric(ms(web2-web1, len(busy.api)), "web-cpu-ms/request-busy")
	b.ReportMetric(pg.total().Seconds()/idleWall.Seconds(), "pg-cores-idle")
	b.ReportMetric(busy.pgCPU.Seconds()/busy.wall.Seconds(), "pg-cores-busy")
	b.ReportMetric(0, "ns/op")
}

type scaleEnv struct {
	b                       *testing.B
	l                       *lab.Lab
	url, dbName             string
	admin                   string // the server's URL, for the statistics (its own database: they do not count themselves)
	bin, cfgPath, rootPEM   string
	domains, maxInst, scans int
	latency                 time.Duration
	apiRate                 float64
	token                   string
	ids                     []store.DomainID
}

func newScaleEnv(b *testing.B) *scaleEnv {
	e := &scaleEnv{b: b, domains: envInt("SCALE_DOMAINS", 300), maxInst: envInt("SCALE_INSTANCES", 3), scans: envInt("SCALE_SCANS", 4),
		latency: time.Duration(envInt("SCALE_LATENCY_MS", 250)) * time.Millisecond, apiRate: float64(envInt("SCALE_API_RATE", 20))}
	if testing.Short() {
		e.domains = min(e.domains, 60)
	}
	e.url = lab.NewPostgresDB(b)
	e.admin = os.Getenv(lab.PostgresEnv)
	cfg, err := pgx.ParseConfig(e.url)
	if err != nil {
		b.Fatal(err)
	}
	e.dbName = cfg.Database
	dir := b.TempDir()
	if e.bin, err = lab.BuildMailtls(dir); err != nil {
		b.Fatal(err)
	}
	l, err := lab.StartWellKnown()
	if err != nil {
		b.Fatalf("%v (ports 53 and 443 need root)", err)
	}
	b.Cleanup(l.Close)
	e.l = l
	if e.rootPEM, err = l.CA.WriteRootPEM(dir); err != nil {
		b.Fatal(err)
	}
	names := scalePopulation(b, l, e.domains, 5)
	l.DNS.SetLatency(e.latency)
	l.HTTPS.SetAcceptLatency(e.latency)

	// The store: one account (an MSP) with every domain, due now, and an
	// API token.
	ctx := context.Background()
	db, err := sqlstore.OpenPostgres(ctx, e.url, sqlstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	u, err := db.CreateUser(ctx, "msp@bench.example", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
	if err == nil {
		err = db.MarkEmailVerified(ctx, u.ID)
	}
	if err != nil {
		b.Fatal(err)
	}
	acc := account.New(account.Config{Store: db})
	defer acc.Close(ctx)
	if e.token, _, err = acc.CreateToken(ctx, u.ID, "bench", []store.Scope{store.ScopeRead}); err != nil {
		b.Fatal(err)
	}
	for _, name := range names {
		sd, err := db.AddDomain(ctx, store.NewDomain{UserID: u.ID, Name: name, NextScanAt: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		e.ids = append(e.ids, sd.ID)
	}

	e.cfgPath = filepath.Join(dir, "mailtls.yaml")
	conf := fmt.Sprintf(`log: {level: info}
web:
  listen: ["127.0.0.1:0"]
  public_url: https://check.example.test
  scanner:
    resolvers: [%q]
    ehlo: checker.example.test
    allow_networks: ["127.0.0.0/8"]
  worker: {scans: %d}
store: %q
`, l.DNS.Addr(), e.scans, e.url)
	if err := os.WriteFile(e.cfgPath, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	return e
}

// scalePopulation adds n domains (d00000.scale.test, …) to a lab started
// with StartWellKnown: each has an MTA-STS record, a TLS-RPT record, a
// policy (enforce and testing in turn) on the lab's HTTPS server, and an
// MX host among shared SMTP servers with STARTTLS, each on port 25 of a
// loopback address of its own, with the lab's latency on every accept.
func scalePopulation(b *testing.B, l *lab.Lab, n, shared int) []string {
	const sfx = "scale.test"
	if err := l.DNS.Add(fmt.Sprintf("%s. 3600 IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300", sfx, sfx, sfx)); err != nil {
		b.Fatal(err)
	}
	l.DNS.SetNegativeSOA(true)
	latency := time.Duration(envInt("SCALE_LATENCY_MS", 250)) * time.Millisecond
	for i := range shared {
		host := fmt.Sprintf("mx%d.%s", i+1, sfx)
		cert, err := l.CA.Issue(lab.LeafOptions{DNSNames: []string{host}})
		if err != nil {
			b.Fatal(err)
		}
		var s *lab.SMTPServer
		ip, err := lab.FreeLoopback(func(ip netip.Addr) error {
			var err error
			s, err = lab.StartSMTP(lab.SMTPOptions{Name: host, Cert: cert, Addr: lab.AddrPort(ip, 25)}, l.CA)
			return err
		})
		if err != nil {
			b.Fatalf("%v (port 25 needs root)", err)
		}
		b.Cleanup(func() { s.Close() })
		s.SetAcceptLatency(latency)
		if err := l.DNS.Add(fmt.Sprintf("%s. 300 IN A %s", host, ip)); err != nil {
			b.Fatal(err)
		}
	}
	httpsIP := netip.MustParseAddrPort(l.HTTPS.Addr()).Addr()
	var names []string
	for i := range n {
		name := fmt.Sprintf("d%05d.%s", i, sfx)
		mx := fmt.Sprintf("mx%d.%s", i%shared+1, sfx)
		if err := l.DNS.Add(fmt.Sprintf("%s. 300 IN MX 10 %s.", name, mx),
			fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=20261201"`, name),
			fmt.Sprintf(`_smtp._tls.%s. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@%s"`, name, name),
			fmt.Sprintf("mta-sts.%s. 300 IN A %s", name, httpsIP)); err != nil {
			b.Fatal(err)
		}
		mode := []string{"enforce", "testing"}[i%2]
		cert, err := l.CA.Issue(lab.LeafOptions{DNSNames: []string{"mta-sts." + name}})
		if err != nil {
			b.Fatal(err)
		}
		l.HTTPS.Host("mta-sts."+name, cert, lab.Static(http.StatusOK, "text/plain",
			fmt.Sprintf("version: STSv1\r\nmode: %s\r\nmx: *.%s\r\nmax_age: 604800\r\n", mode, sfx)))
		names = append(names, name)
	}
	return names
}

// start runs n `mailtls serve` processes with the roles given, at once.
func (e *scaleEnv) start(n int, roles ...string) []*lab.Serve {
	return lab.StartServes(e.b, n, func(i int) lab.ServeOptions {
		return lab.ServeOptions{Binary: e.bin, Config: e.cfgPath, Roles: roles, Env: []string{"SSL_CERT_FILE=" + e.rootPEM},
			Name: fmt.Sprintf("%s %d", strings.Join(roles, ","), i+1)}
	})
}

// scaleRound is one round: every domain rescanned once.
type scaleRound struct {
	instances      int
	scans          int           // per instance
	span           time.Duration // from the first scan created to the last finished (the database's clock)
	meanMS         float64       // a rescan's mean time, created to finished (scan, judgement, storing)
	wall           time.Duration // from the instances' start to the last scan found finished
	cpu, labCPU    time.Duration // the instances' CPU time, and this process's (the lab, the API client, the polls)
	pgCPU          time.Duration // the database backends'
	others, steal  time.Duration
	domains, polls int // domains: the scans stored (the rescans)
	again          int // domains scanned twice: their own slot came during the round
	db             pgDBStats
	api            []apiSample
}

func (r scaleRound) perHour() float64 { return float64(r.domains) / r.span.Hours() }

// bound is what the scan slots allow at the measured time a rescan takes:
// every instance's slots always busy.
func (r scaleRound) bound() float64 {
	return float64(r.instances*r.scans) / (r.meanMS / 1000) * 3600
}

// ms is the milliseconds of d per one of n.
func ms(d time.Duration, n int) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }

func (r scaleRound) cores() float64       { return (r.cpu + r.labCPU + r.pgCPU).Seconds() / r.wall.Seconds() }
func (r scaleRound) othersCores() float64 { return r.others.Seconds() / r.wall.Seconds() }
func (r scaleRound) stealCores() float64  { return r.steal.Seconds() / r.wall.Seconds() }

// round makes every domain due, runs n worker instances until each
// domain has one new scan stored, stops them, and checks that each
// domain was scanned exactly once and successfully. load, if set, runs
// from the instances' start until the last scan is stored.
func (e *scaleEnv) round(ctx context.Context, n int, load func(context.Context) []apiSample) (r scaleRound) {
	b := e.b
	r.instances, r.scans, r.domains = n, e.scans, e.domains
	conn := e.connect(ctx, e.url)
	var baseID int64
	if _, err := conn.Exec(ctx, "UPDATE domains SET next_scan_at = 0"); err != nil {
		b.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM scans").Scan(&baseID); err != nil {
		b.Fatal(err)
	}
	conn.Close(ctx)

	admin := e.connect(ctx, e.admin)
	defer admin.Close(ctx)
	measured := load == nil // a web instance's queries are not the rescans'
	if measured {
		e.waitQuiet(ctx, admin)
	}
	db0 := readPGStats(ctx, b, admin, e.dbName)
	pg := &pgBackends{base: map[int]time.Duration{}, last: map[int]time.Duration{}}
	pg.sample(ctx, admin, e.dbName, true)
	cpu0, m0 := selfCPU(), machineCPU()
	start := time.Now()

	workers := e.start(n, "worker")
	// Each instance's CPU time from when it serves (its start is not a
	// rescan's; the scans it began meanwhile were waiting on the network).
	base := make([]time.Duration, n)
	for i, w := range workers {
		base[i], _ = procCPU(w.Pid())
	}
	lctx, stopLoad := context.WithCancel(ctx)
	loaded := make(chan []apiSample, 1)
	if load != nil {
		go func() { loaded <- load(lctx) }()
	}
	// The database backends' CPU, sampled while they live.
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				pg.sample(sctx, admin, e.dbName, false)
			}
		}
	}()

	// Done when every domain has been scanned (its next scan set, so no
	// longer 0) and no scan is still running: cheap queries on indexes, a
	// few a second (the rows they count are included in the database's
	// figures; bench-polls says how many).
	poll := e.connect(ctx, e.url)
	deadline := time.Now().Add(10 * time.Minute)
	created, remaining, running := int64(0), int64(-1), int64(-1)
	for remaining != 0 || running != 0 {
		if time.Now().After(deadline) {
			b.Fatalf("round with %d instance(s): %d scans created, %d domains left, %d running after 10 min", n, created, remaining, running)
		}
		time.Sleep(250 * time.Millisecond)
		r.polls++
		var err error
		switch {
		case created < int64(e.domains): // most of the round: the newest scan's id
			err = poll.QueryRow(ctx, "SELECT coalesce(max(id), 0) - $1 FROM scans", baseID).Scan(&created)
		case remaining != 0: // the last few domains
			err = poll.QueryRow(ctx, "SELECT count(*) FROM domains WHERE next_scan_at = 0").Scan(&remaining)
		default:
			err = poll.QueryRow(ctx, "SELECT count(*) FROM scans WHERE state IN ('queued', 'running')").Scan(&running)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	r.wall = time.Since(start)
	stopLoad()
	if load != nil {
		r.api = <-loaded
	}
	stopSampling()
	<-sampled
	pg.sample(ctx, admin, e.dbName, false)
	for i, w := range workers {
		t, ok := procCPU(w.Pid())
		if !ok {
			b.Fatalf("%s: no CPU time in /proc (it exited?)\n%s", w.Name(), w.Logs())
		}
		r.cpu += t - base[i]
	}
	r.labCPU = selfCPU() - cpu0
	r.pgCPU = pg.total()
	if m1 := machineCPU(); m0.ok && m1.ok {
		r.others = max(m1.busy-m0.busy-r.cpu-r.labCPU-r.pgCPU, 0)
		r.steal = m1.steal - m0.steal
	}
	poll.Close(ctx)
	for _, w := range workers {
		if err := w.Stop(time.Minute); err != nil {
			b.Fatalf("stopping %s: %v\n%s", w.Name(), err, w.Logs())
		}
	}
	if measured {
		e.waitQuiet(ctx, admin)
		r.db = readPGStats(ctx, b, admin, e.dbName).minus(db0)
	}

	// Every domain scanned, and never by two instances at once: the
	// claims with leases. A domain may be scanned twice in a round when
	// its own daily slot (store.NextScan) falls within it, after the
	// catch-up scan; those are counted, and they must not overlap either.
	check := e.connect(ctx, e.url)
	defer check.Close(ctx)
	var total, distinct, done, overlapping int
	var first, last int64
	if err := check.QueryRow(ctx, `SELECT count(*), count(DISTINCT domain_id), count(*) FILTER (WHERE state = 'done'),
		min(created_at), max(finished_at), avg(finished_at - created_at) FROM scans WHERE id > $1`, baseID).
		Scan(&total, &distinct, &done, &first, &last, &r.meanMS); err != nil {
		b.Fatal(err)
	}
	if err := check.QueryRow(ctx, `SELECT count(*) FROM scans a JOIN scans b ON a.domain_id = b.domain_id AND a.id < b.id
		WHERE a.id > $1 AND b.id > $1 AND b.created_at < a.finished_at`, baseID).Scan(&overlapping); err != nil {
		b.Fatal(err)
	}
	if distinct != e.domains || done != total || overlapping != 0 {
		b.Fatalf("round with %d instance(s): %d scans of %d domains (want all %d), %d done, %d pairs of scans of one domain overlapping",
			n, total, distinct, e.domains, done, overlapping)
	}
	r.domains, r.again = total, total-distinct
	r.meanMS /= 1000 // microseconds
	r.span = time.Duration(last-first) * time.Microsecond
	return r
}

func (e *scaleEnv) connect(ctx context.Context, url string) *pgx.Conn {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		e.b.Fatal(err)
	}
	return c
}

// waitQuiet waits until no backend serves the benchmark's database, so
// that each has flushed its statistics (a backend flushes them when it
// exits; an idle one only every few seconds).
func (e *scaleEnv) waitQuiet(ctx context.Context, admin *pgx.Conn) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", e.dbName).Scan(&n); err != nil {
			e.b.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			e.b.Fatalf("%d connections to %s still open after 30 s", n, e.dbName)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A backend leaves pg_stat_activity just before it has flushed.
	time.Sleep(300 * time.Millisecond)
}

// checkAPI makes sure the API answers with every domain before it is
// timed.
func (e *scaleEnv) checkAPI(ctx context.Context, base string) {
	s := apiGet(ctx, base+"/api/v1/domains", e.token)
	if s.err != nil || s.status != 200 || s.body < e.domains*100 {
		e.b.Fatalf("GET /api/v1/domains: %d, %d bytes, %v", s.status, s.body, s.err)
	}
}

// pgDBStats are counters of pg_stat_database for one database, and its
// size.
type pgDBStats struct {
	xactCommit, xactRollback, blksRead, blksHit      int64
	tupReturned, tupFetched, tupInserted, tupUpdated int64
	tupDeleted, size                                 int64
}

func readPGStats(ctx context.Context, b *testing.B, admin *pgx.Conn, db string) (s pgDBStats) {
	err := admin.QueryRow(ctx, `SELECT xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched,
		tup_inserted, tup_updated, tup_deleted, pg_database_size(datname) FROM pg_stat_database WHERE datname = $1`, db).
		Scan(&s.xactCommit, &s.xactRollback, &s.blksRead, &s.blksHit, &s.tupReturned, &s.tupFetched,
			&s.tupInserted, &s.tupUpdated, &s.tupDeleted, &s.size)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func (s pgDBStats) minus(o pgDBStats) pgDBStats {
	return pgDBStats{s.xactCommit - o.xactCommit, s.xactRollback - o.xactRollback, s.blksRead - o.blksRead, s.blksHit - o.blksHit,
		s.tupReturned - o.tupReturned, s.tupFetched - o.tupFetched, s.tupInserted - o.tupInserted, s.tupUpdated - o.tupUpdated,
		s.tupDeleted - o.tupDeleted, s.size - o.size}
}

// pgBackends adds up the CPU time of the backend processes serving one
// database (PostgreSQL runs a process per connection): each backend's
// time since the first sample, or since it started for one that came
// later; a backend that exits keeps its last sample.
type pgBackends struct {
	mu         sync.Mutex
	base, last map[int]time.Duration
}

func (p *pgBackends) sample(ctx context.Context, admin *pgx.Conn, db string, first bool) {
	rows, err := admin.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = $1", db)
	if err != nil {
		return // the round ended mid-query; the last sample stands
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pid := range pids {
		t, ok := procCPU(int(pid))
		if !ok {
			continue
		}
		if _, seen := p.base[int(pid)]; !seen {
			p.base[int(pid)] = 0
			if first {
				p.base[int(pid)] = t
			}
		}
		p.last[int(pid)] = t
	}
}

func (p *pgBackends) total() (t time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid, last := range p.last {
		t += last - p.base[pid]
	}
	return t
}

// procCPU is the user and system time of a process (/proc/PID/stat).
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The fields after the command name, which may hold spaces and ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / 100, true // USER_HZ
}

// apiSample is one API request: its latency from when it was due (so a
// slow server delays the count, not the schedule: an open loop), and
// whether it was the domain list.
type apiSample struct {
	latency time.Duration
	list    bool
	status  int
	body    int
	err     error
}

// apiLoad sends GET /api/v1/domains (the account's list, every domain
// with its last scan) and GET /api/v1/domains/{id} in turn, rate a
// second, until ctx ends, and returns every request's sample.
func apiLoad(ctx context.Context, base, token string, ids []store.DomainID, rate float64) []apiSample {
	every := time.Duration(float64(time.Second) / rate)
	var mu sync.Mutex
	var out []apiSample
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * every)
		select {
		case <-ctx.Done():
			wg.Wait()
			return out
		case <-time.After(time.Until(due)):
		}
		path := "/api/v1/domains"
		if i%2 == 1 {
			path = fmt.Sprintf("/api/v1/domains/%d", ids[(i/2)%len(ids)])
		}
		wg.Go(func() {
			// A request in flight when the load stops still counts.
			s := apiGet(context.WithoutCancel(ctx), base+path, token)
			s.latency = time.Since(due)
			s.list = i%2 == 0
			mu.Lock()
			out = append(out, s)
			mu.Unlock()
		})
	}
}

var apiClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func apiGet(ctx context.Context, url, token string) (s apiSample) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		s.err = err
		return s
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := apiClient.Do(req)
	if err != nil {
		s.err = err
		return s
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	s.status, s.body, s.err = resp.StatusCode, int(n), err
	return s
}

type apiFigures struct{ p50, p95, max float64 }

// apiFailed returns the first request that did not succeed.
func apiFailed(samples []apiSample) error {
	for _, s := range samples {
		if s.err != nil || s.status != http.StatusOK || s.body == 0 {
			return fmt.Errorf("API request (list %v): status %d, %d bytes, %v", s.list, s.status, s.body, s.err)
		}
	}
	return nil
}

// apiPercentiles are the latencies of every request and of the list
// requests alone, in milliseconds.
func apiPercentiles(samples []apiSample) (all, list apiFigures) {
	var a, l []time.Duration
	for _, s := range samples {
		a = append(a, s.latency)
		if s.list {
			l = append(l, s.latency)
		}
	}
	fig := func(d []time.Duration) apiFigures {
		if len(d) == 0 {
			return apiFigures{}
		}
		ms := func(t time.Duration) float64 { return float64(t.Microseconds()) / 1000 }
		slices.Sort(d)
		return apiFigures{ms(percentile(d, 0.5)), ms(percentile(d, 0.95)), ms(d[len(d)-1])}
	}
	return fig(a), fig(l)
}
