#!/usr/bin/env bash
# The certificates enroll issues, used for what they are for: devices talking
# to a real MQTT broker (mosquitto) over mutual TLS. The broker, configured by
# lib_broker.sh, is the judge: it must accept our device certificates and
# refuse no certificate, another CA's, a revoked one and an expired one, and
# its ACL (user = certificate CN) must keep each device under devices/<CN>/#.
# Each refusal is also explained by the TLS alert the broker sends
# (openssl s_client, TLS 1.2 so the alert arrives inside the handshake).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_broker.sh"
cd "$WORK"

for tool in mosquitto mosquitto_pub mosquitto_sub; do
  if ! command -v "$tool" >/dev/null; then
    cannot_run "the broker tests" "$tool is not installed (mosquitto, mosquitto-clients)"
    finish; exit
  fi
done

# --- The PKI: root, issuing intermediate, the broker's server certificate ---
"$ENROLL" ca init --dir root --subject '/O=Acme/CN=Acme Root' >/dev/null
"$ENROLL" ca init --dir devices-ca --parent root --subject '/O=Acme/CN=Acme Devices' >/dev/null
"$ENROLL" key new --out server.key >/dev/null
"$ENROLL" csr new --key server.key --dn CN=localhost --san DNS:localhost,IP:127.0.0.1 --out server.csr 2>/dev/null
check "server certificate for the broker" "$ENROLL" ca sign --dir root --profile server server.csr --out server.pem
cat root/cert.pem devices-ca/cert.pem > client-ca.pem

device() { # CN [CA-DIR] -> CN.key, CN.crt (enroll ca sign --profile device)
  "$ENROLL" key new --out "$1.key" --force >/dev/null
  "$ENROLL" csr new --key "$1.key" --dn "CN=$1" --out "$1.csr" --force 2>/dev/null
  "$ENROLL" ca sign --dir "${2:-devices-ca}" --profile device --cn "$1" "$1.csr" --out "$1.crt" --force 2>/dev/null
}
for d in dev-001 dev-002 monitor; do check "device certificate $d" device "$d"; done

check "broker starts (mutual TLS, ACL, free port)" broker_start broker client-ca.pem server.pem server.key
[ -n "$BROKER_PORT" ] || { echo "the broker did not start; nothing more to test" >&2; finish; exit 1; }
contains broker/mosquitto.conf "require_certificate true" "config: client certificates required"
contains broker/mosquitto.conf "use_identity_as_username true" "config: CN is the user name"
contains broker/mosquitto.conf "allow_anonymous false" "config: no anonymous clients"
contains broker/acl "pattern readwrite devices/%u/#" "ACL: own prefix"

MQ=(-h localhost --cafile root/cert.pem)
pub() { # CN TOPIC MESSAGE [extra...]: as device CN, QoS 1, MQTT v5
  local cn=$1 topic=$2 msg=$3; shift 3
  mosquitto_pub "${MQ[@]}" -p "$BROKER_PORT" --cert "$cn.crt" --key "$cn.key" -V 5 -q 1 -t "$topic" -m "$msg" "$@"
}
SUB_PID=
sub_start() { # CN CLIENT-ID FILTER OUT [extra...]: one message, then exit; waits until subscribed
  local cn=$1 id=$2 filter=$3 out=$4; shift 4
  mosquitto_sub "${MQ[@]}" -p "$BROKER_PORT" --cert "$cn.crt" --key "$cn.key" -V 5 -q 1 -i "$id" \
      -t "$filter" -C 1 -W 30 "$@" > "$out" 2> "$out.err" &
  SUB_PID=$!
  if broker_wait_subscribed "$id" 20; then pass; else fail "subscriber $id never subscribed"; cat "$out.err" >&2; fi
}
sub_end() { wait "$SUB_PID"; }
refused_by_broker() { # NAME CERT KEY ALERT: mosquitto_pub is refused, and the TLS alert says why
  local what=$1 cert=$2 key=$3 alert=$4 args=()
  [ -n "$cert" ] && args=(--cert "$cert" --key "$key")
  mosquitto_pub "${MQ[@]}" -p "$BROKER_PORT" "${args[@]}" -q 1 -t devices/dev-001/telemetry -m "should-not-arrive" \
      >"$WORK/.out" 2>"$WORK/.err"
  local rc=$?
  if [ "$rc" -ne 0 ]; then pass; else fail "$what: mosquitto_pub succeeded"; fi
  if grep -qE "connection was lost|Protocol error|TLS error" "$WORK/.err"; then pass; else
    fail "$what: no connection error from mosquitto_pub"; sed 's/^/    /' "$WORK/.err" >&2; fi
  openssl s_client -tls1_2 -connect "127.0.0.1:$BROKER_PORT" -servername localhost -CAfile root/cert.pem \
      "${args[@]}" </dev/null > "$WORK/alert.txt" 2>&1
  contains "$WORK/alert.txt" "$alert" "$what: the broker's TLS alert"
}

