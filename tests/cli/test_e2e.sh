#!/usr/bin/env bash
# The whole story, as `make demo` tells it, judged from the outside: a root
# and issuing CA, enrolld, three devices provisioned by `enroll device`
# (file key + group SAS over MQTT, SoftHSM2 key, X.509 bootstrap over mTLS), each
# publishing to a real mosquitto over mutual TLS with its issued certificate,
# the observer receiving exactly those messages, a spoofed topic refused.
. "$(dirname "$0")/lib.sh"
BUILD=$(cd "$(dirname "$ENROLL")/.." && pwd)
out=$WORK/demo.out
bash "$ENROLL_SOURCE_DIR/scripts/demo.sh" "$BUILD" > "$out" 2>&1
status=$?
same "the demo exits 0" "$status" "0"
[ "$status" = 0 ] || tail -40 "$out" >&2
contains "$out" "This build has 'enroll device'" "the devices use the device client, not the curl fallback"
for d in dev-001 dev-002 dev-003; do
  contains "$out" "\$ enroll device provision" "device client provisioning shown"
  grep -q "^ *subject: CN=$d\$" "$out" && pass || fail "$d: its certificate's subject is shown"
done
grep -q '^Service: *mqtts://127.0.0.1:[0-9]* (mqtt, ' "$out" && pass || fail "dev-001 provisioned over DPS's MQTT API (device status)"
contains "$out" '> devices/dev-001/telemetry {"temp": 21.5}' "the observer got dev-001's message (file key)"
contains "$out" '> devices/dev-002/telemetry {"temp": 19.0, "key": "in a token"}' "the observer got dev-002's message (PKCS#11 key)"
contains "$out" '> devices/dev-003/telemetry {"temp": 23.25}' "the observer got dev-003's message (X.509 bootstrap)"
contains "$out" '> devices/sensor-aws-1/telemetry {"temp": 19.0}' "the observer got the AWS-style device's message (claim -> RegisterThing)"
grep -qE "^ *Certificate: active .*" "$out" && pass || fail "the things registry shows the thing's active certificate"
grep -q "^ *subject: CN=sensor-aws-1\$" "$out" && pass || fail "sensor-aws-1: its certificate's subject is shown"
contains "$out" "u'sensor-aws-1'" "the broker saw the AWS-style device as its thing"
same "exactly four messages" "$(grep -c '^ *> devices/' "$out")" "4"
grep -q 'devices/batch-2026-12' <(grep '^ *> devices/' "$out") && fail "the claim certificate published" || pass
contains "$out" "Not authorized" "a device publishing under another's prefix is refused"
grep -q '> devices/dev-002/telemetry spoofed' "$out" && fail "a spoofed message was delivered" || pass
work=$(sed -n 's/.*Everything above ran in \(.*\) (now removed).*/\1/p' "$out")
[ -n "$work" ] && [ ! -e "$work" ] && pass || fail "the demo removes its work directory ($work)"
# pgrep exits 1 when nothing matches; 0 (something left) or not running at all are failures.
expect_exit 1 "no process of the demo is still running" pgrep -f "$work"
finish
