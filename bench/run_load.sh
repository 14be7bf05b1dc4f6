#!/usr/bin/env bash
# Load test of enrolld on this machine: sets up a CA, the store and enrolld
# ("workers": 2, HTTPS and an "mqtt" listener) in a scratch directory on
# disk, runs bench_load in keep-alive mode, over DPS MQTT (one connection per
# device, as DPS's CONNECT authenticates one registration id; each thread's
# connections resume its TLS 1.2 session, so TLS public-key work is amortised
# as with keep-alive) and with a new mTLS connection per registration, prints
# the figures beside the machine's limits, stops enrolld and checks
# durability (PRAGMA integrity_check; at least as many certificates in the
# store as registrations the generator counted; no serial twice; every
# serial received over MQTT is in the store).
#
#   bench/run_load.sh [BUILD_DIR]        (default: build)
# Environment: CONNECTIONS (64), SECONDS_KEEPALIVE (10), SECONDS_HANDSHAKE (10),
#   HS_CONNECTIONS (16), MQTT_CONNECTIONS (64), SECONDS_MQTT (10), MQTT_FULL=1
#   to add an MQTT run with a full TLS handshake per device (HS_CONNECTIONS),
#   WORKERS (2), KEEP_WORK=1 to keep the scratch directory.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
ENROLL=$BUILD/src/enroll
ENROLLD=$BUILD/src/enrolld
LOAD=$BUILD/bench/bench_load
for b in "$ENROLL" "$ENROLLD" "$LOAD"; do
  [ -x "$b" ] || { echo "run_load: $b is missing: build first (make build)" >&2; exit 1; }
done
for t in openssl sqlite3 jq; do
  command -v "$t" >/dev/null || { echo "run_load: needs $t" >&2; exit 1; }
done
CONNECTIONS=${CONNECTIONS:-64}
SECONDS_KEEPALIVE=${SECONDS_KEEPALIVE:-10}
SECONDS_HANDSHAKE=${SECONDS_HANDSHAKE:-10}
HS_CONNECTIONS=${HS_CONNECTIONS:-16}
MQTT_CONNECTIONS=${MQTT_CONNECTIONS:-64}
SECONDS_MQTT=${SECONDS_MQTT:-10}
MQTT_FULL=${MQTT_FULL:-}
WORKERS=${WORKERS:-2}
SCOPE=0ne0000bench

WORK=$(mktemp -d /tmp/enroll-load-XXXXXX) # on disk, not tmpfs: the commits are really fsync'ed
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  [ -n "${KEEP_WORK:-}" ] && echo "run_load: kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK" || exit 1
die() { echo "run_load: $*" >&2; exit 1; }

# CA, server certificate, a device certificate for the mTLS handshakes, store contents.
"$ENROLL" ca init --dir root --subject '/O=Bench/CN=Bench Root' >/dev/null || die "ca init root"
"$ENROLL" ca init --dir devices-ca --parent root --subject '/O=Bench/CN=Bench Devices' >/dev/null || die "ca init devices"
"$ENROLL" key new --out server.key >/dev/null
"$ENROLL" csr new --key server.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server server.csr --out server.pem 2>/dev/null || die "server certificate"
"$ENROLL" key new --out client.key >/dev/null
"$ENROLL" csr new --key client.key --dn CN=bench-client --out client.csr 2>/dev/null
"$ENROLL" ca sign --dir devices-ca --profile device client.csr --out client.pem 2>/dev/null || die "client certificate"
"$ENROLL" admin ca add devices --ca-dir devices-ca --data data >/dev/null || die "admin ca add"
"$ENROLL" admin policy new p30 --validity P30D --renewal-window P7D --ca devices --key-types ec-p256 --data data \
  >/dev/null || die "admin policy new"
"$ENROLL" admin group new fleet --policy p30 --symmetric --hub mqtt.example:8883 --data data --json > group.json ||
  die "admin group new"
GROUP_KEY=$(jq -r .primary_key group.json)

cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": $WORKERS,
 "mqtt": {"listen": "127.0.0.1:0"}}
JSON
"$ENROLLD" --config enrolld.json 2> enrolld.log &
PID=$!
PORT= MQTT_PORT=
for _ in $(seq 1 100); do
  PORT=$(grep -o '"port":[0-9]*' enrolld.log | head -1 | cut -d: -f2)
  MQTT_PORT=$(grep -o '"mqtt_port":[0-9]*' enrolld.log | head -1 | cut -d: -f2)
  [ -n "$PORT" ] && [ -n "$MQTT_PORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] && [ -n "$MQTT_PORT" ] || { cat enrolld.log >&2; die "enrolld did not start"; }

echo "== enrolld: $WORKERS workers on 127.0.0.1:$PORT (HTTPS) and :$MQTT_PORT (MQTT), store $WORK/data (SQLite WAL, synchronous=FULL), $(nproc) cores shared with the load generator"
COMMON=(--scope "$SCOPE" --group-key "$GROUP_KEY" --ca root/cert.pem
        --server-cert server.pem --server-key server.key --bare-workers "$WORKERS")
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; } # enrolld's user+system CPU, in clock ticks
HZ=$(getconf CLK_TCK)
cpu_per_registration() { # TICKS-BEFORE RESULT-FILE: enrolld CPU ms per registration (it idles during the ceilings)
  local ok
  ok=$(sed -n 's/^RESULT .* ok=\([0-9]*\) .*/\1/p' "$2")
  awk -v t=$(( $(ticks) - $1 )) -v hz="$HZ" -v ok="${ok:-0}" \
    'BEGIN { if (ok > 0) printf "  enrolld CPU:                 %.2f ms per registration (%.1f s for %d)\n", 1000 * t / hz / ok, t / hz, ok }' |
    tee "${2%.out}.cpu"
}
t0=$(ticks)
"$LOAD" "${COMMON[@]}" --port "$PORT" --mode keepalive --connections "$CONNECTIONS" --seconds "$SECONDS_KEEPALIVE" \
  --id-prefix ka- --devices 60000 --bare-seconds 3 | tee keepalive.out
