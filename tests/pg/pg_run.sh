#!/usr/bin/env bash
# pg_run.sh CMD [ARGS...]: runs CMD (a test of the PostgreSQL store, from
# ctest) with a private PostgreSQL server, its URL in ENROLL_TEST_PG_URL,
# and exits with CMD's status. The server is stopped and its files removed
# however this ends (and, through lib_postgres.sh's watchdog, even when ctest
# SIGKILLs it on a timeout). Missing PostgreSQL is a failure, not a skip: a
# machine without it must not pass the store's tests by not running them.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: pg_run.sh CMD [ARGS...]" >&2; exit 2; }
# shellcheck source-path=SCRIPTDIR source=../cli/lib_postgres.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cli/lib_postgres.sh"

tmp=$(mktemp -d /tmp/enroll-pgrun-XXXXXX) || exit 1
child=
# On INT or TERM: CMD ends too (TERM: an asynchronous command ignores INT),
# then the EXIT trap stops the server. Without these traps a signal would
# end the script without running the EXIT trap.
# shellcheck disable=SC2317 # called from the traps
stop_child() { [ -z "$child" ] || { kill -TERM "$child" 2>/dev/null; wait "$child"; }; exit "$1"; }
trap 'pg_stop; rm -rf "$tmp"' EXIT
trap 'stop_child 130' INT
trap 'stop_child 143' TERM

# fsync=off: these tests prove behaviour, not durability (the CLI crash
# tests start their own server with fsync on).
PG_FSYNC=off pg_start "$tmp" || exit 1
export ENROLL_TEST_PG_URL="$PG_URL"
# In the background so that a signal is handled at once, not when CMD ends
# (bash runs traps only between commands); <&0 keeps our stdin for it.
"$@" <&0 &
child=$!
wait "$child"
exit   # with wait's status: CMD's
