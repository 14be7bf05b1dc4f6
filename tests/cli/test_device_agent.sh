#!/usr/bin/env bash
# The agent (`enroll device run`) rides out the service being down: it keeps
# its identity, backs off, keeps running, renews once enrolld is back on the
# same port, runs the hook for the new certificate, and exits 0 on SIGTERM.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000079

service_pki
service_store

start_enrolld() { # PORT (0: any)
  cat > enrolld.json <<JSON
{"listen": "127.0.0.1:$1", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 1}
JSON
  enrolld_start enrolld.json enrolld.log
}
start_enrolld 0
check "provision" "$ENROLL" device provision --url "https://127.0.0.1:$PORT" --scope "$SCOPE" --trust root/cert.pem \
    --registration-id dev-ag --group-key-file group.key --key dev.key --store s --json
serial0=$(json "$WORK/.out" .certificate | xargs openssl x509 -noout -serial -in | cut -d= -f2)

kill -TERM "$EPID"; wait "$EPID" 2>/dev/null
# Renewal is due at every check (--renew-before longer than the lifetime's
# remainder), the service is down, and each check tries once.
cat > hook.sh <<'SH'
#!/bin/sh
openssl x509 -in "$ENROLL_CERT" -noout -serial >> hook.log
SH
chmod +x hook.sh
"$ENROLL" device run --store s --interval 1 --retries 1 --renew-before P31D --hook ./hook.sh > agent.out 2> agent.err &
AGENT=$!; PIDS+=("$AGENT")
for _ in $(seq 1 100); do grep -q "retrying\|unreachable\|refused\|failed" agent.err 2>/dev/null && break; sleep 0.1; done
sleep 1.5
kill -0 "$AGENT" 2>/dev/null && pass || fail "the agent keeps running while the service is down"
contains agent.err "cannot connect to 127.0.0.1 port $PORT" "the agent says what it could not reach"
contains agent.err "kept the previous identity" "... and that it kept its identity"
check "status while down: the old identity" "$ENROLL" device status --store s --json
same "still the first certificate" "$(json "$WORK/.out" .serial)" "$serial0"
same "the failure is recorded" "$(json "$WORK/.out" .last_result)" "error"
[ ! -e hook.log ] && pass || fail "no hook ran without a new certificate"

start_enrolld "$PORT"
renewed=
for _ in $(seq 1 150); do
  s=$("$ENROLL" device status --store s --json 2>/dev/null | jq -r .serial)
  [ -n "$s" ] && [ "$s" != "$serial0" ] && { renewed=$s; break; }
  sleep 0.1
done
[ -n "$renewed" ] && pass || fail "the agent renewed once the service was back"
for _ in $(seq 1 50); do [ -s hook.log ] && break; sleep 0.1; done
grep -q "serial=$renewed" hook.log && pass || fail "the hook ran for the new certificate ($renewed)"
same "the service recorded the renewal" "$(sqlite3 data/enroll.db "select count(*) from certificate where registration_id='dev-ag' and serial='$renewed'")" "1"
kill -TERM "$AGENT"; wait "$AGENT"
same "agent: exit 0 on SIGTERM" "$?" "0"
finish
