#!/usr/bin/env bash
# kill -9 of enrolld under load, then a restart on the same data directory:
# the store passes PRAGMA integrity_check, every certificate a client
# received is in the store, no serial appears twice, and the restarted
# server still registers devices. The load is bench/bench_load (keep-alive,
# a few connections), which writes the leaf serial of every certificate it
# received to a file as the answer arrives.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
ENROLLD=$(dirname "$ENROLL")/enrolld
LOAD=$(dirname "$ENROLL")/../bench/bench_load
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000c4a5
[ -x "$LOAD" ] || { fail "bench_load is not built at $LOAD"; finish; exit 1; }

"$ENROLL" ca init --dir root --subject '/O=Acme/CN=Acme Root' >/dev/null
"$ENROLL" ca init --dir devices-ca --parent root --subject '/O=Acme/CN=Acme Devices' >/dev/null
"$ENROLL" key new --out server.key >/dev/null
"$ENROLL" csr new --key server.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server server.csr --out server.pem 2>/dev/null
check "admin: CA" "$ENROLL" admin ca add devices --ca-dir devices-ca --data data
check "admin: policy" "$ENROLL" admin policy new p30 --validity P30D --renewal-window P7D --ca devices --key-types ec-p256 --data data
check "admin: group" "$ENROLL" admin group new fleet --policy p30 --symmetric --hub mqtt.example:8883 --data data --json
GROUP_KEY=$(json "$WORK/.out" .primary_key)
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2}
JSON

PORT=
start_enrolld() { # LOG: starts enrolld, sets PID and PORT
  PORT=
  "$ENROLLD" --config enrolld.json 2> "$1" &
  PID=$!; PIDS+=("$PID")
  for _ in $(seq 1 200); do
    PORT=$(grep -o '"port":[0-9]*' "$1" | head -1 | cut -d: -f2)
    [ -n "$PORT" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  fail "enrolld did not start"; sed 's/^/    /' "$1" | head -20 >&2
  return 1
}
load() { # ARGS...: bench_load against the current port, no ceilings
  "$LOAD" --port "$PORT" --scope "$SCOPE" --group-key "$GROUP_KEY" --ca root/cert.pem --no-ceiling "$@"
}
result() { sed -n "s/^RESULT .* $2=\([0-9]*\).*/\1/p" "$1"; }
db() { sqlite3 data/enroll.db "$1"; }

start_enrolld enrolld-1.log || { finish; exit 1; }
# Six seconds of load on four keep-alive connections; kill -9 once answers flow.
load --mode keepalive --connections 4 --seconds 6 --devices 4000 --keys 100 --id-prefix crash- \
  --received received.txt > load.out 2> load.err &
LOAD_PID=$!; PIDS+=("$LOAD_PID")
for _ in $(seq 1 300); do
  [ -s received.txt ] && [ "$(wc -l < received.txt)" -ge 50 ] && break
  kill -0 "$LOAD_PID" 2>/dev/null || break
  sleep 0.05
done
sleep 0.5
before_kill=$(wc -l < received.txt 2>/dev/null || echo 0)
# In one group with its stderr: bash may reap the killed server (and print
# "Killed") before wait runs, which the harness rightly counts as the script
# writing errors.
{ kill -9 "$PID"; wait "$PID"; } 2>/dev/null
wait "$LOAD_PID"
same "bench_load ran to its end" "$?" "0"
ok=$(result load.out ok)
errors=$(result load.out errors)
received=$(wc -l < received.txt)
[ "$before_kill" -ge 50 ] && pass || fail "only $before_kill certificates received before the kill"
[ "${errors:-0}" -gt 0 ] && pass || fail "no failed request after the kill: was the server killed mid-load?"
same "every success carried a certificate" "$received" "${ok:-missing}"
empty "no serial received twice" "$(sort received.txt | uniq -d | head -3)"

start_enrolld enrolld-2.log || { finish; exit 1; }
same "integrity after kill -9 and restart" "$(db 'PRAGMA integrity_check')" "ok"
db "select serial from certificate" | sort -u > stored.txt
sort -u received.txt > received.sorted
missing=$(comm -23 received.sorted stored.txt | head -5)
empty "every received certificate is in the store" "$missing"
[ "$(db 'select count(*) from certificate')" -ge "$received" ] && pass || fail "fewer certificates stored than received"
empty "no serial twice for one issuer" "$(db 'select serial, count(*) from certificate group by issuer, serial having count(*) > 1')"
same "one registration row per device" "$(db "select count(*) from (select registration_id from registration group by registration_id having count(*) > 1)")" "0"

# The restarted server registers devices (new ones, and one from before the crash again).
load --mode keepalive --connections 2 --requests 5 --id-prefix after- --received after.txt > after.out 2> after.err
same "restarted server: registrations" "$(result after.out ok)" "5"
same "restarted server: errors" "$(result after.out errors)" "0"
missing=$(sort -u after.txt | comm -23 - <(db "select serial from certificate" | sort -u))
empty "restarted server: certificates stored" "$missing"
load --mode handshake --connections 1 --requests 1 --id-prefix crash- > again.out 2> again.err
same "restarted server: a device registered before the crash, again" "$(result again.out ok)" "1"
same "integrity at the end" "$(db 'PRAGMA integrity_check')" "ok"

kill -TERM "$PID"; wait "$PID"
same "enrolld stops cleanly after the restart" "$?" "0"
[ "$FAILED" -eq 0 ] || { echo "load:"; sed 's/^/    /' load.out load.err | head -20; } >&2
finish
