#!/usr/bin/env bash
# Prints the performance figures of mailtls, measured side by side in one
# run (machines are noisy; compare the ratios, not the absolute times).
#   bench/run.sh            all benchmarks
#   bench/run.sh Scan       only those matching a pattern
#   bench/run.sh Host       only the policy host against nginx (bench/host.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-.}
out=$(go test -run '^$' -bench "$pattern" -benchtime "${BENCHTIME:-20x}" -count 1 ./bench/)
echo "$out" | grep -E '^(Benchmark|goos|goarch|cpu)' || true
echo
echo "$out" | awk '
/^BenchmarkScan\/concurrent/ { for (i=1;i<=NF;i++) { if ($(i+1)=="x-critical-path") c=$i; if ($(i+1)=="allocs/op") a=$i; if ($(i+1)=="B/op") m=$i } }
/^BenchmarkScan\/serial/     { for (i=1;i<=NF;i++) if ($(i+1)=="x-critical-path") s=$i }
/^BenchmarkSMTPScan\/concurrent/ { for (i=1;i<=NF;i++) { if ($(i+1)=="x-critical-path") sc=$i; if ($(i+1)=="allocs/op") sa=$i } }
/^BenchmarkSMTPScan\/serial/     { for (i=1;i<=NF;i++) if ($(i+1)=="x-critical-path") ss=$i }
/^BenchmarkResolverCold/   { for (i=1;i<=NF;i++) if ($(i+1)=="x-critical-path") rc=$i }
/^BenchmarkResolverMemory/ { for (i=1;i<=NF;i++) { if ($(i+1)=="MiB-rss") rm=$i; if ($(i+1)=="B/domain") rb=$i } }
END {
  if (c != "") {
    printf "scan wall time / critical path (50 ms per DNS answer and TCP connection):\n"
    printf "  concurrent scan: %.2fx   (target <= 1.3x)\n", c
    if (s != "") printf "  naive serial scan: %.2fx   (concurrent is %.1fx faster)\n", s, s/c
    printf "  allocations per scan: %s (%s bytes)\n", a, m
  }
  if (sc != "") {
    printf "scan with SMTP probes of 2 MX hosts x 2 addresses / critical path (50 ms per round trip):\n"
    printf "  concurrent probes: %.2fx   (target <= 1.3x)\n", sc
    if (ss != "") printf "  probes one at a time: %.2fx\n", ss
    printf "  allocations per scan: %s\n", sa
  }
  if (rc != "") printf "resolver cold lookup / critical path (TXT, policy host address, connection; 50 ms each): %.2fx\n", rc
  if (rm != "") printf "resolver memory with a million cached policies: %s MiB RSS, %s bytes per domain (target < 512 MiB)\n", rm, rb
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
