# shellcheck shell=bash
# A private, throwaway PostgreSQL server for the tests of the PostgreSQL
# store: its own cluster, TCP on 127.0.0.1 only, a free port, trust
# authentication for the role `enroll`, database `enroll`. Source it (bash,
# with or without set -e); it needs no other helper.
#
#   pg_start WORKDIR   initdb + start + create database enroll. Exports
#       PG_URL=postgresql://enroll@127.0.0.1:PORT/enroll, PG_PORT, PG_DIR (the
#       data directory) and PG_LOG (the server's log). Prints one line to
#       stderr; on failure prints the log's tail instead and returns 1.
#       PG_FSYNC=off in its environment starts the server (and every restart)
#       with fsync=off: for unit tests only, as it proves nothing about
#       durability. synchronous_commit stays on (the default).
#   pg_stop      fast shutdown, then removes the cluster; idempotent, a no-op
#       if nothing was started, and always returns 0 (a failure to stop is
#       printed). Callers must trap it on EXIT, before removing WORKDIR
#       (the server's pid file may be in it), e.g.
#       trap 'pg_stop; rm -rf "$WORK"' EXIT
#   pg_halt      fast shutdown, data kept (pg_resume brings it back); 1 if
#       the server would not stop
#   pg_restart   pg_halt + pg_resume: same port, same data
#   pg_kill9     SIGKILL to the postmaster and all its children at once (a
#       crash: no shutdown checkpoint); returns once they are all gone
#   pg_resume    starts the existing cluster again on the same port (after
#       pg_halt or pg_kill9; runs crash recovery after the latter)
#   pg_psql [SQL...]   psql -X -q -At -v ON_ERROR_STOP=1 against PG_URL, each
#       SQL as a -c; with none, the SQL is read from stdin
#
# Where: as an ordinary user the cluster lives in a directory under WORKDIR.
# initdb and postgres refuse to run as root, so as root they run as the
# `postgres` system user (Debian's postgresql package creates it; PG_OS_USER
# overrides) in a directory of its own under /tmp (WORKDIR is usually a 0700
# directory of root's that user cannot enter), which pg_stop removes. The
# server binaries come from the newest /usr/lib/postgresql/*/bin (PG_BIN
# overrides). A watchdog outside the caller's process tree stops the server
# and removes its files if the caller dies without pg_stop (ctest kills a
# timed-out test with SIGKILL, which no trap sees), and WORKDIR too if that
# leaves it empty (pg_run.sh's).

PG_URL='' PG_PORT='' PG_DIR='' PG_LOG=''
pg__base='' pg__bin='' pg__opts='' pg__watchdog=''
pg__as=()

pg__die() { echo "lib_postgres: $*" >&2; return 1; }

pg__find_bin() {
  local p
  pg__bin=${PG_BIN:-$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
  for p in initdb pg_ctl postgres createdb psql; do
    [ -x "$pg__bin/$p" ] ||
      pg__die "the PostgreSQL server's $p is not in ${PG_BIN:-/usr/lib/postgresql/*/bin}:" \
        "install the Debian package postgresql (scripts/install-deps.sh)" || return
  done
}

# Runs a server program as the user that owns the cluster. From / because
# runuser keeps the working directory, which postgres may not be able to
# enter. Without the caller's descriptors beyond 0-2: the postmaster outlives
# this call and would hold open whatever pipes they are (a test's stderr
# tee, ctest's output), so that their readers wait for the server.
pg__run() {
  (
    cd / || exit
    for f in /proc/"$BASHPID"/fd/*; do f=${f##*/}; [ "$f" -le 2 ] || exec {f}>&-; done 2>/dev/null
    exec "${pg__as[@]}" "$@"
  )
}

# A port in 20000-32767 (below Linux's ephemeral range, where outgoing
# connections take theirs) that nothing listens on now. Another process may
# still take it before the server binds: pg__launch retries.
pg__free_port() {
  local used port
  command -v ss >/dev/null || pg__die "ss is not installed (iproute2; scripts/install-deps.sh): cannot find a free port" || return
  used=$(ss -Htln | awk '{ sub(/.*:/, "", $4); print $4 }') || pg__die "ss -Htln failed" || return
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 12768))
    grep -qx "$port" <<<"$used" || { echo "$port"; return 0; }
  done
  pg__die "50 random ports in 20000-32767 are all in use"
}

