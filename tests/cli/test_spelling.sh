#!/usr/bin/env bash
# One spelling per fact (docs/cli.md): every reporting command, in text and
# in JSON, spells the same DN, fingerprint and time of the same key and
# certificate the same way:
#   DN           O=Acme, OU=Dev, CN=dev-1   (RFC 2253 escaping, in encoding order)
#   fingerprint  lowercase hex, no separators (as sha256sum prints it)
#   time         RFC 3339 UTC, 2027-01-31T12:00:00Z
. "$(dirname "$0")/lib.sh"
cd "$WORK"

check "root" "$ENROLL" ca init --dir root --subject '/O=Acme, Inc./CN=Spelling Root'
check "key" "$ENROLL" key new --type ec-p256 --out dev.key
check "csr" "$ENROLL" csr new --key dev.key --subject '/O=Acme/OU=Dev/CN=dev-1' --out dev.csr
check "cert" "$ENROLL" ca sign --dir root --profile device dev.csr --out dev.crt

DN='O=Acme, OU=Dev, CN=dev-1'
ISSUER='O=Acme\, Inc., CN=Spelling Root'
# The judges: openssl, not enroll.
SPKI=$(openssl pkey -in dev.key -pubout -outform DER | sha256sum | cut -d' ' -f1)
CERTFP=$(openssl x509 -in dev.crt -outform DER | sha256sum | cut -d' ' -f1)
[[ $SPKI =~ ^[0-9a-f]{64}$ ]] && pass || fail "openssl gave no SPKI fingerprint"

# text: the value after "LABEL:" on the first line that has it
field() { sed -n "s/^ *$2: *//p" "$1" | head -1; }

"$ENROLL" key show dev.key > key.txt && "$ENROLL" key show dev.key --json > key.json
"$ENROLL" csr show dev.csr > csr.txt && "$ENROLL" csr show dev.csr --json > csr.json
"$ENROLL" cert show dev.crt > cert.txt && "$ENROLL" cert show dev.crt --json > cert.json
"$ENROLL" match dev.key dev.csr dev.crt > match.txt && "$ENROLL" match dev.key dev.csr dev.crt --json > match.json
"$ENROLL" ca list --dir root > list.txt && "$ENROLL" ca list --dir root --json > list.json
"$ENROLL" verify --root root/cert.pem dev.crt > verify.txt 2>&1
"$ENROLL" verify --root root/cert.pem dev.crt --json > verify.json

# The subject DN.
same "csr show: subject" "$(field csr.txt Subject)" "$DN"
same "csr show --json: subject" "$(json csr.json .subject)" "$DN"
same "cert show: subject" "$(field cert.txt Subject)" "$DN"
same "cert show --json: subject" "$(json cert.json .subject)" "$DN"
same "ca list --json: subject" "$(json list.json '.[0].subject')" "$DN"
contains list.txt "$DN" "ca list: subject"
same "verify --json: subject" "$(json verify.json .subject)" "$DN"
contains verify.txt "($DN," "verify: subject"
# The issuer, with a comma inside a value: escaped, never split.
same "cert show: issuer" "$(field cert.txt Issuer)" "$ISSUER"
same "cert show --json: issuer" "$(json cert.json .issuer)" "$ISSUER"
"$ENROLL" cert show root/cert.pem --json > root.json
same "cert show --json: the root's own subject" "$(json root.json .subject)" "$ISSUER"

# The public key's fingerprint.
same "key show: SPKI" "$(field key.txt 'SPKI SHA-256')" "$SPKI"
same "key show --json: SPKI" "$(json key.json .spki_sha256)" "$SPKI"
same "csr show: SPKI" "$(field csr.txt 'SPKI SHA-256')" "$SPKI"
same "csr show --json: SPKI" "$(json csr.json .public_key.spki_sha256)" "$SPKI"
same "cert show: SPKI" "$(field cert.txt 'SPKI SHA-256')" "$SPKI"
same "cert show --json: SPKI" "$(json cert.json .public_key.spki_sha256)" "$SPKI"
same "match: SPKI of each" "$(cut -d' ' -f1 match.txt | head -3 | sort -u)" "$SPKI"
same "match --json: SPKI of each" "$(json match.json '.items[].spki_sha256' | sort -u)" "$SPKI"
same "ca list --json: SPKI" "$(json list.json '.[0].spki_sha256')" "$SPKI"
# The certificate's own fingerprint.
same "cert show: fingerprint" "$(field cert.txt 'SHA-256 Fingerprint')" "$CERTFP"
same "cert show --json: fingerprint" "$(json cert.json .fingerprint_sha256)" "$CERTFP"

# Times: RFC 3339 UTC, and the same instant spelled the same everywhere.
NA=$(json cert.json .validity.not_after)
[[ $NA =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] && pass || fail "cert show --json: not_after '$NA' is not RFC 3339 UTC"
same "cert show: not after" "$(field cert.txt 'Not After')" "$NA"
same "ca list --json: not_after" "$(json list.json '.[0].not_after')" "$NA"
contains list.txt "$NA" "ca list: not after"
same "openssl agrees on the instant" "$(date -u -d "$(openssl x509 -in dev.crt -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ)" "$NA"
finish
