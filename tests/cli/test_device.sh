#!/usr/bin/env bash
# `enroll device` end to end against a real enrolld on 127.0.0.1: group-key
# SAS, individual key, X.509 bootstrap over mTLS, a key in SoftHSM2; status,
# export (judged by openssl pkcs12), renewal (new serial, old files kept until
# the new chain verifies), the agent's hook and SIGTERM; faults: service
# down then back, a fake service answering garbage or a certificate for
# another key or CN (old identity kept), and a crash between writing the new
# generation and switching to it.
# The device commands run on enroll-device (ENROLL_DEVICE_BIN), the binary a
# device carries; the operator's side (CA, admin) on enroll. `enroll device`
# itself is driven by test_device_agent.sh and test_device_async.sh.
. "$(dirname "$0")/lib.sh"
DEVICE=${ENROLL_DEVICE_BIN:-$ENROLL}
cd "$WORK"
ENROLLD=$(dirname "$ENROLL")/enrolld
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000077

"$ENROLL" ca init --dir root --subject '/O=Acme/CN=Acme Root' >/dev/null
"$ENROLL" ca init --dir devices-ca --parent root --subject '/O=Acme/CN=Acme Devices' >/dev/null
"$ENROLL" key new --out server.key >/dev/null
"$ENROLL" csr new --key server.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server server.csr --out server.pem 2>/dev/null
check "admin: CA" "$ENROLL" admin ca add devices --ca-dir devices-ca --data data
check "admin: policy" "$ENROLL" admin policy new p30 --validity P30D --renewal-window P7D --ca devices --data data
check "admin: group" "$ENROLL" admin group new fleet --policy p30 --symmetric --hub mqtt.example:8883 --data data --json
json "$WORK/.out" .primary_key > group.key
chmod 600 group.key
check "admin: individual" "$ENROLL" admin individual new solo-1 --policy p30 --symmetric --data data --json
json "$WORK/.out" .primary_key > solo.key

start_enrolld() { # [PORT]
  cat > enrolld.json <<JSON
{"listen": "127.0.0.1:${1:-0}", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2}
JSON
  : > enrolld.log
  "$ENROLLD" --config enrolld.json 2>> enrolld.log &
  EPID=$!; PIDS+=("$EPID")
  for _ in $(seq 1 400); do PORT=$(grep -o '"port":[0-9]*' enrolld.log | head -1 | cut -d: -f2); [ -n "$PORT" ] && break; sleep 0.05; done
}
start_enrolld
URL=https://127.0.0.1:$PORT
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
COMMON=(--url "$URL" --scope "$SCOPE" --trust root/cert.pem --retries 3 --timeout 20)

# ---- group key (SAS with a derived device key), file key made here
check "group-key provision" "$DEVICE" device provision "${COMMON[@]}" --registration-id dev-001 \
    --group-key-file group.key --key dev1.key --store s1 --json
same "provisioned" "$(json "$WORK/.out" .provisioned)" "true"
same "registration id" "$(json "$WORK/.out" .registration_id)" "dev-001"
same "assigned hub" "$(json "$WORK/.out" .assigned_hub)" "mqtt.example:8883"
same "key file is 0600" "$(stat -c %a dev1.key)" "600"
CHAIN1=$(json "$WORK/.out" .chain)
CERT1=$(json "$WORK/.out" .certificate)
openssl verify -purpose sslclient -CAfile root/cert.pem -untrusted "$CHAIN1" "$CERT1" > v.txt 2>&1
contains v.txt ": OK" "openssl verifies the stored chain to the root"
expect_exit 0 "stored leaf holds the device key" "$ENROLL" match dev1.key "$CERT1"
same "leaf subject" "$(openssl x509 -in "$CERT1" -noout -subject)" "subject=CN = dev-001"
same "leaf serial recorded in the service store" \
    "$(sqlite3 data/enroll.db "select count(*) from certificate where serial='$(serial_of "$CERT1")'")" "1"
lacks s1/identity.json "$(cat group.key)" "the store never holds the group key"
lacks "$WORK/.err" "$(cat group.key)" "stderr never shows the group key"
lacks "$WORK/.err" "SharedAccessSignature" "stderr never shows a token"

