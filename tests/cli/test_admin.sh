#!/usr/bin/env bash
# enroll admin against a store directly: CAs (issuing, and bootstrap with
# proof of possession), policies, groups and individual enrollments, keys,
# registrations, certificates, revocation and the audit trail. Judged with
# jq, openssl (HMAC, fingerprints) and sqlite3 (integrity, audit rows).
. "$(dirname "$0")/lib.sh"
cd "$WORK"
D="$WORK/data"
ERRORS="$WORK/errors.log"
: > "$ERRORS"

# admin ARGS...: `enroll admin ARGS... --data $D`.
admin() { "$ENROLL" admin "$@" --data "$D"; }
# run WANT WHAT ARGS...: expect_exit on `enroll admin`, keeping every stderr
# to search for keys at the end.
run() {
  local want=$1 what=$2; shift 2
  expect_exit "$want" "$what" admin "$@"
  cat "$WORK/.err" >> "$ERRORS"
}
b64len() { printf '%s' "$1" | base64 -d | wc -c; }
fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr 'A-F' 'a-f'; }

# ---- help, usage ------------------------------------------------------------
expect_exit 0 "admin --help" "$ENROLL" admin --help
contains "$WORK/.out" "Example" "admin --help has an example"
contains "$WORK/.out" "group new ID --policy NAME" "admin --help lists group new"
for noun in ca policy group individual key registration cert audit; do
  expect_exit 0 "admin $noun --help" "$ENROLL" admin $noun --help
  contains "$WORK/.out" "Examples:" "admin $noun --help has examples"
  contains "$WORK/.out" "enroll admin $noun" "admin $noun --help names its verbs"
done
expect_exit 0 "admin group new --help" "$ENROLL" admin group new --help
contains "$WORK/.out" "--x509-ca" "verb --help is the noun's help"
expect_exit 2 "admin alone" "$ENROLL" admin
expect_exit 2 "unknown noun" "$ENROLL" admin frobnicate list --data "$D"
contains "$WORK/.err" "unknown noun 'frobnicate'" "unknown noun: message"
expect_exit 2 "unknown verb" "$ENROLL" admin group frob --data "$D"
contains "$WORK/.err" "new, list, show, disable, enable" "unknown verb: lists the verbs"
expect_exit 2 "--data is required" "$ENROLL" admin group list
contains "$WORK/.err" "--data DIR" "missing --data: message"
run 2 "an option of another verb" policy list --hub x
contains "$WORK/.err" "option --hub does not apply here" "foreign option: message"

# ---- a missing store is not created by reading ------------------------------
run 3 "listing a missing store" group list
contains "$WORK/.err" "enroll.db" "missing store: names the file"
[ ! -e "$D" ] && pass || fail "reading made a data directory"

# ---- issuing CA ---------------------------------------------------------------
check "root CA" "$ENROLL" ca init --dir root --subject '/O=Acme/CN=Acme Root CA'
check "intermediate CA" "$ENROLL" ca init --dir int --parent root --subject '/O=Acme/CN=Acme Devices CA'
run 0 "ca add" ca add issuing --ca-dir int --json
same "ca add: role" "$(json "$WORK/.out" .role)" "issuing"
same "ca add: ca_dir is absolute" "$(json "$WORK/.out" .ca_dir)" "$(realpath int)"
same "ca add: subject" "$(json "$WORK/.out" .subject)" "O=Acme, CN=Acme Devices CA"
same "ca add: fingerprint" "$(json "$WORK/.out" .fingerprint_sha256)" "$(fingerprint int/cert.pem)"
same "the store is private" "$(stat -c %a "$D/enroll.db")" "600"
same "the chain holds the root" "$(sqlite3 "$D/enroll.db" "SELECT chain_pem FROM ca WHERE name = 'issuing'" | openssl x509 -noout -subject)" \
  "$(openssl x509 -in root/cert.pem -noout -subject)"
