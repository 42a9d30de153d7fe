#!/usr/bin/env bash
# Prints the performance figures of mailtls, measured side by side in one
# run (machines are noisy; compare the ratios, not the absolute times).
#   bench/run.sh            all benchmarks
#   bench/run.sh Scan       only those matching a pattern
#   bench/run.sh Host       only the policy host against nginx (bench/host.sh)
#   bench/run.sh Reports    only the TLS-RPT reports (BENCH_REPORTS=N: ingest N
#                           reports per channel instead of 100,000)
set -euo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-.}
# A benchmark that fails prints its output and stops the script.
out=$(go test -run '^$' -bench "$pattern" -skip '^Benchmark(Store|Monitor|DashboardPage|ReportsIngest|Bulk|Scale)$' -benchtime "${BENCHTIME:-20x}" -count 1 ./bench/ 2>&1) || { echo "$out"; exit 1; }
# BenchmarkStore, BenchmarkMonitor and BenchmarkDashboardPage (bursts of
# 10,000 scans), BenchmarkReportsIngest (100,000 reports per channel) and
# BenchmarkBulk (mailtls check -f over lists of 2,500 to 20,000 domains and
# the naive baseline, 3 to 6 minutes on two cores) and BenchmarkScale
# (rescans by 1, 2 and 3 worker instances on one PostgreSQL and the API
# beside them, about 4 minutes; MAILTLS_TEST_POSTGRES) do a fixed amount of
# work, once.
for fixed in Store Monitor DashboardPage ReportsIngest Bulk Scale; do
  if echo "Benchmark$fixed" | grep -qE "$pattern"; then
    more=$(go test -run '^$' -bench "^Benchmark$fixed\$" -benchtime 1x -count 1 -timeout 60m ./bench/ 2>&1) || { echo "$more"; exit 1; }
    out="$out
$more"
  fi
