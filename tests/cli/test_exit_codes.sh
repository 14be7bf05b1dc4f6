#!/usr/bin/env bash
# The exit-code rule (docs/cli.md, README.md, `enroll --help`), one case of
# each kind across commands, with the exact code and, with --json, the
# error's code name:
#   1 the inputs were read and understood, and the answer is no
#   2 the command line itself is wrong
#   3 a file, key, token or service could not be used
# A passphrase or PIN that is missing or wrong leaves the key locked: 3 for
# a file key and a token key alike, never 1 (a finding) or 2 (usage).
. "$(dirname "$0")/lib.sh"
cd "$WORK"

printf 'right-pass\n' > pass.txt
printf 'wrong-pass\n' > wrong.txt
check "encrypted key" "$ENROLL" key new --type ec-p256 --out enc.key --pass-file pass.txt
check "plain key" "$ENROLL" key new --type ec-p256 --out plain.key

# 3: a locked file key, whichever way the passphrase is missing or wrong,
# and whichever command opens it.
expect_exit 3 "key show: missing passphrase" "$ENROLL" key show enc.key
expect_exit 3 "key show: wrong passphrase" "$ENROLL" key show enc.key --pass-file wrong.txt
expect_exit 3 "csr new: missing passphrase" "$ENROLL" csr new --key enc.key --dn CN=x --out x.csr
expect_exit 3 "csr new: wrong passphrase" "$ENROLL" csr new --key enc.key --dn CN=x --out x.csr --pass-file wrong.txt
expect_exit 3 "match: missing passphrase" "$ENROLL" match enc.key plain.key
"$ENROLL" key show enc.key --json > locked.json 2>/dev/null
same "--json: a missing passphrase is 'locked'" "$(json locked.json .error.code)" "locked"
"$ENROLL" key show enc.key --pass-file wrong.txt --json > locked.json 2>/dev/null
same "--json: a wrong passphrase is 'locked' too" "$(json locked.json .error.code)" "locked"
check "the right passphrase opens it" "$ENROLL" key show enc.key --pass-file pass.txt

# 3: files that are missing or are not what they should be.
expect_exit 3 "missing file" "$ENROLL" key show no-such.key
printf 'not a key\n' > junk.key
expect_exit 3 "malformed file" "$ENROLL" key show junk.key

# 2: the command line.
expect_exit 2 "unknown option" "$ENROLL" key show plain.key --frobnicate
expect_exit 2 "missing argument" "$ENROLL" key show
expect_exit 2 "unknown command" "$ENROLL" frobnicate
expect_exit 2 "unknown key type" "$ENROLL" key new --type dsa-512 --out d.key

# 1: an answer. Mismatch, exists, and a serial this CA never issued (the CA
# was opened and read: the answer is no, not "could not be used").
check "second key" "$ENROLL" key new --type ec-p256 --out other.key
expect_exit 1 "match: different keys" "$ENROLL" match plain.key other.key
expect_exit 1 "key new: exists without --force" "$ENROLL" key new --type ec-p256 --out plain.key
check "a CA" "$ENROLL" ca init --dir ca --subject /CN=Exit-Codes-CA
expect_exit 1 "ca revoke: a serial this CA never issued" "$ENROLL" ca revoke --dir ca 0123ABCD --reason superseded
"$ENROLL" ca revoke --dir ca 0123ABCD --json > revoke.json 2>/dev/null
same "--json: the unknown serial is 'notfound'" "$(json revoke.json .error.code)" "notfound"
expect_exit 3 "ca revoke: no CA directory there" "$ENROLL" ca revoke --dir no-such-ca 0123ABCD
expect_exit 2 "ca revoke: not a serial number" "$ENROLL" ca revoke --dir ca not-hex

# 3: a token whose PIN is wrong or missing, or that is not there.
MODULE=/usr/lib/softhsm/libsofthsm2.so
if [ ! -e "$MODULE" ]; then cannot_run "the PIN cases" "$MODULE is missing (softhsm2)"; else
  softhsm_token exit-t
  printf '87654321\n' > pin.txt
  printf '11112222\n' > wrong-pin.txt
  uri='pkcs11:token=exit-t;object=k'
  check "token key" "$ENROLL" key new --type ec-p256 --key "$uri" --module "$MODULE" --pin-file pin.txt
  expect_exit 3 "token: wrong PIN" "$ENROLL" key show "$uri" --module "$MODULE" --pin-file wrong-pin.txt
  "$ENROLL" key show "$uri" --module "$MODULE" --pin-file wrong-pin.txt --json > pin.json 2>/dev/null
  same "--json: a wrong PIN is 'locked', as a wrong passphrase" "$(json pin.json .error.code)" "locked"
  expect_exit 3 "token: wrong PIN for csr new" "$ENROLL" csr new --key "$uri" --module "$MODULE" \
      --pin-file wrong-pin.txt --dn CN=x --out t.csr
  expect_exit 3 "token: not there" "$ENROLL" key show 'pkcs11:token=no-such;object=k' --module "$MODULE" --pin-file pin.txt
fi
finish
