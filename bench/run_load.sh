#!/usr/bin/env bash
# Load test of enrolld on this machine: sets up a CA, the store and enrolld
# ("workers": 2, HTTPS and an "mqtt" listener) in a scratch directory on
# disk, runs bench_load in keep-alive mode, over DPS MQTT (one connection per
# device, as DPS's CONNECT authenticates one registration id; each thread's
# connections resume its TLS 1.2 session, so TLS public-key work is amortised
# as with keep-alive), over HTTPS the same way (a new connection per device
# resuming the thread's TLS 1.2 session, SAS token: the like-for-like HTTPS
# figure beside MQTT) and with a new mTLS connection per registration, prints
# the figures beside the machine's limits and keep-alive's beside cfssl's
# (the issuance peer of issue 16: `cfssl serve` with the same devices CA and
# no database, sent the same kind of CSRs by the same generator over plain
# HTTP keep-alive; skipped, saying so, when cfssl is not installed), stops
# enrolld and checks durability (PRAGMA integrity_check; at least as many
# certificates in the store as registrations the generator counted; no
# serial twice; every serial received over MQTT or HTTPS connection per
# device is in the store).
#
#   bench/run_load.sh [BUILD_DIR]        (default: build)
# Environment: CONNECTIONS (64), SECONDS_KEEPALIVE (10), SECONDS_HANDSHAKE (10),
#   HS_CONNECTIONS (16), MQTT_CONNECTIONS (64), SECONDS_MQTT (10), MQTT_FULL=1
#   to add an MQTT run with a full TLS handshake per device (HS_CONNECTIONS),
#   WORKERS (2), KEEP_WORK=1 to keep the scratch directory, RUNS (the runs, in
#   order; default "keepalive cfssl mqtt https-resumed mqtt-pipelined handshake",
#   mqtt-full added by MQTT_FULL=1), ENROLLD (another enrolld binary, e.g. an
#   older build's, driven by this build's enroll and bench_load).
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
. "$SRC/bench/lib.sh"
bench_programs run_load openssl sqlite3 jq
CONNECTIONS=${CONNECTIONS:-64}
SECONDS_KEEPALIVE=${SECONDS_KEEPALIVE:-10}
SECONDS_HANDSHAKE=${SECONDS_HANDSHAKE:-10}
HS_CONNECTIONS=${HS_CONNECTIONS:-16}
MQTT_CONNECTIONS=${MQTT_CONNECTIONS:-64}
SECONDS_MQTT=${SECONDS_MQTT:-10}
MQTT_FULL=${MQTT_FULL:-}
WORKERS=${WORKERS:-2}
RUNS=${RUNS:-keepalive cfssl mqtt https-resumed mqtt-pipelined $([ -n "$MQTT_FULL" ] && echo mqtt-full) handshake}
runs() { for r in $RUNS; do [ "$r" = "$1" ] && return 0; done; return 1; }
for r in $RUNS; do
  case "$r" in keepalive | cfssl | mqtt | https-resumed | mqtt-pipelined | mqtt-full | handshake) ;;
  *) echo "run_load: RUNS: unknown run $r" >&2; exit 2 ;; esac
done
SCOPE=0ne0000bench

WORK=$(mktemp -d /tmp/enroll-load-XXXXXX) # on disk, not tmpfs: the commits are really fsync'ed
PID=
CFSSL_PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  [ -n "$CFSSL_PID" ] && kill -9 "$CFSSL_PID" 2>/dev/null
  [ -n "${KEEP_WORK:-}" ] && echo "run_load: kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK" || exit 1
die() { echo "run_load: $*" >&2; exit 1; }

# CA, server certificate, store contents; a device certificate for the mTLS handshakes.
. "$SRC/bench/lib.sh"
bench_pki_store
"$ENROLL" key new --out client.key >/dev/null
"$ENROLL" csr new --key client.key --dn CN=bench-client --out client.csr 2>/dev/null
"$ENROLL" ca sign --dir devices-ca --profile device client.csr --out client.pem 2>/dev/null || die "client certificate"

