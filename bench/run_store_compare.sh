#!/usr/bin/env bash
# The keep-alive load run against PostgreSQL beside SQLite, in the same run
# on the same machine: one PKI (root, issuing CA, server certificate) and
# the same store contents (CA, policy p30, group "fleet") in a SQLite data
# directory and in a private PostgreSQL (tests/cli/lib_postgres.sh, fsync
# on, synchronous_commit on: durable), both in a scratch directory on disk.
# enrolld (same config but the store: "workers": 2, HTTPS, the MQTT listener
# idle) serves one store at a time; bench_load --mode keepalive drives it
# with the same devices. SQLite and PostgreSQL alternate for ROUNDS rounds
# each, as a shared machine is noisy: each round is printed, and the
# median. After each run enrolld is stopped and the store checked: every
# serial the generator received is in it, none received or stored twice.
# The summary: registrations/s of each, PostgreSQL/SQLite against the aim
# (at least 0.50), p99, CPU per registration (enrolld's; PostgreSQL's
# server processes'), where the machine's CPU went, the PostgreSQL settings
# that decide durability and commit cost, and the machine's limits (cores,
# crypto ceiling, synchronous writes/s of the disk both stores are on).
#
#   bench/run_store_compare.sh [BUILD_DIR]        (default: build)
# Environment: ROUNDS (2), SECONDS (10, per run; SECONDS_RUN wins if both),
#   CONNECTIONS (64), WORKERS (2), DEVICES (60000, per round), KEEP_WORK=1 to
#   keep the scratch directory (the PostgreSQL cluster is removed anyway),
#   ENROLLD (another enrolld binary).
# Exit status: 0; 1 when a run failed or a durability check did; 3 when
#   PostgreSQL is below half of SQLite's rate.

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
bench_programs run_store_compare openssl sqlite3 jq curl
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-2}
DEVICES=${DEVICES:-60000}
for v in ROUNDS SECONDS_RUN CONNECTIONS WORKERS DEVICES; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "run_store_compare: $v must be a positive integer, not '${!v}'" >&2; exit 2; }
done
SCOPE=0ne0000bench

WORK=$(mktemp -d /tmp/enroll-cmp-XXXXXX) # on disk, not tmpfs: the commits are really fsync'ed
PID='' LOAD_PID=''
. "$SRC/tests/cli/lib_postgres.sh"
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  [ -n "$LOAD_PID" ] && kill -9 "$LOAD_PID" 2>/dev/null
  pg_stop # before WORK goes: as an ordinary user the cluster is inside it
  [ -n "${KEEP_WORK:-}" ] && echo "run_store_compare: kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK" || exit 1
die() { echo "run_store_compare: $*" >&2; exit 1; }
[ "$(stat -f -c %T "$WORK")" != tmpfs ] || die "$WORK is on tmpfs: the stores' fsyncs would prove nothing"