run 1 "ca add: a taken name" ca add issuing --ca-dir root
contains "$WORK/.err" "exists already" "taken CA name: message"
run 0 "ca add: the same CA again attaches its directory again" ca add issuing --ca-dir int --json
same "ca add again: attached" "$(json "$WORK/.out" .action)" "attached"
run 3 "ca add: not a CA directory" ca add other --ca-dir nowhere
contains "$WORK/.err" "enroll ca init" "not a CA directory: says what to do"
run 2 "ca add: --ca-dir is required" ca add other
run 2 "ca add: a bad name" ca add 'bad name!' --ca-dir int
ISSUER=$(admin ca list --json | jq -r '.[0].subject')

# ---- credential policies --------------------------------------------------------
run 0 "policy new" policy new p30 --validity P30D --renewal-window P7D --ca issuing --json
same "policy: validity" "$(json "$WORK/.out" .validity)" "P30D"
same "policy: window" "$(json "$WORK/.out" .renewal_window)" "P7D"
same "policy: CA" "$(json "$WORK/.out" .ca)" "issuing"
same "policy: default key types" "$(json "$WORK/.out" .key_types)" "ec-p256,ec-p384"
run 0 "policy new with key types" policy new p1y --validity P1Y --renewal-window P30D --ca issuing --key-types ec-p256,rsa-2048
run 2 "policy: bad duration" policy new bad --validity P30X --renewal-window P7D --ca issuing
contains "$WORK/.err" "--validity" "bad duration: names the option"
run 2 "policy: bad window" policy new bad --validity P30D --renewal-window soon --ca issuing
run 2 "policy: window not shorter than validity" policy new bad --validity P7D --renewal-window P7D --ca issuing
contains "$WORK/.err" "must be shorter than validity" "window >= validity: message"
run 2 "policy: bad key type" policy new bad --validity P30D --renewal-window P7D --ca issuing --key-types ec-p521
run 2 "policy: --ca is required" policy new bad --validity P30D --renewal-window P7D
run 1 "policy: unknown CA" policy new bad --validity P30D --renewal-window P7D --ca nope
contains "$WORK/.err" "no CA named 'nope'" "unknown CA: message"
contains "$WORK/.err" "enroll admin ca add" "unknown CA: says what to do"
run 1 "policy: a taken name" policy new p30 --validity P30D --renewal-window P7D --ca issuing
run 0 "policy list" policy list --json
same "policy list: two" "$(json "$WORK/.out" 'length')" "2"
same "policy list: names" "$(json "$WORK/.out" '[.[].name] | join(",")')" "p1y,p30"
run 0 "policy list text" policy list
contains "$WORK/.out" "p30" "policy list text"

# ---- a symmetric-key group ---------------------------------------------------------
run 0 "group new --symmetric" group new fleet-a --policy p30 --symmetric --hub mqtt.example.com:8883 --json
cp "$WORK/.out" group-a.json
P=$(json group-a.json .primary_key); S=$(json group-a.json .secondary_key)
same "primary key: 32 bytes" "$(b64len "$P")" "32"
same "secondary key: 32 bytes" "$(b64len "$S")" "32"
[ "$P" != "$S" ] && pass || fail "primary and secondary keys are the same"
same "group: attestation" "$(json group-a.json .attestation)" "symmetric"
same "group: hub" "$(json group-a.json .assigned_hub)" "mqtt.example.com:8883"
same "group: enabled" "$(json group-a.json .enabled)" "true"
run 0 "group new (text)" group new fleet-b --policy p30 --symmetric
contains "$WORK/.out" "Primary key:" "group new prints the keys once"
contains "$WORK/.out" "Hub:         localhost:8883" "default hub"
run 1 "group: a taken id" group new fleet-a --policy p30 --symmetric
contains "$WORK/.err" "enrollment group 'fleet-a' exists already" "taken group: message"
run 1 "group: a taken id in another case" group new FLEET-A --policy p30 --symmetric
run 1 "group: unknown policy" group new fleet-c --policy nope --symmetric
contains "$WORK/.err" "no credential policy named 'nope'" "unknown policy: message"
run 2 "group: no attestation" group new fleet-c --policy p30
run 2 "group: two attestations" group new fleet-c --policy p30 --symmetric --x509-ca issuing
run 2 "group: no policy" group new fleet-c --symmetric
run 2 "group: bad id" group new 'fleet c' --policy p30 --symmetric
run 2 "group: bad hub" group new fleet-c --policy p30 --symmetric --hub 'mqtt:99999'
contains "$WORK/.err" "--hub" "bad hub: names the option"
run 2 "group: bare IPv6 hub" group new fleet-c --policy p30 --symmetric --hub '::1:8883'
run 0 "group: bracketed IPv6 hub" group new fleet-v6 --policy p30 --symmetric --hub '[::1]:8883'
run 2 "group: --x509-cert is for individuals" group new fleet-c --policy p30 --x509-cert x.pem
run 0 "group list" group list --json
same "group list: three" "$(json "$WORK/.out" 'length')" "3"
lacks "$WORK/.out" "$P" "group list never prints keys"
run 0 "group show" group show fleet-a --json
same "group show: id" "$(json "$WORK/.out" .group_id)" "fleet-a"
same "group show: no keys" "$(json "$WORK/.out" 'has("primary_key") or has("secondary_key")')" "false"
same "group show: registrations" "$(json "$WORK/.out" .registrations)" "0"
run 0 "group show (upper case id)" group show FLEET-A
lacks "$WORK/.out" "$P" "group show never prints keys"
run 1 "group show: unknown" group show nope --json
same "--json error object" "$(json "$WORK/.out" .error.code)" "notfound"

