#!/usr/bin/env bash
# The shape of the code (docs/architecture.md): protocol front ends are thin
# adapters over one provisioning core, and nothing below them knows HTTP or
# MQTT. Checked twice: in the sources (what they include), and in the built
# core library (which symbols it needs).
. "$(dirname "$0")/lib.sh"
SRC=${ENROLL_SOURCE_DIR:?set ENROLL_SOURCE_DIR}
LIBDIR=$(dirname "$ENROLL")
cd "$SRC/src" || exit 1

# Transport headers: libevent's HTTP and bufferevents, MQTT client and
# server code, and enrolld's own front-end headers.
TRANSPORT='#include *[<"](event2/(http|http_struct|http_compat|bufferevent|bufferevent_ssl|listener)\.h|mosquitto\.h|service/|mqtt/)'
# Below the front ends: everything but the front ends themselves
# (service/: enrolld's HTTPS, MQTT and admin API; device/ and cli/: the
# device client and the command line, which are front ends of their own).
below=$(ls -d */ | tr -d / | grep -vxE 'service|device|cli|mqtt')
[ -n "$below" ] || cannot_run "the layering check" "no modules found under src/"
for m in $below; do
  hits=$(grep -nE "$TRANSPORT" -r "$m" 2>/dev/null)
  empty "src/$m includes no transport header" "$hits"
done
# The core uses libevent's loop and timers only.
hits=$(grep -nE '#include *<event2/' -r provision | grep -vE 'event2/event\.h')
empty "src/provision uses only event2/event.h" "$hits"
# And its protocol is DPS's documents, never an HTTP status line or header.
hits=$(grep -nE 'evhttp_|evbuffer_|Retry-After|Authorization' -r provision)
empty "src/provision names no HTTP API" "$hits"

# The built core library needs nothing of evhttp, bufferevents or MQTT.
lib=$LIBDIR/libenroll_provision.a
if [ -r "$lib" ] && command -v nm >/dev/null; then
  undefined=$(nm -u "$lib" | grep -E ' (evhttp_|bufferevent_|evconnlistener_|mosquitto_)' | sort -u)
  empty "libenroll_provision.a needs no HTTP, bufferevent or MQTT symbol" "$undefined"
  defined=$(nm --defined-only "$lib" | grep -cE ' T enr_provision_submit$')
  same "libenroll_provision.a holds the core" "$defined" "1"
else
  cannot_run "the symbol check" "no $lib or no nm"
fi
finish
