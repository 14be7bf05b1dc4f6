#!/usr/bin/env bash
# Installs the Debian 12 packages enroll needs to build, test and demo.
# As root it installs what is missing; otherwise it prints the command.
set -euo pipefail

PACKAGES=(
  cmake ninja-build pkg-config gcc make clang libclang-rt-14-dev llvm
  libssl-dev openssl libjansson-dev libcmocka-dev libp11-kit-dev
  softhsm2 opensc gnutls-bin jq
  libevent-dev libsqlite3-dev sqlite3 curl
  mosquitto mosquitto-clients libengine-pkcs11-openssl
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "enroll needs these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
