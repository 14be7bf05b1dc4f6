# Shared helpers for the CLI tests. Each test script sources this, runs
# checks, and ends with `finish`, which prints "N passed, N failed".
set -uo pipefail
ENROLL=${ENROLL_BIN:?set ENROLL_BIN to the enroll binary}
DATA=${ENROLL_TEST_DATA:?set ENROLL_TEST_DATA}
WORK=$(mktemp -d /tmp/enroll-cli-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0

pass() { PASSED=$((PASSED + 1)); }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*" >&2; }

# check DESCRIPTION COMMAND...: the command must succeed.
check() {
  local what=$1; shift
  if "$@" >"$WORK/.out" 2>"$WORK/.err"; then pass; else
    fail "$what (exit $?)"; sed 's/^/    /' "$WORK/.err" | head -20 >&2
  fi
}

# expect_exit CODE DESCRIPTION COMMAND...: the command must exit with CODE;
# its stdout/stderr are left in $WORK/.out and $WORK/.err.
expect_exit() {
  local want=$1 what=$2; shift 2
  "$@" >"$WORK/.out" 2>"$WORK/.err"
  local got=$?
  if [ "$got" -eq "$want" ]; then pass; else
    fail "$what: exit $got, wanted $want"; sed 's/^/    /' "$WORK/.err" | head -10 >&2
  fi
}

# contains FILE NEEDLE DESCRIPTION
contains() {
  if grep -qF -- "$2" "$1"; then pass; else fail "$3: '$2' not in $(basename "$1")"; head -c 600 "$1" | sed 's/^/    /' >&2; fi
}
lacks() {
  if grep -qF -- "$2" "$1"; then fail "$3: '$2' unexpectedly in $(basename "$1")"; else pass; fi
}

# same DESCRIPTION A B: two strings are equal.
same() {
  if [ "$2" == "$3" ]; then pass; else fail "$1: '$2' != '$3'"; fi
}

# json FILE FILTER: one value from a JSON file (jq -r).
json() { jq -r "$2" "$1"; }

finish() {
  echo "$(basename "$0" .sh): $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
