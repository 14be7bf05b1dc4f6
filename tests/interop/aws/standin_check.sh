#!/usr/bin/env bash
# A check of the interop clients themselves, not of enrolld: fleet_v2.js and
# fleet_v1.js against a stand-in (mosquitto with mutual TLS, and a responder
# of mosquitto_sub/mosquitto_pub that answers the fleet provisioning topics
# with canned documents, signing the CSR with a throwaway openssl CA). It
# shows that AWS's SDKs connect with mTLS, publish the right topics and
# bodies (the responder logs them; checked here with jq), and that the scripts
# parse accepted and rejected answers and exit 0 / 1 / 2.
#
#   tests/interop/aws/standin_check.sh        (KEEP_WORK=1 keeps the directory)
#
# The packages: npm ci --ignore-scripts of package-lock.json into
# ${AWS_INTEROP_CACHE:-${TMPDIR:-/tmp}/enroll-aws-interop}, once per lockfile
# digest, under flock (as tests/cli/test_node_interop.sh).
set -u
SRC=$(cd "$(dirname "$0")" && pwd)
CACHE=${AWS_INTEROP_CACHE:-${TMPDIR:-/tmp}/enroll-aws-interop}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/aws-standin.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${KEEP_WORK:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
FAILS=0 PASSES=0
pass() { PASSES=$((PASSES + 1)); }
fail() { FAILS=$((FAILS + 1)); echo "FAIL: $*" >&2; }
same() { [ "$2" = "$3" ] && pass || fail "$1: got '$2', wanted '$3'"; }
for tool in node npm jq openssl mosquitto mosquitto_sub mosquitto_pub flock sha256sum ss; do
  command -v $tool >/dev/null || { echo "FAIL: cannot run: no $tool" >&2; exit 1; }
done

# ---- the pinned packages -----------------------------------------------------------
want=$(cat "$SRC/package.json" "$SRC/package-lock.json" | sha256sum | cut -d' ' -f1)
mkdir -p "$CACHE"
(
  flock 9
  if [ "$(cat "$CACHE/.stamp" 2>/dev/null)" = "$want" ] && [ -d "$CACHE/node_modules" ]; then exit 0; fi
  rm -f "$CACHE/.stamp"
  cp "$SRC/package.json" "$SRC/package-lock.json" "$CACHE/" || exit 1
  npm ci --prefix "$CACHE" --ignore-scripts --no-audit --no-fund --fetch-retries=1 \
    --fetch-timeout=60000 > "$CACHE/npm-ci.log" 2>&1 || exit 1
  echo "$want" > "$CACHE/.stamp"
) 9> "$CACHE/.lock" || { echo "FAIL: npm ci failed: $(tail -5 "$CACHE/npm-ci.log")" >&2; exit 1; }
export NODE_PATH=$CACHE/node_modules
cd "$WORK" || exit 1

# ---- a throwaway PKI: root, server (127.0.0.1), claim, responder ----------------------
q() { "$@" > /dev/null 2>&1 || { echo "FAIL: $*" >&2; exit 1; }; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -days 2 -subj "/CN=standin root" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
issue() { # NAME CN [EXT]
  q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
  printf '%s\n' "${3:-basicConstraints=CA:FALSE}" > "$1.ext"
  q openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out "$1.pem" -extfile "$1.ext"
}
issue server localhost "$(printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth')"
issue claim claim-batch-7
issue responder responder
issue dev dev-serial-0042          # the device's own key and CSR
chmod 644 ./*.key                  # mosquitto may run as another user

# ---- mosquitto: mTLS required, any MQTT user name (the SDKs' metrics) -------------------
PORT=
for _ in $(seq 1 20); do
  p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
  ss -Htln | awk '{print $4}' | sed 's/.*://' | grep -qx "$p" || { PORT=$p; break; }
done
{
  echo "per_listener_settings false"
  echo "allow_anonymous true"
  echo "persistence false"
  echo "log_dest file $WORK/mosquitto.log"
  echo "log_type all"
  echo "connection_messages true"
  [ -n "${STANDIN_MAX_QOS:-}" ] && echo "max_qos $STANDIN_MAX_QOS"
  [ "$(id -u)" -eq 0 ] && echo "user root"
  echo "listener $PORT 127.0.0.1"
  echo "cafile $WORK/ca.pem"
  echo "certfile $WORK/server.pem"
  echo "keyfile $WORK/server.key"
  echo "require_certificate true"
} > mosquitto.conf
mosquitto -c mosquitto.conf > mosquitto.out 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do grep -q "running" mosquitto.log 2>/dev/null && break; sleep 0.1; done
grep -q running mosquitto.log || { echo "FAIL: mosquitto did not start: $(cat mosquitto.out mosquitto.log)" >&2; exit 1; }

# ---- the responder: canned answers, each request logged as "TOPIC<TAB>BODY" --------------
RQOS=${STANDIN_MAX_QOS:-1}   # the responder's answers; STANDIN_MAX_QOS=0: answers at QoS 0 (all clients accept them)
TLS=(--cafile ca.pem --cert responder.pem --key responder.key -h 127.0.0.1 -p "$PORT")
: > requests.log
n=0
respond() { # TOPIC BODY
  local t=$1 body=$2 out
  n=$((n + 1))
  printf '%s\t%s\n' "$t" "$body" >> requests.log
  case $t in
    '$aws/certificates/create-from-csr/json')
      jq -r .certificateSigningRequest <<<"$body" > "req$n.csr"
      if openssl x509 -req -in "req$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
           -out "req$n.pem" > /dev/null 2>&1; then
        out=$(jq -cn --rawfile pem "req$n.pem" --arg id "certid$n" --arg tok "token-$n" \
          '{certificateId:$id, certificatePem:$pem, certificateOwnershipToken:$tok}')
        mosquitto_pub "${TLS[@]}" -i "resp$n" -q "$RQOS" -t "$t/accepted" -m "$out"
      else
        mosquitto_pub "${TLS[@]}" -i "resp$n" -q "$RQOS" -t "$t/rejected" \
          -m '{"statusCode":400,"errorCode":"InvalidCsr","errorMessage":"the CSR does not parse"}'
      fi ;;
    '$aws/certificates/create/json')
      q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "gen$n.key" -out "gen$n.csr" -subj "/CN=gen$n"
      q openssl x509 -req -in "gen$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out "gen$n.pem"
      out=$(jq -cn --rawfile pem "gen$n.pem" --rawfile key "gen$n.key" --arg id "certid$n" --arg tok "token-$n" \
        '{certificateId:$id, certificatePem:$pem, privateKey:$key, certificateOwnershipToken:$tok}')
      mosquitto_pub "${TLS[@]}" -i "resp$n" -q "$RQOS" -t "$t/accepted" -m "$out" ;;
    '$aws/provisioning-templates/'*'/provision/json')
      if [ "$t" = '$aws/provisioning-templates/refuse/provision/json' ]; then
        mosquitto_pub "${TLS[@]}" -i "resp$n" -q "$RQOS" -t "$t/rejected" \
          -m '{"statusCode":403,"errorCode":"ACCESS_DENIED","errorMessage":"the pre-provisioning hook said no"}'
      else
        out=$(jq -c '{deviceConfiguration:{Fallback:"standin",Serial:.parameters.SerialNumber},
                      thingName:("thing-" + (.parameters.SerialNumber // "none"))}' <<<"$body")
        mosquitto_pub "${TLS[@]}" -i "resp$n" -q "$RQOS" -t "$t/accepted" -m "$out"
      fi ;;
  esac
}
mkfifo sub.fifo
mosquitto_sub "${TLS[@]}" -i responder -q 1 -F '%t	%p' \
  -t '$aws/certificates/create-from-csr/json' -t '$aws/certificates/create/json' \
  -t '$aws/provisioning-templates/+/provision/json' > sub.fifo &
PIDS+=($!)
( while IFS=$'\t' read -r t body; do respond "$t" "$body"; done ) < sub.fifo &
PIDS+=($!)
for _ in $(seq 1 50); do grep -q "responder 1 \$aws/provisioning-templates" mosquitto.log && break; sleep 0.1; done

# ---- the clients -------------------------------------------------------------------------
COMMON=(--host 127.0.0.1 --port "$PORT" --ca ca.pem --cert claim.pem --key claim.key)
run() { # OUT WANT-RC SCRIPT ARGS...
  local out=$1 want=$2 rc; shift 2
  : > requests.log
  timeout 60 node "$SRC/$1" "${@:2}" > "$out" 2> "$out.err"; rc=$?
  same "$out: exit status" "$rc" "$want"
  [ "$rc" = "$want" ] || { sed 's/^/    /' "$out" "$out.err" >&2; }
  jq -e . "$out" > /dev/null 2>&1 && pass || fail "$out: no JSON line: $(head -c 300 "$out")"
  cp requests.log "$out.requests"
}
# check_requests OUT TEMPLATE MODE: what the responder received
check_requests() {
  local out=$1 tmpl=$2 mode=$3 r=$1.requests
  same "$out: two requests" "$(wc -l < "$r")" 2
  if [ "$mode" = csr ]; then
    same "$out: create topic" "$(sed -n 1p "$r" | cut -f1)" '$aws/certificates/create-from-csr/json'
    same "$out: the CSR sent is the device's" "$(sed -n 1p "$r" | cut -f2 | jq -r .certificateSigningRequest)" "$(cat dev.csr)"
  else
    same "$out: create topic" "$(sed -n 1p "$r" | cut -f1)" '$aws/certificates/create/json'
    same "$out: an empty create body" "$(sed -n 1p "$r" | cut -f2 | jq -c .)" '{}'
  fi
  same "$out: register topic" "$(sed -n 2p "$r" | cut -f1)" "\$aws/provisioning-templates/$tmpl/provision/json"
  same "$out: the ownership token" "$(sed -n 2p "$r" | cut -f2 | jq -r .certificateOwnershipToken)" "$(json "$out" .certificateOwnershipToken)"
  same "$out: parameters" "$(sed -n 2p "$r" | cut -f2 | jq -c .parameters)" '{"SerialNumber":"0042","Region":"eu"}'
}
json() { jq -r "$2" "$1" 2>/dev/null; }
check_ok() { # OUT
  same "$1: ok" "$(json "$1" .ok)" true
  same "$1: thingName" "$(json "$1" .thingName)" thing-0042
  same "$1: deviceConfiguration" "$(jq -c .deviceConfiguration "$1" 2>/dev/null)" '{"Fallback":"standin","Serial":"0042"}'
  json "$1" .certificatePem | openssl verify -CAfile ca.pem > /dev/null 2>&1 && pass || fail "$1: certificatePem does not verify"
}
PARAMS=(--template fleet-tmpl --param SerialNumber=0042 --param Region=eu)
for api in rr pubsub; do
  for mq in 5 311; do
    o=v2-$api-$mq-csr.json
    run "$o" 0 fleet_v2.js "${COMMON[@]}" "${PARAMS[@]}" --mode csr --csr dev.csr --api $api --mqtt $mq --out-cert "$o.crt"
    check_ok "$o"; check_requests "$o" fleet-tmpl csr
    cmp -s "$o.crt" <(jq -j .certificatePem "$o") && pass || fail "$o: --out-cert differs"
    same "$o: the certificate is for the device's key" \
      "$(openssl x509 -in "$o.crt" -noout -pubkey | sha256sum)" "$(openssl pkey -in dev.key -pubout | sha256sum)"
    o=v2-$api-$mq-keys.json
    run "$o" 0 fleet_v2.js "${COMMON[@]}" "${PARAMS[@]}" --mode keys --api $api --mqtt $mq --out-cert "$o.crt" --out-key "$o.key"
    check_ok "$o"; check_requests "$o" fleet-tmpl keys
    same "$o: --out-key is 0600" "$(stat -c %a "$o.key")" 600
    same "$o: the key matches the certificate" \
      "$(openssl x509 -in "$o.crt" -noout -pubkey | sha256sum)" "$(openssl pkey -in "$o.key" -pubout | sha256sum)"
    # Rejections: at RegisterThing (template "refuse"), and at create (a bad CSR).
    o=v2-$api-$mq-refused.json
    run "$o" 1 fleet_v2.js "${COMMON[@]}" --template refuse --param SerialNumber=0042 --mode csr --csr dev.csr --api $api --mqtt $mq
    same "$o" "$(jq -c '[.ok,.stage,.statusCode,.errorCode,.errorMessage]' "$o")" \
      '[false,"register",403,"ACCESS_DENIED","the pre-provisioning hook said no"]'
    o=v2-$api-$mq-badcsr.json
    run "$o" 1 fleet_v2.js "${COMMON[@]}" "${PARAMS[@]}" --mode csr --csr ca.key --api $api --mqtt $mq
    same "$o" "$(jq -c '[.ok,.stage,.statusCode,.errorCode]' "$o")" '[false,"create",400,"InvalidCsr"]'
  done
done
o=v1-csr.json
run "$o" 0 fleet_v1.js "${COMMON[@]}" "${PARAMS[@]}" --mode csr --csr dev.csr --out-cert "$o.crt"
check_ok "$o"; check_requests "$o" fleet-tmpl csr
same "$o: v1 also sends templateName" "$(sed -n 2p "$o.requests" | cut -f2 | jq -r .templateName)" fleet-tmpl
o=v1-refused.json
run "$o" 1 fleet_v1.js "${COMMON[@]}" --template refuse --param SerialNumber=0042 --mode csr --csr dev.csr
same "$o" "$(jq -c '[.ok,.stage,.statusCode,.errorCode]' "$o")" '[false,"register",403,"ACCESS_DENIED"]'

# Transport failures: exit 2. A client certificate the broker does not trust.
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key -out other.pem -days 1 -subj "/CN=stranger"
for s in fleet_v2.js fleet_v1.js; do
  run "$s-untrusted.json" 2 "$s" --host 127.0.0.1 --port "$PORT" --ca ca.pem --cert other.pem --key other.key \
    --template fleet-tmpl --mode csr --csr dev.csr --timeout 10
  same "$s-untrusted: stage connect" "$(json "$s-untrusted.json" .stage)" connect
done
# Nothing answers (no such port): exit 2 within the timeout.
run v2-noport.json 2 fleet_v2.js --host 127.0.0.1 --port 1 --ca ca.pem --cert claim.pem --key claim.key \
  --template fleet-tmpl --mode keys --timeout 5
# Bad usage: exit 2.
node "$SRC/fleet_v2.js" --host 127.0.0.1 > /dev/null 2>&1; same "usage: exit 2" "$?" 2

# What the server saw of the SDKs (for the record): CONNECT, SUBSCRIBE, PUBLISH.
grep -E "New client connected|Received (SUBSCRIBE|UNSUBSCRIBE|PUBLISH)|^[0-9]+: +\\\$aws| \(QoS " mosquitto.log |
  grep -v responder | grep -v "from resp" > wire.log
echo "== $PASSES passed, $FAILS failed (stand-in on 127.0.0.1:$PORT; $WORK/wire.log)"
[ "$FAILS" -eq 0 ]
