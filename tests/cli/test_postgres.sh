#!/usr/bin/env bash
# Several enrolld nodes on one PostgreSQL store, under faults. A private
# PostgreSQL (lib_postgres.sh, fsync on) holds the store, set up with
# `enroll admin --db`; three enrolld nodes share it. Devices register
# through all of them (the same devices through different nodes too) with
# bench/bench_load, which writes every serial it received; meanwhile one
# node is killed with kill -9 and restarted, and PostgreSQL itself is
# restarted. Afterwards: every certificate a client received is in the
# store, no serial twice per issuer, every registration's current
# certificate is the newest one committed for it, a 202 operation started on
# one node is answered by another, and every node registers again once the
# database is back (it reconnected by itself) while /healthz told the truth.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_postgres.sh"
cd "$WORK"
LOAD=$(dirname "$ENROLL")/../bench/bench_load
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; pg_stop; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000b0b5
API=2025-07-01-preview
[ -x "$LOAD" ] || { fail "bench_load is not built at $LOAD"; finish; exit 1; }
pg_start "$WORK" || { fail "PostgreSQL did not start"; finish; exit 1; }
STORE_ARGS=(--db "$PG_URL")
. "$(dirname "$0")/lib_service.sh"

# ---- the store, through enroll admin --db ----------------------------------
service_pki
service_store
GROUP_KEY=$(cat group.key)
[ -n "$GROUP_KEY" ] && pass || fail "admin --db: a group with a key"
check "admin --db: groups listed" "$ENROLL" admin group list --db "$PG_URL" --json
same "admin --db: the group is in PostgreSQL" "$(pg_psql "select group_id from enrollment_group")" "fleet"
# A password in the URL is used, never echoed (trust authentication ignores it here).
SECRET_URL="postgresql://enroll:pw-s3cret-4711@127.0.0.1:$PG_PORT/enroll"
check "admin --db: a URL with a password" "$ENROLL" admin group new other --policy p30 --symmetric --db "$SECRET_URL"
lacks "$WORK/.out" "pw-s3cret-4711" "admin --db: the password is not printed"
expect_exit 2 "admin: --data with a URL is a usage error" "$ENROLL" admin group list --data "$PG_URL"
expect_exit 2 "admin: --db with a directory is a usage error" "$ENROLL" admin group list --db data
expect_exit 3 "admin --db: nothing listening is exit 3" "$ENROLL" admin group list --db "postgresql://enroll@127.0.0.1:1/enroll"
contains "$WORK/.err" "127.0.0.1" "admin --db: unreachable names the server"

# CRL numbers count up across nodes, each holding its own copy of the CA
# directory (whose crlnumber file knows only that node's CRLs).
cp -a devices-ca devices-ca-b
check "admin crl on node A" "$ENROLL" admin crl --ca devices --out crl-a1.pem --db "$PG_URL"
check "ca crl from node B's copy of the CA directory" "$ENROLL" ca crl --dir devices-ca-b --out crl-b1.pem
check "admin crl on node A again" "$ENROLL" admin crl --ca devices --out crl-a2.pem --db "$PG_URL"
a1=$(crl_number crl-a1.pem); b1=$(crl_number crl-b1.pem); a2=$(crl_number crl-a2.pem)
[ -n "$a1" ] && [ "$b1" -gt "$a1" ] && [ "$a2" -gt "$b1" ] && pass ||
  fail "CRL numbers do not count up across copies: $a1, $b1, $a2"
expect_exit 0 "node B's CRL verifies (openssl)" openssl crl -in crl-b1.pem -CAfile devices-ca/cert.pem -noout

# ---- three nodes --------------------------------------------------------------
node_start() { # N [LIMITS-JSON]: node N on the store; sets NODE_PORT[N], NODE_PID[N]
  cat > "node$1.json" <<JSON
{"listen": "127.0.0.1:0", "store": "$PG_URL", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2 ${2:-}}
JSON
  enrolld_start "node$1.json" "node$1-$(date +%s%N).log"
  NODE_PORT[$1]=$PORT; NODE_PID[$1]=$EPID
  [ -n "$PORT" ] || { fail "node $1 did not start"; return 1; }
}
declare -a NODE_PORT NODE_PID
for n in 1 2 3; do node_start "$n" || { finish; exit 1; }; done
pass

