#!/usr/bin/env bash
# The device agent's AWS fleet provisioning by claim against enrolld's AWS
# MQTT listener ("aws" in enrolld.json): a claim CA uploaded and proven as a
# bootstrap CA, a provisioning template, `enroll device provision --protocol
# aws-fleet` (the thing exists: `enroll admin thing show`), then `enroll
# device run --once` with a renewal window longer than the certificate's
# lifetime, twice, with the device's own certificate (the claim moved away):
# the thing keeps one active certificate, the earlier ones are superseded,
# revoked and listed by `enroll admin crl`, nothing pending is left. On
# `enroll` and `enroll-device`. Judged by openssl and the service's store.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
DEV=${ENROLL_DEVICE_BIN:-$(dirname "$ENROLL")/enroll-device}
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne000000aa
admin() { "$ENROLL" admin "$@" --data data; }

service_pki
service_store
cat root/cert.pem devices-ca/cert.pem > ca-bundle.pem   # --ca-trust: the issuing intermediate + root

# ---- a claim CA proven as a bootstrap CA, claim certificates, the template
service_claim_ca claim
"$ENROLL" key new --out claim.key >/dev/null
"$ENROLL" csr new --key claim.key --dn CN=claim-batch-1 --out claim.csr 2>/dev/null
"$ENROLL" ca sign --dir claim --profile device --cn claim-batch-1 claim.csr --out claim.pem 2>/dev/null
[ -s claim.pem ] && pass || fail "no claim certificate"
cat > fleet.json <<'JSON'
{
  "Parameters": {
    "SerialNumber": {"Type": "String"},
    "Floor": {"Type": "Number", "Default": 1}
  },
  "Resources": {
    "thing": {
      "Type": "AWS::IoT::Thing",
      "Properties": {
        "ThingName": {"Fn::Join": ["", ["sensor-", {"Ref": "SerialNumber"}]]},
        "AttributePayload": {"floor": {"Ref": "Floor"}}
      }
    },
    "certificate": {
      "Type": "AWS::IoT::Certificate",
      "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}
    }
  },
  "DeviceConfiguration": {"Fleet": "sensors"}
}
JSON
check "template created" admin template create fleet --file fleet.json --policy p30 --claim-ca claim

# ---- enrolld with its AWS listener
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 1,
 "aws": {"listen": "127.0.0.1:0"}}
JSON
enrolld_start enrolld.json enrolld.log
AWS_PORT=
for _ in $(seq 1 400); do
  AWS_PORT=$(grep -ao '"aws_port":[0-9]*' enrolld.log | head -1 | cut -d: -f2)
  [ -n "$AWS_PORT" ] && break
  sleep 0.05
done
[ -n "$AWS_PORT" ] && pass || { fail "enrolld printed no aws_port: $(cat enrolld.log)"; finish; exit; }
URL=mqtts://127.0.0.1:$AWS_PORT
AWS=(--protocol aws-fleet --url "$URL" --template fleet --trust root/cert.pem --ca-trust ca-bundle.pem
     --bootstrap-cert claim.pem --bootstrap-key claim.key --retries 3 --timeout 20)
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
verify_chain() { # DESCRIPTION: the chain and leaf named in $WORK/.out, judged by openssl
  local cert chain
  cert=$(json "$WORK/.out" .certificate) chain=$(json "$WORK/.out" .chain)
  openssl verify -purpose sslclient -CAfile root/cert.pem -untrusted "$chain" "$cert" > verify.txt 2>&1
  contains verify.txt "$cert: OK" "$1: openssl verify -purpose sslclient"
}
# statuses THING: the thing's certificates' statuses, sorted, one line
statuses() { admin thing show "$1" --json | jq -r '[.certificates[].status] | sort | join(",")'; }

