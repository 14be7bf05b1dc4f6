#!/usr/bin/env bash
# Issue 16's "flat" target: the registration rate with 10 million
# certificates already in the store within 10% of an empty store, both
# measured in this run on this machine. Sets up the CA, the store and enrolld
# as bench/run_load.sh does (bench/lib.sh: "workers": 2, SQLite WAL,
# synchronous=FULL) in a scratch directory on disk, then:
#   run 1, the empty store: bench_load keep-alive (CONNECTIONS connections,
#      SECONDS s), as run_load.sh's keep-alive run; enrolld stopped.
#   the fill: FLAT_CERTS devices written into that store with the sqlite3
#      CLI (one transaction, journal off while it runs, WAL again after),
#      each as a real DPS registration leaves it (see "The fill" below);
#      the schema compared with what enrolld's migrations made; row counts
#      checked; the file fsync'ed before the clock starts again.
#   run 2, the filled store: its indexes read once (as a running server
#      holds them in memory), enrolld restarted on it, the same bench_load
#      run with new devices whose ids fall among the stored ones.
# Prints both rates and p99s, their ratio, PASS/FAIL against the 10%, the
# store's size beside the machine's RAM (and, for each run, what enrolld
# read from the disk), then checks run 2's rows as
# run_load.sh does (no serial twice; at least as many new certificates as
# registrations answered; every registration of the run a new device;
# PRAGMA integrity_check when the store is small enough for it to be cheap).
#
#   bench/run_flat.sh [BUILD_DIR]        (default: build)
# Environment: FLAT_CERTS (10000000: devices loaded, one registration, one
#   certificate and one operation each), SECONDS (10, per run; SECONDS_RUN
#   wins if both), CONNECTIONS (64), WORKERS (2), KEEP_WORK=1 to keep the
#   scratch directory (the filled store with it), FLAT_CACHE_MB (256: the
#   fill's SQLite page cache), FLAT_INTEGRITY=1 to run PRAGMA
#   integrity_check after run 2 whatever the size (default: only up to 2
#   million rows; it reads the whole file), FLAT_TMP (/tmp: where the
#   scratch directory goes; must be on disk, not tmpfs), FLAT_WAIT (3600:
#   seconds to wait for another benchmark on this machine to end before a
#   timed run), FLAT_ROUNDS (1: with more, the empty and the filled store
#   alternate, round after round, kept apart in two directories: the
#   figures are the medians, for a noisy machine; at most 9), FLAT_AUDIT=0
#   to load no audit events (the audit table then is not full, and enrolld's
#   retention deletes nothing: to tell its share of the difference), ENROLLD
#   (another enrolld binary), FLAT_WARM=0 not to read the filled store's
#   indexes before its runs (see "warm" below).
# Exit status: 0; 1 when a run or a check failed; 2 for a wrong setting.
#
# The fill, and why it is shaped so:
# - One registration, one certificate and one operation per device: a
#   device's first DPS registration writes exactly these (plus an audit
#   event), so 10 million certificates are 10 million registrations as well,
#   and every index a new registration touches (registration's primary key,
#   certificate's UNIQUE (issuer, serial) and by-registration index,
#   operation's primary key and by-registration index) holds 10 million
#   entries: the largest tables for a new device's lookups. (5 million
#   devices with a renewal each would hold as many certificates but half the
#   registrations: a milder test of the same path.)
# - The row's values take the shapes of the real code's, copied from run
#   1's first registration: serials are 20 bytes, the first 01..7F (as
#   ca_serial_new in src/ca/issue.c), written as 40 upper-case hex digits;
#   the certificate's DER is run 1's certificate with that serial put in its
#   place (same length, ~435 bytes; it parses, its signature no longer
#   verifies, its subject and dates stay run 1's: nothing on the
#   registration path reads a stored DER); spki_sha256 64 hex digits; subject
#   CN=<id>; not_before/not_after the policy's offsets from issued_at;
#   issued_at spread evenly over the year before run 1; operation ids
#   "<hex time>.<uuid4>" (enr_dps_operation_id_new); result_json run 1's
#   answer with this device's ids, etag and times (whatever enrolld keeps
#   there: ~450 bytes since migration 9 names the certificate in the
#   operation's certificate_issuer/serial, which the fill sets too; ~3.6 kB
#   before, with the chain and trust bundle).
# - Audit events: enrolld keeps the newest audit.max_rows (1,000,000 by
#   default), so the store gets the newest loaded devices' events up to that
#   bound: with 10 million devices the audit table is full and enrolld's
#   pruner deletes as many events as run 2 adds, as on a real server.
# - Device ids: "dev-" and 10 hex digits, numbered with a stride that spreads
#   them over the whole range (as serial numbers or MACs handed out in
#   order); run 2's ids are "dev-", the round's digit and bench_load's
#   device number (at most 7 digits): "dev-1<n>" in the first round. Never
#   equal to a stored id (shorter), but sorted among them (among those
#   beginning with that digit, a sixteenth of them), so a new registration's
#   index entries land among the stored ones as real new devices' would,
#   not at one end.
# - The fill: rows in time order (rowids as enrolld would assign them),
#   generated by generate_series in chunks of 1,000,000 devices inside one
#   transaction (progress printed after each chunk); journal_mode OFF and
#   synchronous OFF for the fill alone. Every index gets its keys in
#   increasing order, so each insert appends (about twice as fast as
#   keys in random order: ~30 s a million devices here): ids and times grow
#   with the device number, and so do serials, whose first 4 bytes count up
#   (each 01..7F, in base 127) before 16 random ones (so loaded serials'
#   bytes 2-4 are below 80; run 2's serials are enrolld's own, random, and
#   land anywhere among them). The indexes stay in place (dropping and
#   re-creating them would reorder the schema, which must stay as enrolld's
#   migrations made it).

