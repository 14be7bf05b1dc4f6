#!/usr/bin/env bash
# enrolld under load from hostile clients (issue 10, section 3), on
# 127.0.0.1 only, every loop bounded in count and time:
# - a flood of refused registrations (bad SAS tokens, as fast as one curl
#   goes) grows the audit trail by a bounded number of rows, every refusal
#   accounted for, and a legitimate device still registers; retention prunes;
# - under a 256-descriptor limit, 240 clients that send one byte a second
#   are dropped at the handshake deadline while devices register, with
#   enrolld's CPU and log bounded (with the default cap, and with a cap
#   above the descriptor limit, where accept runs out of descriptors).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000111
API=2025-07-01-preview
service_pki
service_store
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2}
JSON
enrolld_start enrolld.json enrolld.log
URL=https://127.0.0.1:$PORT
rows() { sqlite3 data/enroll.db "select count(*) from audit_event"; }

# ---- a flood of refusals ----
BEFORE=$(rows)
jq -n '{registrationId: "flood-1"}' > flood.json
: > codes.txt
end=$(( $(date +%s) + 4 ))
for _ in $(seq 1 40); do
  [ "$(date +%s)" -ge "$end" ] && break
  urls=(); for _ in $(seq 1 200); do urls+=("$URL/$SCOPE/registrations/flood-1/register?api-version=$API"); done
  curl -s --max-time 20 --cacert root/cert.pem -X PUT -H 'Authorization: SharedAccessSignature sr=x&sig=bad&se=1&skn=registration' \
    -H 'Content-Type: application/json' --data-binary @flood.json -o /dev/null -w '%{http_code}\n' "${urls[@]}" >> codes.txt
