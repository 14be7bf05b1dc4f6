#!/usr/bin/env bash
# `enroll cert show` reads certificates the way `openssl x509` and GnuTLS
# `certtool` do, and `enroll verify` reaches the same verdict as `openssl
# verify` on a root -> intermediate -> device chain built with the openssl CLI
# (the way the DPS bootstrap guides build it): good, revoked, wrong purpose,
# expired, not yet valid, unknown issuer, missing CRL.
. "$(dirname "$0")/lib.sh"
cd "$WORK"

# ---- a PKI made with the openssl CLI ----------------------------------------
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
for k in root inter dev srv revoked other; do newkey "$k"; done

openssl req -x509 -new -key root.key -sha256 -days 3650 -subj "/O=Acme Devices/CN=acme-root" \
    -addext "basicConstraints=critical,CA:true,pathlen:1" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out root.pem
openssl req -x509 -new -key other.key -sha256 -days 3650 -subj "/CN=other-root" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out other-root.pem

cat > inter.ext <<'EOF'
basicConstraints = critical,CA:true,pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
EOF
openssl req -new -key inter.key -subj "/O=Acme Devices/CN=acme-intermediate" -out inter.csr
openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -CAcreateserial -days 1825 -sha256 \
    -extfile inter.ext -out inter.pem 2>/dev/null

device() { # NAME CN EKU
  cat > "$1.ext" <<EOF
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $3
subjectAltName = DNS:$2
authorityKeyIdentifier = keyid:always,issuer
crlDistributionPoints = URI:http://pki.acme.example/intermediate.crl
authorityInfoAccess = OCSP;URI:http://ocsp.acme.example,caIssuers;URI:http://pki.acme.example/intermediate.crt
EOF
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA inter.pem -CAkey inter.key -CAcreateserial -days 365 -sha256 \
      -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
device dev dev-001 clientAuth
device srv srv-001 serverAuth
device revoked dev-002 clientAuth

# CRLs with `openssl ca`: the intermediate revokes dev-002; the root revokes nothing.
ca_conf() { # DIR
  mkdir -p "$1"; : > "$1/index.txt"; echo 01 > "$1/crlnumber"
  cat > "$1/ca.cnf" <<EOF
[ ca ]
default_ca = this
[ this ]
database = $WORK/$1/index.txt
crlnumber = $WORK/$1/crlnumber
default_md = sha256
default_crl_days = 30
EOF
}
ca_conf rootca
ca_conf interca
openssl ca -config interca/ca.cnf -keyfile inter.key -cert inter.pem -revoke revoked.pem \
    -crl_reason keyCompromise 2>/dev/null
openssl ca -config interca/ca.cnf -keyfile inter.key -cert inter.pem -gencrl -out inter.crl 2>/dev/null
openssl ca -config rootca/ca.cnf -keyfile root.key -cert root.pem -gencrl -out root.crl 2>/dev/null
openssl crl -in root.crl -outform DER -out root.crl.der
[ -s inter.crl ] && [ -s root.crl.der ] && pass || fail "setup: openssl ca -gencrl made no CRL"

# ---- cert show against openssl x509 and certtool -----------------------------
iso() { date -u -d "$1" +%Y-%m-%dT%H:%M:%SZ; }
for name in root inter dev; do
  check "$name: cert show --json" "$ENROLL" cert show "$name.pem" --json
  cp "$WORK/.out" "$name.json"
  same "$name: serial vs openssl" "$(json "$name.json" .serial)" \
      "$(openssl x509 -in "$name.pem" -noout -serial | cut -d= -f2)"
  same "$name: subject vs openssl" "$(json "$name.json" .subject)" \
      "$(openssl x509 -in "$name.pem" -noout -subject -nameopt sep_comma_plus_space,sname,esc_2253 | sed 's/^subject=//')"
  same "$name: issuer vs openssl" "$(json "$name.json" .issuer)" \
      "$(openssl x509 -in "$name.pem" -noout -issuer -nameopt sep_comma_plus_space,sname,esc_2253 | sed 's/^issuer=//')"
  same "$name: notBefore vs openssl" "$(json "$name.json" .validity.not_before)" \
      "$(iso "$(openssl x509 -in "$name.pem" -noout -startdate | cut -d= -f2)")"
  same "$name: notAfter vs openssl" "$(json "$name.json" .validity.not_after)" \
      "$(iso "$(openssl x509 -in "$name.pem" -noout -enddate | cut -d= -f2)")"
  same "$name: fingerprint vs openssl" "$(json "$name.json" .fingerprint_sha256)" \
      "$(openssl x509 -in "$name.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)"
  same "$name: SPKI vs openssl" "$(json "$name.json" .public_key.spki_sha256)" \
      "$(openssl x509 -in "$name.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)"

  # certtool: an independent ASN.1 implementation.
  certtool --certificate-info --infile "$name.pem" > "$name.gnutls.txt" 2>&1
  same "$name: serial vs certtool" "$(json "$name.json" .serial | tr A-F a-f)" \
      "$(sed -n 's/^\s*Serial Number (hex): //p' "$name.gnutls.txt" | sed 's/^\(00\)*//')" # certtool prints the DER bytes, with the 00 that keeps a high-bit serial positive
  same "$name: subject vs certtool (RFC 4514 order)" \
      "$(json "$name.json" '[.subject_fields | reverse[] | "\(.field)=\(.value)"] | join(",")')" \
      "$(sed -n 's/^\s*Subject: //p' "$name.gnutls.txt")"
  same "$name: fingerprint vs certtool" "$(json "$name.json" .fingerprint_sha256)" \
      "$(sed -n '/Fingerprint:/,/Public Key ID/s/^\s*sha256:\([0-9a-f]*\)$/\1/p' "$name.gnutls.txt")"
  same "$name: SKI vs certtool" \
      "$(json "$name.json" '.extensions[] | select(.name=="subjectKeyIdentifier") | .value')" \
      "$(sed -n '/Subject Key Identifier/{n;s/^\s*//p}' "$name.gnutls.txt")"
  same "$name: self_signed" "$(json "$name.json" .self_signed)" "$([ $name = root ] && echo true || echo false)"
