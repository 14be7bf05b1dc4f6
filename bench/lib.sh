# Shared by the bench scripts (source inside the scratch directory, with
# ENROLL, SCOPE and WORKERS set and a die() defined).
# bench_pki_store: bench_pki, then bench_store.
# bench_pki: a root and an issuing CA (root/, devices-ca/), a server
#   certificate for localhost/127.0.0.1 (server.{key,pem}).
# bench_store: the store: the CA, policy p30 (ec-p256), symmetric group
#   "fleet"; its key in GROUP_KEY. The store is BENCH_STORE if set (a
#   directory, or a postgresql:// URL: enroll admin's --db, enrolld's
#   "store"), else data/; the issuing CA's directory BENCH_CA_DIR if set
#   (a copy of devices-ca/: a CA directory is attached to one store), else
#   devices-ca/.
# bench_programs NAME TOOL...: ENROLL, ENROLLD (unless set) and LOAD from
#   BUILD, each checked to be built, and each TOOL on PATH; NAME (the
#   script's) leads any complaint, and the script exits 1.
# bench_enrolld_config: enrolld.json serving SCOPE over TLS with WORKERS
#   workers and DPS over MQTT, both on free ports of 127.0.0.1, on the
#   store above.
# bench_wait_ports LOG TRIES DELAY: PORT and MQTT_PORT from enrolld's log,
#   or die.
bench_pki_store() { bench_pki && bench_store; }

bench_pki() {
  "$ENROLL" ca init --dir root --subject '/O=Bench/CN=Bench Root' >/dev/null 2>&1 || die "ca init root"
  "$ENROLL" ca init --dir devices-ca --parent root --subject '/O=Bench/CN=Bench Devices' >/dev/null 2>&1 ||
    die "ca init devices"
  "$ENROLL" key new --out server.key >/dev/null
  "$ENROLL" csr new --key server.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server.csr 2>/dev/null
  "$ENROLL" ca sign --dir root --profile server server.csr --out server.pem 2>/dev/null || die "server certificate"
}

bench_store() {
  local at=(--data "${BENCH_STORE:-data}")
  case ${BENCH_STORE:-} in postgresql://* | postgres://*) at=(--db "$BENCH_STORE") ;; esac
  "$ENROLL" admin ca add devices --ca-dir "${BENCH_CA_DIR:-devices-ca}" "${at[@]}" >/dev/null || die "admin ca add"
  "$ENROLL" admin policy new p30 --validity P30D --renewal-window P7D --ca devices --key-types ec-p256 "${at[@]}" \
    >/dev/null || die "admin policy new"
  "$ENROLL" admin group new fleet --policy p30 --symmetric --hub mqtt.example:8883 "${at[@]}" --json > group.json ||
    die "admin group new"
  GROUP_KEY=$(jq -r .primary_key group.json)
}

bench_enrolld_config() {
  local store='"data_dir": "data"'
  [ -z "${BENCH_STORE:-}" ] || store="\"store\": \"$BENCH_STORE\""
  cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", $store, "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": $WORKERS,
 "mqtt": {"listen": "127.0.0.1:0"}}
JSON
}

bench_wait_ports() {
  PORT= MQTT_PORT=
  for _ in $(seq 1 "$2"); do
    PORT=$(grep -o '"port":[0-9]*' "$1" | head -1 | cut -d: -f2)
    MQTT_PORT=$(grep -o '"mqtt_port":[0-9]*' "$1" | head -1 | cut -d: -f2)
    [ -n "$PORT" ] && [ -n "$MQTT_PORT" ] && return 0
    sleep "$3"
  done
  cat "$1" >&2
  die "enrolld did not start"
}

bench_programs() {
  local name=$1 b t
  shift
  ENROLL=$BUILD/src/enroll
  ENROLLD=${ENROLLD:-$BUILD/src/enrolld}
  LOAD=$BUILD/bench/bench_load
  for b in "$ENROLL" "$ENROLLD" "$LOAD"; do
    [ -x "$b" ] || { echo "$name: $b is missing: build first (make build)" >&2; exit 1; }
  done
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$name: needs $t (scripts/install-deps.sh installs it)" >&2; exit 1; }
  done
}