bench_enrolld_config
"$ENROLLD" --config enrolld.json 2> enrolld.log &
PID=$!
bench_wait_ports enrolld.log 100 0.05

echo "== enrolld: $WORKERS workers on 127.0.0.1:$PORT (HTTPS) and :$MQTT_PORT (MQTT), store $WORK/data (SQLite WAL, synchronous=FULL), $(nproc) cores shared with the load generator"
COMMON=(--scope "$SCOPE" --group-key "$GROUP_KEY" --ca root/cert.pem
        --server-cert server.pem --server-key server.key --bare-workers "$WORKERS")
ticks() { awk '{print $14, $15}' "/proc/${1:-$PID}/stat"; } # enrolld's (or PID's) user and system CPU, in clock ticks
HZ=$(getconf CLK_TCK)
cpu_per_registration() { # "USER SYS" TICKS BEFORE, RESULT-FILE[, PID, NAME]: enrolld's (NAME's) CPU ms per
  # registration (it idles during the ceilings)
  local ok
  ok=$(sed -n 's/^RESULT .* ok=\([0-9]*\) .*/\1/p' "$2")
  awk -v before="$1" -v now="$(ticks "${3:-}")" -v hz="$HZ" -v ok="${ok:-0}" -v who="${4:-enrolld}" \
    'BEGIN { split(before, b, " "); split(now, n, " "); u = n[1] - b[1]; s = n[2] - b[2]; t = u + s
             if (ok > 0) printf "  %-28s %.2f ms per %s (%.1f s for %d; user %.2f ms, system %.2f ms)\n", who " CPU:", 1000 * t / hz / ok, (who == "enrolld" ? "registration" : "certificate"), t / hz, ok, 1000 * u / hz / ok, 1000 * s / hz / ok }' |
    tee "${2%.out}.cpu"
}
run() { # NAME BENCH_LOAD-ARGS...: a run, its output in NAME.out, enrolld's CPU per registration in NAME.cpu
  local name=$1 t0
  shift
  t0=$(ticks)
  "$LOAD" "${COMMON[@]}" "$@" | tee "$name.out"
  cpu_per_registration "$t0" "$name.out"
}
# The issuance peer: cfssl serve (cfssl 1.2) with the devices CA enrolld
# issues from (cfssl reads its PKCS#8 key as it is), no -db-config: nothing
# stored, so the figure is a no-store one. The default signing profile is
# the device profile's (digital signature, client auth) with p30's 30 days,
# as enrolld issues in this run. A port in 20000-32767 (below the ephemeral
# range) nothing listens on now; another process may take it first: retried.
cfssl_port() {
  local used p
  used=$(ss -Htln 2>/dev/null | awk '{ sub(/.*:/, "", $4); print $4 }')
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 12768))
    grep -qx "$p" <<<"$used" || { echo "$p"; return 0; }
  done
  return 1
}
cfssl_start() { # PORT: cfssl serve in the background (CFSSL_PID), 0 once it accepts connections
  cfssl serve -address 127.0.0.1 -port "$1" -ca "${BENCH_CA_DIR:-devices-ca}/cert.pem" \
    -ca-key "${BENCH_CA_DIR:-devices-ca}/key.pem" -config cfssl-config.json 2>> cfssl.log &
  CFSSL_PID=$!
  for _ in $(seq 1 100); do
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$CFSSL_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -9 "$CFSSL_PID" 2>/dev/null
  wait "$CFSSL_PID" 2>/dev/null
  CFSSL_PID=
  return 1
}
CFSSL_VERIFIED=
cfssl_run() {
  local cport t0 subject issuer
  cat > cfssl-config.json <<'JSON'
{"signing": {"default": {"usages": ["digital signature", "client auth"], "expiry": "720h"}}}
JSON
  for _ in 1 2 3; do
    cport=$(cfssl_port) && cfssl_start "$cport" && break
    cport=
  done
  if [ -z "$cport" ]; then
    echo "== cfssl serve did not start (its log, cfssl.log, ends:)"
    tail -n 5 cfssl.log
    return 0
  fi
  echo "== cfssl $(cfssl version 2>/dev/null | sed -n 's/^Version: //p') serve on 127.0.0.1:$cport: the same devices CA, no database (no-store), plain HTTP (no TLS set up for cfssl serve here)"
  t0=$(ticks "$CFSSL_PID")
  "$LOAD" --port "$cport" --mode cfssl --connections "$CONNECTIONS" --seconds "$SECONDS_KEEPALIVE" \
    --id-prefix cf- --devices 60000 --keep-cert cfssl-cert.pem --no-ceiling | tee cfssl.out
  cpu_per_registration "$t0" cfssl.out "$CFSSL_PID" cfssl
  kill -TERM "$CFSSL_PID"
  wait "$CFSSL_PID" 2>/dev/null
  CFSSL_PID=
  # One of cfssl's certificates, for one of the generator's CSRs: signed by the devices CA?
  if subject=$(openssl x509 -in cfssl-cert.pem -noout -subject 2>/dev/null) &&
    issuer=$(openssl x509 -in cfssl-cert.pem -noout -issuer) &&
    openssl verify -CAfile root/cert.pem -untrusted "${BENCH_CA_DIR:-devices-ca}/cert.pem" cfssl-cert.pem >/dev/null 2>&1; then
    CFSSL_VERIFIED=1
    echo "  a certificate from cfssl: $subject, $issuer: verifies (openssl verify, bench root and devices CA)"
  else
    echo "  a certificate from cfssl: missing, or it does not verify against the devices CA (cfssl-cert.pem)"
  fi
}
for r in $RUNS; do
  case "$r" in
  keepalive)
    run keepalive --port "$PORT" --mode keepalive --connections "$CONNECTIONS" --seconds "$SECONDS_KEEPALIVE" \
      --id-prefix ka- --devices 60000 --bare-seconds 3 ;;
  cfssl) # The issuance peer: the same generator and connections as keepalive (enrolld idles meanwhile).
    if command -v cfssl >/dev/null; then
      cfssl_run
    else
      echo "== cfssl: skipped: cfssl is not installed (Debian package golang-cfssl; scripts/install-deps.sh installs it)"
    fi ;;
  mqtt) # DPS over MQTT: a connection per device (CONNECT names one registration id),
    # resuming the thread's TLS session; every serial received is written down.
    run mqtt --port "$MQTT_PORT" --mode mqtt --mqtt-tls resume --connections "$MQTT_CONNECTIONS" \
      --seconds "$SECONDS_MQTT" --id-prefix mq- --devices 60000 --received mqtt.serials --bare-seconds 3 ;;
  https-resumed) # HTTPS as MQTT above: a connection per device resuming the thread's TLS 1.2
    # session, SAS token, no client certificate, same connections and duration, serials written down.
    run https-resumed --port "$PORT" --mode handshake --resume --connections "$MQTT_CONNECTIONS" \
      --seconds "$SECONDS_MQTT" --id-prefix hr- --devices 60000 --received https-resumed.serials --bare-seconds 3 ;;
  mqtt-pipelined) # The client sending CONNECT, SUBSCRIBE and PUBLISH in one write
    # (MQTT 3.1.1 allows it; the DPS SDKs wait for CONNACK and SUBACK).
    run mqtt-pipelined --port "$MQTT_PORT" --mode mqtt --mqtt-tls resume --mqtt-pipeline \
      --connections "$MQTT_CONNECTIONS" --seconds "$SECONDS_MQTT" --id-prefix mqp- --devices 60000 \
      --received mqtt-pipelined.serials --no-ceiling ;;
  mqtt-full)
    run mqtt-full --port "$MQTT_PORT" --mode mqtt --mqtt-tls full --connections "$HS_CONNECTIONS" \
      --seconds "$SECONDS_MQTT" --id-prefix mqf- --devices 20000 --received mqtt-full.serials --bare-seconds 3 ;;
  handshake) # A client certificate: a fresh mTLS handshake per device.
    run handshake --port "$PORT" --mode handshake --connections "$HS_CONNECTIONS" --seconds "$SECONDS_HANDSHAKE" \
      --client-cert client.pem --client-key client.key --id-prefix hs- --devices 20000 \
      --bare-seconds "$SECONDS_HANDSHAKE" ;;
  esac
