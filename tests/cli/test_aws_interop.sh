#!/usr/bin/env bash
# AWS's own Node device SDKs, unmodified (pinned by
# tests/interop/aws/package-lock.json), provision against enrolld's AWS
# port with a claim certificate, exactly as AWS's fleet provisioning samples
# do; only endpoint, port and CA differ:
# - aws-iot-device-sdk-v2 over MQTT 5 (IotIdentityClientv2, the current
#   sample): CreateCertificateFromCsr -> RegisterThing, and
#   CreateKeysAndCertificate -> RegisterThing where the template allows it;
#   over MQTT 3.1.1 with the older IotIdentityClient too;
# - aws-iot-device-sdk (v1, MQTT 3.1.1): the CSR flow.
# Each issued certificate then connects to mosquitto over mutual TLS as its
# thing and publishes; the claim certificate cannot. Judged by the store
# (`enroll admin thing show`), openssl and the broker's log.
# No registry, no node or no npm: the test fails (a check that cannot run
# must fail, never vanish).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
. "$(dirname "$0")/lib_broker.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; broker_stop; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
for tool in node npm jq openssl flock sha256sum mosquitto mosquitto_pub; do
  command -v $tool >/dev/null || { cannot_run "test_aws_interop" "no $tool"; finish; exit 1; }
