#!/usr/bin/env bash
# enrolld against careless and hostile input (issue 10, section 3): the
# device's payload is bounded and never echoed or stored; a second enrolld on
# a served address, a missing store and a registration config without
# id_scope refuse to start; /healthz follows the store, and every 503 and
# 429 carries Retry-After. Every server listens on 127.0.0.1 only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000110
API=2025-07-01-preview

service_pki
service_store
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2,
 "limits": {"assigning_after_ms": 20000}}
JSON
enrolld_start enrolld.json enrolld.log
URL=https://127.0.0.1:$PORT
CURL=(curl -s --max-time 20 --cacert root/cert.pem)
GROUP_KEY=$(cat group.key)
register() { # RID BODY-FILE -> answer in $WORK/.out, headers in $WORK/.hdr, status echoed
  "${CURL[@]}" -o "$WORK/.out" -D "$WORK/.hdr" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
    -H "Authorization: $(sas_token "$(device_key "$GROUP_KEY" "$1")" "$1")" --data-binary @"$2" \
    "$URL/$SCOPE/registrations/$1/register?api-version=$API"
}

# ---- the device's payload: at most 4 KiB, neither echoed nor stored ----
"$ENROLL" key new --out dev.key >/dev/null
"$ENROLL" csr new --key dev.key --dn CN=pay-1 --format b64 --out csr.b64 2>/dev/null
MARK=payload-marker-$RANDOM$RANDOM
jq -n --arg csr "$(cat csr.b64)" --arg m "$MARK" '{registrationId: "pay-1", csr: $csr, payload: {model: $m}}' > small.json
same "a registration with a small payload" "$(register pay-1 small.json)" "200"
same "the answer carries no payload" "$(json "$WORK/.out" '.registrationState | has("payload")')" "false"
lacks "$WORK/.out" "$MARK" "the device's payload is not echoed"
same "the stored operation holds no payload" \
  "$(sqlite3 data/enroll.db "select count(*) from operation where result_json like '%$MARK%'")" "0"
big=$(head -c 5000 /dev/zero | tr '\0' 'p')
jq -n --arg csr "$(cat csr.b64)" --arg b "$big" '{registrationId: "pay-1", csr: $csr, payload: {blob: $b}}' > big.json
same "a 5 KB payload is refused 413" "$(register pay-1 big.json)" "413"
same "with errorCode 413002" "$(json "$WORK/.out" .errorCode)" "413002"
contains "$WORK/.out" "the limit is 4096" "the message gives the limit"
same "nothing was issued for it" "$(sqlite3 data/enroll.db "select count(*) from certificate where registration_id='pay-1'")" "1"

# ---- a second enrolld on the address this one serves refuses to start ----
sed "s/127.0.0.1:0/127.0.0.1:$PORT/" enrolld.json > second.json
timeout 10 "$ENROLLD" --config second.json 2> second.log & SECOND=$!; PIDS+=("$SECOND")
sleep 1
if kill -0 "$SECOND" 2>/dev/null; then fail "a second enrolld on 127.0.0.1:$PORT is running"; kill -9 "$SECOND"; else pass; fi
wait "$SECOND"; same "it exits 3" "$?" "3"
contains second.log "listen 127.0.0.1:$PORT: the address is in use" "the message names the address"
lacks second.log '"event":"listening"' "it never listened"

# ---- a missing store is an error unless asked for; id_scope is required ----
sed 's/"data_dir": "data"/"data_dir": "nodata"/' enrolld.json > typo.json
expect_exit 3 "a data_dir without a store" timeout 10 "$ENROLLD" --config typo.json
contains "$WORK/.err" "nodata holds no store (no enroll.db)" "the message says what is missing, where"
contains "$WORK/.err" '"create_store": true' "and what to do"
[ ! -e nodata ] && pass || fail "the typo'd data_dir was created"
sed 's/"data_dir": "data"/"data_dir": "fresh", "create_store": true/' enrolld.json > create.json
MAIN_EPID=$EPID
enrolld_start create.json create.log
[ -n "$PORT" ] && [ -f fresh/enroll.db ] && pass || fail "create_store: true makes the store ($(cat create.log))"
kill -TERM "$EPID"; wait "$EPID"
EPID=$MAIN_EPID # the first enrolld serves on
PORT=$(grep -ao '"port":[0-9]*' enrolld.log | head -1 | cut -d: -f2)
printf '{"listen": "127.0.0.1:0", "data_dir": "data", "tls": {"cert": "server.pem", "key": "server.key"}}' > noscope.json
expect_exit 3 "a store and no id_scope" timeout 10 "$ENROLLD" --config noscope.json
contains "$WORK/.err" 'not "id_scope"' "the message names id_scope"

