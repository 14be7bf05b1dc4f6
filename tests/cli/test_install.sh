#!/usr/bin/env bash
# What an operator installs (issue 12): `cmake --install` (what `make install`
# runs) into a scratch prefix and into a DESTDIR, then
# - every deliverable is where docs/operations.md says: the three programs,
#   both static libraries with their public headers (not enrolld's insides)
#   and pkg-config files, a program built against them with pkg-config runs
#   (its link line asks for nothing a Debian machine with the -dev packages
#   of the dependencies lacks: no -lz),
#   man pages for every command `enroll --help` lists whose text is that
#   command's --help byte for byte (and groff renders without a warning),
#   bash completion answering from the installed programs, the systemd units
#   passing `systemd-analyze verify`, the example config;
# - `make install DESTDIR=...`: the enrolld installed there, run with the
#   installed example config (its paths moved into the scratch directory),
#   serves a registration over HTTPS and over MQTT to the enroll-device
#   installed there, judged by openssl verify;
# - the .deb (cpack) declares its dependencies, installs with dpkg -i (the
#   enroll user, /var/lib/enroll 0700, units verified in place) and removes
#   cleanly: after dpkg --purge none of its files is left. As root only, and
#   not for the sanitizer build (its programs need the sanitizer runtime).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_service.sh"
cd "$WORK"
PIDS=()
DEB_INSTALLED=
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  [ -n "$DEB_INSTALLED" ] && dpkg --purge enroll >/dev/null 2>&1
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
BUILD=${ENROLL_BUILD_DIR:?}
SRC=${ENROLL_SOURCE_DIR:?}
for t in cmake pkg-config groff systemd-analyze; do
  command -v "$t" >/dev/null || cannot_run "test_install" "no $t"
done

# ---- cmake --install into a prefix (real paths: the units name real binaries)
P=$WORK/prefix
check "cmake --install --prefix" cmake --install "$BUILD" --prefix "$P"
for b in enroll enroll-device enrolld; do
  [ -x "$P/bin/$b" ] && pass || fail "installed: no executable bin/$b"
done
LIBDIR=$(dirname "$(find "$P" -name libenroll_device.a | head -1)")
[ -f "$LIBDIR/libenroll.a" ] && [ -f "$LIBDIR/libenroll_device.a" ] && pass || fail "installed: the two static libraries"
for h in error.h csr.h cert.h ca.h store.h device.h; do
  [ -f "$P/include/enroll/$h" ] && pass || fail "installed: public header $h"
done
for h in service.h provision.h; do # enrolld's insides are not an interface
  [ ! -e "$P/include/enroll/$h" ] && pass || fail "installed: $h is not public"
done
# A public header must compile alone (no header of a module left out).
for h in "$P"/include/enroll/*.h; do
  printf '#include "enroll/%s"\n' "$(basename "$h")" > hdr.c
  ${ENROLL_C_COMPILER:-cc} -std=c17 -fsyntax-only -I"$P/include" $(pkg-config --cflags libcrypto) hdr.c 2> hdr.err &&
    pass || fail "installed header $(basename "$h") does not compile alone: $(head -3 hdr.err)"
done

# ---- pkg-config: a program built against the installed libraries runs
cat > pc.c <<'EOF'
#include <stdio.h>
#include <string.h>
#include "enroll/csr.h"
#include "enroll/error.h"
#include "enroll/store.h"
/* The device library parses a CSR (it must refuse garbage with a typed
 * code), the operator's library opens a store. */