# One PKI; the store's contents twice: SQLite in data/ (as run_load.sh), then
# PostgreSQL. A CA directory is attached to one store: PostgreSQL's is a
# copy (the same key and certificate). enroll admin makes a new group key
# each time: each store's is passed with its runs (the devices, their ids
# and CSRs, are the same).
. "$SRC/bench/lib.sh"
bench_pki
cp -a devices-ca devices-ca-pg
bench_store
# shellcheck disable=SC2034 # KEY_sqlite and KEY_pg are read as ${!key}
KEY_sqlite=$GROUP_KEY
bench_enrolld_config
mv enrolld.json sqlite.json
pg_start "$WORK/pg" || die "PostgreSQL did not start"
pg_psql "show fsync" | grep -qx on || die "the PostgreSQL server runs with fsync off: not durable"
BENCH_STORE=$PG_URL BENCH_CA_DIR=devices-ca-pg bench_store
# shellcheck disable=SC2034
KEY_pg=$GROUP_KEY
BENCH_STORE=$PG_URL bench_enrolld_config
mv enrolld.json pg.json
PG_VERSION=$(pg_psql "show server_version" | awk '{print $1}')
# The settings that decide what a commit costs and whether it is durable
# (enrolld sets synchronous_commit on in each of its sessions anyway).
PG_SETTINGS=$(pg_psql "select string_agg(name || '=' || setting || coalesce(unit, ''), ', ' order by name) from pg_settings
  where name in ('synchronous_commit', 'fsync', 'wal_sync_method', 'full_page_writes', 'commit_delay', 'wal_level',
                 'shared_buffers', 'max_wal_size', 'checkpoint_timeout', 'wal_compression')")
PG_MACHINE_DEV=$(stat -c %d "$PG_DIR" 2>/dev/null)

# The machine: cores (shared by enrolld, PostgreSQL and the generator) and
# what the disk both stores live on takes in synchronous 8 kB writes per
# second: a durable commit needs at least one, so one committer cannot
# commit more often than this (group commit carries many registrations each).
CORES=$(nproc)
dsync=$( { TIMEFORMAT=%R; time dd if=/dev/zero of=dsync.test bs=8k count=1000 oflag=dsync 2>/dev/null; } 2>&1 )
DSYNC_RATE=$(awk -v t="$dsync" 'BEGIN { if (t > 0) printf "%.0f", 1000 / t; else print "?" }')
rm -f dsync.test

echo "== enrolld: $WORKERS workers on 127.0.0.1 (HTTPS, keep-alive, $CONNECTIONS connections, $SECONDS_RUN s a run), $CORES cores shared with the load generator and PostgreSQL"
echo "   SQLite: $WORK/data (WAL, synchronous=FULL); PostgreSQL $PG_VERSION: $PG_DIR (127.0.0.1:$PG_PORT)$([ "$PG_MACHINE_DEV" = "$(stat -c %d "$WORK")" ] && echo ', the same disk')"

HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # user + system CPU, clock ticks
pg_ticks() { # PostgreSQL's postmaster and all its processes (enrolld's backends among them)
  local pm t=0 p
  pm=$(head -n 1 "$PG_DIR/postmaster.pid" 2>/dev/null) || { echo 0; return; }
  for p in $pm $(pgrep -P "$pm"); do t=$((t + $(ticks "$p"))); done
  echo "$t"
}
machine() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5, $6; exit }' /proc/stat; } # busy idle iowait ticks
field() { sed -n "s/^RESULT .* $2=\([0-9.]*\).*/\1/p" "$1"; }
metric() { # NAME: a sample of enrolld's /metrics (HTTPS port)
  curl -sk --max-time 5 "https://127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
# PostgreSQL during a run: what enrolld's sessions are doing, sampled from
# one psql session (one connection, a few queries: little CPU taken from the
# run). "active/-" is on CPU; "idle in transaction/ClientRead" waits for
# enrolld's next statement inside a transaction; "active/WALSync" or
# IO:WALWrite is the commit's flush; Lock:advisory waits for the one writer.
pg_sample() { # SAMPLES INTERVAL OUT
  for _ in $(seq 1 "$1"); do
    echo "select state || '/' || coalesce(wait_event_type || ':' || wait_event, '-') from pg_stat_activity
          where backend_type = 'client backend' and pid <> pg_backend_pid();"
    echo "select pg_sleep($2);"
  done | pg_psql 2>/dev/null | grep -v '^$' > "$3"
}

status=0
run() { # STORE ROUND: one enrolld on STORE, one bench_load run, then the durability check
  local kind=$1 round=$2 name="$1-$2" t_e t_pg m0 ok extra=(--no-ceiling) sampler=
  # The machine's limits once: the crypto ceiling (openssl speed) on the first
  # run, after its load (enrolld idles then).
  [ "$kind" = sqlite ] && [ "$round" = 1 ] && extra=(--bare-seconds 3)
  "$ENROLLD" --config "$kind.json" 2> "$name.log" &
  PID=$!
  bench_wait_ports "$name.log" 200 0.05
  echo "== $name: $([ "$kind" = pg ] && echo "PostgreSQL" || echo "SQLite"), round $round"
  # id prefix per round: each run registers new devices (the same ones for both stores in a round)
  local key=KEY_$kind
  "$LOAD" --port "$PORT" --scope "$SCOPE" --group-key "${!key}" --ca root/cert.pem \
    --server-cert server.pem --server-key server.key --bare-workers "$WORKERS" \
    --mode keepalive --connections "$CONNECTIONS" --seconds "$SECONDS_RUN" \
    --devices "$DEVICES" --id-prefix "r$round-" --received "$name.serials" "${extra[@]}" > "$name.out" 2>&1 &
  local load=$! t_l t_l1
  LOAD_PID=$load
  # The CPU figures cover the load itself: from the line bench_load prints as
  # its clock starts (its devices made) to its result line (before any
  # ceiling). bench_load's own CPU is read while it lives (it may be gone by
  # the time its result line is seen): what remains is other processes'.
  until grep -qs '^bench_load: keep-alive' "$name.out"; do kill -0 "$load" 2>/dev/null || break; sleep 0.05; done
  t_l=$(ticks "$load")
  t_e=$(ticks "$PID")
  t_pg=$([ "$kind" = pg ] && pg_ticks || echo 0)
  m0=$(machine)
  if [ "$kind" = pg ]; then # the middle half of the run
    (sleep "$(awk -v s="$SECONDS_RUN" 'BEGIN { print s / 4 }')"
     pg_sample 20 "$(awk -v s="$SECONDS_RUN" 'BEGIN { print s / 2 / 20 }')" "$name.waits") &
    sampler=$!
  fi
  sleep $((SECONDS_RUN - 1))
  t_l1=$t_l
  until grep -qs 'enrolld keep-alive:' "$name.out"; do
    kill -0 "$load" 2>/dev/null || break
    t_l1=$(ticks "$load")
    sleep 0.05
  done
  awk -v a="$t_e" -v b="$(ticks "$PID")" -v p0="$t_pg" -v p1="$([ "$kind" = pg ] && pg_ticks || echo 0)" \
    -v m0="$m0" -v m1="$(machine)" -v hz="$HZ" -v l0="$t_l" -v l1="$t_l1" \
    -v cs="$(metric enroll_store_commit_duration_seconds_sum)" -v cn="$(metric enroll_store_commit_duration_seconds_count)" \
    'BEGIN { print a, b, p0, p1, m0, m1, hz, cs + 0, cn + 0, l0, l1 }' > "$name.ticks"
  wait "$load"
  LOAD_PID=
  cat "$name.out"
  [ -n "$sampler" ] && wait "$sampler"
  awk -v ok="$(field "$name.out" ok)" -v cores="$CORES" \
    '{ a = $1; b = $2; p0 = $3; p1 = $4; x[1] = $5; x[2] = $6; x[3] = $7; y[1] = $8; y[2] = $9; y[3] = $10; hz = $11; cs = $12; cn = $13
       busy = y[1] - x[1]; idle = y[2] - x[2]; io = y[3] - x[3]; all = busy + idle + io
       e = b - a; p = p1 - p0; l = $15 - $14; o = busy - e - p - l; if (o < 0) o = 0
       if (ok > 0 && all > 0) printf "  enrolld CPU %.3f ms/registration%s; the %d cores %.0f%% busy: enrolld %.0f%%, PostgreSQL %.0f%%, bench_load %.0f%%, other processes %.0f%%; iowait %.0f%%%s\n",
         1000 * e / hz / ok, (p > 0 ? sprintf(", PostgreSQL server CPU %.3f ms/registration", 1000 * p / hz / ok) : ""), cores,
         100 * busy / all, 100 * e / all, 100 * p / all, 100 * l / all, 100 * o / all, 100 * io / all,
         (cn > 0 ? sprintf("; store commit %.2f ms mean per registration (enrolld /metrics)", 1000 * cs / cn) : "")
       if (all > 0 && o / all > 0.10) printf "  WARNING: other processes took %.0f%% of the machine during this run: a noisy figure\n", 100 * o / all
       printf "CPU enrolld=%.4f pg=%.4f load=%.4f commit_ms=%.3f others=%.1f\n", (ok > 0 ? 1000 * e / hz / ok : 0), (ok > 0 ? 1000 * p / hz / ok : 0), (ok > 0 ? 1000 * l / hz / ok : 0), (cn > 0 ? 1000 * cs / cn : 0), (all > 0 ? 100 * o / all : 0) > "/dev/stderr" }' \
    "$name.ticks" 2> "$name.cpu"
  [ -s "$name.waits" ] && echo "  PostgreSQL sessions mid-run (state/wait event, $(wc -l < "$name.waits") samples of enrolld's sessions): $(sort "$name.waits" | uniq -c | sort -rn | awk '{ n = $1; $1 = ""; printf "%s%s x%d", (NR > 1 ? ", " : ""), substr($0, 2), n }')"
  kill -TERM "$PID"
  wait "$PID"
  local rc=$?
  PID=
  [ "$rc" = 0 ] || { echo "  FAIL: enrolld exit status $rc after SIGTERM"; status=1; }
  grep -q '"status":5' "$name.log" && echo "  WARNING: enrolld answered 5xx ($(grep -c '"status":5' "$name.log") lines in $name.log)"

  # Durability, quickly: what the generator holds is what the store holds.
  ok=$(field "$name.out" ok)
  [ -n "$ok" ] || { echo "  FAIL: bench_load printed no result"; status=1; ok=0; }
  [ "$(field "$name.out" errors)" = 0 ] || echo "  WARNING: $(field "$name.out" errors) failed registrations: not a clean figure"
  if [ "$kind" = sqlite ]; then
    sqlite3 data/enroll.db 'select serial from certificate' | sort -u > stored.serials
    dups=$(sqlite3 data/enroll.db 'select count(*) from (select 1 from certificate group by issuer, serial having count(*) > 1)')
  else
    pg_psql "select serial from certificate" | sort -u > stored.serials
    dups=$(pg_psql "select count(*) from (select 1 from certificate group by issuer, serial having count(*) > 1) d")
    # Flush now what this run dirtied, so that no checkpoint of it lands in the next SQLite run.
    pg_psql "checkpoint"
  fi
  local received missing twice
  received=$(wc -l < "$name.serials")
  missing=$(sort -u "$name.serials" | comm -23 - stored.serials | wc -l)
  twice=$(sort "$name.serials" | uniq -d | wc -l)
  if [ "$received" = "$ok" ] && [ "$ok" -gt 0 ] && [ "$missing" = 0 ] && [ "$twice" = 0 ] && [ "${dups:-x}" = 0 ]; then
    echo "  durability: ok: $received serials received ($ok registrations), all in the store ($(wc -l < stored.serials) certificates), none received or stored twice"
  else
    echo "  durability: FAIL: $received serials received for $ok registrations, $missing missing from the store, $twice received twice, ${dups:-?} stored twice"
    status=1
  fi
}

