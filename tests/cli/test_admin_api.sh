#!/usr/bin/env bash
# enrolld's admin API end to end: an admin certificate (from an admin CA of
# its own) lists, shows, creates, disables, revokes and exports a CRL over
# HTTPS with curl; device operational certificates, bootstrap certificates,
# certificates of unknown CAs, no certificate and SAS tokens are refused
# with no data, and the store is unchanged after every refusal (sqlite3).
. "$(dirname "$0")/lib.sh"
cd "$WORK"
ENROLLD=$(dirname "$ENROLL")/enrolld
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000077
API=2025-07-01-preview

leaf() { # CA-DIR CN NAME -> NAME.key NAME.pem (device profile: clientAuth)
  "$ENROLL" key new --out "$3.key" >/dev/null &&
  "$ENROLL" csr new --key "$3.key" --dn "CN=$2" --out "$3.csr" 2>/dev/null &&
  "$ENROLL" ca sign --dir "$1" --profile device --cn "$2" "$3.csr" --out "$3.pem" 2>/dev/null
}

# ---- PKI: devices, bootstrap, the admin CA apart, a rogue and an impostor -------
"$ENROLL" ca init --dir root --subject '/O=Acme/CN=Acme Root' >/dev/null
"$ENROLL" ca init --dir devices-ca --parent root --subject '/O=Acme/CN=Acme Devices' >/dev/null
"$ENROLL" key new --out server.key >/dev/null
"$ENROLL" csr new --key server.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server server.csr --out server.pem 2>/dev/null
check "admin CA" "$ENROLL" ca init --dir admin-ca --subject '/O=Acme/CN=Acme Admin CA'
check "admin certificate" leaf admin-ca ops admin
check "a CA with the admin CA's name, another key" "$ENROLL" ca init --dir impostor-ca --subject '/O=Acme/CN=Acme Admin CA'
check "impostor certificate" leaf impostor-ca ops impostor
check "rogue CA" "$ENROLL" ca init --dir rogue-ca --subject '/CN=Rogue'
check "rogue certificate" leaf rogue-ca ops rogue
"$ENROLL" ca init --dir boot-ca --subject '/CN=Bootstrap CA' >/dev/null
check "bootstrap certificate" leaf boot-ca dev-x1 boot

A() { "$ENROLL" admin "$@" --data data; }
check "store: issuing CA" A ca add devices --ca-dir devices-ca
check "store: policy" A policy new p30 --validity P30D --renewal-window P7D --ca devices
check "store: group" A group new fleet --policy p30 --symmetric --hub mqtt.example:8883 --json
GROUP_KEY=$(json "$WORK/.out" .primary_key)
check "store: bootstrap CA" A ca upload boot --cert boot-ca/cert.pem --json
CODE=$(json "$WORK/.out" .verification_code)
leaf boot-ca "$CODE" ver
check "store: bootstrap CA verified" A ca verify boot --cert ver.pem
check "store: x509 group" A group new xfleet --policy p30 --x509-ca boot

start() { # CONFIG LOG -> PORT (enrolld in the background)
  "$ENROLLD" --config "$1" 2> "$2" &
  PIDS+=("$!"); LAST_PID=$!
  for _ in $(seq 1 400); do PORT=$(grep -o '"port":[0-9]*' "$2" | head -1 | cut -d: -f2); [ -n "$PORT" ] && break; sleep 0.05; done
}
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE", "workers": 2,
 "tls": {"cert": "server.pem", "key": "server.key"}, "admin": {"client_ca": "admin-ca/cert.pem"}}
JSON
start enrolld.json enrolld.log
PID=$LAST_PID
URL=https://127.0.0.1:$PORT
[ -n "$PORT" ] && pass || { fail "enrolld did not start"; cat enrolld.log >&2; finish; exit 1; }