done
REFUSED=$(grep -c '401$' codes.txt) # curl writes only the first body to -o: the rest precede their codes
SENT=$(wc -l < codes.txt)
same "every flood request was refused 401" "$REFUSED" "$SENT"
[ "$REFUSED" -ge 400 ] && pass || fail "the flood made only $REFUSED requests"
sleep 2.5 # the workers' last second, then the committer's batch
ADDED=$(( $(rows) - BEFORE ))
# At most (samples + one count) per errorCode, worker and second: 2 x 11 x ~7 s.
[ "$ADDED" -le 160 ] && pass || fail "$REFUSED refusals wrote $ADDED audit rows"
[ "$ADDED" -lt $(( REFUSED / 4 )) ] && pass || fail "$REFUSED refusals wrote $ADDED audit rows (not aggregated)"
ITEMIZED=$(sqlite3 data/enroll.db "select count(*) from audit_event where registration_id='flood-1'")
COUNTED=$(sqlite3 data/enroll.db "select coalesce(sum(cast(substr(detail, 1, instr(detail, ' ') - 1) as integer)), 0)
  from audit_event where reason_code = 401001 and detail like '% more refusals with errorCode 401001 %'")
same "every refusal is accounted for (itemized + counted)" "$(( ITEMIZED + COUNTED ))" "$REFUSED"
DB_BYTES=$(( $(stat -c %s data/enroll.db) + $(stat -c %s data/enroll.db-wal 2>/dev/null || echo 0) ))
echo "flood: $REFUSED refused requests in ~4 s (2 cores shared with curl): $ADDED audit rows ($ITEMIZED itemized), store $DB_BYTES bytes"
"$ENROLL" key new --out dev.key >/dev/null
check "a device registers after the flood" "$ENROLL" device provision --url "$URL" --scope "$SCOPE" \
    --trust root/cert.pem --registration-id legit-1 --group-key-file group.key --key dev.key --store s1 --json --timeout 20
[ "$(wc -c < enrolld.log)" -le 65536 ] && pass || fail "the flood grew the log to $(wc -c < enrolld.log) bytes"
contains enrolld.log '"event":"suppressed","worker"' "repeated refusal lines are counted, not each written"
kill -TERM "$EPID"; wait "$EPID"

# Retention: only the newest audit.max_rows are kept (pruned within seconds).
jq '. + {"audit": {"max_rows": 25}}' enrolld.json > retain.json
enrolld_start retain.json retain.log
n=; for _ in $(seq 1 40); do n=$(rows); [ "$n" -le 26 ] && break; sleep 0.25; done
[ "$n" -le 26 ] && pass || fail "retention kept $n audit rows (max_rows 25)"
kill -TERM "$EPID"; wait "$EPID"

# ---- slow clients under a 256-descriptor limit ----
# slow_clients N SECONDS: N connections, each sending a TLS record header one
# byte a second (a handshake that never completes), for SECONDS at most.
slow_clients() {
  ( trap '' PIPE
    fds=()
    for _ in $(seq 1 "$1"); do exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" 2>/dev/null && fds+=("$fd"); done
    for byte in '\x16' '\x03' '\x01' '\x02' '\x00' '\x01' '\x00' '\x01' '\xfc' '\x03' '\x03' '\x00' '\x00' '\x00' '\x00'; do
      [ "$SECONDS" -ge "$2" ] && break
      for fd in "${fds[@]}"; do printf "$byte" >&"$fd" 2>/dev/null; done
      sleep 1
    done ) &
  SLOW=$!; PIDS+=("$SLOW")
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
slow_phase() { # CONFIG LABEL
  : > "$2.log"
  (exec prlimit --nofile=256:256 "$ENROLLD" --config "$1" 2>> "$2.log") & EPID=$!; PIDS+=("$EPID")
  PORT=; for _ in $(seq 1 400); do PORT=$(grep -ao '"port":[0-9]*' "$2.log" | head -1 | cut -d: -f2); [ -n "$PORT" ] && break; sleep 0.05; done
  URL=https://127.0.0.1:$PORT
  local t0 c0 t1 c1 ok=0
  sleep 0.5
  t0=$(date +%s%N); c0=$(cpu_ticks "$EPID")
  SECONDS=0
  slow_clients 240 12
  sleep 1.5
  for i in 1 2 3; do
    "$ENROLL" key new --out "$2-$i.key" --force >/dev/null
    "$ENROLL" device provision --url "$URL" --scope "$SCOPE" --trust root/cert.pem --registration-id "$2-$i" \
      --group-key-file group.key --key "$2-$i.key" --store "s-$2-$i" --json --timeout 30 > "$2-$i.out" 2>&1 && ok=$((ok + 1))
  done
  wait "$SLOW"
  t1=$(date +%s%N); c1=$(cpu_ticks "$EPID")
  local ms=$(( (t1 - t0) / 1000000 )) cpu=$(( (c1 - c0) * 10 ))
  local pct=$(( cpu * 100 / (ms > 0 ? ms : 1) )) bytes
  bytes=$(wc -c < "$2.log")
  same "$2: 3 devices registered during the slow clients" "$ok" "3"
  [ "$pct" -le 25 ] && pass || fail "$2: enrolld used $pct% of a core over ${ms} ms"
  [ "$bytes" -le 65536 ] && pass || fail "$2: the log grew to $bytes bytes"
  contains "$2.log" '"reason":"handshake_timeout"' "$2: slow handshakes are dropped at the deadline"
  echo "$2: 240 slow clients, ${ms} ms: enrolld CPU ${cpu} ms = ${pct}% of one core (2 cores), log $bytes bytes, $ok/3 devices registered"
  kill -TERM "$EPID"; wait "$EPID"
}
jq '. + {"limits": {"handshake_timeout_seconds": 3, "request_timeout_seconds": 5}}' enrolld.json > slow.json
slow_phase slow.json slow-capped
contains slow-capped.log '"max_connections":192' "the default cap comes from the descriptor limit"
# A cap above what the descriptors allow: accept runs out of them.
jq '. + {"limits": {"handshake_timeout_seconds": 3, "request_timeout_seconds": 5, "max_connections": 1000}}' \
  enrolld.json > emfile.json
slow_phase emfile.json slow-emfile
contains slow-emfile.log '"event":"accept_failed"' "accept ran out of descriptors"

finish