check "status --json" "$DEVICE" device status --store s1 --json
same "status: serial" "$(json "$WORK/.out" .serial)" "$(serial_of "$CERT1")"
same "status: last result" "$(json "$WORK/.out" .last_result)" "ok"
same "status: issuer" "$(json "$WORK/.out" .issuer)" "O=Acme, CN=Acme Devices"
# A store written before DNs had one spelling holds OpenSSL's oneline form:
# status still spells them as every other output does (from the certificate).
cp -a s1 s1-old
sed -i 's|"issuer": *"[^"]*"|"issuer": "/O=Acme/CN=Acme Devices"|' s1-old/identity.json
contains s1-old/identity.json '"/O=Acme/CN=Acme Devices"' "old store: the oneline form is in place"
"$DEVICE" device status --store s1-old --json > old-status.json
same "old store: status spells the issuer the one way" "$(json old-status.json .issuer)" "O=Acme, CN=Acme Devices"
days=$(json "$WORK/.out" .days_to_renewal | cut -d. -f1)
[ "$days" -ge 22 ] && [ "$days" -le 23 ] && pass || fail "renewal at the service's hint (30 days - 7): $days days"
same "status: the service's renewal window" "$(jq -r .service_renewal_window s1/identity.json)" "P7D"
check "status (text)" "$DEVICE" device status --store s1
contains "$WORK/.out" "Renewal due:" "text status shows the renewal time"

# ---- export
printf 'export-pass-1\n' > pass.txt
check "export pkcs12" "$DEVICE" device export --store s1 --pkcs12 dev1.pfx --pass-file pass.txt
same "pfx is 0600" "$(stat -c %a dev1.pfx)" "600"
expect_exit 0 "openssl pkcs12 -info reads it" openssl pkcs12 -info -in dev1.pfx -passin pass:export-pass-1 -nodes
contains "$WORK/.out" "CN = dev-001" "pfx holds the leaf"
contains "$WORK/.out" "BEGIN PRIVATE KEY" "pfx holds the key"
contains "$WORK/.err" "AES-256-CBC" "pfx is AES-256 encrypted"
expect_exit 1 "wrong passphrase refused" openssl pkcs12 -info -in dev1.pfx -passin pass:wrong -nodes
expect_exit 1 "export refuses to overwrite" "$DEVICE" device export --store s1 --pkcs12 dev1.pfx --pass-file pass.txt
expect_exit 2 "export needs a passphrase" "$DEVICE" device export --store s1 --pkcs12 x.pfx

# ---- individual enrollment key
check "individual-key provision" "$DEVICE" device provision "${COMMON[@]}" --registration-id solo-1 \
    --device-key-file solo.key --key solo.key.pem --store s2 --json
expect_exit 0 "individual: chain verifies" openssl verify -CAfile root/cert.pem -untrusted "$(json "$WORK/.out" .chain)" "$(json "$WORK/.out" .certificate)"
expect_exit 1 "a wrong key is refused by the service" "$DEVICE" device provision "${COMMON[@]}" --registration-id solo-2 \
    --device-key-file solo.key --key solo2.pem --store s2b
contains "$WORK/.err" "401" "the refusal names the HTTP status"
expect_exit 1 "re-provisioning with a refused credential" "$DEVICE" device provision "${COMMON[@]}" \
    --registration-id solo-1 --device-key-file group.key --key solo-other.pem --store s2
same "a failed re-provisioning keeps the key that matches the certificate" "$(jq -r .key s2/identity.json)" "$WORK/solo.key.pem"
same "a failed re-provisioning records the error" "$(jq -r .last_result s2/identity.json)" "error"

