#!/usr/bin/env bash
# enroll key new/show and enroll match: file modes, overwrite rules,
# passphrase encryption, and public-key matching across keys, CSRs and certs.
. "$(dirname "$0")/lib.sh"
cd "$WORK"

umask 022
for type in ec-p256 ec-p384 rsa-2048 ed25519; do
  check "$type: key new" "$ENROLL" key new --type "$type" --out "$type.key"
  same "$type: mode 0600 despite umask 022" "$(stat -c %a "$type.key")" "600"
  expect_exit 0 "$type: openssl reads it" openssl pkey -in "$type.key" -noout
  check "$type: key show --json" "$ENROLL" key show "$type.key" --json
  same "$type: type" "$(json "$WORK/.out" .type)" "$type"
  theirs=$(openssl pkey -in "$type.key" -pubout -outform DER | sha256sum | cut -d' ' -f1)
  same "$type: fingerprint vs openssl" "$(json "$WORK/.out" .spki_sha256)" "$theirs"
done
expect_exit 0 "default type is ec-p256" "$ENROLL" key new --out default.key
check "default: show" "$ENROLL" key show default.key --json
same "default: type" "$(json "$WORK/.out" .type)" "ec-p256"

before=$(sha256sum ec-p256.key)
expect_exit 1 "refuses to overwrite a key" "$ENROLL" key new --type ec-p256 --out ec-p256.key
contains "$WORK/.err" "--force" "says how to overwrite"
same "key untouched" "$(sha256sum ec-p256.key)" "$before"
check "--force replaces" "$ENROLL" key new --type ec-p256 --out ec-p256.key --force
[ "$(sha256sum ec-p256.key)" != "$before" ] && pass || fail "--force did not replace the key"
ls ./*.tmp-* >/dev/null 2>&1 && fail "temporary files left behind" || pass

expect_exit 2 "unknown type" "$ENROLL" key new --type dsa-1024 --out x.key
contains "$WORK/.err" "ec-p256" "lists the valid types"
expect_exit 2 "no output" "$ENROLL" key new --type ec-p256
expect_exit 2 "private key to stdout refused" "$ENROLL" key new --out -
[ ! -e x.key ] && pass || fail "x.key written after a usage error"

# Passphrase-encrypted keys.
printf 'correct horse battery staple\n' > pass.txt
printf 'Zq9-not-the-pass\n' > wrong.txt
check "encrypted key new" "$ENROLL" key new --type ec-p256 --out enc.key --pass-file pass.txt
contains enc.key "BEGIN ENCRYPTED PRIVATE KEY" "written encrypted"
openssl pkey -in enc.key -passin file:pass.txt -noout 2>/dev/null && pass || fail "openssl decrypts with the passphrase"
openssl asn1parse -in enc.key > enc.asn1 2>/dev/null
contains enc.asn1 "aes-256-cbc" "encrypted with AES-256"
expect_exit 3 "encrypted key without passphrase" "$ENROLL" csr new --key enc.key --dn CN=x --out e.csr
contains "$WORK/.err" "--pass-file" "says how to give the passphrase"
expect_exit 3 "wrong passphrase" "$ENROLL" csr new --key enc.key --dn CN=x --out e.csr --pass-file wrong.txt
contains "$WORK/.err" "wrong passphrase" "wrong passphrase named"
lacks "$WORK/.err" "Zq9-not-the-pass" "passphrase itself never printed"
check "csr with encrypted key" "$ENROLL" csr new --key enc.key --dn CN=x --out e.csr --pass-file pass.txt
expect_exit 0 "match encrypted key and its csr" "$ENROLL" match enc.key e.csr --pass-file pass.txt

# match: keys, public keys, CSRs and certificates.
check "csr for match" "$ENROLL" csr new --key ec-p256.key --dn CN=m --out m.csr
openssl req -x509 -key ec-p256.key -subj /CN=m -days 1 -out m.crt 2>/dev/null
openssl pkey -in ec-p256.key -pubout -out m.pub
openssl x509 -in m.crt -outform DER -out m.crt.der
expect_exit 0 "key, pub, csr, cert, der cert all match" "$ENROLL" match ec-p256.key m.pub m.csr m.crt m.crt.der
contains "$WORK/.out" "all 5 hold the same public key" "match summary"
expect_exit 1 "a different key does not match" "$ENROLL" match m.csr ec-p384.key m.crt
contains "$WORK/.out" "DIFFERENT" "mismatch marked"
check "match --json" "$ENROLL" match m.csr m.crt --json
same "match json" "$(json "$WORK/.out" .match)" "true"
same "match kinds" "$(json "$WORK/.out" '[.items[].kind] | join(",")')" "CSR,certificate"
expect_exit 1 "match --json mismatch" "$ENROLL" match m.csr rsa-2048.key --json
same "mismatch json" "$(json "$WORK/.out" .match)" "false"
expect_exit 2 "match needs two" "$ENROLL" match m.csr
printf 'hello\n' > junk.txt
expect_exit 3 "match junk" "$ENROLL" match m.csr junk.txt
contains "$WORK/.err" "junk.txt" "junk file named"

# Help teaches at every level.
for args in "--help" "key --help" "csr --help" "match --help" "key new --help" "csr lint --help"; do
  # shellcheck disable=SC2086
  expect_exit 0 "help: $args" "$ENROLL" $args
  contains "$WORK/.out" "Example" "help $args has an example"
done
expect_exit 2 "no arguments is usage" "$ENROLL"

# Progress: on stderr, only when asked (--progress) or stderr is a terminal
# (here it is a file), never on stdout, so --json stays one JSON document.
expect_exit 0 "rsa-2048 --progress" "$ENROLL" key new --type rsa-2048 --out progress.key --progress
contains "$WORK/.err" "generating rsa-2048 key..." "--progress: says what it generates"
contains "$WORK/.err" ". done" "--progress: dots, then done"
lacks "$WORK/.out" "generating" "--progress: nothing of it on stdout"
expect_exit 0 "rsa-2048 --progress --json" "$ENROLL" key new --type rsa-2048 --out progress.key --force --progress --json
same "--progress --json: stdout is the JSON alone" "$(jq -r .type "$WORK/.out")" "rsa-2048"
contains "$WORK/.err" "done" "--progress --json: progress still on stderr"
expect_exit 0 "rsa-2048 without --progress" "$ENROLL" key new --type rsa-2048 --out quiet.key
empty "without --progress and no terminal: stderr stays empty" "$(cat "$WORK/.err")"
if command -v script >/dev/null; then
  # A terminal on stderr (script(1) gives the command a pty): progress by default.
  script -qec "'$ENROLL' key new --type rsa-2048 --out tty.key" /dev/null > tty.txt 2>&1
  contains tty.txt "generating rsa-2048 key..." "stderr a terminal: progress without --progress"
else cannot_run "the terminal case" "script(1) is missing (bsdutils)"; fi
finish