done
field() { [ -f "$1" ] && sed -n "s/^RESULT .* $2=\([0-9.]*\).*/\1/p" "$1"; }
cpu() { [ -f "$1.cpu" ] && grep -o '[0-9.]* ms per' "$1.cpu" | cut -d' ' -f1; }
cpu_split() { [ -f "$1.cpu" ] && grep -o 'user [0-9.]* ms, system [0-9.]* ms' "$1.cpu"; }
echo "== targets (issue 16), each beside its reference in this run"
runs keepalive && awk -v r="$(field keepalive.out rate)" -v p="$(field keepalive.out p99_ms)" \
  'BEGIN { printf "  %s keep-alive, durable: %.0f registrations/s, target 10000/s (%.0f%% of it)\n", (r >= 10000 ? "PASS" : "FAIL"), r, 100 * r / 10000
           printf "  %s keep-alive p99 latency: %.2f ms, target under 20 ms (at %.0f/s)\n", (p > 0 && p < 20 && r >= 10000 ? "PASS" : "FAIL"), p, r }'
runs handshake && awk -v r="$(field handshake.out rate)" -v b="$(field handshake.out tls_bare)" -v s="$(field handshake.out tls_s_time)" \
  'BEGIN { if (b > 0) printf "  %s new mTLS connection per device: %.0f/s = %.0f%% of the bare OpenSSL server with the same workers and client (%.0f/s), target 80%%; %.0f%% of s_server+s_time (%.0f/s)\n", (r >= 0.8 * b ? "PASS" : "FAIL"), r, 100 * r / b, b, (s > 0 ? 100 * r / s : 0), s }'
