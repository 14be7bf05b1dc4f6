#!/usr/bin/env bash
# Bad input for show, verify and lint: each case must end in a clean error
# (an "enroll:" message or lint findings), a non-zero exit that is not a
# crash, and never a sanitizer report.
. "$(dirname "$0")/lib.sh"
cd "$WORK"

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout good.key \
    -subj /CN=dev-001 -out good.pem 2>/dev/null
openssl req -in good.pem -outform DER -out good.der
size=$(stat -c %s good.der)

# The table: name, then how to make the file.
: > empty.csr
printf ' \n\t\n' > blank.csr
head -c 200 good.pem > truncated-pem.csr
head -c $((size / 2)) good.der > truncated-der.csr
for off in 0 1 5 40 $((size - 30)) $((size - 1)); do
  cp good.der "flip-$off.csr"
  printf "$(printf '\\x%02x' $(( $(od -An -tu1 -j "$off" -N1 good.der) ^ 0x10 )))" |
      dd of="flip-$off.csr" bs=1 seek="$off" conv=notrunc 2>/dev/null
done
sed 's/CERTIFICATE REQUEST/CERTIFICATE/' good.pem > wrong-label.csr
sed 's/END CERTIFICATE REQUEST/END X509 CRL/' good.pem > mismatched-end.csr
printf 'this is not base64 at all!!\n' > garbage-text.csr
printf -- '-----BEGIN CERTIFICATE REQUEST-----\nMII$$$$garbage\n-----END CERTIFICATE REQUEST-----\n' > garbage-b64.csr
printf '\x30\x84\x7f\xff\xff\xff\x30\x00' > huge-length.csr
printf '\x30\x82\xff\xff\x02\x01\x00' > long-length.csr
printf '\x30\x80\x30\x80\x00\x00\x00\x00' > indefinite.csr
head -c 1048576 /dev/urandom > random-1mib.csr
head -c 1048576 /dev/zero | tr '\0' 'A' > letters-1mib.csr
head -c 1048577 /dev/zero > over-limit.csr
cp good.pem trailing.csr; printf 'trailing junk\n' >> trailing.csr
openssl x509 -req -in good.pem -signkey good.key -days 1 -out cert-not-csr.csr 2>/dev/null
cp "$DATA/seed000-invalid.csr" seed000.csr

for f in *.csr; do
  [ "$f" = good.pem ] && continue
  for verb in show verify; do
    "$ENROLL" csr "$verb" "$f" > out.txt 2> err.txt
    code=$?
    if [ "$verb" = show ] && [ "$code" -eq 0 ]; then
      # A flip inside the signature still parses: show must then say so.
      contains out.txt "DOES NOT VERIFY" "csr show $f: parsed, so the bad signature must be reported"
      continue
    fi
    if [ "$code" -ge 1 ] && [ "$code" -le 3 ]; then pass; else fail "csr $verb $f: exit $code (want 1..3)"; fi
    if grep -q '^enroll: ' err.txt && ! grep -qiE 'sanitizer|runtime error' err.txt; then pass; else
      fail "csr $verb $f: no clean message"; head -5 err.txt >&2; fi
  done
  "$ENROLL" csr lint "$f" --json > lint.json 2> err.txt
  code=$?
  if [ "$code" -ge 1 ] && [ "$code" -le 3 ]; then pass; else fail "csr lint $f: exit $code"; fi
  if ! grep -qiE 'sanitizer|runtime error' err.txt; then pass; else fail "csr lint $f: sanitizer"; fi
  if [ "$code" -eq 1 ] && [ -s lint.json ] && [ "$(json lint.json '.worst // empty')" != "" ]; then
    case $(json lint.json .worst) in error|warning) pass ;; *) fail "csr lint $f: exit 1 but worst is $(json lint.json .worst)" ;; esac
  elif [ "$code" -eq 1 ]; then
    # 1 is a finding; a request that cannot be read (over the limit too) is 3.
    fail "csr lint $f: exit 1 without findings"
  fi
done

# Messages say what and where.
expect_exit 3 "truncated DER" "$ENROLL" csr show truncated-der.csr
contains "$WORK/.err" "at byte" "truncated DER names an offset"
expect_exit 3 "wrong label" "$ENROLL" csr show wrong-label.csr
contains "$WORK/.err" "found 'CERTIFICATE'" "wrong label is named"
expect_exit 3 "garbage base64" "$ENROLL" csr show garbage-b64.csr
contains "$WORK/.err" "base64 error at byte 39" "bad base64 character located"
expect_exit 3 "over the limit" "$ENROLL" csr show over-limit.csr
contains "$WORK/.err" "limit" "size limit named"
expect_exit 3 "empty" "$ENROLL" csr verify empty.csr
contains "$WORK/.err" "empty" "empty input named"
expect_exit 3 "trailing" "$ENROLL" csr verify trailing.csr
contains "$WORK/.err" "after the request" "trailing data named"
expect_exit 3 "seed 000" "$ENROLL" csr show seed000.csr
contains "$WORK/.err" "DER error at byte" "seed 000 is a clean DER error"
expect_exit 3 "missing file" "$ENROLL" csr show does-not-exist.csr
contains "$WORK/.err" "does-not-exist.csr" "missing file named"

# Usage errors exit 2.
expect_exit 2 "no file" "$ENROLL" csr show
expect_exit 2 "unknown option" "$ENROLL" csr show --bogus good.pem
expect_exit 2 "unknown verb" "$ENROLL" csr frobnicate
expect_exit 2 "bad subject" "$ENROLL" csr new --key good.key --subject 'CN=x' --out x.csr
contains "$WORK/.err" "start with '/'" "subject syntax explained"
expect_exit 2 "bad country" "$ENROLL" csr new --key good.key --subject '/C=EN/CN=x' --out x.csr
contains "$WORK/.err" "ISO 3166" "country rule explained"
expect_exit 2 "bad SAN" "$ENROLL" csr new --key good.key --dn CN=x --san 'DNS:exa mple..com' --out x.csr
expect_exit 2 "bad SAN type" "$ENROLL" csr new --key good.key --dn CN=x --san 'X400:foo' --out x.csr
expect_exit 2 "bad IP" "$ENROLL" csr new --key good.key --dn CN=x --san 'IP:300.1.1.1' --out x.csr
expect_exit 2 "bad hash" "$ENROLL" csr new --key good.key --dn CN=x --hash md5 --out x.csr
expect_exit 2 "bad ku" "$ENROLL" csr new --key good.key --dn CN=x --ku everything --out x.csr
[ ! -e x.csr ] && pass || fail "no CSR written after refusals"
expect_exit 3 "key that is a CSR" "$ENROLL" csr new --key good.pem --dn CN=x --out y.csr
contains "$WORK/.err" "not a private key" "wrong key file explained"

finish