for round in $(seq 1 "$ROUNDS"); do
  run sqlite "$round"
  run pg "$round"
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
per_round() { # STORE FIELD: each round's value
  local r
  for r in $(seq 1 "$ROUNDS"); do field "$1-$r.out" "$2"; done
}
cpu_of() { # STORE KEY: the median of each round's value
  local r
  for r in $(seq 1 "$ROUNDS"); do sed -n "s/.*$2=\([0-9.]*\).*/\1/p" "$1-$r.cpu"; done | median
}
RATE_sqlite=$(per_round sqlite rate | median) RATE_pg=$(per_round pg rate | median)
# shellcheck disable=SC2034 # read as ${!p99}
P99_sqlite=$(per_round sqlite p99_ms | median) P99_pg=$(per_round pg p99_ms | median)
CEILING=$(field sqlite-1.out crypto_ceiling)
echo "== SQLite beside PostgreSQL: keep-alive, durable, $ROUNDS rounds each, median (took ${SECONDS} s so far)"
for s in sqlite pg; do
  label=$([ $s = sqlite ] && echo "SQLite (WAL, synchronous=FULL):" || echo "PostgreSQL $PG_VERSION (fsync on):")
  awk -v l="$label" -v rounds="$(per_round $s rate | paste -sd" ")" -v p99s="$(per_round $s p99_ms | paste -sd" ")" \
    -v r="$(rate=RATE_$s; echo "${!rate}")" -v p="$(p99=P99_$s; echo "${!p99}")" -v e="$(cpu_of $s enrolld)" -v pg="$(cpu_of $s pg)" \
    -v c="$(cpu_of $s commit_ms)" -v o="$(cpu_of $s others)" \
    'BEGIN { printf "  %-36s %6.0f registrations/s (rounds: %s), p99 %.2f ms (rounds: %s)\n", l, r, rounds, p, p99s
             printf "  %-36s enrolld CPU %.3f ms/registration%s, store commit %.2f ms mean; other processes %.0f%% of the machine\n", "", e, (pg > 0 ? sprintf(", PostgreSQL server CPU %.3f ms/registration", pg) : ""), c, o }'