cpu_per_registration "$t0" keepalive.out
# DPS over MQTT: a connection per device (CONNECT names one registration id),
# resuming the thread's TLS session; every serial received is written down.
t0=$(ticks)
"$LOAD" "${COMMON[@]}" --port "$MQTT_PORT" --mode mqtt --mqtt-tls resume --connections "$MQTT_CONNECTIONS" \
  --seconds "$SECONDS_MQTT" --id-prefix mq- --devices 60000 --received mqtt.serials --bare-seconds 3 | tee mqtt.out
cpu_per_registration "$t0" mqtt.out
# The same, the client sending CONNECT, SUBSCRIBE and PUBLISH in one write
# (MQTT 3.1.1 allows it; the DPS SDKs wait for CONNACK and SUBACK).
t0=$(ticks)
"$LOAD" "${COMMON[@]}" --port "$MQTT_PORT" --mode mqtt --mqtt-tls resume --mqtt-pipeline \
  --connections "$MQTT_CONNECTIONS" --seconds "$SECONDS_MQTT" --id-prefix mqp- --devices 60000 \
  --received mqtt-pipelined.serials --no-ceiling | tee mqtt-pipelined.out
cpu_per_registration "$t0" mqtt-pipelined.out
if [ -n "$MQTT_FULL" ]; then
  t0=$(ticks)
  "$LOAD" "${COMMON[@]}" --port "$MQTT_PORT" --mode mqtt --mqtt-tls full --connections "$HS_CONNECTIONS" \
    --seconds "$SECONDS_MQTT" --id-prefix mqf- --devices 20000 --received mqtt-full.serials --bare-seconds 3 \
    | tee mqtt-full.out
  cpu_per_registration "$t0" mqtt-full.out
fi
# The handshake run presents a client certificate: a fresh mTLS handshake per device.
t0=$(ticks)
"$LOAD" "${COMMON[@]}" --port "$PORT" --mode handshake --connections "$HS_CONNECTIONS" --seconds "$SECONDS_HANDSHAKE" \
  --client-cert client.pem --client-key client.key --id-prefix hs- --devices 20000 \
  --bare-seconds "$SECONDS_HANDSHAKE" | tee handshake.out
cpu_per_registration "$t0" handshake.out
field() { sed -n "s/^RESULT .* $2=\([0-9.]*\).*/\1/p" "$1"; }
echo "== against the aims (issue 4)"
awk -v r="$(field keepalive.out rate)" \
  'BEGIN { printf "  keep-alive: %.0f durable registrations/s, aim 5000/s: %s\n", r, (r >= 5000 ? "met" : sprintf("not met (%.0f%%)", 100 * r / 5000)) }'
awk -v r="$(field handshake.out rate)" -v b="$(field handshake.out tls_bare)" -v s="$(field handshake.out tls_s_time)" \
  'BEGIN { if (b > 0) printf "  new mTLS connection per device: %.0f/s = %.0f%% of the bare OpenSSL server with the same workers and client (%.0f/s; aim 80%%: %s), %.0f%% of s_server+s_time (%.0f/s)\n", r, 100 * r / b, b, (r >= 0.8 * b ? "met" : "not met"), (s > 0 ? 100 * r / s : 0), s }'

