#!/usr/bin/env bash
# DPS over MQTT end to end: enrolld with "mqtt", driven by mosquitto's
# clients (an MQTT implementation independent of ours) and raw bytes from
# python3; the issued chain judged by openssl.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
for tool in mosquitto_rr mosquitto_sub mosquitto_pub python3 jq; do
  command -v $tool >/dev/null || { cannot_run "test_dps_mqtt" "no $tool"; finish; }
done
SCOPE=0ne00000042
API=2025-07-01-preview

service_pki
service_store "$SCOPE"
GROUP_KEY=$(cat group.key)

start() { # CONFIG-EXTRA LOG -> PID, MQTT_PORT
  enrolld_mqtt_start "$2" "$1" ', "connect_timeout_seconds": 2, "max_keepalive_seconds": 2, "max_packet_bytes": 70000'
  PID=$EPID
}
start "" enrolld.log
[ -n "$MQTT_PORT" ] && pass || { fail "enrolld printed no mqtt_port: $(cat enrolld.log)"; finish; }

body() { # RID KEYFILE -> body.json
  "$ENROLL" csr new --key "$2" --dn "CN=$1" --format b64 --out - 2>/dev/null > csr.b64
  jq -n --arg id "$1" --arg csr "$(cat csr.b64)" '{registrationId: $id, csr: $csr}' > body.json
}
TLS=(--cafile root/cert.pem -h 127.0.0.1 -p "$MQTT_PORT")
# mosquitto_rr waits on one exact topic (no wildcard): the answer it expects.
rr() { # RID PASSWORD TOPIC PAYLOAD-FILE ANSWER-TOPIC [extra] -> "topic payload" on stdout
  local rid=$1 pw=$2 topic=$3 file=$4 answer=$5; shift 5
  local auth=(); [ -n "$pw" ] && auth=(-P "$pw")
  mosquitto_rr "${TLS[@]}" "$@" -V mqttv5 -q 1 -i "$rid" -u "$SCOPE/registrations/$rid/api-version=$API&ClientVersion=test%2F1" \
    "${auth[@]}" -e "$answer" -t "$topic" -m "$(cat "$file")" -W 10 -F '%t %p'
}

# mosquitto_rr aborts (134) on a refused CONNACK: any failure is a refusal here.
expect_exit_not_0() { # DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" >"$WORK/.out" 2>"$WORK/.err"; then fail "$what: succeeded"; else pass; fi
}

# SAS group-key registration with a CSR: answered 200, the chain verifies.
"$ENROLL" key new --out dev.key >/dev/null
DEV_KEY=$(device_key "$GROUP_KEY" dev-001)
body dev-001 dev.key
expect_exit 0 "MQTT 5 register (mosquitto_rr)" rr dev-001 "$(sas_token "$DEV_KEY" dev-001)" '$dps/registrations/PUT/iotdps-register/?$rid=1' body.json '$dps/registrations/res/200/?$rid=1'
topic=$(cut -d' ' -f1 "$WORK/.out")
same "answer topic: 200 for rid 1" "$topic" '$dps/registrations/res/200/?$rid=1'
cut -d' ' -f2- "$WORK/.out" > answer.json
same "status assigned" "$(json answer.json .status)" "assigned"
json answer.json '.registrationState.issuedCertificateChain[0]' | base64 -d | openssl x509 -inform DER -out leaf.pem
json answer.json '.registrationState.issuedCertificateChain[1]' | base64 -d | openssl x509 -inform DER -out inter.pem
expect_exit 0 "the issued chain verifies (openssl verify -purpose sslclient)" openssl verify -purpose sslclient -CAfile root/cert.pem -untrusted inter.pem leaf.pem
expect_exit 0 "the leaf holds the device's key" "$ENROLL" match dev.key leaf.pem

# A bad SAS token is refused at CONNACK (0x86), before any request.
expect_exit_not_0 "bad SAS token: refused" rr dev-001 "$(sas_token "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" dev-001)" '$dps/registrations/PUT/iotdps-register/?$rid=1' body.json '$dps/registrations/res/200/?$rid=1'
contains "$WORK/.err" "Bad User Name or Password" "bad SAS token: refused at CONNACK"
# The CONNACK refusal is audited like a request's (401001: the token does not verify), by the committer within about a second.
audited=0
for _ in $(seq 1 40); do
  audited=$(sqlite3 data/enroll.db "select count(*) from audit_event where registration_id='dev-001' and outcome='rejected' and reason_code=401001")
  [ "$audited" -ge 1 ] && break
  sleep 0.1
