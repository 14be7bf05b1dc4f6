#!/usr/bin/env bash
# AWS IoT fleet provisioning by claim against enrolld's "aws" MQTT port,
# driven by mosquitto_rr (an MQTT 5 client that is not ours: one request,
# one answer topic, on one connection). Judged by openssl and the store:
# - CreateCertificateFromCsr -> RegisterThing with a claim certificate: the
#   certificate (id = SHA-256 of its DER, chain to the root, CN), the thing;
#   JSON and CBOR.
# - Refusals in AWS's shape {statusCode, errorCode, errorMessage}, each
#   leaving the store exactly as it was (sqlite3 dumps before and after):
#   unknown template, a claim from an unproven CA (CONNACK), a reused, an
#   expired and another certificate's token, CreateKeysAndCertificate
#   where not allowed, a missing parameter, the hook saying no and timing
#   out, a thing name another device owns.
# - CreateKeysAndCertificate where allowed; the hook's overrides.
# - Rotation: the device renews twice with its own certificate; one active
#   certificate, the earlier ones superseded and in the CRL, nothing pending.
# - A claim certificate can do nothing but the provisioning API.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
for tool in mosquitto_rr mosquitto_pub jq openssl sqlite3 python3; do
  command -v $tool >/dev/null || { cannot_run "test_aws_fleet" "no $tool"; finish; exit 1; }
done
D=data
admin() { "$ENROLL" admin "$@" --data "$D"; }
SCOPE=0ne0000aws1

# ---- PKI, store, claim CAs --------------------------------------------------------
service_pki
service_store
# claim_ca NAME: a bootstrap CA NAME/ uploaded as NAME and proven.
claim_ca() {
  "$ENROLL" ca init --dir "$1" --subject "/O=Factory/CN=$1 Claim CA" >/dev/null 2>&1
  admin ca upload "$1" --cert "$1/cert.pem" --json > "$1.up.json" || { fail "upload $1"; return; }
  local code
  code=$(json "$1.up.json" .verification_code)
  "$ENROLL" key new --out "$1.v.key" >/dev/null
  "$ENROLL" csr new --key "$1.v.key" --dn "CN=$code" --out "$1.v.csr" 2>/dev/null
  "$ENROLL" ca sign --dir "$1" --profile device --cn "$code" "$1.v.csr" --out "$1.v.pem" 2>/dev/null
  check "claim CA $1 proven" admin ca verify "$1" --cert "$1.v.pem"
}
# claim_cert CA NAME: a claim certificate NAME.pem / NAME.key from CA.
claim_cert() {
  "$ENROLL" key new --out "$2.key" >/dev/null
  "$ENROLL" csr new --key "$2.key" --dn "CN=$2" --out "$2.csr" 2>/dev/null
  "$ENROLL" ca sign --dir "$1" --profile device --cn "$2" "$2.csr" --out "$2.pem" 2>/dev/null
}
claim_ca factory
claim_ca keygen
claim_ca hookyes
claim_ca hookno
claim_ca hookslow
"$ENROLL" ca init --dir lab --subject '/O=Lab/CN=Lab CA' >/dev/null 2>&1
check "lab CA uploaded, never proven" admin ca upload lab --cert lab/cert.pem
claim_cert factory claim-1
claim_cert factory claim-2
claim_cert keygen claim-k
claim_cert hookyes claim-hy
claim_cert hookno claim-hn
claim_cert hookslow claim-hs
claim_cert lab claim-lab

