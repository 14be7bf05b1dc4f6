#!/usr/bin/env bash
# `enroll device provision --protocol aws-fleet` and `device run` against a
# stand-in for AWS IoT fleet provisioning: a mosquitto broker on 127.0.0.1
# (mutual TLS: the claim CA and the device CA) and a small responder on it
# (mosquitto_sub/mosquitto_pub, jq) that answers CreateCertificateFromCsr
# with a certificate `openssl x509 -req` signs, and RegisterThing with a
# thing named from the parameters, each only for the ownership token it
# handed out last. The flow, what is stored and sent, renewal with the
# device's own certificate (the claim moved away first), key rotation, and
# the failures: rejections (typed, not retried; 5xx retried), answers that
# are not documents, a certificate for another key, silence, a crash before
# the switch. The real service: tests/cli/test_aws_device.sh.
. "$(dirname "$0")/lib.sh"
DEV=${ENROLL_DEVICE_BIN:-$(dirname "$ENROLL")/enroll-device}
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.2; for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
for tool in mosquitto mosquitto_sub mosquitto_pub jq openssl python3; do
  command -v "$tool" >/dev/null || { cannot_run "the AWS stand-in tests" "no $tool"; finish; exit; }
done

# ---- PKI: the service's root (TLS and devices), a claim CA of its own
"$ENROLL" ca init --dir root --subject '/O=Acme/CN=Acme Root' >/dev/null
"$ENROLL" ca init --dir devices-ca --parent root --subject '/O=Acme/CN=Acme Devices' >/dev/null
"$ENROLL" key new --out server.key >/dev/null
"$ENROLL" csr new --key server.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server server.csr --out server.pem 2>/dev/null
"$ENROLL" ca init --dir claim-ca --subject '/CN=Claim CA' >/dev/null
"$ENROLL" key new --out claim.key >/dev/null
"$ENROLL" csr new --key claim.key --dn CN=claim-batch-7 --out claim.csr 2>/dev/null
"$ENROLL" ca sign --dir claim-ca --profile device --cn claim-batch-7 claim.csr --out claim.pem 2>/dev/null
"$ENROLL" key new --out resp.key >/dev/null
"$ENROLL" csr new --key resp.key --dn CN=responder --out resp.csr 2>/dev/null
"$ENROLL" ca sign --dir devices-ca --profile device --cn responder resp.csr --out resp.pem 2>/dev/null
"$ENROLL" key new --out other.key >/dev/null
"$ENROLL" csr new --key other.key --dn CN=thing-SN-0001 --out other.csr 2>/dev/null
cat root/cert.pem devices-ca/cert.pem > ca-bundle.pem            # --ca-trust: intermediate + root
cat ca-bundle.pem claim-ca/cert.pem > clients.pem                 # what the broker accepts
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' > ext.cnf
for f in root/cert.pem devices-ca/cert.pem server.pem claim.pem resp.pem; do
  [ -s "$f" ] || fail "PKI: $f was not made"
done

# ---- the broker
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
  echo "per_listener_settings false"
  echo "allow_anonymous true"
  echo "persistence false"
  echo "log_dest file $WORK/broker.log"
  echo "log_type all"
  echo "connection_messages true"
  if [ "$(id -u)" -eq 0 ]; then echo "user root"; fi
  echo "listener $PORT 127.0.0.1"
  echo "cafile $WORK/clients.pem"
  echo "certfile $WORK/server.pem"
  echo "keyfile $WORK/server.key"
  echo "require_certificate true"
} > broker.conf
mosquitto -c broker.conf > broker.out 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "running" broker.log 2>/dev/null && break; sleep 0.05; done
grep -q "running" broker.log 2>/dev/null && pass || { fail "mosquitto did not start: $(cat broker.out broker.log 2>/dev/null)"; finish; exit; }
MQ=(-h 127.0.0.1 -p "$PORT" --cafile root/cert.pem --cert resp.pem --key resp.key -V mqttv311)
CSR_T='$aws/certificates/create-from-csr/json'

