#!/usr/bin/env bash
# Every CSR enroll builds, for every key type, is accepted by `openssl req
# -verify` and read the same way by `openssl req -text` and GnuTLS `certtool
# --crq-info`: subject, key, requested extensions, public key fingerprint.
. "$(dirname "$0")/lib.sh"
cd "$WORK"

SUBJECT='/C=US/ST=California/O=Acme, Inc./CN=dev-001'
SAN='DNS:dev-001.example.com,IP:192.0.2.7,URI:urn:dev:001,email:ops@acme.example'

for type in ec-p256 ec-p384 rsa-2048 rsa-3072 rsa-4096 ed25519; do
  check "$type: key new" "$ENROLL" key new --type "$type" --out "$type.key"
  check "$type: csr new" "$ENROLL" csr new --key "$type.key" --subject "$SUBJECT" --san "$SAN" \
      --ku digitalSignature --eku clientAuth,serverAuth --out "$type.csr"

  # openssl: proof of possession and the decoded content.
  expect_exit 0 "$type: openssl req -verify" openssl req -in "$type.csr" -noout -verify
  contains "$WORK/.err" "verify OK" "$type: openssl verify message"
  openssl req -in "$type.csr" -noout -text > "$type.ossl.txt"
  contains "$type.ossl.txt" 'Subject: C = US, ST = California, O = "Acme, Inc.", CN = dev-001' "$type: openssl subject"
  contains "$type.ossl.txt" 'DNS:dev-001.example.com, IP Address:192.0.2.7, URI:urn:dev:001, email:ops@acme.example' "$type: openssl SAN"
  contains "$type.ossl.txt" 'X509v3 Key Usage: critical' "$type: openssl KU critical"
  contains "$type.ossl.txt" 'Digital Signature' "$type: openssl KU"
  contains "$type.ossl.txt" 'TLS Web Client Authentication, TLS Web Server Authentication' "$type: openssl EKU"
  contains "$type.ossl.txt" 'Version: 1 (0x0)' "$type: openssl version"

  # certtool: an independent ASN.1 implementation.
  certtool --crq-info --infile "$type.csr" > "$type.gnutls.txt" 2>&1
  contains "$type.gnutls.txt" 'Subject: CN=dev-001,O=Acme\, Inc.,ST=California,C=US' "$type: certtool subject"
  contains "$type.gnutls.txt" 'DNSname: dev-001.example.com' "$type: certtool SAN DNS"
  contains "$type.gnutls.txt" 'IPAddress: 192.0.2.7' "$type: certtool SAN IP"
  contains "$type.gnutls.txt" 'URI: urn:dev:001' "$type: certtool SAN URI"
  contains "$type.gnutls.txt" 'RFC822Name: ops@acme.example' "$type: certtool SAN email"
  contains "$type.gnutls.txt" 'Key Usage (critical):' "$type: certtool KU critical"
  contains "$type.gnutls.txt" 'Digital signature.' "$type: certtool KU"
  contains "$type.gnutls.txt" 'TLS WWW Client.' "$type: certtool EKU client"
  contains "$type.gnutls.txt" 'TLS WWW Server.' "$type: certtool EKU server"
  contains "$type.gnutls.txt" 'Self signature: verified' "$type: certtool self signature"

  # The same public key everywhere: our JSON, openssl, certtool, the key file.
  check "$type: csr show --json" "$ENROLL" csr show "$type.csr" --json
  cp "$WORK/.out" "$type.json"
  ours=$(json "$type.json" .public_key.spki_sha256)
  theirs=$(openssl req -in "$type.csr" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
  same "$type: SPKI fingerprint vs openssl" "$ours" "$theirs"
  gnutls=$(sed -n 's/^\s*sha256:\([0-9a-f]*\)$/\1/p' "$type.gnutls.txt" | head -1)
  same "$type: SPKI fingerprint vs certtool" "$ours" "$gnutls"
  same "$type: key type in JSON" "$(json "$type.json" .public_key.type)" "$type"
  same "$type: JSON subject CN" "$(json "$type.json" '.subject_fields[3].value')" "dev-001"
  same "$type: JSON signature valid" "$(json "$type.json" .signature_valid)" "true"
  same "$type: JSON SAN IP" "$(json "$type.json" '.extensions[] | select(.name=="subjectAltName") | .value[1].value')" "192.0.2.7"
  expect_exit 0 "$type: match key and csr" "$ENROLL" match "$type.key" "$type.csr"
  expect_exit 0 "$type: csr verify" "$ENROLL" csr verify "$type.csr"
done

# The DN string types the issue asks for, as an ASN.1 dump shows them.
check "types: csr" "$ENROLL" csr new --key ec-p256.key --subject '/C=US/CN=dev-001/serialNumber=SN 42/emailAddress=ops@acme.example' --out types.csr
openssl asn1parse -in types.csr > types.asn1
contains types.asn1 'PRINTABLESTRING   :US' "countryName is PrintableString"
contains types.asn1 'UTF8STRING        :dev-001' "CN is UTF8String"
contains types.asn1 'PRINTABLESTRING   :SN 42' "serialNumber is PrintableString"
contains types.asn1 'IA5STRING         :ops@acme.example' "emailAddress is IA5String"

# Repeated --dn fields give the same subject as --subject.
check "dn: csr" "$ENROLL" csr new --key ec-p256.key --dn C=US --dn 'O=Acme, Inc.' --dn CN=dev-001 --out dn.csr
same "dn: subject" "$(openssl req -in dn.csr -noout -subject)" 'subject=C = US, O = "Acme, Inc.", CN = dev-001'

# Hashes.
for hash in sha256 sha384 sha512; do
  check "hash $hash: ec" "$ENROLL" csr new --key ec-p384.key --dn CN=h --hash "$hash" --out "h-$hash.csr"
  openssl req -in "h-$hash.csr" -noout -text > "h-$hash.txt"
  contains "h-$hash.txt" "Signature Algorithm: ecdsa-with-${hash^^}" "ec signature uses $hash"
  check "hash $hash: rsa" "$ENROLL" csr new --key rsa-2048.key --dn CN=h --hash "$hash" --out "hr-$hash.csr"
  openssl req -in "hr-$hash.csr" -noout -text > "hr-$hash.txt"
  contains "hr-$hash.txt" "Signature Algorithm: ${hash}WithRSAEncryption" "rsa signature uses $hash"
  expect_exit 0 "hash $hash: openssl verifies rsa" openssl req -in "hr-$hash.csr" -noout -verify
done

# A CA request and a challenge password.
printf 'let-me-revoke\n' > challenge.txt
check "ca: csr" "$ENROLL" csr new --key ec-p256.key --dn 'CN=Acme Issuing CA' --ca --pathlen 0 --ku keyCertSign,cRLSign --challenge-password-file challenge.txt --out ca.csr
openssl req -in ca.csr -noout -text > ca.txt
contains ca.txt 'X509v3 Basic Constraints: critical' "ca: basicConstraints critical"
contains ca.txt 'CA:TRUE, pathlen:0' "ca: CA:TRUE pathlen 0"
contains ca.txt 'challengePassword' "ca: challengePassword attribute present"
contains ca.txt 'Certificate Sign, CRL Sign' "ca: key usage"
check "ca: show" "$ENROLL" csr show ca.csr
lacks "$WORK/.out" 'let-me-revoke' "show never prints the challenge password"
contains "$WORK/.out" 'challengePassword: <redacted>' "show says a challenge password is present"

# Output forms: DER and headerless base64 are the same bytes as the PEM.
check "format der" "$ENROLL" csr new --key ec-p256.key --dn CN=f --format der --out f.der
expect_exit 0 "openssl reads our DER" openssl req -inform DER -in f.der -noout -verify
check "format b64" "$ENROLL" csr show f.der --json
same "DER input detected" "$(json "$WORK/.out" .input_encoding)" "der"
"$ENROLL" csr new --key ec-p256.key --dn CN=f --format b64 > f.b64
same "b64 is one line" "$(wc -l < f.b64)" "1"
base64 -d f.b64 > f.b64.der
expect_exit 0 "b64 decodes to a CSR openssl verifies" openssl req -inform DER -in f.b64.der -noout -verify
check "show reads headerless base64" "$ENROLL" csr show f.b64 --json
same "base64 input detected" "$(json "$WORK/.out" .input_encoding)" "base64"

# Refuses to overwrite without --force.
expect_exit 1 "csr new refuses to overwrite" "$ENROLL" csr new --key ec-p256.key --dn CN=f --out f.der
contains "$WORK/.err" "--force" "overwrite refusal says how"
check "csr new --force overwrites" "$ENROLL" csr new --key ec-p256.key --dn CN=f --out f.der --force

finish
