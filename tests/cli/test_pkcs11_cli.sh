#!/usr/bin/env bash
# Keys that never leave a token: enroll against SoftHSM2, set up here in a
# scratch directory. Judged by openssl, certtool and pkcs11-tool.
. "$(dirname "$0")/lib.sh"
cd "$WORK"

MODULE=/usr/lib/softhsm/libsofthsm2.so
if [ ! -e "$MODULE" ]; then cannot_run "the PKCS#11 tests" "$MODULE is missing (softhsm2)"; finish; exit; fi
softhsm_token enroll-t
PIN=87654321
printf '%s\n' "$PIN" > pin.txt
printf 'not-the-pin-5150\n' > wrong-pin.txt
P11=(--module "$MODULE" --pin-file pin.txt)
P11TOOL=(pkcs11-tool --module "$MODULE" --token-label enroll-t --login --pin "$PIN")

for type in ec-p256 ec-p384 rsa-2048; do
  uri="pkcs11:token=enroll-t;object=key-$type"
  check "$type: key new in token" "$ENROLL" key new --type "$type" --key "$uri" "${P11[@]}" --json
  same "$type: sensitive" "$(json "$WORK/.out" .sensitive)" "true"
  same "$type: not extractable" "$(json "$WORK/.out" .extractable)" "false"
  same "$type: type" "$(json "$WORK/.out" .type)" "$type"

  check "$type: csr new signed by the token" "$ENROLL" csr new --key "$uri" "${P11[@]}" \
      --subject /O=Acme/CN=dev-p11 --san DNS:dev-p11.example --eku clientAuth --out "$type.csr"
  expect_exit 0 "$type: openssl req -verify" openssl req -in "$type.csr" -noout -verify
  contains "$WORK/.err" "verify OK" "$type: openssl says OK"
  certtool --crq-info --infile "$type.csr" > "$type.gnutls" 2>&1
  contains "$type.gnutls" "Self signature: verified" "$type: certtool verifies"
  contains "$type.gnutls" "DNSname: dev-p11.example" "$type: certtool reads SAN"
  expect_exit 0 "$type: token key matches its CSR" "$ENROLL" match "$uri" "$type.csr" "${P11[@]}" --json
  same "$type: match reports the token key's fingerprint" "$(json "$WORK/.out" '.items[0].spki_sha256')" \
      "$(json "$WORK/.out" '.items[1].spki_sha256')"
  theirs=$(openssl req -in "$type.csr" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
  same "$type: token key fingerprint vs openssl" "$(json "$WORK/.out" '.items[0].spki_sha256')" "$theirs"
done

# The token itself, asked independently, says the private key is sensitive and
# was never extractable; reading its value out must fail.
"${P11TOOL[@]}" --list-objects --type privkey > objects.txt 2>&1
contains objects.txt "key-ec-p256" "pkcs11-tool lists the key"
contains objects.txt "never extractable" "pkcs11-tool: never extractable"
contains objects.txt "sensitive" "pkcs11-tool: sensitive"
if "${P11TOOL[@]}" --read-object --type privkey --label key-ec-p256 -o leaked.der >/dev/null 2>&1 && [ -s leaked.der ]; then
  fail "private key value could be read out of the token"
else pass; fi

# Same label again: refused, then replaced with --force.
expect_exit 1 "existing object refused" "$ENROLL" key new --type ec-p256 --key 'pkcs11:token=enroll-t;object=key-ec-p256' "${P11[@]}"
contains "$WORK/.err" "--force" "says how to replace"
check "--force replaces" "$ENROLL" key new --type ec-p256 --key 'pkcs11:token=enroll-t;object=key-ec-p256' "${P11[@]}" --force
expect_exit 1 "old CSR no longer matches the replaced key" "$ENROLL" match 'pkcs11:token=enroll-t;object=key-ec-p256' ec-p256.csr "${P11[@]}"

# A key made by another tool (pkcs11-tool, as stack-notes does) is usable too.
"${P11TOOL[@]}" --keypairgen --key-type EC:prime256v1 --id 0a0b --label external >/dev/null 2>&1
check "external key by id" "$ENROLL" csr new --key 'pkcs11:token=enroll-t;id=%0a%0b' "${P11[@]}" --dn CN=ext --out ext.csr
expect_exit 0 "external: openssl verifies" openssl req -in ext.csr -noout -verify

# PIN and module from the environment, and from the URI's pin-source.
ENROLL_PKCS11_PIN=$PIN ENROLL_PKCS11_MODULE=$MODULE check "PIN and module from the environment" \
    "$ENROLL" key show 'pkcs11:token=enroll-t;object=external'
check "pin-source in the URI" "$ENROLL" key show "pkcs11:token=enroll-t;object=external?pin-source=file:$WORK/pin.txt" --module "$MODULE"

# Failures: clear, no PIN in any message.
expect_exit 3 "wrong PIN" "$ENROLL" key show 'pkcs11:token=enroll-t;object=external' --module "$MODULE" --pin-file wrong-pin.txt
contains "$WORK/.err" "PIN" "wrong PIN named"
lacks "$WORK/.err" "not-the-pin-5150" "the PIN is never printed"
expect_exit 2 "pin-value refused" "$ENROLL" key show "pkcs11:token=enroll-t;object=external?pin-value=$PIN" --module "$MODULE"
lacks "$WORK/.err" "$PIN" "a refused pin-value is not echoed"
expect_exit 3 "no such object" "$ENROLL" key show 'pkcs11:token=enroll-t;object=nothing-here' "${P11[@]}"
contains "$WORK/.err" "nothing-here" "missing object named"
expect_exit 3 "no such token" "$ENROLL" key show 'pkcs11:token=no-such-token;object=x' "${P11[@]}"
env -u ENROLL_PKCS11_MODULE "$ENROLL" key show 'pkcs11:token=enroll-t;object=external' --pin-file pin.txt > /dev/null 2> nomodule.err
contains nomodule.err "ENROLL_PKCS11_MODULE" "missing module: says the three ways to name one"
expect_exit 2 "bad URI" "$ENROLL" key show 'pkcs11:token=enroll-t;objekt=x' "${P11[@]}"
expect_exit 3 "ed25519 in a token is refused" "$ENROLL" key new --type ed25519 --key 'pkcs11:token=enroll-t;object=ed' "${P11[@]}"
expect_exit 2 "--pass-file with a token" "$ENROLL" key new --type ec-p256 --key 'pkcs11:token=enroll-t;object=z' --pass-file pin.txt "${P11[@]}"

finish
