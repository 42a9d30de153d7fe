#!/usr/bin/env bash
# The resolver role against Debian's postfix-mta-sts-resolver (mta-sts-daemon):
# warm lookups per second and latency, the same client (bench/smbench load:
# CONNS connections, DEPTH requests in flight on each) against both, in
# alternating rounds, over the same lab domains (DNS on 127.0.56.1:53, the
# policy host on 127.0.56.2:443; the peer reads them through a private mount
# namespace). Needs root, unshare and the Debian package.
#   ROUNDS=3 DURATION=10s CONNS=64 DEPTH=4 DOMAINS=100 bench/resolver.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10s} CONNS=${CONNS:-64} DEPTH=${DEPTH:-4} DOMAINS=${DOMAINS:-100}
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null || [ ! -x /usr/bin/mta-sts-daemon ]; then
	echo "resolver vs mta-sts-daemon: skipped (needs root, unshare and apt-get install postfix-mta-sts-resolver python3-uvloop)"
	exit 0
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap "cat \"$tmp/peer.log\" \"$tmp/mailtls.log\"; cleanup" EXIT
CGO_ENABLED=0 go build -o "$tmp/mailtls" ./cmd/mailtls
CGO_ENABLED=0 go build -o "$tmp/smbench" ./bench/smbench

"$tmp/smbench" lab -dir "$tmp" -domains "$DOMAINS" >"$tmp/lab.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q ready "$tmp/lab.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$tmp/lab.out" || { cat "$tmp/lab.out"; exit 1; }

# The peer, given its best shot: uvloop, the in-memory cache, cache_grace
# longer than the run (so no re-check happens during it).
printf 'nameserver 127.0.56.1\noptions attempts:1 timeout:2\n' >"$tmp/resolv.conf"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$tmp/nsswitch.conf"
cat >"$tmp/peer.yml" <<YML
host: 127.0.56.3
port: 8461
reuse_port: true
shutdown_timeout: 1
cache_grace: 86400
cache: {type: internal, options: {cache_size: 10000}}
default_zone: {strict_testing: false, timeout: 4, require_sni: true}
YML
SSL_CERT_FILE="$tmp/ca.pem" SSL_CERT_DIR=/nonexistent unshare -m --propagation private sh -c \
	'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/nsswitch.conf && exec /usr/bin/mta-sts-daemon -c "$3" -v warn' \
	peer "$tmp/resolv.conf" "$tmp/nsswitch.conf" "$tmp/peer.yml" >"$tmp/peer.log" 2>&1 &
pids+=($!)

cat >"$tmp/mailtls.yml" <<YML
log: {level: warn}
admin: {listen: "off"}
resolver:
  listen: ["127.0.56.4:8461"]
  cache_file: none
  resolvers: ["127.0.56.1:53"]
YML
SSL_CERT_FILE="$tmp/ca.pem" SSL_CERT_DIR=/nonexistent "$tmp/mailtls" serve --config "$tmp/mailtls.yml" >"$tmp/mailtls.log" 2>&1 &
pids+=($!)
for addr in 127.0.56.3:8461 127.0.56.4:8461; do
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && break; sleep 0.1; done
done
# Warm both caches: every domain once.
"$tmp/smbench" load -addr 127.0.56.3:8461 -keys "$tmp/domains.txt" -once
"$tmp/smbench" load -addr 127.0.56.4:8461 -keys "$tmp/domains.txt" -once

echo "warm lookups, $CONNS connections x $DEPTH in flight, $DOMAINS domains, $DURATION rounds (requests/s, p50 and p99 in microseconds)"
peer=() ours=()
for r in $(seq "$ROUNDS"); do
	p=$("$tmp/smbench" load -addr 127.0.56.3:8461 -keys "$tmp/domains.txt" -c "$CONNS" -p "$DEPTH" -d "$DURATION")
	m=$("$tmp/smbench" load -addr 127.0.56.4:8461 -keys "$tmp/domains.txt" -c "$CONNS" -p "$DEPTH" -d "$DURATION")
	echo "  round $r: mta-sts-daemon $p | mailtls $m"
	peer+=("$p") ours+=("$m")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { local i=$1; shift; for x in "$@"; do echo "$x" | awk -v i="$i" '{print $i}'; done; }
prps=$(median $(col 1 "${peer[@]}")) mrps=$(median $(col 1 "${ours[@]}"))
pp99=$(median $(col 3 "${peer[@]}")) mp99=$(median $(col 3 "${ours[@]}"))
pp50=$(median $(col 2 "${peer[@]}")) mp50=$(median $(col 2 "${ours[@]}"))
echo "  median: mta-sts-daemon $prps/s p50 ${pp50}us p99 ${pp99}us | mailtls $mrps/s p50 ${mp50}us p99 ${mp99}us"
awk -v m="$mrps" -v p="$prps" -v l="$mp99" 'BEGIN { printf "  mailtls / mta-sts-daemon: %.1fx the lookups per second (target >= 5x); mailtls p99 %.2f ms (target < 1 ms)\n", m/p, l/1000 }'
