#!/usr/bin/env bash
# Microsoft's own Node DPS client (azure-iot-provisioning-device-mqtt, used
# unmodified, pinned by tests/interop/node/package-lock.json) registers
# against enrolld over MQTT: a group's symmetric key, an individual
# enrollment's key and X.509, with no CSR (classic assignment); a wrong key
# is refused. The outcome the client reports is judged against enrolld's
# store (`enroll admin registration show`).
#
# The packages come from the npm registry with `npm ci`, once, into
# $ENROLL_BUILD_DIR/node-interop (reused while the lockfile is unchanged).
# No registry, no node or no npm: the test fails (a check that cannot run
# must fail, never vanish).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
for tool in node npm jq openssl curl flock sha256sum; do
  command -v $tool >/dev/null || { cannot_run "test_node_interop" "no $tool"; finish; exit 1; }
done
NODE_SRC=${ENROLL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/interop/node
CACHE=${ENROLL_BUILD_DIR:-$(dirname "$(dirname "$ENROLL")")}/node-interop
SCOPE=0ne0000n0de
HUB=hub-node.example.test:8883

# ---- the pinned packages: npm ci once per lockfile --------------------------------
T0=$(date +%s)
if ! npm_install "$NODE_SRC" "$CACHE"; then
  fail "cannot run test_node_interop: 'npm ci' of tests/interop/node/package-lock.json failed (is the npm registry reachable?); its log:"
  { grep -m6 -E "^npm (error|ERR!) (code|errno|syscall|network|request|[a-z]+ [a-z]+)" "$CACHE/npm-ci.log" ||
    tail -8 "$CACHE/npm-ci.log"; } 2>/dev/null | sed 's/^/    /' >&2
  echo "    (full log: $CACHE/npm-ci.log)" >&2
  finish; exit 1
fi
pass
echo "npm packages ready in $(( $(date +%s) - T0 )) s (node $(node --version), npm $(npm --version))"
for p in azure-iot-provisioning-device azure-iot-provisioning-device-mqtt azure-iot-security-symmetric-key azure-iot-security-x509; do
  same "$p: the pinned version is installed" "$(jq -r .version "$CACHE/node_modules/$p/package.json" 2>/dev/null)" \
    "$(jq -r ".dependencies[\"$p\"]" "$NODE_SRC/package.json")"
done

# ---- enrolld with an "mqtt" listener -------------------------------------------
service_pki
service_store "$SCOPE"
GROUP_KEY=$(cat group.key)
# A symmetric-key group of our own, with a hub to be assigned to.
"$ENROLL" admin group new nodefleet --policy p30 --symmetric --hub "$HUB" --data data --json > nodefleet.json
NODEFLEET_KEY=$(jq -r .primary_key nodefleet.json)
[ -n "$NODEFLEET_KEY" ] && [ "$NODEFLEET_KEY" != null ] && pass || fail "group nodefleet: no key ($(cat nodefleet.json))"

start() { # CONFIG-EXTRA LOG -> PID, MQTT_PORT
  enrolld_mqtt_start "$2" "$1"
  PID=$EPID
  [ -n "$MQTT_PORT" ] && pass || { fail "enrolld printed no mqtt_port: $(cat "$2")"; finish; exit 1; }
}
start "" enrolld.log

# node_register OUT VAR=VALUE...: the Node client, its parameters in the
# environment (no key on a command line), trusting our root.
node_register() {
  local out=$1; shift
  env "$@" DPS_HOST="127.0.0.1:$MQTT_PORT" DPS_ID_SCOPE="$SCOPE" NODE_EXTRA_CA_CERTS="$WORK/root/cert.pem" \
    NODE_PATH="$CACHE/node_modules" timeout 60 node "$NODE_SRC/register.js" > "$out" 2> "$out.err"
  local rc=$?
  [ "$rc" -eq 0 ] || { fail "register.js exited $rc: $(head -c 600 "$out.err")"; return 1; }
  jq -e . "$out" > /dev/null || { fail "register.js printed no JSON: $(head -c 600 "$out")"; return 1; }
}

# assigned OUT RID WHAT: the client reports "assigned", and the hub and
# device id that enrolld's store holds for RID.
assigned() {
  local out=$1 rid=$2 what=$3
  [ "$(json "$out" .ok)" = true ] && pass || { fail "$what: the client failed: $(head -c 800 "$out")"; return; }
  same "$what: status assigned" "$(json "$out" .result.status)" "assigned"
  same "$what: registrationId" "$(json "$out" .result.registrationId)" "$rid"
  "$ENROLL" admin registration show "$rid" --data data --json > "$rid.store.json" 2>&1 ||
    { fail "$what: enroll admin registration show $rid: $(cat "$rid.store.json")"; return; }
  same "$what: the store says assigned" "$(json "$rid.store.json" .status)" "assigned"
  same "$what: assignedHub is the store's" "$(json "$out" .result.assignedHub)" "$(json "$rid.store.json" .assigned_hub)"
  same "$what: deviceId is the store's" "$(json "$out" .result.deviceId)" "$(json "$rid.store.json" .device_id)"
}

# (1) A group's symmetric key: the client derives the device key itself.
T1=$(date +%s%N)
node_register sas-group.json DPS_REGISTRATION_ID=node-dev-001 DPS_GROUP_KEY="$NODEFLEET_KEY" &&
  assigned sas-group.json node-dev-001 "SAS, group key"
same "SAS, group key: the group's hub" "$(json sas-group.json .result.assignedHub)" "$HUB"
same "SAS, group key: no certificate asked, none issued" "$(json sas-group.json '.result.issuedCertificateChain // "none"')" "none"
echo "one registration by the Node client (node start included): $(( ($(date +%s%N) - T1) / 1000000 )) ms"

# service_store's group, the device key derived beforehand by openssl
# (device_key) and given to the client as a plain device key.
node_register sas-derived.json DPS_REGISTRATION_ID=node-dev-002 \
  DPS_SYMMETRIC_KEY="$(device_key "$GROUP_KEY" node-dev-002)" &&
  assigned sas-derived.json node-dev-002 "SAS, key derived by openssl"

# (2) An individual enrollment's own key.
"$ENROLL" admin individual new node-ind-001 --policy p30 --symmetric --hub "$HUB" --data data --json > ind.json
IND_KEY=$(jq -r .primary_key ind.json)
[ -n "$IND_KEY" ] && [ "$IND_KEY" != null ] && pass || fail "individual: no key ($(cat ind.json))"
node_register sas-ind.json DPS_REGISTRATION_ID=node-ind-001 DPS_SYMMETRIC_KEY="$IND_KEY" &&
  assigned sas-ind.json node-ind-001 "SAS, individual key"
same "SAS, individual key: the enrollment's hub" "$(json sas-ind.json .result.assignedHub)" "$HUB"

# (3) X.509: a device certificate chaining to a CA on an enrollment group.
service_x509_group xfleet --hub "$HUB"
"$ENROLL" key new --out x1.key >/dev/null
"$ENROLL" csr new --key x1.key --dn "CN=node-x509-001" --out x1.csr 2>/dev/null
"$ENROLL" ca sign --dir boot-int --profile device --cn node-x509-001 x1.csr --out x1.crt 2>/dev/null
cat x1.crt boot-int/cert.pem > x1.chain.pem
node_register x509.json DPS_REGISTRATION_ID=node-x509-001 DPS_CERT_FILE="$WORK/x1.chain.pem" DPS_KEY_FILE="$WORK/x1.key" &&
  assigned x509.json node-x509-001 "X.509"

# Negative: a wrong key is refused; the client says so (unauthorized).
node_register wrong.json DPS_REGISTRATION_ID=node-dev-003 DPS_SYMMETRIC_KEY="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
same "wrong key: the client fails" "$(json wrong.json .ok)" "false"
# enrolld refuses the CONNECT: CONNACK 4, "bad user name or password", MQTT's 401.
same "wrong key: refused at CONNACK with 4 (bad user name or password)" "$(json wrong.json .error.code)" "4"
grep -qiE 'unauthori|not authorized|bad user ?name or password|401' wrong.json && pass ||
  fail "wrong key: the client's error does not say unauthorized: $(cat wrong.json)"
"$ENROLL" admin registration show node-dev-003 --data data --json > wrong.store.json 2>&1
[ "$(json wrong.store.json .status 2>/dev/null)" != assigned ] && pass || fail "wrong key: node-dev-003 was registered anyway"
# X.509 for another registration id is refused too.
node_register x509-other.json DPS_REGISTRATION_ID=node-x509-009 DPS_CERT_FILE="$WORK/x1.chain.pem" DPS_KEY_FILE="$WORK/x1.key"
same "X.509, another id: the client fails" "$(json x509-other.json .ok)" "false"

# ---- enrolld: no secret in its log, a clean stop ------------------------------------
# metrics LOG: enrolld's /metrics into metrics.txt.
metrics() {
  curl -s --cacert root/cert.pem "https://127.0.0.1:$(grep -o '"port":[0-9]*' "$1" | head -1 | cut -d: -f2)/metrics" > metrics.txt
  grep -q '^enroll_mqtt_answers_total ' metrics.txt && pass || fail "no MQTT metrics from enrolld ($1)"
}
stop() { # LOG
  # Nothing the client sent was malformed to enrolld.
  metrics "$1"
  contains metrics.txt 'enroll_mqtt_closed_total{reason="malformed"} 0' "$1: no connection of the Node client closed as malformed"
  for secret in "$GROUP_KEY" "$NODEFLEET_KEY" "$IND_KEY" "$(device_key "$NODEFLEET_KEY" node-dev-001)" SharedAccessSignature "sig="; do
    lacks "$1" "$secret" "$1 holds no secret ('${secret:0:8}...')"
  done
  kill "$PID"; wait "$PID" 2>/dev/null
  same "enrolld stopped cleanly ($1)" "$(grep -c '"event":"stopped"' "$1")" "1"
  lacks "$1" "Sanitizer" "no sanitizer report (ASan builds)"
}
stop enrolld.log

# (4) 202 then polling: with assigning_after_ms 0 every registration is
# answered 202 "assigning", and the client polls (its QoS 1 publish of " "
# to iotdps-get-operationstatus) until "assigned".
start ', "limits": {"assigning_after_ms": 0}' enrolld2.log
node_register poll.json DPS_REGISTRATION_ID=node-dev-004 DPS_GROUP_KEY="$NODEFLEET_KEY" \
  DEBUG=azure-iot-provisioning-device-mqtt:Mqtt &&
  assigned poll.json node-dev-004 "SAS, 202 then polled"
# The client polled (its own debug log), and enrolld answered twice or more.
contains poll.json.err "operationStatus publish" "202 then polled: the client polled"
metrics enrolld2.log
answers=$(sed -n 's/^enroll_mqtt_answers_total //p' metrics.txt)
[ "${answers:-0}" -ge 2 ] && pass || fail "202 then polled: enrolld published ${answers:-no} answers, wanted 2 or more"
stop enrolld2.log
finish
