#!/usr/bin/env bash
# enrolld's instructions per registration, under callgrind, for each way in:
# HTTPS keep-alive, HTTPS with a new connection per device resuming the
# thread's TLS 1.2 session (SAS token) and DPS over MQTT the same way (as
# bench/run_load.sh's keepalive, https-resumed and mqtt runs). enrolld is set
# up as run_load.sh does; after a warm-up of each kind the counters are
# zeroed, then each kind runs REQUESTS registrations and is dumped on its own
# (callgrind_control --dump), so each dump holds one kind's cost.
#
#   bench/callgrind_pair.sh [BUILD_DIR] [OUT_DIR]   (default: build, ./callgrind-pair)
# Environment: REQUESTS (1000), CONNECTIONS (8), WORKERS (2), KINDS (the
#   kinds, in order; default "https-resumed mqtt keepalive"; "mtls" is a new
#   TLS connection with a client certificate per registration), MQTT_PIPELINE=1
#   to pipeline the MQTT run's packets, TOOL=strace to count enrolld's system
#   calls per registration of each kind instead (strace -c -f attached for each
#   kind's run; OUT_DIR/strace.KIND).
# Prints Ir per registration of each kind; then compare with
#   callgrind_annotate --inclusive=yes OUT_DIR/callgrind.out.KIND
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
OUT=${2:-callgrind-pair}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
ENROLL=$BUILD/src/enroll
ENROLLD=${ENROLLD:-$BUILD/src/enrolld}
LOAD=$BUILD/bench/bench_load
REQUESTS=${REQUESTS:-1000}
CONNECTIONS=${CONNECTIONS:-8}
WORKERS=${WORKERS:-2}
KINDS=${KINDS:-https-resumed mqtt keepalive}
SCOPE=0ne0000bench
TOOL=${TOOL:-callgrind}
for t in $([ "$TOOL" = strace ] && echo strace || echo valgrind callgrind_control) jq; do
  command -v "$t" >/dev/null || { echo "callgrind_pair: needs $t" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/enroll-cg-XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK" || exit 1
die() { echo "callgrind_pair: $*" >&2; exit 1; }

. "$SRC/bench/lib.sh"
bench_pki_store
for k in $KINDS; do
  [ "$k" = mtls ] || continue # a device certificate for the mTLS handshakes, as bench/run_load.sh makes it
  "$ENROLL" key new --out client.key >/dev/null &&
    "$ENROLL" csr new --key client.key --dn CN=bench-client --out client.csr 2>/dev/null &&
    "$ENROLL" ca sign --dir devices-ca --profile device client.csr --out client.pem 2>/dev/null ||
    die "client certificate"
done
bench_enrolld_config
if [ "$TOOL" = strace ]; then
  "$ENROLLD" --config enrolld.json 2> enrolld.log &
else
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" \
    "$ENROLLD" --config enrolld.json 2> enrolld.log &
fi
PID=$!
bench_wait_ports enrolld.log 600 0.1
COMMON=(--scope "$SCOPE" --group-key "$GROUP_KEY" --ca root/cert.pem --no-ceiling --connections "$CONNECTIONS")
kind() { # KIND N PREFIX: N registrations of that kind, new devices
  case "$1" in
  keepalive) "$LOAD" "${COMMON[@]}" --port "$PORT" --mode keepalive --requests "$2" --id-prefix "$3" ;;
  https-resumed) "$LOAD" "${COMMON[@]}" --port "$PORT" --mode handshake --resume --requests "$2" --id-prefix "$3" \
    --check ;;
  mqtt) "$LOAD" "${COMMON[@]}" --port "$MQTT_PORT" --mode mqtt --mqtt-tls resume ${MQTT_PIPELINE:+--mqtt-pipeline} \
    --requests "$2" --id-prefix "$3" ;;
  mtls) "$LOAD" "${COMMON[@]}" --port "$PORT" --mode handshake --client-cert client.pem --client-key client.key \
    --requests "$2" --id-prefix "$3" ;;
  *) die "unknown kind $1" ;;
  esac
}
ok_of() { sed -n 's/^RESULT .* ok=\([0-9]*\) .*/\1/p' "$1"; }
for k in $KINDS; do # warm-up: store statements, first TLS sessions, allocator arenas
  kind "$k" 100 "w$k-" > "warm-$k.out" || die "warm-up $k"
done
if [ "$TOOL" = strace ]; then
  for k in $KINDS; do
    strace -c -f -p "$PID" -o "$OUT/strace.$k" 2>/dev/null &
    spid=$!
    sleep 1 # attached to every thread
    kind "$k" "$REQUESTS" "$k-" > "$k.out" || die "$k"
    kill -INT "$spid"
    wait "$spid"
    ok=$(ok_of "$k.out")
    awk -v k="$k" -v ok="$ok" '$NF == "total" { printf "%-14s %d registrations, %d system calls, %.1f per registration (%.2f s in them, %.0f us per registration)\n", k, ok, $4, $4 / ok, $2, 1e6 * $2 / ok }' "$OUT/strace.$k"
  done
  kill -TERM "$PID"
  wait "$PID"
  PID=
  exit 0
fi
callgrind_control --zero "$PID" >/dev/null || die "callgrind_control --zero"
for k in $KINDS; do
  kind "$k" "$REQUESTS" "$k-" > "$k.out" || die "$k"
  grep -q errors=0 "$k.out" || { cat "$k.out" >&2; die "$k: errors"; }
  callgrind_control --dump="$k" "$PID" >/dev/null || die "callgrind_control --dump"
  sleep 1
  f=$(ls -t "$OUT"/callgrind.out."$PID".* 2>/dev/null | head -1)
  [ -n "$f" ] || die "no dump for $k"
  mv "$f" "$OUT/callgrind.out.$k"
  ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p;s/^totals: *\([0-9]*\).*/\1/p' "$OUT/callgrind.out.$k" | head -1)
  ok=$(ok_of "$k.out")
  awk -v k="$k" -v ir="$ir" -v ok="$ok" 'BEGIN { printf "%-14s %d registrations, %.0f Ir, %.0f Ir per registration\n", k, ok, ir, ir / ok }'
done
kill -TERM "$PID"
wait "$PID"
PID=
rm -f "$OUT"/callgrind.out.[0-9]*