# one_device BIN THING SERIAL STORE: provision, renew twice, judge the service's record
one_device() {
  local bin=$1 thing=$2 sn=$3 store=$4 s1 s2 s3
  mv claim.pem.away claim.pem 2>/dev/null
  check "$thing: provision by claim ($(basename "$bin"))" "$bin" device provision "${AWS[@]}" \
      --param SerialNumber="$sn" --key "$store.key" --store "$store" --json
  same "$thing: protocol" "$(json "$WORK/.out" .protocol)" "aws-fleet"
  same "$thing: the template named the thing" "$(json "$WORK/.out" .thing_name)" "$thing"
  verify_chain "$thing: provision"
  s1=$(json "$WORK/.out" .serial)
  same "$thing: CN = the serial asked for" "$(openssl x509 -in "$(json "$WORK/.out" .certificate)" -noout -subject)" \
      "subject=CN = $sn"
  same "$thing: deviceConfiguration stored" "$(jq -c .device_configuration "$store/identity.json")" '{"Fleet":"sensors"}'
  check "$thing: the thing exists" admin thing show "$thing" --json
  same "$thing: its template" "$(json "$WORK/.out" .template // .last_template)" "fleet"
  same "$thing: one active certificate" "$(statuses "$thing")" "active"
  # Renewals with the device's own certificate: the claim is away.
  mv claim.pem claim.pem.away
  check "$thing: first renewal ($(basename "$bin"))" "$bin" device run --store "$store" --once --renew-before P31D --json
  same "$thing: renewed" "$(json "$WORK/.out" .renewed)" "true"
  same "$thing: generation 2" "$(json "$WORK/.out" .generation)" "2"
  verify_chain "$thing: first renewal"
  s2=$(json "$WORK/.out" .serial)
  lacks "$WORK/.err" "bootstrap credential" "$thing: first renewal without the claim"
  check "$thing: second renewal (rotating the key)" "$bin" device run --store "$store" --once --renew-before P31D \
      --rotate-key --json
  same "$thing: generation 3" "$(json "$WORK/.out" .generation)" "3"
  verify_chain "$thing: second renewal"
  s3=$(json "$WORK/.out" .serial)
  same "$thing: renewal keeps the thing" "$(json "$WORK/.out" .thing_name)" "$thing"
  same "$thing: the renewed CN names the thing" \
      "$(openssl x509 -in "$(json "$WORK/.out" .certificate)" -noout -subject)" "subject=CN = $thing"
  [ "$s1" != "$s2" ] && [ "$s2" != "$s3" ] && [ "$s1" != "$s3" ] && pass || fail "$thing: serials $s1 $s2 $s3"
  same "$thing: one active, the earlier two superseded" "$(statuses "$thing")" "active,superseded,superseded"
  same "$thing: the active one is the device's" \
      "$(admin thing show "$thing" --json | jq -r '.certificates[] | select(.status == "active") | .serial' |
         tr 'a-f' 'A-F' | sed 's/^0*//')" "$(sed 's/^0*//' <<<"$s3")"
  check "$thing: CRL" admin crl --ca devices --out "$thing.crl"
  for s in "$s1" "$s2"; do
    openssl crl -in "$thing.crl" -noout -text | tr -d ' ' | grep -qi "SerialNumber:0*${s#0}$" && pass ||
      fail "$thing: serial $s not in the CRL"
  done
  if openssl crl -in "$thing.crl" -noout -text | tr -d ' ' | grep -qi "SerialNumber:0*${s3#0}$"; then
    fail "$thing: the active certificate is in the CRL"; else pass; fi
  contains <(openssl crl -in "$thing.crl" -noout -text) "Superseded" "$thing: revoked as superseded"
  mv claim.pem.away claim.pem
}
one_device "$ENROLL" sensor-0042 0042 s1
one_device "$DEV" sensor-0043 0043 s2
same "nothing pending in the service's store" \
    "$(sqlite3 data/enroll.db "select count(*) from aws_certificate where status='pending'")" "0"
check "status (text)" "$ENROLL" device status --store s1
contains "$WORK/.out" "Thing name:      sensor-0042" "status: the thing name"
contains "$WORK/.out" "Protocol:        aws-fleet" "status: the protocol"

# ---- refusals by the real service
expect_exit 1 "an unknown template is a refusal" "$ENROLL" device provision --protocol aws-fleet --url "$URL" \
    --template nosuch --trust root/cert.pem --ca-trust ca-bundle.pem --bootstrap-cert claim.pem \
    --bootstrap-key claim.key --param SerialNumber=0050 --key x.key --store s9 --retries 2
contains "$WORK/.err" "statusCode 404" "says 404"
lacks "$WORK/.err" "retrying" "not retried"
check "disable the thing" admin thing disable sensor-0042
expect_exit 1 "a disabled thing cannot renew" "$ENROLL" device run --store s1 --once --renew-before P31D
same "the disabled thing kept its certificate" "$("$ENROLL" device status --store s1 --json | jq -r .generation)" "3"
kill -TERM "$EPID" 2>/dev/null; wait "$EPID" 2>/dev/null
finish
