#!/usr/bin/env bash
# enroll-device, the binary a device carries (docs/architecture.md,
# "Libraries"): built on libenroll_device alone, so no SQLite, store, CA,
# admin or lint, judged in the sources (what the device-side modules
# include), the built library (its objects and symbols), the binary (ldd,
# nm) and by use: it provisions and renews against a real enrolld.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
SRC=${ENROLL_SOURCE_DIR:?set ENROLL_SOURCE_DIR}
LIBDIR=$(dirname "$ENROLL")
DEV=${ENROLL_DEVICE_BIN:-$LIBDIR/enroll-device}
LIB=$LIBDIR/libenroll_device.a
cd "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
SCOPE=0ne00000088
# What a device must not carry: symbol prefixes, and the libraries behind them.
FORBIDDEN_SYMBOLS='(sqlite3_|enr_store_|enr_ca_|enr_admin_|enr_lint_|enr_aws_|enr_provision_|event_base_|evhttp_|cbor_)'
FORBIDDEN_LIBS='lib(sqlite3|event|cbor)'
DEVICE_MODULES="core key pkcs11 csr cert sas dps mqtt device"
OPERATOR_MODULES="lint ca store admin aws provision service"
# What of aws/ a device does carry: AWS fleet provisioning's topic names
# (aws_fleet_topic.h, one home for both sides), and no CBOR or template.
DEVICE_SIDE_OBJECTS="aws_fleet_topic.c.o"
ALLOWED_SYMBOLS='enr_aws_fleet_(topic_classify|answer_topic|request_topic|filter_allowed)(\.[A-Za-z_]+)?$' # clang names a function's static tables FUNC.NAME

[ -x "$DEV" ] || { cannot_run "the device binary checks" "no $DEV"; finish; exit; }

# ---- sources: no device-side module includes an operator's header
hits=$(cd "$SRC/src" && grep -nE '#include *[<"](sqlite3\.h|enroll/(store|ca|admin|lint|aws_template|aws_fleet|provision|service)\.h|cbor\.h|(store|ca|admin|lint|aws|provision|service)/)' \
  -r $DEVICE_MODULES 2>/dev/null)
empty "device-side modules include no store, CA, admin, lint or service header" "$hits"

