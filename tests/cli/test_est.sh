#!/usr/bin/env bash
# EST (RFC 7030, RFC 8951) on enrolld, with curl and openssl as the client
# and judge: cacerts read by `openssl pkcs7 -print_certs`; simpleenroll
# with HTTP Basic (a group's secret) and with a bootstrap (IDevID)
# certificate over mTLS; simplereenroll with the current certificate; a
# renewal with a changed subject refused; csrattrs read by `openssl
# asn1parse`; serverkeygen refused unless the policy allows it, and its key
# matching its certificate when it does; 202 + Retry-After when the commit
# is slow, and the same request again answered with the same certificate.
# Every refusal leaves the store as it was. Every issuance is audited,
# listed and revocable like a DPS registration.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000c5b9
STORE_ARGS=(--data data)

service_pki
service_store
service_x509_group boot-fleet
check "admin: an EST group" "$ENROLL" admin group new est-fleet --policy p30 --symmetric --data data
"$ENROLL" admin est secret --group est-fleet --data data --json > secret.json
SECRET=$(jq -r .secret secret.json)
[ "${#SECRET}" -ge 40 ] && pass || fail "est secret: a secret is shown once ($(cat secret.json))"
"$ENROLL" admin group show est-fleet --data data --json > est-fleet.json
same "group show: the secret is set, never shown" "$(jq -c '[.est_basic_secret, (tostring | contains($s))]' --arg s "$SECRET" est-fleet.json)" '[true,false]'
sqlite3 data/enroll.db 'SELECT basic_secret_sha256 FROM enrollment_group WHERE group_id = "est-fleet"' > stored.txt
same "the store keeps the secret's SHA-256 only" "$(cat stored.txt)" "$(printf '%s' "$SECRET" | sha256sum | cut -d' ' -f1)"
check "admin: a policy that allows serverkeygen" "$ENROLL" admin policy new pkg --validity P30D --renewal-window P7D \
  --ca devices --allow-server-keygen --data data
check "admin: its group" "$ENROLL" admin group new keygen-fleet --policy pkg --symmetric --data data
KEYGEN_SECRET=$(A=$("$ENROLL" admin est secret --group keygen-fleet --data data --json) && jq -r .secret <<<"$A")

cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2}
JSON
enrolld_start enrolld.json enrolld.log
[ -n "$PORT" ] && pass || { fail "enrolld did not start"; finish; exit 1; }
EST=https://127.0.0.1:$PORT/.well-known/est