done
same "the refused CONNECT is audited (401001)" "$audited" "1"
# A client id other than the registration id (0x85).
mosquitto_rr "${TLS[@]}" -V mqttv5 -i someone-else -u "$SCOPE/registrations/dev-001/api-version=$API" -P "$(sas_token "$DEV_KEY" dev-001)" \
  -e '$dps/registrations/res/200/?$rid=1' -t '$dps/registrations/PUT/iotdps-register/?$rid=1' -f body.json -W 5 > /dev/null 2> "$WORK/.err"
contains "$WORK/.err" "Client Identifier not valid" "client id != registration id: refused"
lacks enrolld.log "SharedAccessSignature" "the token is never logged"

# Someone else's subscription hears nothing of dev-001's answers.
# -d: the spy reports its SUBACK (line-buffered: stdbuf), so the check runs
# only once it listens; it is stopped after the other device's answer.
stdbuf -oL mosquitto_sub "${TLS[@]}" -V mqttv5 -d -i dev-002 -u "$SCOPE/registrations/dev-002/api-version=$API" \
  -P "$(sas_token "$(device_key "$GROUP_KEY" dev-002)" dev-002)" -t '$dps/registrations/res/#' -W 30 > spy.out 2>&1 &
SPY=$!
for _ in $(seq 1 300); do grep -qs "received SUBACK" spy.out && break; sleep 0.05; done
contains spy.out "received SUBACK" "the spy is subscribed to \$dps/registrations/res/#"
"$ENROLL" key new --out dev3.key >/dev/null
body dev-003 dev3.key
expect_exit 0 "another device registers while a spy listens" rr dev-003 "$(sas_token "$(device_key "$GROUP_KEY" dev-003)" dev-003)" '$dps/registrations/PUT/iotdps-register/?$rid=1' body.json '$dps/registrations/res/200/?$rid=1'
sleep 0.5 # an answer sent astray would have reached the spy by now
kill "$SPY" 2>/dev/null; wait "$SPY" 2>/dev/null
same "the spy received nothing" "$(grep -c "received PUBLISH" spy.out)" "0"

# X.509 attestation: a bootstrap certificate in the TLS handshake, no password.
service_x509_group xfleet
"$ENROLL" key new --out x1.boot.key >/dev/null
"$ENROLL" csr new --key x1.boot.key --dn "CN=dev-x1" --out x1.boot.csr 2>/dev/null
"$ENROLL" ca sign --dir boot-int --profile device --cn dev-x1 x1.boot.csr --out x1.boot.crt 2>/dev/null
cat x1.boot.crt boot-int/cert.pem > x1.chain.pem
"$ENROLL" key new --out x1.key >/dev/null
body dev-x1 x1.key
expect_exit 0 "X.509 register over MQTT" rr dev-x1 "" '$dps/registrations/PUT/iotdps-register/?$rid=7' body.json '$dps/registrations/res/200/?$rid=7' --cert x1.chain.pem --key x1.boot.key
same "X.509: answered 200" "$(cut -d' ' -f1 "$WORK/.out")" '$dps/registrations/res/200/?$rid=7'
expect_exit_not_0 "X.509: a certificate for another id is refused at CONNACK" rr dev-x9 "" '$dps/registrations/PUT/iotdps-register/?$rid=7' body.json '$dps/registrations/res/200/?$rid=7' --cert x1.chain.pem --key x1.boot.key

# Raw MQTT 3.1.1 over TLS (python3): the C SDK's flow, a malformed packet
# closing only its own connection, and the deadlines.
cat > raw.py <<'PY'
import socket, ssl, struct, sys, time, json
port, cafile, scope, rid, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
def s(b): b = b.encode() if isinstance(b, str) else b; return struct.pack('>H', len(b)) + b
def vl(n):
    o = b''
    while True:
        d = n & 0x7f; n >>= 7; o += bytes([d | 0x80 if n else d])
        if not n: return o
def pkt(first, body): return bytes([first]) + vl(len(body)) + body
def conn():
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=10), server_hostname='localhost')
def read_packet(c):
    h = c.recv(1)
    if not h: return None
    n, shift = 0, 0
    while True:
        b = c.recv(1)[0]; n |= (b & 0x7f) << shift; shift += 7
        if not b & 0x80: break
    body = b''
    while len(body) < n:
        more = c.recv(n - len(body))
        if not more: return None
        body += more
    return h[0], body
def connect(c, keepalive=240):
    user = scope + '/registrations/' + rid + '/api-version=2019-03-31&ClientVersion=c-sdk'
    c.sendall(pkt(0x10, s('MQTT') + bytes([4, 0xc0]) + struct.pack('>H', keepalive) + s(rid) + s(user) + s(pw)))
    return read_packet(c)
