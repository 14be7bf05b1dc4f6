#!/usr/bin/env bash
# Regenerates the CSR fixtures for tests/unit/test_lint.c. Each file carries
# one fault (the name says which), so a test can assert that exactly that
# finding appears. Keys are throwaway: they live in a temporary directory.
#
# Requests that `openssl req` refuses to make (wrong string types, version 1,
# duplicate attributes...) are written as openssl asn1parse -genconf templates
# and then really signed, so that their signatures verify and the fault under
# test is the only one.
#
# Usage: tests/data/lint/make-fixtures.sh   (from anywhere; needs openssl 3)
set -euo pipefail

OUT="$(cd "$(dirname "$0")" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

pem_wrap() { # DER file -> PEM with the given label on stdout
    echo "-----BEGIN $2-----"
    openssl base64 -in "$1"
    echo "-----END $2-----"
}

req() { # name, then openssl req options
    local name="$1"
    shift
    openssl req -new -nodes -out "$OUT/$name" "$@" 2>/dev/null
}

# --- made by openssl req -----------------------------------------------------
EC=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$TMP/k.pem")
req clean-ec-p256.csr "${EC[@]}" -subj /CN=dev-001
req clean-ed25519.csr -newkey ed25519 -keyout "$TMP/ed.pem" -subj /CN=dev-001
req clean-rsa-pss.csr -newkey rsa:2048 -keyout "$TMP/pss.pem" -subj /CN=dev-001 \
    -sigopt rsa_padding_mode:pss -sha256
req rsa-1024.csr -newkey rsa:1024 -keyout "$TMP/r1024.pem" -subj /CN=dev-001
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -pkeyopt rsa_keygen_pubexp:3 \
    -out "$TMP/e3.pem" 2>/dev/null
req rsa-exponent-3.csr -key "$TMP/e3.pem" -subj /CN=dev-001
req ec-secp256k1.csr -newkey ec -pkeyopt ec_paramgen_curve:secp256k1 -keyout "$TMP/k1.pem" \
    -subj /CN=dev-001
req ec-p521.csr -newkey ec -pkeyopt ec_paramgen_curve:P-521 -keyout "$TMP/p521.pem" \
    -subj /CN=dev-001
req ed448.csr -newkey ed448 -keyout "$TMP/ed448.pem" -subj /CN=dev-001
req sha1.csr -key "$TMP/k.pem" -sha1 -subj /CN=dev-001
req empty-subject.csr -key "$TMP/k.pem" -subj /
req no-cn.csr -key "$TMP/k.pem" -subj /O=Acme
req cn-multiple.csr -key "$TMP/k.pem" -subj /CN=dev-001/CN=dev-002
req san-wildcard.csr -key "$TMP/k.pem" -subj /CN=dev-001 \
    -addext "subjectAltName=DNS:*.example.com"
req san-bad-dns.csr -key "$TMP/k.pem" -subj /CN=dev-001 \
    -addext "subjectAltName=DNS:ok.example.com,DNS:exa mple..com"
req san-empty.csr -key "$TMP/k.pem" -subj /CN=dev-001 -addext "subjectAltName=DER:3000"
req san-ip-length.csr -key "$TMP/k.pem" -subj /CN=dev-001 \
    -addext "subjectAltName=DER:30078705C0A8000101"
req san-malformed.csr -key "$TMP/k.pem" -subj /CN=dev-001 \
    -addext "subjectAltName=DER:04020000"
req ext-unknown-critical.csr -key "$TMP/k.pem" -subj /CN=dev-001 \
    -addext "1.3.6.1.4.1.55555.1=critical,DER:0500"
req cn-hostname-bad.csr -key "$TMP/k.pem" -subj "/CN=dev_001.example.com"

# Faults added to a good request after signing.
openssl req -in "$OUT/clean-ec-p256.csr" -outform DER -out "$TMP/clean.der"
cp "$TMP/clean.der" "$TMP/badsig.der"
last=$(($(stat -c %s "$TMP/badsig.der") - 1))
printf "$(printf '\\x%02x' $((0x$(xxd -s "$last" -l 1 -p "$TMP/badsig.der") ^ 0x01)))" |
    dd of="$TMP/badsig.der" bs=1 seek="$last" conv=notrunc 2>/dev/null