# est NAME METHOD PATH [curl args]: the body in NAME.body, the headers in
# NAME.headers, the status echoed.
est() {
  local name=$1 method=$2 path=$3; shift 3
  curl -s --max-time 30 --cacert root/cert.pem -X "$method" -D "$name.headers" -o "$name.body" -w '%{http_code}' \
    "$@" "$EST$path"
}
# csr NAME SUBJECT [KEY]: an openssl CSR (new P-256 key NAME.key unless KEY),
# base64 in lines of 64 as EST sends it, in NAME.b64.
csr() {
  local key=${3:-$1.key}
  [ -s "$key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
  openssl req -new -key "$key" -subj "$2" -outform DER 2>/dev/null | openssl base64 > "$1.b64"
}
enroll_post() { # NAME OPERATION [curl args]
  local name=$1 op=$2; shift 2
  est "$name" POST "$op" -H 'Content-Type: application/pkcs10' --data-binary @"$name.b64" "$@"
}
# certs_of NAME: the certs-only body as PEM (openssl pkcs7 -print_certs).
certs_of() { openssl base64 -d -in "$1.body" | openssl pkcs7 -inform DER -print_certs -out "$1.pem" 2>"$1.p7err"; }
# The store as the admin CLI lists it: registrations and certificates.
snapshot() {
  { "$ENROLL" admin registration list --data data --json; "$ENROLL" admin cert list --data data --json; } |
    jq -c 'if type == "array" then map(del(.updated_at)) else . end'
}
unchanged() { # WHAT: the store is as the last snapshot
  local now
  now=$(snapshot)
  [ "$now" = "$SNAP" ] && pass || fail "$1: the store changed"
}

# ---- cacerts ----
same "cacerts: 200" "$(est cacerts GET /cacerts)" 200
contains cacerts.headers "Content-Type: application/pkcs7-mime" "cacerts: application/pkcs7-mime"
certs_of cacerts
contains cacerts.pem "subject=O = Acme, CN = Acme Devices" "cacerts: the issuing CA (openssl pkcs7 -print_certs)"
contains cacerts.pem "subject=O = Acme, CN = Acme Root" "cacerts: and its root"
same "cacerts with a label: 200" "$(est cacerts-label GET /est-fleet/cacerts)" 200
certs_of cacerts-label
contains cacerts-label.pem "CN = Acme Devices" "cacerts under a label: that group's CA"
same "cacerts: an unknown label is 404" "$(est nolabel GET /no-such-group/cacerts)" 404
contains nolabel.headers "Content-Type: text/plain" "  as text/plain"

# ---- csrattrs ----
same "csrattrs: 200" "$(est attrs GET /est-fleet/csrattrs)" 200
contains attrs.headers "Content-Type: application/csrattrs" "csrattrs: application/csrattrs"
openssl base64 -d -in attrs.body | openssl asn1parse -inform DER > attrs.txt 2>&1
contains attrs.txt "id-ecPublicKey" "csrattrs (openssl asn1parse): EC keys"
contains attrs.txt "prime256v1" "  on P-256 (the policy's key types)"
contains attrs.txt "ecdsa-with-SHA256" "  signed with ECDSA-SHA256"
contains attrs.txt "commonName" "  and a CN (the registration id)"
same "csrattrs without a label: 204" "$(est attrs-none GET /csrattrs)" 204

# ---- simpleenroll with HTTP Basic ----
SNAP=$(snapshot)
csr est-1 /CN=est-1
same "simpleenroll: no credential is 401" "$(enroll_post est-1 /simpleenroll)" 401
contains est-1.headers "WWW-Authenticate: Basic" "  with a Basic challenge"
contains est-1.headers "Content-Type: text/plain" "  and a text/plain reason"
same "simpleenroll: a wrong secret is 401" "$(enroll_post est-1 /simpleenroll --user est-1:wrong-secret)" 401
same "simpleenroll: the Basic user must be the CSR's CN" "$(enroll_post est-1 /simpleenroll --user est-2:"$SECRET")" 401
same "simpleenroll: another group's label is 403" \
  "$(enroll_post est-1 /boot-fleet/simpleenroll --user est-1:"$SECRET")" 403
same "simpleenroll: a body that is not application/pkcs10 is 415" \
  "$(est est-1 POST /simpleenroll -H 'Content-Type: application/json' --data-binary @est-1.b64 --user est-1:"$SECRET")" 415
printf 'not base64!' > bad.b64
same "simpleenroll: a body that is not base64 is 400" "$(enroll_post bad /simpleenroll --user est-1:"$SECRET")" 400
same "simpleenroll: GET is 405" "$(est get GET /simpleenroll)" 405
contains get.headers "Allow: POST" "  naming POST"
same "an unknown operation is 404" "$(est unknown GET /fullcmc)" 404
unchanged "the refusals above"

same "simpleenroll with Basic: 200" "$(enroll_post est-1 /est-fleet/simpleenroll --user est-1:"$SECRET")" 200
contains est-1.headers "Content-Type: application/pkcs7-mime; smime-type=certs-only" "  certs-only"
certs_of est-1
openssl x509 -in est-1.pem -noout -subject -issuer > est-1.names 2>&1
contains est-1.names "subject=CN = est-1" "  the certificate names the device"
contains est-1.names "issuer=O = Acme, CN = Acme Devices" "  issued by the policy's CA"
expect_exit 0 "  it chains to the root (openssl verify)" \
  openssl verify -CAfile root/cert.pem -untrusted devices-ca/cert.pem est-1.pem
same "  for the CSR's key" "$(openssl x509 -in est-1.pem -noout -pubkey)" "$(openssl pkey -in est-1.key -pubout)"
"$ENROLL" admin registration show est-1 --data data --json > est-1.reg.json
same "the issuance is a registration under the group" "$(jq -r '[.status, .enrollment_id] | join(" ")' est-1.reg.json)" \
  "assigned est-fleet"
"$ENROLL" admin audit list --registration est-1 --data data --json > est-1.audit.json
same "  audited" "$(jq -r '[.[] | select(.kind == "register" and .outcome == "ok")] | length' est-1.audit.json)" 1
# The group's secret is every device's: it registers a new id, never one
# that exists (that would hand est-1's name to another key).
csr est-1-thief /CN=est-1
SNAP=$(snapshot)
same "simpleenroll with the group's secret for an existing device and a new key: 401" \
  "$(enroll_post est-1-thief /simpleenroll --user est-1:"$SECRET")" 401
contains est-1-thief.body "new devices only" "  saying why"
unchanged "the refused takeover"
# RFC 8951: line breaks anywhere in the base64, without a trailing newline.
csr est-1b /CN=est-1b
tr -d '\n' < est-1b.b64 | fold -w 17 > est-1b.folded && mv est-1b.folded est-1b.b64
same "simpleenroll: base64 folded at any width" "$(enroll_post est-1b /simpleenroll --user est-1b:"$SECRET")" 200

# ---- simpleenroll with a bootstrap (IDevID) certificate ----
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out idev.key 2>/dev/null
openssl req -new -key idev.key -subj /CN=idev-1 -out idev.csr 2>/dev/null
"$ENROLL" ca sign --dir boot-int --profile device --cn idev-1 idev.csr --out idev.pem 2>/dev/null
cat idev.pem boot-int/cert.pem > idev-chain.pem
csr idev-1 /CN=idev-1
SNAP=$(snapshot)
same "simplereenroll with a bootstrap certificate is refused (it enrolls, it does not renew)" \
  "$(enroll_post idev-1 /simplereenroll --cert idev-chain.pem --key idev.key)" 401
unchanged "the refused renewal"
same "simpleenroll with the IDevID over mTLS: 200" \
  "$(enroll_post idev-1 /boot-fleet/simpleenroll --cert idev-chain.pem --key idev.key)" 200
certs_of idev-1
contains idev-1.pem "subject=CN = idev-1" "  an operational certificate for the device"
same "  for the new key, not the IDevID's" "$(openssl x509 -in idev-1.pem -noout -pubkey)" \
  "$(openssl pkey -in idev-1.key -pubout)"

# ---- simplereenroll with the current certificate ----
csr est-1-renew /CN=est-1
SNAP=$(snapshot)
same "simplereenroll: 200 with the current certificate" \
  "$(enroll_post est-1-renew /simplereenroll --cert est-1.pem --key est-1.key)" 200
certs_of est-1-renew
old_serial=$(openssl x509 -in est-1.pem -noout -serial)
new_serial=$(openssl x509 -in est-1-renew.pem -noout -serial)
[ -n "$new_serial" ] && [ "$old_serial" != "$new_serial" ] && pass || fail "simplereenroll: a new certificate"
same "  the registration holds two certificates" \
  "$("$ENROLL" admin cert list --registration est-1 --data data --json | jq length)" 2
csr est-1-evil "/O=Other/CN=est-1"
SNAP=$(snapshot)
same "simplereenroll with a changed subject: 400" \
  "$(enroll_post est-1-evil /simplereenroll --cert est-1-renew.pem --key est-1-renew.key)" 400
contains est-1-evil.body "subject" "  saying why"
same "simplereenroll with Basic only: 401" "$(enroll_post est-1-renew /simplereenroll --user est-1:"$SECRET")" 401
unchanged "the refused renewals"
# A Basic header beside the certificate is not what a renewal stands on.
csr idev-1-renew /CN=idev-1 idev-1.key
same "simplereenroll with the current certificate and a stray Basic header: 200" \
  "$(enroll_post idev-1-renew /simplereenroll --cert idev-1.pem --key idev-1.key --user someone:else)" 200
# Revocable like any registration: the revoked certificate renews nothing.
check "admin: revoke est-1" "$ENROLL" admin registration revoke est-1 --reason superseded --data data
csr est-1-again /CN=est-1 est-1-renew.key
SNAP=$(snapshot)
same "simplereenroll with a revoked certificate: 401" \
  "$(enroll_post est-1-again /simplereenroll --cert est-1-renew.pem --key est-1-renew.key)" 401
unchanged "the revoked certificate's renewal"

# ---- serverkeygen ----
csr kg-1 /CN=kg-1
SNAP=$(snapshot)
same "serverkeygen under a policy that does not allow it: 403" \
  "$(enroll_post kg-1 /serverkeygen --user kg-1:"$SECRET")" 403
unchanged "the refused serverkeygen"
same "serverkeygen when the policy allows it: 200" "$(enroll_post kg-1 /serverkeygen --user kg-1:"$KEYGEN_SECRET")" 200
contains kg-1.headers "Content-Type: multipart/mixed; boundary=" "  multipart/mixed"
boundary=$(grep -i '^Content-Type: multipart' kg-1.headers | sed 's/.*boundary=//' | tr -d '\r')
tr -d '\r' < kg-1.body | awk -v b="--$boundary" '$0 == b || $0 == b "--" {n++; h=1; next} h && $0 == "" {h=0; next} !h {print > ("part" n ".b64")}'
openssl base64 -d -in part1.b64 | openssl asn1parse -inform DER > kg-1.key.asn1 2>&1
contains kg-1.key.asn1 "id-ecPublicKey" "  the key is PKCS#8 (PrivateKeyInfo names its algorithm), not SEC1"
openssl base64 -d -in part1.b64 | openssl pkey -inform DER -out kg-1.server.key 2>kg.err
[ -s kg-1.server.key ] && pass || fail "serverkeygen: the first part is a PKCS#8 key ($(cat kg.err))"
openssl base64 -d -in part2.b64 | openssl pkcs7 -inform DER -print_certs -out kg-1.pem 2>>kg.err
contains kg-1.pem "subject=CN = kg-1" "  the second part is the certificate (certs-only)"
same "  for the key the service made, not the CSR's" "$(openssl x509 -in kg-1.pem -noout -pubkey)" \
  "$(openssl pkey -in kg-1.server.key -pubout)"
[ "$(openssl pkey -in kg-1.key -pubout)" != "$(openssl pkey -in kg-1.server.key -pubout)" ] && pass ||
  fail "serverkeygen: a new key"
lacks enrolld.log "$(sed -n 2p part1.b64)" "the key never reaches the log"

# ---- 202 + Retry-After when the commit is slow; the same request again ----
cat > slow.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 1, "limits": {"assigning_after_ms": 0}}
JSON
MAIN_PORT=$PORT
enrolld_start slow.json slow.log
EST=https://127.0.0.1:$PORT/.well-known/est
csr est-9 /CN=est-9
same "a commit slower than assigning_after_ms: 202" "$(enroll_post est-9 /simpleenroll --user est-9:"$SECRET")" 202
contains est-9.headers "Retry-After: " "  with Retry-After"
for _ in $(seq 1 50); do
  [ "$("$ENROLL" admin cert list --registration est-9 --data data --json | jq length)" = 1 ] && break
  sleep 0.1