# --- 1. A device publishes; a subscriber with its own certificate gets exactly that ---
MSG="temp=21.5 hum=40% id=dev-001 nonce=$RANDOM$RANDOM"
sub_start dev-001 sub-own 'devices/dev-001/#' own.txt
check "dev-001 publishes to devices/dev-001/telemetry" pub dev-001 devices/dev-001/telemetry "$MSG"
check "the subscriber exits after one message" sub_end
same "the subscriber received exactly what was sent" "$(cat own.txt)" "$MSG"
contains broker/mosquitto.log "u'dev-001'" "the broker took the certificate's CN as the user name"

# ... and the observer, another certificate, sees it with its topic.
sub_start monitor sub-monitor 'devices/#' monitor.txt -v
check "dev-002 publishes to its own prefix" pub dev-002 devices/dev-002/status "online"
check "the observer exits after one message" sub_end
same "the observer received topic and payload" "$(cat monitor.txt)" "devices/dev-002/status online"

# --- 2. No certificate, 3. another CA's certificate (same names, other keys) ---
refused_by_broker "no client certificate" "" "" "alert handshake failure"
contains broker/mosquitto.log "peer did not return a certificate" "broker log: no certificate"
"$ENROLL" ca init --dir evil-root --subject '/O=Acme/CN=Acme Root' >/dev/null
"$ENROLL" ca init --dir evil-ca --parent evil-root --subject '/O=Acme/CN=Acme Devices' >/dev/null
"$ENROLL" csr new --key dev-001.key --dn CN=dev-001 --out evil.csr 2>/dev/null
"$ENROLL" ca sign --dir evil-ca --profile device --cn dev-001 evil.csr --out evil.crt 2>/dev/null
expect_exit 2 "openssl: the look-alike chain is not ours" \
    openssl verify -CAfile root/cert.pem -untrusted devices-ca/cert.pem evil.crt
refused_by_broker "a certificate from another CA" evil.crt dev-001.key "alert unknown ca"

# --- 6. The ACL: outside its own prefix, a device neither writes nor reads ---
# Publishing: the broker answers PUBACK "not authorized" and drops it. The
# subscriber takes one message; the intruder's comes first, so if it were
# delivered it is what the subscriber would print.
sub_start dev-001 sub-acl-w 'devices/dev-001/#' acl-w.txt
pub dev-002 devices/dev-001/telemetry "intruder" >"$WORK/.out" 2>"$WORK/.err"
contains "$WORK/.err" "Not authorized" "dev-002 writing under devices/dev-001: PUBACK says not authorized"
contains broker/mosquitto.log "Denied PUBLISH from" "broker log: denied publish"
check "dev-001 publishes after the intruder" pub dev-001 devices/dev-001/telemetry "legit"
sub_end
same "only dev-001's own message reached devices/dev-001/#" "$(cat acl-w.txt)" "legit"
# Reading: dev-002 subscribes to every device's telemetry; dev-001's message
# comes first and must not reach it, then dev-002's own one must.
sub_start dev-002 sub-acl-r 'devices/+/telemetry' acl-r.txt -v
check "dev-001 publishes" pub dev-001 devices/dev-001/telemetry "secret-of-dev-001"
check "dev-002 publishes" pub dev-002 devices/dev-002/telemetry "own"
sub_end
same "dev-002 reads only its own prefix" "$(cat acl-r.txt)" "devices/dev-002/telemetry own"

