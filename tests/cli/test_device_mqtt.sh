#!/usr/bin/env bash
# `enroll device` over DPS-over-MQTT (--transport mqtt, mqtts:// URLs)
# against a real enrolld with its "mqtt" listener on 127.0.0.1: a group key
# (SAS as the CONNECT password), an X.509 bootstrap certificate and a key in
# SoftHSM2 (both in the TLS handshake), renewal over mTLS with the
# operational certificate (the bootstrap credential taken away first, so
# only the certificate can have done it), the 202 + polling flow, and the
# failures: a wrong key refused at CONNACK once and for all (no retries), a
# service that is not there (bounded retries), an untrusted or misnamed
# service, and URL/transport combinations that cannot work. Judged by
# openssl (verify -purpose sslclient), enrolld's store and its logs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000081

service_pki
service_store

# An X.509 enrollment group whose bootstrap CA is proven (as in test_dps_mqtt.sh).
service_x509_group xfleet

start() { # EXTRA-CONFIG LOG: sets EPID, PORT (HTTPS) and MQTT_PORT
  enrolld_mqtt_start "$2" "$1"
}
start "" enrolld.log
[ -n "$MQTT_PORT" ] && pass || { fail "enrolld printed no mqtt_port: $(cat enrolld.log)"; finish; exit; }
URL=mqtts://127.0.0.1:$MQTT_PORT
COMMON=(--scope "$SCOPE" --trust root/cert.pem --retries 3 --timeout 10)
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
answers() { curl -s --cacert root/cert.pem "https://127.0.0.1:$PORT/metrics" | awk '$1 == "enroll_mqtt_answers_total" {print $2}'; }
# verify_chain DESCRIPTION: the chain and leaf named in $WORK/.out, judged by openssl.
verify_chain() {
  local cert chain
  cert=$(json "$WORK/.out" .certificate) chain=$(json "$WORK/.out" .chain)
  openssl verify -purpose sslclient -CAfile root/cert.pem -untrusted "$chain" "$cert" > verify.txt 2>&1
  contains verify.txt "$cert: OK" "$1: openssl verify -purpose sslclient"
}
# no_https ID: enrolld's HTTPS request log never saw the registration (it
# logs every HTTPS request; MQTT requests are counted in /metrics).
no_https() { lacks enrolld.log "\"registration_id\":\"$1\",\"status\"" "$1: no HTTPS request (MQTT only)"; }

# ---- group key: SAS token as the MQTT password, file key made here
A0=$(answers)
check "group key over MQTT" "$ENROLL" device provision --url "$URL" --transport mqtt "${COMMON[@]}" \
    --registration-id dev-m1 --group-key-file group.key --key m1.key --store s1 --json
cp "$WORK/.err" m1.err # provision's stderr, for the checks of what it logs (below)
[ -s m1.err ] && pass || fail "provision logged nothing on stderr"
same "provisioned" "$(json "$WORK/.out" .provisioned)" "true"
same "status: transport" "$(json "$WORK/.out" .transport)" "mqtt"
same "identity.json saves the transport" "$(jq -r .transport s1/identity.json)" "mqtt"
same "identity.json saves the URL" "$(jq -r .url s1/identity.json)" "$URL"
verify_chain "group key"
CERT1=$(json "$WORK/.out" .certificate)
expect_exit 0 "group key: the leaf holds the device key" "$ENROLL" match m1.key "$CERT1"
same "group key: leaf subject" "$(openssl x509 -in "$CERT1" -noout -subject)" "subject=CN = dev-m1"
same "group key: the service's store has the leaf" \
    "$(sqlite3 data/enroll.db "select count(*) from certificate where serial='$(serial_of "$CERT1")'")" "1"
lacks m1.err "SharedAccessSignature" "no SAS token on stderr"
grep -Eq 'new identity stored: .*expires [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z' m1.err && pass ||
  fail "the device log gives times in RFC 3339 ($(grep -o 'expires [^ ]*' m1.err))"
