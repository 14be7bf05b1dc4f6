#!/usr/bin/env bash
# The command line of `device provision --protocol aws-fleet` (and what
# `device run` refuses), on `enroll` and `enroll-device`: each mistake is a
# usage error (exit 2) that names what to give, found before anything is
# made or any connection tried (no service runs here).
. "$(dirname "$0")/lib.sh"
DEV=${ENROLL_DEVICE_BIN:-$(dirname "$ENROLL")/enroll-device}
cd "$WORK"
URL=mqtts://127.0.0.1:1
CLAIM=(--bootstrap-cert claim.pem --bootstrap-key claim.key)
BASE=(--key d.key --store s --trust root.pem)

usage() { # DESCRIPTION NEEDLE ARGS...: exit 2, the message says NEEDLE, nothing made
  local what=$1 needle=$2; shift 2
  for bin in "$ENROLL" "$DEV"; do
    expect_exit 2 "$what ($(basename "$bin"))" "$bin" device provision "$@"
    contains "$WORK/.err" "$needle" "$what: says '$needle'"
  done
  [ ! -e s ] && [ ! -e d.key ] && pass || fail "$what: something was made"
}
usage "no --template" "needs --template NAME" --protocol aws-fleet --url "$URL" --param SerialNumber=1 "${CLAIM[@]}" "${BASE[@]}"
usage "--param without '='" "--param 'SerialNumber': give NAME=VALUE" --protocol aws-fleet --url "$URL" \
    --template T --param SerialNumber "${CLAIM[@]}" "${BASE[@]}"
usage "--param with an empty name" "the name before '=' is empty" --protocol aws-fleet --url "$URL" --template T \
    --param =v "${CLAIM[@]}" "${BASE[@]}"
usage "--scope with aws-fleet" "--scope is DPS's" --protocol aws-fleet --scope 0ne1 --url "$URL" --template T \
    --param SerialNumber=1 "${CLAIM[@]}" "${BASE[@]}"
usage "--registration-id with aws-fleet" "--registration-id is DPS's" --protocol aws-fleet --registration-id r \
    --url "$URL" --template T --param SerialNumber=1 "${CLAIM[@]}" "${BASE[@]}"
usage "a group key with aws-fleet" "--group-key-file is DPS's" --protocol aws-fleet --group-key-file g.key \
    --url "$URL" --template T --param SerialNumber=1 "${BASE[@]}"
usage "no claim certificate" "provisions by claim: give --bootstrap-cert" --protocol aws-fleet --url "$URL" \
    --template T --param SerialNumber=1 "${BASE[@]}"
usage "no thing name" "give the thing name to ask for: --thing-name NAME" --protocol aws-fleet --url "$URL" \
    --template T --param Color=blue "${CLAIM[@]}" "${BASE[@]}"
usage "a thing name AWS refuses" "thing name 'a b' is not" --protocol aws-fleet --url "$URL" --template T \
    --thing-name 'a b' "${CLAIM[@]}" "${BASE[@]}"
usage "a template name AWS refuses" "template name 'a/b' is not" --protocol aws-fleet --url "$URL" --template a/b \
    --thing-name t "${CLAIM[@]}" "${BASE[@]}"
usage "a parameter twice" "parameter SerialNumber is given twice" --protocol aws-fleet --url "$URL" --template T \
    --param SerialNumber=1 --param SerialNumber=2 "${CLAIM[@]}" "${BASE[@]}"
usage "an https:// URL" "speaks MQTT" --protocol aws-fleet --url https://127.0.0.1:1 --template T \
    --thing-name t "${CLAIM[@]}" "${BASE[@]}"
usage "--transport https" "speaks MQTT only" --protocol aws-fleet --transport https --url "$URL" --template T \
    --thing-name t "${CLAIM[@]}" "${BASE[@]}"
usage "an unknown protocol" "give dps or aws-fleet" --protocol aws --url "$URL" --template T "${CLAIM[@]}" "${BASE[@]}"
usage "--template with DPS" "--template is for --protocol aws-fleet only" --url https://127.0.0.1:1 --scope 0ne1 \
    --registration-id r --group-key-file g.key --template T "${BASE[@]}"
usage "--param with DPS" "--param is for --protocol aws-fleet only" --url https://127.0.0.1:1 --scope 0ne1 \
    --registration-id r --group-key-file g.key --param A=b "${BASE[@]}"
params=(); for i in $(seq 0 64); do params+=(--param "P$i=v"); done
usage "65 parameters" "at most 64 --param" --protocol aws-fleet --url "$URL" --template T "${params[@]}" \
    "${CLAIM[@]}" "${BASE[@]}"
for bin in "$ENROLL" "$DEV"; do
  expect_exit 2 "run takes no --template ($(basename "$bin"))" "$bin" device run --store s --once --template T
  contains "$WORK/.err" "--template is provision's" "run: says whose option it is"
  expect_exit 2 "status takes no --protocol ($(basename "$bin"))" "$bin" device status --store s --protocol aws-fleet
done
check "help names the protocol" "$ENROLL" device --help
contains "$WORK/.out" "--protocol aws-fleet --url mqtts://HOST[:PORT] --template NAME" "help: the aws-fleet usage"
contains "$WORK/.out" "--param K=V" "help: --param"
finish