done
echo "$out" | grep -E '^(Benchmark|goos|goarch|cpu)' || true
echo
echo "$out" | awk -v pool="${WEB_POOL:-4}" -v bdom="${BULK_DOMAINS:-10000}" -v bpar="${BULK_PARALLEL:-200}" '
/^BenchmarkScan\/concurrent/ { for (i=1;i<=NF;i++) { if ($(i+1)=="x-critical-path") c=$i; if ($(i+1)=="allocs/op") a=$i; if ($(i+1)=="B/op") m=$i } }
/^BenchmarkScan\/serial/     { for (i=1;i<=NF;i++) if ($(i+1)=="x-critical-path") s=$i }
/^BenchmarkSMTPScan\/concurrent/ { for (i=1;i<=NF;i++) { if ($(i+1)=="x-critical-path") sc=$i; if ($(i+1)=="allocs/op") sa=$i } }
/^BenchmarkSMTPScan\/serial/     { for (i=1;i<=NF;i++) if ($(i+1)=="x-critical-path") ss=$i }
/^BenchmarkResolverCold/   { for (i=1;i<=NF;i++) if ($(i+1)=="x-critical-path") rc=$i }
/^BenchmarkResolverMemory/ { for (i=1;i<=NF;i++) { if ($(i+1)=="MiB-rss") rm=$i; if ($(i+1)=="B/domain") rb=$i } }
/^BenchmarkStore\/sqlite/ { for (i=1;i<=NF;i++) { if ($(i+1)=="scans/s") st=$i; if ($(i+1)=="finish-p95-ms") fp=$i; if ($(i+1)=="db-bytes/scan") db=$i; if ($(i+1)=="summary-bytes/scan") sm=$i; if ($(i+1)=="json-bytes/scan") js=$i; if ($(i+1)=="dashboard-p50-ms") d50=$i; if ($(i+1)=="dashboard-p95-ms") d95=$i } }
/^BenchmarkStore\/postgres/ { for (i=1;i<=NF;i++) { if ($(i+1)=="scans/s") pst=$i; if ($(i+1)=="finish-p95-ms") pfp=$i; if ($(i+1)=="db-bytes/scan") pdb=$i; if ($(i+1)=="dashboard-p50-ms") pd50=$i; if ($(i+1)=="dashboard-p95-ms") pd95=$i } }
/^BenchmarkReportsYear\/summary\/sql-14d/     { for (i=1;i<=NF;i++) { if ($(i+1)=="ms/query") y14=$i; if ($(i+1)=="cpu-ms/query") y14c=$i }; next }
/^BenchmarkReportsYear\/summary\/sql/         { for (i=1;i<=NF;i++) { if ($(i+1)=="ms/query") ys=$i; if ($(i+1)=="cpu-ms/query") ysc=$i; if ($(i+1)=="reports") yn=$i } }
/^BenchmarkReportsYear\/summary\/day-rows/    { for (i=1;i<=NF;i++) { if ($(i+1)=="ms/query") yd=$i; if ($(i+1)=="cpu-ms/query") ydc=$i } }
/^BenchmarkReportsYear\/summary\/raw-reports/ { for (i=1;i<=NF;i++) { if ($(i+1)=="ms/query") yr=$i; if ($(i+1)=="cpu-ms/query") yrc=$i } }
/^BenchmarkReportsYear\/readiness/             { for (i=1;i<=NF;i++) { if ($(i+1)=="ms/query") yv=$i; if ($(i+1)=="cpu-ms/query") yvc=$i } }
/^BenchmarkReportsIngest\/file-import/ { for (i=1;i<=NF;i++) { if ($(i+1)=="reports/s") if_=$i; if ($(i+1)=="db-bytes/report") idb=$i; if ($(i+1)=="gzip-bytes/report") igz=$i; if ($(i+1)=="reports") in_=$i } }
/^BenchmarkReportsIngest\/https-post/  { for (i=1;i<=NF;i++) if ($(i+1)=="reports/s") ih=$i }
/^BenchmarkAnonAdmit/ { for (i=1;i<=NF;i++) { if ($(i+1)=="plain-p50-ms") ap=$i; if ($(i+1)=="limited-p50-ms") al=$i } }
/^BenchmarkLiveProgress/ { for (i=1;i<=NF;i++) { if ($(i+1)=="notify-p50-ms") lp50=$i; if ($(i+1)=="notify-p95-ms") lp95=$i; if ($(i+1)=="local-p50-ms") ll50=$i } }
/^BenchmarkSchedule/ { for (i=1;i<=NF;i++) { if ($(i+1)=="x-busiest-10min") sb=$i; if ($(i+1)=="x-quietest-10min") sq=$i } }
/spread-hours/ { sub(/.*spread-hours /, ""); nh=split($0, hrs, " ") }
/^BenchmarkMonitor/ { for (i=1;i<=NF;i++) { if ($(i+1)=="scans/s") mr=$i; if ($(i+1)=="alerts") ma=$i; if ($(i+1)=="db-bytes/scan") mdb=$i; if ($(i+1)=="json-bytes/scan") mjs=$i } }
/^BenchmarkDashboardPage/ { for (i=1;i<=NF;i++) { if ($(i+1)=="p50-ms") dp50=$i; if ($(i+1)=="p95-ms") dp95=$i; if ($(i+1)=="html-bytes") dph=$i; if ($(i+1)=="cpu-ms/render") dpc=$i } }
/^BenchmarkBulkSeenSet/ { for (i=1;i<=NF;i++) if ($(i+1)=="B/domain") bss=$i; next }
/^BenchmarkBulk/ { for (i=1;i<=NF;i++) { if ($(i+1)=="domains/s") br=$i; if ($(i+1)=="x-bound") bb=$i; if ($(i+1)=="ms-p50-scan") bp=$i; if ($(i+1)=="MiB-peak-RSS") bm=$i; if ($(i+1)=="s-peak-RSS-at") bpa=$i; if ($(i+1)=="peak-RSS-at-done") bpd=$i; if ($(i+1)=="s-wall") bw=$i; if ($(i+1)=="naive-seq-domains/s") ns=$i; if ($(i+1)=="x-naive-seq") nsx=$i; if ($(i+1)=="naive-par-domains/s") np=$i; if ($(i+1)=="x-naive-par") npx=$i; if ($(i+1)=="B/record") brec=$i; if ($(i+1)=="x-cpu-bound") bcb=$i; if ($(i+1)=="mailtls-cpu-ms/domain") bcm=$i; if ($(i+1)=="lab-cpu-ms/domain") bcl=$i; if ($(i+1)=="cores") bco=$i; if ($(i+1)=="others-cores") boc=$i; if ($(i+1)=="steal-cores") bst=$i; if ($(i+1)=="undetermined") bu=$i; if ($(i+1)=="naive-undetermined") nu=$i; if ($(i+1)=="small-domains") bsn=$i; if ($(i+1)=="MiB-peak-RSS-small") bsm=$i; if ($(i+1)=="large-domains") bln=$i; if ($(i+1)=="MiB-peak-RSS-large") blm=$i; if ($(i+1)=="low-parallel") lp=$i; if ($(i+1)=="low-domains/s") lr=$i; if ($(i+1)=="low-x-bound") lb=$i; if ($(i+1)=="low-ms-p50-scan") lq=$i; if ($(i+1)=="low-x-cpu-bound") lc=$i } }
/^BenchmarkScale/ { for (i=2;i<NF;i++) if ($i ~ /^[0-9.e+-]+$/) scl[$(i+1)]=$i }
/^BenchmarkWeb/ { for (i=1;i<=NF;i++) { if ($(i+1)=="scans/s") wr=$i; if ($(i+1)=="x-bound") wb=$i; if ($(i+1)=="ms-p95-event") we=$i; if ($(i+1)=="ms-p95-page-ttfb") wp=$i; if ($(i+1)=="ms-p50-scan") ws=$i; if ($(i+1)=="ms-cpu-per-scan") wc=$i; if ($(i+1)=="goroutines-before") g0=$i; if ($(i+1)=="goroutines-after") g1=$i; if ($(i+1)=="goroutines-expired") g2=$i; if ($(i+1)=="MiB-heap-before") h0=$i; if ($(i+1)=="MiB-heap-held") h1=$i; if ($(i+1)=="MiB-heap-expired") h2=$i } }
END {
  if (c != "") {
    printf "scan wall time / critical path (50 ms per DNS answer and TCP connection):\n"
    printf "  concurrent scan: %.2fx   (target <= 1.3x)\n", c
    if (s != "") printf "  naive serial scan: %.2fx   (concurrent is %.1fx faster)\n", s, s/c
    printf "  allocations per scan: %s (%s bytes)\n", a, m
  }
  if (st != "") {
    printf "store (SQLite), a rescan burst of 10,000 scans of 1,000 saved domains with real reports:\n"
    printf "  write rate: %s scans/s (FinishScan p95 %s ms)\n", st, fp
    printf "  database size: %s bytes per stored scan (report JSON %s bytes, gzip + findings + indexes)\n", db, js
    printf "  after retention: %s bytes per scan kept as a summary (grade, counts, findings; report and events removed)\n", sm
    printf "  dashboard of an account with 1,000 domains: p50 %s ms, p95 %s ms   (target p95 < 100 ms)\n", d50, d95
  }
  if (pst != "") {
    printf "store (PostgreSQL, the same burst; MAILTLS_TEST_POSTGRES):\n"
    printf "  write rate: %s scans/s (FinishScan p95 %s ms)", pst, pfp
    if (st != "") printf ", %.2fx SQLite", pst/st
    printf "\n  database size: %s bytes per stored scan\n", pdb
    printf "  dashboard: p50 %s ms, p95 %s ms\n", pd50, pd95
  }
  if (lp50 != "") {
    printf "live scan progress across instances (PostgreSQL NOTIFY; MAILTLS_TEST_POSTGRES), one event from the scan to a watcher:\n"
    printf "  on another instance: p50 %s ms, p95 %s ms; on the scanning instance p50 %s ms", lp50, lp95, ll50
    if (ll50 > 0) printf " (%.0fx)", lp50/ll50
    printf "\n"
  }
  if (ap != "") {
    printf "filing a new anonymous scan on PostgreSQL (MAILTLS_TEST_POSTGRES), p50:\n"
    printf "  without limits %s ms, with the per-client limits shared by instances %s ms", ap, al
    if (ap > 0) printf " (%.2fx)", al/ap
    printf "\n"
  }
  if (sb != "") {
    printf "monitoring: daily rescans of 10,000 saved domains spread over the day (store.NextScan):\n"
    printf "  busiest 10-minute window %.2fx its share, quietest %.2fx   (target <= 2x)\n", sb, sq
    if (nh == 24) {
      tot = 0; for (h=1;h<=24;h++) tot += hrs[h]
      for (h=1;h<=24;h++) { bar = ""; for (k=0; k < int(hrs[h]/(tot/24)*30+0.5); k++) bar = bar "#"; printf "  %02d:00 %5d %s\n", h-1, hrs[h], bar }
    }
  }
  if (mr != "") {
    printf "monitor worker, 10,000 saved domains all due at once (history rules, alerts, outbox; the scan is a stored real report):\n"
    printf "  %s scans/s stored, %s alerts queued for the 5%% that regressed\n", mr, ma
    printf "  database growth: %s bytes per scan (report JSON %s bytes)\n", mdb, mjs
  }
  if (dp95 != "") printf "dashboard page (GET /domains, whole HTML) of an account with 1,000 domains: p50 %s ms, p95 %s ms, %s ms of CPU each, %s bytes   (target p95 < 100 ms)\n", dp50, dp95, dpc, dph
  if (sc != "") {
    printf "scan with SMTP probes of 2 MX hosts x 2 addresses / critical path (50 ms per round trip):\n"
    printf "  concurrent probes: %.2fx   (target <= 1.3x)\n", sc
    if (ss != "") printf "  probes one at a time: %.2fx\n", ss
    printf "  allocations per scan: %s\n", sa
  }
  if (ys != "") {
    printf "TLS-RPT, a domain with a year of daily reports from 20 organisations (%s reports, SQLite):\n", yn
    printf "  readiness (14-day window): %s ms (%s ms CPU)   (target < 50 ms)\n", yv, yvc
    printf "  summary of the year, the day rows summed in SQL: %s ms (%s ms CPU)   (target < 50 ms)\n", ys, ysc
    if (y14 != "") printf "  summary of the last 14 days: %s ms (%s ms CPU)\n", y14, y14c
    if (yd != "") printf "  the same from the day rows merged in Go: %s ms (%s ms CPU); SQL is %.1fx faster\n", yd, ydc, yd/ys
    if (yr != "") printf "  the same from the stored reports read back: %s ms (%s ms CPU); SQL is %.1fx faster\n", yr, yrc, yr/ys
  }
  if (if_ != "") {
    printf "TLS-RPT ingest of %s synthetic reports (2 failure details, %s bytes compressed) per channel:\n", in_, igz
    printf "  file import: %.0f reports/s; HTTPS POST: %.0f reports/s; store: %.0f bytes per report\n", if_, ih, idb
  }
  if (rc != "") printf "resolver cold lookup / critical path (TXT, policy host address, connection; 50 ms each): %.2fx\n", rc
  if (rm != "") printf "resolver memory with a million cached policies: %s MiB RSS, %s bytes per domain (target < 512 MiB)\n", rm, rb
  if (br != "") {
    printf "mailtls check -f: %s lab domains sharing 5 MX hosts, 50 ms per DNS answer and TCP accept, --parallel %s:\n", bdom, bpar
    printf "  %.0f domains/s = %.3fx the bound of --parallel / critical path (%s / 100 ms = %.0f/s; target >= 0.8x); a scan takes %d ms (p50)\n", br, bb, bpar, bpar*10, bp
    printf "  CPU per domain: mailtls %.2f ms + lab servers %.2f ms; %d cores allow %.0f domains/s at that cost (mailtls alone: %.0f/s); the rate is %.2fx that\n", bcm, bcl, bco, bco*1000/(bcm+bcl), bco*1000/bcm, bcb
    printf "  meanwhile other processes used %.2f cores and other virtual machines %.2f (steal)\n", boc, bst
    if (lr != "") printf "  --parallel %d (a bound of %.0f/s, below what the cores allow): %.1f domains/s = %.2fx the bound (%.2fx the CPU bound); a scan takes %d ms (p50)\n", lp, lp*10, lr, lb, lc, lq
    printf "  peak RSS %.0f MiB (target < 200 MiB), reached %.0f s into the %.0f s run (%.0f%% of the records written)", bm, bpa, bw, 100*bpd
    if (bsm != "") printf "; %d domains: %.0f MiB", bsn, bsm
    if (blm != "") printf "; %d domains: %.0f MiB", bln, blm
    printf "\n  %.0f bytes per JSON record\n", brec
    if (bss != "") printf "  what grows with the list, the set of domains seen: %.0f bytes per domain (a million names)\n", bss
    if (bu > 0) printf "  %d domains ended with an undetermined policy (a lookup or fetch out of time: the machine was overloaded)\n", bu
    if (ns != "") printf "  naive, one mailtls check process per domain in a loop (sample): %.1f domains/s; bulk is %.0fx faster\n", ns, nsx
    if (np != "") printf "  naive, %s mailtls check processes at a time (sample): %.1f domains/s; bulk is %.1fx faster\n", bpar, np, npx
    if (nu > 0) printf "  %d naive scans ended with an undetermined policy\n", nu
  }
  if (scl["domains"] != "") {
    printf "saved domains rescanned by mailtls serve --roles worker processes on one PostgreSQL (MAILTLS_TEST_POSTGRES):\n"
    printf "  %d lab domains, %d ms per DNS answer and TCP accept, at most %d rescans at once per instance (the default); %d cores\n", scl["domains"], scl["ms-latency"], scl["scans-per-instance"], scl["machine-cores"]
    r1 = scl["domains/h-1"]
    for (n=1; ("domains/h-" n) in scl; n++) {
      k = "-" n; r = scl["domains/h" k]
      printf "  %d instance(s): %.0f domains/h = %.2fx one instance (%.0f%% of linear); a rescan takes %.0f ms (mean), the slots are %.0f%% busy\n", n, r, r/r1, 100*r/(n*r1), scl["ms-rescan" k], 100*scl["x-bound" k]
      cpu = scl["cpu-ms/rescan" k]; lab = scl["lab-cpu-ms/rescan" k]; pg = scl["pg-cpu-ms/rescan" k]
      printf "    CPU per rescan: %.1f ms (the instances) + %.1f ms (PostgreSQL backends) + %.1f ms (the lab servers); used %.2f cores, other processes %.2f, steal %.2f\n", cpu, pg, lab, scl["cores" k], scl["others-cores" k], scl["steal-cores" k]
      if (cpu+pg > 0) printf "    %d cores to themselves would allow %.0f rescans/h (%.1f instances at this rate; PostgreSQL alone %.0f/h)", scl["machine-cores"], 3600000*scl["machine-cores"]/(cpu+pg), 3600000*scl["machine-cores"]/(cpu+pg)/(r/n), 3600000*scl["machine-cores"]/pg
      printf "\n    database per rescan: %.1f transactions, %.0f tuples returned, %.0f fetched, %.1f inserted, %.1f updated, %.2f deleted; %.0f blocks hit, %.2f read; %.0f bytes of growth\n", scl["xact/rescan" k], scl["tup-returned/rescan" k], scl["tup-fetched/rescan" k], scl["tup-inserted/rescan" k], scl["tup-updated/rescan" k], scl["tup-deleted/rescan" k], scl["blks-hit/rescan" k], scl["blks-read/rescan" k], scl["db-bytes/rescan" k]
    }
    printf "  API through a web instance at %d requests/s (GET /api/v1/domains of all %d domains, and GET /api/v1/domains/{id}, in turn):\n", scl["api-req/s"], scl["domains"]
    printf "    workers idle: p50 %.1f ms, p95 %.1f ms (the list alone p95 %.1f ms), max %.1f ms, %d requests; %.1f ms of CPU in the web process a request, PostgreSQL %.3f cores\n", scl["api-p50-ms-idle"], scl["api-p95-ms-idle"], scl["api-list-p95-ms-idle"], scl["api-max-ms-idle"], scl["api-requests-idle"], scl["web-cpu-ms/request-idle"], scl["pg-cores-idle"]
    printf "    %d instances rescanning (%.0f domains/h, %.2f cores): p50 %.1f ms, p95 %.1f ms (the list alone p95 %.1f ms), max %.1f ms, %d requests", n-1, scl["domains/h-busy"], scl["cores-busy"], scl["api-p50-ms-busy"], scl["api-p95-ms-busy"], scl["api-list-p95-ms-busy"], scl["api-max-ms-busy"], scl["api-requests-busy"]
    if (scl["api-p95-ms-idle"] > 0) printf "; p95 %.2fx idle", scl["api-p95-ms-busy"]/scl["api-p95-ms-idle"]
    printf "\n      %.1f ms of CPU in the web process a request; PostgreSQL %.3f cores (rescans and API)\n", scl["web-cpu-ms/request-busy"], scl["pg-cores-busy"]
  }
  if (wr != "") {
    printf "web checker: 100 clients start a scan through the API at once, follow its events, open the result (50 ms per DNS answer and TCP connection):\n"
    printf "  %.1f scans/s = %.2fx the bound of the pool / critical path (%s scans at once / 150 ms; target >= 0.8x); a scan takes %.0f ms (p50)\n", wr, wb, pool, ws
    printf "  progress events reach the client %.1f ms after the stage ends (p95); result page first byte %.1f ms (p95)\n", we, wp
    printf "  %.1f ms of CPU per scan (scanner, web and the lab servers in one process)\n", wc
    printf "  goroutines %d before, %d after, %d after expiry; heap %.1f MiB before, %.1f MiB with the results held, %.1f MiB after they expire\n", g0, g1, g2, h0, h1, h2
  }
}'
# The resolver against Debian's mta-sts-daemon (bench/resolver.sh, about 70 s).
if echo Resolver | grep -qE "$pattern"; then
  echo
  bench/resolver.sh
fi
# The policy host against nginx with wrk (bench/host.sh, about 75 s).
if echo Host | grep -qE "$pattern"; then
  echo
  if command -v wrk >/dev/null && command -v nginx >/dev/null; then
    bench/host.sh
  else
    echo "policy host vs nginx: skipped (needs wrk and nginx: apt-get install -y wrk nginx)"
  fi
fi
