#!/usr/bin/env bash
# Runs every fuzz target in BUILD/fuzz for SECONDS each, on a scratch copy of
# its corpus (new inputs stay out of the repository). Fails on any crash.
set -euo pipefail
build=${1:?usage: fuzz.sh BUILD_DIR SECONDS}
seconds=${2:?usage: fuzz.sh BUILD_DIR SECONDS}
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for target in "$build"/fuzz/fuzz_*; do
  [ -x "$target" ] || continue
  name=$(basename "$target")
  corpus="$root/fuzz/corpus/$name"
  mkdir -p "$scratch/$name" "$scratch/$name-artifacts"
  args=("$scratch/$name")
  [ -d "$corpus" ] && args+=("$corpus")
  if "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$scratch/$name-artifacts/" "${args[@]}" >"$scratch/$name.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$name.log" | grep -o '[0-9]*$' || echo '?')
    echo "fuzz $name: ok, $runs runs in ${seconds}s"
  else
    echo "fuzz $name: FAILED" >&2
    tail -40 "$scratch/$name.log" >&2
    mkdir -p "$root/fuzz/crashes"
    cp "$scratch/$name-artifacts/"* "$root/fuzz/crashes/" 2>/dev/null || true
    status=1
  fi
done
exit $status