done
same "the same request again: 200" "$(enroll_post est-9 /simpleenroll --user est-9:"$SECRET")" 200
certs_of est-9
same "  with the certificate the first request made (one certificate, not two)" \
  "$("$ENROLL" admin cert list --registration est-9 --data data --json | jq -r '.[].serial' | tr -d '\n')" \
  "$(openssl x509 -in est-9.pem -noout -serial | cut -d= -f2)"
csr kg-2 /CN=kg-2
same "serverkeygen is never answered 202 (its key would be lost): 200" \
  "$(enroll_post kg-2 /serverkeygen --user kg-2:"$KEYGEN_SECRET")" 200
contains kg-2.headers "Content-Type: multipart/mixed" "  with the key and the certificate"

# ---- Basic never in the clear ----
cat > plain.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE", "plain_http": true, "workers": 1}
JSON
enrolld_start plain.json plain.log
csr est-10 /CN=est-10
SNAP=$(snapshot)
code=$(curl -s --max-time 30 -o plain.body -w '%{http_code}' -X POST -H 'Content-Type: application/pkcs10' \
  --user est-10:"$SECRET" --data-binary @est-10.b64 "http://127.0.0.1:$PORT/.well-known/est/simpleenroll")
same "simpleenroll with Basic over plain HTTP: 403" "$code" 403
unchanged "the refused plain-HTTP enrollment"
finish
