#!/usr/bin/env bash
# Issue 10's trust promises, end to end against enrolld on 127.0.0.1 (curl
# with SAS tokens computed here by openssl, judged by openssl and sqlite3):
#  1. a CA directory attached to the store has one record: `enroll ca list |
#     revoke | crl --dir` see what enrolld issued and revoked, every CRL lists
#     every revocation, CRL numbers only grow; a key revoked for
#     keyCompromise is refused for good (400011);
#  2. blocklists block: an individual enrollment alone decides for its id
#     (disabled: 403001, whatever the credential), a registration stays with
#     its enrollment until `enroll admin registration move`, ids differing
#     in case are one registration with one key, keys rotate without
#     downtime, SAS tokens live at most limits.sas_token_max_lifetime_seconds;
#  3. refusals are answered by their typed reason (a SAN DNS:turkey.example
#     is 400009, not "key not allowed").
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000042
API=2025-07-01-preview

service_pki
service_store
GROUP_KEY=$(cat group.key)
check "admin: a second symmetric group" "$ENROLL" admin group new other --policy p30 --symmetric --data data --json
OTHER_KEY=$(json "$WORK/.out" .primary_key)
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 1}
JSON
enrolld_start enrolld.json enrolld.log
[ -n "$PORT" ] && pass || { fail "enrolld did not start"; cat enrolld.log >&2; finish; exit 1; }
URL=https://127.0.0.1:$PORT