# ---- /healthz follows the store; every 503 carries Retry-After ----
health() { "${CURL[@]}" -o "$WORK/.health" -D "$WORK/.hhdr" -w '%{http_code}' "$URL/healthz"; }
same "healthz ok" "$(health)" "200"
# Another process holds the write lock longer than the store waits (5 s).
(echo ".timeout 5000"; echo "BEGIN IMMEDIATE;"; echo ".shell touch locked"; sleep 16; echo "ROLLBACK;") |
  sqlite3 -bail data/enroll.db > locker.out 2>&1 & LOCKER=$!; PIDS+=("$LOCKER")
for _ in $(seq 1 200); do [ -e locked ] && break; sleep 0.05; done
[ -e locked ] && pass || fail "another process holds the store's write lock: $(cat locker.out)"
if sqlite3 data/enroll.db "BEGIN IMMEDIATE; ROLLBACK;" 2> probe.err; then
  fail "the store is not locked after all: $(cat locker.out)"; else contains probe.err "locked" "the store is locked"; fi
jq -n '{registrationId: "locked-1"}' > classic.json
same "a registration while the store is locked: 503" "$(register locked-1 classic.json)" "503"
same "errorCode 503001" "$(json "$WORK/.out" .errorCode)" "503001"
grep -qi '^Retry-After: [0-9]' "$WORK/.hdr" && pass || fail "the 503 carries Retry-After"
code=; for _ in $(seq 1 40); do code=$(health); [ "$code" = 503 ] && break; sleep 0.25; done
same "healthz 503 while the store cannot commit" "$code" "503"
grep -qi '^Retry-After: [0-9]' "$WORK/.hhdr" && pass || fail "the health 503 carries Retry-After"
same "it says why" "$(json "$WORK/.health" .store)" "cannot commit"
wait "$LOCKER"
code=; for _ in $(seq 1 120); do code=$(health); [ "$code" = 200 ] && break; sleep 0.25; done
same "healthz ok again once the store takes writes" "$code" "200"
jq -n '{registrationId: "locked-2"}' > classic2.json
same "and registrations go through" "$(register locked-2 classic2.json)" "200"
kill -TERM "$EPID"; wait "$EPID"

# A full disk, as a file size limit: commits fail with EFBIG.
SIZE=$(( $(stat -c %s data/enroll.db) + 96 * 1024 ))
(exec prlimit --fsize=$SIZE "$ENROLLD" --config enrolld.json 2> full.log) & FPID=$!; PIDS+=("$FPID")
PORT=; for _ in $(seq 1 400); do PORT=$(grep -ao '"port":[0-9]*' full.log | head -1 | cut -d: -f2); [ -n "$PORT" ] && break; sleep 0.05; done
URL=https://127.0.0.1:$PORT
code=; for i in $(seq 1 30); do jq -n --arg id "full-$i" '{registrationId: $id}' > full.json
  code=$(register "full-$i" full.json); [ "$code" = 503 ] && break; done
same "a registration on a full disk: 503" "$code" "503"
grep -qi '^Retry-After: [0-9]' "$WORK/.hdr" && pass || fail "that 503 carries Retry-After"
same "healthz 503 on a full disk" "$(health)" "503"
grep -qi '^Retry-After: [0-9]' "$WORK/.hhdr" && pass || fail "with Retry-After"
"${CURL[@]}" "$URL/metrics" > full-metrics.txt
contains full-metrics.txt "enroll_store_ok 0" "metrics say the store is not ok"
kill -TERM "$FPID"; wait "$FPID"

finish