cat > fleet.json <<'JSON'
{"Parameters": {"SerialNumber": {"Type": "String"}, "Floor": {"Type": "Number", "Default": "1"}},
 "Resources": {
   "thing": {"Type": "AWS::IoT::Thing", "Properties": {
     "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
     "AttributePayload": {"serial": {"Ref": "SerialNumber"}, "floor": {"Ref": "Floor"}},
     "ThingGroups": ["sensors"]}},
   "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
     "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}}},
 "DeviceConfiguration": {"FallbackUrl": "https://fallback.example", "Floor": {"Ref": "Floor"}}}
JSON
check "template fleet" admin template create fleet --file fleet.json --policy p30 --claim-ca factory
check "template keys (server key generation allowed)" admin template create keys --file fleet.json --policy p30 \
  --claim-ca keygen --allow-server-keygen

# ---- the pre-provisioning hook: an HTTPS server of python's own ----------------------------
"$ENROLL" key new --out hook.key >/dev/null
"$ENROLL" csr new --key hook.key --dn CN=127.0.0.1 --san IP:127.0.0.1 --out hook.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server hook.csr --out hook.pem 2>/dev/null
cat > hook.py <<'PY'
import http.server, json, ssl, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        with open('hook-requests.jsonl', 'a') as f:
            f.write(json.dumps({'path': self.path, 'body': body}) + '\n')
        if self.path == '/slow':
            time.sleep(3)
        answer = {'allowProvisioning': self.path != '/no'}
        if self.path == '/yes':
            answer['parameterOverrides'] = {'Floor': '7'}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain('hook.pem', 'hook.key')
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 hook.py > hook.port 2> hook.log &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s hook.port ] && break; sleep 0.05; done
HOOK_PORT=$(head -1 hook.port)
check "template hookyes" admin template create hookyes --file fleet.json --policy p30 --claim-ca hookyes \
  --hook-url "https://127.0.0.1:$HOOK_PORT/yes" --hook-ca root/cert.pem
check "template hookno" admin template create hookno --file fleet.json --policy p30 --claim-ca hookno \
  --hook-url "https://127.0.0.1:$HOOK_PORT/no" --hook-ca root/cert.pem
check "template hookslow" admin template create hookslow --file fleet.json --policy p30 --claim-ca hookslow \
  --hook-url "https://127.0.0.1:$HOOK_PORT/slow" --hook-ca root/cert.pem --hook-timeout-ms 500

# ---- enrolld with the AWS port ------------------------------------------------------------
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2,
 "aws": {"listen": "127.0.0.1:0", "threads": 2}}
JSON
enrolld_start enrolld.json enrolld.log
AWS_PORT=$(grep -ao '"aws_port":[0-9]*' enrolld.log | head -1 | cut -d: -f2)
[ -n "$AWS_PORT" ] && pass || { fail "enrolld printed no aws_port"; cat enrolld.log >&2; finish; exit 1; }

CSR_TOPIC='$aws/certificates/create-from-csr'
KEYS_TOPIC='$aws/certificates/create'
reg_topic() { printf '$aws/provisioning-templates/%s/provision' "$1"; }
# rr CERT KEY TOPIC FORMAT OUTCOME PAYLOAD-FILE OUT: one request; OUTCOME is
# accepted or rejected, the answer topic waited for. Status of mosquitto_rr.
rr() {
  timeout 20 mosquitto_rr -h 127.0.0.1 -p "$AWS_PORT" --cafile root/cert.pem --cert "$1" --key "$2" \
    -i "rr-$RANDOM" -t "$3/$4" -e "$3/$4/$5" -m "$(cat "$6")" -W 8 > "$7" 2> "$7.err"
}
snap() {
  sqlite3 "$D/enroll.db" ".dump aws_thing aws_certificate aws_ownership_token" \
    "SELECT COUNT(*) FROM audit_event" "SELECT COUNT(*) FROM certificate"
}
# refused NAME CERT KEY TOPIC STATUS CODE PAYLOAD: rejected with statusCode
# STATUS and errorCode CODE, and the store is as it was.
refused() {
  local name=$1 before after
  before=$(snap)
  if rr "$2" "$3" "$4" json rejected "$7" "$name.out"; then
    same "$name: statusCode" "$(json "$name.out" .statusCode)" "$5"
    same "$name: errorCode" "$(json "$name.out" .errorCode)" "$6"
    [ -n "$(json "$name.out" .errorMessage)" ] && pass || fail "$name: no errorMessage"
  else
    fail "$name: no rejection came ($(cat "$name.out.err"))"
  fi
  after=$(snap)
  [ "$before" == "$after" ] && pass || fail "$name: the store changed"
}
csr_payload() { jq -n --rawfile c "$1" '{certificateSigningRequest: $c}' > "$2"; }
reg_payload() { jq -n --arg t "$1" --argjson p "$2" '{certificateOwnershipToken: $t, parameters: $p}' > "$3"; }