runs mqtt && awk -v r="$(field mqtt.out rate)" \
  'BEGIN { printf "  %s DPS over MQTT, a resumed connection per device: %.0f registrations/s, target 10000/s (%.0f%% of it)\n", (r >= 10000 ? "PASS" : "FAIL"), r, 100 * r / 10000 }'
if runs cfssl; then
  CFSSL_TARGET="keep-alive durable enrolld rate above cfssl serve no-store rate in this run"
  if ! command -v cfssl >/dev/null; then
    echo "  SKIP $CFSSL_TARGET: cfssl is not installed (install the Debian package golang-cfssl)"
  elif ! runs keepalive; then
    echo "  SKIP $CFSSL_TARGET: no keepalive run in RUNS"
  else
    # The CPU per operation beside the rates: the cores are shared (with the generator, and others).
    awk -v t="$CFSSL_TARGET" -v r="$(field keepalive.out rate)" -v c="$(field cfssl.out rate)" -v v="$CFSSL_VERIFIED" \
      -v cr="$(cpu keepalive)" -v cc="$(cpu cfssl)" \
      'BEGIN { printf "  %s %s: enrolld %.0f registrations/s (HTTPS, SQLite, fsync before the answer), cfssl %.0f certificates/s (plain HTTP, nothing stored): x%.2f%s", (c > 0 && v && r > c ? "PASS" : "FAIL"), t, r, c, (c > 0 ? r / c : 0), (c > 0 ? (v ? "" : "; but cfssl'"'"'s certificate did not verify") : "; no cfssl figure (see above)")
               if (cr > 0 && cc > 0) printf "; CPU per certificate: enrolld %.2f ms, cfssl %.2f ms", cr, cc
               printf "\n" }'
  fi
fi
echo "  (instructions per registration, target 1.0M: bench/run_instructions.sh, after this; 10M certificates in the store: bench/run_flat.sh)"