def closed(c):
    try:
        return c.recv(1) == b''
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True
what = sys.argv[6]
if what == 'c-sdk':   # 3.1.1: subscribe, register QoS 1, poll QoS 0 with an empty payload
    c = conn(); print('connack', connect(c)[1].hex())
    c.sendall(pkt(0x82, b'\x00\x01' + s('$dps/registrations/res/#') + b'\x01'))
    print('suback', read_packet(c)[1].hex())
    c.sendall(pkt(0x32, s('$dps/registrations/PUT/iotdps-register/?$rid=1') + b'\x00\x02' + open('body.json', 'rb').read()))
    seen = []
    while len(seen) < 2:
        t, b = read_packet(c); seen.append((t, b))
    print('puback', [b.hex() for t, b in seen if t == 0x40])
    ans = [b for t, b in seen if t >> 4 == 3][0]
    tl = struct.unpack('>H', ans[:2])[0]; topic = ans[2:2 + tl].decode(); doc = json.loads(ans[2 + tl:])
    print('answer', topic, doc.get('status'))
    if topic.startswith('$dps/registrations/res/202/'):
        c.sendall(pkt(0x30, s('$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=' + doc['operationId'])))
        t, b = read_packet(c)
        tl = struct.unpack('>H', b[:2])[0]
        print('poll', b[2:2 + tl].decode(), json.loads(b[2 + tl:]).get('status'))
    c.sendall(b'\xc0\x00'); print('pingresp', read_packet(c)[0] == 0xd0)
elif what == 'malformed':  # a bad packet on one connection; another stays up
    good = conn(); connect(good)
    bad = conn(); connect(bad)
    bad.sendall(b'\x30\xff\xff\xff\xff\x01')
    print('bad closed', closed(bad))
    good.sendall(b'\xc0\x00'); print('good pingresp', read_packet(good)[0] == 0xd0)
elif what == 'flood':  # six registers at once: four go to the core, the rest are answered 429
    c = conn(); connect(c)
    c.sendall(pkt(0x82, b'\x00\x01' + s('$dps/registrations/res/#') + b'\x00')); read_packet(c)
    body = open('body.json', 'rb').read()
    c.sendall(b''.join(pkt(0x30, s('$dps/registrations/PUT/iotdps-register/?$rid=%d' % i) + body) for i in range(1, 7)))
    topics = []
    while len(topics) < 6:
        t, b = read_packet(c)
        if t >> 4 == 3: topics.append(b[2:2 + struct.unpack('>H', b[:2])[0]].decode().split('/?')[0])
    print('throttled', topics.count('$dps/registrations/res/429'), 'assigned', topics.count('$dps/registrations/res/200'))
elif what == 'connect-timeout':
    c = conn(); t = time.time(); print('closed', closed(c), 'after', round(time.time() - t))
elif what == 'register':  # CONNECT, wait argv[7] whole seconds, subscribe, one register: its answer topic
    if pw.startswith('expiring:'):  # a token made here, 297 s past its se: inside the 300 s skew for 3 s
        import base64, hashlib, hmac, urllib.parse
        sr, se = scope + '%2Fregistrations%2F' + rid, str(int(time.time()) - 297)
        sig = base64.b64encode(hmac.new(base64.b64decode(pw[9:]), (sr + '\n' + se).encode(), hashlib.sha256).digest()).decode()
        pw = 'SharedAccessSignature sr=%s&sig=%s&se=%s&skn=registration' % (sr, urllib.parse.quote(sig, safe=''), se)
    c = conn(); print('connack', connect(c)[1].hex())
    for _ in range(int(sys.argv[7])):  # waiting, a PINGREQ a second (the keepalive is 2 s here)
        time.sleep(1); c.sendall(b'\xc0\x00'); read_packet(c)
    c.sendall(pkt(0x82, b'\x00\x01' + s('$dps/registrations/res/#') + b'\x00')); read_packet(c)
    c.sendall(pkt(0x30, s('$dps/registrations/PUT/iotdps-register/?$rid=1') + open('body.json', 'rb').read()))
    t, b = read_packet(c)
    tl = struct.unpack('>H', b[:2])[0]; print('answer', b[2:2 + tl].decode(), json.loads(b[2 + tl:]).get('errorCode'))