echo "== DPS over MQTT beside HTTPS (same enrolld, same run)"
awk -v m="$(field mqtt.out rate)" -v k="$(field keepalive.out rate)" -v h="$(field handshake.out rate)" \
  -v b="$(field mqtt.out tls_bare)" -v rc="$(field mqtt.out tls_connections)" -v rr="$(field mqtt.out tls_resumed)" \
  -v cores="$(nproc)" -v ck="$(grep -o '[0-9.]* ms per' keepalive.cpu | cut -d' ' -f1)" \
  -v cm="$(grep -o '[0-9.]* ms per' mqtt.cpu | cut -d' ' -f1)" \
  -v p="$(field mqtt-pipelined.out rate)" -v cp="$(grep -o '[0-9.]* ms per' mqtt-pipelined.cpu | cut -d' ' -f1)" \
  'BEGIN {
     printf "  HTTPS keep-alive (many registrations per TLS connection): %6.0f durable registrations/s\n", k
     printf "  MQTT, connection per device, TLS 1.2 session resumed:     %6.0f durable registrations/s (%.0f of %.0f connections resumed) = %.0f%% of keep-alive: %s\n",
            m, rr, rc, (k > 0 ? 100 * m / k : 0), (m >= k ? "at least as fast" : "slower")
     printf "  MQTT, as above, CONNECT+SUBSCRIBE+PUBLISH in one write:   %6.0f durable registrations/s = %.0f%% of keep-alive: %s (enrolld CPU %.2f ms per registration)\n",
            p, (k > 0 ? 100 * p / k : 0), (p >= k ? "at least as fast" : "slower"), cp
     printf "  HTTPS new mTLS connection per registration:               %6.0f durable registrations/s\n", h
     if (b > 0) printf "  (machine limit for a new connection with a resumed TLS 1.2 session, bare OpenSSL server: %.0f/s; MQTT at %.0f%%)\n", b, 100 * m / b
     if (ck > 0 && cm > 0) printf "  enrolld CPU per registration: keep-alive %.2f ms, MQTT %.2f ms (x%.2f); the load generator shares the %s cores and pays a TCP connect, a TLS resumption and three MQTT round trips per MQTT registration\n", ck, cm, cm / ck, cores
   }'
for f in keepalive mqtt mqtt-pipelined handshake $([ -n "$MQTT_FULL" ] && echo mqtt-full); do
  e=$(field $f.out errors); [ "${e:-0}" = 0 ] || echo "  WARNING: the $f run had $e failed registrations (see its error lines): its figure is not a clean one"
done
[ -n "$MQTT_FULL" ] && awk -v m="$(field mqtt-full.out rate)" -v h="$(field handshake.out rate)" \
  'BEGIN { printf "  MQTT, connection per device, full TLS handshake (no client certificate): %.0f/s = %.0f%% of HTTPS mTLS handshake\n", m, (h > 0 ? 100 * m / h : 0) }'

kill -TERM "$PID"
wait "$PID"
echo "enrolld exit status: $? (after SIGTERM)"
PID=

ok_ka=$(sed -n 's/^RESULT .* ok=\([0-9]*\) .*/\1/p' keepalive.out)
ok_hs=$(sed -n 's/^RESULT .* ok=\([0-9]*\) .*/\1/p' handshake.out)
ok_mq=$(sed -n 's/^RESULT .* ok=\([0-9]*\) .*/\1/p' mqtt.out)
ok_mp=$(sed -n 's/^RESULT .* ok=\([0-9]*\) .*/\1/p' mqtt-pipelined.out)
cat mqtt-pipelined.serials >> mqtt.serials
ok_mf=0
[ -n "$MQTT_FULL" ] && { ok_mf=$(sed -n 's/^RESULT .* ok=\([0-9]*\) .*/\1/p' mqtt-full.out); cat mqtt-full.serials >> mqtt.serials; }
integrity=$(sqlite3 data/enroll.db 'PRAGMA integrity_check')
certs=$(sqlite3 data/enroll.db 'select count(*) from certificate')
dups=$(sqlite3 data/enroll.db 'select count(*) from (select 1 from certificate group by issuer, serial having count(*) > 1)')
status=0
echo "== durability"
echo "  PRAGMA integrity_check: $integrity"
[ "$integrity" = ok ] || status=1
total=$(( ${ok_ka:-0} + ${ok_hs:-0} + ${ok_mq:-0} + ${ok_mp:-0} + ${ok_mf:-0} ))
echo "  certificates in the store: $certs; registrations the generator counted: ${ok_ka:-?} keep-alive + ${ok_hs:-?} handshake + ${ok_mq:-?} MQTT + ${ok_mp:-?} MQTT pipelined$([ -n "$MQTT_FULL" ] && echo " + $ok_mf MQTT full TLS") = $total"
[ -n "$ok_ka" ] && [ -n "$ok_hs" ] && [ -n "$ok_mq" ] && [ -n "$ok_mp" ] && [ "$certs" -ge "$total" ] || { echo "  FAIL: fewer certificates than registrations"; status=1; }
# Over MQTT every success carried its certificate: each serial received must be in the store, once.
received=$(wc -l < mqtt.serials)
sqlite3 data/enroll.db 'select serial from certificate' | sort -u > stored.serials
missing=$(sort -u mqtt.serials | comm -23 - stored.serials | wc -l)
twice=$(sort mqtt.serials | uniq -d | wc -l)
echo "  MQTT serials received: $received (successes counted: $(( ${ok_mq:-0} + ${ok_mp:-0} + ok_mf ))), missing from the store: $missing, received twice: $twice"
[ "$received" = "$(( ${ok_mq:-0} + ${ok_mp:-0} + ok_mf ))" ] && [ "$missing" = 0 ] && [ "$twice" = 0 ] || { echo "  FAIL: MQTT serials"; status=1; }
echo "  serials recorded twice (same issuer): $dups"
[ "$dups" = 0 ] || status=1
[ "$status" = 0 ] && echo "run_load: durability checks passed" || echo "run_load: durability checks FAILED"
exit "$status"