# ---- CreateCertificateFromCsr -> RegisterThing ------------------------------------------
"$ENROLL" key new --out dev.key >/dev/null
"$ENROLL" csr new --key dev.key --dn CN=sensor-001 --out dev.csr 2>/dev/null
csr_payload dev.csr csr1.json
check "CreateCertificateFromCsr with the claim" rr claim-1.pem claim-1.key "$CSR_TOPIC" json accepted csr1.json created1.json
json created1.json .certificatePem > dev.pem
TOKEN1=$(json created1.json .certificateOwnershipToken)
openssl x509 -in dev.pem -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1 > dev.id
same "certificateId is the SHA-256 of the certificate's DER" "$(json created1.json .certificateId)" "$(cat dev.id)"
check "the certificate chains to the root for TLS clients (openssl verify)" \
  openssl verify -CAfile root/cert.pem -untrusted devices-ca/cert.pem -purpose sslclient dev.pem
same "its CN is the CSR's" "$(openssl x509 -in dev.pem -noout -subject -nameopt RFC2253)" "subject=CN=sensor-001"
same "it holds the device's key" "$(openssl x509 -in dev.pem -noout -pubkey | openssl sha256)" \
  "$(openssl pkey -in dev.key -pubout | openssl sha256)"
same "the token is 43 characters of base64url" "$(printf %s "$TOKEN1" | grep -cE '^[A-Za-z0-9_-]{43}$')" "1"
same "pending until RegisterThing" "$(sqlite3 $D/enroll.db "SELECT status FROM aws_certificate WHERE fingerprint_sha256 = '$(cat dev.id)'")" "pending"

reg_payload "$TOKEN1" '{}' nopar.json
refused "a template parameter missing" claim-1.pem claim-1.key "$(reg_topic fleet)" 400 InvalidParameters nopar.json
contains "a template parameter missing.out" "SerialNumber" "the message names the parameter"
reg_payload "$TOKEN1" '{"SerialNumber": "0001"}' reg1.json
refused "an unknown template" claim-1.pem claim-1.key "$(reg_topic nosuch)" 404 ResourceNotFound reg1.json
refused "a token presented by another certificate" claim-2.pem claim-2.key "$(reg_topic fleet)" 403 AccessDenied reg1.json
refused "a template the claim is not bound to" claim-1.pem claim-1.key "$(reg_topic keys)" 403 AccessDenied reg1.json
check "RegisterThing" rr claim-1.pem claim-1.key "$(reg_topic fleet)" json accepted reg1.json registered1.json
same "thingName" "$(json registered1.json .thingName)" "sensor-001"
same "deviceConfiguration" "$(jq -c .deviceConfiguration registered1.json)" '{"FallbackUrl":"https://fallback.example","Floor":"1"}'
check "thing show" admin thing show sensor-001 --json
cp "$WORK/.out" thing1.json
same "the thing's attributes" "$(jq -c .attributes thing1.json)" '{"floor":"1","serial":"0001"}'
same "the thing's groups" "$(jq -c .thing_groups thing1.json)" '["sensors"]'
same "one active certificate, the device's" "$(jq -r '[.certificates[] | select(.status == "active") | .fingerprint_sha256] | join(",")' thing1.json)" "$(cat dev.id)"
refused "a reused token" claim-1.pem claim-1.key "$(reg_topic fleet)" 400 InvalidCertificateOwnershipToken reg1.json

# An expired token: the store's clock is moved back an hour for it.
csr_payload dev.csr csr1b.json
check "CreateCertificateFromCsr again" rr claim-1.pem claim-1.key "$CSR_TOPIC" json accepted csr1b.json created1b.json
sqlite3 $D/enroll.db "UPDATE aws_ownership_token SET created_at = created_at - 3601, expires_at = expires_at - 3601 WHERE consumed_at IS NULL"
reg_payload "$(json created1b.json .certificateOwnershipToken)" '{"SerialNumber": "0001"}' expired.json
refused "an expired token" claim-1.pem claim-1.key "$(reg_topic fleet)" 400 InvalidCertificateOwnershipToken expired.json

# Another device claiming sensor-001 (its CSR names it): the thing has a live owner.
"$ENROLL" key new --out evil.key >/dev/null
"$ENROLL" csr new --key evil.key --dn CN=sensor-001 --out evil.csr 2>/dev/null
csr_payload evil.csr evil-csr.json
check "another device's CreateCertificateFromCsr" rr claim-2.pem claim-2.key "$CSR_TOPIC" json accepted evil-csr.json evil-created.json
reg_payload "$(json evil-created.json .certificateOwnershipToken)" '{"SerialNumber": "0002"}' evil-reg.json
refused "a thing name another device owns" claim-2.pem claim-2.key "$(reg_topic fleet)" 403 AccessDenied evil-reg.json