echo "== DPS over MQTT beside HTTPS (same enrolld, same run)"
line() { # LABEL NAME: its rate, enrolld CPU per registration, share of keep-alive
  [ -f "$2.out" ] || return 0
  awk -v l="$1" -v r="$(field "$2.out" rate)" -v c="$(cpu "$2")" -v k="$(field keepalive.out rate)" \
    -v rc="$(field "$2.out" tls_connections)" -v rr="$(field "$2.out" tls_resumed)" -v res="${3:-}" \
    -v sp="$(cpu_split "$2")" \
    'BEGIN { printf "  %-58s %6.0f durable registrations/s, enrolld CPU %s ms per registration (%s)", l, r, (c != "" ? c : "?"), sp
             if (k > 0 && l !~ /keep-alive/) printf ", %.0f%% of keep-alive", 100 * r / k
             if (res != "") printf " (%.0f of %.0f connections resumed)", rr, rc
             printf "\n" }'
}
line "HTTPS keep-alive (many registrations per TLS connection):" keepalive
line "HTTPS, connection per device, TLS 1.2 session resumed:" https-resumed resumed
line "MQTT, connection per device, TLS 1.2 session resumed:" mqtt resumed
line "MQTT, as above, CONNECT+SUBSCRIBE+PUBLISH in one write:" mqtt-pipelined
line "MQTT, connection per device, full TLS handshake:" mqtt-full
line "HTTPS, new mTLS connection per registration:" handshake
if [ -f mqtt.out ] && [ -f https-resumed.out ]; then
  awk -v m="$(field mqtt.out rate)" -v h="$(field https-resumed.out rate)" -v p="$(field mqtt-pipelined.out rate)" \
    -v cm="$(cpu mqtt)" -v ch="$(cpu https-resumed)" -v cp="$(cpu mqtt-pipelined)" \
    -v bm="$(field mqtt.out tls_bare)" -v bh="$(field https-resumed.out tls_bare)" \
    'BEGIN {
       printf "  like for like, a connection per device resuming TLS 1.2, SAS token: MQTT/HTTPS = %.2f (%.0f/s vs %.0f/s): MQTT %s", (h > 0 ? m / h : 0), m, h, (m >= h ? "at least as fast" : "slower")
       if (p > 0 && h > 0) printf "; pipelined MQTT/HTTPS = %.2f", p / h
       printf "\n"
       if (cm > 0 && ch > 0) printf "  enrolld CPU per registration, connection per device: MQTT %.2f ms, HTTPS %.2f ms (MQTT/HTTPS x%.2f)%s\n", cm, ch, cm / ch, (cp > 0 ? sprintf("; pipelined MQTT %.2f ms (x%.2f)", cp, cp / ch) : "")
       if (bm > 0 && bh > 0) printf "  (machine limit for a new connection with a resumed TLS 1.2 session, bare OpenSSL server: %.0f/s in the MQTT run, %.0f/s in the HTTPS run; MQTT at %.0f%%, HTTPS at %.0f%%)\n", bm, bh, 100 * m / bm, 100 * h / bh
     }'
