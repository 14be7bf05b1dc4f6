#!/usr/bin/env bash
# CSRs made by `openssl req` with every key type are described correctly by
# `enroll csr show --json`, judged against openssl's own view of them.
. "$(dirname "$0")/lib.sh"
cd "$WORK"

declare -A GENKEY=(
  [ec-p256]="-newkey ec -pkeyopt ec_paramgen_curve:P-256"
  [ec-p384]="-newkey ec -pkeyopt ec_paramgen_curve:P-384"
  [rsa-2048]="-newkey rsa:2048"
  [rsa-3072]="-newkey rsa:3072"
  [rsa-4096]="-newkey rsa:4096"
  [ed25519]="-newkey ed25519"
)
declare -A ALGORITHM=([ec-p256]=EC [ec-p384]=EC [rsa-2048]=RSA [rsa-3072]=RSA [rsa-4096]=RSA [ed25519]=Ed25519)
declare -A BITS=([ec-p256]=256 [ec-p384]=384 [rsa-2048]=2048 [rsa-3072]=3072 [rsa-4096]=4096 [ed25519]=256)
declare -A SIGALG=([ec-p256]=ecdsa-with-SHA256 [ec-p384]=ecdsa-with-SHA256 [rsa-2048]=sha256WithRSAEncryption
                   [rsa-3072]=sha256WithRSAEncryption [rsa-4096]=sha256WithRSAEncryption [ed25519]=ED25519)

for type in "${!GENKEY[@]}"; do
  # shellcheck disable=SC2086
  openssl req -new ${GENKEY[$type]} -nodes -keyout "$type.key" -out "$type.csr" \
      -subj '/C=DE/L=Berlin/O=Beispiel GmbH/OU=Fleet/CN=sensor-17/emailAddress=ops@beispiel.example' \
      -addext 'subjectAltName=DNS:sensor-17.beispiel.example,IP:2001:db8::17' \
      -addext 'keyUsage=critical,digitalSignature' -addext 'extendedKeyUsage=clientAuth' 2>/dev/null
  check "$type: show --json" "$ENROLL" csr show "$type.csr" --json
  cp "$WORK/.out" "$type.json"
  same "$type: algorithm" "$(json "$type.json" .public_key.algorithm)" "${ALGORITHM[$type]}"
  same "$type: bits" "$(json "$type.json" .public_key.bits)" "${BITS[$type]}"
  same "$type: type" "$(json "$type.json" .public_key.type)" "$type"
  same "$type: signature algorithm" "$(json "$type.json" .signature_algorithm)" "${SIGALG[$type]}"
  same "$type: signature valid" "$(json "$type.json" .signature_valid)" "true"
  same "$type: subject in order" "$(json "$type.json" '[.subject_fields[].field] | join(",")')" "C,L,O,OU,CN,emailAddress"
  same "$type: subject values" "$(json "$type.json" '[.subject_fields[].value] | join("|")')" \
      "DE|Berlin|Beispiel GmbH|Fleet|sensor-17|ops@beispiel.example"
  same "$type: email is IA5String" "$(json "$type.json" '.subject_fields[5].string_type')" "IA5String"
  same "$type: SAN" "$(json "$type.json" '.extensions[] | select(.name=="subjectAltName") | [.value[] | .type + ":" + .value] | join(",")')" \
      "DNS:sensor-17.beispiel.example,IP:2001:db8::17"
  same "$type: KU" "$(json "$type.json" '.extensions[] | select(.name=="keyUsage") | (.critical|tostring) + ":" + (.value|join(","))')" \
      "true:digitalSignature"
  same "$type: EKU" "$(json "$type.json" '.extensions[] | select(.name=="extendedKeyUsage") | .value | join(",")')" "clientAuth"
  theirs=$(openssl req -in "$type.csr" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
  same "$type: SPKI fingerprint" "$(json "$type.json" .public_key.spki_sha256)" "$theirs"
  case $type in ec-*)
    same "$type: curve" "$(json "$type.json" .public_key.curve)" "P-${BITS[$type]}" ;;
  esac
  case $type in rsa-*)
    same "$type: exponent" "$(json "$type.json" .public_key.exponent)" "65537" ;;
  esac
  expect_exit 0 "$type: enroll verifies openssl's CSR" "$ENROLL" csr verify "$type.csr"
  expect_exit 0 "$type: enroll matches openssl's key and CSR" "$ENROLL" match "$type.key" "$type.csr"
  check "$type: text show" "$ENROLL" csr show "$type.csr"
  contains "$WORK/.out" "Subject: C=DE, L=Berlin, O=Beispiel GmbH, OU=Fleet, CN=sensor-17, emailAddress=ops@beispiel.example" "$type: text subject"
done

finish