# --- 4. Revocation: dev-002 connects, is revoked, the broker gets the CRL ---
check "before revocation dev-002 connects" pub dev-002 devices/dev-002/telemetry "still-trusted"
serial=$(openssl x509 -in dev-002.crt -noout -serial | cut -d= -f2)
check "enroll ca revoke" "$ENROLL" ca revoke --dir devices-ca "$serial" --reason keyCompromise
check "enroll ca crl (issuing CA)" "$ENROLL" ca crl --dir devices-ca --out devices-crl.pem
check "enroll ca crl (root)" "$ENROLL" ca crl --dir root --out root-crl.pem
cat devices-crl.pem root-crl.pem > crls.pem
contains <(openssl crl -in devices-crl.pem -noout -text) "$serial" "the CRL lists dev-002's serial"
check "broker restarts with the CRL" broker_restart crls.pem
contains broker/mosquitto.conf "crlfile $WORK/crls.pem" "config: crlfile"
refused_by_broker "a revoked certificate" dev-002.crt dev-002.key "alert certificate revoked"
sub_start monitor sub-after-crl 'devices/#' after-crl.txt -v
check "with the CRL loaded, dev-001 still publishes" pub dev-001 devices/dev-001/telemetry "after-crl"
sub_end
same "and is delivered" "$(cat after-crl.txt)" "devices/dev-001/telemetry after-crl"

# --- 5. Expiry ---
# `enroll ca sign` will not issue a certificate valid for under a minute
# ("validity PT1S is shorter than a minute"), has no option to set notBefore
# (validity starts at issuance, backdated a few minutes for clock skew), and
# this machine has no faketime; waiting a minute and more is too slow. So the expired certificate is signed with `openssl ca`,
# which takes explicit -startdate/-enddate, using the issuing CA's key file and
# the same extensions as enroll's device profile. The control: the same
# command with current dates makes a certificate the broker accepts, so the
# refusal can only be the dates.
mkdir ossl-ca && : > ossl-ca/index.txt && echo 01 > ossl-ca/serial
cat > ossl-ca.cnf <<EOF
[ca]
default_ca = issuing
[issuing]
database = $WORK/ossl-ca/index.txt
new_certs_dir = $WORK/ossl-ca
serial = $WORK/ossl-ca/serial
certificate = $WORK/devices-ca/cert.pem
private_key = $WORK/devices-ca/key.pem
default_md = sha256
policy = cn_only
unique_subject = no
copy_extensions = none
x509_extensions = device
[cn_only]
commonName = supplied
[device]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
EOF
"$ENROLL" key new --out dev-old.key >/dev/null
"$ENROLL" csr new --key dev-old.key --dn CN=dev-old --out dev-old.csr 2>/dev/null
check "openssl ca: a certificate that expired in 2020" openssl ca -batch -config ossl-ca.cnf -notext \
    -startdate 20200101000000Z -enddate 20200102000000Z -in dev-old.csr -out dev-old.crt
check "openssl ca: the control, valid now" openssl ca -batch -config ossl-ca.cnf -notext \
    -days 1 -in dev-old.csr -out dev-now.crt
cp dev-old.key dev-now.key
expect_exit 1 "enroll verify: expired" "$ENROLL" verify --root root/cert.pem --untrusted devices-ca/cert.pem \
    --purpose client dev-old.crt
contains "$WORK/.err" "expired on 2020-01-02" "enroll verify says expired"
sub_start monitor sub-control 'devices/#' control.txt -v
check "the control certificate publishes" pub dev-now devices/dev-old/telemetry "control"
sub_end
same "the control message is delivered" "$(cat control.txt)" "devices/dev-old/telemetry control"
refused_by_broker "an expired certificate" dev-old.crt dev-old.key "alert certificate expired"