# SECONDS is bash's own clock: elapsed seconds, counting on from a value
# given in the environment. Read it first thing: a value above 0 is the
# caller's; then restart it to time this script.
SECONDS_RUN=${SECONDS_RUN:-$([ "$SECONDS" -gt 0 ] && echo "$SECONDS" || echo 10)}
SECONDS=0
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
. "$SRC/bench/lib.sh"
bench_programs run_flat openssl sqlite3 jq
[ "$(sqlite3 :memory: 'select count(*) from generate_series(1, 3)' 2>/dev/null)" = 3 ] ||
  { echo "run_flat: $(command -v sqlite3) has no generate_series (the fill needs it): install a newer sqlite3" >&2; exit 1; }
FLAT_CERTS=${FLAT_CERTS:-10000000}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-2}
FLAT_CACHE_MB=${FLAT_CACHE_MB:-256}
FLAT_WAIT=${FLAT_WAIT:-3600}
FLAT_TMP=${FLAT_TMP:-/tmp}
FLAT_ROUNDS=${FLAT_ROUNDS:-1}
for v in FLAT_CERTS SECONDS_RUN CONNECTIONS WORKERS FLAT_CACHE_MB FLAT_WAIT FLAT_ROUNDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "run_flat: $v must be a positive integer, not '${!v}'" >&2; exit 2; }
done
# Device ids are "dev-" and 10 hex digits, serials' first 4 bytes count in
# base 127 (127^4 = 260 million): both need a stride of at least 1.
[ "$FLAT_CERTS" -le 100000000 ] || { echo "run_flat: FLAT_CERTS at most 100000000" >&2; exit 2; }
[ "$FLAT_ROUNDS" -le 9 ] || { echo "run_flat: FLAT_ROUNDS at most 9" >&2; exit 2; }
[ "$SECONDS_RUN" -le 600 ] || { echo "run_flat: SECONDS at most 600 (bench_load's bound)" >&2; exit 2; }
# Devices per run: more than a run registers, so none repeats (a repeat is
# a renewal, not a new device); bench_load takes at most 2,000,000.
DEVICES=$(( SECONDS_RUN * 6000 < 60000 ? 60000 : SECONDS_RUN * 6000 ))
SCOPE=0ne0000bench