# ---- X.509 bootstrap over mTLS
"$ENROLL" ca init --dir boot-root --subject '/CN=Bootstrap Root' >/dev/null
"$ENROLL" ca init --dir boot-int --parent boot-root --subject '/CN=Bootstrap Intermediate' >/dev/null
check "admin: upload bootstrap CA" "$ENROLL" admin ca upload boot --cert boot-int/cert.pem --data data --json
CODE=$(json "$WORK/.out" .verification_code)
"$ENROLL" key new --out ver.key >/dev/null
"$ENROLL" csr new --key ver.key --dn "CN=$CODE" --out ver.csr 2>/dev/null
"$ENROLL" ca sign --dir boot-int --profile device --cn "$CODE" ver.csr --out ver.crt 2>/dev/null
check "admin: prove possession" "$ENROLL" admin ca verify boot --cert ver.crt --data data
check "admin: X.509 group" "$ENROLL" admin group new xfleet --policy p30 --x509-ca boot --data data
"$ENROLL" key new --out x1.boot.key >/dev/null
"$ENROLL" csr new --key x1.boot.key --dn CN=dev-x1 --out x1.boot.csr 2>/dev/null
"$ENROLL" ca sign --dir boot-int --profile device --cn dev-x1 x1.boot.csr --out x1.boot.crt 2>/dev/null
check "x509 bootstrap provision" "$DEVICE" device provision "${COMMON[@]}" --registration-id dev-x1 \
    --bootstrap-cert x1.boot.crt --bootstrap-key x1.boot.key --key x1.key --store s3 --json
X1=$(json "$WORK/.out" .certificate)
expect_exit 0 "x509: chain verifies" openssl verify -CAfile root/cert.pem -untrusted "$(json "$WORK/.out" .chain)" "$X1"
expect_exit 0 "x509: operational cert holds the new key" "$ENROLL" match x1.key "$X1"
expect_exit 1 "x509: not the bootstrap key" "$ENROLL" match x1.boot.key "$X1"

# ---- trust: a service whose certificate does not chain to --trust
expect_exit 1 "untrusted service refused" "$DEVICE" device provision "${COMMON[@]}" --trust boot-root/cert.pem \
    --registration-id dev-009 --group-key-file group.key --key d9.key --store s9
contains "$WORK/.err" "not trusted" "says the service is not trusted"
same "nothing stored for an untrusted service" "$(jq -r .generation s9/identity.json 2>/dev/null || echo 0)" "0"
expect_exit 1 "a chain not under --ca-trust is refused" "$DEVICE" device provision "${COMMON[@]}" \
    --ca-trust boot-root/cert.pem --registration-id dev-010 --group-key-file group.key --key d10.key --store s10
contains "$WORK/.err" "does not verify to the CA trust anchor" "says why the chain was refused"