int main(int argc, char **argv) {
    enr_error err;
    enr_error_clear(&err);
    enr_csr *csr = NULL;
    if (enr_csr_parse((const unsigned char *)"junk", 4, &csr, &err) == ENR_OK) return 1;
    enr_store *store = NULL;
    if (argc < 2 || enr_store_open_sqlite(argv[1], &store, &err) != ENR_OK) {
        fprintf(stderr, "store: %s\n", err.message);
        return 2;
    }
    printf("%s\n", enr_store_backend(store));
    enr_store_close(store);
    return 0;
}
EOF
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
# A shared OpenSSL needs none of its own static dependencies: the link line
# must not ask for them (a fresh machine has no libz.a or libz.so for -lz).
LINK=$(pkg-config --cflags --libs enroll)
[[ " $LINK " != *" -lz "* ]] && pass || fail "pkg-config --libs enroll asks for -lz: $LINK"
SAN=()
[ "${ENROLL_SANITIZE:-OFF}" = ON ] && SAN=(-fsanitize=address,undefined)
if ${ENROLL_C_COMPILER:-cc} -std=c17 "${SAN[@]}" pc.c -o pc $(pkg-config --cflags --libs enroll) 2> pc.err; then
  pass
  mkdir -p pcstore
  "$P/bin/enroll" admin policy list --data pcstore >/dev/null 2>&1 # makes the store
  expect_exit 0 "program linked by pkg-config runs" ./pc pcstore
  contains "$WORK/.out" sqlite "pkg-config program: opened the store"
else
  fail "build with pkg-config --cflags --libs enroll: $(head -5 pc.err)"
fi
same "pkg-config version" "$(pkg-config --modversion enroll-device)" \
  "$(sed -n 's/^project(enroll VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")"

# ---- man pages: every command has one, and its text is the command's --help
M=$P/share/man
blocks() { # PAGE: its .nf/.fi blocks, unescaped, each followed by a line "@@end"
  awk '/^\.nf$/ {on = 1; next} /^\.fi$/ {on = 0; print "@@end"; next} on' "$1" |
    sed -e 's/^\\&//' -e 's/\\-/-/g' -e 's/\\e/\\/g'
}
expected() { # HELP-COMMAND...: the help texts a page must hold, each ending with "@@end"
  for c in "$@"; do eval "$c --help"; echo "@@end"; done
}
page_is() { # PAGE COMMAND...: PAGE holds exactly those commands' --help texts
  local page=$1; shift
  if [ ! -f "$page" ]; then fail "no man page $(basename "$page")"; return; fi
  if diff <(blocks "$page") <(expected "$@") > man.diff; then pass; else
    fail "man page $(basename "$page") differs from --help: $(head -5 man.diff | tr '\n' ' ')"
  fi
  groff -man -Tutf8 -ww -z "$page" 2> groff.err
  [ ! -s groff.err ] && pass || fail "groff warns on $(basename "$page"): $(head -3 groff.err)"
}
E=$P/bin/enroll
page_is "$M/man1/enroll.1" "$E"
nouns=$("$E" --help | sed -n 's/^  \([a-z][a-z]*\)\( [a-z]*\)\{0,1\}  .*/\1/p' | awk '!seen[$0]++')
[ "$(wc -w <<<"$nouns")" -ge 10 ] && pass || fail "enroll --help lists too few commands: $nouns"
for n in $nouns; do
  case $n in
  device) page_is "$M/man1/enroll-device.1" "$E device" "$P/bin/enroll-device" ;;
  admin)
    admins=()
    for a in $("$E" admin --help | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p' | awk '!seen[$0]++'); do
      "$E" admin "$a" --help >/dev/null 2>&1 && admins+=("$E admin $a")
    done
    [ "${#admins[@]}" -ge 8 ] && pass || fail "admin nouns: ${admins[*]}"
    page_is "$M/man1/enroll-admin.1" "$E admin" "${admins[@]}" ;;
  *) page_is "$M/man1/enroll-$n.1" "$E $n" ;;
  esac
done
page_is "$M/man8/enrolld.8" "$P/bin/enrolld"

# ---- bash completion, from the installed programs' --help
COMPLETION=$P/share/bash-completion/completions/enroll
[ -f "$P/share/bash-completion/completions/enroll-device" ] && pass || fail "no completion for enroll-device"
complete_words() { # WORDS...: what completing the last word offers
  PATH=$P/bin:$PATH bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _enroll; echo "${COMPREPLY[*]}"' \
    _ "$COMPLETION" "$@"
}
same "completion: nouns" "$(complete_words enroll "")" "admin ca cert crl csr device key match serve verify"
same "completion: a noun's verbs" "$(complete_words enroll ca "")" "crl init list revoke sign"
same "completion: admin nouns" "$(complete_words enroll admin "")" \
  "audit ca cert crl est group individual key policy registration store template thing"
