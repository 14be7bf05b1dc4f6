#!/usr/bin/env bash
# The OCSP responder (RFC 6960) on enrolld, judged by `openssl ocsp`:
# requests made by openssl, carried with curl (POST and GET), and every
# response verified by openssl against the root with the request's nonce:
# good, revoked (reason and time) right after `enroll admin cert revoke`,
# unknown serial, unknown issuer (unauthorized), a SHA-256 CertID, the
# nonce echoed; the responder's certificate is a delegated one (EKU
# OCSPSigning, ocsp-nocheck) issued by the CA; bad requests answered
# malformedRequest or refused in HTTP, never a crash.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000c5b9
API=2025-07-01-preview

service_pki
service_store
GROUP_KEY=$(cat group.key)
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2}
JSON
enrolld_start enrolld.json enrolld.log
[ -n "$PORT" ] && pass || { fail "enrolld did not start"; finish; exit 1; }
URL=https://127.0.0.1:$PORT

register() { dps_register "$PORT" "$1" "$2" >/dev/null; } # RID KEY -> RID.pem
"$ENROLL" key new --out a.key >/dev/null
"$ENROLL" key new --out b.key >/dev/null
register dev-a a.key
register dev-b b.key
[ -s dev-a.pem ] && [ -s dev-b.pem ] && pass || fail "two devices registered"

# ask NAME ARGS...: an openssl request (ARGS: -cert F or -serial N, a digest),
# POSTed with curl; openssl then reads the response against the request
# (nonce) and verifies it up to the root. Output in NAME.txt.
ask() {
  local name=$1; shift
  openssl ocsp -issuer devices-ca/cert.pem "$@" -reqout "$name.req" 2> "$name.reqerr" >/dev/null
  curl -s --max-time 30 --cacert root/cert.pem -o "$name.resp" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/ocsp-request' --data-binary @"$name.req" "$URL/ocsp" > "$name.http"
  # Given -cert, openssl makes a new request (a new nonce): the nonce and
  # the signature are checked against the request sent, the status by name.
  openssl ocsp -respin "$name.resp" -reqin "$name.req" -CAfile root/cert.pem -resp_text > "$name.txt" 2>&1
  openssl ocsp -respin "$name.resp" -issuer devices-ca/cert.pem "$@" -CAfile root/cert.pem -no_nonce \
    >> "$name.txt" 2>&1
}

ask good -cert dev-a.pem
same "POST /ocsp: HTTP 200" "$(cat good.http)" "200"
contains good.txt "dev-a.pem: good" "a registered device's certificate is good"
contains good.txt "Response verify OK" "openssl verifies the response up to the root"
contains good.txt "OCSP Nonce" "the nonce is echoed"
lacks good.txt "Nonce Verify error" "the nonce matches the request's"
contains good.txt "Next Update" "thisUpdate and nextUpdate"
# The signer: a delegated responder, issued by the CA, with EKU OCSPSigning and ocsp-nocheck.
openssl ocsp -respin good.resp -resp_text -noverify 2>/dev/null | sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' |
  awk '/BEGIN/{n++} n==1' > responder.pem
openssl x509 -in responder.pem -noout -text > responder.txt 2>&1
contains responder.txt "OCSP Signing" "the responder certificate: EKU OCSPSigning"
contains responder.txt "OCSP No Check" "the responder certificate: ocsp-nocheck"
expect_exit 0 "the responder certificate chains to the root (openssl verify)" \
  openssl verify -CAfile root/cert.pem -untrusted devices-ca/cert.pem -purpose ocsphelper responder.pem

serial=$(openssl x509 -in dev-a.pem -noout -serial | cut -d= -f2)
check "admin: revoke dev-a's certificate" "$ENROLL" admin cert revoke --serial "$serial" --reason keyCompromise --data data
ask revoked -cert dev-a.pem
contains revoked.txt "dev-a.pem: revoked" "the revocation shows in the next response"
contains revoked.txt "Reason: keyCompromise" "  with its reason"
contains revoked.txt "Revocation Time:" "  and its time"
contains revoked.txt "Response verify OK" "  verified"
ask other -cert dev-b.pem
contains other.txt "dev-b.pem: good" "another device stays good"

ask unknown -serial 0x0123456789ABCDEF
contains unknown.txt ": unknown" "a serial the CA never issued is unknown"
contains unknown.txt "Response verify OK" "  verified"

ask sha256 -sha256 -cert dev-b.pem
contains sha256.txt "dev-b.pem: good" "a SHA-256 CertID is answered"
contains sha256.txt "Response verify OK" "  verified"
openssl ocsp -reqin sha256.req -req_text 2>/dev/null | grep -q "Hash Algorithm: sha256" && pass ||
  fail "the request really used SHA-256"