# ---- PKCS#11 key in SoftHSM2
MODULE=/usr/lib/softhsm/libsofthsm2.so
if [ -e "$MODULE" ]; then
  softhsm_token devtok
  printf '87654321\n' > pin.txt
  URI='pkcs11:token=devtok;object=devkey'
  check "pkcs11 provision (key made in the token)" "$DEVICE" device provision "${COMMON[@]}" --registration-id dev-p11 \
      --group-key-file group.key --key "$URI" --module "$MODULE" --pin-file pin.txt --store s4 --json
  P11CERT=$(json "$WORK/.out" .certificate)
  expect_exit 0 "pkcs11: chain verifies" openssl verify -CAfile root/cert.pem -untrusted "$(json "$WORK/.out" .chain)" "$P11CERT"
  expect_exit 0 "pkcs11: leaf holds the token key" "$ENROLL" match "$URI" "$P11CERT" --module "$MODULE" --pin-file pin.txt
  pkcs11-tool --module "$MODULE" --token-label devtok --login --pin 87654321 --list-objects --type privkey > p11.txt 2>&1
  contains p11.txt "never extractable" "pkcs11: the key was made non-extractable"
  lacks s4/identity.json "87654321" "the store never holds the PIN"
  expect_exit 3 "pkcs11: export refused (the key cannot leave the token)" "$DEVICE" device export --store s4 \
      --pkcs12 p11.pfx --pass-file pass.txt
  contains "$WORK/.err" "cannot leave" "says why"
  # Renewal with a token key: mTLS with the operational certificate, the
  # handshake signed inside the token (docs/device.md). enrolld's request log
  # is the judge: every request of this renewal came with a client
  # certificate, so no SAS token (the bootstrap credential) was used.
  LOGSTART=$(wc -l < enrolld.log)
  check "pkcs11: renewal" "$DEVICE" device run --store s4 --once --renew-before P31D --json
  lacks "$WORK/.err" "using the bootstrap credential" "pkcs11: no fallback to the bootstrap credential"
  lacks "$WORK/.err" "not supported" "pkcs11: mTLS with the token key is supported"
  same "pkcs11: renewed" "$(json "$WORK/.out" .renewed)" "true"
  P11CERT2=$(json "$WORK/.out" .certificate)
  [ "$(json "$WORK/.out" .serial)" != "$(serial_of "$P11CERT")" ] && pass || fail "pkcs11 renewal gave no new serial"
  tail -n +$((LOGSTART + 1)) enrolld.log | grep '"registration_id":"dev-p11"' > p11req.log
  contains p11req.log '"route":"register","registration_id":"dev-p11","status":200' "pkcs11: enrolld answered the renewal"
  contains p11req.log '"client_cert":true' "pkcs11: enrolld saw the operational certificate"
  lacks p11req.log '"client_cert":false' "pkcs11: no request of the renewal came without a client certificate"
  expect_exit 0 "pkcs11: renewed leaf holds the same token key" "$ENROLL" match "$URI" "$P11CERT2" --module "$MODULE" --pin-file pin.txt
  same "pkcs11: the service recorded the renewed certificate" \
      "$(sqlite3 data/enroll.db "select count(*) from certificate where registration_id='dev-p11'")" "2"
  pkcs11-tool --module "$MODULE" --token-label devtok --login --pin 87654321 --list-objects --type privkey > p11.txt 2>&1
  contains p11.txt "never extractable" "pkcs11: the key is still non-extractable after renewal"
  pkcs11-tool --module "$MODULE" --token-label devtok --login --pin 87654321 --read-object --type privkey \
      --label devkey -o p11key.der > /dev/null 2>&1 || true
  [ ! -s p11key.der ] && pass || fail "pkcs11: the private key could be read out of the token"
  lacks "$WORK/.err" "87654321" "pkcs11: the PIN is never printed"

  # X.509 bootstrap with the bootstrap key in the token too: mTLS with a
  # token key from the first registration on.
  BURI='pkcs11:token=devtok;object=bootkey'
  check "pkcs11: bootstrap key in the token" "$ENROLL" key new --type ec-p256 --key "$BURI" --module "$MODULE" --pin-file pin.txt
  "$ENROLL" csr new --key "$BURI" --module "$MODULE" --pin-file pin.txt --dn CN=dev-x2 --out x2.boot.csr 2>/dev/null
  "$ENROLL" ca sign --dir boot-int --profile device --cn dev-x2 x2.boot.csr --out x2.boot.crt 2>/dev/null
  LOGSTART=$(wc -l < enrolld.log)
  check "pkcs11: x509 bootstrap provision with a token bootstrap key" "$DEVICE" device provision "${COMMON[@]}" \
      --registration-id dev-x2 --bootstrap-cert x2.boot.crt --bootstrap-key "$BURI" \
      --key 'pkcs11:token=devtok;object=x2key' --module "$MODULE" --pin-file pin.txt --store s11 --json
  X2=$(json "$WORK/.out" .certificate)
  expect_exit 0 "pkcs11: x509-bootstrapped chain verifies" openssl verify -CAfile root/cert.pem \
      -untrusted "$(json "$WORK/.out" .chain)" "$X2"
  tail -n +$((LOGSTART + 1)) enrolld.log | grep '"registration_id":"dev-x2"' > x2req.log
  contains x2req.log '"client_cert":true' "pkcs11: enrolld saw the bootstrap certificate"
  lacks x2req.log '"client_cert":false' "pkcs11: every request came with the bootstrap certificate"
else
  cannot_run "the PKCS#11 cases" "$MODULE is missing (softhsm2)"
fi

# ---- renewal: not due, then due (with --renew-before longer than the validity)
OLD=$(serial_of "$CERT1")
check "run --once, not due" "$DEVICE" device run --store s1 --once --json
grep -Eq 'enroll device: renewal due at [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z \(in [0-9.]+ days\)' "$WORK/.err" && pass ||
  fail "run --once says when the renewal is due: $(cat "$WORK/.err")"
same "not renewed when not due" "$(json "$WORK/.out" .renewed)" "false"
same "same serial" "$(json "$WORK/.out" .serial)" "$OLD"
check "run --once, due, with a hook" "$DEVICE" device run --store s1 --once --renew-before P31D --json \
    --hook 'echo "$ENROLL_CERT $ENROLL_KEY" > hook.out'
