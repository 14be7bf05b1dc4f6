#!/usr/bin/env bash
# docs/cli.md is exactly what scripts/gen-cli-doc.sh makes from --help, and
# the README's tour only uses commands and options that exist.
. "$(dirname "$0")/lib.sh"
SRC=${ENROLL_SOURCE_DIR:?}
"$SRC/scripts/gen-cli-doc.sh" "$ENROLL" > "$WORK/cli.md"
if diff -u "$SRC/docs/cli.md" "$WORK/cli.md" > "$WORK/diff"; then pass; else
  fail "docs/cli.md is stale: run scripts/gen-cli-doc.sh build/src/enroll > docs/cli.md"; head -20 "$WORK/diff" >&2
fi
# Every long option the README shows is one the program documents.
for opt in $(grep -oE -- '--[a-z][a-z0-9-]+' "$SRC/README.md" | sort -u); do
  case $opt in --help|--json) pass; continue ;; esac
  if grep -qF -- "$opt" "$WORK/cli.md"; then pass; else fail "README mentions $opt, which enroll does not document"; fi
done
finish
