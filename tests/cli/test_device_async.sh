#!/usr/bin/env bash
# The device client against DPS's asynchronous flow: enrolld answers every
# registration 202 "assigning" (limits.assigning_after_ms = 0) and the client
# must follow operationId + Retry-After by polling until it is assigned; an
# operation the service has lost (a poll answered 404) means registering
# again, not a refusal.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000078

service_pki
service_store
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2, "limits": {"assigning_after_ms": 0}}
JSON
enrolld_start enrolld.json enrolld.log

check "provision through 202 + polling" "$ENROLL" device provision --url "https://127.0.0.1:$PORT" --scope "$SCOPE" \
    --trust root/cert.pem --registration-id dev-a1 --group-key-file group.key --key dev.key --store s --json --timeout 20
same "provisioned" "$(json "$WORK/.out" .provisioned)" "true"
CERT=$(json "$WORK/.out" .certificate)
CHAIN=$(json "$WORK/.out" .chain)
expect_exit 0 "the polled certificate verifies (openssl)" openssl verify -purpose sslclient -CAfile root/cert.pem -untrusted "$CHAIN" "$CERT"
expect_exit 0 "it holds the device's key" "$ENROLL" match dev.key "$CERT"
serial=$(openssl x509 -in "$CERT" -noout -serial | cut -d= -f2)
same "the service's store has it" "$(sqlite3 data/enroll.db "select count(*) from certificate where serial='$serial'")" "1"
contains enrolld.log '"route":"register","registration_id":"dev-a1","status":202' "the PUT was answered 202"
contains enrolld.log '"route":"operation","registration_id":"dev-a1","status":200' "the client polled the operation to 200"

# Renewal goes the same way (over mTLS with the operational certificate).
check "renew through 202 + polling" "$ENROLL" device run --store s --once --renew-before P31D
check "status after renewal" "$ENROLL" device status --store s --json
[ "$(json "$WORK/.out" .serial)" != "$serial" ] && pass || fail "renewal through the asynchronous flow gave a new serial"
grep -q '"method":"PUT","route":"register","registration_id":"dev-a1","status":202,.*"client_cert":true' enrolld.log &&
  pass || fail "the renewal came over mTLS and was answered 202"
same "two certificates for dev-a1" "$(sqlite3 data/enroll.db "select count(*) from certificate where registration_id='dev-a1'")" "2"
# The service loses the operation between the 202 and the poll (deleted from
# its store here): the poll gets 404 (errorCode 404003) and the device must
# start over with the PUT instead of reporting a refusal.
"$ENROLL" device provision --url "https://127.0.0.1:$PORT" --scope "$SCOPE" --trust root/cert.pem \
    --registration-id dev-a2 --group-key-file group.key --key dev2.key --store s2 --json --timeout 20 \
    > lost.out 2> lost.err &
DPID=$!
for _ in $(seq 1 200); do
  n=$(sqlite3 -cmd ".timeout 2000" data/enroll.db "select count(*) from operation where registration_id='dev-a2'" 2>/dev/null)
  [ "${n:-0}" -ge 1 ] && break; sleep 0.02
done
sqlite3 -cmd ".timeout 2000" data/enroll.db "delete from operation where registration_id='dev-a2'"
wait "$DPID"
same "lost operation: provisioning succeeded" "$?" "0"
same "lost operation: provisioned" "$(jq -r .provisioned lost.out)" "true"
contains enrolld.log '"route":"operation","registration_id":"dev-a2","status":404' "lost operation: the poll was answered 404"
contains lost.err "registering again" "lost operation: the device said it starts over"
same "lost operation: two PUTs" "$(grep -c '"route":"register","registration_id":"dev-a2"' enrolld.log)" "2"
finish