# ---- CBOR -----------------------------------------------------------------------------
cat > cbor.py <<'PY'
import sys
def head(major, n):
    if n < 24: return bytes([major << 5 | n])
    if n < 256: return bytes([major << 5 | 24, n])
    if n < 65536: return bytes([major << 5 | 25]) + n.to_bytes(2, 'big')
    return bytes([major << 5 | 26]) + n.to_bytes(4, 'big')
def text(s): b = s.encode(); return head(3, len(b)) + b
def enc(v):
    if isinstance(v, dict): return head(5, len(v)) + b''.join(text(k) + enc(x) for k, x in v.items())
    if isinstance(v, int): return head(0, v)
    return text(v)
def dec(b, i=0):
    m, a = b[i] >> 5, b[i] & 31; i += 1
    if a < 24: n = a
    else:
        w = {24: 1, 25: 2, 26: 4}[a]; n = int.from_bytes(b[i:i + w], 'big'); i += w
    if m == 0: return n, i
    if m == 3: return b[i:i + n].decode(), i + n
    if m == 5:
        d = {}
        for _ in range(n):
            k, i = dec(b, i); v, i = dec(b, i); d[k] = v
        return d, i
    raise ValueError('unexpected CBOR major type %d' % m)
import json
if sys.argv[1] == 'enc':
    # Strings lose a trailing newline (a PEM reads the same without it):
    # the payload goes through a shell argument, which holds no NUL and
    # loses trailing newlines.
    v = {k: (x.rstrip('\n') if isinstance(x, str) else x) for k, x in json.load(open(sys.argv[2])).items()}
    b = enc(v)
    if b'\0' in b or b.endswith(b'\n'):
        sys.exit('this CBOR payload cannot pass as a shell argument')
    sys.stdout.buffer.write(b)
else:
    v, end = dec(open(sys.argv[2], 'rb').read())
    print(json.dumps(v))
PY
"$ENROLL" key new --out cb.key >/dev/null
"$ENROLL" csr new --key cb.key --dn CN=sensor-cbor --out cb.csr 2>/dev/null
csr_payload cb.csr cb-csr.json
python3 cbor.py enc cb-csr.json > cb-csr.cbor
# mosquitto_rr's -f and -s send nothing (mosquitto 2.0.11): the payload
# goes as -m, which cbor.py made sure it can.
cbor_rr() {
  timeout 20 mosquitto_rr -h 127.0.0.1 -p "$AWS_PORT" --cafile root/cert.pem --cert "$1" --key "$2" \
    -i "rr-$RANDOM" -t "$3/cbor" -e "$3/cbor/$4" -m "$(cat "$5")" -W 8 > "$6" 2> "$6.err"
}
if cbor_rr claim-1.pem claim-1.key "$CSR_TOPIC" accepted cb-csr.cbor cb-created.cbor; then
  python3 cbor.py dec cb-created.cbor > cb-created.json 2>cbor.err || fail "the CBOR answer does not decode: $(cat cbor.err)"
  json cb-created.json .certificatePem > cb.pem
  same "CBOR: the certificate is for the CSR's key" "$(openssl x509 -in cb.pem -noout -pubkey | openssl sha256)" \
    "$(openssl pkey -in cb.key -pubout | openssl sha256)"
  reg_payload "$(json cb-created.json .certificateOwnershipToken)" '{"SerialNumber": "0003"}' cb-reg.json
  python3 cbor.py enc cb-reg.json > cb-reg.cbor
  check "CBOR: RegisterThing" cbor_rr claim-1.pem claim-1.key "$(reg_topic fleet)" accepted cb-reg.cbor cb-registered.cbor
  same "CBOR: thingName" "$(python3 cbor.py dec cb-registered.cbor | jq -r .thingName)" "sensor-cbor"
else
  fail "CBOR: CreateCertificateFromCsr was not accepted ($(cat cb-created.cbor.err))"