same "renewed" "$(json "$WORK/.out" .renewed)" "true"
# enrolld logs whether the request came with a client certificate: the
# renewal's register line must say so (the absence of a fallback message
# proves nothing).
last_register() { # RID -> the last register line enrolld logged for it
  grep -F '"route":"register","registration_id":"'"$1"'"' enrolld.log | tail -1
}
last_register dev-001 > reg.line
contains reg.line '"client_cert":true' "renewal authenticated with the operational certificate (mTLS)"
lacks "$WORK/.err" "using the bootstrap credential" "renewal did not fall back"
NEW=$(json "$WORK/.out" .serial)
[ -n "$NEW" ] && [ "$NEW" != "$OLD" ] && pass || fail "renewal gave no new serial ($OLD -> $NEW)"
same "generation 2" "$(json "$WORK/.out" .generation)" "2"
CERT2=$(json "$WORK/.out" .certificate)
expect_exit 0 "renewed chain verifies" openssl verify -CAfile root/cert.pem -untrusted "$(json "$WORK/.out" .chain)" "$CERT2"
[ -f "$CERT1" ] && pass || fail "the previous certificate was removed right after renewal"
contains hook.out "$CERT2" "hook saw the new certificate"
same "service recorded a second certificate for dev-001" \
    "$(sqlite3 data/enroll.db "select count(*) from certificate where registration_id='dev-001'")" "2"
same "a run's --renew-before is not saved" "$(jq -r .renew_before_seconds s1/identity.json)" "0"
check "run --once right after a forced renewal" "$DEVICE" device run --store s1 --once --json
same "a one-off --renew-before does not make later runs renew" "$(json "$WORK/.out" .renewed)" "false"
check "run --once, rotate the key" "$DEVICE" device run --store s1 --once --renew-before P31D --rotate-key --json
same "rotated: generation 3" "$(json "$WORK/.out" .generation)" "3"
same "rotated: key in the store" "$(json "$WORK/.out" .key)" "$(cd s1 && pwd)/key-3.pem"
expect_exit 1 "rotated: not the old key" "$ENROLL" match dev1.key "$(json "$WORK/.out" .certificate)"
expect_exit 0 "rotated: the new key" "$ENROLL" match s1/key-3.pem s1/cert-3.pem
same "rotated key 0600" "$(stat -c %a s1/key-3.pem)" "600"
[ ! -f "$CERT1" ] && pass || fail "generation 1 files outlived two renewals"

# ---- the store spelled differently: a trailing slash, a symlink. Pruning
# must still recognise the current (rotated) key.
check "store spelling: provision" "$DEVICE" device provision "${COMMON[@]}" --registration-id dev-006 \
    --group-key-file group.key --key d6.key --store s6
check "store spelling: rotate" "$DEVICE" device run --store "$WORK/s6" --once --renew-before P31D --rotate-key --json
same "store spelling: rotated key" "$(json "$WORK/.out" .key)" "$WORK/s6/key-2.pem"
ln -s s6 s6link
check "store spelling: renew with a trailing slash" "$DEVICE" device run --store "$WORK/s6/" --once --renew-before P31D
check "store spelling: renew through a symlink" "$DEVICE" device run --store s6link/ --once --renew-before P31D --json
same "store spelling: generation 4" "$(json "$WORK/.out" .generation)" "4"
[ -f s6/key-2.pem ] && pass || fail "store spelling: pruning deleted the current key"
expect_exit 0 "store spelling: the current key matches the current certificate" "$ENROLL" match s6/key-2.pem \
    "s6/$(jq -r .cert s6/identity.json)"
check "store spelling: the next renewal" "$DEVICE" device run --store "$WORK/s6//" --once --renew-before P31D
last_register dev-006 > reg.line
contains reg.line '"client_cert":true' "store spelling: still renews over mTLS with the kept key"