done
SRC=${ENROLL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/interop/aws
CACHE=${ENROLL_BUILD_DIR:-$(dirname "$(dirname "$ENROLL")")}/aws-interop
SCOPE=0ne0000aws2

if ! npm_install "$SRC" "$CACHE"; then
  fail "cannot run test_aws_interop: 'npm ci' of tests/interop/aws/package-lock.json failed (is the npm registry reachable?); log: $CACHE/npm-ci.log"
  finish; exit 1
fi
pass
for p in aws-iot-device-sdk-v2 aws-iot-device-sdk; do
  same "$p: the pinned version is installed" "$(jq -r .version "$CACHE/node_modules/$p/package.json" 2>/dev/null)" \
    "$(jq -r ".dependencies[\"$p\"]" "$SRC/package.json")"
done
export NODE_PATH=$CACHE/node_modules

# ---- enrolld with templates for a claim CA ------------------------------------------
service_pki
service_store
service_claim_ca factory
service_claim_ca keyfactory
service_claim_cert factory claim
service_claim_cert keyfactory claim-k
cat > fleet.json <<'JSON'
{"Parameters": {"SerialNumber": {"Type": "String"}},
 "Resources": {
   "thing": {"Type": "AWS::IoT::Thing", "Properties": {
     "ThingName": {"Fn::Join": ["-", ["sensor", {"Ref": "SerialNumber"}]]},
     "AttributePayload": {"serial": {"Ref": "SerialNumber"}}}},
   "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
     "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}}},
 "DeviceConfiguration": {"telemetryTopic": {"Fn::Join": ["/", ["devices", {"Fn::Join": ["-", ["sensor", {"Ref": "SerialNumber"}]]}, "telemetry"]]}}}
JSON
check "template fleet" "$ENROLL" admin template create fleet --file fleet.json --policy p30 --claim-ca factory --data data
check "template keys (server key generation allowed)" "$ENROLL" admin template create keys --file fleet.json \
  --policy p30 --claim-ca keyfactory --allow-server-keygen --data data
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2,
 "aws": {"listen": "127.0.0.1:0"}}
JSON
enrolld_start enrolld.json enrolld.log
AWS_PORT=$(grep -ao '"aws_port":[0-9]*' enrolld.log | head -1 | cut -d: -f2)
[ -n "$AWS_PORT" ] && pass || { fail "enrolld printed no aws_port"; finish; exit 1; }
cat root/cert.pem devices-ca/cert.pem > client-ca.pem
broker_start broker client-ca.pem server.pem server.key || { fail "mosquitto did not start"; finish; exit 1; }

# fleet SCRIPT NAME ARGS...: one SDK run with the claim; its JSON line in NAME.json.
fleet() {
  local script=$1 name=$2; shift 2
  timeout 60 node "$SRC/$script" --host 127.0.0.1 --port "$AWS_PORT" --ca root/cert.pem "$@" \
    > "$name.json" 2> "$name.err"
}
# telemetry NAME CERT KEY: the issued certificate connects to mosquitto as its thing.
telemetry() {
  local thing topic
  thing=$(json "$1.json" .thingName)
  topic=$(json "$1.json" .deviceConfiguration.telemetryTopic)
  same "$1: the device configuration names its topic" "$topic" "devices/$thing/telemetry"
  check "$1: publishes to mosquitto over mutual TLS with the issued certificate" timeout 20 mosquitto_pub \
    -h 127.0.0.1 -p "$BROKER_PORT" --cafile root/cert.pem --cert "$2" --key "$3" -V 5 -q 1 -t "$topic" -m '{"ok":1}'
  broker_wait_log "u'$thing'" 10 && pass || fail "$1: the broker did not see the thing '$thing' as its user"
}
# judged NAME THING KEY: the SDK's answer against the store and openssl.
judged() {
  same "$1: the thing" "$(json "$1.json" .thingName)" "$2"
  json "$1.json" .certificatePem > "$1.pem"
  check "$1: the certificate chains to the root for TLS clients" \
    openssl verify -CAfile root/cert.pem -untrusted devices-ca/cert.pem -purpose sslclient "$1.pem"
  same "$1: the certificate holds the key" "$(openssl x509 -in "$1.pem" -noout -pubkey | openssl sha256)" \
    "$(openssl pkey -in "$3" -pubout | openssl sha256)"
  check "$1: the thing in the store" "$ENROLL" admin thing show "$2" --data data --json
  same "$1: its active certificate is the SDK's" \
    "$(jq -r '[.certificates[] | select(.status == "active") | .fingerprint_sha256] | join(",")' "$WORK/.out")" \
    "$(json "$1.json" .certificateId)"
}

# ---- v2, MQTT 5, the current sample's request-response client: CSR flow ---------------
"$ENROLL" key new --out v2.key >/dev/null
"$ENROLL" csr new --key v2.key --dn CN=sensor-0001 --out v2.csr 2>/dev/null
check "v2 (MQTT 5): CreateCertificateFromCsr -> RegisterThing" fleet fleet_v2.js v2 --cert claim.pem --key claim.key \
  --template fleet --param SerialNumber=0001 --mode csr --csr v2.csr
judged v2 sensor-0001 v2.key
telemetry v2 v2.pem v2.key

# ---- v2, MQTT 5: CreateKeysAndCertificate where allowed, refused where not --------------
# The device connects with its name as client id (as AWS advises): the
# certificate made for the key is issued to it.
check "v2 (MQTT 5): CreateKeysAndCertificate -> RegisterThing" fleet fleet_v2.js v2k --cert claim-k.pem \
  --key claim-k.key --template keys --param SerialNumber=0002 --mode keys --out-key v2k.key --client-id sensor-0002
judged v2k sensor-0002 v2k.key
same "v2k: the key file is 0600" "$(stat -c %a v2k.key)" "600"
telemetry v2k v2k.pem v2k.key
expect_exit 1 "v2: CreateKeysAndCertificate under a template that does not allow it" \
  fleet fleet_v2.js v2no --cert claim.pem --key claim.key --template fleet --param SerialNumber=0009 --mode keys
same "v2: rejected at create" "$(json v2no.json .stage)" "create"
same "v2: statusCode" "$(json v2no.json .statusCode)" "403"
same "v2: errorCode" "$(json v2no.json .errorCode)" "AccessDenied"

# ---- v2, MQTT 3.1.1, the older publish-subscribe client ------------------------------
"$ENROLL" key new --out v2p.key >/dev/null
"$ENROLL" csr new --key v2p.key --dn CN=sensor-0003 --out v2p.csr 2>/dev/null
check "v2 (MQTT 3.1.1, IotIdentityClient): CSR flow" fleet fleet_v2.js v2p --cert claim.pem --key claim.key \
  --template fleet --param SerialNumber=0003 --mode csr --csr v2p.csr --api pubsub --mqtt 311
judged v2p sensor-0003 v2p.key

# ---- v1 (aws-iot-device-sdk, MQTT 3.1.1): CSR flow -----------------------------------
"$ENROLL" key new --out v1.key >/dev/null
"$ENROLL" csr new --key v1.key --dn CN=sensor-0004 --out v1.csr 2>/dev/null
check "v1 (MQTT 3.1.1): CreateCertificateFromCsr -> RegisterThing" fleet fleet_v1.js v1 --cert claim.pem --key claim.key \
  --template fleet --param SerialNumber=0004 --mode csr --csr v1.csr
judged v1 sensor-0004 v1.key
telemetry v1 v1.pem v1.key

# ---- refusals as the SDK reports them ---------------------------------------------------
"$ENROLL" key new --out v2m.key >/dev/null
"$ENROLL" csr new --key v2m.key --dn CN=sensor-0005 --out v2m.csr 2>/dev/null
expect_exit 1 "v2: a parameter missing" fleet fleet_v2.js v2miss --cert claim.pem --key claim.key --template fleet \
  --mode csr --csr v2m.csr
same "v2: a parameter missing: rejected at register" "$(json v2miss.json .stage)" "register"
same "v2: a parameter missing: InvalidParameters" "$(json v2miss.json .errorCode)" "InvalidParameters"
expect_exit 1 "v2: a thing name another device owns" fleet fleet_v2.js v2own --cert claim.pem --key claim.key \
  --template fleet --param SerialNumber=0001 --mode csr --csr v2p.csr --api pubsub
same "v2: another device's thing: 403" "$(json v2own.json .statusCode)" "403"

# ---- the claim certificate opens nothing but provisioning ------------------------------
timeout 20 mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" --cafile root/cert.pem --cert claim.pem --key claim.key \
  -V 5 -t devices/claim/telemetry -m x > claim-pub.out 2>&1 && fail "mosquitto accepted the claim certificate" || pass
kill -TERM "$EPID"
wait "$EPID" 2>/dev/null
same "enrolld stops cleanly" "$?" "0"
finish