lacks m1.err "$(cat group.key)" "no group key on stderr"
lacks s1/identity.json "$(cat group.key)" "no group key in the store"
no_https dev-m1
A1=$(answers)
[ -n "$A1" ] && [ "${A1:-0}" -gt "${A0:-0}" ] && pass || fail "enrolld counted no MQTT answer ($A0 -> $A1)"
check "status (text) names the transport" "$ENROLL" device status --store s1
contains "$WORK/.out" "(mqtt, idScope $SCOPE" "text status: mqtt"
# Without --transport the mqtts:// scheme says it; a host name checked against the DNS SAN.
check "mqtts:// alone selects MQTT (host name localhost)" "$ENROLL" device provision \
    --url "mqtts://localhost:$MQTT_PORT" "${COMMON[@]}" --registration-id dev-m2 --group-key-file group.key \
    --key m2.key --store s2 --json
same "scheme alone: transport mqtt" "$(json "$WORK/.out" .transport)" "mqtt"
verify_chain "mqtts://localhost"
# A name whose first address cannot be reached (localhost as ::1 first, as
# Debian's /etc/hosts has it; enrolld listens on 127.0.0.1 only): the next
# address is tried, as over HTTPS. A private mount namespace holds that
# /etc/hosts for the one command.
printf '::1 localhost\n127.0.0.1 localhost\n' > hosts.v6first
check "mqtts://localhost with ::1 first: the next address" unshare --mount sh -c \
    'mount --bind "$0" /etc/hosts && exec "$@"' "$WORK/hosts.v6first" "$ENROLL" device provision \
    --url "mqtts://localhost:$MQTT_PORT" "${COMMON[@]}" --registration-id dev-m2b --group-key-file group.key \
    --key m2b.key --store s2b --json
verify_chain "localhost, ::1 first"

# ---- renewal over MQTT with the operational certificate (mTLS). The group
# key is moved away first: a fallback to the bootstrap credential would fail,
# so only the certificate can have renewed.
mv group.key group.key.away
check "renewal over MQTT (run --once, forced window)" "$ENROLL" device run --store s1 --once --renew-before P31D --json
same "renewed" "$(json "$WORK/.out" .renewed)" "true"
same "renewal kept the transport" "$(json "$WORK/.out" .transport)" "mqtt"
[ "$(json "$WORK/.out" .serial)" != "$(serial_of "$CERT1")" ] && pass || fail "renewal gave no new serial"
verify_chain "renewal"
lacks "$WORK/.err" "bootstrap credential" "renewal: no fallback to the bootstrap credential"
same "renewal: two certificates for dev-m1 in the service's store" \
    "$(sqlite3 data/enroll.db "select count(*) from certificate where registration_id='dev-m1'")" "2"
no_https dev-m1
# The agent proper (not --once): renews, runs the hook, stops on SIGTERM.
SERIAL2=$(json "$WORK/.out" .serial)
"$ENROLL" device run --store s1 --interval 3600 --renew-before P31D --hook 'openssl x509 -in "$ENROLL_CERT" -noout -serial > hook.out' \
    > agent.out 2> agent.err &
AGENT=$!; PIDS+=("$AGENT")
for _ in $(seq 1 100); do [ -s hook.out ] && break; sleep 0.1; done
kill -TERM "$AGENT"; wait "$AGENT"
same "agent: exit 0 on SIGTERM" "$?" "0"
NEW=$(cut -d= -f2 hook.out 2>/dev/null)
[ -n "$NEW" ] && [ "$NEW" != "$SERIAL2" ] && pass || fail "the agent renewed over MQTT and ran the hook ($NEW)"
same "agent: the store holds the hook's certificate" "$("$ENROLL" device status --store s1 --json | jq -r .serial)" "$NEW"
mv group.key.away group.key