[ -d "$FLAT_TMP" ] || { echo "run_flat: FLAT_TMP=$FLAT_TMP is not a directory" >&2; exit 2; }
WORK=$(mktemp -d "$FLAT_TMP/enroll-flat-XXXXXX") || { echo "run_flat: cannot make a directory in $FLAT_TMP" >&2; exit 1; }
PID='' LOAD_PID=''
cleanup() {
  [ -n "$LOAD_PID" ] && kill -9 "$LOAD_PID" 2>/dev/null
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  [ -n "${KEEP_WORK:-}" ] && echo "run_flat: kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK" || exit 1
die() { echo "run_flat: $*" >&2; exit 1; }
[ "$(stat -f -c %T "$WORK")" != tmpfs ] ||
  die "$WORK is on tmpfs: the commits' fsyncs would prove nothing (set FLAT_TMP to a directory on disk)"
DB=data/enroll.db
q() { sqlite3 -bail "$DB" "$@"; } # one query on the store (enrolld stopped)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f GB", b / 1e9 }'; }

. "$SRC/bench/lib.sh"
bench_pki_store
bench_enrolld_config

MEM_BYTES=$(awk '/^MemTotal:/ { print $2 * 1024 }' /proc/meminfo)

start_enrolld() { # LOG TRIES DELAY: enrolld on the store in data/, PORT set
  "$ENROLLD" --config enrolld.json 2> "$1" &
  PID=$!
  bench_wait_ports "$1" "$2" "$3"
}
stop_enrolld() {
  kill -TERM "$PID"
  wait "$PID"
  local rc=$?
  PID=''
  [ "$rc" = 0 ] || echo "  WARNING: enrolld exited with status $rc after SIGTERM"
}
others() { pgrep -f bench_load | grep -vx "${LOAD_PID:-0}" | tr '\n' ' '; } # bench_load processes not ours
wait_quiet() { # NAME: no other load generator on this machine (2 cores): the rates would mean nothing
  local waited=0 o
  while o=$(others); [ -n "$o" ]; do
    [ "$waited" = 0 ] && echo "run_flat: another benchmark is running (bench_load pids $o): waiting for it to end" >&2
    [ "$waited" -lt "$FLAT_WAIT" ] ||
      die "another benchmark has been running for ${FLAT_WAIT}s (bench_load pids $o): the rates would not be comparable; run again when the machine is quiet (FLAT_WAIT sets the wait)"
    sleep 5
    waited=$((waited + 5))
  done
  [ "$waited" = 0 ] || echo "run_flat: no other bench_load after ${waited}s" >&2
  # Anything else busy (a build, a test suite): wait up to 2 minutes for the
  # cores to idle (below 25% busy over 2 s), then measure anyway, noted.
  local busy
  for waited in $(seq 0 5 120); do
    busy=$(cpu_busy)
    [ "$busy" -lt 25 ] && return 0
    [ "$waited" = 0 ] && echo "run_flat: the cores are ${busy}% busy with something else: waiting up to 2 minutes" >&2
    sleep 3
  done
  echo "run_flat: the cores are still ${busy}% busy; measuring anyway" >&2
  echo "$busy" > busy.$1
}
cpu_busy() { # percent of the machine's CPU time not idle over 2 s
  local a b
  a=$(awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  sleep 2
  b=$(awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]
    printf "%d\n", (t > 0 ? 100 * (1 - (y[1] - x[1]) / t) : 0) }'
}
run() { # NAME PREFIX: bench_load keep-alive against enrolld, output in NAME.out; NAME.noisy if another bench ran meanwhile
  local name=$1 prefix=$2 o read0
  wait_quiet "$name"
  read0=$(disk_read "$PID")
  "$LOAD" --scope "$SCOPE" --group-key "$GROUP_KEY" --ca root/cert.pem --port "$PORT" --mode keepalive \
    --connections "$CONNECTIONS" --seconds "$SECONDS_RUN" --id-prefix "$prefix" --devices "$DEVICES" \
    --no-ceiling > "$name.out" &
  LOAD_PID=$!
  while kill -0 "$LOAD_PID" 2>/dev/null; do
    o=$(others)
    [ -z "$o" ] || echo "$o" >> "$name.noisy"
    sleep 1
  done
  wait "$LOAD_PID"
  local rc=$?
  LOAD_PID=''
  grep -v '^RESULT' "$name.out"
  echo "$(( $(disk_read "$PID") - read0 ))" > "$name.read"
  awk -v b="$(cat "$name.read")" 'BEGIN { printf "  enrolld read %.0f MB from the disk during the run (the store'"'"'s pages not in the page cache)\n", b / 1e6 }'
  [ "$rc" = 0 ] || echo "  WARNING: bench_load exited with status $rc"
}
disk_read() { awk '/^read_bytes:/ { print $2 }' "/proc/$1/io" 2>/dev/null || echo 0; } # PID: bytes it made the disk read
field() { [ -f "$1" ] && sed -n "s/^RESULT .* $2=\([0-9.]*\).*/\1/p" "$1"; }

# ---- run 1: the empty store ------------------------------------------------
start_enrolld enrolld-empty1.log 100 0.05
echo "== enrolld: $WORKERS workers on 127.0.0.1:$PORT (HTTPS keep-alive, $CONNECTIONS connections, ${SECONDS_RUN}s a run), store $WORK/data (SQLite WAL, synchronous=FULL), $(nproc) cores shared with the load generator"
echo "== run 1: the empty store"
RUN1_AT=$(date +%s)
run empty1 emp1-
stop_enrolld
OK1=$(field empty1.out ok)
if [ -z "$OK1" ] || [ "$OK1" = 0 ]; then
  tail -5 enrolld-empty1.log >&2
  die "run 1 registered no device (enrolld's log above; KEEP_WORK=1 keeps $WORK): nothing to measure against, and no registration to copy the fill's rows from"
fi
# More rounds alternate the two stores: the empty one is kept aside (small).
[ "$FLAT_ROUNDS" = 1 ] || cp -a data data-empty || die "cannot copy the empty store to $WORK/data-empty"

# ---- the fill ---------------------------------------------------------------
q .schema > schema.before || die "cannot read the schema of $WORK/$DB"
BASE_REG=$(q 'select count(*) from registration') BASE_CERT=$(q 'select count(*) from certificate')
BASE_OP=$(q 'select count(*) from operation') BASE_AUDIT=$(q 'select count(*) from audit_event')
# Run 1's first registration is the template: its certificate's DER must
# carry a 20-byte serial at its fixed place (SEQUENCE, SEQUENCE, [0] version,
# INTEGER of 20 bytes: octets 14-35), as ca_serial_new makes them; its
# answer must name its ids, etag and times, which the fill replaces.
check=$(q "select length(c.serial) = 40 and c.serial not glob '*[^0-9A-F]*' and substr(c.serial, 1, 1) <= '7'
             and substr(c.serial, 1, 2) <> '00' and hex(substr(c.der, 14, 2)) = '0214'
             and hex(substr(c.der, 16, 20)) = c.serial,
           instr(o.result_json, '\"' || r.registration_id || '\"') > 0 and instr(o.result_json, o.operation_id) > 0
             and instr(o.result_json, r.etag) > 0
           from certificate c join registration r using (registration_id) join operation o using (registration_id)
           order by c.id limit 1")
case "$check" in
"1|1") ;;
"0|"*) die "run 1's certificate has no 40-hex-digit serial (20 bytes, first 01..7F) at DER octets 16-35: ca_serial_new (src/ca/issue.c) changed the serial's shape; make the fill's serials (this script, \"serial\" below) match it" ;;
*"|0") die "run 1's operation result_json does not name its registration id, operation id and etag: the DPS answer's shape changed; update the fill's result_json (this script)" ;;
*) die "cannot read run 1's first registration from $WORK/$DB (got '$check')" ;;
esac
# The audit table as enrolld keeps it: the newest audit.max_rows (1,000,000)
# events; none with FLAT_AUDIT=0 (a diagnosis: the store without its
# retention at work).
AUDIT_N=$(( 1000000 - BASE_AUDIT )); [ "$AUDIT_N" -lt 0 ] && AUDIT_N=0
[ "$AUDIT_N" -gt "$FLAT_CERTS" ] && AUDIT_N=$FLAT_CERTS
[ "${FLAT_AUDIT:-1}" != 0 ] || AUDIT_N=0
# Room: run 1's bytes per registration (its certificate, operation and audit event) times the devices, and 10%.
per=$(q "select (select page_count from pragma_page_count) * (select page_size from pragma_page_size) / max(1, count(*)) from registration")
need=$(( per * FLAT_CERTS * 11 / 10 ))
have=$(( $(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') * 1024 ))
[ "$have" -gt "$need" ] ||
  die "the fill needs about $(mib "$need") in $WORK ($per bytes per device, as run 1's, times FLAT_CERTS=$FLAT_CERTS), and $(mib "$have") is free: free some space, or set FLAT_TMP to a larger disk, or a smaller FLAT_CERTS"

echo "== the fill: $FLAT_CERTS devices (a registration, a certificate, an operation each; $AUDIT_N audit events) into $WORK/$DB"
# Columns: those the fill writes, per table. An operation names its
# certificate since migration 9 (certificate_issuer, certificate_serial);
# with an older enrolld those columns are not there. A column the fill does
# not know that run 1's rows set would stay NULL (or its default) in the
# loaded rows: said, so the fill can be taught it.
declare -A KNOWN=(
  [registration]="registration_id enrollment_kind enrollment_id status substatus device_id assigned_hub etag created_at updated_at last_certificate_issuer last_certificate_serial status_before_disable"
  [certificate]="id issuer serial registration_id policy subject not_before not_after issued_at spki_sha256 der revoked revocation_reason revoked_at"
  [operation]="operation_id registration_id status result_json created_at updated_at certificate_issuer certificate_serial"
  [audit_event]="id at kind registration_id outcome reason_code detail")
for table in registration certificate operation audit_event; do
  for col in $(q "select name from pragma_table_info('$table')"); do
    case " ${KNOWN[$table]} " in *" $col "*) continue ;; esac
    [ "$(q "select count(*) from $table where \"$col\" is not null")" = 0 ] ||
      echo "  WARNING: run 1's rows set $table.$col, which the fill leaves NULL or its default: teach bench/run_flat.sh that column (the loaded rows are less like real ones)"
  done
done
OP_CERT_COLS='' OP_CERT_VALUES=''
if [ "$(q "select count(*) from pragma_table_info('operation') where name in ('certificate_issuer', 'certificate_serial')")" = 2 ]; then
  OP_CERT_COLS=', certificate_issuer, certificate_serial'
  OP_CERT_VALUES=", issuer, hex(p) || hex(r)"
fi
CHUNK=1000000
# Keys in increasing order (see "The fill" above).
ID_STRIDE=$(( (1 << 40) / (FLAT_CERTS + 1) )) SERIAL_STRIDE=$(( 127 ** 4 / (FLAT_CERTS + 1) ))
T_END=$(( RUN1_AT - 60 )) SPAN=$(( 365 * 86400 ))
fill_sql() {
  cat <<SQL
PRAGMA journal_mode=OFF;
PRAGMA synchronous=OFF;
PRAGMA locking_mode=EXCLUSIVE;
PRAGMA cache_size=-$(( FLAT_CACHE_MB * 1024 ));
PRAGMA temp_store=MEMORY;
CREATE TEMP TABLE tpl AS
  SELECT c.issuer, c.policy, c.der, r.enrollment_kind, r.enrollment_id, r.assigned_hub,
         c.not_before - c.issued_at AS backdate, c.not_after - c.issued_at AS validity,
         o.result_json AS json, '"' || r.registration_id || '"' AS rid_q, o.operation_id AS opid, r.etag AS etag,
         strftime('%Y-%m-%dT%H:%M:%S.0000000Z', o.created_at, 'unixepoch') AS created_s,
         strftime('%Y-%m-%dT%H:%M:%S.0000000Z', c.not_after - 7 * 86400, 'unixepoch') AS renew_s
  FROM certificate c JOIN registration r USING (registration_id) JOIN operation o USING (registration_id)
  ORDER BY c.id LIMIT 1;
-- A chunk of devices: i, issued_at t, id, the serial's first 4 bytes p (text of
-- code points 1..127: increasing with i) and its 16 random bytes r, the etag's
-- bytes e, a uuid's hex u.
CREATE TEMP TABLE g (i INTEGER PRIMARY KEY, t INTEGER, rid TEXT, p TEXT, r BLOB, e BLOB, u TEXT);
BEGIN;
SQL
  local lo hi
  for ((lo = 1; lo <= FLAT_CERTS; lo += CHUNK)); do
    hi=$(( lo + CHUNK - 1 < FLAT_CERTS ? lo + CHUNK - 1 : FLAT_CERTS ))
    cat <<SQL
DELETE FROM g;
INSERT INTO g SELECT value, $((T_END - SPAN)) + value * $SPAN / $FLAT_CERTS,
       'dev-' || printf('%010x', value * $ID_STRIDE),
       char(1 + value * $SERIAL_STRIDE / 2048383, 1 + value * $SERIAL_STRIDE / 16129 % 127,
            1 + value * $SERIAL_STRIDE / 127 % 127, 1 + value * $SERIAL_STRIDE % 127),
       randomblob(16), randomblob(8), lower(hex(randomblob(16)))
  FROM generate_series($lo, $hi);
INSERT INTO registration (registration_id, enrollment_kind, enrollment_id, status, substatus, device_id,
    assigned_hub, etag, created_at, updated_at, last_certificate_issuer, last_certificate_serial)
  SELECT rid, enrollment_kind, enrollment_id, 'assigned', 'initialAssignment', rid, assigned_hub,
         lower(hex(e)), t, t, issuer, hex(p) || hex(r)
  FROM g, tpl ORDER BY i;
INSERT INTO certificate (issuer, serial, registration_id, policy, subject, not_before, not_after, issued_at,
    spki_sha256, der)
  SELECT issuer, hex(p) || hex(r), rid, policy, 'CN=' || rid,
         t + backdate, t + validity, t, lower(hex(randomblob(32))),
         CAST(substr(der, 1, 15) || CAST(p AS BLOB) || r || substr(der, 36) AS BLOB)
  FROM g, tpl ORDER BY i;
INSERT INTO operation (operation_id, registration_id, status, result_json, created_at, updated_at$OP_CERT_COLS)
  SELECT op, rid, 'assigned',
         replace(replace(replace(replace(replace(json, opid, op), rid_q, '"' || rid || '"'),
                 etag, lower(hex(e))),
                 created_s, strftime('%Y-%m-%dT%H:%M:%S.0000000Z', t, 'unixepoch')),
                 renew_s, strftime('%Y-%m-%dT%H:%M:%S.0000000Z', t + validity - 7 * 86400, 'unixepoch')),
         t, t$OP_CERT_VALUES
  FROM (SELECT *, printf('%x.', t) || substr(u, 1, 8) || '-' || substr(u, 9, 4) || '-4' || substr(u, 14, 3) || '-' ||
                  substr('89ab', 1 + i % 4, 1) || substr(u, 18, 3) || '-' || substr(u, 21, 12) AS op FROM g), tpl
  ORDER BY i;
INSERT INTO audit_event (at, kind, registration_id, outcome, reason_code, detail)
  SELECT t, 'register', rid, 'ok', 0, 'certificate issued' FROM g WHERE i > $(( FLAT_CERTS - AUDIT_N )) ORDER BY i;
SELECT 'progress', $hi;
SQL
  done
  echo "COMMIT;"
  echo "PRAGMA journal_mode=WAL;"
}
fill_start=$SECONDS
fill_sql | sqlite3 -bail "$DB" 2> fill.err | while IFS='|' read -r what n; do
  if [ "$what" = progress ]; then
    awk -v n="$n" -v all="$FLAT_CERTS" -v s=$((SECONDS - fill_start)) \
      'BEGIN { printf "  %d of %d devices (%.0f%%), %d s\n", n, all, 100 * n / all, s }'
  fi
done
fill_rc=$?
[ "$fill_rc" = 0 ] && [ ! -s fill.err ] ||
  die "the fill failed (sqlite3: $(head -c 600 fill.err)); the store is unusable: run again (KEEP_WORK=1 keeps the scratch directory to look at)"
fill_s=$((SECONDS - fill_start))
[ "$(q 'pragma journal_mode')" = wal ] || die "the store did not go back to WAL after the fill"
q .schema > schema.after
diff schema.before schema.after > schema.diff ||
  die "the fill changed the schema (diff in $WORK/schema.diff, KEEP_WORK=1 keeps it): the store is no longer what enrolld's migrations made"
sync_start=$SECONDS
sync "$DB" || die "cannot fsync $WORK/$DB"
counts=$(q "select (select count(*) from registration), (select count(*) from certificate),
                   (select count(*) from operation), (select count(*) from audit_event)")
want="$((BASE_REG + FLAT_CERTS))|$((BASE_CERT + FLAT_CERTS))|$((BASE_OP + FLAT_CERTS))|$((BASE_AUDIT + AUDIT_N))"
[ "$counts" = "$want" ] ||
  die "after the fill the store holds registrations|certificates|operations|audit events $counts, not $want"
STORE_BYTES=$(stat -c %s "$DB")
MAXID=$(q 'select max(id) from certificate')
awk -v s="$fill_s" -v y=$((SECONDS - sync_start)) -v n="$FLAT_CERTS" -v b="$STORE_BYTES" -v m="$MEM_BYTES" -v c="$counts" \
  'BEGIN { split(c, k, "|")
           printf "  filled in %d s (%.0f devices/s), fsync %d s; the store: %.1f GB, %s RAM (%.1f GiB); %d registrations, %d certificates, %d operations, %d audit events; schema as enrolld made it\n",
             s, (s > 0 ? n / s : n), y, b / 1e9, (b < m ? "fits in the" : "larger than the"), m / 2^30, k[1], k[2], k[3], k[4] }'

# The filled store's pages were written once and not read since: the
# kernel may have dropped some from the page cache, or paged them out (this
# VM's kdamond pages out memory left untouched a while, page cache included,
# even with RAM free). A server running on the store holds the pages its
# registrations use: read the indexes a new registration looks up and
# inserts into (not the tables: their rows are only appended), as it would
# have, before each run on the filled store. FLAT_WARM=0 skips it.
resident() { # the store's bytes in the page cache, when util-linux's fincore is there
  command -v fincore >/dev/null && fincore -bno RES "$DB" 2>/dev/null | awk '{ printf "%.1f of %.1f GB in the page cache", $1 / 1e9, '"$STORE_BYTES"' / 1e9 }'
}
warm() {
  [ "${FLAT_WARM:-1}" != 0 ] || { echo "  the filled store not warmed (FLAT_WARM=0): $(resident)"; return 0; }
  local t0=$SECONDS before
  before=$(resident)
  q "select count(*) from registration indexed by sqlite_autoindex_registration_1 where registration_id > '';
     select count(*) from certificate indexed by sqlite_autoindex_certificate_1 where issuer > '';
     select count(*) from certificate indexed by certificate_by_registration where registration_id > '';
     select count(*) from operation indexed by sqlite_autoindex_operation_1 where operation_id > '';
     select count(*) from operation indexed by operation_by_registration where registration_id > '';
     select count(*) from audit_event indexed by audit_by_registration where registration_id > '';" > /dev/null ||
    die "cannot read the filled store's indexes"
  echo "  the indexes a registration uses read once, as a running server holds them, in $((SECONDS - t0)) s${before:+ (before: $before; after: $(resident))}; FLAT_WARM=0 skips it"
}

# ---- run 2: the filled store (and more rounds: empty, filled, ...) ---------
# The filled store's runs register devices "dev-<round><n>" (see "Device ids"
# above); the empty store's "emp<round>-<n>". The store is always data/ (the
# CA directory is attached to that path): the other one waits beside it.
echo "== run 2: $(( BASE_CERT + FLAT_CERTS )) certificates in the store, new devices"
RUN2_AT=$(date +%s)
for r in $(seq 1 "$FLAT_ROUNDS"); do
  [ "$r" = 1 ] || echo "== round $r of $FLAT_ROUNDS: $(( BASE_CERT + FLAT_CERTS )) certificates"
  warm
  up_start=$SECONDS
  start_enrolld "enrolld-flat$r.log" 3000 0.1
  [ "$r" = 1 ] && echo "  enrolld up in $((SECONDS - up_start)) s on the filled store"
  run "flat$r" "dev-$r"
  stop_enrolld
  [ "$r" -lt "$FLAT_ROUNDS" ] || break
  echo "== round $((r + 1)) of $FLAT_ROUNDS: the empty store"
  mv data data-full && mv data-empty data || die "cannot swap the stores in $WORK"
  start_enrolld "enrolld-empty$((r + 1)).log" 100 0.05
  run "empty$((r + 1))" "emp$((r + 1))-"
  stop_enrolld
  mv data data-empty && mv data-full data || die "cannot swap the stores back in $WORK"
done

# ---- results ----------------------------------------------------------------
median() { # NAME FIELD: the median over the rounds' NAME<r>.out
  for r in $(seq 1 "$FLAT_ROUNDS"); do field "$1$r.out" "$2"; done | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo "== target (issue 16), beside its reference in this run"
N_ALL=$(( BASE_CERT + FLAT_CERTS ))
if [ "$FLAT_ROUNDS" -gt 1 ]; then
  for r in $(seq 1 "$FLAT_ROUNDS"); do
    awk -v r="$r" -v r1="$(field "empty$r.out" rate)" -v p1="$(field "empty$r.out" p99_ms)" \
      -v r2="$(field "flat$r.out" rate)" -v p2="$(field "flat$r.out" p99_ms)" -v n="$N_ALL" \
      'BEGIN { printf "  round %d: empty store %6.0f/s (p99 %6.2f ms), %d certificates %6.0f/s (p99 %6.2f ms): ratio %.3f\n", r, r1, p1, n, r2, p2, (r1 > 0 ? r2 / r1 : 0) }'
  done
fi
awk -v r1="$(median empty rate)" -v p1="$(median empty p99_ms)" -v r2="$(median flat rate)" \
  -v p2="$(median flat p99_ms)" -v n="$N_ALL" -v b="$STORE_BYTES" -v m="$MEM_BYTES" -v rounds="$FLAT_ROUNDS" \
  'BEGIN { of = (rounds > 1 ? sprintf(" (median of %d rounds)", rounds) : "")
           printf "  %-28s %6.0f registrations/s, p99 %.2f ms%s\n", "empty store:", r1, p1, of
           printf "  %-28s %6.0f registrations/s, p99 %.2f ms%s\n", n " certificates:", r2, p2, of
           ratio = (r1 > 0 ? r2 / r1 : 0)
           printf "  %s flat: rate with %d certificates in the store within 10%% of the empty store: %.0f/s = %.1f%% of %.0f/s (ratio %.3f, target >= 0.900); p99 %.2f ms vs %.2f ms; store %.1f GB (%s RAM, %.1f GiB)\n",
             (r1 > 0 && ratio >= 0.9 ? "PASS" : "FAIL"), n, r2, 100 * ratio, r1, ratio, p2, p1, b / 1e9,
             (b < m ? "fits in the" : "larger than the"), m / 2^30 }'
# The audit table was full (audit.max_rows): enrolld's retention deleted as
# many events as run 2 added, on the committer's thread.
pruned=$(( BASE_AUDIT + AUDIT_N + $(for r in $(seq 1 "$FLAT_ROUNDS"); do field "flat$r.out" ok; done | awk '{ s += $1 } END { print s + 0 }') - $(q 'select count(*) from audit_event') ))
[ "$pruned" -le 0 ] ||
  echo "  (enrolld's audit retention deleted about $pruned audit events during run 2: the table holds audit.max_rows, 1,000,000 by default, as a store past a million registrations does; FLAT_AUDIT=0 runs without)"
for r in $(seq 1 "$FLAT_ROUNDS"); do
  for f in "empty$r" "flat$r"; do
    e=$(field "$f.out" errors); [ "${e:-0}" = 0 ] || echo "  WARNING: the $f run had $e failed registrations (see its error lines): its figure is not a clean one"
    [ ! -f "$f.noisy" ] || echo "  WARNING: another benchmark ran during the $f run (bench_load pids $(tr ' ' '\n' < "$f.noisy" | sort -u | xargs)): the comparison is not a clean one"
    [ ! -f "busy.$f" ] || echo "  WARNING: the cores were $(cat "busy.$f")% busy with something else when the $f run started: the comparison is not a clean one"
  done
done

# ---- durability of run 2's rows -----------------------------------------------
status=0
echo "== durability (run 2)"
OK2=0
for r in $(seq 1 "$FLAT_ROUNDS"); do
  ok=$(field "flat$r.out" ok)
  [ -n "$ok" ] || { echo "  FAIL: the filled store's run $r printed no result"; status=1; ok=0; }
  OK2=$((OK2 + ok))
done
rows=$(( BASE_REG + BASE_CERT + BASE_OP + 3 * FLAT_CERTS ))
if [ -n "${FLAT_INTEGRITY:-}" ] || [ "$rows" -le 2000000 ]; then
  integrity=$(q 'PRAGMA integrity_check')
  echo "  PRAGMA integrity_check: $integrity"
  [ "$integrity" = ok ] || status=1
else
  echo "  PRAGMA integrity_check: skipped ($rows rows: it reads all $(mib "$STORE_BYTES"); FLAT_INTEGRITY=1 runs it)"
fi
new=$(q "select count(*) from certificate where id > $MAXID")
old=$(q "select count(*) from certificate c join registration r using (registration_id)
         where c.id > $MAXID and r.created_at < $RUN2_AT")
dups=$(q 'select count(*) from (select 1 from certificate group by issuer, serial having count(*) > 1)')
echo "  certificates stored in run 2 (the filled store): $new; registrations answered: $OK2"
[ "$new" -ge "$OK2" ] || { echo "  FAIL: fewer certificates than registrations"; status=1; }
echo "  run 2's certificates for devices already in the store: $old (each should be a new device)"
[ "$old" = 0 ] || { echo "  FAIL: run 2 renewed loaded devices instead of registering new ones"; status=1; }
echo "  serials recorded twice (same issuer), all $(q 'select count(*) from certificate') certificates: $dups"
[ "$dups" = 0 ] || status=1
[ "$status" = 0 ] && echo "run_flat: durability checks passed" || echo "run_flat: durability checks FAILED"
exit "$status"
