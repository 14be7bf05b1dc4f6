# shellcheck shell=bash disable=SC2034,SC2120,SC2119,SC2154
# A throwaway mosquitto broker for the tests and the demo: mutual TLS on
# 127.0.0.1, a free port, its own config, log and pid file in a directory of
# the caller's, stopped on exit. Source it (bash); it needs no other helper.
#
#   broker_start DIR CLIENT_CA SERVER_CERT SERVER_KEY [CRL_FILE]
#       Writes DIR/mosquitto.conf and DIR/acl, starts mosquitto and returns
#       once it listens (or 1, with its log on stderr). Sets BROKER_PORT,
#       BROKER_PID, BROKER_DIR, BROKER_LOG. CLIENT_CA is the PEM bundle that
#       client certificates must chain to (root + issuing intermediate); with
#       CRL_FILE the issuer's CRL is checked too (revoked -> refused).
#   broker_stop           stop it (TERM, then KILL after 5 s) and wait for it
#   broker_restart [CRL]  same directory and certificates, a fresh port
#   broker_wait_subscribed CLIENT_ID [SECONDS]
#       waits until the broker has acknowledged that client's SUBSCRIBE, so a
#       publish made afterwards is certain to be offered to it
#   broker_wait_log TEXT [SECONDS]   waits until TEXT is in the broker's log
#
# The broker's rules: every client must present a certificate that chains to
# CLIENT_CA (require_certificate); its subject CN becomes its MQTT user name
# (use_identity_as_username); no anonymous clients; and the ACL lets each
# device read and write only under devices/<its CN>/#. One extra user,
# `monitor`, may read all of devices/# (the demo's and the tests' observer).
# Clients verify the broker with the root certificate; the server certificate
# must name localhost / 127.0.0.1.

BROKER_PORT=
BROKER_PID=
BROKER_DIR=
BROKER_LOG=
BROKER_START_TIMEOUT=${BROKER_START_TIMEOUT:-15}
broker__args=()
broker__trap_set=

# Chains broker_stop in front of whatever EXIT trap the caller already has.
broker__install_trap() {
  [ -n "$broker__trap_set" ] && return 0
  local prev=
  if [ -n "$(trap -p EXIT)" ]; then
    eval "set -- $(trap -p EXIT)"   # -> trap -- 'COMMAND' EXIT
    prev=$3
  fi
  # shellcheck disable=SC2064
  if [ -z "$prev" ]; then
    trap "broker_stop" EXIT
  else
    # The caller's trap sees the script's exit status in \$?, as before (at
    # the start of an else branch \$? is the condition's status), and a
    # non-zero status does not stop it under set -e.
    trap "broker__rc=\$?; broker_stop; if (exit \$broker__rc); then $prev; else $prev; fi" EXIT
  fi
  broker__trap_set=1
}

# A random port in 20000-59999 that nothing listens on (ss, from iproute2).
# Without ss there is no knowing, so that is an error, not a guess.
broker__free_port_guess() {
  local port used
  command -v ss >/dev/null ||
    { echo "lib_broker: ss is not installed (iproute2; scripts/install-deps.sh): cannot find a free port" >&2; return 1; }
  used=$(ss -Htln | awk '{print $4}' | sed 's/.*://') ||
    { echo "lib_broker: ss -Htln failed: cannot find a free port" >&2; return 1; }
  for _ in $(seq 1 50); do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    grep -qx "$port" <<<"$used" || { echo "$port"; return 0; }
  done
  echo "lib_broker: 50 random ports in 20000-59999 are all in use" >&2
  return 1
}