elif what == 'pipelined':  # CONNECT, SUBSCRIBE and PUBLISH in one write (3.1.1 allows it), ten times
    answers = []
    for i in range(10):
        c = conn()
        user = scope + '/registrations/' + rid + '/api-version=2019-03-31&ClientVersion=c-sdk'
        c.sendall(pkt(0x10, s('MQTT') + bytes([4, 0xc0]) + struct.pack('>H', 60) + s(rid) + s(user) + s(pw)) +
                  pkt(0x82, b'\x00\x01' + s('$dps/registrations/res/#') + b'\x01') +
                  pkt(0x32, s('$dps/registrations/PUT/iotdps-register/?$rid=1') + b'\x00\x02' + open('body.json', 'rb').read()))
        while True:
            p = read_packet(c)
            if p is None or p[0] >> 4 == 3: break
        answers.append(p[1][2:2 + struct.unpack('>H', p[1][:2])[0]].decode().split('/?')[0] if p else 'closed')
        c.close()
    print('answers', answers.count('$dps/registrations/res/200'), 'of', len(answers))
elif what == 'slow-commit':  # the store held 2 s (keepalive 3 s): the PUBACK comes anyway, the answer after
    import sqlite3, threading
    c = conn(); connect(c)
    c.sendall(pkt(0x82, b'\x00\x01' + s('$dps/registrations/res/#') + b'\x01')); read_packet(c)
    db = sqlite3.connect(sys.argv[7], isolation_level=None, check_same_thread=False)
    db.execute('BEGIN IMMEDIATE')
    threading.Timer(2.0, lambda: db.execute('COMMIT')).start()
    t0 = time.time()
    c.sendall(pkt(0x32, s('$dps/registrations/PUT/iotdps-register/?$rid=1') + b'\x00\x09' + open('body.json', 'rb').read()))
    got = {}
    while len(got) < 2:
        t, b = read_packet(c); got.setdefault(t >> 4, (round(time.time() - t0, 2), b[:2].hex() if t >> 4 == 4 else ''))
    print('puback', got[4][0], got[4][1], 'answer', got[3][0])
elif what == 'keepalive':  # keepalive 1 s: silent past 1.5 s is closed
    c = conn(); connect(c, keepalive=1); t = time.time(); print('closed', closed(c), 'after', round(time.time() - t, 1))
PY
DEV4_PW=$(sas_token "$(device_key "$GROUP_KEY" dev-004)" dev-004)
"$ENROLL" key new --out dev4.key >/dev/null
body dev-004 dev4.key
check "3.1.1 C SDK flow" python3 raw.py "$MQTT_PORT" root/cert.pem "$SCOPE" dev-004 "$DEV4_PW" c-sdk
contains "$WORK/.out" "connack 0000" "3.1.1: CONNACK accepted"
contains "$WORK/.out" "suback 000101" "3.1.1: SUBACK grants QoS 1"
contains "$WORK/.out" "puback ['0002']" "3.1.1: PUBACK for the register"
contains "$WORK/.out" 'answer $dps/registrations/res/200/?$rid=1 assigned' "3.1.1: answered 200"
contains "$WORK/.out" "pingresp True" "3.1.1: PINGRESP"
check "six registers without waiting" python3 raw.py "$MQTT_PORT" root/cert.pem "$SCOPE" dev-004 "$DEV4_PW" flood
contains "$WORK/.out" "throttled 2 assigned 4" "at most 4 requests in the core per connection; the rest answered 429"
check "a malformed packet" python3 raw.py "$MQTT_PORT" root/cert.pem "$SCOPE" dev-004 "$DEV4_PW" malformed
contains "$WORK/.out" "bad closed True" "the malformed connection is closed"
contains "$WORK/.out" "good pingresp True" "the other keeps working"
check "connect timeout" python3 raw.py "$MQTT_PORT" root/cert.pem "$SCOPE" dev-004 "$DEV4_PW" connect-timeout
contains "$WORK/.out" "closed True after 2" "no CONNECT: closed after connect_timeout_seconds (2)"
check "keepalive" python3 raw.py "$MQTT_PORT" root/cert.pem "$SCOPE" dev-004 "$DEV4_PW" keepalive
contains "$WORK/.out" "closed True after 1." "keepalive 1 s: closed after 1.5 s of silence"
# CONNECT's attestation stands in for the register that follows only
# while the token lives and for CONNECT's registration id.
"$ENROLL" key new --out dev6.key >/dev/null
body dev-006 dev6.key
check "a token expiring while connected" python3 raw.py "$MQTT_PORT" root/cert.pem "$SCOPE" dev-006 "expiring:$(device_key "$GROUP_KEY" dev-006)" register 4
contains "$WORK/.out" "connack 0000" "the token was still good at CONNECT"
contains "$WORK/.out" 'answer $dps/registrations/res/401/?$rid=1 401003' "expired while connected: the register is refused (401003, token expired)"
DEV7_PW=$(sas_token "$(device_key "$GROUP_KEY" dev-007)" dev-007)
body dev-other dev6.key
check "another registration id on the connection" python3 raw.py "$MQTT_PORT" root/cert.pem "$SCOPE" dev-007 "$DEV7_PW" register 0
contains "$WORK/.out" "connack 0000" "CONNECT as dev-007 accepted"
grep -q 'answer $dps/registrations/res/4[0-9][0-9]/' "$WORK/.out" && pass || fail "a register for dev-other on dev-007's connection: $(cat "$WORK/.out")"
body dev-004 dev4.key
check "pipelined CONNECT+SUBSCRIBE+PUBLISH" python3 raw.py "$MQTT_PORT" root/cert.pem "$SCOPE" dev-004 "$DEV4_PW" pipelined
contains "$WORK/.out" "answers 10 of 10" "pipelined after a full TLS handshake: every register answered"
# A PUBACK waits for its answer to share its write, but not for a slow one.
"$ENROLL" key new --out dev8.key >/dev/null
body dev-008 dev8.key
check "a register while the store is held" python3 raw.py "$MQTT_PORT" root/cert.pem "$SCOPE" dev-008 "$(sas_token "$(device_key "$GROUP_KEY" dev-008)" dev-008)" slow-commit data/enroll.db
awk '$1 == "puback" && $2 < 1.2 && $3 == "0009" && $5 >= 1.2 { ok = 1 } END { exit !ok }' "$WORK/.out" && pass ||
  fail "the PUBACK (packet 9) within 1.2 s while the commit waits, the answer after: $(cat "$WORK/.out")"
