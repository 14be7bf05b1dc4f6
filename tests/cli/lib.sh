# Shared helpers for the CLI tests. Each test script sources this, runs
# checks, and ends with `finish`, which prints "N passed, N failed".
#
# A check that cannot run must fail, never vanish. So:
# - a failure is also recorded in a file, so one recorded inside $( ) or a
#   pipeline (a subshell, whose variables die with it) still counts;
# - every error bash itself reports for these scripts ("x.sh: line N: ...":
#   a command not found, an arithmetic or substitution error, which abandon
#   the line before its pass or fail) is a failure: finish reads them back
#   from a copy of stderr;
# - helpers that make a test's inputs check what they made (out, hmac_b64,
#   crl_number), and a part of a test that cannot run for lack of a tool says so with
#   cannot_run, a failure.
set -uo pipefail
ENROLL=${ENROLL_BIN:?set ENROLL_BIN to the enroll binary}
DATA=${ENROLL_TEST_DATA:?set ENROLL_TEST_DATA}
WORK=$(mktemp -d /tmp/enroll-cli-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0
: > "$WORK/.failures"
# stderr goes on as before, and into $WORK/.stderr for finish.
exec {LIB_STDERR}>&2
exec 2> >(tee -a "$WORK/.stderr" >&"$LIB_STDERR")
LIB_TEE_PID=$!

pass() { PASSED=$((PASSED + 1)); }
# One line per failure in the file (finish counts lines).
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*" >&2; printf '%s\n' "${*//$'\n'/ }" >> "$WORK/.failures"; }

# cannot_run WHAT WHY: part of a test cannot run here (a tool or module is
# missing): a failure, not a skip, or a machine without it would pass.
cannot_run() { fail "cannot run $1: $2 (scripts/install-deps.sh installs it)"; }

# softhsm_token LABEL: a SoftHSM2 token LABEL (SO PIN 12345678, user PIN
# 87654321) in $WORK/tokens, SOFTHSM2_CONF exported for it.
softhsm_token() {
  mkdir -p "$WORK/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK" > "$WORK/softhsm2.conf"
  export SOFTHSM2_CONF=$WORK/softhsm2.conf
  softhsm2-util --init-token --free --label "$1" --so-pin 12345678 --pin 87654321 >/dev/null ||
    fail "softhsm2-util could not make the token $1"
}

# out DESCRIPTION COMMAND...: prints COMMAND's standard output, for a
# helper making an input; a failing command, or one printing nothing, is a
# failure (with its stderr), recorded even inside $( ).
out() {
  local what=$1 o e rc=0; shift
  e=$(mktemp "$WORK/.out-err-XXXXXX")
  o=$("$@" 2>"$e") || rc=$?
  if [ "$rc" -ne 0 ] || [ -z "$o" ]; then
    fail "$what: $1 $([ "$rc" -ne 0 ] && echo "exited $rc" || echo "printed nothing")"
    sed 's/^/    /' "$e" | head -10 >&2; rm -f "$e"
    return 1
  fi
  rm -f "$e"
  printf '%s\n' "$o"
}

# hmac_b64 KEY_B64 MESSAGE: base64(HMAC-SHA256(base64-decode(KEY_B64),
# MESSAGE)), by openssl (the judge, not enroll): device keys and SAS
# signatures. A key that does not decode, or a missing tool, is a failure
# and no output (openssl would take an empty hex key and answer anyway).
hmac_b64() {
  local hex
  hex=$(printf '%s' "$1" | base64 -d | xxd -p -c 256) && [ -n "$hex" ] ||
    { fail "hmac_b64: cannot make the key '${1:0:6}...' hex (base64 -d | xxd)"; return 1; }
  out "hmac_b64: openssl HMAC" bash -c 'printf "%s" "$2" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$1" -binary | base64' \
    _ "$hex" "$2"
}

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
  # grep also says "no" for a file it cannot read; that judges nothing.
  if [ ! -r "$1" ]; then fail "$3: no file $1 to look in"
  elif grep -qF -- "$2" "$1"; then fail "$3: '$2' unexpectedly in $(basename "$1")"; else pass; fi
}

# same DESCRIPTION A B: two strings are equal. B, the expected value, must
# not be empty: when it is computed ($(...)) and its command failed, an
# empty A would pass without anything being compared (use `empty`).
same() {
  if [ -z "$3" ]; then fail "$1: nothing to compare with (the expected value is empty)"
  elif [ "$2" == "$3" ]; then pass; else fail "$1: '$2' != '$3'"; fi
}
# empty DESCRIPTION VALUE: VALUE is empty (say, a list of what went wrong).
empty() {
  if [ -z "$2" ]; then pass; else fail "$1: '$2' is not empty"; fi
}

# json FILE FILTER: one value from a JSON file (jq -r).
json() { jq -r "$2" "$1"; }

# crl_number FILE: a CRL's number in decimal (OpenSSL 3 prints crlNumber=0x02,
# 1.1 crlNumber=02).
crl_number() {
  local n
  n=$(openssl crl -in "$1" -noout -crlnumber | cut -d= -f2)
  n=${n#0x}
  [[ $n =~ ^[0-9A-Fa-f]+$ ]] || { fail "crl_number: no CRL number in $1 ('$n')"; return 1; }
  echo $((16#$n))
}

finish() {
  # Hand stderr back and let tee write out what it has (bounded: a process
  # left running in the background may still hold the pipe).
  exec 2>&"$LIB_STDERR"
  local errors line
  for _ in $(seq 1 100); do kill -0 "$LIB_TEE_PID" 2>/dev/null || break; sleep 0.02; done
  errors=$(grep -E '^[^ ]+\.sh: line [0-9]+: ' "$WORK/.stderr" 2>/dev/null)
  if [ -n "$errors" ]; then
    while IFS= read -r line; do fail "the test script itself failed: $line"; done <<<"$errors"
  fi
  # Failures recorded in subshells are in the file only.
  FAILED=$(wc -l < "$WORK/.failures")
  echo "$(basename "$0" .sh): $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