# --- 7. A key that never leaves a PKCS#11 token (SoftHSM2) ---
MODULE=/usr/lib/softhsm/libsofthsm2.so
ENGINE_SO="$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"/\1/p')/pkcs11.so"
if [ ! -e "$MODULE" ]; then
  cannot_run "the PKCS#11 case" "$MODULE is missing (softhsm2)"
elif [ ! -e "$ENGINE_SO" ]; then
  cannot_run "the PKCS#11 case" "the OpenSSL pkcs11 engine $ENGINE_SO is missing (libengine-pkcs11-openssl)"
else
  mkdir p11
  softhsm_token broker-t
  printf '87654321\n' > pin.txt; chmod 600 pin.txt
  P11=(--module "$MODULE" --pin-file pin.txt)
  URI='pkcs11:token=broker-t;object=devkey'
  check "PKCS#11: key new in the token" "$ENROLL" key new --type ec-p256 --key "$URI" "${P11[@]}" --json
  same "PKCS#11: the key is not extractable" "$(json "$WORK/.out" .extractable)" "false"
  check "PKCS#11: CSR signed by the token" "$ENROLL" csr new --key "$URI" "${P11[@]}" --dn CN=dev-p11 --out dev-p11.csr
  check "PKCS#11: certificate issued" "$ENROLL" ca sign --dir devices-ca --profile device --cn dev-p11 dev-p11.csr --out dev-p11.crt
  expect_exit 0 "PKCS#11: the certificate holds the token's key" "$ENROLL" match "$URI" dev-p11.crt "${P11[@]}"

  # mosquitto_pub loads the key through OpenSSL's pkcs11 engine (libp11),
  # pointed at SoftHSM2 by an OpenSSL config file. Two quirks, both handled
  # here: libp11 reads the PIN from the URI (pin-source=file:..., a file
  # without a newline; the engine's PIN control from a config file was not
  # honoured by libp11 0.4.12), and libmosquitto's mosquitto_tls_set() fopen()s
  # the --key argument as a file even with --keyform engine, so an empty file
  # named like the URI must exist in the working directory.
  cat > p11/openssl.cnf <<EOF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE_SO
MODULE_PATH = $MODULE
EOF
  printf '87654321' > p11/pin; chmod 600 p11/pin
  printf '00000000' > p11/wrong-pin; chmod 600 p11/wrong-pin
  KEYURI="$URI;type=private;pin-source=file:pin"
  BADURI="$URI;type=private;pin-source=file:wrong-pin"
  : > "p11/$KEYURI"; : > "p11/$BADURI"
  p11_pub() { # KEY-URI MESSAGE
    (cd p11 && OPENSSL_CONF=$WORK/p11/openssl.cnf mosquitto_pub -h localhost -p "$BROKER_PORT" --cafile ../root/cert.pem \
        --cert ../dev-p11.crt --tls-engine pkcs11 --keyform engine --key "$1" \
        -V 5 -q 1 -t devices/dev-p11/telemetry -m "$2" </dev/null)
  }
  MSG="from the token $RANDOM"
  sub_start monitor sub-p11 'devices/dev-p11/#' p11.txt -v
  check "PKCS#11: mosquitto_pub signs the TLS handshake with the token key" p11_pub "$KEYURI" "$MSG"
  sub_end
  same "PKCS#11: the message arrives" "$(cat p11.txt)" "devices/dev-p11/telemetry $MSG"
  contains broker/mosquitto.log "u'dev-p11'" "PKCS#11: the broker saw CN dev-p11"
  # The control: with a wrong PIN the token refuses, and so does everything after.
  expect_exit 1 "PKCS#11: with a wrong PIN there is no key, and no connection" p11_pub "$BADURI" "nope"
  contains "$WORK/.err" "Login failed" "PKCS#11: the token refused the login"
fi

pid=$BROKER_PID
broker_stop
if kill -0 "$pid" 2>/dev/null; then fail "the broker is still running after broker_stop"; else pass; fi
finish