fi
printf '\xa1\x61' > bad.cbor
before=$(snap)
cbor_rr claim-1.pem claim-1.key "$CSR_TOPIC" rejected bad.cbor bad-answer.cbor || fail "CBOR: a truncated map is not rejected"
same "CBOR: a truncated map is answered 400 in CBOR" "$(python3 cbor.py dec bad-answer.cbor | jq -r .statusCode)" "400"
same "CBOR: and changes nothing" "$(snap)" "$before"

# ---- CreateKeysAndCertificate -----------------------------------------------------------
echo '{}' > empty.json
refused "CreateKeysAndCertificate where the template does not allow it" claim-1.pem claim-1.key "$KEYS_TOPIC" 403 AccessDenied empty.json
check "CreateKeysAndCertificate where allowed" rr claim-k.pem claim-k.key "$KEYS_TOPIC" json accepted empty.json keys.json
json keys.json .privateKey > k.key
json keys.json .certificatePem > k.pem
same "the key returned matches the certificate" "$(openssl x509 -in k.pem -noout -pubkey | openssl sha256)" \
  "$(openssl pkey -in k.key -pubout | openssl sha256)"
K_ID=$(json keys.json .certificateId)
same "the key is never stored" "$(sqlite3 $D/enroll.db .dump | grep -c 'PRIVATE KEY')" "0"
reg_payload "$(json keys.json .certificateOwnershipToken)" '{"SerialNumber": "0004"}' k-reg.json
check "RegisterThing for the server-made key" rr claim-k.pem claim-k.key "$(reg_topic keys)" json accepted k-reg.json k-registered.json
K_THING=$(json k-registered.json .thingName)
check "its thing" admin thing show "$K_THING" --json
same "the thing's certificate is the one made with the key" "$(jq -r '.certificates[0].fingerprint_sha256' "$WORK/.out")" "$K_ID"

# ---- the hook ---------------------------------------------------------------------------
hook_flow() { # NAME CLAIM CN OUTCOME
  "$ENROLL" key new --out "$1.key" >/dev/null
  "$ENROLL" csr new --key "$1.key" --dn "CN=$3" --out "$1.csr" 2>/dev/null
  csr_payload "$1.csr" "$1-csr.json"
  check "$1: CreateCertificateFromCsr" rr "$2.pem" "$2.key" "$CSR_TOPIC" json accepted "$1-csr.json" "$1-created.json"
  reg_payload "$(json "$1-created.json" .certificateOwnershipToken)" '{"SerialNumber": "h1", "Floor": "2"}' "$1-reg.json"
}
hook_flow hy claim-hy sensor-hy
check "the hook says yes" rr claim-hy.pem claim-hy.key "$(reg_topic hookyes)" json accepted hy-reg.json hy-registered.json
same "the hook's parameterOverrides win" "$(jq -r .deviceConfiguration.Floor hy-registered.json)" "7"
tail -1 hook-requests.jsonl > hook-last.json
same "the hook got the path of its URL" "$(json hook-last.json .path)" "/yes"
same "the hook got the certificate's id" "$(json hook-last.json .body.certificateId)" \
  "$(json hy-created.json .certificateId)"
same "the hook got the claim's id" "$(json hook-last.json .body.claimCertificateId)" \
  "$(openssl x509 -in claim-hy.pem -outform DER | sha256sum | cut -d' ' -f1)"
same "the hook got the parameters" "$(jq -cS .body.parameters hook-last.json)" '{"Floor":"2","SerialNumber":"h1"}'
same "the hook got the template's ARN" "$(json hook-last.json '.body.templateArn | endswith("provisioningtemplate/hookyes")')" "true"
same "the hook got the certificate" "$(json hook-last.json .body.certificatePem | openssl x509 -noout -subject -nameopt RFC2253)" "subject=CN=sensor-hy"
hook_flow hn claim-hn sensor-hn
refused "the hook says no" claim-hn.pem claim-hn.key "$(reg_topic hookno)" 403 AccessDenied hn-reg.json
hook_flow hs claim-hs sensor-hs
start=$(date +%s%N)
refused "the hook times out" claim-hs.pem claim-hs.key "$(reg_topic hookslow)" 403 AccessDenied hs-reg.json
took=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$took" -lt 2900 ] && pass || fail "the hook's timeout (500 ms) did not bound the answer: ${took} ms"
contains "the hook times out.out" "no complete answer within 500 ms" "the message says the hook timed out"