same "completion: verbs with alternatives" "$(complete_words enroll admin group "")" "disable enable list new show"
same "completion: template verbs" "$(complete_words enroll admin template "")" "create delete disable enable list show"
same "completion: est verbs" "$(complete_words enroll admin est "")" "secret"
same "completion: an option" "$(complete_words enroll key new --ty)" "--type"
same "completion: enroll-device without its noun" "$(complete_words enroll-device pro)" "provision"

# ---- systemd units
U=$P/lib/systemd/system
for u in enrolld.service enroll-device@.service; do
  [ -f "$U/$u" ] && pass || fail "no unit $u"
  grep -q "^ExecStart=$P/bin/" "$U/$u" && pass || fail "$u: ExecStart does not name the installed program"
done
# A template is verified through an instance.
mkdir -p units && cp "$U/enrolld.service" units/ && cp "$U/enroll-device@.service" units/enroll-device@dev-001.service
for u in units/enrolld.service units/enroll-device@dev-001.service; do
  if systemd-analyze verify --man=no "$u" > verify.out 2>&1 && ! grep -v "Failed to .*\(user\|group\)" verify.out | grep -q .; then
    pass
  else fail "systemd-analyze verify $(basename "$u"): $(head -5 verify.out | tr '\n' ' ')"; fi
done
for k in NoNewPrivileges=yes ProtectSystem=strict ReadWritePaths=/var/lib/enroll PrivateTmp=yes User=enroll \
  "ExecReload=/bin/kill -HUP" Restart=on-failure LimitNOFILE=; do
  grep -q "^$k" "$U/enrolld.service" && pass || fail "enrolld.service lacks $k"
done

# ---- DESTDIR: everything under it, nothing outside, paths for the prefix
# `make install` as the issue's operator runs it; the sanitizer build's
# directory is not the Makefile's (its `build` step would reconfigure it).
D=$WORK/destdir
if [ "${ENROLL_SANITIZE:-OFF}" = ON ]; then
  check "cmake --install with DESTDIR" env DESTDIR="$D" cmake --install "$BUILD" --prefix /usr
else
  check "make install DESTDIR=... PREFIX=/usr" make -s -C "$SRC" install BUILD="$BUILD" DESTDIR="$D" PREFIX=/usr
fi
[ -x "$D/usr/bin/enrolld" ] && [ -f "$D/usr/lib/systemd/system/enrolld.service" ] && pass ||
  fail "DESTDIR install: programs or units missing"
grep -q "^ExecStart=/usr/bin/enrolld " "$D/usr/lib/systemd/system/enrolld.service" && pass ||
  fail "DESTDIR install: the unit names /usr/bin/enrolld"
[ -z "$(find "$D" -path "$D$D*" | head -1)" ] && pass || fail "DESTDIR install: DESTDIR doubled"

# ---- the enrolld installed in DESTDIR, with the installed example config, serves
EX=$D/usr/share/doc/enroll/examples/enrolld.json
[ -f "$EX" ] && pass || fail "no example config"
SCOPE=$(jq -r .id_scope "$EX")
mkdir -p etc state
sed -e "s|/var/lib/enroll/|$WORK/state/|g" -e "s|/etc/enroll/|$WORK/etc/|g" -e 's|"0\.0\.0\.0:[0-9]*"|"127.0.0.1:0"|g' \
  "$EX" > etc/enrolld.json