# ---- the responder: reads `mode` for each request (ok unless it says otherwise)
pub() { mosquitto_pub "${MQ[@]}" -i "responder-pub-$RANDOM" -q 1 -t "$1" -m "$2"; }
answer_csr() { # PAYLOAD MODE
  local n csr
  n=$(( $(cat count 2>/dev/null || echo 0) + 1 )); echo "$n" > count
  case $2 in
    reject-csr) pub "$CSR_T/rejected" '{"statusCode":400,"errorCode":"InvalidCsr","errorMessage":"line one\nline two\u0007 and a bell"}'; return ;;
    busy-once) if [ ! -e busy.done ]; then touch busy.done
                 pub "$CSR_T/rejected" '{"statusCode":503,"errorCode":"ServiceUnavailable","errorMessage":"try later"}'; return; fi ;;
    garbage) pub "$CSR_T/accepted" 'this is not json'; return ;;
    no-token) pub "$CSR_T/accepted" '{"certificateId":"ab","certificatePem":"x"}'; return ;;
    bad-reject) pub "$CSR_T/rejected" '{"statusCode":"400"}'; return ;;
    silent) return ;;
  esac
  jq -r .certificateSigningRequest <<<"$1" > "req-$n.csr"
  csr=req-$n.csr; [ "$2" = wrong-key ] && csr=other.csr
  openssl x509 -req -in "$csr" -CA devices-ca/cert.pem -CAkey devices-ca/key.pem -set_serial $((4096 + n)) \
      -days 1 -extfile ext.cnf -out "cert-$n.pem" 2>/dev/null
  echo "tok-$n-$RANDOM$RANDOM" > token
  pub "$CSR_T/accepted" "$(jq -cn --arg id "$(printf '%064x' "$n")" --rawfile pem "cert-$n.pem" --arg tok "$(cat token)" \
      '{certificateId: $id, certificatePem: $pem, certificateOwnershipToken: $tok, extra: [1, 2]}')"
}
answer_register() { # TOPIC PAYLOAD MODE
  local template thing
  template=$(cut -d/ -f3 <<<"$1")
  case $3 in
    reject-rt) pub "$1/rejected" '{"statusCode":403,"errorCode":"AccessDenied","errorMessage":"the pre-provisioning hook said no"}'; return ;;
    bad-thing) pub "$1/accepted" '{"deviceConfiguration":{},"thingName":"no spaces allowed"}'; return ;;
  esac
  if [ "$(jq -r .certificateOwnershipToken <<<"$2")" != "$(cat token 2>/dev/null)" ]; then
    pub "$1/rejected" '{"statusCode":400,"errorCode":"InvalidCertificateOwnershipToken","errorMessage":"unknown token"}'
    return
  fi
  thing=$(jq -r '.parameters.ThingName // ("thing-" + .parameters.SerialNumber)' <<<"$2")
  pub "$1/accepted" "$(jq -cn --arg th "$thing" --arg t "$template" '{deviceConfiguration: {Fleet: "test", Template: $t}, thingName: $th}')"
}
responder() {
  while read -r topic payload; do
    printf '%s %s\n' "$topic" "$payload" >> requests.log
    mode=$(cat mode 2>/dev/null || echo ok)
    case $topic in
      */create-from-csr/json) answer_csr "$payload" "$mode" ;;
      */provision/json) answer_register "$topic" "$payload" "$mode" ;;
    esac
  done
}
# Each a process of its own with its output in files, so the EXIT trap ends
# them by their ids and none keeps the test's stdout open (ctest waits for it).
mkfifo requests.fifo
mosquitto_sub "${MQ[@]}" -i responder -q 1 -t "$CSR_T" -t '$aws/provisioning-templates/+/provision/json' \
    -F '%t %p' > requests.fifo 2> sub.err &
PIDS+=($!)
responder < requests.fifo > responder.log 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "Sending SUBACK to responder" broker.log 2>/dev/null && break; sleep 0.05; done
grep -q "Sending SUBACK to responder" broker.log && pass || { fail "the responder did not subscribe: $(tail -5 broker.log)"; finish; exit; }

