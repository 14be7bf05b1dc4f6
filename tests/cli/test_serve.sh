#!/usr/bin/env bash
# `enroll serve --config FILE` is enrolld: it serves, and stops cleanly on SIGTERM.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
"$ENROLL" ca init --dir root --subject '/CN=Serve Root' >/dev/null
"$ENROLL" key new --out server.key >/dev/null
"$ENROLL" csr new --key server.key --dn CN=localhost --san IP:127.0.0.1 --out server.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server server.csr --out server.pem 2>/dev/null
printf '{"listen": "127.0.0.1:0", "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 1}\n' > serve.json
"$ENROLL" serve --config serve.json 2> serve.log &
PID=$!
trap 'kill -9 "$PID" 2>/dev/null; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
for _ in $(seq 1 400); do PORT=$(grep -ao '"port":[0-9]*' serve.log | head -1 | cut -d: -f2); [ -n "$PORT" ] && break; sleep 0.05; done
[ -n "$PORT" ] && pass || fail "enroll serve listens (log: $(cat serve.log))"
same "healthz over TLS" "$(curl -s --max-time 10 --cacert root/cert.pem "https://127.0.0.1:$PORT/healthz")" '{"status":"ok"}'
kill -TERM "$PID"; wait "$PID"
same "exit 0 on SIGTERM" "$?" "0"
contains serve.log '"event":"stopped"' "it stopped cleanly"
expect_exit 2 "no --config: usage error" "$ENROLL" serve
contains "$WORK/.err" "--config FILE is required" "says what is missing"
expect_exit 3 "a bad config: a file that cannot be used" "$ENROLL" serve --config /dev/null
check "serve --help teaches" "$ENROLL" serve --help
contains "$WORK/.out" "Example:" "help has an example"
finish