# A certificate of a CA this store does not serve (the root issued the server's).
openssl ocsp -issuer root/cert.pem -cert server.pem -reqout foreign.req >/dev/null 2>&1
curl -s --max-time 30 --cacert root/cert.pem -o foreign.resp -X POST -H 'Content-Type: application/ocsp-request' \
  --data-binary @foreign.req "$URL/ocsp"
openssl ocsp -respin foreign.resp -resp_text -noverify > foreign.txt 2>&1
contains foreign.txt "unauthorized" "an issuer the store does not serve is unauthorized"

# GET /ocsp/{base64 of the request, URL-encoded} (RFC 6960 A.1).
b64=$(base64 -w0 good.req | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')
code=$(curl -s --max-time 30 --cacert root/cert.pem -o get.resp -w '%{http_code}' "$URL/ocsp/$b64")
same "GET /ocsp/{base64}: HTTP 200" "$code" "200"
openssl ocsp -respin get.resp -issuer devices-ca/cert.pem -cert dev-a.pem -CAfile root/cert.pem -no_nonce \
  > get.txt 2>&1
contains get.txt "dev-a.pem: revoked" "GET answers as POST does"

# Bad requests: an OCSP error in a response, or an HTTP refusal; enrolld lives on.
printf 'not an ocsp request' > junk.req
curl -s --max-time 30 --cacert root/cert.pem -o junk.resp -X POST -H 'Content-Type: application/ocsp-request' \
  --data-binary @junk.req "$URL/ocsp"
openssl ocsp -respin junk.resp -resp_text -noverify > junk.txt 2>&1
contains junk.txt "malformedrequest" "garbage is answered malformedRequest"
code=$(curl -s --max-time 30 --cacert root/cert.pem -o /dev/null -w '%{http_code}' -X POST \
  -H 'Content-Type: text/plain' --data-binary @good.req "$URL/ocsp")
same "POST with another content type: 415" "$code" "415"
code=$(curl -s --max-time 30 --cacert root/cert.pem -o /dev/null -w '%{http_code}' "$URL/ocsp/%%%not-base64")
same "GET with a bad encoding: 400" "$code" "400"
code=$(curl -s --max-time 30 --cacert root/cert.pem -o /dev/null -w '%{http_code}' -X PUT --data-binary @good.req "$URL/ocsp")
same "PUT: 405" "$code" "405"
head -c 70000 /dev/zero > big.req
code=$(curl -s --max-time 30 --cacert root/cert.pem -o /dev/null -w '%{http_code}' -X POST \
  -H 'Content-Type: application/ocsp-request' --data-binary @big.req "$URL/ocsp")
[ "$code" = 413 ] || [ "$code" = 400 ] && pass || fail "an oversized request is refused ($code)"
# A policy that names the responder (AIA) and a CRL distribution point: its
# certificates carry both, and the AIA URL is this responder.
check "admin: a policy with --ocsp-url and --crl-url" "$ENROLL" admin policy new p-ocsp --validity P30D \
  --renewal-window P7D --ca devices --ocsp-url "$URL/ocsp" --crl-url http://crl.example.com/devices.crl --data data --json
same "  the policy says so" "$(json "$WORK/.out" .ocsp_url)" "$URL/ocsp"
expect_exit 2 "admin: a URL with a comma is refused" "$ENROLL" admin policy new p-bad --validity P30D \
  --renewal-window P7D --ca devices --ocsp-url "http://a.example/x,caIssuers;URI:http://evil" --data data
expect_exit 2 "admin: an ftp URL is refused" "$ENROLL" admin policy new p-bad --validity P30D \
  --renewal-window P7D --ca devices --crl-url ftp://a.example/x.crl --data data
"$ENROLL" admin group new fleet-ocsp --policy p-ocsp --symmetric --data data --json > g2.json
GROUP_KEY=$(json g2.json .primary_key)
"$ENROLL" key new --out c.key >/dev/null
register dev-c c.key
same "the certificate names the responder (AIA, openssl x509 -ocsp_uri)" \
  "$(openssl x509 -in dev-c.pem -noout -ocsp_uri)" "$URL/ocsp"
openssl x509 -in dev-c.pem -noout -text > dev-c.txt
contains dev-c.txt "URI:http://crl.example.com/devices.crl" "the certificate names the CRL distribution point"
ask aia -cert dev-c.pem
contains aia.txt "dev-c.pem: good" "the responder its AIA names answers for it"

ask after -cert dev-b.pem
contains after.txt "dev-b.pem: good" "enrolld still answers after the bad requests"
contains enrolld.log '"route":"ocsp"' "OCSP requests are logged with their route"

kill -TERM "$EPID"; wait "$EPID"
same "enrolld stops cleanly" "$?" "0"
finish