# ---- X.509 bootstrap: the bootstrap certificate in the TLS handshake, no password
"$ENROLL" key new --out x1.boot.key >/dev/null
"$ENROLL" csr new --key x1.boot.key --dn CN=dev-mx1 --out x1.boot.csr 2>/dev/null
"$ENROLL" ca sign --dir boot-int --profile device --cn dev-mx1 x1.boot.csr --out x1.boot.crt 2>/dev/null
cat x1.boot.crt boot-int/cert.pem > x1.chain.pem
check "X.509 bootstrap over MQTT" "$ENROLL" device provision --url "$URL" --transport mqtt "${COMMON[@]}" \
    --registration-id dev-mx1 --bootstrap-cert x1.chain.pem --bootstrap-key x1.boot.key --key mx1.key --store s3 --json
verify_chain "X.509 bootstrap"
X1=$(json "$WORK/.out" .certificate)
expect_exit 0 "X.509: the operational certificate holds the new key" "$ENROLL" match mx1.key "$X1"
expect_exit 1 "X.509: not the bootstrap key" "$ENROLL" match x1.boot.key "$X1"
no_https dev-mx1
# A bootstrap certificate for another registration id: refused at CONNACK, not retried.
expect_exit 1 "X.509: a certificate for another id is refused" "$ENROLL" device provision --url "$URL" "${COMMON[@]}" \
    --registration-id dev-mx9 --bootstrap-cert x1.chain.pem --bootstrap-key x1.boot.key --key mx9.key --store s3b
contains "$WORK/.err" "refused the device's credential at MQTT CONNECT" "X.509: says the credential was refused"
lacks "$WORK/.err" "retrying" "X.509: the refusal is not retried"

# ---- a key in SoftHSM2: the CSR and, at renewal, the TLS handshake signed in the token
MODULE=/usr/lib/softhsm/libsofthsm2.so
if [ -e "$MODULE" ]; then
  softhsm_token mqtok
  printf '87654321\n' > pin.txt
  URI='pkcs11:token=mqtok;object=devkey'
  check "pkcs11 over MQTT (key made in the token)" "$ENROLL" device provision --url "$URL" --transport mqtt "${COMMON[@]}" \
      --registration-id dev-mp1 --group-key-file group.key --key "$URI" --module "$MODULE" --pin-file pin.txt --store s4 --json
  verify_chain "pkcs11"
  P1=$(json "$WORK/.out" .certificate)
  expect_exit 0 "pkcs11: the leaf holds the token key" "$ENROLL" match "$URI" "$P1" --module "$MODULE" --pin-file pin.txt
  mv group.key group.key.away
  check "pkcs11: renewal over MQTT, mTLS signed in the token" "$ENROLL" device run --store s4 --once --renew-before P31D --json
  same "pkcs11: renewed" "$(json "$WORK/.out" .renewed)" "true"
  [ "$(json "$WORK/.out" .serial)" != "$(serial_of "$P1")" ] && pass || fail "pkcs11 renewal gave no new serial"
  verify_chain "pkcs11 renewal"
  lacks "$WORK/.err" "bootstrap credential" "pkcs11: no fallback to the bootstrap credential"
  expect_exit 0 "pkcs11: the renewed leaf holds the same token key" "$ENROLL" match "$URI" "$(json "$WORK/.out" .certificate)" \
      --module "$MODULE" --pin-file pin.txt
  lacks "$WORK/.err" "87654321" "pkcs11: the PIN is never printed"
  mv group.key.away group.key
  # An X.509 bootstrap key in the token: mTLS with a token key from the first connection on.
  BURI='pkcs11:token=mqtok;object=bootkey'
  "$ENROLL" key new --type ec-p256 --key "$BURI" --module "$MODULE" --pin-file pin.txt >/dev/null
  "$ENROLL" csr new --key "$BURI" --module "$MODULE" --pin-file pin.txt --dn CN=dev-mx2 --out x2.boot.csr 2>/dev/null
  "$ENROLL" ca sign --dir boot-int --profile device --cn dev-mx2 x2.boot.csr --out x2.boot.crt 2>/dev/null
  check "pkcs11: X.509 bootstrap key in the token over MQTT" "$ENROLL" device provision --url "$URL" "${COMMON[@]}" \
      --registration-id dev-mx2 --bootstrap-cert x2.boot.crt --bootstrap-key "$BURI" \
      --key 'pkcs11:token=mqtok;object=x2key' --module "$MODULE" --pin-file pin.txt --store s5 --json
  verify_chain "pkcs11 bootstrap key"
  no_https dev-mx2