# ---- keys -------------------------------------------------------------------------
run 0 "key show" key show --group fleet-a --json
same "key show: primary" "$(json "$WORK/.out" .primary_key)" "$P"
same "key show: secondary" "$(json "$WORK/.out" .secondary_key)" "$S"
run 0 "key derive" key derive --group fleet-a --registration-id dev-001
DK1=$(cat "$WORK/.out")
same "key derive = HMAC-SHA256(group key, id)" "$DK1" "$(hmac_b64 "$P" dev-001)"
run 0 "key derive --secondary --json" key derive --group fleet-a --registration-id Dev-002 --secondary --json
DK2=$(json "$WORK/.out" .device_key)
same "key derive --secondary (over the lower-case id)" "$DK2" "$(hmac_b64 "$S" dev-002)"
same "key derive: 32 bytes" "$(b64len "$DK2")" "32"
run 2 "key derive: bad id" key derive --group fleet-a --registration-id 'dev 1'
run 2 "key derive: no id" key derive --group fleet-a
run 1 "key derive: unknown group" key derive --group nope --registration-id dev-001
run 2 "key show: group and individual" key show --group fleet-a --individual dev-007
run 2 "key show: neither" key show

# ---- a bootstrap CA and proof of possession --------------------------------------
check "factory CA" "$ENROLL" ca init --dir factory --subject '/O=Factory/CN=Factory CA'
run 0 "ca upload" ca upload factory --cert factory/cert.pem --json
CODE=$(json "$WORK/.out" .verification_code)
same "ca upload: unverified" "$(json "$WORK/.out" .verified)" "false"
[[ $CODE =~ ^[0-9A-F]{32}$ ]] && pass || fail "verification code '$CODE' is not 32 hex digits"
run 0 "ca list shows the code" ca list
contains "$WORK/.out" "code $CODE" "ca list: the code of an unverified CA"
contains "$WORK/.out" "unverified" "ca list: state"
check "a device certificate (not a CA)" "$ENROLL" key new --out dev8.key
check "dev-008 csr" "$ENROLL" csr new --key dev8.key --dn CN=dev-008 --out dev8.csr
check "dev-008 certificate" "$ENROLL" ca sign --dir factory --profile device --cn dev-008 dev8.csr --out dev8.pem
run 1 "ca upload: not a CA certificate" ca upload leaf --cert dev8.pem
contains "$WORK/.err" "not a CA certificate" "upload of a leaf: message"
run 1 "group: unverified bootstrap CA refused" group new factory-line --policy p30 --x509-ca factory
contains "$WORK/.err" "not verified yet" "unverified CA: message"
contains "$WORK/.err" "enroll admin ca verify factory" "unverified CA: says what to do"
check "verification key" "$ENROLL" key new --out v.key
check "wrong-CN csr" "$ENROLL" csr new --key v.key --dn CN=not-the-code --out wrong.csr
check "wrong-CN certificate" "$ENROLL" ca sign --dir factory --profile device --cn not-the-code wrong.csr --out wrong.pem
run 1 "ca verify: wrong CN" ca verify factory --cert wrong.pem
contains "$WORK/.err" "is not the verification code" "wrong CN: message"
check "right-CN csr" "$ENROLL" csr new --key v.key --dn "CN=$CODE" --out v.csr
check "signed by another CA" "$ENROLL" ca sign --dir int --profile device --cn "$CODE" v.csr --out other.pem
run 1 "ca verify: signed by another key" ca verify factory --cert other.pem
contains "$WORK/.err" "not signed by the key of CA 'factory'" "wrong signer: message"
run 1 "ca verify: issuing CAs are not verified" ca verify issuing --cert other.pem
run 1 "ca verify: unknown CA" ca verify nope --cert other.pem
check "verification certificate" "$ENROLL" ca sign --dir factory --profile device --cn "$CODE" v.csr --out v.pem
run 0 "ca verify" ca verify factory --cert v.pem --json
same "ca verify: verified" "$(json "$WORK/.out" .verified)" "true"
run 1 "ca verify: again" ca verify factory --cert v.pem
contains "$WORK/.err" "verified already" "verify twice: message"
run 0 "ca list" ca list --json
same "ca list: factory verified" "$(json "$WORK/.out" '.[] | select(.name == "factory") | .verified')" "true"
same "ca list: code gone" "$(json "$WORK/.out" '.[] | select(.name == "factory") | .verification_code')" "null"
run 0 "group new --x509-ca" group new factory-line --policy p30 --x509-ca factory --json
same "x509 group: attestation" "$(json "$WORK/.out" .attestation)" "x509"
same "x509 group: the CA's certificate" "$(json "$WORK/.out" '.certificates[0].fingerprint_sha256')" "$(fingerprint factory/cert.pem)"
same "x509 group: no keys" "$(json "$WORK/.out" 'has("primary_key")')" "false"
run 1 "group: an issuing CA as --x509-ca" group new line-2 --policy p30 --x509-ca issuing
contains "$WORK/.err" "is an issuing CA" "issuing CA as bootstrap: message"
run 1 "group: unknown --x509-ca" group new line-2 --policy p30 --x509-ca nope
run 2 "group: --x509-ca twice" group new line-2 --policy p30 --x509-ca factory --x509-ca factory
run 1 "key show: an x509 group has no keys" key show --group factory-line