check "metrics" curl -s --cacert root/cert.pem "https://127.0.0.1:$(grep -o '"port":[0-9]*' enrolld.log | head -1 | cut -d: -f2)/metrics"
contains "$WORK/.out" 'enroll_mqtt_closed_total{reason="malformed"} 1' "metrics: malformed counted"
# SIGHUP: a new server certificate reaches the MQTT port too.
old_serial=$(echo | openssl s_client -connect "127.0.0.1:$MQTT_PORT" 2>/dev/null | openssl x509 -noout -serial)
"$ENROLL" key new --out server2.key >/dev/null
"$ENROLL" csr new --key server2.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server2.csr 2>/dev/null
"$ENROLL" ca sign --dir root --profile server server2.csr --out server2.pem 2>/dev/null
mv server2.key server.key; mv server2.pem server.pem
kill -HUP "$PID"
for _ in $(seq 1 40); do grep -q '"event":"reloaded"' enrolld.log && break; sleep 0.05; done
new_serial=$(echo | openssl s_client -connect "127.0.0.1:$MQTT_PORT" 2>/dev/null | openssl x509 -noout -serial)
same "reload: the MQTT port serves the new certificate" "$new_serial" "$(openssl x509 -in server.pem -noout -serial)"
[ -n "$old_serial" ] && [ "$old_serial" != "$new_serial" ] && pass || fail "reload: serial $old_serial -> $new_serial"
kill "$PID"; wait "$PID" 2>/dev/null
same "enrolld stopped cleanly (connections open, calls cancelled)" "$(grep -c '"event":"stopped"' enrolld.log)" "1"
lacks enrolld.log "Sanitizer" "no sanitizer report (ASan builds)"

# 202 and a poll: assigning_after_ms 0 makes every registration 202.
start ', "limits": {"assigning_after_ms": 0}' enrolld2.log
TLS=(--cafile root/cert.pem -h 127.0.0.1 -p "$MQTT_PORT")
DEV5_PW=$(sas_token "$(device_key "$GROUP_KEY" dev-005)" dev-005)
"$ENROLL" key new --out dev5.key >/dev/null
body dev-005 dev5.key
check "3.1.1 register answered 202, then polled" python3 raw.py "$MQTT_PORT" root/cert.pem "$SCOPE" dev-005 "$DEV5_PW" c-sdk
contains "$WORK/.out" 'answer $dps/registrations/res/202/?$rid=1&retry-after=' "202 assigning with retry-after"
contains "$WORK/.out" 'poll $dps/registrations/res/' "the poll answers on its own rid"
grep -q 'poll $dps/registrations/res/\(200\|202\)/?$rid=2' "$WORK/.out" && pass || fail "poll: $(cat "$WORK/.out")"
finish
