# Shared by the CLI tests that run enrolld (source after lib.sh, inside $WORK).
# service_pki: root/ and devices-ca/ CA directories, and server.{key,pem} for
#   localhost and 127.0.0.1, issued by the root.
# STORE_ARGS: how `enroll admin` names the store (default: --data data; a
#   PostgreSQL test sets --db "$PG_URL").
# service_store SCOPE: the issuing CA, a P30D/P7D policy "p30" and a
#   symmetric group "fleet" in the store; the group key in group.key (0600).
# service_x509_group NAME [ARGS]: a bootstrap CA boot-root/ -> boot-int/,
#   uploaded as "boot" and proven, and an X.509 group NAME (policy p30,
#   ARGS added) trusting it; five checks.
# enrolld_mqtt_start LOG [TOP-EXTRA] [MQTT-EXTRA]: enrolld.json serving SCOPE
#   over TLS (server.pem, 2 workers) and DPS over MQTT on 127.0.0.1:0, the
#   extras appended to the top object and to "mqtt"; started as enrolld_start,
#   and MQTT_PORT read from its log (empty when it printed none).
# dps_register PORT RID KEY [GROUP_KEY]: registers RID over HTTPS with a CSR
#   of KEY (CN=RID) and a SAS token from GROUP_KEY (default $GROUP_KEY), as
#   a DPS device does; echoes the HTTP status; the answer in reg.json and, on
#   200, the leaf in RID.pem.
# service_claim_ca NAME: a bootstrap CA NAME/ uploaded as NAME and proven
#   (an AWS claim CA); one check. service_claim_cert CA NAME: a claim
#   certificate NAME.pem / NAME.key (CN=NAME) from CA.
# npm_install SRC CACHE: `npm ci` of SRC's package.json and lockfile into
#   CACHE, once per lockfile (under a lock; a stamp names the digest).
# enrolld_start CONFIG LOG: starts enrolld in the background; sets EPID and
#   PORT (read from its log), and adds it to PIDS for the caller's trap.
ENROLLD=$(dirname "$ENROLL")/enrolld
[ -n "${STORE_ARGS+x}" ] || STORE_ARGS=(--data data)

service_pki() {
  "$ENROLL" ca init --dir root --subject '/O=Acme/CN=Acme Root' >/dev/null
  "$ENROLL" ca init --dir devices-ca --parent root --subject '/O=Acme/CN=Acme Devices' >/dev/null
  "$ENROLL" key new --out server.key >/dev/null
  "$ENROLL" csr new --key server.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server.csr 2>/dev/null
  "$ENROLL" ca sign --dir root --profile server server.csr --out server.pem 2>/dev/null
}

service_store() {
  "$ENROLL" admin ca add devices --ca-dir devices-ca "${STORE_ARGS[@]}" >/dev/null
  "$ENROLL" admin policy new p30 --validity P30D --renewal-window P7D --ca devices "${STORE_ARGS[@]}" >/dev/null
  "$ENROLL" admin group new fleet --policy p30 --symmetric "${STORE_ARGS[@]}" --json > group.json
  jq -r .primary_key group.json > group.key
  chmod 600 group.key
}

service_x509_group() {
  local name=$1; shift
  "$ENROLL" ca init --dir boot-root --subject '/CN=Bootstrap Root' >/dev/null
  "$ENROLL" ca init --dir boot-int --parent boot-root --subject '/CN=Bootstrap Intermediate' >/dev/null
  check "admin: upload bootstrap CA" "$ENROLL" admin ca upload boot --cert boot-int/cert.pem --data data --json
  local code
  code=$(json "$WORK/.out" .verification_code)
  "$ENROLL" key new --out ver.key >/dev/null
  "$ENROLL" csr new --key ver.key --dn "CN=$code" --out ver.csr 2>/dev/null
  "$ENROLL" ca sign --dir boot-int --profile device --cn "$code" ver.csr --out ver.crt 2>/dev/null
  check "admin: prove possession" "$ENROLL" admin ca verify boot --cert ver.crt --data data
  check "admin: X.509 group" "$ENROLL" admin group new "$name" --policy p30 --x509-ca boot "$@" --data data
}

enrolld_mqtt_start() {
  cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 2 ${2:-},
 "mqtt": {"listen": "127.0.0.1:0"${3:-}}}
JSON
  enrolld_start enrolld.json "$1"
  MQTT_PORT=
  for _ in $(seq 1 400); do
    MQTT_PORT=$(grep -ao '"mqtt_port":[0-9]*' "$1" | head -1 | cut -d: -f2)
    [ -n "$MQTT_PORT" ] && break
    sleep 0.05
  done
}