pem_wrap "$TMP/badsig.der" "CERTIFICATE REQUEST" >"$OUT/signature-bad.csr"
{ cat "$OUT/clean-ec-p256.csr"; echo "garbage after the END line"; } >"$OUT/trailing-garbage.csr"
pem_wrap "$TMP/clean.der" "CERTIFICATE" >"$OUT/pem-label-wrong.csr"
# The outer SEQUENCE length is not signed: write it in long form (81 cc -> 82 00 cc).
{ printf '\x30\x82\x00'; tail -c +3 "$TMP/clean.der"; } >"$OUT/length-not-minimal.der"

# --- hand-made with asn1parse -genconf, then signed --------------------------
openssl pkey -in "$TMP/k.pem" -pubout -outform DER -out "$TMP/spki.der"
POINT=$(tail -c 65 "$TMP/spki.der" | xxd -p | tr -d '\n')

common_sections() {
    cat <<EOF
[spki]
alg=SEQUENCE:spki_alg
key=FORMAT:HEX,BITSTRING:$POINT
[spki_alg]
type=OID:id-ecPublicKey
curve=OID:prime256v1
[rdn_cn]
atv=SEQUENCE:atv_cn
[atv_cn]
type=OID:commonName
value=UTF8:dev-001
[no_attrs]
EOF
}

# signed NAME: reads the [tbs] section and its helpers from stdin.
signed() {
    local name="$1" body="$TMP/$1.body"
    cat >"$body"
    common_sections >>"$body"
    { echo "asn1=SEQUENCE:tbs"; cat "$body"; } >"$TMP/tbs.cnf"
    openssl asn1parse -genconf "$TMP/tbs.cnf" -noout -out "$TMP/tbs.der"
    local sig
    sig=$(openssl dgst -sha256 -sign "$TMP/k.pem" "$TMP/tbs.der" | xxd -p | tr -d '\n')
    {
        echo "asn1=SEQUENCE:req"
        echo "[req]"
        echo "tbs=SEQUENCE:tbs"
        echo "alg=SEQUENCE:sig_alg"
        echo "sig=FORMAT:HEX,BITSTRING:$sig"
        echo "[sig_alg]"
        echo "alg=OID:ecdsa-with-SHA256"
        cat "$body"
    } >"$TMP/req.cnf"
    openssl asn1parse -genconf "$TMP/req.cnf" -noout -out "$TMP/req.der"
    pem_wrap "$TMP/req.der" "CERTIFICATE REQUEST" >"$OUT/$name"
}

# subject_one NAME ATTRIBUTE-TYPE VALUE [CN]: a subject of one field (plus CN).
subject_one() {
    local name="$1" type="$2" value="$3" with_cn="${4:-yes}"
    {
        echo "[tbs]"
        echo "version=INTEGER:0"
        echo "subject=SEQUENCE:subject"
        echo "pubkey=SEQUENCE:spki"
        echo "attrs=IMPLICIT:0C,SET:no_attrs"
        echo "[subject]"
        echo "rdn1=SET:rdn_x"
        [ "$with_cn" = yes ] && echo "rdn2=SET:rdn_cn"
        echo "[rdn_x]"
        echo "atv=SEQUENCE:atv_x"
        echo "[atv_x]"
        echo "type=OID:$type"
        echo "value=$value"
    } | signed "$name"
}

subject_one country-usa.csr countryName "PRINTABLESTRING:USA"
subject_one country-lowercase.csr countryName "PRINTABLESTRING:uk"
subject_one country-utf8.csr countryName "UTF8:US"
subject_one cn-bmpstring.csr commonName "BMPSTRING:dev-001" no
subject_one cn-65-chars.csr commonName "UTF8:$(printf 'a%.0s' $(seq 65))" no
subject_one cn-empty-value.csr commonName "UTF8:" no
subject_one printable-with-at.csr organizationName "IMPLICIT:19U,FORMAT:HEX,OCTETSTRING:41634D4540"
subject_one ia5-high-byte.csr emailAddress "IMPLICIT:22U,FORMAT:HEX,OCTETSTRING:E9406578616D706C652E636F6D"
subject_one utf8-invalid.csr commonName "IMPLICIT:12U,FORMAT:HEX,OCTETSTRING:646576FF" no