device_key() { hmac_b64 "$1" "$2"; } # KEY RID: the device key over RID as given (lib.sh, openssl)
sas() { # DEVICE_KEY RID [EXPIRY]
  local se=${3:-$(( $(date +%s) + 3600 ))} sr="$SCOPE%2Fregistrations%2F$2" sig
  sig=$(hmac_b64 "$1" "$sr"$'\n'"$se")
  sig=$(printf '%s' "$sig" | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')
  printf 'SharedAccessSignature sr=%s&sig=%s&se=%s&skn=registration' "$sr" "$sig" "$se"
}
body() { # RID KEYFILE [SAN] -> body.json (CN = RID)
  if [ -n "${3:-}" ]; then
    "$ENROLL" csr new --key "$2" --dn "CN=$1" --san "$3" --format b64 --out csr.b64 --force 2>/dev/null
  else
    "$ENROLL" csr new --key "$2" --dn "CN=$1" --format b64 --out csr.b64 --force 2>/dev/null
  fi
  [ -s csr.b64 ] || fail "body: no CSR for $1"
  jq -n --arg id "$1" --arg csr "$(cat csr.b64)" '{registrationId: $id, csr: $csr}' > body.json
}
# register NAME WANT-HTTP WANT-CODE RID AUTH: PUT body.json; WANT-CODE 0 means success.
register() {
  local got
  got=$(curl -s --max-time 30 --cacert root/cert.pem -o "$WORK/.out" -w '%{http_code}' -X PUT \
    -H 'Content-Type: application/json' -H "Authorization: $5" --data-binary @body.json \
    "$URL/$SCOPE/registrations/$4/register?api-version=$API")
  same "$1: HTTP status" "$got" "$2"
  if [ "$3" != 0 ]; then same "$1: errorCode" "$(json "$WORK/.out" .errorCode)" "$3"; fi
}
leaf_of_answer() { # FILE: the issued leaf as PEM
  json "$WORK/.out" '.registrationState.issuedCertificateChain[0]' | base64 -d | openssl x509 -inform DER -out "$1"
  [ -s "$1" ] || fail "no certificate in the answer for $1"
}
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
sql() { sqlite3 data/enroll.db "$1"; }
admin() { "$ENROLL" admin "$@" --data data; }

for k in dev-001.key dev-002.key dev-003.key fresh.key; do "$ENROLL" key new --out "$k" >/dev/null; done

# ---- 1. one record for an attached CA ------------------------------------------------------
same "ca add left a note in the CA directory" "$(jq -r .store devices-ca/store.json)" "$(realpath data)"
same "the note names the CA" "$(jq -r .name devices-ca/store.json)" "devices"
body dev-001 dev-001.key
register "dev-001 registers" 200 0 dev-001 "$(sas "$(device_key "$GROUP_KEY" dev-001)" dev-001)"
leaf_of_answer dev-001.pem
S1=$(serial_of dev-001.pem)
expect_exit 0 "ca list --dir sees what enrolld issued" "$ENROLL" ca list --dir devices-ca --json
same "ca list: enrolld's certificate" "$(json "$WORK/.out" "[.[] | select(.serial == \"$S1\")] | length")" "1"
# A certificate the directory issued itself (enroll ca sign), beside enrolld's.
"$ENROLL" csr new --key dev-003.key --dn CN=bench-3 --out bench-3.csr 2>/dev/null
check "ca sign from the attached directory" "$ENROLL" ca sign --dir devices-ca --profile device --cn bench-3 bench-3.csr --out bench-3.pem
S3=$(serial_of bench-3.pem)
expect_exit 0 "ca list --dir, both records" "$ENROLL" ca list --dir devices-ca --json
same "ca list: both certificates" "$(json "$WORK/.out" "[.[] | select(.serial == \"$S1\" or .serial == \"$S3\")] | length")" "2"

check "admin crl (#1)" "$ENROLL" admin crl --ca devices --out admin1.crl --data data
N1=$(crl_number admin1.crl)
check "admin registration revoke dev-001, keyCompromise" "$ENROLL" admin registration revoke dev-001 --reason keyCompromise --data data --json
same "revoke: the CA directory's CRL was rewritten" "$(json "$WORK/.out" '.crls[0].ca')" "devices"
N2=$(crl_number devices-ca/crl.pem)
[ "$N2" -gt "$N1" ] && pass || fail "the CRL number did not grow after the revocation: $N1 then $N2"
openssl crl -in devices-ca/crl.pem -noout -text > dir.crl.txt
contains dir.crl.txt "$S1" "the directory's crl.pem lists the store's revocation"
check "enroll ca crl --dir (#3)" "$ENROLL" ca crl --dir devices-ca --out ca-dir.crl
N3=$(crl_number ca-dir.crl)
[ "$N3" -gt "$N2" ] && pass || fail "ca crl reused a CRL number: $N2 then $N3"
openssl crl -in ca-dir.crl -noout -text > ca-dir.crl.txt
contains ca-dir.crl.txt "$S1" "ca crl --dir lists the revocation enrolld's store holds"
contains ca-dir.crl.txt "Key Compromise" "ca crl --dir keeps the reason"
check "root CRL" "$ENROLL" ca crl --dir root --out root.crl
expect_exit 1 "enroll verify with the directory's crl.pem: revoked" "$ENROLL" verify --root root/cert.pem \
  --untrusted devices-ca/cert.pem --crl devices-ca/crl.pem --crl root.crl --purpose client --json dev-001.pem
same "verify: the reason" "$(json "$WORK/.out" .reason)" "revoked"
expect_exit 2 "openssl verify -crl_check agrees" openssl verify -crl_check -CRLfile ca-dir.crl -CAfile root/cert.pem \
  -untrusted devices-ca/cert.pem dev-001.pem
expect_exit 0 "ca list --dir shows it revoked" "$ENROLL" ca list --dir devices-ca --revoked --json
same "ca list --revoked" "$(json "$WORK/.out" "[.[] | select(.serial == \"$S1\")][0].reason")" "keyCompromise"

# enroll ca revoke --dir on a certificate enrolld issued: found in the store.
body dev-002 dev-002.key
register "dev-002 registers" 200 0 dev-002 "$(sas "$(device_key "$GROUP_KEY" dev-002)" dev-002)"
leaf_of_answer dev-002.pem
S2=$(serial_of dev-002.pem)
expect_exit 0 "ca revoke --dir revokes enrolld's certificate" "$ENROLL" ca revoke --dir devices-ca "$S2" --reason superseded
same "the store records it" "$(sql "select revoked || ':' || revocation_reason from certificate where serial = '$S2'")" "1:4"
openssl crl -in devices-ca/crl.pem -noout -text > dir.crl.txt
contains dir.crl.txt "$S2" "crl.pem lists the store's new revocation"
contains dir.crl.txt "$S1" "crl.pem still lists the earlier one"
N4=$(crl_number devices-ca/crl.pem)
[ "$N4" -gt "$N3" ] && pass || fail "CRL number after ca revoke: $N3 then $N4"
same "ca revoke is audited in the store" "$(sql "select count(*) from audit_event where kind = 'admin.cert.revoke' and detail like '%enroll ca revoke%'")" "1"
expect_exit 1 "ca revoke --dir: revoked twice" "$ENROLL" ca revoke --dir devices-ca "$S2" --reason superseded
expect_exit 1 "ca revoke --dir: a serial neither record has" "$ENROLL" ca revoke --dir devices-ca 7777 --reason superseded
contains "$WORK/.err" "neither" "unknown serial: says where it looked"

# The directory's own certificate revoked for keyCompromise: enrolld refuses its key too.
expect_exit 0 "ca revoke --dir of its own certificate, keyCompromise" "$ENROLL" ca revoke --dir devices-ca "$S3" --reason keyCompromise
check "admin crl (#5)" "$ENROLL" admin crl --ca devices --out admin5.crl --data data --json
N5=$(crl_number admin5.crl)
[ "$N5" -gt "$N4" ] && pass || fail "admin crl reused a CRL number: $N4 then $N5"
openssl crl -in admin5.crl -noout -text > admin5.txt
for s in "$S1" "$S2" "$S3"; do contains admin5.txt "$s" "admin crl lists every revocation ($s)"; done
body dev-003 dev-003.key
register "a CSR with the directory's compromised key" 400 400011 dev-003 "$(sas "$(device_key "$GROUP_KEY" dev-003)" dev-003)"
"$ENROLL" csr new --key dev-001.key --dn CN=bench-1 --out bench-1.csr 2>/dev/null
expect_exit 1 "ca sign --dir refuses a key enrolld's store blocked" "$ENROLL" ca sign --dir devices-ca --profile device \
  --cn bench-1 bench-1.csr --out bench-1.pem
contains "$WORK/.err" "keyCompromise" "ca sign: says why"
[ ! -e bench-1.pem ] && pass || fail "ca sign wrote a certificate for a compromised key"

# keyCompromise blocks the key: for the same id, another id and another group.
body dev-001 dev-001.key
register "renewal with the compromised key" 400 400011 dev-001 "$(sas "$(device_key "$GROUP_KEY" dev-001)" dev-001)"
contains "$WORK/.out" "keyCompromise" "400011: the message says why"
body dev-010 dev-001.key
register "another id, the compromised key" 400 400011 dev-010 "$(sas "$(device_key "$OTHER_KEY" dev-010)" dev-010)"
body dev-001 fresh.key
register "dev-001 with a new key" 200 0 dev-001 "$(sas "$(device_key "$GROUP_KEY" dev-001)" dev-001)"
same "nothing issued for a compromised key" "$(sql "select count(*) from certificate where registration_id = 'dev-010'")" "0"

# Attaching elsewhere is refused; the same store again is fine; a note to a
# store that is gone makes the directory's commands say where to go.
check "ca add again, same store and directory" "$ENROLL" admin ca add devices --ca-dir devices-ca --data data --json
same "ca add again: attached" "$(json "$WORK/.out" .action)" "attached"
expect_exit 1 "ca add to another store" "$ENROLL" admin ca add devices --ca-dir devices-ca --data other-data
contains "$WORK/.err" "attached to the store at" "another store: message"
"$ENROLL" ca init --dir lost-ca --parent root --subject '/O=Acme/CN=Lost' >/dev/null
check "attach lost-ca to a store" "$ENROLL" admin ca add lost --ca-dir lost-ca --data lost-data
rm -rf lost-data
expect_exit 3 "ca list --dir of a CA whose store is gone" "$ENROLL" ca list --dir lost-ca
contains "$WORK/.err" "enroll admin" "store gone: points at the right command"
[ ! -e lost-data ] && pass || fail "ca list re-created a missing store"

# ---- 2. blocklists that block ------------------------------------------------------------
# An id that never registered, blocked ahead of time.
check "individual for a blocked id" "$ENROLL" admin individual new ghost-1 --policy p30 --symmetric --data data
check "disable it" "$ENROLL" admin individual disable ghost-1 --data data
body ghost-1 fresh.key
register "blocked id with the group's key" 403 403001 ghost-1 "$(sas "$(device_key "$GROUP_KEY" ghost-1)" ghost-1)"
same "the blocked id never registered" "$(sql "select count(*) from registration where registration_id = 'ghost-1'")" "0"
# The issue's sequence: revoke, individual enrollment, disable, re-register with the group key.
check "individual for dev-002" "$ENROLL" admin individual new dev-002 --policy p30 --symmetric --data data --json
DEV2_KEY=$(json "$WORK/.out" .primary_key)
"$ENROLL" key new --out dev-002b.key >/dev/null
body dev-002 dev-002b.key
register "enabled individual: the group's key is not its credential" 401 401001 dev-002 "$(sas "$(device_key "$GROUP_KEY" dev-002)" dev-002)"
register "enabled individual: its own key" 200 0 dev-002 "$(sas "$DEV2_KEY" dev-002)"
same "the registration moved to its individual enrollment" "$(sql "select enrollment_kind from registration where registration_id = 'dev-002'")" "individual"
check "disable dev-002's individual enrollment" "$ENROLL" admin individual disable dev-002 --data data
register "disabled individual, group key" 403 403001 dev-002 "$(sas "$(device_key "$GROUP_KEY" dev-002)" dev-002)"
register "disabled individual, its own key" 403 403001 dev-002 "$(sas "$DEV2_KEY" dev-002)"

# A registration stays bound to its enrollment.
"$ENROLL" key new --out bound.key >/dev/null
body dev-020 bound.key
register "dev-020 registers in fleet" 200 0 dev-020 "$(sas "$(device_key "$GROUP_KEY" dev-020)" dev-020)"
register "another group's key cannot take dev-020" 401 401001 dev-020 "$(sas "$(device_key "$OTHER_KEY" dev-020)" dev-020)"
same "dev-020 stays in fleet" "$(sql "select enrollment_id from registration where registration_id = 'dev-020'")" "fleet"
count_certs=$(sql "select count(*) from certificate where registration_id = 'dev-020'")
same "no certificate under the other group's policy" "$count_certs" "1"
check "registration move" "$ENROLL" admin registration move dev-020 --group other --data data --json
same "move: to" "$(json "$WORK/.out" .enrollment_id)" "other"
same "move: from" "$(json "$WORK/.out" .from)" "fleet"
register "after the move: the other group's key" 200 0 dev-020 "$(sas "$(device_key "$OTHER_KEY" dev-020)" dev-020)"
register "after the move: the old group's key" 401 401001 dev-020 "$(sas "$(device_key "$GROUP_KEY" dev-020)" dev-020)"
same "the move is audited" "$(sql "select count(*) from audit_event where kind = 'admin.registration.move' and registration_id = 'dev-020'")" "1"
expect_exit 1 "move to an unknown group" "$ENROLL" admin registration move dev-020 --group nope --data data
expect_exit 2 "move needs a target" "$ENROLL" admin registration move dev-020 --data data
expect_exit 2 "move to someone else's individual enrollment" "$ENROLL" admin registration move dev-020 --individual dev-002 --data data

# One canonical id: the key is derived over the lower-case id.
check "key derive Sensor-1" "$ENROLL" admin key derive --group fleet --registration-id Sensor-1 --data data
MIXED=$(cat "$WORK/.out")
check "key derive sensor-1" "$ENROLL" admin key derive --group fleet --registration-id sensor-1 --data data
same "Sensor-1 and sensor-1 have one key" "$MIXED" "$(cat "$WORK/.out")"
same "it is HMAC over the lower-case id (openssl)" "$MIXED" "$(device_key "$GROUP_KEY" sensor-1)"
"$ENROLL" key new --out sensor.key >/dev/null
body Sensor-1 sensor.key
register "Sensor-1 with the canonical key" 200 0 Sensor-1 "$(sas "$MIXED" Sensor-1)"
if [ "$(device_key "$GROUP_KEY" Sensor-1)" != "$MIXED" ]; then
  register "a key derived over the id as sent is not another credential" 401 401001 Sensor-1 "$(sas "$(device_key "$GROUP_KEY" Sensor-1)" Sensor-1)"
fi
body sensor-1 sensor.key
register "sensor-1 is the same registration" 200 0 sensor-1 "$(sas "$MIXED" sensor-1)"
same "one registration row" "$(sql "select count(*) from registration where lower(registration_id) = 'sensor-1'")" "1"

# Key rotation without downtime.
check "key rotate" "$ENROLL" admin key rotate --group fleet --data data --json
NEW_KEY=$(json "$WORK/.out" .primary_key)
same "rotate: the old primary is the secondary" "$(json "$WORK/.out" .secondary_key)" "$GROUP_KEY"
[ "$NEW_KEY" != "$GROUP_KEY" ] && pass || fail "rotate: a new primary"
same "rotate: as long as the group's first key" "$(printf '%s' "$NEW_KEY" | base64 -d | wc -c)" "$(printf '%s' "$GROUP_KEY" | base64 -d | wc -c)"
"$ENROLL" key new --out rot.key >/dev/null
body dev-030 rot.key
register "rotated: a device still on the old key" 200 0 dev-030 "$(sas "$(device_key "$GROUP_KEY" dev-030)" dev-030)"
register "rotated: the new key" 200 0 dev-030 "$(sas "$(device_key "$NEW_KEY" dev-030)" dev-030)"
check "key rotate again" "$ENROLL" admin key rotate --group fleet --data data
register "after two rotations the first key is gone" 401 401001 dev-030 "$(sas "$(device_key "$GROUP_KEY" dev-030)" dev-030)"
same "rotations are audited" "$(sql "select count(*) from audit_event where kind = 'admin.key.rotate'")" "2"
lacks enrolld.log "$NEW_KEY" "the log never holds a key"
[ "$(sql "select count(*) from audit_event where detail like '%$NEW_KEY%'")" = 0 ] && pass || fail "a key in the audit trail"
expect_exit 2 "key rotate needs one enrollment" "$ENROLL" admin key rotate --data data
expect_exit 1 "key rotate: an unknown group" "$ENROLL" admin key rotate --group nope --data data
NEW_KEY=$(admin key show --group fleet --json | jq -r .primary_key)

# The SAS token's lifetime is bounded (default one day).
body dev-040 fresh.key
"$ENROLL" key new --out life.key >/dev/null
body dev-040 life.key
DK40=$(device_key "$NEW_KEY" dev-040)
register "a token for 100 years" 401 401003 dev-040 "$(sas "$DK40" dev-040 $(( $(date +%s) + 100 * 366 * 86400 )))"
contains "$WORK/.out" "too far in the future" "long token: the message says why"
register "a token for 2^63-1" 401 0 dev-040 "$(sas "$DK40" dev-040 9223372036854775807)"
register "a token for two days" 401 401003 dev-040 "$(sas "$DK40" dev-040 $(( $(date +%s) + 2 * 86400 )))"
register "a token for an hour" 200 0 dev-040 "$(sas "$DK40" dev-040)"

# ---- 3. refusals answered by their typed reason --------------------------------------------------
"$ENROLL" key new --out turkey.key >/dev/null
body dev-050 turkey.key DNS:turkey.example
register "a SAN the profile refuses is a lint error, whatever its words" 400 400009 dev-050 "$(sas "$(device_key "$NEW_KEY" dev-050)" dev-050)"
contains "$WORK/.out" "turkey.example" "the refused SAN is named"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null
body dev-051 rsa.key
register "a key type the policy refuses is 400008" 400 400008 dev-051 "$(sas "$(device_key "$NEW_KEY" dev-051)" dev-051)"

same "integrity" "$(sql 'PRAGMA integrity_check')" "ok"
kill -TERM "$EPID"; wait "$EPID"
finish