# ---- individual enrollments ---------------------------------------------------------
run 0 "individual new --symmetric" individual new Dev-007 --policy p30 --symmetric --json
same "individual: id lower case" "$(json "$WORK/.out" .registration_id)" "dev-007"
P7=$(json "$WORK/.out" .primary_key); SK7=$(json "$WORK/.out" .secondary_key)
same "individual primary: 32 bytes" "$(b64len "$P7")" "32"
run 0 "individual new --x509-cert" individual new dev-008 --policy p1y --x509-cert dev8.pem --json
same "individual x509: the certificate" "$(json "$WORK/.out" '.certificates[0].fingerprint_sha256')" "$(fingerprint dev8.pem)"
run 1 "individual: a CA certificate" individual new dev-009 --policy p30 --x509-cert factory/cert.pem
run 3 "individual: a missing file" individual new dev-009 --policy p30 --x509-cert missing.pem
run 1 "individual: a taken id" individual new dev-007 --policy p30 --symmetric
run 2 "individual: --x509-ca is for groups" individual new dev-009 --policy p30 --x509-ca factory
run 0 "individual list" individual list --json
same "individual list: two" "$(json "$WORK/.out" '[.[].registration_id] | join(",")')" "dev-007,dev-008"
run 0 "key show --individual" key show --individual dev-007 --json
same "individual key show" "$(json "$WORK/.out" .primary_key)" "$P7"
run 0 "individual disable" individual disable dev-007 --json
same "individual disabled" "$(json "$WORK/.out" .enabled)" "false"
run 0 "individual disable again" individual disable dev-007
contains "$WORK/.out" "nothing changed" "disable twice: nothing changed"
run 0 "individual enable" individual enable dev-007 --json
same "individual enabled" "$(json "$WORK/.out" .enabled)" "true"
run 0 "individual show" individual show dev-007
contains "$WORK/.out" "Enabled:     yes" "individual show"
lacks "$WORK/.out" "$P7" "individual show never prints keys"
run 1 "individual show: unknown" individual show dev-999