# ---- crash between writing the new generation and switching to it
BEFORE=$(jq -r .serial s1/identity.json)
ENROLL_DEVICE_TEST_CRASH=before-commit "$DEVICE" device run --store s1 --once --renew-before P31D >/dev/null 2>&1
same "crash: the process died at the hook" "$?" "70"
[ -f s1/cert-4.pem ] && pass || fail "crash: the new generation was not written before the crash"
same "crash: identity still names the old certificate" "$(jq -r .serial s1/identity.json)" "$BEFORE"
check "crash: status still works" "$DEVICE" device status --store s1 --json
expect_exit 0 "crash: the current identity verifies" openssl verify -CAfile root/cert.pem -untrusted \
    "$(json "$WORK/.out" .chain)" "$(json "$WORK/.out" .certificate)"
check "crash: next renewal succeeds over the leftovers" "$DEVICE" device run --store s1 --once --renew-before P31D --json
same "crash: generation 4 now" "$(json "$WORK/.out" .generation)" "4"
expect_exit 0 "crash: new identity verifies" openssl verify -CAfile root/cert.pem -untrusted \
    "$(json "$WORK/.out" .chain)" "$(json "$WORK/.out" .certificate)"
# A re-provisioning with other trust anchors that dies before the switch:
# the current identity's anchors must be untouched.
cat root/cert.pem boot-root/cert.pem > two-roots.pem
ENROLL_DEVICE_TEST_CRASH=before-commit "$DEVICE" device provision "${COMMON[@]}" --trust two-roots.pem \
    --registration-id dev-006 --group-key-file group.key --key d6.key --store s6 >/dev/null 2>&1
same "crash: re-provisioning died at the hook" "$?" "70"
expect_exit 0 "crash: the anchors the identity uses are still the old ones" \
    cmp root/cert.pem "s6/$(jq -r '.service_trust // "service-trust.pem"' s6/identity.json)"
check "crash: the agent still renews" "$DEVICE" device run --store s6 --once --renew-before P31D --json
same "crash: renewed" "$(json "$WORK/.out" .renewed)" "true"

# ---- the service revokes the operational certificate: enrolld refuses it
# (401), the device falls back to its bootstrap credential and succeeds.
REVOKED=$(jq -r .serial s1/identity.json)
check "revoke the operational certificate" "$ENROLL" admin cert revoke --serial "$REVOKED" --reason superseded --data data
check "renewal after revocation" "$DEVICE" device run --store s1 --once --renew-before P31D --json
same "revoked: renewed" "$(json "$WORK/.out" .renewed)" "true"
contains "$WORK/.err" "using the bootstrap credential" "revoked: fell back to the bootstrap credential"
contains "$WORK/.err" "401" "revoked: the refusal was a 401"
# ---- a store is one device's: another registration's, or a directory of other files, is refused
expect_exit 1 "another registration's store is refused" "$DEVICE" device provision "${COMMON[@]}" --registration-id dev-0s1 \
    --group-key-file group.key --key dev0s1.key --store s1
contains "$WORK/.err" "holds the identity of registration 'dev-001', not 'dev-0s1'" "says whose store it is"
same "the store still holds dev-001" "$(jq -r .registration_id s1/identity.json)" "dev-001"
cp -a s1 s1case
check "the same id in another case is the same registration (its store, its certificate)" "$DEVICE" device provision \
    "${COMMON[@]}" --registration-id DEV-001 --group-key-file group.key --key dev1.key --store s1case --json
same "another case: the leaf names the id (any case)" \
    "$(openssl x509 -in "$(json "$WORK/.out" .certificate)" -noout -subject | tr A-Z a-z)" "subject=cn = dev-001"
check "another case: it renews (the leaf's CN is compared without case)" "$DEVICE" device run --store s1case --once \
    --renew-before P31D --json
same "another case: renewed" "$(json "$WORK/.out" .renewed)" "true"
mkdir -m 700 notastore; : > notastore/photo.jpg
expect_exit 1 "a directory of other files is refused" "$DEVICE" device provision "${COMMON[@]}" --registration-id dev-0s2 \
    --group-key-file group.key --key dev0s2.key --store notastore
contains "$WORK/.err" "is not a device store (it holds 'photo.jpg'" "names the stray file"
check "--force uses it anyway" "$DEVICE" device provision "${COMMON[@]}" --registration-id dev-0s2 \
    --group-key-file group.key --key dev0s2.key --store notastore --force --json