pg__running() { pg__run "$pg__bin/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1; }

pg__fail() { # MESSAGE: the message and what the server said
  echo "lib_postgres: $1; $PG_LOG ends:" >&2
  tail -n 25 "$PG_LOG" 2>/dev/null | sed 's/^/    /' >&2
  return 1
}

# Starts the cluster on PORT; 2 when the port was taken (another try may work).
pg__launch() { # PORT
  local before
  before=$(stat -c %s "$PG_LOG" 2>/dev/null || echo 0)
  # No Unix socket: clients use PG_URL (TCP), and a socket under a deep
  # WORKDIR could exceed the 107-byte limit on its path.
  # shellcheck disable=SC2094 # the server and pg_ctl both append to the log
  if pg__run "$pg__bin/pg_ctl" -D "$PG_DIR" -l "$PG_LOG" -w -t 60 -s \
    -o "-p $1 -c listen_addresses=127.0.0.1 -c unix_socket_directories='' $pg__opts" start >>"$PG_LOG" 2>&1; then
    PG_PORT=$1
    PG_URL=postgresql://enroll@127.0.0.1:$1/enroll
    export PG_URL PG_PORT PG_DIR PG_LOG
    return 0
  fi
  # A server that started but did not become ready in time must not linger.
  pg__running && pg__run "$pg__bin/pg_ctl" -D "$PG_DIR" -m immediate -w -s stop >>"$PG_LOG" 2>&1
  # (grep without -q reads to the end: tail cut short is a failure under pipefail)
  if tail -c +"$((before + 1))" "$PG_LOG" | grep "Address already in use" >/dev/null; then return 2; fi
  return 1
}

pg__start_watchdog() { # WORKDIR, removed too if that leaves it empty
  # Double fork: the watchdog's parent is gone at once, so it is no child of
  # the caller's for ctest to kill with it. It polls with read -t on a pipe
  # it holds both ends of (no sleep process to leave behind when pg_stop
  # kills it). SIGQUIT is the postmaster's immediate shutdown.
  pg__watchdog=$(
    bash -c '
      for f in /proc/$$/fd/*; do f=${f##*/}; [ "$f" -le 2 ] || exec {f}>&-; done 2>/dev/null
      exec 3<> <(:)
      while kill -0 "$1" 2>/dev/null; do read -rt 1 -u 3 || :; done
      pid=$(head -n 1 "$2/postmaster.pid" 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null &&
        for _ in $(seq 1 100); do
          [ "$(awk "{print \$3}" "/proc/$pid/stat" 2>/dev/null || echo Z)" != Z ] || break
          read -rt 0.1 -u 3 || :
        done
      rm -rf "$3"
      rmdir "$4"' _ "$$" "$PG_DIR" "$pg__base" "$1" </dev/null >/dev/null 2>&1 &
    echo $!)
}

pg_start() { # WORKDIR
  [ $# -eq 1 ] || { echo "usage: pg_start WORKDIR" >&2; return 2; }
  [ -z "$pg__base" ] || pg__die "pg_start: already started ($PG_DIR); pg_stop first" || return
  pg__find_bin || return
  pg__opts=
  if [ "${PG_FSYNC:-on}" = off ]; then pg__opts="-c fsync=off"; fi
  local user=${PG_OS_USER:-postgres} rc attempt port
  if [ "$(id -u)" -eq 0 ]; then
    id -u "$user" >/dev/null 2>&1 ||
      pg__die "as root the server runs as the user $user, who does not exist (the Debian package postgresql creates it)" || return
    pg__as=(runuser -u "$user" --)
    pg__base=$(mktemp -d /tmp/enroll-pg-XXXXXX) || { pg__base=''; return 1; }
    chown "$user:" "$pg__base" || { pg_stop; return 1; }
  else
    pg__as=()
    mkdir -p "$1" || return
    pg__base=$(mktemp -d "$1/pg-XXXXXX") || { pg__base=''; return 1; }
  fi
  PG_DIR=$pg__base/data
  PG_LOG=$pg__base/server.log
  # Written by the server (as its user) and by this script (root may).
  : >"$PG_LOG" || { pg_stop; return 1; }
  if [ ${#pg__as[@]} -gt 0 ]; then chown "$user:" "$PG_LOG" || { pg_stop; return 1; }; fi
  # C locale: the same collation everywhere, and no dependence on which
  # locales the machine has generated. --no-sync: a throwaway cluster.
  if ! pg__run "$pg__bin/initdb" -D "$PG_DIR" -A trust -U enroll -E UTF8 --no-locale --no-sync >>"$PG_LOG" 2>&1; then
    pg__fail "initdb failed"; pg_stop; return 1
  fi
  pg__start_watchdog "$1"
  for attempt in 1 2 3 4 5; do
    port=$(pg__free_port) || { pg_stop; return 1; }
    rc=0; pg__launch "$port" || rc=$?
    [ "$rc" -eq 2 ] || break
    echo "lib_postgres: port $port was taken (attempt $attempt), trying another" >&2
  done
  if [ "$rc" -ne 0 ]; then pg__fail "the server did not start"; pg_stop; return 1; fi
  if ! "$pg__bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U enroll enroll >>"$PG_LOG" 2>&1; then
    pg__fail "createdb enroll failed"; pg_stop; return 1
  fi
  echo "lib_postgres: PostgreSQL $("$pg__bin/postgres" -V | awk '{print $3}') on 127.0.0.1:$PG_PORT, data in $PG_DIR${pg__opts:+ ($pg__opts)}" >&2
}

pg_halt() {
  [ -n "$pg__base" ] && pg__running || return 0
  pg__run "$pg__bin/pg_ctl" -D "$PG_DIR" -m fast -w -t 60 -s stop >>"$PG_LOG" 2>&1 && return 0
  pg__run "$pg__bin/pg_ctl" -D "$PG_DIR" -m immediate -w -t 30 -s stop >>"$PG_LOG" 2>&1 ||
    pg__fail "the server did not stop"
}

pg_stop() {
  [ -n "$pg__base" ] || return 0
  local rc=0
  pg_halt || rc=$?
  # After a failed stop (reported) the files stay, to be looked at, and the
  # watchdog too, to try again once the caller is gone. Always 0: it runs
  # in EXIT traps, where under set -e a failure would skip the rest.
  if [ "$rc" -eq 0 ]; then
    [ -z "$pg__watchdog" ] || kill "$pg__watchdog" 2>/dev/null
    rm -rf "$pg__base"
  fi
  pg__base='' pg__watchdog='' PG_URL='' PG_PORT='' PG_DIR='' PG_LOG=''
  return 0
}

pg_resume() {
  [ -n "$pg__base" ] || pg__die "pg_resume: no cluster (pg_start first)" || return
  ! pg__running || pg__die "pg_resume: the server is already running" || return
  local rc=0
  pg__launch "$PG_PORT" || rc=$?
  [ "$rc" -eq 0 ] || pg__fail "the server did not start again on port $PG_PORT$([ "$rc" -eq 2 ] && echo ' (taken meanwhile)')"
}

pg_restart() { pg_halt && pg_resume; }

pg_kill9() {
  [ -n "$pg__base" ] || pg__die "pg_kill9: no cluster (pg_start first)" || return
  local pid pids p alive
  pid=$(head -n 1 "$PG_DIR/postmaster.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null ||
    pg__die "pg_kill9: the server is not running" || return
  # Stop the postmaster first so that it forks no new child after the list
  # is taken; then everyone dies at once, as in a crash.
  kill -STOP "$pid" 2>/dev/null || :
  pids="$pid $(pgrep -P "$pid" | tr '\n' ' ' || :)"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || :
  # The server's next start refuses while any of them lives (the shared
  # memory is still attached). They are orphans, not ours to wait for; one
  # that init has not reaped yet (a zombie, state Z) is dead enough.
  for _ in $(seq 1 200); do
    alive=
    for p in $pids; do
      [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && alive=1
    done
    if [ -z "$alive" ]; then
      # A dead postmaster that init has not reaped yet still answers kill -0,
      # so its pid file would make the next start refuse ("another server
      # running"); once it is dead the file is only stale.
      rm -f "$PG_DIR/postmaster.pid"
      return 0
    fi
    sleep 0.05
  done
  pg__die "pg_kill9: server processes still alive 10 s after SIGKILL: $pids"
}

pg_psql() {
  [ -n "$PG_URL" ] || pg__die "pg_psql: no server (pg_start first)" || return
  local a=() s
  for s in "$@"; do a+=(-c "$s"); done
  "$pg__bin/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$PG_URL" "${a[@]}"
}