# tbs_with NAME VERSION ATTRS-SECTION-BODY: subject CN=dev-001, the given
# version and attribute sections.
tbs_with() {
    local name="$1" version="$2"
    {
        echo "[tbs]"
        echo "version=INTEGER:$version"
        echo "subject=SEQUENCE:subject"
        echo "pubkey=SEQUENCE:spki"
        echo "attrs=IMPLICIT:0C,SET:attrs"
        echo "[subject]"
        echo "rdn1=SET:rdn_cn"
        cat
        cat <<'EOF'
[ext_san]
id=OID:subjectAltName
value=FORMAT:HEX,OCTETSTRING:3009820764657630303031
[ext_san2]
id=OID:subjectAltName
value=FORMAT:HEX,OCTETSTRING:3009820764657630303032
[ext_san_explicit_false]
id=OID:subjectAltName
critical=BOOLEAN:false
value=FORMAT:HEX,OCTETSTRING:3009820764657630303031
EOF
    } | signed "$name"
}

echo "[attrs]" | tbs_with version-1.csr 1

tbs_with attr-duplicate-ext-req.csr 0 <<'EOF'
[attrs]
a1=SEQUENCE:ext_req1
a2=SEQUENCE:ext_req2
[ext_req1]
type=OID:extReq
values=SET:ext_req1_values
[ext_req1_values]
exts=SEQUENCE:exts1
[exts1]
e1=SEQUENCE:ext_san
[ext_req2]
type=OID:extReq
values=SET:ext_req2_values
[ext_req2_values]
exts=SEQUENCE:exts2
[exts2]
e1=SEQUENCE:ext_san2
EOF

tbs_with attr-duplicate-challenge.csr 0 <<'EOF'
[attrs]
a1=SEQUENCE:cp1
a2=SEQUENCE:cp2
[cp1]
type=OID:challengePassword
values=SET:cp1_values
[cp1_values]
v=UTF8:secret-one
[cp2]
type=OID:challengePassword
values=SET:cp2_values
[cp2_values]
v=UTF8:secret-two
EOF

tbs_with attr-challenge-two-values.csr 0 <<'EOF'
[attrs]
a1=SEQUENCE:cp1
[cp1]
type=OID:challengePassword
values=SET:cp1_values
[cp1_values]
v1=UTF8:secret-one
v2=UTF8:secret-two
EOF

tbs_with attr-unknown.csr 0 <<'EOF'
[attrs]
a1=SEQUENCE:other
[other]
type=OID:1.3.6.1.4.1.55555.2
values=SET:other_values
[other_values]
v=UTF8:hello
EOF

tbs_with ext-duplicate-oid.csr 0 <<'EOF'
[attrs]
a1=SEQUENCE:ext_req1
[ext_req1]
type=OID:extReq
values=SET:ext_req1_values
[ext_req1_values]
exts=SEQUENCE:exts1
[exts1]
e1=SEQUENCE:ext_san
e2=SEQUENCE:ext_san2
EOF

tbs_with ext-req-malformed.csr 0 <<'EOF'
[attrs]
a1=SEQUENCE:ext_req1
[ext_req1]
type=OID:extReq
values=SET:ext_req1_values
[ext_req1_values]
exts=INTEGER:5
EOF

tbs_with ext-not-der.csr 0 <<'EOF'
[attrs]
a1=SEQUENCE:ext_req1
[ext_req1]
type=OID:extReq
values=SET:ext_req1_values
[ext_req1_values]
exts=SEQUENCE:exts1
[exts1]
e1=SEQUENCE:ext_san_explicit_false
EOF

echo "fixtures written to $OUT"