same "--force: provisioned" "$(json "$WORK/.out" .provisioned)" "true"
mkdir -m 700 keyfirst
"$ENROLL" key new --out keyfirst/device.key >/dev/null
check "a store holding only the device's own key is fine" "$DEVICE" device provision "${COMMON[@]}" \
    --registration-id dev-0s3 --group-key-file group.key --key keyfirst/device.key --store keyfirst --json

grep -F '"route":"register","registration_id":"dev-001"' enrolld.log | tail -2 > reg.lines
contains reg.lines '"status":401' "revoked: enrolld refused the operational certificate"
[ "$(json "$WORK/.out" .serial)" != "$REVOKED" ] && pass || fail "revoked: no new serial"

# ---- service down: retries, then recovers when it comes back on the same port
kill -TERM "$EPID"; wait "$EPID" 2>/dev/null
expect_exit 3 "service down: gives up after the retries" "$DEVICE" device provision "${COMMON[@]}" --retries 2 \
    --registration-id dev-down --group-key-file group.key --key down.key --store s5
contains "$WORK/.err" "retrying" "service down: retried"
same "service down: failure recorded" "$(jq -r .last_result s5/identity.json)" "error"
"$DEVICE" device provision "${COMMON[@]}" --retries 8 --registration-id dev-down --group-key-file group.key \
    --key down.key --store s5 --json > down.out 2> down.err &
DPID=$!
sleep 2
start_enrolld "$PORT"
wait "$DPID"
same "service back: provisioning succeeded after retries" "$?" "0"
contains down.err "retrying" "service back: it had to retry"
same "service back: provisioned" "$(jq -r .provisioned down.out)" "true"

# ---- the agent stops cleanly on SIGTERM
"$DEVICE" device run --store s1 --interval 3600 2> agent.err &
APID=$!
sleep 1
kill -TERM "$APID"
wait "$APID"
same "agent: exit 0 on SIGTERM" "$?" "0"
contains agent.err "stopping on signal" "agent: says why it stopped"

# ---- the hook: default SIGPIPE (the agent ignores it, the hook's pipelines
# must not), and a SIGTERM while it runs does not abandon it
rm -f hook.started hook2.out yes.err
"$DEVICE" device run --store s1 --renew-before P31D --interval 3600 \
    --hook 'touch hook.started; yes 2> yes.err | head -n1 > /dev/null; sleep 1; echo done > hook2.out' 2> agent2.err &
APID=$!
for _ in $(seq 1 400); do [ -f hook.started ] && break; sleep 0.05; done
kill -TERM "$APID"
wait "$APID"
same "agent: exit 0 on SIGTERM during the hook" "$?" "0"
contains agent2.err "hook finished with status 0" "agent: waited for the hook through SIGTERM"
contains hook2.out "done" "agent: the hook ran to its end"
[ ! -s yes.err ] && pass || fail "the hook ran with SIGPIPE ignored: $(cat yes.err)"
contains agent2.err "forced this renewal only" "agent: a --renew-before longer than the lifetime forced one renewal"

# ---- a store others may write to is refused
mkdir s7 && chmod 777 s7
expect_exit 1 "a world-writable store is refused" "$DEVICE" device provision "${COMMON[@]}" --registration-id dev-007 \
    --group-key-file group.key --key d7.key --store s7
contains "$WORK/.err" "writable by every user" "says why the store is refused"
[ ! -e d7.key ] && pass || fail "a key was made for a refused store"