lacks etc/enrolld.json "/var/lib/enroll" "example config: every path moved"
ENROLL=$D/usr/bin/enroll ENROLLD=$D/usr/bin/enrolld
(cd state && service_pki && service_store) || fail "PKI and store with the installed enroll"
cp state/server.pem state/server.key etc/
enrolld_start etc/enrolld.json enrolld.log
MQTT_PORT=$(grep -ao '"mqtt_port":[0-9]*' enrolld.log | head -1 | cut -d: -f2)
[ -n "$PORT" ] && [ -n "$MQTT_PORT" ] && pass || fail "installed enrolld with the example config: $(head -5 enrolld.log)"
for t in "https://127.0.0.1:$PORT dev-inst-1" "mqtts://127.0.0.1:$MQTT_PORT dev-inst-2"; do
  read -r url rid <<<"$t"
  check "installed enroll-device provisions over ${url%%:*}" "$D/usr/bin/enroll-device" provision --url "$url" \
    --scope "$SCOPE" --registration-id "$rid" --group-key-file state/group.key --key "$rid.key" --store "$rid" \
    --trust state/root/cert.pem --retries 3 --timeout 10 --json
  cert=$(json "$WORK/.out" .certificate) chain=$(json "$WORK/.out" .chain)
  openssl verify -purpose sslclient -CAfile state/root/cert.pem -untrusted "$chain" "$cert" > v.txt 2>&1
  contains v.txt "$cert: OK" "$rid: openssl verify -purpose sslclient"
done
kill -TERM "$EPID"; wait "$EPID" 2>/dev/null
same "installed enrolld stops cleanly" "$?" "0"

# ---- the .deb
if [ "${ENROLL_SANITIZE:-OFF}" = ON ]; then
  echo "test_install: the .deb part runs in the plain build (sanitized programs need their runtime)"
elif [ "$(id -u)" -ne 0 ]; then
  echo "test_install: the .deb part needs root (dpkg -i); not run"
else
  for t in cpack dpkg dpkg-deb dpkg-shlibdeps; do command -v "$t" >/dev/null || cannot_run ".deb" "no $t"; done
  if dpkg-query -W -f='${Status}' enroll 2>/dev/null | grep -q installed; then
    dpkg --purge enroll >/dev/null 2>&1 || fail "a leftover enroll package could not be purged"
  fi
  check "cpack -G DEB" cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$WORK/pkg"
  DEB=$(find "$WORK/pkg" -maxdepth 1 -name 'enroll_*.deb' | head -1)
  if [ -n "$DEB" ]; then
    pass
    dpkg-deb -f "$DEB" Depends > deps.txt
    for d in libssl3 libjansson4 libsqlite3-0 libevent- libmosquitto1 libc6; do
      contains deps.txt "$d" ".deb depends on $d"
    done
    dpkg-deb -c "$DEB" | awk '{print $6}' > contents.txt
    for f in ./usr/bin/enrolld ./usr/bin/enroll-device ./usr/lib/systemd/system/enrolld.service \
      ./usr/share/man/man8/enrolld.8 ./usr/share/doc/enroll/copyright ./usr/share/doc/enroll/examples/enrolld.json; do
      grep -qxF "$f" contents.txt && pass || fail ".deb lacks $f"
    done
    if dpkg -i "$DEB" > dpkg.out 2>&1; then
      pass; DEB_INSTALLED=1
      expect_exit 0 "installed /usr/bin/enroll runs" /usr/bin/enroll --help
      getent passwd enroll >/dev/null && pass || fail "postinst made no enroll user"
      same "/var/lib/enroll: enroll's, 0700" "$(stat -c '%U %a' /var/lib/enroll 2>&1)" "enroll 700"
      systemd-analyze verify --man=no /usr/lib/systemd/system/enrolld.service > sv.out 2>&1 && [ ! -s sv.out ] && pass ||
        fail "systemd-analyze verify (installed): $(head -3 sv.out)"
      dpkg -L enroll > listed.txt
      if dpkg --purge enroll > purge.out 2>&1; then
        pass; DEB_INSTALLED=
        left=$(while read -r f; do [ -f "$f" ] || [ -L "$f" ] && echo "$f"; done < listed.txt)
        empty "files left after dpkg --purge" "$left"
        [ ! -e /var/lib/enroll ] && pass || fail "purge left /var/lib/enroll (empty)"
        dpkg-query -W -f='${Status}' enroll 2>/dev/null | grep -q "install ok installed" &&
          fail "dpkg still lists enroll as installed" || pass
      else fail "dpkg --purge: $(tail -3 purge.out)"; fi
    else fail "dpkg -i: $(tail -5 dpkg.out)"; fi
  else fail "cpack made no .deb"; fi
fi
finish