register_at() { dps_register "$@"; } # PORT RID KEY: the status; the answer in reg.json
leaf_serial() { json reg.json '.registrationState.issuedCertificateChain[0]' | base64 -d | openssl x509 -inform DER -noout -serial | cut -d= -f2; }

"$ENROLL" key new --out dev.key >/dev/null
same "node 1 registers a device" "$(register_at "${NODE_PORT[1]}" dev-pg-1 dev.key)" "200"
first=$(leaf_serial)
same "node 2 registers the same device again" "$(register_at "${NODE_PORT[2]}" dev-pg-1 dev.key)" "200"
second=$(leaf_serial)
[ -n "$first" ] && [ "$first" != "$second" ] && pass || fail "two registrations, two serials ($first, $second)"
same "the registration's certificate is the last answered" \
  "$(pg_psql "select last_certificate_serial from registration where registration_id = 'dev-pg-1'")" "$second"
same "node 3 sees both certificates" "$(pg_psql "select count(*) from certificate where registration_id = 'dev-pg-1'")" "2"

# A 202 operation started on a node that answers 202 at once, polled at
# node 1 while node 4 still waits for the store's write lock (held here by
# another session), then after it committed.
node_start 4 ', "limits": {"assigning_after_ms": 0}' || { finish; exit 1; }
"$ENROLL" key new --out async.key >/dev/null
pg_psql "select pg_advisory_lock(7262465)" "select pg_sleep(3)" > /dev/null &
LOCKER=$!; PIDS+=("$LOCKER")
sleep 0.5
same "node 4 answers 202" "$(register_at "${NODE_PORT[4]}" dev-pg-async async.key)" "202"
OP=$(json reg.json .operationId)
AUTH=$(sas_token "$(device_key "$GROUP_KEY" dev-pg-async)" dev-pg-async)
code=$(curl -s --max-time 30 --cacert root/cert.pem -o op.json -w '%{http_code}' -H "Authorization: $AUTH" \
  "https://127.0.0.1:${NODE_PORT[1]}/$SCOPE/registrations/dev-pg-async/operations/$OP?api-version=$API")
same "node 1: node 4's operation, still committing, is assigning" "$code/$(json op.json .status)" "202/assigning"
code=$(curl -s --max-time 30 --cacert root/cert.pem -o op.json -w '%{http_code}' -H "Authorization: $AUTH" \
  "https://127.0.0.1:${NODE_PORT[1]}/$SCOPE/registrations/dev-pg-async/operations/1.not-one-of-ours?api-version=$API")
same "node 1: an operation that never was is 404" "$code" "404"
wait "$LOCKER"
for _ in $(seq 1 100); do
  code=$(curl -s --max-time 30 --cacert root/cert.pem -o op.json -w '%{http_code}' -H "Authorization: $AUTH" \
    "https://127.0.0.1:${NODE_PORT[1]}/$SCOPE/registrations/dev-pg-async/operations/$OP?api-version=$API")
  [ "$code" = 200 ] && break
  sleep 0.05
done
same "node 1 answers node 4's operation" "$code" "200"
same "  with its certificate" "$(json op.json .status)" "assigned"
kill -TERM "${NODE_PID[4]}"; wait "${NODE_PID[4]}" 2>/dev/null

# ---- load through all nodes, a node killed, PostgreSQL restarted -----------------
load() { # PORT OUT RECEIVED ARGS...
  local port=$1 out=$2 received=$3; shift 3
  "$LOAD" --port "$port" --scope "$SCOPE" --group-key "$GROUP_KEY" --ca root/cert.pem --no-ceiling \
    --mode keepalive --keys 60 --id-prefix pgload- --received "$received" "$@" > "$out" 2> "$out.err"
}
result() { sed -n "s/^RESULT .* $2=\([0-9]*\).*/\1/p" "$1"; }
# The same 300 devices through every node: a device may be renewed on one
# node while another node renews it too.
for n in 1 2 3; do
  load "${NODE_PORT[$n]}" "load$n.out" "received$n.txt" --connections 2 --seconds 8 --devices 300 &
  LOADS[$n]=$!; PIDS+=("${LOADS[$n]}")
