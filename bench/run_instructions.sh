#!/usr/bin/env bash
# Issue 16's instruction target, beside its reference in the same run:
# bench/callgrind_pair.sh counts enrolld's instructions per DPS registration
# (1 worker, one TLS keep-alive connection, 1000 registrations, each a new
# device, committed with fsync before the answer), and the same profile
# gives the floor under it: the proof of possession's ECDSA P-256 verify
# (EVP_DigestVerify) and the certificate's signature (EVP_DigestSign), which
# no service around them can avoid with this OpenSSL.
#
#   bench/run_instructions.sh [BUILD_DIR]   (default: build)
# Environment: REQUESTS (1000), TARGET (1000000), KEEP_WORK=1 to keep the
#   callgrind output (its directory is printed).
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
REQUESTS=${REQUESTS:-1000}
TARGET=${TARGET:-1000000}
for t in valgrind callgrind_annotate; do
  command -v "$t" >/dev/null || { echo "run_instructions: needs $t (Debian package valgrind)" >&2; exit 1; }
done
OUT=$(mktemp -d /tmp/enroll-instructions-XXXXXX)
trap '[ -n "${KEEP_WORK:-}" ] && echo "run_instructions: kept $OUT" >&2 || rm -rf "$OUT"' EXIT
echo "== instructions per registration (callgrind over enrolld: 1 worker, 1 keep-alive connection, $REQUESTS registrations)"
line=$(KINDS=keepalive REQUESTS=$REQUESTS WORKERS=1 CONNECTIONS=1 "$SRC/bench/callgrind_pair.sh" "$BUILD" "$OUT" 2> "$OUT/stderr" |
  grep '^keepalive ') || { cat "$OUT/stderr" >&2; echo "run_instructions: bench/callgrind_pair.sh failed" >&2; exit 1; }
echo "  $line"
ok=$(awk '{print $2}' <<<"$line")
per=$(awk '{print $(NF-3)}' <<<"$line")
inclusive() { # FUNCTION: its inclusive Ir in the profile
  callgrind_annotate --inclusive=yes "$OUT/callgrind.out.keepalive" 2>/dev/null |
    awk -v f="$1" '$0 ~ ":" f " \\[" { gsub(",", "", $1); print $1; exit }'
}
verify=$(inclusive EVP_DigestVerify)
sign=$(inclusive EVP_DigestSign)
awk -v per="$per" -v t="$TARGET" -v v="${verify:-0}" -v s="${sign:-0}" -v ok="$ok" 'BEGIN {
  fv = v / ok; fs = s / ok; floor = fv + fs
  printf "  floor in this profile: ECDSA P-256 verify %.0fk + sign %.0fk = %.2fM per registration (OpenSSL, not ours)\n", fv / 1000, fs / 1000, floor / 1e6
  printf "  %s instructions per registration: %.2fM, target %.2fM; ours (all but the floor) %.2fM%s\n", (per <= t ? "PASS" : "FAIL"), per / 1e6, t / 1e6, (per - floor) / 1e6, (floor > t ? sprintf("; the floor alone is %.0f%% of the target", 100 * floor / t) : "")
  printf "\n"
}'