done
same "dev: AKI is the intermediate's SKI" \
    "$(json dev.json '.extensions[] | select(.name=="authorityKeyIdentifier") | .value.key_id')" \
    "$(json inter.json '.extensions[] | select(.name=="subjectKeyIdentifier") | .value')"
same "dev: AKI vs certtool" \
    "$(json dev.json '.extensions[] | select(.name=="authorityKeyIdentifier") | .value.key_id')" \
    "$(sed -n '/Authority Key Identifier/{n;s/^\s*//p}' dev.gnutls.txt)"
same "dev: CRL distribution point" \
    "$(json dev.json '.extensions[] | select(.name=="crlDistributionPoints") | .value[0].full_name[0].value')" \
    "http://pki.acme.example/intermediate.crl"
same "dev: AIA OCSP" \
    "$(json dev.json '.extensions[] | select(.name=="authorityInfoAccess") | .value[] | select(.method=="OCSP") | .location.value')" \
    "http://ocsp.acme.example"
same "dev: EKU" "$(json dev.json '.extensions[] | select(.name=="extendedKeyUsage") | .value | join(",")')" "clientAuth"
same "inter: pathlen" "$(json inter.json '.extensions[] | select(.name=="basicConstraints") | .value.pathlen')" "0"

# Every encoding of the same certificate reads the same.
openssl x509 -in dev.pem -outform DER -out dev.der
openssl x509 -in dev.pem -outform DER | base64 -w0 > dev.b64
for f in dev.der dev.b64; do
  check "$f: cert show" "$ENROLL" cert show "$f" --json
  same "$f: same fingerprint" "$(json "$WORK/.out" .fingerprint_sha256)" "$(json dev.json .fingerprint_sha256)"
done