# ---- enable / disable a group -----------------------------------------------------------
ETAG=$(admin group show fleet-a --json | jq -r .etag)
run 0 "group disable" group disable fleet-a --json
same "group disabled" "$(json "$WORK/.out" .enabled)" "false"
[ "$(json "$WORK/.out" .etag)" != "$ETAG" ] && pass || fail "disabling kept the etag"
run 0 "group list text" group list
contains "$WORK/.out" "DISABLED" "group list shows the disabled group"
run 0 "group enable" group enable fleet-a
run 1 "group disable: unknown" group disable nope

# ---- registrations and certificates (as enrolld records them) ----------------------------
now=$(date +%s)
issue() { # ID VALIDITY OUT
  "$ENROLL" key new --out "$1-$3.key" >/dev/null &&
  "$ENROLL" csr new --key "$1-$3.key" --dn "CN=$1" --out "$1-$3.csr" >/dev/null &&
  "$ENROLL" ca sign --dir int --profile device --cn "$1" --validity "$2" "$1-$3.csr" --out "$3" 2>/dev/null
}
epoch() { date -d "$(openssl x509 -in "$1" -noout "-$2" | cut -d= -f2)" +%s; }
serial_of() { out "serial of $1" openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
# The rows enrolld would write, made here: each value is checked, or an empty
# certificate would be stored and the checks on it judge nothing.
store_cert() { # FILE REGISTRATION_ID [ISSUER]
  local hex spki
  hex=$(openssl x509 -in "$1" -outform DER | xxd -p | tr -d '\n') && [[ $hex =~ ^30[0-9a-f]+$ ]] ||
    { fail "store_cert: $1 as hex DER: '${hex:0:16}'"; return 1; }
  spki=$(openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -c1-64) &&
    [ "$spki" != "$(printf '' | sha256sum | cut -c1-64)" ] || { fail "store_cert: the public key of $1"; return 1; }
  sqlite3 "$D/enroll.db" "INSERT INTO certificate (issuer, serial, registration_id, policy, subject, not_before,
    not_after, issued_at, spki_sha256, der) VALUES ('${3:-$ISSUER}', '$(serial_of "$1")', '$2', 'p30',
    'CN=$2', $(epoch "$1" startdate), $(epoch "$1" enddate), $now, '$spki', X'$hex')"
}
store_registration() { # ID ENROLLMENT_KIND ENROLLMENT_ID LAST_CERT
  sqlite3 "$D/enroll.db" "INSERT INTO registration (registration_id, enrollment_kind, enrollment_id, status,
    substatus, device_id, assigned_hub, etag, created_at, updated_at, last_certificate_issuer,
    last_certificate_serial) VALUES ('$1', '$2', '$3', 'assigned', 'initialAssignment', '$1',
    'mqtt.example.com:8883', 'e-$1', $now, $now, '$ISSUER', '$(serial_of "$4")')"
}
check "dev-001 first certificate" issue dev-001 P30D dev1a.pem
check "dev-001 second certificate" issue dev-001 P30D dev1b.pem
check "dev-002 certificate (3 days)" issue dev-002 P3D dev2.pem
check "dev-007 certificate" issue dev-007 P30D dev7.pem
check "store dev-001's registration" store_registration dev-001 group fleet-a dev1b.pem
check "store dev-002's registration" store_registration dev-002 group fleet-a dev2.pem
check "store dev-007's registration" store_registration dev-007 individual dev-007 dev7.pem
for pair in dev1a.pem:dev-001 dev1b.pem:dev-001 dev2.pem:dev-002 dev7.pem:dev-007; do
  store_cert "${pair%%:*}" "${pair##*:}" || fail "storing ${pair%%:*}"
done
S1A=$(serial_of dev1a.pem); S1B=$(serial_of dev1b.pem); S2=$(serial_of dev2.pem); S7=$(serial_of dev7.pem)