# ---- a fake service: garbage, a certificate for another key, for another CN
cp -r s1 s1-before
# openssl s_server cannot answer a PUT with a file, so the fake is a few lines of bash around `openssl s_server -naccept 1`
serve_once() { # FILE PORT [CERT] -> background server answering one request with FILE, listening on return
  (openssl s_server -quiet -accept "127.0.0.1:$2" -naccept 1 -cert "${3:-server.pem}" -key server.key < <(sleep 1; cat "$1"; sleep 2) > /dev/null 2>&1) &
  PIDS+=("$!")
  # Listening, not a guess: a loaded machine starts s_server late.
  for _ in $(seq 1 100); do
    [ -n "$(ss -Htln "sport = :$2")" ] && return 0
    sleep 0.05
  done
  fail "serve_once: nothing listens on port $2 after 5 s"
}
fake_port=$(( PORT + 1 ))
answer() { # BODY-FILE -> fake.http
  printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$(wc -c < "$1")" > fake.http
  cat "$1" >> fake.http
}
identity_unchanged() { # WHAT
  same "$1: identity unchanged" "$(jq -r .serial s1/identity.json)" "$(jq -r .serial s1-before/identity.json)"
  expect_exit 0 "$1: the kept identity verifies" openssl verify -CAfile root/cert.pem -untrusted \
      "s1/$(jq -r .chain s1/identity.json)" "s1/$(jq -r .cert s1/identity.json)"
}
fake_run() { # -> runs one renewal against the fake
  jq --arg u "https://127.0.0.1:$fake_port" '.url = $u' s1/identity.json > s1/identity.tmp && mv s1/identity.tmp s1/identity.json
  serve_once fake.http "$fake_port"
  "$DEVICE" device run --store s1 --once --renew-before P31D --retries 1 > "$WORK/.out" 2> "$WORK/.err"
  FAKE_RC=$?
}
printf '<html><body>It works!</body></html>' > garbage.body; answer garbage.body
fake_run
same "garbage: refused" "$FAKE_RC" "3"
contains "$WORK/.err" "not a DPS registration answer" "garbage: says so"
identity_unchanged "garbage"

# A well-formed answer carrying a certificate the real CA issued for another key.
"$ENROLL" key new --out other.key >/dev/null
"$ENROLL" csr new --key other.key --dn CN=dev-001 --out other.csr 2>/dev/null
"$ENROLL" ca sign --dir devices-ca --profile device --cn dev-001 other.csr --out other.pem 2>/dev/null
mk_assigned() { # LEAF-PEM -> body
  jq -n --arg leaf "$(openssl x509 -in "$1" -outform DER | base64 -w0)" \
        --arg int "$(openssl x509 -in devices-ca/cert.pem -outform DER | base64 -w0)" \
    '{operationId: "op-1", status: "assigned", registrationState: {registrationId: "dev-001", status: "assigned",
      issuedCertificateChain: [$leaf, $int]}}'
}
mk_assigned other.pem > other.body; answer other.body
fake_run
same "another key: refused" "$FAKE_RC" "1"
contains "$WORK/.err" "another public key" "another key: says so"
identity_unchanged "another key"

"$ENROLL" csr new --key s1/key-3.pem --dn CN=dev-999 --out cn.csr 2>/dev/null
"$ENROLL" ca sign --dir devices-ca --profile device --cn dev-999 cn.csr --out cn.pem 2>/dev/null
mk_assigned cn.pem > cn.body; answer cn.body
fake_run
same "another CN: refused" "$FAKE_RC" "1"
contains "$WORK/.err" "not the registration id" "another CN: says so"
identity_unchanged "another CN"

# A service certificate naming the host only in its subject CN (no SAN):
# the host name is checked against SANs only.
"$ENROLL" csr new --key server.key --dn CN=localhost --out nosan.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server nosan.csr --out nosan.pem 2>/dev/null
if openssl x509 -in nosan.pem -noout -ext subjectAltName 2>/dev/null | grep -q DNS; then
  fail "could not make a certificate without SANs"
else
  jq --arg u "https://localhost:$fake_port" '.url = $u' s1/identity.json > s1/identity.tmp && mv s1/identity.tmp s1/identity.json
  serve_once garbage.body "$fake_port" nosan.pem
  expect_exit 1 "a service named only by its CN is not trusted" "$DEVICE" device run --store s1 --once \
      --renew-before P31D --retries 1
  contains "$WORK/.err" "not trusted" "CN only: says the service is not trusted"
fi
same "failure recorded in the store" "$(jq -r .last_result s1/identity.json)" "error"

kill -TERM "$EPID" 2>/dev/null; wait "$EPID" 2>/dev/null
# A store never provisioned: exit 3 (nothing to read, like a missing file),
# in text and JSON, so a health check can rely on the exit code.
mkdir -p never-provisioned
expect_exit 3 "status: a store never provisioned" "$DEVICE" device status --store never-provisioned
contains "$WORK/.err" "device provision" "status: never provisioned says what to run"
expect_exit 3 "status --json: a store never provisioned" "$DEVICE" device status --store never-provisioned --json
same "status --json: the error is notfound" "$(json "$WORK/.out" .error.code)" "notfound"
finish