# A bundle: every certificate, in order; a JSON array.
{ echo "# device, then its chain"; cat dev.pem inter.pem root.pem; } > chain.pem
check "bundle: cert show --json" "$ENROLL" cert show chain.pem --json
same "bundle: three in the array" "$(json "$WORK/.out" length)" "3"
same "bundle: order" "$(json "$WORK/.out" '[.[].subject_fields[-1].value] | join(" ")')" \
    "dev-001 acme-intermediate acme-root"
check "bundle: cert show (text)" "$ENROLL" cert show chain.pem
same "bundle: three in the text" "$(grep -c '^Certificate:' "$WORK/.out")" "3"
contains "$WORK/.out" "Serial Number: $(json dev.json .serial)" "text serial"
contains "$WORK/.out" "Subject: O=Acme Devices, CN=acme-root (self-signed)" "text self-signed root"

# Bad input: exit 1 with the place named; a missing file is exit 3.
head -c 300 dev.pem > truncated.pem
expect_exit 3 "truncated PEM" "$ENROLL" cert show truncated.pem
contains "$WORK/.err" "no -----END line" "truncated PEM message"
{ cat dev.pem; cat dev.key; } > with-key.pem
expect_exit 3 "bundle with a key" "$ENROLL" cert show with-key.pem
contains "$WORK/.err" "is a 'PRIVATE KEY', not a CERTIFICATE" "key block message"
expect_exit 3 "a CSR is not a certificate" "$ENROLL" cert show dev.csr
expect_exit 3 "missing file" "$ENROLL" cert show nonexistent.pem
expect_exit 2 "no file" "$ENROLL" cert show
expect_exit 2 "unknown verb" "$ENROLL" cert frobnicate x
expect_exit 0 "cert --help" "$ENROLL" cert --help
contains "$WORK/.out" "Examples:" "cert help has examples"

# ---- verify against openssl verify --------------------------------------------
# verdict NAME WANT_EXIT WANT_REASON OPENSSL_ARGS -- ENROLL_ARGS
verdict() {
  local name=$1 want=$2 reason=$3; shift 3
  local ossl=() ours=()
  while [ "$1" != "--" ]; do ossl+=("$1"); shift; done; shift
  ours=("$@")
  openssl verify "${ossl[@]}" > "$name.ossl" 2>&1
  local ossl_rc=$?
  expect_exit "$want" "$name: enroll verify exit" "$ENROLL" verify --json "${ours[@]}"
  same "$name: reason" "$(json "$WORK/.out" .reason)" "$reason"
  if [ "$want" -eq 0 ]; then
    same "$name: openssl verify agrees (OK)" "$ossl_rc" 0
  else
    if [ "$ossl_rc" -ne 0 ]; then pass; else fail "$name: openssl verify accepted what enroll rejected"; fi
  fi
}

verdict good 0 ok -CAfile root.pem -untrusted inter.pem -purpose sslclient dev.pem \
    -- --root root.pem --untrusted inter.pem --purpose client dev.pem
same "good: chain length" "$(json "$WORK/.out" .chain_length)" "3"
verdict good-server 0 ok -CAfile root.pem -untrusted inter.pem -purpose sslserver srv.pem \
    -- --root root.pem --untrusted inter.pem --purpose server srv.pem
verdict good-bundle 0 ok -CAfile root.pem -untrusted chain.pem dev.pem \
    -- --root root.pem chain.pem
verdict good-with-crls 0 ok -CAfile root.pem -untrusted inter.pem -crl_check_all -CRLfile root.crl -CRLfile inter.crl dev.pem \
    -- --root root.pem --untrusted inter.pem --crl root.crl.der --crl inter.crl dev.pem

verdict revoked 1 revoked -CAfile root.pem -untrusted inter.pem -crl_check_all -CRLfile root.crl -CRLfile inter.crl revoked.pem \
    -- --root root.pem --untrusted inter.pem --crl root.crl.der --crl inter.crl revoked.pem
contains revoked.ossl "certificate revoked" "revoked: openssl's reason"
same "revoked: depth" "$(json "$WORK/.out" .depth)" "0"
contains "$WORK/.out" "keyCompromise" "revoked: the CRL reason is named"
contains "$WORK/.err" "[revoked]" "revoked: reason on stderr"