# ---- the library: none of the operator's objects, no forbidden symbol
if [ -r "$LIB" ] && command -v nm >/dev/null && command -v ar >/dev/null; then
  members=$(ar t "$LIB")
  for m in $OPERATOR_MODULES; do
    for f in "$SRC/src/$m"/*.c; do
      o=$(basename "$f").o
      grep -qxF "$o" <<<"$DEVICE_SIDE_OBJECTS" && continue
      if grep -qxF "$o" <<<"$members"; then fail "libenroll_device.a holds $m/$o"; else pass; fi
    done
  done
  syms=$(nm -A "$LIB" 2>/dev/null | grep -E " [A-Za-z] $FORBIDDEN_SYMBOLS" | grep -vE " [A-Za-z] $ALLOWED_SYMBOLS" | head -5)
  empty "libenroll_device.a neither defines nor needs SQLite, store, CA, admin, lint or core symbols" "$syms"
  same "libenroll_device.a holds the device client" "$(nm --defined-only "$LIB" | grep -cE ' T enr_device_provision$')" "1"
else
  cannot_run "the library checks" "no $LIB, nm or ar"
fi

# ---- the binary: its shared libraries and its symbols
if command -v ldd >/dev/null; then
  ldd "$DEV" > ldd.txt 2>&1
  contains ldd.txt "libcrypto" "ldd: enroll-device links OpenSSL"
  libs=$(grep -E "$FORBIDDEN_LIBS" ldd.txt)
  empty "ldd: enroll-device needs no libsqlite3, libevent or libcbor" "$libs"
  ldd "$ENROLL" > ldd-full.txt 2>&1
  contains ldd-full.txt "libsqlite3" "ldd: the operator's enroll does link SQLite (the check above can see it)"
else
  cannot_run "the ldd check" "no ldd"
fi
nm "$DEV" > nm.txt 2>/dev/null; nm -D "$DEV" >> nm.txt 2>/dev/null
syms=$(grep -E " [A-Za-z] $FORBIDDEN_SYMBOLS" nm.txt | grep -vE " [A-Za-z] $ALLOWED_SYMBOLS" | head -5)
empty "nm: enroll-device has no SQLite, store, CA, admin, lint or core symbol" "$syms"
if grep -qE ' T enr_device_provision$' nm.txt; then pass
else fail "nm: no enr_device_provision in enroll-device (stripped? the symbol check would judge nothing)"; fi

# ---- the command line
check "--version" "$DEV" --version
contains "$WORK/.out" "enroll-device " "--version names the program"
check "--help" "$DEV" --help
contains "$WORK/.out" "device provision" "--help lists the device commands"
lacks "$WORK/.out" "ca init" "--help lists no operator command"
expect_exit 2 "an operator's command is refused" "$DEV" ca init --dir x --subject /CN=x
contains "$WORK/.err" "enroll" "it says where the command is"
expect_exit 2 "no csr lint on a device" "$DEV" csr lint x.csr
contains "$WORK/.err" "enroll-device csr:" "usage errors name enroll-device"
check "device --help" "$DEV" device --help
check "key new" "$DEV" key new --out dev.key
check "csr new" "$DEV" csr new --key dev.key --dn CN=dev-b1 --out dev.csr
expect_exit 0 "openssl verifies the CSR enroll-device made" openssl req -in dev.csr -noout -verify

# ---- provisioning and renewal against enrolld (operator work with `enroll`)
service_pki
service_store
cat > enrolld.json <<JSON
{"listen": "127.0.0.1:0", "data_dir": "data", "id_scope": "$SCOPE",
 "tls": {"cert": "server.pem", "key": "server.key"}, "workers": 1}
JSON
enrolld_start enrolld.json enrolld.log
[ -n "$PORT" ] || { fail "enrolld did not start"; cat enrolld.log >&2; finish; exit; }
COMMON=(--url "https://127.0.0.1:$PORT" --scope "$SCOPE" --trust root/cert.pem --retries 3 --timeout 20)
check "provision (the device verb alone)" "$DEV" provision "${COMMON[@]}" --registration-id dev-b1 \
    --group-key-file group.key --key dev.key --store s1 --json
same "provisioned" "$(json "$WORK/.out" .provisioned)" "true"
CERT=$(json "$WORK/.out" .certificate)
CHAIN=$(json "$WORK/.out" .chain)
expect_exit 0 "openssl verifies the issued chain" openssl verify -purpose sslclient -CAfile root/cert.pem -untrusted "$CHAIN" "$CERT"
expect_exit 0 "the certificate holds the device's key" "$DEV" match dev.key "$CERT"
check "cert show" "$DEV" cert show "$CERT"
contains "$WORK/.out" "dev-b1" "cert show names the device"
check "status (device noun)" "$DEV" device status --store s1 --json
same "status: last result" "$(json "$WORK/.out" .last_result)" "ok"
check "run --once renews" "$DEV" run --store s1 --once --renew-before P31D --json
same "renewed" "$(json "$WORK/.out" .renewed)" "true"
same "generation 2" "$(json "$WORK/.out" .generation)" "2"
expect_exit 0 "the renewed chain verifies" openssl verify -CAfile root/cert.pem \
    -untrusted "$(json "$WORK/.out" .chain)" "$(json "$WORK/.out" .certificate)"
same "the service recorded both certificates" \
    "$(sqlite3 data/enroll.db "select count(*) from certificate where registration_id='dev-b1'")" "2"

kill -TERM "$EPID" 2>/dev/null; wait "$EPID" 2>/dev/null
finish