enrolld_start() {
  : > "$2"
  "$ENROLLD" --config "$1" 2>> "$2" &
  EPID=$!
  PIDS+=("$EPID")
  PORT=
  for _ in $(seq 1 400); do
    PORT=$(grep -ao '"port":[0-9]*' "$2" | head -1 | cut -d: -f2)
    [ -n "$PORT" ] && break
    sleep 0.05
  done
}

# sas_token DEVICE_KEY RID [EXPIRY]: a SAS token for SCOPE, made with openssl
# (independent of enroll's own code). device_key GROUP_KEY RID: the derived key.
device_key() {
  printf '%s' "$2" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(printf '%s' "$1" | base64 -d | od -An -v -tx1 | tr -d ' \n')" -binary | base64
}
sas_token() {
  local se=${3:-$(( $(date +%s) + 3600 ))} sr="$SCOPE%2Fregistrations%2F$2" sig
  sig=$(printf '%s\n%s' "$sr" "$se" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(printf '%s' "$1" | base64 -d | od -An -v -tx1 | tr -d ' \n')" -binary | base64)
  sig=$(printf '%s' "$sig" | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')
  printf 'SharedAccessSignature sr=%s&sig=%s&se=%s&skn=registration' "$sr" "$sig" "$se"
}

dps_register() {
  local port=$1 rid=$2 key=$3 group_key=${4:-$GROUP_KEY}
  "$ENROLL" csr new --key "$key" --dn "CN=$rid" --format b64 --out - 2>/dev/null > "$WORK/.csr.b64"
  jq -n --arg id "$rid" --arg csr "$(cat "$WORK/.csr.b64")" '{registrationId: $id, csr: $csr}' > "$WORK/.reg-body.json"
  local status
  status=$(curl -s --max-time 30 --cacert root/cert.pem -o reg.json -w '%{http_code}' -X PUT \
    -H 'Content-Type: application/json' -H "Authorization: $(sas_token "$(device_key "$group_key" "$rid")" "$rid")" \
    --data-binary @"$WORK/.reg-body.json" \
    "https://127.0.0.1:$port/$SCOPE/registrations/$rid/register?api-version=2025-07-01-preview")
  [ "$status" = 200 ] &&
    json reg.json '.registrationState.issuedCertificateChain[0]' | base64 -d | openssl x509 -inform DER -out "$rid.pem"
  echo "$status"
}

service_claim_ca() {
  "$ENROLL" ca init --dir "$1" --subject "/O=Factory/CN=$1 Claim CA" >/dev/null 2>&1
  "$ENROLL" admin ca upload "$1" --cert "$1/cert.pem" --data data --json > "$1.up.json" || { fail "upload $1"; return; }
  local code
  code=$(json "$1.up.json" .verification_code)
  "$ENROLL" key new --out "$1.v.key" >/dev/null
  "$ENROLL" csr new --key "$1.v.key" --dn "CN=$code" --out "$1.v.csr" 2>/dev/null
  "$ENROLL" ca sign --dir "$1" --profile device --cn "$code" "$1.v.csr" --out "$1.v.pem" 2>/dev/null
  check "claim CA $1 proven" "$ENROLL" admin ca verify "$1" --cert "$1.v.pem" --data data
}
service_claim_cert() {
  "$ENROLL" key new --out "$2.key" >/dev/null
  "$ENROLL" csr new --key "$2.key" --dn "CN=$2" --out "$2.csr" 2>/dev/null
  "$ENROLL" ca sign --dir "$1" --profile device --cn "$2" "$2.csr" --out "$2.pem" 2>/dev/null
}

# Under a lock (ctest -j, or two builds sharing a cache); the stamp names the
# lockfile's digest and is written only after a complete install.
npm_install() {
  local src=$1 cache=$2 want
  want=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
  mkdir -p "$cache" || return 1
  (
    flock 9
    if [ "$(cat "$cache/.stamp" 2>/dev/null)" = "$want" ] && [ -d "$cache/node_modules" ]; then exit 0; fi
    rm -f "$cache/.stamp"
    cp "$src/package.json" "$src/package-lock.json" "$cache/" || exit 1
    # --ignore-scripts: nothing of the packages runs at install time.
    npm ci --prefix "$cache" --ignore-scripts --no-audit --no-fund --fetch-retries=1 \
      --fetch-timeout=60000 > "$cache/npm-ci.log" 2>&1 || exit 1
    echo "$want" > "$cache/.stamp"
  ) 9> "$cache/.lock"
}
