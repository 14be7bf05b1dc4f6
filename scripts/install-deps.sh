#!/usr/bin/env bash
# Installs the Debian 12 packages enroll needs to build, test and demo.
# As root it installs what is missing; otherwise it prints the command.
# Then it checks that every command the build, the tests, the demo and the
# scripts run is really there, naming the package of any that is not: a tool
# missing at test time makes checks fail in confusing ways (or, worse, not
# run), so it is reported here, before anything starts.
set -euo pipefail

# Libraries and headers (cmake finds them; no command to look for).
LIBRARIES=(
  libclang-rt-14-dev libssl-dev libjansson-dev libcmocka-dev libp11-kit-dev
  libevent-dev libsqlite3-dev libengine-pkcs11-openssl libmosquitto-dev
  libcbor-dev                                # AWS fleet provisioning's CBOR payloads (libenroll)
  libpq-dev                                  # the PostgreSQL store
)
# COMMAND:PACKAGE for every program run by the Makefile, scripts/, bench/,
# tests/cli/ and the unit tests (beyond those of a minimal Debian install:
# coreutils, grep, sed, mawk, findutils, diffutils, util-linux, bash).
TOOLS=(
  cmake:cmake ninja:ninja-build pkg-config:pkg-config gcc:gcc make:make clang:clang
  llvm-symbolizer:llvm                       # ASan/UBSan stack traces
  openssl:openssl certtool:gnutls-bin        # the tests' independent judges
  softhsm2-util:softhsm2 pkcs11-tool:opensc  # PKCS#11 tokens
  jq:jq sqlite3:sqlite3 curl:curl
  mosquitto:mosquitto mosquitto_pub:mosquitto-clients mosquitto_sub:mosquitto-clients mosquitto_rr:mosquitto-clients
  xxd:xxd                                    # HMAC keys as hex for openssl
  ss:iproute2                                # free ports for the broker
  pgrep:procps                               # no process left behind (test_e2e)
  node:nodejs npm:npm                        # Microsoft's Node DPS client, AWS's device SDKs (test_*_interop)
  groff:groff-base                           # man pages render without warnings (test_install)
  systemd-analyze:systemd                    # the units verify (test_install)
  dpkg-shlibdeps:dpkg-dev                    # the .deb's dependencies (make package, test_install)
  file:file                                  # cpack finds the programs to run dpkg-shlibdeps on
  python3:python3                            # the tests' raw MQTT clients, HTTPS hook server and CBOR
  psql:postgresql-client                     # the PostgreSQL store's tests
  cfssl:golang-cfssl                         # the bench's issuance peer (bench/run_load.sh cfssl)
  valgrind:valgrind callgrind_control:valgrind callgrind_annotate:valgrind # instructions per registration (bench/)
)
# The PostgreSQL server that the store's tests start (tests/cli/lib_postgres.sh,
# tests/pg/pg_run.sh) is not on PATH: they run it from the newest
# /usr/lib/postgresql/VERSION/bin, so that is where its programs must be.
PG_SERVER_PACKAGE=postgresql
PG_SERVER_PROGRAMS=(initdb pg_ctl postgres)

declare -A seen=()
PACKAGES=("${LIBRARIES[@]}" "$PG_SERVER_PACKAGE")
for t in "${TOOLS[@]}"; do
  p=${t#*:}
  [ -n "${seen[$p]:-}" ] || { PACKAGES+=("$p"); seen[$p]=1; }
done

# A package counts as there when it is installed, or when an installed
# package provides it (another build of nodejs that bundles npm and
# conflicts with Debian's: installing npm then would remove it).
PROVIDED=$(dpkg-query -W -f='${db:Status-Abbrev} ${Provides}\n' 2>/dev/null | sed -n 's/^ii *//p' | tr ',' '\n' |
  sed 's/^ *//; s/ .*//' | sort -u)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    grep -qxF -- "$p" <<<"$PROVIDED" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "enroll needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine has no package lists yet.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

absent=()
for t in "${TOOLS[@]}"; do
  command -v "${t%%:*}" >/dev/null || absent+=("${t%%:*} (package ${t#*:})")
done
pg_bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
for p in "${PG_SERVER_PROGRAMS[@]}"; do
  [ -x "$pg_bin/$p" ] || absent+=("$p, in /usr/lib/postgresql/*/bin (package $PG_SERVER_PACKAGE)")
done
if [ ${#absent[@]} -gt 0 ]; then
  echo "install-deps: these commands are missing (PATH is $PATH) though their packages are installed:" >&2
  printf '  %s\n' "${absent[@]}" >&2
  exit 1
fi
