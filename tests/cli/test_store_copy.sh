#!/usr/bin/env bash
# `enroll admin store copy`: a SQLite store that has served devices (CAs,
# a policy, groups, registrations, certificates, a revocation, audit events,
# a CRL number) moved into an empty PostgreSQL database; every table's count
# equals SQLite's (counted here with sqlite3 and psql, not by enroll); enrolld
# then serves from the copy (new devices and renewals: the copied ids do not
# collide); a second copy into the same database is refused and changes
# nothing; and the copy goes back into a new SQLite directory, equal again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_postgres.sh"
cd "$WORK"
LOAD=$(dirname "$ENROLL")/../bench/bench_load
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; pg_stop; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000c0b7
[ -x "$LOAD" ] || { fail "bench_load is not built at $LOAD"; finish; exit 1; }
pg_start "$WORK" || { fail "PostgreSQL did not start"; finish; exit 1; }
. "$(dirname "$0")/lib_service.sh"

# ---- a SQLite store that has served devices ------------------------------------
service_pki
service_store
GROUP_KEY=$(cat group.key)
"$ENROLL" admin group new spare --policy p30 --symmetric --data data >/dev/null
cat > sqlite.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2}
JSON
enrolld_start sqlite.json sqlite.log
load() { # PORT ARGS...
  local port=$1; shift
  "$LOAD" --port "$port" --scope "$SCOPE" --group-key "$GROUP_KEY" --ca root/cert.pem --no-ceiling \
    --mode keepalive --connections 2 "$@"
}
load "$PORT" --requests 60 --devices 40 --id-prefix copy- > load1.out 2>&1
grep -q 'RESULT .* ok=60 ' load1.out && pass || fail "60 registrations on SQLite: $(grep RESULT load1.out)"
kill -TERM "$EPID"; wait "$EPID"
serial=$(sqlite3 data/enroll.db "select serial from certificate order by id limit 1")
check "a revocation (keyCompromise)" "$ENROLL" admin cert revoke --serial "$serial" --reason keyCompromise --data data
check "a CRL (a CRL number in the store)" "$ENROLL" admin crl --ca devices --out crl1.pem --data data

TABLES="ca credential_policy enrollment_group individual_enrollment registration certificate operation audit_event
  compromised_key crl_number"
sqlite_counts() { for t in $TABLES; do echo "$t $(sqlite3 "$1/enroll.db" "select count(*) from $t")"; done; }
pg_counts() { for t in $TABLES; do echo "$t $(pg_psql "select count(*) from $t")"; done; }
sqlite_counts data > sqlite.counts
[ "$(awk '$1 == "certificate" {print $2}' sqlite.counts)" -ge 60 ] && pass || fail "few certificates to copy"

# ---- into PostgreSQL ---------------------------------------------------------------
expect_exit 2 "store copy without --to" "$ENROLL" admin store copy --from data
expect_exit 3 "store copy from a directory holding no store" "$ENROLL" admin store copy --from nothing-here --to "$PG_URL"
[ ! -e nothing-here ] && pass || fail "a missing source was created"
check "store copy into PostgreSQL" "$ENROLL" admin store copy --from data --to "$PG_URL" --json
cp "$WORK/.out" copy.json
contains "$WORK/.err" "copying certificate:" "store copy: progress on stderr"
same "store copy: it says it verified" "$(json copy.json .verified)" "true"
pg_counts > pg.counts
same "every table's count in PostgreSQL equals SQLite's (sqlite3 and psql)" "$(cat pg.counts)" "$(cat sqlite.counts)"
same "the report's certificates are what psql counts" "$(json copy.json .tables.certificate)" \
  "$(pg_psql "select count(*) from certificate")"
same "every certificate, byte for byte (psql against sqlite3)" \
  "$(pg_psql "select id || ':' || serial || ':' || encode(der, 'hex') from certificate order by id" | md5sum)" \
  "$(sqlite3 data/enroll.db "select id || ':' || serial || ':' || lower(hex(der)) from certificate order by id" | md5sum)"
same "every audit event (psql against sqlite3)" \
  "$(pg_psql "select id || '|' || at || '|' || kind || '|' || coalesce(registration_id, '') || '|' || outcome || '|' || coalesce(detail, '') from audit_event order by id" | md5sum)" \
  "$(sqlite3 data/enroll.db "select id || '|' || at || '|' || kind || '|' || coalesce(registration_id, '') || '|' || outcome || '|' || coalesce(detail, '') from audit_event order by id" | md5sum)"
same "a revocation copied with its reason" "$(pg_psql "select revoked || ':' || revocation_reason from certificate where serial = '$serial'")" "1:1"

expect_exit 1 "a second copy into a store that holds one is refused" \
  "$ENROLL" admin store copy --from data --to "$PG_URL"
contains "$WORK/.err" "not empty" "  and says why"
same "  and changes nothing" "$(pg_counts)" "$(cat sqlite.counts)"

# ---- enrolld serves from the copy ----------------------------------------------------
cat > pg.json <<JSON
{"listen": "127.0.0.1:0", "store": "$PG_URL", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2}
JSON
enrolld_start pg.json pg.log
load "$PORT" --requests 30 --devices 60 --id-prefix copy- > load2.out 2>&1
grep -q 'RESULT .* ok=30 ' load2.out && pass || fail "30 registrations (renewals and new devices) from the copy: $(grep RESULT load2.out)"
before=$(awk '$1 == "certificate" {print $2}' sqlite.counts)
same "their certificates are added to the copied ones" "$(pg_psql "select count(*) from certificate")" "$((before + 30))"
kill -TERM "$EPID"; wait "$EPID"
check "a CRL from the copy" "$ENROLL" admin crl --ca devices --out crl2.pem --db "$PG_URL"
[ "$(crl_number crl2.pem)" -gt "$(crl_number crl1.pem)" ] && pass || fail "the CRL number went back after the copy"

# ---- and back into a new SQLite directory --------------------------------------------
check "store copy back into SQLite" "$ENROLL" admin store copy --from "$PG_URL" --to back --json
same "every table's count in the new SQLite store equals PostgreSQL's" "$(sqlite_counts back)" "$(pg_counts)"
same "the SQLite copy passes its integrity check" "$(sqlite3 back/enroll.db 'PRAGMA integrity_check')" "ok"
finish