else
  cannot_run "the PKCS#11 cases" "$MODULE is missing (softhsm2)"
fi

# ---- a wrong key: refused at CONNACK once, a clear message, no retries
printf 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n' > wrong.key
t0=$(date +%s%N)
expect_exit 1 "a wrong group key is refused" "$ENROLL" device provision --url "$URL" --scope "$SCOPE" --trust root/cert.pem \
    --retries 6 --registration-id dev-mw1 --group-key-file wrong.key --key mw1.key --store s6
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -lt 5000 ] && pass || fail "the refusal took $ms ms (retried?)"
contains "$WORK/.err" "refused the device's credential at MQTT CONNECT: bad user name or password (CONNACK 4)" \
    "wrong key: the message says why"
lacks "$WORK/.err" "retrying" "wrong key: not retried"
same "wrong key: one CONNECT refused by enrolld" "$(grep -c '"event":"mqtt_connect_refused","reason":"auth_failed","registration_id":"dev-mw1"' enrolld.log)" "1"
same "wrong key: the failure is recorded" "$(jq -r .last_result s6/identity.json)" "error"

# ---- nothing listening: connection errors are retried with backoff, bounded
FREE=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
t0=$(date +%s%N)
expect_exit 3 "no service: gives up after --retries" "$ENROLL" device provision --url "mqtts://127.0.0.1:$FREE" --scope "$SCOPE" \
    --trust root/cert.pem --retries 2 --timeout 5 --registration-id dev-mz1 --group-key-file group.key --key mz1.key --store s7
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
contains "$WORK/.err" "attempt 1 of 2 failed: cannot connect to 127.0.0.1 port $FREE" "no service: retried once, says where"
[ "$ms" -lt 8000 ] && pass || fail "no service: took $ms ms"

# ---- trust (-www: s_server reads no stdin, whose end would close the connection): a service the --trust root did not issue, and one whose certificate names another host
expect_exit 1 "MQTT: an untrusted service is refused" "$ENROLL" device provision --url "$URL" --scope "$SCOPE" \
    --trust boot-root/cert.pem --retries 1 --registration-id dev-mt1 --group-key-file group.key --key mt1.key --store s8
contains "$WORK/.err" "is not trusted" "untrusted: says so"
lacks "$WORK/.err" "retrying" "untrusted: not retried"
"$ENROLL" key new --out other.key >/dev/null
"$ENROLL" csr new --key other.key --dn CN=other.example --san DNS:other.example --out other.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server other.csr --out other.pem 2>/dev/null
openssl s_server -www -accept 127.0.0.1:0 -cert other.pem -key other.key -naccept 1 > s_server.out 2>&1 &
PIDS+=("$!")
OPORT=
for _ in $(seq 1 100); do OPORT=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' s_server.out); [ -n "$OPORT" ] && break; sleep 0.05; done
expect_exit 1 "MQTT: a certificate for another name is refused" "$ENROLL" device provision --url "mqtts://127.0.0.1:$OPORT" \
    --scope "$SCOPE" --trust root/cert.pem --retries 1 --timeout 5 --registration-id dev-mt2 --group-key-file group.key \
    --key mt2.key --store s9
contains "$WORK/.err" "is not trusted" "misnamed service: refused by the name check"