run 0 "registration list" registration list --json
same "registration list: all" "$(json "$WORK/.out" '[.[].registration_id] | join(",")')" "dev-001,dev-002,dev-007"
same "registration list: last certificate" "$(json "$WORK/.out" '.[0].last_certificate.serial')" "$S1B"
run 0 "registration list --group" registration list --group fleet-a --json
same "registration list --group" "$(json "$WORK/.out" 'length')" "2"
run 0 "registration list --individual" registration list --individual dev-007 --json
same "registration list --individual" "$(json "$WORK/.out" '.[0].registration_id')" "dev-007"
run 0 "registration list --status" registration list --status failed --json
same "registration list --status failed" "$(json "$WORK/.out" 'length')" "0"
run 2 "registration list: bad status" registration list --status broken
run 1 "registration list: unknown group" registration list --group nope
run 0 "registration list (text)" registration list
contains "$WORK/.out" "dev-002" "registration list text"
run 0 "group show counts registrations" group show fleet-a --json
same "group show: 2 registrations" "$(json "$WORK/.out" .registrations)" "2"
run 0 "registration show" registration show DEV-001 --json
same "registration show: id" "$(json "$WORK/.out" .registration_id)" "dev-001"
same "registration show: both certificates" "$(json "$WORK/.out" '[.certificates[].serial] | join(",")')" "$S1A,$S1B"
run 1 "registration show: unknown" registration show dev-999
contains "$WORK/.err" "no registration 'dev-999'" "unknown registration: message"

run 0 "cert list" cert list --json
same "cert list: four" "$(json "$WORK/.out" 'length')" "4"
same "cert list: issuer" "$(json "$WORK/.out" '.[0].issuer')" "$ISSUER"
run 0 "cert list --expiring P7D" cert list --expiring P7D --json
same "cert list --expiring P7D: the 3-day one" "$(json "$WORK/.out" '[.[].serial] | join(",")')" "$S2"
run 0 "cert list --registration" cert list --registration dev-001 --json
same "cert list --registration" "$(json "$WORK/.out" 'length')" "2"
run 2 "cert list: bad duration" cert list --expiring soon
run 0 "cert list (text)" cert list
contains "$WORK/.out" "$S2" "cert list text"

run 0 "cert revoke by serial alone (lower case)" cert revoke --serial "$(printf '%s' "$S1A" | tr 'A-F' 'a-f')" --reason superseded --json
same "cert revoke: serial" "$(json "$WORK/.out" .serial)" "$S1A"
same "cert revoke: reason" "$(json "$WORK/.out" .reason)" "superseded"
run 1 "cert revoke: twice" cert revoke --serial "$S1A" --reason superseded
contains "$WORK/.err" "revoked already" "revoke twice: message"
run 0 "cert list --revoked" cert list --revoked --json
same "cert list --revoked" "$(json "$WORK/.out" '[.[].serial] | join(",")')" "$S1A"
run 1 "cert revoke: unknown serial" cert revoke --serial 0BADC0DE --reason superseded
run 2 "cert revoke: not hex" cert revoke --serial xyz --reason superseded
run 2 "cert revoke: bad reason" cert revoke --serial "$S2" --reason because
# The same serial from a second issuer: the serial alone is ambiguous.
check "store dev-007's certificate under another issuer" store_cert dev7.pem dev-007 "O=Other, CN=Other CA"
run 2 "cert revoke: ambiguous serial" cert revoke --serial "$S7" --reason superseded
contains "$WORK/.err" "give --issuer" "ambiguous serial: says what to do"
run 0 "cert revoke --issuer" cert revoke --serial "$S7" --issuer "O=Other, CN=Other CA" --reason keyCompromise
run 0 "cert list --issuer" cert list --issuer "$ISSUER" --revoked --json
same "the other issuer's certificate is not ours" "$(json "$WORK/.out" 'length')" "1"

