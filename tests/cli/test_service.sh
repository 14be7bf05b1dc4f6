#!/usr/bin/env bash
# enrolld's front: TLS (and client certificates), health and metrics, limits,
# JSON request logs, certificate reload on SIGHUP, clean stop on SIGTERM,
# and configuration errors. Every server here listens on 127.0.0.1 only.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
ENROLLD=$(dirname "$ENROLL")/enrolld
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT

"$ENROLL" ca init --dir root --subject /CN=Service-Root >/dev/null
server_cert() { # NAME
  "$ENROLL" key new --out "$1.key" --force >/dev/null
  "$ENROLL" csr new --key "$1.key" --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out "$1.csr" --force 2>/dev/null
  "$ENROLL" ca sign --dir root --profile server "$1.csr" --out "$1.pem" --force 2>/dev/null
}
server_cert server
"$ENROLL" key new --out device.key >/dev/null
"$ENROLL" csr new --key device.key --dn CN=dev-001 --out device.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile device device.csr --out device.crt 2>/dev/null

start() { # CONFIG-FILE -> sets PID, PORT
  "$ENROLLD" --config "$1" 2> "$1.log" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 1 400); do
    PORT=$(grep -o '"port":[0-9]*' "$1.log" | head -1 | cut -d: -f2)
    [ -n "$PORT" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  fail "enrolld did not start: $(cat "$1.log")"
  return 1
}

cat > tls.json <<'JSON'
{"listen": "127.0.0.1:0", "tls": {"cert": "server.pem", "key": "server.key", "client_ca": "root/cert.pem"},
 "workers": 2, "limits": {"max_body_bytes": 4096, "max_header_bytes": 2048, "timeout_seconds": 5},
 "shutdown_grace_seconds": 2}
JSON
start tls.json
URL=https://127.0.0.1:$PORT
CURL=(curl -s --max-time 30 --cacert root/cert.pem)

same "healthz" "$("${CURL[@]}" "$URL/healthz")" '{"status":"ok"}'
same "unknown route is 404" "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$URL/nope")" "404"
same "client certificate accepted" "$("${CURL[@]}" --cert device.crt --key device.key "$URL/healthz")" '{"status":"ok"}'
head -c 10000 /dev/zero | tr '\0' 'x' > big.txt
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -X PUT --data-binary @big.txt "$URL/x")
same "body over the limit is refused" "$code" "413"
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -H "X-Big: $(head -c 4000 /dev/zero | tr '\0' 'y')" "$URL/healthz")
case $code in 400|413|431) pass ;; *) fail "oversized header: HTTP $code" ;; esac
"${CURL[@]}" "$URL/metrics" > metrics.txt
contains metrics.txt 'enroll_http_requests_total{class="2xx"}' "metrics: request counter"
contains metrics.txt 'enroll_http_request_duration_seconds_bucket{le="+Inf"}' "metrics: latency histogram"
same "metrics count the 404" "$(sed -n 's/^enroll_http_requests_total{class="4xx"} //p' metrics.txt)" "1"
expect_exit 1 "TLS 1.1 is refused" openssl s_client -connect 127.0.0.1:$PORT -tls1_1 </dev/null
echo | openssl s_client -connect 127.0.0.1:$PORT -CAfile root/cert.pem > s_client.txt 2>&1
contains s_client.txt "Verify return code: 0 (ok)" "TLS chain verifies"
contains s_client.txt "Acceptable client certificate CA names" "client CA names offered"
contains tls.json.log '"route":"healthz","registration_id":"","status":200' "request log line"
contains tls.json.log '"client_cert":true' "log notes a client certificate"
lacks tls.json.log "xxxxxxxx" "bodies are never logged"
jq -c 'select(.event=="request")' tls.json.log >/dev/null 2>&1 && pass || fail "log lines are JSON"

# SIGHUP: new connections get the new certificate.
old_serial=$(echo | openssl s_client -connect 127.0.0.1:$PORT 2>/dev/null | openssl x509 -noout -serial)
server_cert server
kill -HUP "$PID"; sleep 0.3
new_serial=$(echo | openssl s_client -connect 127.0.0.1:$PORT 2>/dev/null | openssl x509 -noout -serial)
[ -n "$new_serial" ] && [ "$new_serial" != "$old_serial" ] && pass || fail "reload: serial $old_serial -> $new_serial"
same "reload: the new certificate is the one on disk" "$new_serial" "$(openssl x509 -in server.pem -noout -serial)"
contains tls.json.log '"event":"reloaded"' "reload logged"
printf 'garbage\n' > server.key
kill -HUP "$PID"; sleep 0.3
contains tls.json.log '"event":"reload_failed"' "a broken key is refused on reload"
same "still serving with the previous certificate" "$("${CURL[@]}" "$URL/healthz")" '{"status":"ok"}'

# SIGTERM: a clean, prompt stop.
kill -TERM "$PID"
wait "$PID"; code=$?
same "SIGTERM exits 0" "$code" "0"
contains tls.json.log '"event":"stopped"' "stop logged"

# Configuration errors: exit 3 (a file that cannot be used; 2 is for the
# command line alone) and a message that says what to fix.
server_cert server
bad() { # NAME JSON NEEDLE
  printf '%s' "$2" > "bad-$1.json"
  expect_exit 3 "config $1" "$ENROLLD" --config "bad-$1.json"
  contains "$WORK/.err" "$3" "config $1: message"
}
bad unknown-key '{"listen":"127.0.0.1:0","tls":{"cert":"server.pem","key":"server.key"},"listn":1}' 'unknown key "listn"'
bad no-listen '{"tls":{"cert":"server.pem","key":"server.key"}}' '"listen"'
bad no-tls '{"listen":"127.0.0.1:0"}' 'plain_http'
bad half-tls '{"listen":"127.0.0.1:0","tls":{"cert":"server.pem"}}' 'both "cert" and "key"'
bad bad-port '{"listen":"127.0.0.1:99999","plain_http":true}' 'port must be'
bad not-json '{"listen":' 'line 1'
bad duplicate '{"listen":"127.0.0.1:0","listen":"127.0.0.1:1","plain_http":true}' 'duplicate'
bad workers '{"listen":"127.0.0.1:0","plain_http":true,"workers":"two"}' 'workers'
expect_exit 2 "no --config" "$ENROLLD"
"$ENROLL" key new --out other.key >/dev/null
printf '{"listen":"127.0.0.1:0","tls":{"cert":"server.pem","key":"other.key"}}' > mismatch.json
expect_exit 3 "key and certificate that do not match" "$ENROLLD" --config mismatch.json
contains "$WORK/.err" "does not belong to" "mismatch: message"

# Plain HTTP only when asked for.
printf '{"listen":"127.0.0.1:0","plain_http":true,"workers":1}' > plain.json
start plain.json
same "plain HTTP healthz" "$(curl -s --max-time 30 "http://127.0.0.1:$PORT/healthz")" '{"status":"ok"}'
kill -TERM "$PID"; wait "$PID"

finish