URL=mqtts://127.0.0.1:$PORT
AWS=(--protocol aws-fleet --url "$URL" --template FleetTemplate --trust root/cert.pem --ca-trust ca-bundle.pem
     --bootstrap-cert claim.pem --bootstrap-key claim.key --retries 3 --timeout 10)
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
verify_chain() { # DESCRIPTION: the chain and leaf named in $WORK/.out, judged by openssl
  local cert chain
  cert=$(json "$WORK/.out" .certificate) chain=$(json "$WORK/.out" .chain)
  openssl verify -purpose sslclient -CAfile root/cert.pem -untrusted "$chain" "$cert" > verify.txt 2>&1
  contains verify.txt "$cert: OK" "$1: openssl verify -purpose sslclient"
}
connections() { grep -c "New client connected .* as $1 " broker.log; }

# ---- provision by claim
echo ok > mode
check "aws-fleet provision" "$ENROLL" device provision "${AWS[@]}" --param SerialNumber=SN-0001 --param Color=blue \
    --key d1.key --store s1 --json
same "json: protocol" "$(json "$WORK/.out" .protocol)" "aws-fleet"
same "json: template" "$(json "$WORK/.out" .template)" "FleetTemplate"
same "json: thing name (the template's choice)" "$(json "$WORK/.out" .thing_name)" "thing-SN-0001"
same "json: transport" "$(json "$WORK/.out" .transport)" "mqtt"
same "json: generation 1" "$(json "$WORK/.out" .generation)" "1"
verify_chain "provision"
C1=$(json "$WORK/.out" .certificate)
same "leaf: CN = the thing name asked for" "$(openssl x509 -in "$C1" -noout -subject)" "subject=CN = SN-0001"
same "chain: leaf + issuing intermediate" "$(grep -c 'BEGIN CERTIFICATE' "$(json "$WORK/.out" .chain)")" "2"
expect_exit 0 "the leaf holds the device key" "$ENROLL" match d1.key "$C1"
same "identity.json: protocol" "$(jq -r .protocol s1/identity.json)" "aws-fleet"
same "identity.json: parameters" "$(jq -c .parameters s1/identity.json)" '{"SerialNumber":"SN-0001","Color":"blue"}'
same "identity.json: deviceConfiguration" "$(jq -c .device_configuration s1/identity.json)" '{"Fleet":"test","Template":"FleetTemplate"}'
same "identity.json: no idScope" "$(jq -r '.id_scope // "none"' s1/identity.json)" "none"
lacks s1/identity.json "tok-" "no ownership token in the store"
lacks "$WORK/.err" "tok-" "no ownership token on stderr"
same "one connection for both calls" "$(connections SN-0001)" "1"
# AWS's SDKs subscribe to accepted and rejected before they publish.
sub_line=$(grep -n "Received SUBSCRIBE from SN-0001" broker.log | head -1 | cut -d: -f1)
pub_line=$(grep -n "Received PUBLISH from SN-0001" broker.log | head -1 | cut -d: -f1)
[ -n "$sub_line" ] && [ -n "$pub_line" ] && [ "$sub_line" -lt "$pub_line" ] && pass ||
  fail "SUBSCRIBE ($sub_line) before the first PUBLISH ($pub_line)"
for t in "$CSR_T/accepted" "$CSR_T/rejected" '$aws/provisioning-templates/FleetTemplate/provision/json/accepted' \
         '$aws/provisioning-templates/FleetTemplate/provision/json/rejected'; do
  contains broker.log "$t (QoS 1)" "subscribed to $t"
done
grep -q "Received PUBLISH from SN-0001 (d0, q1, r0, m[0-9]*, '\$aws/certificates/create-from-csr/json'" broker.log && pass ||
  fail "the CSR was published at QoS 1"
jq -e -R 'split(" ")[1:] | join(" ") | fromjson | .parameters == {"SerialNumber":"SN-0001","Color":"blue"}' \
    <(grep '/provision/json ' requests.log | tail -1) >/dev/null && pass || fail "RegisterThing sent the parameters"