broker__write_config() { # PORT
  local dir=$BROKER_DIR ca=${broker__args[0]} cert=${broker__args[1]} key=${broker__args[2]} crl=${broker__args[3]:-}
  cat > "$dir/acl" <<'ACL'
# Each device (user = its certificate's CN) under its own prefix only.
pattern readwrite devices/%u/#
# The observer reads everything under devices/.
user monitor
topic read devices/#
ACL
  {
    echo "# written by lib_broker.sh"
    echo "per_listener_settings false"
    echo "allow_anonymous false"
    echo "acl_file $dir/acl"
    echo "persistence false"
    echo "pid_file $dir/mosquitto.pid"
    echo "log_dest file $dir/mosquitto.log"
    echo "log_type all"
    echo "connection_messages true"
    # As root mosquitto would switch to the `mosquitto` user, who cannot read
    # the caller's private temporary directory; stay who we are.
    if [ "$(id -u)" -eq 0 ]; then echo "user root"; fi
    echo
    echo "listener $1 127.0.0.1"
    echo "cafile $ca"
    echo "certfile $cert"
    echo "keyfile $key"
    echo "require_certificate true"
    echo "use_identity_as_username true"
    if [ -n "$crl" ]; then echo "crlfile $crl"; fi
  } > "$dir/mosquitto.conf"
}

# Starts mosquitto on a guessed free port; another process may take the port
# first, so a bind failure (the broker exits) means: try another one.
broker__launch() {
  local attempt port deadline
  for attempt in $(seq 1 10); do
    port=$(broker__free_port_guess) || return 1
    broker__write_config "$port"
    : > "$BROKER_DIR/mosquitto.log"
    rm -f "$BROKER_DIR/mosquitto.pid"
    mosquitto -c "$BROKER_DIR/mosquitto.conf" > "$BROKER_DIR/mosquitto.out" 2>&1 &
    BROKER_PID=$!
    deadline=$(( $(date +%s) + BROKER_START_TIMEOUT ))
    while :; do
      if grep -q "mosquitto version .* running" "$BROKER_LOG" 2>/dev/null; then
        BROKER_PORT=$port
        return 0
      fi
      if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        wait "$BROKER_PID" 2>/dev/null
        BROKER_PID=
        if grep -q "Address already in use" "$BROKER_LOG" "$BROKER_DIR/mosquitto.out" 2>/dev/null; then
          continue 2   # port taken: next guess
        fi
        echo "lib_broker: mosquitto exited at start (attempt $attempt, port $port):" >&2
        cat "$BROKER_DIR/mosquitto.out" "$BROKER_LOG" >&2
        return 1
      fi
      if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "lib_broker: mosquitto not listening after ${BROKER_START_TIMEOUT}s (port $port):" >&2
        cat "$BROKER_LOG" >&2
        broker_stop
        return 1
      fi
      sleep 0.05
    done
  done
  echo "lib_broker: no free port after 10 attempts" >&2
  return 1
}

broker_start() { # DIR CLIENT_CA SERVER_CERT SERVER_KEY [CRL_FILE]
  if [ $# -lt 4 ]; then echo "usage: broker_start DIR CLIENT_CA SERVER_CERT SERVER_KEY [CRL]" >&2; return 2; fi
  command -v mosquitto >/dev/null || { echo "lib_broker: mosquitto is not installed (scripts/install-deps.sh)" >&2; return 1; }
  mkdir -p "$1"
  BROKER_DIR=$(cd "$1" && pwd)
  BROKER_LOG=$BROKER_DIR/mosquitto.log
  local f abs=()
  for f in "${@:2}"; do abs+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"); done
  broker__args=("${abs[@]}")
  broker__install_trap
  broker__launch
}

broker_stop() {
  [ -n "$BROKER_PID" ] || return 0
  kill -TERM "$BROKER_PID" 2>/dev/null
  local i
  for i in $(seq 1 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$BROKER_PID" 2>/dev/null && kill -KILL "$BROKER_PID" 2>/dev/null
  wait "$BROKER_PID" 2>/dev/null
  BROKER_PID=
  BROKER_PORT=
  return 0
}

broker_restart() { # [CRL_FILE]: also picks up changed certificates or CRL
  broker_stop
  [ $# -ge 1 ] && broker__args=("${broker__args[@]:0:3}" "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")")
  broker__launch
}

broker_wait_log() { # TEXT [SECONDS]
  local deadline=$(( $(date +%s) + ${2:-15} ))
  until grep -qF -- "$1" "$BROKER_LOG" 2>/dev/null; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.05
  done
}

broker_wait_subscribed() { # CLIENT_ID [SECONDS]
  broker_wait_log "Sending SUBACK to $1" "${2:-15}"
}