run 0 "registration revoke" registration revoke dev-001 --reason keyCompromise --json
same "registration revoke: the one left" "$(json "$WORK/.out" '[.revoked[].serial] | join(",")')" "$S1B"
same "registration revoke: reason" "$(json "$WORK/.out" '.revoked[0].reason')" "keyCompromise"
run 0 "registration revoke: nothing left" registration revoke dev-001 --reason keyCompromise
contains "$WORK/.out" "no certificate left to revoke" "revoke twice: message"
run 1 "registration revoke: unknown" registration revoke dev-999 --reason keyCompromise
run 2 "registration revoke: --reason is required" registration revoke dev-002
run 2 "registration revoke: bad reason" registration revoke dev-002 --reason because
run 0 "cert list --expiring leaves revoked ones out" cert list --expiring P1Y --json
same "expiring: not revoked" "$(json "$WORK/.out" '[.[].serial] | join(",")')" "$S2,$S7"

# ---- disabling a registration --------------------------------------------------------------
run 0 "registration disable" registration disable DEV-002 --json
same "registration disable: status" "$(json "$WORK/.out" .status)" "disabled"
same "registration disable: changed" "$(json "$WORK/.out" .changed)" "true"
same "registration disable: in the store" "$(sqlite3 "$D/enroll.db" "SELECT status FROM registration WHERE registration_id = 'dev-002'")" "disabled"
same "registration disable: the rest is kept" "$(sqlite3 "$D/enroll.db" "SELECT substatus, device_id, last_certificate_serial FROM registration WHERE registration_id = 'dev-002'")" "initialAssignment|dev-002|$S2"
same "registration disable: certificates untouched" "$(sqlite3 "$D/enroll.db" "SELECT revoked FROM certificate WHERE serial = '$S2'")" "0"
run 0 "registration disable again" registration disable dev-002
contains "$WORK/.out" "nothing changed" "disable twice: nothing changed"
run 0 "registration list --status disabled" registration list --status disabled --json
same "registration list --status disabled" "$(json "$WORK/.out" '[.[].registration_id] | join(",")')" "dev-002"
run 0 "registration show: disabled" registration show dev-002
contains "$WORK/.out" "Status:      disabled" "registration show: disabled"
run 0 "registration enable" registration enable dev-002 --json
same "registration enable: the status from before" "$(json "$WORK/.out" .status)" "assigned"
run 0 "registration enable again (text)" registration enable dev-002
contains "$WORK/.out" "enabled already" "enable twice: nothing changed"
run 0 "registration disable (text)" registration disable dev-007
contains "$WORK/.out" "may not register or renew" "registration disable text"
run 1 "registration disable: unknown" registration disable dev-999
contains "$WORK/.err" "no registration 'dev-999'" "disable unknown: message"
run 2 "registration disable: no id" registration disable
run 2 "registration disable: bad id" registration disable 'dev 1'

# ---- CRL export ------------------------------------------------------------------------------
run 0 "crl" crl --ca issuing --out issuing.crl --json
same "crl: two revoked" "$(json "$WORK/.out" .revoked)" "2"
N1=$(json "$WORK/.out" .crl_number)
same "crl: written where asked" "$(json "$WORK/.out" .out)" "issuing.crl"
lacks "$WORK/.out" "BEGIN X509 CRL" "crl --json does not print the CRL"
check "crl: signed by the issuing CA" openssl crl -in issuing.crl -CAfile int/cert.pem -verify -noout
contains "$WORK/.err" "verify OK" "crl verifies"
openssl crl -in issuing.crl -noout -text > crl.txt
contains crl.txt "$S1A" "crl lists the revoked certificate"
contains crl.txt "$S1B" "crl lists the registration's revoked certificate"
contains crl.txt "Key Compromise" "crl carries the reason"
lacks crl.txt "$S2" "crl leaves out valid certificates"
lacks crl.txt "$S7" "crl leaves out another issuer's revocations"
expect_exit 2 "openssl verify -crl_check rejects a revoked certificate" \
  openssl verify -crl_check -CRLfile issuing.crl -CAfile root/cert.pem -untrusted int/cert.pem dev1a.pem
grep -q "certificate revoked" "$WORK/.out" "$WORK/.err" && pass || fail "verify: not refused as revoked"
check "openssl verify -crl_check accepts a valid certificate" \
  openssl verify -crl_check -CRLfile issuing.crl -CAfile root/cert.pem -untrusted int/cert.pem dev2.pem