done
aim=0
awk -v s="$RATE_sqlite" -v p="$RATE_pg" 'BEGIN { r = (s > 0 ? p / s : 0)
  printf "  PostgreSQL/SQLite = %.2f (%.0f/s vs %.0f/s, medians): %s (aim: at least 0.50)\n", r, p, s, (r >= 0.5 ? "PASS" : "FAIL")
  exit (r >= 0.5 ? 0 : 1) }' || aim=1
# The machine is CPU-bound (enrolld, PostgreSQL and the generator on the
# same cores): the CPU all three spend per registration bounds the rate
# (cores / CPU), whatever else runs meanwhile; the ratio of those bounds is
# the comparison with the noise of other processes taken out.
awk -v c="$CORES" -v se="$(cpu_of sqlite enrolld)" -v sl="$(cpu_of sqlite load)" \
  -v pe="$(cpu_of pg enrolld)" -v pp="$(cpu_of pg pg)" -v pl="$(cpu_of pg load)" \
  'BEGIN { s = se + sl; p = pe + pp + pl
    if (s > 0 && p > 0) printf "  CPU per registration, enrolld + PostgreSQL + bench_load: SQLite %.2f ms, PostgreSQL %.2f ms (%.2f + %.2f + %.2f): %d cores allow at most %.0f/s and %.0f/s, ratio %.2f\n",
      s, p, pe, pp, pl, c, 1000 * c / s, 1000 * c / p, s / p }'
echo "  PostgreSQL server: $PG_SETTINGS"
echo "  PostgreSQL sessions: $(pg_psql "show synchronous_commit") by default, enrolld sets synchronous_commit on in each (durable before answered)"
awk -v c="$CORES" -v k="${CEILING:-0}" -v d="$DSYNC_RATE" -v s="$RATE_sqlite" -v p="$RATE_pg" \
  'BEGIN { printf "  machine: %d cores, shared by enrolld, PostgreSQL and the load generator; crypto ceiling %s; disk: %s synchronous 8 kB writes/s (dd oflag=dsync, where both stores are)\n",
             c, (k > 0 ? sprintf("%.0f registrations/s (openssl speed ecdsap256, all cores; SQLite at %.0f%%, PostgreSQL at %.0f%%)", k, 100 * s / k, 100 * p / k) : "not measured"), d }'
echo "run_store_compare: took $SECONDS s"
[ "$status" = 0 ] || { echo "run_store_compare: a run or a durability check FAILED"; exit 1; }
[ "$aim" = 0 ] || exit 3
exit 0
