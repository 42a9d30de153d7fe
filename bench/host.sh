#!/usr/bin/env bash
# The policy host (mailtls serve) measured in one run:
#  1. requests per second and p99 latency of GET /.well-known/mta-sts.txt
#     over HTTPS with keep-alive, with wrk, side by side against nginx
#     serving the same bytes with the same certificate; rounds alternate
#     (mailtls, nginx, mailtls, nginx, ...) so drift hits both alike. mailtls
#     serves with plain net/http; the target is within 2x of nginx (a
#     policy is fetched about once per max_age per sender and domain, so
#     this is far beyond any real load);
#  2. the memory and startup time of a server hosting 10,000 domains with
#     static policies and their own certificates.
# wrk and both servers share the same 2 cores (nothing is pinned apart).
#   bench/host.sh
#   DURATION=10 ROUNDS=3 WARMUP=2 THREADS=2 CONNS=64 DOMAINS=10000 FETCH=1000 bench/host.sh
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-10} rounds=${ROUNDS:-3} warmup=${WARMUP:-2}
threads=${THREADS:-2} conns=${CONNS:-64} domains=${DOMAINS:-10000} nfetch=${FETCH:-1000}

missing=()
for t in wrk nginx go unshare mount taskset; do
	command -v "$t" >/dev/null || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench/host.sh: missing ${missing[*]}; wrk and nginx are the Debian packages: apt-get install -y wrk nginx" >&2
	exit 1
fi
((nfetch <= domains)) || { echo "bench/host.sh: FETCH ($nfetch) > DOMAINS ($domains)" >&2; exit 1; }

tmp=$(mktemp -d)
# nginx's workers drop to "nobody" when started as root: they must be able
# to reach the policy file (keys stay 0600, read by the master only).
chmod 0711 "$tmp"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Everything runs on the same 2 cores: on a bigger machine, restrict all
# processes (servers and wrk together) to CPUS.
pin=() cores=$(nproc)
if ((cores > 2)); then pin=(taskset -c "${CPUS:-0,1}") cores=2; fi

go build -o "$tmp/mailtls" ./cmd/mailtls
go build -o "$tmp/hostgen" ./bench/hostgen

# waitlog FILE PID REGEX: wait (up to 60 s) for a log line, failing with
# the log if the process dies first.
waitlog() {
	local i
	for ((i = 0; i < 6000; i++)); do
		grep -qE "$3" "$1" 2>/dev/null && return 0
		if ! kill -0 "$2" 2>/dev/null; then
			echo "bench/host.sh: the server exited:" >&2; cat "$1" >&2; exit 1
		fi
		sleep 0.01
	done
	echo "bench/host.sh: timed out waiting for /$3/ in $1" >&2; cat "$1" >&2; exit 1
}
# httpsaddr LOG: the address of mailtls's HTTPS listener.
httpsaddr() { grep -oE 'listener=host-https addr=[0-9.]+:[0-9]+' "$1" | head -1 | sed 's/.*addr=//'; }
now() { echo "${EPOCHREALTIME/,/.}"; }
mib() { awk -v k="$2" '$1 == k":" { printf "%.1f MiB", $2 / 1024 }' "/proc/$1/status"; }

# ---- 1. throughput against nginx ----
b=$tmp/rps
"$tmp/hostgen" gen -dir "$b" -domains 1 -nginx
host=mta-sts.bench.test
nport=$(cat "$b/nginx.port")

"${pin[@]}" "$tmp/mailtls" serve --config "$b/mailtls.yaml" 2>"$b/mailtls.log" &
mpid=$!
pids+=("$mpid")
nginx -t -q -p "$b" -e "$b/nginx-error.log" -c "$b/nginx.conf" 2>"$b/nginx-test.log" ||
	{ echo "bench/host.sh: nginx rejects the generated configuration:" >&2; cat "$b/nginx-test.log" "$b/nginx-error.log" >&2; exit 1; }