# ---- rotation: the device renews twice with its own certificate ----------------------------
renew() { # N: the device's current dev.pem/dev.key -> a new key and certificate
  "$ENROLL" key new --out "dev$1.key" >/dev/null
  "$ENROLL" csr new --key "dev$1.key" --dn CN=sensor-001 --out "dev$1.csr" 2>/dev/null
  csr_payload "dev$1.csr" "renew$1-csr.json"
  check "renewal $1: CreateCertificateFromCsr with the device's certificate" \
    rr "$2.pem" "$2.key" "$CSR_TOPIC" json accepted "renew$1-csr.json" "renew$1-created.json"
  reg_payload "$(json "renew$1-created.json" .certificateOwnershipToken)" '{"SerialNumber": "0001"}' "renew$1-reg.json"
  check "renewal $1: RegisterThing" rr "$2.pem" "$2.key" "$(reg_topic fleet)" json accepted "renew$1-reg.json" "renew$1-registered.json"
  same "renewal $1: the same thing" "$(json "renew$1-registered.json" .thingName)" "sensor-001"
  json "renew$1-created.json" .certificatePem > "dev$1.pem"
}
renew 2 dev
renew 3 dev2
check "thing show after two renewals" admin thing show sensor-001 --json
cp "$WORK/.out" thing3.json
same "one active certificate, the newest" "$(jq -r '[.certificates[] | select(.status == "active") | .fingerprint_sha256] | join(",")' thing3.json)" \
  "$(json renew3-created.json .certificateId)"
same "the earlier two are superseded" "$(jq '[.certificates[] | select(.status == "superseded")] | length' thing3.json)" "2"
check "the CRL of the issuing CA" admin crl --ca devices --out devices.crl
for f in dev.pem dev2.pem; do
  serial=$(openssl x509 -in $f -noout -serial | cut -d= -f2)
  contains_crl=$(openssl crl -in devices.crl -noout -text | grep -c "Serial Number: $serial")
  same "$f is in the CRL" "$contains_crl" "1"
done
same "no certificate of the device is left pending" \
  "$(sqlite3 $D/enroll.db "SELECT COUNT(*) FROM aws_certificate a JOIN aws_ownership_token t ON t.issuer = a.issuer AND t.serial = a.serial WHERE a.status = 'pending' AND t.connection_fingerprint IN ('$(cat dev.id)', '$(json renew2-created.json .certificateId)')")" "0"
# The superseded certificate no longer connects.
csr_payload dev3.csr stale.json
rr dev.pem dev.key "$CSR_TOPIC" json accepted stale.json stale.out && fail "a superseded certificate still connects" || pass
contains stale.out.err "Not authorized" "a superseded certificate: CONNACK not authorized"

# ---- a claim from an unproven CA; nothing but the provisioning API ------------------------
before=$(snap)
rr claim-lab.pem claim-lab.key "$CSR_TOPIC" json accepted csr1.json lab.out && fail "a claim of an unproven CA connected" || pass
contains lab.out.err "Not authorized" "a claim of an unproven CA: CONNACK not authorized"
same "a claim of an unproven CA: the store is unchanged" "$(snap)" "$before"
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$AWS_PORT" --cafile root/cert.pem --cert claim-1.pem --key claim-1.key \
  -V mqttv5 -t 'devices/sensor-001/telemetry' -m '{}' -q 1 > pub.out 2>&1
contains enrolld.log '"event":"aws_mqtt_refused","reason":"publish_not_allowed"' "a PUBLISH outside the API is refused and logged"
timeout 10 mosquitto_sub -h 127.0.0.1 -p "$AWS_PORT" --cafile root/cert.pem --cert claim-1.pem --key claim-1.key \
  -V mqttv5 -t '#' -W 2 > sub.out 2>&1
contains enrolld.log '"reason":"subscribe_not_allowed"' "a SUBSCRIBE to '#' is refused"

check "metrics" curl -s --cacert root/cert.pem "https://127.0.0.1:$PORT/metrics"
contains "$WORK/.out" 'enroll_aws_requests_total{outcome="registered"}' "metrics count AWS outcomes"
kill -TERM "$EPID"
wait "$EPID" 2>/dev/null
same "enrolld stops cleanly (under ASan: nothing leaked)" "$?" "0"
finish
