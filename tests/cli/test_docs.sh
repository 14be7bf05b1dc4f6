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
# Every key enrolld's config accepts (the key lists of src/service/config.c)
# is in the one reference, docs/operations.md "Configuration": limits.*,
# mqtt.*, audit.* and crl.* by their dotted names.
CONFIG_DOC=$(sed -n '/^## Configuration$/,/^## /p' "$SRC/docs/operations.md")
[ -n "$CONFIG_DOC" ] && pass || fail "docs/operations.md has no Configuration section"
nkeys=0
while read -r list keys; do
  for k in $keys; do
    lower=$(tr '[:upper:]' '[:lower:]' <<<"$list")
    case $list in # a row of its own: | `key` or | `group.key`; tls and admin: | `tls` `{cert, key, ...}`
    TOP) re="^\\| [^|]*\`$k(\`|\\.)" ;; # its own row, or its keys' rows (limits.*)
    MQTT) # the keys of both MQTT ports
      grep -qE -- "^\\| .*\`aws\\.$k\`" <<<"$CONFIG_DOC" && pass || fail "config key aws.$k has no row in docs/operations.md, Configuration"
      re="^\\| .*\`mqtt\\.$k\`" k=mqtt.$k ;;
    AWS | AUDIT | LIMITS | CRL) re="^\\| .*\`$lower\\.$k\`" k=$lower.$k ;;
    *) re="^\\| \`$lower\` \`\\{[^}]*\\b$k\\b" k=$lower.$k ;;
    esac
    nkeys=$((nkeys + 1))
    grep -qE -- "$re" <<<"$CONFIG_DOC" && pass || fail "config key $k has no row in docs/operations.md, Configuration"
  done
done < <(awk '/static const char \*const [A-Z]+\[\] = \{/ { for (i = 1; i <= NF; i++) if ($i ~ /\[\]$/) name = $i; sub(/\[\]/, "", name); on = 1; keys = "" }
              on { while (match($0, /"[a-z_]+"/)) { keys = keys " " substr($0, RSTART + 1, RLENGTH - 2); $0 = substr($0, RSTART + RLENGTH) } }
              on && /NULL\};/ { print name, keys; on = 0 }' "$SRC/src/service/config.c")
[ "$nkeys" -ge 30 ] && pass || fail "read only $nkeys config keys from src/service/config.c"
finish
