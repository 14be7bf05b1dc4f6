#!/usr/bin/env bash
# The enroll walkthrough (`make demo`, i.e. scripts/demo.sh build): zero-touch
# provisioning end to end, on this machine, in a temporary directory.
#
#   operator: a root and an issuing CA, a server certificate, an MQTT broker
#             (mosquitto) that admits only certificates from that CA, and the
#             provisioning service enrolld with a credential policy, a
#             symmetric-key enrollment group and an X.509 bootstrap group;
#   devices:  four of them get their operational certificates from enrolld
#             (three over Azure DPS's API, one over AWS IoT fleet provisioning
#             with a shared claim certificate),
#             each proving who it is differently and keeping its key
#             differently, then publish telemetry to the broker over mutual
#             TLS while an observer subscribes.
#
# The device side uses `enroll device provision` when this build has it;
# otherwise the same DPS HTTP API is driven with curl, and SAS tokens are
# computed with openssl, exactly what the device client does.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
case $build in /*) ;; *) build=$root/$build ;; esac
enroll="$build/src/enroll"
enrolld="$build/src/enrolld"
for f in "$enroll" "$enrolld"; do
  [ -x "$f" ] || { echo "demo: $f is missing: build first (make demo does)" >&2; exit 3; }
done
for tool in mosquitto mosquitto_pub mosquitto_sub curl jq openssl softhsm2-util; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is missing: run scripts/install-deps.sh" >&2; exit 3; }
done
. "$root/tests/cli/lib_broker.sh"

work=$(mktemp -d /tmp/enroll-demo-XXXXXX)
ENROLLD_PID=
SUB_PID=
cleanup() {
  local rc=$?
  [ -n "$SUB_PID" ] && kill "$SUB_PID" 2>/dev/null && wait "$SUB_PID" 2>/dev/null
  if [ -n "$ENROLLD_PID" ]; then kill -TERM "$ENROLLD_PID" 2>/dev/null; wait "$ENROLLD_PID" 2>/dev/null; fi
  broker_stop
  if [ -n "${KEEP_DEMO:-}" ]; then echo "(kept $work)"; else rm -rf "$work"; fi
  [ $rc -eq 0 ] || echo "demo: failed (exit $rc)" >&2
}
trap cleanup EXIT
cd "$work"

bold=$'\033[1m' dim=$'\033[2m' off=$'\033[0m'
[ -t 1 ] || { bold=; dim=; off=; }
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
say() { printf '   %s\n' "$@"; }
# How a command is shown: the build's enroll/enrolld by their names, arguments
# quoted the way you would type them.
show() {
  local a out=
  for a in "$@"; do
    case $a in "$enroll") a=enroll ;; "$enrolld") a=enrolld ;; esac
    if [[ $a != ">" && $a != "&" && $a =~ [^A-Za-z0-9_./:=,@%+-] ]]; then a="'$a'"; fi
    out+="$a "
  done
  printf '%s$ %s%s\n' "$dim" "${out% }" "$off"
}
run() { show "$@"; "$@"; }
# run_to FILE COMMAND...: the same, its output into FILE.
run_to() { local f=$1; shift; show "$@" ">" "$f"; "$@" > "$f"; }
# sh_run 'COMMAND LINE': shows a command with pipes or substitutions, then runs it.
sh_run() { printf '%s$ %s%s\n' "$dim" "$1" "$off"; eval "$1"; }
# The certificate's subject, issuer and validity, in one line each.
summary() {
  "$enroll" cert show "$1" --json |
    jq -r 'if type == "array" then .[0] else . end | "   subject: \(.subject)\n   issuer:  \(.issuer)\n   valid:   \(.validity.not_before) .. \(.validity.not_after)"'
}

SCOPE=0ne00000042
API=2025-07-01-preview
MODULE=/usr/lib/softhsm/libsofthsm2.so
if "$enroll" device --help >/dev/null 2>&1; then HAVE_DEVICE=1; else HAVE_DEVICE=; fi

echo "${bold}enroll demo${off}: an operator sets up a CA, an MQTT broker and the provisioning"
echo "service; three devices provision themselves and talk to the broker. Work dir: $work"
echo "(enroll and enrolld below are $build/src/enroll and .../enrolld)"

step "1. The operator's CA: a root (pathlen 1) and an issuing CA for devices (pathlen 0)"
run "$enroll" ca init --dir root --subject '/O=Acme/CN=Acme Root CA'
run "$enroll" ca init --dir devices-ca --parent root --subject '/O=Acme/CN=Acme Devices CA'

step "2. One server certificate for this host (localhost, 127.0.0.1), used by enrolld and mosquitto"
run "$enroll" key new --type ec-p256 --out server.key
run "$enroll" csr new --key server.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server.csr
run "$enroll" ca sign --dir root --profile server server.csr --out server.pem

step "3. The MQTT broker: mosquitto, mutual TLS only, on a free port of 127.0.0.1"
say "Clients must present a certificate chaining to root + issuing CA; its CN becomes" \
    "the MQTT user, and the ACL keeps each device under devices/<its CN>/#."
sh_run 'cat root/cert.pem devices-ca/cert.pem > broker-client-ca.pem'
broker_start broker broker-client-ca.pem server.pem server.key
printf '%s$ mosquitto -c broker/mosquitto.conf   # started in the background%s\n' "$dim" "$off"
grep -E '^(listener|require_certificate|use_identity_as_username|allow_anonymous|acl_file)' broker/mosquitto.conf | sed 's/^/   /'
grep -E '^(pattern|user|topic)' broker/acl | sed 's/^/   acl: /'
HUB=localhost:$BROKER_PORT
say "listening on $HUB (pid $BROKER_PID)"

step "4. The provisioning service's store: the issuing CA, a credential policy, two enrollment groups"
run "$enroll" admin ca add devices --ca-dir devices-ca --data data
say "Certificates valid 30 days; devices renew in their last 7:"
run "$enroll" admin policy new p30 --validity P30D --renewal-window P7D --ca devices --key-types ec-p256,ec-p384 --data data
say "(a) a symmetric-key group: devices prove membership with SAS tokens made from a key derived from the group key"
run_to fleet.json "$enroll" admin group new fleet --policy p30 --symmetric --hub "$HUB" --data data --json
jq -r '"   group \(.group_id) (\(.attestation), policy \(.policy), hub \(.assigned_hub)): primary and secondary keys generated, kept in fleet.json, not shown"' fleet.json
jq -r .primary_key fleet.json | tr -d '\n' > group.key; chmod 600 group.key
say "(b) an X.509 group: devices prove who they are with a bootstrap certificate from the factory's CA"
run "$enroll" ca init --dir boot-root --subject '/O=Acme Factory/CN=Factory Root'
run "$enroll" ca init --dir boot-ca --parent boot-root --subject '/O=Acme Factory/CN=Factory Bootstrap CA'
run_to upload.json "$enroll" admin ca upload factory --cert boot-ca/cert.pem --data data --json
CODE=$(jq -r .verification_code upload.json)
say "The service answers with a verification code; a certificate for CN=<code> proves the operator holds that CA's key:"
run "$enroll" key new --out verify.key
run "$enroll" csr new --key verify.key --dn "CN=$CODE" --out verify.csr
run "$enroll" ca sign --dir boot-ca --profile device --cn "$CODE" verify.csr --out verify.crt
run "$enroll" admin ca verify factory --cert verify.crt --data data
run "$enroll" admin group new factory-line --policy p30 --x509-ca factory --hub "$HUB" --data data
say "(c) an AWS IoT fleet provisioning template: devices built for AWS hold a claim certificate" \
    "shared by a production batch, from the same (proven) factory CA; the template names the thing"
cat > sensors.json <<'JSON'
{"Parameters": {"SerialNumber": {"Type": "String"}},
 "Resources": {
   "thing": {"Type": "AWS::IoT::Thing", "Properties": {
     "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
     "AttributePayload": {"serial": {"Ref": "SerialNumber"}}, "ThingGroups": ["sensors"]}},
   "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
     "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}}},
 "DeviceConfiguration": {"telemetryTopic": {"Fn::Join": ["/", ["devices", {"Ref": "AWS::IoT::Certificate::CommonName"}, "telemetry"]]}}}
JSON
sed 's/^/   /' sensors.json
run "$enroll" admin template create sensors --file sensors.json --policy p30 --claim-ca factory --data data

step "5. Start enrolld (DPS's API over HTTPS and MQTT, AWS fleet provisioning over MQTT) on free ports of 127.0.0.1"
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2,
 "mqtt": {"listen": "127.0.0.1:0"}, "aws": {"listen": "127.0.0.1:0"}}
JSON
sed 's/^/   /' enrolld.json
show "$enrolld" --config enrolld.json "&"
"$enrolld" --config enrolld.json 2> enrolld.log &
ENROLLD_PID=$!
PORT=
for _ in $(seq 1 400); do
  PORT=$(grep -o '"port":[0-9]*' enrolld.log | head -1 | cut -d: -f2) || true
  [ -n "$PORT" ] && break
  kill -0 "$ENROLLD_PID" 2>/dev/null || { cat enrolld.log >&2; exit 1; }
  sleep 0.05
done
[ -n "$PORT" ] || { echo "enrolld did not report its port" >&2; cat enrolld.log >&2; exit 1; }
URL=https://127.0.0.1:$PORT
MQTT_PORT=$(grep -o '"mqtt_port":[0-9]*' enrolld.log | head -1 | cut -d: -f2) || true
[ -n "$MQTT_PORT" ] || { echo "enrolld did not report its MQTT port" >&2; cat enrolld.log >&2; exit 1; }
MQTT_URL=mqtts://127.0.0.1:$MQTT_PORT
AWS_PORT=$(grep -o '"aws_port":[0-9]*' enrolld.log | head -1 | cut -d: -f2) || true
[ -n "$AWS_PORT" ] || { echo "enrolld did not report its AWS port" >&2; cat enrolld.log >&2; exit 1; }
say "enrolld is listening at $URL and $MQTT_URL (id scope $SCOPE)," "and for AWS fleet provisioning at mqtts://127.0.0.1:$AWS_PORT"

# --- The device side -------------------------------------------------------
if [ -n "$HAVE_DEVICE" ]; then
  say "" "This build has 'enroll device': the devices provision with it."
else
  echo
  echo "   ${bold}NOTE:${off} this build has no 'enroll device' yet (enroll device --help fails), so each"
  echo "   device is provisioned through the same HTTP API with curl, its SAS token computed"
  echo "   with openssl: PUT {scope}/registrations/{id}/register with the CSR in the body."
  echo "   hmac_b64 KEY below is: openssl dgst -sha256 -mac HMAC -macopt hexkey:<KEY base64-decoded, in hex> -binary | base64"
fi

# SAS token for the DPS registration: HMAC-SHA256 over "<scope>/registrations/<id>\n<expiry>".
hmac_b64() { # KEY-B64 (message on stdin)
  # Separately, so set -e stops here: openssl would take an empty hex key.
  local hex
  hex=$(printf '%s' "$1" | base64 -d | xxd -p -c 256)
  [ -n "$hex" ] || { echo "demo: the key is not base64" >&2; return 1; }
  openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hex" -binary | base64
}
sas_token() { # DEVICE-KEY-B64 RID
  local se=$(( $(date +%s) + 3600 )) sr="$SCOPE%2Fregistrations%2F$2" sig
  sig=$(printf '%s\n%s' "$sr" "$se" | hmac_b64 "$1" | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')
  printf 'SharedAccessSignature sr=%s&sig=%s&se=%s&skn=registration' "$sr" "$sig" "$se"
}
# Writes the answer's chain into STORE: cert.pem (the leaf), chain.pem (leaf + CAs).
store_answer() { # ANSWER.json STORE
  mkdir -p "$2"
  local i n
  n=$(jq '.registrationState.issuedCertificateChain | length' "$1")
  : > "$2/chain.pem"
  for i in $(seq 0 $((n - 1))); do
    jq -r ".registrationState.issuedCertificateChain[$i]" "$1" | base64 -d | openssl x509 -inform DER >> "$2/chain.pem"
  done
  openssl x509 -in "$2/chain.pem" -out "$2/cert.pem"
}
# curl PUT .../register; AUTH is an Authorization header value or empty (mTLS).
register_curl() { # RID KEY-SPEC STORE AUTH-KIND AUTH-ARG...
  local rid=$1 key=$2 store=$3 kind=$4; shift 4
  mkdir -p "$store"
  local p11=()
  case $key in pkcs11:*) p11=(--module "$MODULE" --pin-file pin.txt) ;; esac
  run "$enroll" csr new --key "$key" "${p11[@]}" --dn "CN=$rid" --format b64 --out "$store/csr.b64"
  sh_run "jq -n --arg id $rid --arg csr \"\$(cat $store/csr.b64)\" '{registrationId: \$id, csr: \$csr}' > $store/body.json"
  local curl=(curl -s --max-time 30 --cacert root/cert.pem -o "$store/answer.json" -w '%{http_code}' -X PUT
              -H 'Content-Type: application/json')
  local shown
  case $kind in
    sas)
      sh_run "token=\$(sas_token \"\$(cat $1)\" $rid)   # sr=$SCOPE/registrations/$rid, HMAC by openssl"
      shown="curl --cacert root/cert.pem -X PUT -H \"Authorization: \$token\" --data-binary @$store/body.json \\
      '$URL/$SCOPE/registrations/$rid/register?api-version=$API'"
      curl+=(-H "Authorization: $token") ;;
    x509)
      shown="curl --cacert root/cert.pem --cert $1 --key $2 -X PUT --data-binary @$store/body.json \\
      '$URL/$SCOPE/registrations/$rid/register?api-version=$API'"
      curl+=(--cert "$1" --key "$2") ;;
  esac
  printf '%s$ %s%s\n' "$dim" "$shown" "$off"
  local code
  code=$("${curl[@]}" --data-binary @"$store/body.json" "$URL/$SCOPE/registrations/$rid/register?api-version=$API")
  jq -c '{status, assignedHub: .registrationState.assignedHub, chain: (.registrationState.issuedCertificateChain | length), errorCode}' \
      "$store/answer.json" | sed "s/^/   HTTP $code /"
  [ "$code" = 200 ] || { echo "registration of $rid failed" >&2; exit 1; }
  store_answer "$store/answer.json" "$store"
}
# The leaf certificate the device client left in its store (any PEM file whose
# first certificate is CN=RID and not a CA).
store_cert() { # STORE RID
  local f
  for f in "$1"/cert.pem $(find "$1" -type f \( -name '*.pem' -o -name '*.crt' \) | sort); do
    [ -f "$f" ] || continue
    if openssl x509 -in "$f" -noout -subject 2>/dev/null | grep -qE "CN ?= ?$2\$" &&
       ! openssl x509 -in "$f" -noout -ext basicConstraints 2>/dev/null | grep -q 'CA:TRUE'; then
      echo "$f"; return 0
    fi
  done
  echo "no certificate for $2 in $1" >&2; return 1
}
provision_help=$([ -n "$HAVE_DEVICE" ] && "$enroll" device provision --help 2>&1 || true)

step "6. Device dev-001: key in a file, attested with the group key (SAS), over MQTT"
say "Like Azure's C SDK sample, this device speaks DPS over MQTT: CONNECT with its SAS token," \
    "PUBLISH the CSR to \$dps/registrations/PUT/iotdps-register/, the answer on \$dps/registrations/res/200/."
mkdir -p dev-001
run "$enroll" key new --type ec-p256 --out dev-001/device.key
if [ -n "$HAVE_DEVICE" ]; then
  if grep -q -- '--group-key-file' <<<"$provision_help"; then auth=(--group-key-file group.key); else auth=(--group-key "$(cat group.key)"); fi
  run "$enroll" device provision --url "$MQTT_URL" --scope "$SCOPE" --registration-id dev-001 "${auth[@]}" \
      --key dev-001/device.key --store dev-001/store --trust root/cert.pem
  run "$enroll" device status --store dev-001/store
else
  say "The device derives its own key from the group key: base64(HMAC-SHA256(group key, \"dev-001\"))"
  sh_run 'printf %s dev-001 | hmac_b64 "$(cat group.key)" | tr -d "\n" > dev-001/device-sas.key'
  register_curl dev-001 dev-001/device.key dev-001/store sas dev-001/device-sas.key
fi

step "7. Device dev-002: key generated inside a PKCS#11 token (SoftHSM2), never extractable"
mkdir -p tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > softhsm2.conf
export SOFTHSM2_CONF=$work/softhsm2.conf
run softhsm2-util --init-token --free --label dev-002 --so-pin 12345678 --pin 87654321
printf '87654321' > pin.txt && chmod 600 pin.txt
KEY2='pkcs11:token=dev-002;object=devkey'
run "$enroll" key new --type ec-p256 --key "$KEY2" --module "$MODULE" --pin-file pin.txt
say "This device was given its own derived key by the operator (not the group key):"
run_to dev-002.json "$enroll" admin key derive --group fleet --registration-id dev-002 --data data --json
mkdir -p dev-002
jq -r .device_key dev-002.json | tr -d '\n' > dev-002/device-sas.key; chmod 600 dev-002/device-sas.key
say "(the key is in dev-002/device-sas.key, not shown)"
if [ -n "$HAVE_DEVICE" ]; then
  if grep -q -- '--device-key-file' <<<"$provision_help"; then auth=(--device-key-file dev-002/device-sas.key); else auth=(--device-key "$(cat dev-002/device-sas.key)"); fi
  run "$enroll" device provision --url "$URL" --scope "$SCOPE" --registration-id dev-002 "${auth[@]}" \
      --key "$KEY2" --module "$MODULE" --pin-file pin.txt --store dev-002/store --trust root/cert.pem
else
  register_curl dev-002 "$KEY2" dev-002/store sas dev-002/device-sas.key
fi

step "8. Device dev-003: attested by its factory bootstrap certificate (mutual TLS to enrolld)"
mkdir -p dev-003
say "At the factory: a bootstrap key and certificate from the Factory Bootstrap CA"
run "$enroll" key new --out dev-003/bootstrap.key
run "$enroll" csr new --key dev-003/bootstrap.key --dn CN=dev-003 --out dev-003/bootstrap.csr
run "$enroll" ca sign --dir boot-ca --profile device --cn dev-003 dev-003/bootstrap.csr --out dev-003/bootstrap.crt
say "In the field: a new operational key; the bootstrap certificate only gets it in the door"
run "$enroll" key new --type ec-p256 --out dev-003/device.key
if [ -n "$HAVE_DEVICE" ]; then
  run "$enroll" device provision --url "$URL" --scope "$SCOPE" --registration-id dev-003 \
      --bootstrap-cert dev-003/bootstrap.crt --bootstrap-key dev-003/bootstrap.key \
      --key dev-003/device.key --store dev-003/store --trust root/cert.pem
else
  register_curl dev-003 dev-003/device.key dev-003/store x509 dev-003/bootstrap.crt dev-003/bootstrap.key
fi

step "9. Device sensor-aws-1: built for AWS IoT fleet provisioning, a claim certificate and a CSR"
mkdir -p sensor-aws-1
say "At the factory: one claim certificate for the whole batch (the device's own key comes later)"
run "$enroll" key new --out claim.key
run "$enroll" csr new --key claim.key --dn CN=batch-2026-12 --out claim.csr
run "$enroll" ca sign --dir boot-ca --profile device --cn batch-2026-12 claim.csr --out claim.crt
say "In the field: its own key; the device agent speaks AWS's MQTT API over mutual TLS with the claim," \
    "on one connection: CreateCertificateFromCsr (a CSR naming the device), then RegisterThing with the" \
    "ownership token it got (single use, bound to this claim certificate, 1 hour) and the template's parameters"
run "$enroll" key new --type ec-p256 --out sensor-aws-1/device.key
cat root/cert.pem devices-ca/cert.pem > ca-bundle.pem
run "$enroll" device provision --protocol aws-fleet --url "mqtts://127.0.0.1:$AWS_PORT" --template sensors \
    --param SerialNumber=SN-0001 --thing-name sensor-aws-1 --bootstrap-cert claim.crt --bootstrap-key claim.key \
    --key sensor-aws-1/device.key --store sensor-aws-1/store --trust root/cert.pem --ca-trust ca-bundle.pem
say "The things registry:"
run "$enroll" admin thing show sensor-aws-1 --data data

step "10. The four operational certificates: CN = the device's name, issued by the Devices CA, 30 days"
declare -A CERT
for d in dev-001 dev-002 dev-003 sensor-aws-1; do
  [ -n "${CERT[$d]:-}" ] || CERT[$d]=$(store_cert "$d/store" "$d")
  echo "   $d (${CERT[$d]}):"
  summary "${CERT[$d]}" | sed 's/^/  /'
done
if [ -n "$HAVE_DEVICE" ] && "$enroll" device status --help >/dev/null 2>&1; then
  say "What the device client itself reports about its identity:"
  run "$enroll" device status --store dev-001/store
fi
run "$enroll" verify --root root/cert.pem --untrusted devices-ca/cert.pem --purpose client "${CERT[dev-003]}"
say "and dev-003's operational key is not its bootstrap key:"
set +e
run "$enroll" match dev-003/bootstrap.key "${CERT[dev-003]}"
echo "   exit status: $? (1 = different keys)"
set -e

step "11. Telemetry over mutual TLS: an observer subscribes, each device publishes"
say "The observer has its own certificate (CN=monitor; the ACL lets it read devices/#)"
run "$enroll" key new --out monitor.key
run "$enroll" csr new --key monitor.key --dn CN=monitor --out monitor.csr
run "$enroll" ca sign --dir devices-ca --profile device --cn monitor monitor.csr --out monitor.crt
MQ=(-h localhost -p "$BROKER_PORT" --cafile root/cert.pem -V 5 -q 1)
printf '%s$ mosquitto_sub -h localhost -p %s --cafile root/cert.pem --cert monitor.crt --key monitor.key -t '"'devices/#'"' -v -C 4 &%s\n' \
    "$dim" "$BROKER_PORT" "$off"
mosquitto_sub "${MQ[@]}" --cert monitor.crt --key monitor.key -i demo-monitor -t 'devices/#' -v -C 4 -W 30 > telemetry.txt &
SUB_PID=$!
broker_wait_subscribed demo-monitor 20 || { echo "the observer could not subscribe" >&2; cat broker/mosquitto.log >&2; exit 1; }
run mosquitto_pub "${MQ[@]}" --cert "${CERT[dev-001]}" --key dev-001/device.key -t devices/dev-001/telemetry -m '{"temp": 21.5}'
# dev-002's key is in the token: mosquitto_pub uses OpenSSL's pkcs11 engine,
# pointed at SoftHSM2 by an OpenSSL config. libmosquitto opens the --key
# argument as a file even for an engine key, so an empty file named like the
# URI sits in the directory it runs from; the engine reads the PIN from the
# pin-source file named in the URI.
ENGINE_SO="$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"/\1/p')/pkcs11.so"
mkdir -p dev-002/mqtt
cat > dev-002/mqtt/openssl.cnf <<EOF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE_SO
MODULE_PATH = $MODULE
EOF
cp pin.txt dev-002/mqtt/pin
KEYURI2="$KEY2;type=private;pin-source=file:pin"
: > "dev-002/mqtt/$KEYURI2"
cert2=$(cd "$(dirname "${CERT[dev-002]}")" && pwd)/$(basename "${CERT[dev-002]}")
printf '%s$ (cd dev-002/mqtt && OPENSSL_CONF=openssl.cnf mosquitto_pub ... --cert %s --tls-engine pkcs11 --keyform engine --key '"'%s'"' -t devices/dev-002/telemetry -m ...)%s\n' \
    "$dim" "${CERT[dev-002]}" "$KEYURI2" "$off"
(cd dev-002/mqtt && OPENSSL_CONF=$work/dev-002/mqtt/openssl.cnf mosquitto_pub "${MQ[@]}" --cafile "$work/root/cert.pem" \
    --cert "$cert2" --tls-engine pkcs11 --keyform engine --key "$KEYURI2" \
    -t devices/dev-002/telemetry -m '{"temp": 19.0, "key": "in a token"}' </dev/null)
run mosquitto_pub "${MQ[@]}" --cert "${CERT[dev-003]}" --key dev-003/device.key -t devices/dev-003/telemetry -m '{"temp": 23.25}'
say "sensor-aws-1, provisioned the AWS way, publishes as its thing:"
run mosquitto_pub "${MQ[@]}" --cert "${CERT[sensor-aws-1]}" --key sensor-aws-1/device.key \
  -t devices/sensor-aws-1/telemetry -m '{"temp": 19.0}'
wait "$SUB_PID"; SUB_PID=
say "The observer received:"
sed 's/^/   > /' telemetry.txt
say "Who connected (the broker's log: the certificate's CN is the user name):"
grep -oE "New client connected .* u'(dev-00[0-9]|sensor-aws-1)'\)" broker/mosquitto.log | sed -E "s/.*(u'[a-z0-9-]*').*/   \1/" | sort -u
say "A device writing outside its own prefix is refused by the ACL:"
run mosquitto_pub "${MQ[@]}" --cert "${CERT[dev-001]}" --key dev-001/device.key -t devices/dev-002/telemetry -m spoofed

say "The claim certificate opens nothing but provisioning: the broker refuses it:"
show mosquitto_pub "${MQ[@]}" --cert claim.crt --key claim.key -t devices/batch-2026-12/telemetry -m x
if mosquitto_pub "${MQ[@]}" --cert claim.crt --key claim.key -t devices/batch-2026-12/telemetry -m x 2> claim-pub.err; then
  echo "the broker accepted a claim certificate" >&2; exit 1
fi
echo "   refused: $(head -1 claim-pub.err)"
step "12. Stop everything"
kill -TERM "$ENROLLD_PID"; wait "$ENROLLD_PID" || true; ENROLLD_PID=
say "enrolld stopped"
broker_stop
say "mosquitto stopped"
step "Done. Everything above ran in $work (now removed)."