run 0 "crl again (text), next update in a day" crl --ca issuing --out issuing2.crl --next-update P1D
contains "$WORK/.out" "written to issuing2.crl" "crl text"
N2=$(crl_number issuing2.crl)
[ "$N2" -gt "$N1" ] && pass || fail "CRL number did not grow: $N1 then $N2"
last=$(date -d "$(openssl crl -in issuing2.crl -noout -lastupdate | cut -d= -f2)" +%s)
next=$(date -d "$(openssl crl -in issuing2.crl -noout -nextupdate | cut -d= -f2)" +%s)
same "crl --next-update P1D" "$((next - last))" "86400"
check "enroll ca crl continues the numbers" "$ENROLL" ca crl --dir int --out int3.crl
N3=$(crl_number int/crl.pem)
[ "$N3" -gt "$N2" ] && pass || fail "enroll ca crl reused a CRL number: $N2 then $N3"
run 1 "crl: a bootstrap CA" crl --ca factory --out x.crl
contains "$WORK/.err" "bootstrap" "crl of a bootstrap CA: message"
run 1 "crl: unknown CA" crl --ca nope --out x.crl
run 2 "crl: --out is required" crl --ca issuing
run 2 "crl: bad --next-update" crl --ca issuing --out x.crl --next-update soon
contains "$WORK/.err" "--next-update" "bad --next-update: names the option"
run 2 "crl: an option of another verb" crl --ca issuing --out x.crl --hub x
[ ! -e x.crl ] && pass || fail "a refused crl wrote a file"
expect_exit 0 "admin crl --help" "$ENROLL" admin crl --help
contains "$WORK/.out" "Examples:" "admin crl --help has examples"

# ---- the audit trail ---------------------------------------------------------------------
run 0 "audit list" audit list --json
cp "$WORK/.out" audit.json
for kind in admin.ca.add admin.ca.upload admin.ca.verify admin.policy.create admin.group.create \
            admin.group.disable admin.group.enable admin.individual.create admin.individual.disable \
            admin.individual.enable admin.key.show admin.key.derive admin.cert.revoke \
            admin.registration.revoke admin.registration.disable admin.registration.enable \
            admin.crl.export; do
  [ "$(jq --arg k "$kind" '[.[] | select(.kind == $k and .outcome == "ok")] | length' audit.json)" -ge 1 ] &&
    pass || fail "no '$kind' audit event"
done
same "one ok event per change: policies" "$(jq '[.[] | select(.kind == "admin.policy.create")] | length' audit.json)" "2"
same "refused proofs are recorded" "$(jq '[.[] | select(.kind == "admin.ca.verify" and .outcome == "rejected")] | length' audit.json)" "2"
same "no event for refused changes" "$(jq '[.[] | select(.detail | test("fleet-c|line-2|dev-009"))] | length' audit.json)" "0"
same "audit: group create" "$(jq -r '[.[] | select(.kind == "admin.group.create")][0].detail' audit.json | cut -d: -f1)" "enrollment group 'fleet-a' created"
run 0 "audit list --registration" audit list --registration DEV-001 --json
same "audit of dev-001" "$(json "$WORK/.out" '[.[].kind] | unique | join(",")')" "admin.cert.revoke,admin.key.derive,admin.registration.revoke"
run 0 "audit list (text)" audit list
contains "$WORK/.out" "admin.group.create" "audit list text"

# ---- no key anywhere it should not be ---------------------------------------------------------
sqlite3 "$D/enroll.db" "SELECT kind, registration_id, detail FROM audit_event" > audit.txt
for key in "$P" "$S" "$P7" "$SK7" "$DK1" "$DK2"; do
  lacks "$ERRORS" "$key" "a key in an error message"
  lacks audit.txt "$key" "a key in an audit event"
  lacks "$ERRORS" "${key:0:12}" "part of a key in an error message"
done
[ -s "$ERRORS" ] && pass || fail "no error output was collected"

# ---- the database -----------------------------------------------------------------------------
same "integrity_check" "$(sqlite3 "$D/enroll.db" 'PRAGMA integrity_check')" "ok"
same "foreign keys hold" "$(sqlite3 "$D/enroll.db" 'PRAGMA foreign_key_check' | wc -l)" "0"
finish
