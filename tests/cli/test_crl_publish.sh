#!/usr/bin/env bash
# Revocation a broker enforces: enrolld keeps each issuing CA's CRL current
# in its "crl" publish_dir and runs the reload command after each change.
# Two devices registered through enrolld connect to mosquitto (mutual TLS,
# crlfile = the published CRL); one is revoked through the store; within a
# stated bound its next connection is refused while the other device keeps
# connecting. The published CRL is judged by openssl.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
. "$(dirname "$0")/lib_broker.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000c71d
API=2025-07-01-preview
BOUND=10 # seconds from a revocation in the store to a refused connection: check_seconds 1, publishing, reload

service_pki
service_store
GROUP_KEY=$(cat group.key)
cat root/cert.pem devices-ca/cert.pem > client-ca.pem
# The reload command: the broker reads its CRL again. mosquitto 2.0 does on
# SIGHUP (its connections stay up); as enrolld's reload command the broker's
# pid comes from its pid file.
cat > reload.sh <<'SH'
#!/usr/bin/env bash
echo reload >> reloads.log
[ -f broker/mosquitto.pid ] || exit 0 # no broker yet (enrolld publishes before it listens)
exec kill -HUP "$(cat broker/mosquitto.pid)"
SH
chmod +x reload.sh
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2,
 "crl": {"publish_dir": "crls", "reload_command": ["$WORK/reload.sh"], "check_seconds": 1,
         "next_update_seconds": 86400}}
JSON
enrolld_start enrolld.json enrolld.log
[ -n "$PORT" ] && pass || { fail "enrolld did not start"; sed 's/^/    /' enrolld.log >&2; finish; exit 1; }
[ -s crls/devices.crl.pem ] && pass || fail "the CRL is published before enrolld listens"
contains enrolld.log '"event":"crl_published","ca":"devices"' "the publication is logged"
expect_exit 0 "the published CRL verifies (openssl crl)" openssl crl -in crls/devices.crl.pem -CAfile client-ca.pem -noout
same "its nextUpdate is the configured one day" \
  "$(( $(date -d "$(openssl crl -in crls/devices.crl.pem -noout -nextupdate | cut -d= -f2)" +%s) - \
       $(date -d "$(openssl crl -in crls/devices.crl.pem -noout -lastupdate | cut -d= -f2)" +%s) ))" "86400"

register() { # RID -> RID.key, RID.pem
  "$ENROLL" key new --out "$1.key" >/dev/null
  dps_register "$PORT" "$1" "$1.key" >/dev/null
}
register dev-a
register dev-b
[ -s dev-a.pem ] && [ -s dev-b.pem ] && pass || fail "two devices registered"

check "broker starts with the published CRL" broker_start broker client-ca.pem server.pem server.key "$WORK/crls/devices.crl.pem"
[ -n "$BROKER_PORT" ] || { finish; exit 1; }
connects() { # RID: publishes once as that device
  mosquitto_pub -h localhost --cafile root/cert.pem -p "$BROKER_PORT" --cert "$1.pem" --key "$1.key" -q 1 \
    -t "devices/$1/telemetry" -m hello >/dev/null 2>&1
}
connects dev-a && pass || fail "dev-a connects before the revocation"
connects dev-b && pass || fail "dev-b connects before the revocation"

serial=$(openssl x509 -in dev-a.pem -noout -serial | cut -d= -f2)
reloads_before=$(wc -l < reloads.log)
revoked_at=$(date +%s)
check "revoke dev-a's certificate (the store)" "$ENROLL" admin cert revoke --serial "$serial" --reason keyCompromise --data data
refused_after=
for _ in $(seq 1 $(( BOUND * 4 ))); do
  # Refused while the broker is up (dev-b gets in): the CRL, not an outage.
  if ! connects dev-a && connects dev-b; then refused_after=$(( $(date +%s) - revoked_at )); break; fi
  sleep 0.25
done
[ -n "$refused_after" ] && [ "$refused_after" -le "$BOUND" ] && pass ||
  fail "dev-a was not refused within $BOUND s of its revocation (${refused_after:-never})"
echo "  dev-a refused ${refused_after:-never} s after its revocation (bound $BOUND s)" >&2
connects dev-a && fail "dev-a connects again after its revocation" || pass
connects dev-b && pass || fail "dev-b keeps connecting"
openssl crl -in crls/devices.crl.pem -noout -text > crl.txt
contains crl.txt "Serial Number: $serial" "the published CRL lists dev-a"
contains crl.txt "Key Compromise" "  with its reason"
contains enrolld.log '"event":"crl_published","ca":"devices","crl_number":' "the new CRL is logged"
contains enrolld.log '"revoked":1}' "  with the revocation counted"
contains enrolld.log '"event":"crl_reloaded"' "the reload command ran"
lacks enrolld.log '"event":"crl_reloaded","command":"'"$WORK"'/reload.sh","exit":1' "  and succeeded"
[ "$(wc -l < reloads.log)" -eq $((reloads_before + 1)) ] && pass ||
  fail "one reload for one revocation ($reloads_before before, $(wc -l < reloads.log) after)"

kill -TERM "$EPID"; wait "$EPID"
same "enrolld stops cleanly" "$?" "0"
finish
