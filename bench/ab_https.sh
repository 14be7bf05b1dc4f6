#!/usr/bin/env bash
# HTTPS before/after: two enrolld binaries up at once (each its own store and
# devices CA, the same server certificate and settings as bench/run_load.sh),
# driven by this build's bench_load in short keep-alive and mTLS handshake
# runs alternated A/B (who goes first alternating by round), so that a
# shared machine's drifting load falls on both alike. Prints each run's rate
# and enrolld CPU per registration, then the after/before ratios per round.
#
#   BEFORE=/path/to/old/enrolld bench/ab_https.sh [BUILD_DIR]   (default: build)
# Environment: AFTER (default BUILD_DIR/src/enrolld), ROUNDS (6), SECS (6).
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-build}
case "$B" in /*) ;; *) B=$SRC/$B ;; esac
BEFORE=${BEFORE:?set BEFORE to the other enrolld binary}
AFTER=${AFTER:-$B/src/enrolld}
ENROLL=$B/src/enroll LOAD=$B/bench/bench_load
W=$(mktemp -d /tmp/enroll-ab-XXXXXX); cd $W || exit 1
declare -A PID
trap 'for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$W"' EXIT
SCOPE=0ne0000bench
"$ENROLL" ca init --dir root --subject '/O=Bench/CN=Bench Root' >/dev/null
"$ENROLL" key new --out server.key >/dev/null
"$ENROLL" csr new --key server.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server server.csr --out server.pem 2>/dev/null
"$ENROLL" key new --out client.key >/dev/null
"$ENROLL" csr new --key client.key --dn CN=bench-client --out client.csr 2>/dev/null
declare -A PORT KEY
for v in before after; do
  mkdir $v
  "$ENROLL" ca init --dir $v/devices-ca --parent root --subject '/O=Bench/CN=Bench Devices' >/dev/null
  "$ENROLL" ca sign --dir $v/devices-ca --profile device client.csr --out $v/client.pem 2>/dev/null
  "$ENROLL" admin ca add devices --ca-dir $v/devices-ca --data $v/data >/dev/null
  "$ENROLL" admin policy new p30 --validity P30D --renewal-window P7D --ca devices --key-types ec-p256 --data $v/data >/dev/null
  "$ENROLL" admin group new fleet --policy p30 --symmetric --hub mqtt.example:8883 --data $v/data --json > $v/group.json
  KEY[$v]=$(jq -r .primary_key $v/group.json)
  cat > $v/enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "$W/$v/data", "id_scope": "$SCOPE",
 "tls": {"cert": "$W/server.pem", "key": "$W/server.key"}, "workers": 2, "mqtt": {"listen": "127.0.0.1:0"}}
JSON
  e=$AFTER; [ $v = before ] && e=$BEFORE
  $e --config $v/enrolld.json 2> $v/enrolld.log &
  PID[$v]=$!
  for _ in $(seq 1 100); do p=$(grep -o '"port":[0-9]*' $v/enrolld.log | head -1 | cut -d: -f2); [ -n "$p" ] && break; sleep 0.05; done
  PORT[$v]=$p
done
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
SECS=${SECS:-6}
for i in $(seq 1 ${ROUNDS:-6}); do
  for mode in keepalive handshake; do
    for v in before after; do
      [ $((i % 2)) = 0 ] && { [ $v = before ] && v=after || v=before; } # alternate who goes first
      args=(--mode keepalive --connections 64)
      [ $mode = handshake ] && args=(--mode handshake --connections 16 --client-cert $v/client.pem --client-key client.key)
      t0=$(ticks ${PID[$v]}); l=$(cut -d' ' -f1 /proc/loadavg)
      r=$("$LOAD" --scope $SCOPE --group-key "${KEY[$v]}" --ca root/cert.pem --port ${PORT[$v]} "${args[@]}" \
          --seconds $SECS --devices 15000 --keys 300 --id-prefix $mode-$i- --no-ceiling | grep '^RESULT')
      t1=$(ticks ${PID[$v]})
      ok=$(echo "$r" | sed -n 's/.* ok=\([0-9]*\) .*/\1/p'); rate=$(echo "$r" | sed -n 's/.* rate=\([0-9]*\) .*/\1/p')
      err=$(echo "$r" | sed -n 's/.* errors=\([0-9]*\) .*/\1/p')
      echo "$i $mode $v rate=$rate errors=$err cpu_ms=$(awk -v t=$((t1-t0)) -v ok="${ok:-0}" -v hz="$HZ" 'BEGIN{ if (ok > 0) printf "%.2f", 1000*t/hz/ok; else printf "0" }') load=$l" | tee -a "$W/runs.log"
    done
  done
done
for v in before after; do kill -TERM ${PID[$v]}; wait ${PID[$v]}; done
PID=()
for v in before after; do echo "$v integrity $(sqlite3 $v/data/enroll.db 'PRAGMA integrity_check') certs $(sqlite3 $v/data/enroll.db 'select count(*) from certificate')"; done
awk '/^[0-9]+ (keepalive|handshake) (before|after) / {
       split($4, r, "="); split($6, c, "="); rate[$2, $1, $3] = r[2]; cpu[$2, $1, $3] = c[2]; if ($1 > n) n = $1 }
     END { for (m = 1; m <= 2; m++) { mode = m == 1 ? "keepalive" : "handshake"; lr = lc = 0; k = 0; line = ""
             for (i = 1; i <= n; i++) if (rate[mode, i, "before"] > 0 && rate[mode, i, "after"] > 0) {
               x = rate[mode, i, "after"] / rate[mode, i, "before"]; line = line sprintf(" %.3f", x); lr += log(x)
               lc += log(cpu[mode, i, "after"] / cpu[mode, i, "before"]); k++ }
             if (k) printf "%s: after/before rate per round:%s; geometric mean %.3f; enrolld CPU per registration after/before %.3f\n", mode, line, exp(lr / k), exp(lc / k) } }' "$W/runs.log"