fi
if [ -f mqtt.out ] && [ -f keepalive.out ]; then
  awk -v m="$(field mqtt.out rate)" -v k="$(field keepalive.out rate)" -v ck="$(cpu keepalive)" -v cm="$(cpu mqtt)" -v cores="$(nproc)" \
    'BEGIN {
       printf "  MQTT (connection per device) beside HTTPS keep-alive (not like for like: keep-alive carries many devices per connection): %.0f%% of keep-alive: %s\n", (k > 0 ? 100 * m / k : 0), (m >= k ? "at least as fast" : "slower")
       if (ck > 0 && cm > 0) printf "  enrolld CPU per registration: keep-alive %.2f ms, MQTT %.2f ms (x%.2f); the load generator shares the %s cores and pays a TCP connect, a TLS resumption and three MQTT round trips per MQTT registration\n", ck, cm, cm / ck, cores
     }'
  # What this machine allows any transport with one registration per new
  # connection, against keep-alive, from this run's own figures: such a
  # registration needs at least a bare resumed TLS connection (tls_bare of
  # the mqtt run: the in-process bare server, the client's share on the same
  # cores included) plus the keep-alive registration's own work, so its
  # rate is at most 1/(1/tls_bare + 1/keepalive).
  awk -v m="$(field mqtt.out rate)" -v k="$(field keepalive.out rate)" -v b="$(field mqtt.out tls_bare)" \
    'BEGIN {
       if (b > 0 && k > 0) { bound = 1 / (1 / b + 1 / k)
         printf "  bound for one registration per new resumed connection on this machine: 1/(1/%.0f + 1/%.0f) = %.0f/s (bare resumed TLS connection + a keep-alive registration) = %.0f%% of keep-alive; MQTT at %.0f%% of the bound\n", b, k, bound, 100 * bound / k, 100 * m / bound }
     }'
fi
for f in $RUNS; do
  e=$(field $f.out errors); [ "${e:-0}" = 0 ] || echo "  WARNING: the $f run had $e failed registrations (see its error lines): its figure is not a clean one"
done
[ -f mqtt-full.out ] && [ -f handshake.out ] && awk -v m="$(field mqtt-full.out rate)" -v h="$(field handshake.out rate)" \
  'BEGIN { printf "  MQTT, connection per device, full TLS handshake (no client certificate): %.0f/s = %.0f%% of HTTPS mTLS handshake\n", m, (h > 0 ? 100 * m / h : 0) }'

kill -TERM "$PID"
wait "$PID"
echo "enrolld exit status: $? (after SIGTERM)"
PID=

integrity=$(sqlite3 data/enroll.db 'PRAGMA integrity_check')
certs=$(sqlite3 data/enroll.db 'select count(*) from certificate')
dups=$(sqlite3 data/enroll.db 'select count(*) from (select 1 from certificate group by issuer, serial having count(*) > 1)')
status=0
echo "== durability"
echo "  PRAGMA integrity_check: $integrity"
[ "$integrity" = ok ] || status=1
total=0 counted= received_ok=0
: > received.serials
for f in $RUNS; do
  [ "$f" = cfssl ] && continue # issued by cfssl, stored nowhere
  ok=$(sed -n 's/^RESULT .* ok=\([0-9]*\) .*/\1/p' "$f.out")
  [ -n "$ok" ] || { echo "  FAIL: the $f run printed no result"; status=1; ok=0; }
  total=$(( total + ok ))
  counted="$counted${counted:+ + }$ok $f"
  if [ -f "$f.serials" ]; then # every success of this run carried its certificate, serial written down
    cat "$f.serials" >> received.serials
    received_ok=$(( received_ok + ok ))
  fi
done
echo "  certificates in the store: $certs; registrations the generator counted: $counted = $total"
[ "$certs" -ge "$total" ] || { echo "  FAIL: fewer certificates than registrations"; status=1; }
# Every serial received (MQTT, HTTPS connection per device) must be in the store, once.
received=$(wc -l < received.serials)
sqlite3 data/enroll.db 'select serial from certificate' | sort -u > stored.serials
missing=$(sort -u received.serials | comm -23 - stored.serials | wc -l)
twice=$(sort received.serials | uniq -d | wc -l)
echo "  serials received (runs with --received: $(for f in $RUNS; do [ -f "$f.serials" ] && printf '%s ' "$f"; done)): $received (successes counted: $received_ok), missing from the store: $missing, received twice: $twice"
[ "$received" = "$received_ok" ] && [ "$missing" = 0 ] && [ "$twice" = 0 ] || { echo "  FAIL: received serials"; status=1; }
echo "  serials recorded twice (same issuer): $dups"
[ "$dups" = 0 ] || status=1
[ "$status" = 0 ] && echo "run_load: durability checks passed" || echo "run_load: durability checks FAILED"
exit "$status"