# ---- URL and transport that cannot work together: usage errors (exit 2), nothing contacted
P=(--scope "$SCOPE" --trust root/cert.pem --registration-id dev-mu --group-key-file group.key --key mu.key --store su)
expect_exit 2 "--transport mqtt with an https:// URL" "$ENROLL" device provision --url "https://127.0.0.1:$PORT" --transport mqtt "${P[@]}"
contains "$WORK/.err" "transport mqtt needs an mqtts://host[:port] URL" "mqtt + https://: says what to give"
expect_exit 2 "--transport https with an mqtts:// URL" "$ENROLL" device provision --url "$URL" --transport https "${P[@]}"
contains "$WORK/.err" "transport https needs an https://host[:port] URL" "https + mqtts://: says what to give"
expect_exit 2 "plain mqtt:// is refused" "$ENROLL" device provision --url "mqtt://127.0.0.1:$MQTT_PORT" "${P[@]}"
contains "$WORK/.err" "plain MQTT is refused" "mqtt://: says why"
expect_exit 2 "an MQTT URL has no path" "$ENROLL" device provision --url "$URL/x" "${P[@]}"
expect_exit 2 "--transport takes https or mqtt" "$ENROLL" device provision --url "$URL" --transport amqp "${P[@]}"
contains "$WORK/.err" "give https or mqtt" "bad transport: says what to give"
expect_exit 2 "run takes no --transport (saved by provision)" "$ENROLL" device run --store s1 --once --transport https
contains "$WORK/.err" "provision again to change them" "run --transport: says how to change it"
[ ! -e su ] && pass || fail "nothing was stored for a bad combination"
cp -r s1 s1x
jq '.transport = "https"' s1/identity.json > s1x/identity.json
expect_exit 2 "a store whose saved transport disagrees with its URL" "$ENROLL" device run --store s1x --once
contains "$WORK/.err" "transport https needs an https://host[:port] URL" "edited store: says what disagrees"
contains "$WORK/.err" "s1x/identity.json" "edited store: names the file"
jq 'del(.transport)' s1/identity.json > s1x/identity.json
check "a store without a saved transport (older): its mqtts:// URL says MQTT" "$ENROLL" device status --store s1x --json
same "older store: transport from the URL" "$(json "$WORK/.out" .transport)" "mqtt"
check "--help teaches --transport" "$ENROLL" device provision --help
contains "$WORK/.out" "--transport T  https or mqtt" "help: --transport"
contains "$WORK/.out" "mqtts://host[:port] for DPS over MQTT" "help: mqtts:// URLs"

# ---- 202 + polling over MQTT (enrolld answers every registration "assigning")
kill -TERM "$EPID"; wait "$EPID" 2>/dev/null
start ', "limits": {"assigning_after_ms": 0}' enrolld2.log
check "provision through 202 + polls over MQTT" "$ENROLL" device provision --url "mqtts://127.0.0.1:$MQTT_PORT" "${COMMON[@]}" \
    --registration-id dev-ma1 --group-key-file group.key --key ma1.key --store s10 --json
verify_chain "polled"
contains "$WORK/.err" "registration assigning (operation" "the client polled the operation"
check "renew through 202 + polls over MQTT (mTLS)" "$ENROLL" device run --store s10 --once --renew-before P31D --json
same "polled renewal: renewed" "$(json "$WORK/.out" .renewed)" "true"
contains "$WORK/.err" "registration assigning (operation" "the renewal polled too"
same "polled: two certificates for dev-ma1" \
    "$(sqlite3 data/enroll.db "select count(*) from certificate where registration_id='dev-ma1'")" "2"
kill -TERM "$EPID"; wait "$EPID" 2>/dev/null
same "enrolld: clean stop" "$?" "0"
lacks enrolld.log "ERROR: AddressSanitizer" "no sanitizer report from enrolld"
lacks enrolld2.log "ERROR: AddressSanitizer" "no sanitizer report from enrolld (polling)"
finish
