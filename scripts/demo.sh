#!/usr/bin/env bash
# The enroll walkthrough (`make demo`): a device makes its key, builds a
# CSR, and an operator checks it, first with a key in a file and then with a
# key that never leaves a PKCS#11 token (SoftHSM2). Later issues extend this
# into the full provisioning flow.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
enroll="$root/$build/src/enroll"
work=$(mktemp -d /tmp/enroll-demo-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "1. The device generates its own key pair (EC P-256; the file is 0600)"
run "$enroll" key new --type ec-p256 --out device.key
ls -l device.key | awk '{print "   mode " $1 "  " $NF}'

step "2. It builds a PKCS#10 CSR: CN = its registration id, client-auth usage"
run "$enroll" csr new --key device.key --subject '/O=Acme, Inc./CN=dev-001' \
    --san DNS:dev-001.devices.acme.example --ku digitalSignature --eku clientAuth --out device.csr
echo "   The same request as DPS carries it in JSON (base64 DER, no header lines):"
"$enroll" csr new --key device.key --subject '/O=Acme, Inc./CN=dev-001' --format b64 | cut -c1-72 | sed 's/$/.../; s/^/   /'

step "3. Anyone can read it (enroll csr show; --json for scripts)"
run "$enroll" csr show device.csr

step "4. The operator checks proof of possession and lints it against the DPS rule"
run "$enroll" csr verify device.csr
run "$enroll" csr lint device.csr --expect-cn dev-001

step "5. A CSR with problems: the Wikipedia example (MD5, C=EN, wildcard CN)"
set +e
run "$enroll" csr lint "$root/tests/data/seed002-wikipedia.csr"
echo "   exit status: $? (1 = findings at or above --fail-on)"
step "6. The CSR printed in an IoT tutorial is not even valid DER"
run "$enroll" csr show "$root/tests/data/seed000-invalid.csr"
echo "   exit status: $?"
set -e

step "7. Which key goes with which CSR? (the 'mismatched private key' problem)"
run "$enroll" key new --type ec-p256 --out other.key
run "$enroll" match device.key device.csr
set +e
run "$enroll" match other.key device.csr
echo "   exit status: $?"
set -e

step "8. A key that never leaves a token: SoftHSM2 through PKCS#11"
module=/usr/lib/softhsm/libsofthsm2.so
mkdir -p tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\n' "$work" > softhsm2.conf
export SOFTHSM2_CONF=$work/softhsm2.conf
softhsm2-util --init-token --free --label demo --so-pin 12345678 --pin 87654321 >/dev/null
printf '87654321\n' > pin.txt && chmod 600 pin.txt
run "$enroll" key new --type ec-p256 --key 'pkcs11:token=demo;object=devkey' --module "$module" --pin-file pin.txt
run "$enroll" csr new --key 'pkcs11:token=demo;object=devkey' --module "$module" --pin-file pin.txt \
    --subject /CN=dev-002 --eku clientAuth --out token.csr
echo "   Checked by an independent tool:"
run openssl req -in token.csr -noout -verify
run "$enroll" match 'pkcs11:token=demo;object=devkey' token.csr --module "$module" --pin-file pin.txt

step "9. The operator's CA: a root (pathlen 1) and an intermediate for devices (pathlen 0)"
run "$enroll" ca init --dir root --subject '/O=Acme/CN=Acme Root CA'
run "$enroll" ca init --dir devices-ca --parent root --subject '/O=Acme/CN=Acme Devices CA'

step "10. Issue device certificates: the profile decides, the CN must be the device id"
run "$enroll" ca sign --dir devices-ca --profile device --cn dev-001 --validity P30D \
    --san-allow 'DNS:*.devices.acme.example' device.csr \
    --out device.crt --chain-out device-chain.pem
run "$enroll" ca sign --dir devices-ca --profile device --cn dev-002 --validity P30D token.csr --out token.crt
run "$enroll" cert show device.crt
echo "   A request for someone else's id is refused, and nothing is recorded:"
set +e
run "$enroll" ca sign --dir devices-ca --profile device --cn dev-999 \
    --san-allow 'DNS:*.devices.acme.example' device.csr --out stolen.crt
echo "   exit status: $?"
set -e

step "11. Check the chain: ours, and openssl's"
run "$enroll" verify --root root/cert.pem --untrusted devices-ca/cert.pem --purpose client device.crt
run openssl verify -purpose sslclient -CAfile root/cert.pem -untrusted devices-ca/cert.pem device.crt

step "12. Revoke a compromised device; the CRL says so"
serial=$(openssl x509 -in device.crt -noout -serial | cut -d= -f2)
run "$enroll" ca revoke --dir devices-ca "$serial" --reason keyCompromise
run "$enroll" ca crl --dir root --out root-crl.pem
set +e
run "$enroll" verify --root root/cert.pem --untrusted devices-ca/cert.pem --crl devices-ca/crl.pem \
    --crl root-crl.pem device.crt
echo "   exit status: $?"
set -e
run "$enroll" ca list --dir devices-ca

step "Done. Everything above ran in $work (now removed)."