"${pin[@]}" nginx -p "$b" -e "$b/nginx-error.log" -c "$b/nginx.conf" 2>>"$b/nginx-error.log" &
npid=$!
pids+=("$npid")
waitlog "$b/mailtls.log" "$mpid" 'mailtls serve started'
maddr=$(httpsaddr "$b/mailtls.log")
mport=${maddr##*:}
"$tmp/hostgen" fetch -dir "$b" -addr "$maddr" -wait 10s -show mailtls >"$b/show"
"$tmp/hostgen" fetch -dir "$b" -addr "127.0.0.1:$nport" -wait 10s -show nginx >>"$b/show" ||
	{ echo "bench/host.sh: nginx does not serve the policy:" >&2; cat "$b/nginx-error.log" >&2; exit 1; }

# wrk takes the TLS server name (SNI) and Host from the URL and resolves
# it with getaddrinfo: the name resolves to 127.0.0.1 through a copy of
# /etc/hosts bind-mounted in a private mount namespace, never the real file.
{ cat /etc/hosts; echo "127.0.0.1 $host"; } >"$tmp/hosts"
ns=(unshare -m)
((EUID == 0)) || ns=(unshare -r -m)
inns() { "${ns[@]}" sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$tmp/hosts" "$@"; }
if [ "$(inns getent hosts "$host" 2>/dev/null | awk '{print $1; exit}')" != 127.0.0.1 ]; then
	echo "bench/host.sh: cannot make $host resolve to 127.0.0.1 for wrk: needs root or user namespaces (unshare -r -m)" >&2
	exit 1
fi

# wrk's report: requests/s, p99 in microseconds, and every error count.
cat >"$tmp/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
# runwrk PORT SECONDS: prints "rps p99_us errors".
runwrk() {
	inns "${pin[@]}" wrk -t"$threads" -c"$conns" -d"$2"s --latency -s "$tmp/report.lua" \
		"https://$host:$1/.well-known/mta-sts.txt" >"$tmp/wrk.out" 2>&1 ||
		{ echo "bench/host.sh: wrk failed:" >&2; cat "$tmp/wrk.out" >&2; exit 1; }
	grep '^RESULT' "$tmp/wrk.out" | cut -d' ' -f2-
}

echo "policy host, GET /.well-known/mta-sts.txt over HTTPS with keep-alive (HTTP/1.1):"
cat "$b/show"
if command -v openssl >/dev/null; then
	for s in "mailtls $mport" "nginx $nport"; do
		read -r name port <<<"$s"
		tlsinfo=$(openssl s_client -connect "127.0.0.1:$port" -servername "$host" -brief </dev/null 2>&1 |
			awk -F': ' '/^Protocol version/ { v = $2 } /^Ciphersuite/ { c = $2 } END { print v, c }')
		printf '  %-8s %s with OpenSSL (wrk'"'"'s library)\n' "$name:" "$tlsinfo"
	done
fi
echo "  wrk -t$threads -c$conns, ${rounds} rounds of ${duration}s each alternating (after ${warmup}s of warm-up each);"
echo "  wrk and the server share the same $cores cores; nginx: 2 workers, mailtls: GOMAXPROCS=$cores"
if ((warmup > 0)); then
	runwrk "$mport" "$warmup" >/dev/null
	runwrk "$nport" "$warmup" >/dev/null
fi
mr=() mp=() nr=() np=() errs=0
for ((i = 1; i <= rounds; i++)); do
	out=$(runwrk "$mport" "$duration")
	read -r r p e <<<"$out"
	mr+=("$r") mp+=("$p")
	errs=$((errs + e))
	out=$(runwrk "$nport" "$duration")
	read -r r2 p2 e2 <<<"$out"
	nr+=("$r2") np+=("$p2")
	errs=$((errs + e2))
	printf '  round %d   mailtls %8.0f req/s  p99 %6.2f ms   |   nginx %8.0f req/s  p99 %6.2f ms%s\n' \
		"$i" "$r" "$(awk -v v="$p" 'BEGIN { print v / 1000 }')" "$r2" "$(awk -v v="$p2" 'BEGIN { print v / 1000 }')" \
		"$( ((e + e2 == 0)) || echo "   ERRORS: mailtls $e, nginx $e2")"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m_r=$(median "${mr[@]}") m_p=$(median "${mp[@]}") n_r=$(median "${nr[@]}") n_p=$(median "${np[@]}")
awk -v mr="$m_r" -v mp="$m_p" -v nr="$n_r" -v np="$n_p" 'BEGIN {
  printf "  median    mailtls %8.0f req/s  p99 %6.2f ms   |   nginx %8.0f req/s  p99 %6.2f ms\n", mr, mp / 1000, nr, np / 1000
  printf "  requests per second, mailtls / nginx: %.2fx   (target >= 0.5x: within 2x of nginx with plain net/http)\n", mr / nr
  printf "  p99 latency: mailtls %.2f ms, nginx %.2f ms (%.2fx)\n", mp / 1000, np / 1000, mp / np
}'
((errs == 0)) || echo "  wrk counted $errs errors (non-2xx or socket errors): the figures above are suspect"
kill "$mpid" "$npid"
wait "$mpid" "$npid" 2>/dev/null || true

# ---- 2. memory and startup with many domains ----
echo
echo "policy host with $domains domains, static policies, one certificate and key file each:"
m=$tmp/mem
t0=$(now)
"$tmp/hostgen" gen -dir "$m" -domains "$domains"
t1=$(now)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "  generating the certificates and configuration: %.1f s\n", b - a }'
t0=$(now)
"${pin[@]}" "$tmp/mailtls" serve --config "$m/mailtls.yaml" 2>"$m/mailtls.log" &
spid=$!
pids+=("$spid")
waitlog "$m/mailtls.log" "$spid" 'mailtls serve started'
t1=$(now)
"$tmp/hostgen" fetch -dir "$m" -addr "$(httpsaddr "$m/mailtls.log")" -wait 30s >/dev/null
t2=$(now)
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "  start to \"serve started\": %.2f s; to the first policy fetched: %.2f s\n", b - a, c - a }'
admin=$(grep -oE 'listener=admin addr=[0-9.]+:[0-9]+' "$m/mailtls.log" | sed 's/.*addr=//')
echo "  serving: VmRSS $(mib "$spid" VmRSS), VmHWM $(mib "$spid" VmHWM); $("$tmp/hostgen" heap -admin "$admin")"
fetched=$("$tmp/hostgen" fetch -dir "$m" -addr "$(httpsaddr "$m/mailtls.log")" -n "$nfetch")
echo "  after fetching $nfetch domains' policies once each (a new TLS connection each; ${fetched#fetched * in }):"
echo "           VmRSS $(mib "$spid" VmRSS), VmHWM $(mib "$spid" VmHWM); $("$tmp/hostgen" heap -admin "$admin")"
((errs == 0))