check "status (text)" "$ENROLL" device status --store s1
contains "$WORK/.out" "Thing name:      thing-SN-0001 (asked for CN=SN-0001)" "text status: thing name"
contains "$WORK/.out" "template FleetTemplate" "text status: template"
contains "$WORK/.out" "Protocol:        aws-fleet" "text status: protocol"

# ---- renewal with the device's own certificate: the claim is moved away,
# so only the operational certificate can have done it
mv claim.pem claim.pem.away
check "run --once renews" "$ENROLL" device run --store s1 --once --renew-before P2D --json
same "renewed" "$(json "$WORK/.out" .renewed)" "true"
same "generation 2" "$(json "$WORK/.out" .generation)" "2"
same "renewal: same thing" "$(json "$WORK/.out" .thing_name)" "thing-SN-0001"
[ "$(json "$WORK/.out" .serial)" != "$(serial_of "$C1")" ] && pass || fail "renewal gave no new serial"
verify_chain "renewal"
same "renewal: the CSR named the thing" "$(openssl x509 -in "$(json "$WORK/.out" .certificate)" -noout -subject)" \
    "subject=CN = thing-SN-0001"
lacks "$WORK/.err" "bootstrap credential" "renewal: no fallback to the claim"
jq -e -R 'split(" ")[1:] | join(" ") | fromjson | .parameters == {"SerialNumber":"SN-0001","Color":"blue"}' \
    <(grep '/provision/json ' requests.log | tail -1) >/dev/null && pass || fail "renewal sent the same parameters"
expect_exit 0 "renewal: the same key" "$ENROLL" match d1.key "$(json "$WORK/.out" .certificate)"
check "run --once --rotate-key" "$ENROLL" device run --store s1 --once --renew-before P2D --rotate-key --json
same "rotated: generation 3" "$(json "$WORK/.out" .generation)" "3"
verify_chain "rotation"
K3=$(json "$WORK/.out" .key)
[ "$K3" != "$WORK/d1.key" ] && pass || fail "rotation kept the key ($K3)"
expect_exit 0 "rotated: the leaf holds the new key" "$ENROLL" match "$K3" "$(json "$WORK/.out" .certificate)"
check "run --once when not due" "$ENROLL" device run --store s1 --once --json
same "not due: not renewed" "$(json "$WORK/.out" .renewed)" "false"
G3_SERIAL=$("$ENROLL" device status --store s1 --json | jq -r .serial)
keeps() { # DESCRIPTION: the working identity is untouched
  same "$1: generation kept" "$("$ENROLL" device status --store s1 --json | jq -r .generation)" "3"
  same "$1: certificate kept" "$("$ENROLL" device status --store s1 --json | jq -r .serial)" "$G3_SERIAL"
}