verdict crl-missing 1 crl-problem -CAfile root.pem -untrusted inter.pem -crl_check_all -CRLfile inter.crl dev.pem \
    -- --root root.pem --untrusted inter.pem --crl inter.crl dev.pem
# The leaf alone (openssl's -crl_check): a root that publishes no CRL.
verdict leaf-crl-only 0 ok -CAfile root.pem -untrusted inter.pem -crl_check -CRLfile inter.crl dev.pem \
    -- --root root.pem --untrusted inter.pem --crl inter.crl --crl-leaf-only dev.pem
verdict leaf-crl-only-revoked 1 revoked -CAfile root.pem -untrusted inter.pem -crl_check -CRLfile inter.crl revoked.pem \
    -- --root root.pem --untrusted inter.pem --crl inter.crl --crl-leaf-only revoked.pem
expect_exit 2 "--crl-leaf-only without --crl" "$ENROLL" verify --root root.pem --crl-leaf-only dev.pem
contains crl-missing.ossl "unable to get certificate CRL" "crl-missing: openssl's reason"

verdict wrong-purpose 1 wrong-usage -CAfile root.pem -untrusted inter.pem -purpose sslclient srv.pem \
    -- --root root.pem --untrusted inter.pem --purpose client srv.pem
contains wrong-purpose.ossl "unsuitable certificate purpose" "wrong-purpose: openssl's reason"

later=$(date -u -d '+2 years' +%Y-%m-%dT%H:%M:%SZ)
verdict expired 1 expired -CAfile root.pem -untrusted inter.pem -attime "$(date -u -d "$later" +%s)" dev.pem \
    -- --root root.pem --untrusted inter.pem --at "$later" dev.pem
contains expired.ossl "certificate has expired" "expired: openssl's reason"
contains "$WORK/.out" "expired on $(json dev.json .validity.not_after)" "expired: the date is named"

earlier=$(date -u -d '-3 days' +%Y-%m-%d)
verdict not-yet-valid 1 not-yet-valid -CAfile root.pem -untrusted inter.pem -attime "$(date -u -d "$earlier" +%s)" dev.pem \
    -- --root root.pem --untrusted inter.pem --at "$earlier" dev.pem
contains not-yet-valid.ossl "certificate is not yet valid" "not-yet-valid: openssl's reason"

verdict no-intermediate 1 unknown-issuer -CAfile root.pem dev.pem -- --root root.pem dev.pem
verdict wrong-root 1 unknown-issuer -CAfile other-root.pem -untrusted inter.pem dev.pem \
    -- --root other-root.pem --untrusted inter.pem dev.pem
contains "$WORK/.out" "acme-root" "wrong-root: the missing issuer is named"

# Text output and exit codes.
expect_exit 0 "text: valid" "$ENROLL" verify --root root.pem --untrusted inter.pem dev.pem
contains "$WORK/.out" "dev.pem: OK" "text: OK line"
expect_exit 1 "text: invalid" "$ENROLL" verify --root root.pem dev.pem
contains "$WORK/.err" "certificate at depth 0 (CN=dev-001)" "text: which certificate"
expect_exit 2 "no --root" "$ENROLL" verify dev.pem
expect_exit 2 "no certificate" "$ENROLL" verify --root root.pem
expect_exit 2 "bad --purpose" "$ENROLL" verify --root root.pem --purpose email dev.pem
expect_exit 2 "bad --at" "$ENROLL" verify --root root.pem --at 2027-13-01 dev.pem
contains "$WORK/.err" "RFC 3339" "bad --at message"
expect_exit 3 "missing certificate file" "$ENROLL" verify --root root.pem missing.pem
expect_exit 3 "unreadable root" "$ENROLL" verify --root truncated.pem dev.pem
expect_exit 3 "a certificate given as a CRL" "$ENROLL" verify --root root.pem --crl root.pem dev.pem
contains "$WORK/.err" "root.pem" "CRL error names the file"
expect_exit 0 "verify --help" "$ENROLL" verify --help
contains "$WORK/.out" "Examples:" "verify help has examples"

finish