# ---- a device with an operational certificate (SAS registration) ----------------
device_key() { hmac_b64 "$1" "$2"; }
sas() { # DEVICE_KEY RID
  local se=$(( $(date +%s) + 3600 )) sr="$SCOPE%2Fregistrations%2F$2" sig
  sig=$(hmac_b64 "$1" "$sr"$'\n'"$se")
  sig=$(printf '%s' "$sig" | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')
  printf 'SharedAccessSignature sr=%s&sig=%s&se=%s&skn=registration' "$sr" "$sig" "$se"
}
DEV_KEY=$(device_key "$GROUP_KEY" dev-001)
SAS=$(sas "$DEV_KEY" dev-001)
"$ENROLL" key new --out dev.key >/dev/null
"$ENROLL" csr new --key dev.key --dn CN=dev-001 --format b64 --out - 2>/dev/null > csr.b64
jq -n --arg csr "$(cat csr.b64)" '{registrationId: "dev-001", csr: $csr}' > body.json
code=$(curl -s --max-time 30 --cacert root/cert.pem -o reg.json -w '%{http_code}' -X PUT -H "Authorization: $SAS" \
  -H 'Content-Type: application/json' --data-binary @body.json "$URL/$SCOPE/registrations/dev-001/register?api-version=$API")
same "device registers" "$code" "200"
json reg.json '.registrationState.issuedCertificateChain[0]' | base64 -d | openssl x509 -inform DER -out device.pem
DEV_SERIAL=$(openssl x509 -in device.pem -noout -serial | cut -d= -f2)

# as CERT|- KEY|- METHOD PATH [BODY] [EXTRA-CURL-ARGS...] -> status; body in $WORK/.out
as() {
  local cert=$1 key=$2 method=$3 path=$4 body=${5:-}; shift 5 2>/dev/null || shift $#
  local args=(-s --max-time 30 --cacert root/cert.pem -o "$WORK/.out" -w '%{http_code}' -X "$method")
  [ "$cert" != - ] && args+=(--cert "$cert" --key "$key")
  [ -n "$body" ] && args+=(--data-binary "$body")
  curl "${args[@]}" "$@" "$URL$path"
}
api() { as admin.pem admin.key "$@"; }
# The store minus what registrations and admin reads add to the audit trail.
snap() {
  sqlite3 data/enroll.db "SELECT * FROM ca; SELECT * FROM credential_policy; SELECT * FROM enrollment_group;
    SELECT * FROM individual_enrollment; SELECT * FROM registration; SELECT * FROM certificate;
    SELECT * FROM operation; SELECT COUNT(*) FROM audit_event" | sha256sum
}

# ---- the registration API does not take the admin certificate as a device's -------
code=$(curl -s --max-time 30 --cacert root/cert.pem --cert admin.pem --key admin.key -o "$WORK/.out" -w '%{http_code}' \
  -X PUT -H 'Content-Type: application/json' --data-binary @body.json "$URL/$SCOPE/registrations/ops/register?api-version=$API")
same "registration API: the admin certificate is no device credential" "$code" "401"
same "registration API: a DPS error" "$(json "$WORK/.out" .errorCode | cut -c1-3)" "401"
code=$(curl -s --max-time 30 --cacert root/cert.pem --cert admin.pem --key admin.key -o "$WORK/.out" -w '%{http_code}' \
  -X PUT -H 'Content-Type: application/json' --data-binary @body.json "$URL/$SCOPE/registrations/dev-001/register?api-version=$API")
same "registration API: the admin certificate cannot act for dev-001" "$code" "401"

# ---- refusals: every credential that is not an admin's ---------------------------
# The registration API's refusals above reach the audit trail in enrolld's
# next batch (about a second): let it land before the snapshot.
sleep 2.5
BEFORE=$(snap)
refused() { # WHAT WANT-STATUS CERT KEY [EXTRA-CURL-ARGS...]
  local what=$1 want=$2 cert=$3 key=$4; shift 4
  for req in "GET /admin/v1/group/list" "POST /admin/v1/key/show {\"group\":\"fleet\"}" \
             "POST /admin/v1/group/new {\"id\":\"evil\",\"policy\":\"p30\",\"symmetric\":true}" \
             "POST /admin/v1/registration/revoke {\"id\":\"dev-001\",\"reason\":\"keyCompromise\"}" \
             "GET /admin/v1/no/such" "GET /admin"; do
    set -- "$@"
    local m=${req%% *} rest=${req#* } p b
    p=${rest%% *}; b=""; [ "$p" != "$rest" ] && b=${rest#* }
    same "$what: $m $p" "$(as "$cert" "$key" "$m" "$p" "$b" "$@")" "$want"
    lacks "$WORK/.out" "fleet" "$what: $p: no data in the body"
    lacks "$WORK/.out" "$GROUP_KEY" "$what: $p: no key in the body"
    same "$what: $p: an error object" "$(jq -r '.error | has("message")' "$WORK/.out")" "true"
  done
  same "$what: the store is unchanged" "$(snap)" "$BEFORE"
}
refused "no certificate" 401 - -
refused "a device's operational certificate" 403 device.pem dev.key
refused "a bootstrap certificate" 403 boot.pem boot.key
refused "a certificate from an unknown CA" 403 rogue.pem rogue.key
refused "a certificate from a CA with the admin CA's name" 403 impostor.pem impostor.key
refused "a server certificate" 403 server.pem server.key
refused "a SAS token" 401 - - -H "Authorization: $SAS"
refused "a SAS token with an admin certificate" 401 admin.pem admin.key -H "Authorization: $SAS"
contains "$WORK/.out" "Authorization" "SAS refusal: says why"

# ---- bad admin requests: 400 with a message, nothing changed -------------------------
bad() { # WHAT PATH BODY NEEDLE [WANT]
  same "bad input: $1" "$(api POST "$2" "$3")" "${5:-400}"
  contains "$WORK/.out" "$4" "bad input: $1: message"
}
bad "not JSON" /admin/v1/group/list 'not json' "not JSON"
bad "an array" /admin/v1/group/list '[]' "JSON object"
bad "trailing garbage" /admin/v1/group/show '{"id":"fleet"} x' "not JSON"
bad "a duplicate key" /admin/v1/group/show '{"id":"fleet","id":"xfleet"}' "duplicate"
bad "a number for a string" /admin/v1/group/show '{"id":5}' "id: must be a string"
bad "an unknown argument" /admin/v1/group/list '{"all":true}' "unknown argument 'all'"
bad "a missing argument" /admin/v1/group/show '{}' "id: required"
bad "an empty string" /admin/v1/group/show '{"id":""}' "must not be empty"
bad "a NUL in a string" /admin/v1/group/show '{"id":"fl\u0000eet"}' "NUL"
bad "a string for a boolean" /admin/v1/group/new '{"id":"g2","policy":"p30","symmetric":"yes"}' "true or false"
bad "no attestation" /admin/v1/group/new '{"id":"g2","policy":"p30"}' "choose the attestation"
bad "a bad id" /admin/v1/group/new '{"id":"g 2","policy":"p30","symmetric":true}' "must be 1 to 128"
bad "a bad hub" /admin/v1/group/new '{"id":"g2","policy":"p30","symmetric":true,"hub":"h:99999"}' "hub:"
bad "x509_ca not a list" /admin/v1/group/new '{"id":"g2","policy":"p30","x509_ca":"boot"}' "x509_ca"
bad "a bad duration" /admin/v1/cert/list '{"expiring":"soon"}' "expiring"
bad "a bad serial" /admin/v1/cert/revoke '{"serial":"xyz","reason":"superseded"}' "serial:"
bad "a bad reason" /admin/v1/cert/revoke '{"serial":"01","reason":"because"}' "reason:"
bad "a bad status" /admin/v1/registration/list '{"status":"sleeping"}' "status:"
bad "a relative CA directory" /admin/v1/ca/add '{"name":"x","ca_dir":"devices-ca"}' "absolute"
# A directory that is not a CA: the caller's to fix (422), not a store that is busy (503).
bad "a directory that is not a CA" /admin/v1/ca/add "{\"name\":\"x\",\"ca_dir\":\"$WORK\"}" "ca.json" 422
bad "a certificate that is not one" /admin/v1/ca/upload '{"name":"x","cert":"hello"}' "cert"
bad "deep nesting" /admin/v1/group/list "$(printf '[%.0s' $(seq 1 3000))" "not JSON"
head -c 40000 /dev/zero | tr '\0' ' ' > big.json; printf '{}' >> big.json
same "bad input: a body over the admin limit" "$(api POST /admin/v1/group/list @big.json)" "400"
contains "$WORK/.out" "larger than" "oversized body: message"
head -c 100000 /dev/zero | tr '\0' ' ' > huge.json
same "bad input: a body over the server limit" "$(api POST /admin/v1/group/list @huge.json)" "413"
same "a GET with a body" "$(api GET /admin/v1/group/list '{}')" "400"
same "GET for a change" "$(api GET /admin/v1/group/new)" "405"
same "PUT" "$(api PUT /admin/v1/group/list '{}')" "405"
same "an unknown route" "$(api POST /admin/v1/group/frob '{}')" "404"
same "an unknown noun" "$(api POST /admin/v1/crl/export '{}')" "404"
same "above the routes" "$(api GET /admin/v1)" "404"
same "bad input changes nothing" "$(snap)" "$BEFORE"

# ---- what an admin may do ------------------------------------------------------------
same "group list" "$(api GET /admin/v1/group/list)" "200"
same "group list: both groups" "$(json "$WORK/.out" '[.[].group_id] | join(",")')" "fleet,xfleet"
lacks "$WORK/.out" "$GROUP_KEY" "group list: no keys"
same "group list by POST" "$(api POST /admin/v1/group/list)" "200"
same "group show" "$(api POST /admin/v1/group/show '{"id":"FLEET"}')" "200"
same "group show: registrations" "$(json "$WORK/.out" .registrations)" "1"
same "group show: unknown" "$(api POST /admin/v1/group/show '{"id":"nope"}')" "404"
same "group show: unknown: code" "$(json "$WORK/.out" .error.code)" "notfound"
same "ca list" "$(api GET /admin/v1/ca/list)" "200"
same "ca list: names" "$(json "$WORK/.out" '[.[].name] | join(",")')" "boot,devices"
same "policy list" "$(api GET /admin/v1/policy/list)" "200"
same "policy new" "$(api POST /admin/v1/policy/new '{"name":"p7","validity":"P7D","renewal_window":"P2D","ca":"devices"}')" "200"
same "group new" "$(api POST /admin/v1/group/new '{"id":"fleet-api","policy":"p7","symmetric":true}')" "200"
NEW_KEY=$(json "$WORK/.out" .primary_key)
same "group new: a 32-byte key" "$(printf '%s' "$NEW_KEY" | base64 -d | wc -c)" "32"
same "group new: in the store" "$(sqlite3 data/enroll.db "SELECT policy, enabled FROM enrollment_group WHERE group_id = 'fleet-api'")" "p7|1"
same "group new: taken" "$(api POST /admin/v1/group/new '{"id":"fleet-api","policy":"p7","symmetric":true}')" "409"
same "group new: unknown policy" "$(api POST /admin/v1/group/new '{"id":"g3","policy":"nope","symmetric":true}')" "404"
same "group disable" "$(api POST /admin/v1/group/disable '{"id":"fleet-api"}')" "200"
same "group disable: in the store" "$(sqlite3 data/enroll.db "SELECT enabled FROM enrollment_group WHERE group_id = 'fleet-api'")" "0"
jq -n --rawfile pem rogue-ca/cert.pem '{name: "rogue", cert: $pem}' > upload.json
same "ca upload: the certificate in the request" "$(api POST /admin/v1/ca/upload @upload.json)" "200"
same "ca upload: unverified" "$(json "$WORK/.out" .verified)" "false"
jq -n --rawfile pem device.pem '{id: "solo-9", policy: "p30", x509_cert: $pem}' > individual.json
same "individual new --x509-cert in the request" "$(api POST /admin/v1/individual/new @individual.json)" "200"
same "individual new: the device's certificate" "$(json "$WORK/.out" '.certificates[0].subject')" "CN=dev-001"
same "individual list" "$(api GET /admin/v1/individual/list)" "200"
same "registration list" "$(api GET /admin/v1/registration/list)" "200"
same "registration list: dev-001" "$(json "$WORK/.out" '.[0].registration_id')" "dev-001"
same "registration show" "$(api POST /admin/v1/registration/show '{"id":"dev-001"}')" "200"
same "registration show: the certificate" "$(json "$WORK/.out" '.certificates[0].serial')" "$DEV_SERIAL"
same "registration disable" "$(api POST /admin/v1/registration/disable '{"id":"dev-001"}')" "200"
same "registration disable: in the store" "$(sqlite3 data/enroll.db "SELECT status FROM registration WHERE registration_id = 'dev-001'")" "disabled"
same "registration enable" "$(api POST /admin/v1/registration/enable '{"id":"dev-001"}')" "200"
same "registration enable: in the store" "$(sqlite3 data/enroll.db "SELECT status FROM registration WHERE registration_id = 'dev-001'")" "assigned"
same "cert list --expiring" "$(api POST /admin/v1/cert/list '{"expiring":"P60D"}')" "200"
same "cert list --expiring: the device's" "$(json "$WORK/.out" '[.[].serial] | join(",")')" "$DEV_SERIAL"
same "cert revoke" "$(api POST /admin/v1/cert/revoke "{\"serial\":\"$DEV_SERIAL\",\"reason\":\"keyCompromise\"}")" "200"
same "cert revoke: in the store" "$(sqlite3 data/enroll.db "SELECT revoked, revocation_reason FROM certificate WHERE serial = '$DEV_SERIAL'")" "1|1"
same "cert revoke: twice" "$(api POST /admin/v1/cert/revoke "{\"serial\":\"$DEV_SERIAL\",\"reason\":\"keyCompromise\"}")" "409"
same "cert list --revoked" "$(api POST /admin/v1/cert/list '{"revoked":true}')" "200"
same "cert list --revoked: one" "$(json "$WORK/.out" 'length')" "1"
same "registration revoke" "$(api POST /admin/v1/registration/revoke '{"id":"dev-001","reason":"superseded"}')" "200"
same "registration revoke: nothing left" "$(json "$WORK/.out" '.revoked | length')" "0"
same "crl" "$(api POST /admin/v1/crl '{"ca":"devices","next_update":"P1D"}')" "200"
json "$WORK/.out" .crl_pem > devices.crl
same "crl: one revoked" "$(json "$WORK/.out" .revoked)" "1"
check "crl: signed by the issuing CA" openssl crl -in devices.crl -CAfile devices-ca/cert.pem -verify -noout
expect_exit 2 "crl: openssl verify -crl_check refuses the revoked device certificate" \
  openssl verify -crl_check -CRLfile devices.crl -CAfile root/cert.pem -untrusted devices-ca/cert.pem device.pem
grep -q "certificate revoked" "$WORK/.out" "$WORK/.err" && pass || fail "crl: not refused as revoked"
same "crl of a bootstrap CA" "$(api POST /admin/v1/crl '{"ca":"boot"}')" "422"
same "key show" "$(api POST /admin/v1/key/show '{"group":"fleet"}')" "200"
same "key show: the key" "$(json "$WORK/.out" .primary_key)" "$GROUP_KEY"
same "key derive" "$(api POST /admin/v1/key/derive '{"group":"fleet","registration_id":"dev-005"}')" "200"
DK5=$(json "$WORK/.out" .device_key)
same "key derive: HMAC-SHA256(group key, id)" "$DK5" "$(device_key "$GROUP_KEY" dev-005)"
same "audit list" "$(api POST /admin/v1/audit/list '{"registration":"dev-001"}')" "200"
contains "$WORK/.out" "admin.registration.disable" "audit: the API's changes"
same "audit: the admin certificate is the actor" \
  "$(sqlite3 data/enroll.db "SELECT COUNT(*) FROM audit_event WHERE kind = 'admin.group.create' AND detail LIKE '%(admin API, CN=ops)'")" "1"
same "no store change by refusals or bad input" \
  "$(sqlite3 data/enroll.db "SELECT COUNT(*) FROM enrollment_group WHERE group_id = 'evil'")" "0"

# ---- enroll admin --url: the same commands through the API ------------------------------
R() { "$ENROLL" admin "$@" --url "$URL" --admin-cert admin.pem --admin-key admin.key --trust root/cert.pem; }
rrun() { local want=$1 what=$2; shift 2; expect_exit "$want" "--url: $what" R "$@"; }
rrun 0 "group list --json" group list --json
same "--url: group list" "$(json "$WORK/.out" '[.[].group_id] | join(",")')" "fleet,xfleet,fleet-api"
"$ENROLL" admin group list --data data --json > local.json
same "--url: the same answer as --data" "$(jq -S 'map(del(.updated_at))' "$WORK/.out")" "$(jq -S 'map(del(.updated_at))' local.json)"
rrun 0 "group show (text)" group show fleet
contains "$WORK/.out" "Enabled:     yes" "--url: text output"
rrun 0 "group new" group new fleet-url --policy p30 --symmetric --json
same "--url: group new in the store" "$(sqlite3 data/enroll.db "SELECT COUNT(*) FROM enrollment_group WHERE group_id = 'fleet-url'")" "1"
rrun 1 "group new: taken" group new fleet-url --policy p30 --symmetric
contains "$WORK/.err" "exists already" "--url: the service's message"
rrun 1 "group show: unknown" group show nope
rrun 2 "policy new: a bad duration names the option" policy new bad --validity P30X --renewal-window P7D --ca devices
contains "$WORK/.err" "--validity" "--url: usage errors name the option"
rrun 0 "ca upload --cert FILE (sent in the request)" ca upload impostor --cert impostor-ca/cert.pem --json
same "--url: ca upload" "$(json "$WORK/.out" .verified)" "false"
rrun 0 "individual new --x509-cert FILE" individual new dev-url --policy p30 --x509-cert boot.pem --json
same "--url: the device certificate" "$(json "$WORK/.out" '.certificates[0].subject')" "CN=dev-x1"
rrun 0 "key derive" key derive --group fleet --registration-id dev-006
same "--url: key derive" "$(cat "$WORK/.out")" "$(device_key "$GROUP_KEY" dev-006)"
rrun 0 "registration disable" registration disable dev-001
contains "$WORK/.out" "disabled" "--url: registration disable"
rrun 0 "registration enable" registration enable dev-001
rrun 0 "crl --out" crl --ca devices --out url.crl
check "--url: the CRL verifies" openssl crl -in url.crl -CAfile devices-ca/cert.pem -verify -noout
rrun 0 "audit list" audit list --registration dev-001 --json
expect_exit 1 "--url: a device certificate is refused" "$ENROLL" admin group list --url "$URL" \
  --admin-cert device.pem --admin-key dev.key --trust root/cert.pem
contains "$WORK/.err" "refused the admin credential (HTTP 403)" "--url: refusal message"
lacks "$WORK/.out" "fleet" "--url: refusal: no data"
expect_exit 1 "--url: a server we do not trust" "$ENROLL" admin group list --url "$URL" \
  --admin-cert admin.pem --admin-key admin.key --trust admin-ca/cert.pem
lacks "$WORK/.out" "fleet" "--url: untrusted server: no data"
expect_exit 0 "--url: by host name" "$ENROLL" admin group list --url "https://localhost:$PORT" \
  --admin-cert admin.pem --admin-key admin.key --trust root/cert.pem
expect_exit 2 "--url: no admin key" "$ENROLL" admin group list --url "$URL" --admin-cert admin.pem --trust root/cert.pem
expect_exit 2 "--url: no --trust" "$ENROLL" admin group list --url "$URL" --admin-cert admin.pem --admin-key admin.key
expect_exit 2 "--url and --data" "$ENROLL" admin group list --url "$URL" --data data --admin-cert admin.pem --admin-key admin.key --trust root/cert.pem
expect_exit 2 "--url: not https" "$ENROLL" admin group list --url "http://127.0.0.1:$PORT" --admin-cert admin.pem --admin-key admin.key --trust root/cert.pem
expect_exit 3 "--url: nothing listening" "$ENROLL" admin group list --url "https://127.0.0.1:1" --admin-cert admin.pem --admin-key admin.key --trust root/cert.pem

# ---- the request log ------------------------------------------------------------------
contains enrolld.log '"route":"admin.group.list"' "log: the admin route"
contains enrolld.log '"route":"admin","registration_id":"","status":403' "log: refusals"
for secret in "$GROUP_KEY" "$NEW_KEY" "$DK5" "SharedAccessSignature" "BEGIN"; do
  lacks enrolld.log "$secret" "the log never holds keys, tokens or certificates"
done
same "integrity" "$(sqlite3 data/enroll.db 'PRAGMA integrity_check')" "ok"
kill -TERM "$PID"; wait "$PID"
same "enrolld stops cleanly (no leak reports under ASan)" "$?" "0"

# ---- no admin section: no admin API ------------------------------------------------------
cat > plain.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE", "workers": 1,
 "tls": {"cert": "server.pem", "key": "server.key"}}
JSON
start plain.json plain.log
URL=https://127.0.0.1:$PORT
same "no admin section: 404" "$(api GET /admin/v1/group/list)" "404"
lacks "$WORK/.out" "fleet" "no admin section: no data"
kill -TERM "$LAST_PID"; wait "$LAST_PID"
same "enrolld without admin stops cleanly" "$?" "0"

# ---- an admin CA that signs devices is refused at start ---------------------------------------
sed 's|admin-ca/cert.pem|root/cert.pem|' enrolld.json > shared.json
expect_exit 3 "admin.client_ca = the devices' root: enrolld refuses to start" "$ENROLLD" --config shared.json
contains "$WORK/.err" "separate admin CA" "shared admin CA: message"
finish