# ---- failures at renewal: each leaves the working certificate
csr_requests() { grep -c 'create-from-csr/json ' requests.log; }
echo reject-csr > mode; R0=$(csr_requests)
expect_exit 1 "a rejection (400) is a refusal" "$ENROLL" device run --store s1 --once --renew-before P2D
contains "$WORK/.err" "rejected CreateCertificateFromCsr: statusCode 400, errorCode 'InvalidCsr'" "the rejection is named"
contains "$WORK/.err" "line one?line two? and a bell" "the service's message is quoted safely"
lacks "$WORK/.err" "retrying" "a 400 is not retried"
same "a 400: one request" "$(( $(csr_requests) - R0 ))" "1"
keeps "a 400"
echo busy-once > mode
check "a 503 is retried" "$ENROLL" device run --store s1 --once --renew-before P2D --json
contains "$WORK/.err" "retrying in" "the 503 was retried"
same "after the 503: generation 4" "$(json "$WORK/.out" .generation)" "4"
G3_SERIAL=$(json "$WORK/.out" .serial)
keeps() {
  same "$1: generation kept" "$("$ENROLL" device status --store s1 --json | jq -r .generation)" "4"
  same "$1: certificate kept" "$("$ENROLL" device status --store s1 --json | jq -r .serial)" "$G3_SERIAL"
}
echo garbage > mode
expect_exit 3 "an answer that is not JSON" "$ENROLL" device run --store s1 --once --renew-before P2D --retries 1
contains "$WORK/.err" "not JSON" "says: not JSON"
keeps "not JSON"
echo no-token > mode
expect_exit 3 "an answer without its token" "$ENROLL" device run --store s1 --once --renew-before P2D --retries 1
contains "$WORK/.err" "has no certificateOwnershipToken" "names the missing field"
keeps "no token"
echo bad-reject > mode
expect_exit 3 "a rejection that is not one" "$ENROLL" device run --store s1 --once --renew-before P2D --retries 1
contains "$WORK/.err" "statusCode is a string, not an integer" "names the field and its type"
echo bad-thing > mode
expect_exit 3 "a thing name AWS would not make" "$ENROLL" device run --store s1 --once --renew-before P2D --retries 1
contains "$WORK/.err" "thingName 'no spaces allowed' is not" "names the thing name"
keeps "bad thing name"
echo wrong-key > mode
expect_exit 1 "a certificate for another key" "$ENROLL" device run --store s1 --once --renew-before P2D
contains "$WORK/.err" "another public key" "says whose key"
keeps "another key"
echo ok > mode
expect_exit 70 "a crash after the files, before the switch" env ENROLL_DEVICE_TEST_CRASH=before-commit \
    "$ENROLL" device run --store s1 --once --renew-before P2D
keeps "crash before the switch"
check "after the crash, the next run renews" "$ENROLL" device run --store s1 --once --renew-before P2D --json
same "after the crash: generation 5" "$(json "$WORK/.out" .generation)" "5"
verify_chain "after the crash"
mv claim.pem.away claim.pem

# ---- failures at provisioning
echo reject-rt > mode
expect_exit 1 "RegisterThing refused (403)" "$ENROLL" device provision "${AWS[@]}" --thing-name dev-rt --key rt.key --store s2
contains "$WORK/.err" "rejected RegisterThing: statusCode 403, errorCode 'AccessDenied'" "names RegisterThing's rejection"
lacks "$WORK/.err" "retrying" "a 403 is not retried"
expect_exit 1 "RegisterThing refused: --json" "$ENROLL" device provision "${AWS[@]}" --thing-name dev-rt --key rt.key --store s2 --json
same "json error code" "$(json "$WORK/.out" .error.code)" "policy"
same "no identity stored" "$(jq -r .generation s2/identity.json)" "0"
echo silent > mode
start=$(date +%s)
expect_exit 3 "no answer" "$ENROLL" device provision "${AWS[@]}" --thing-name dev-quiet --key q.key --store s5 \
    --timeout 2 --retries 2
contains "$WORK/.err" "no answer within 2000 ms" "says it waited"
contains "$WORK/.err" "attempt 1 of 2 failed" "silence is retried"
[ $(( $(date +%s) - start )) -lt 20 ] && pass || fail "silence took $(( $(date +%s) - start )) s"
echo ok > mode
expect_exit 1 "--ca-trust without the intermediate: the chain cannot be built" "$ENROLL" device provision \
    --protocol aws-fleet --url "$URL" --template FleetTemplate --trust root/cert.pem --ca-trust root/cert.pem \
    --bootstrap-cert claim.pem --bootstrap-key claim.key --thing-name dev-ca --key ca.key --store s4 --retries 1
contains "$WORK/.err" "does not verify to the CA trust anchor" "says the chain does not verify"

# ---- the device binary
check "enroll-device provisions by claim" "$DEV" provision "${AWS[@]}" --param ThingName=dev-b1 --key b1.key --store s3 --json
same "enroll-device: thing name from ThingName" "$(json "$WORK/.out" .thing_name)" "dev-b1"
verify_chain "enroll-device"
check "enroll-device renews" "$DEV" run --store s3 --once --renew-before P2D --json
same "enroll-device: renewed" "$(json "$WORK/.out" .renewed)" "true"
finish