done
for _ in $(seq 1 200); do
  [ "$(cat received*.txt 2>/dev/null | wc -l)" -ge 100 ] && break
  sleep 0.05
done
before=$(cat received*.txt | wc -l)
[ "$before" -ge 100 ] && pass || fail "only $before certificates before the faults"
kill -9 "${NODE_PID[2]}"; wait "${NODE_PID[2]}" 2>/dev/null
node_start 2 || true
load "${NODE_PORT[2]}" load2b.out received2b.txt --connections 2 --seconds 5 --devices 300 &
LOADS[4]=$!; PIDS+=("${LOADS[4]}")
sleep 1
# /healthz while the database is down says so (a balancer sends devices elsewhere).
pg_halt || fail "PostgreSQL did not stop"
for _ in $(seq 1 100); do
  hc=$(curl -s --max-time 5 --cacert root/cert.pem -o health.json -w '%{http_code}' "https://127.0.0.1:${NODE_PORT[1]}/healthz")
  [ "$hc" = 503 ] && break
  sleep 0.1
done
same "/healthz is 503 while PostgreSQL is down" "$hc" "503"
sleep 1
pg_resume || fail "PostgreSQL did not come back"
for n in 1 2 3 4; do wait "${LOADS[$n]}" || fail "load $n did not run to its end"; done
for n in 1 2 3; do
  [ "$(result "load$n.out" ok)" -gt 0 ] && pass || fail "node $n registered nothing"
done
[ $(( $(result load1.out errors) + $(result load3.out errors) )) -gt 0 ] && pass ||
  fail "no request failed while PostgreSQL was down: was it?"
grep -hq '"route":"register".*"status":503' node1-*.log node3-*.log && pass ||
  fail "nodes answered 503 while the store was down"
grep -hq '"route":"register".*"status":500' node*.log && fail "a node answered 500 (not 503) for the store" || pass

# ---- what the clients hold is what the store holds -----------------------------------
cat received*.txt | sort > received.all
empty "no serial received twice" "$(uniq -d received.all | head -3)"
pg_psql "select serial from certificate" | sort -u > stored.txt
empty "every received certificate is in the store" "$(comm -23 received.all stored.txt | head -5)"
empty "no serial twice per issuer" \
  "$(pg_psql "select issuer, serial from certificate group by issuer, serial having count(*) > 1")"
empty "every registration's certificate is its newest" "$(pg_psql "
  select r.registration_id from registration r
  join lateral (select serial from certificate c where c.registration_id = r.registration_id
                order by c.id desc limit 1) newest on true
  where r.last_certificate_serial is distinct from newest.serial")"
[ "$(pg_psql "select count(*) from registration where registration_id like 'pgload-%'")" -gt 50 ] && pass ||
  fail "the load made few registrations"

# ---- every node works again without a restart --------------------------------------
for n in 1 2 3; do
  hc=$(curl -s --max-time 5 --cacert root/cert.pem -o /dev/null -w '%{http_code}' "https://127.0.0.1:${NODE_PORT[$n]}/healthz")
  for _ in $(seq 1 100); do
    [ "$hc" = 200 ] && break
    sleep 0.1
    hc=$(curl -s --max-time 5 --cacert root/cert.pem -o /dev/null -w '%{http_code}' "https://127.0.0.1:${NODE_PORT[$n]}/healthz")
  done
  same "node $n: /healthz ok again" "$hc" "200"
  load "${NODE_PORT[$n]}" "after$n.out" "after$n.txt" --connections 1 --requests 5 --devices 5 --id-prefix "after$n-"
  same "node $n registers after the database came back" "$(result "after$n.out" ok)" "5"
done
missing=$(cat after*.txt | sort -u | comm -23 - <(pg_psql "select serial from certificate" | sort -u))
empty "  and those certificates are stored" "$missing"

for n in 1 2 3; do kill -TERM "${NODE_PID[$n]}"; wait "${NODE_PID[$n]}"; same "node $n stops cleanly" "$?" "0"; done
[ "$FAILED" -eq 0 ] || { echo "loads:"; tail -n 3 load*.out load*.err | sed 's/^/    /'; } >&2
finish
