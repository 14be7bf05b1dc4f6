#!/usr/bin/env bash
# `make fresh-check`: the README's two commands, as root, on a machine that has
# nothing yet. Builds a fresh Debian 12 (bookworm) root with debootstrap
# (variant minbase, plus only git and make), clones this repository's HEAD
# into it, and runs `make demo` then `make check` there. The exit status is
# the result. Catches what CI cannot: a tool the tests use that the build
# machine happens to have but scripts/install-deps.sh does not install.
#
# Needs root (debootstrap, chroot, mounts) and the Debian mirror the host's
# apt uses (or MIRROR=http://...). FRESH_KEEP=1 keeps the root afterwards for
# a look inside (it is printed; remove it with rm -rf --one-file-system).
# Only committed changes are checked: the root gets a clone of HEAD.
#
# Everything runs in a private mount namespace, so no mount can leak into the
# host's and all of them vanish with the namespace even if this script is
# killed; on exit (success, failure, Ctrl-C) the trap also unmounts them and
# deletes the root.
set -euo pipefail

SUITE=bookworm
repo=$(cd "$(dirname "$0")/.." && pwd)
self="$repo/scripts/$(basename "$0")"

[ "$(id -u)" -eq 0 ] || { echo "fresh-check: run as root (debootstrap, chroot and mounts need it)" >&2; exit 1; }

if [ -z "${FRESH_CHECK_NS:-}" ]; then
  # --propagation private: mounts made inside never reach the host.
  FRESH_CHECK_NS=1 exec unshare --mount --propagation private "$self" "$@"
fi

start=$(date +%s)
step() { printf '== fresh-check [%dm%02ds] %s\n' $(( ($(date +%s) - start) / 60 )) $(( ($(date +%s) - start) % 60 )) "$*"; }

# The host's Debian mirror for bookworm: deb822 *.sources first, then
# one-line *.list entries (the only network reachable may be that mirror).
host_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
      { types = uris = suites = ""
        for (i = 1; i <= NF; i++) {
          line = $i; sub(/#.*/, "", line)
          if (line ~ /^Types:/)  { sub(/^Types:[ \t]*/, "", line);  types = " " line " " }
          if (line ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", line);   uris = line }
          if (line ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", line); suites = " " line " " }
        }
        if (types ~ / deb / && suites ~ (" " suite " ") && uris != "") { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENT...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2 }'
  done
}
MIRROR=${MIRROR:-$(host_mirror | head -1)}
[ -n "$MIRROR" ] || { echo "fresh-check: no Debian $SUITE mirror in /etc/apt/sources.list{,.d/}; set MIRROR=" >&2; exit 1; }

if ! command -v debootstrap >/dev/null; then
  step "installing debootstrap on the host"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
fi

rev=$(git -C "$repo" rev-parse HEAD)
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  echo "fresh-check: note: uncommitted changes in $repo are not part of this check (it clones HEAD $rev)" >&2
fi

R=$(mktemp -d "${FRESH_DIR:-/var/tmp}/enroll-fresh-XXXXXX")
# It becomes /: 0755 as on a machine, not mktemp's 0700, which locks every
# user but root out of the whole system (apt's _apt could not download).
chmod 755 "$R"
MOUNTS=()   # mount points inside $R, in mount order
exec {STDOUT}>&1 {STDERR}>&2
BG_PID=     # the command bg_wait runs (below)

mounted_under_root() { awk -v r="$R" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo; }

cleanup() {
  local rc=$? m i pid
  trap - EXIT INT TERM
  set +e
  # A signal can arrive inside a redirected command (debootstrap's log).
  exec 1>&"$STDOUT" 2>&"$STDERR"
  rm -f "$R.debootstrap.log"
  [ -n "$BG_PID" ] && kill -KILL -- "-$BG_PID" 2>/dev/null
  # Whatever the tests left running inside the root holds its mounts.
  for pid in /proc/[0-9]*; do
    [ "$(readlink "$pid/root" 2>/dev/null)" = "$R" ] && kill -KILL "${pid#/proc/}" 2>/dev/null
  done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    m=${MOUNTS[i]}
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  # debootstrap mounts proc and sys in the target itself while it runs.
  for m in $(mounted_under_root | sort -r); do umount "$m" 2>/dev/null || umount -l "$m"; done
  if [ -n "$(mounted_under_root)" ]; then
    echo "fresh-check: still mounted, not deleting $R:" >&2
    mounted_under_root >&2
    rc=1
  elif [ -n "${FRESH_KEEP:-}" ]; then
    echo "fresh-check: kept $R" >&2
  else
    # --one-file-system: never descend into anything still mounted.
    rm -rf --one-file-system "$R"
  fi
  local t=$(( $(date +%s) - start ))
  if [ "$rc" -eq 0 ]; then
    echo "== fresh-check: PASSED in $((t / 60))m$((t % 60))s (commit $rev)"
  else
    echo "== fresh-check: FAILED (exit $rc) after $((t / 60))m$((t % 60))s (commit $rev)" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# bg_wait COMMAND...: runs COMMAND in the background, in a process group of
# its own, and waits for it, so a TERM to this script runs the trap at once
# (bash holds a trapped signal until a foreground child ends) and the trap
# can kill all of it.
bg_wait() { setsid "$@" & BG_PID=$!; wait "$BG_PID"; }

step "debootstrap --variant=minbase --include=git,make $SUITE from $MIRROR into $R"
if ! bg_wait debootstrap --variant=minbase --include=git,make "$SUITE" "$R" "$MIRROR" > "$R.debootstrap.log" 2>&1; then
  tail -30 "$R.debootstrap.log" >&2
  if [ -f "$R/debootstrap/debootstrap.log" ]; then tail -30 "$R/debootstrap/debootstrap.log" >&2; fi
  exit 1
fi

bind() { mount "$@"; MOUNTS+=("${*: -1}"); }
step "mounting /, /proc, /sys, /dev, /dev/pts, /dev/shm"
# / is a mount point on a machine, and a debootstrap directory is not: a
# test's private mount namespace (unshare --mount) cannot be made without.
bind --bind "$R" "$R"
bind -t proc proc "$R/proc"
bind -t sysfs sysfs "$R/sys"
bind --bind /dev "$R/dev"
bind --bind /dev/pts "$R/dev/pts"
bind -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
cp -L /etc/resolv.conf "$R/etc/resolv.conf"
# An installed Debian system has /etc/hosts (the installer writes it; no
# package ships it), a debootstrap root does not, and without it `localhost`
# does not resolve. The machine's, as the installer makes it:
[ -e "$R/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"

# The network's own trust, as resolv.conf above: a host behind a
# TLS-inspecting proxy has that proxy's CA in /usr/local/share/ca-certificates
# (ca-certificates adds it to the system bundle when apt installs it in the
# root) and points Node at the bundle (NODE_EXTRA_CA_CERTS); the root gets
# both, or npm's registry fails with SELF_SIGNED_CERT_IN_CHAIN. Nothing of
# the project's is set up here.
NODE_CA=()
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  mkdir -p "$R/usr/local/share/ca-certificates"
  cp -L /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/"
  [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && NODE_CA=("NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt")
fi

step "cloning $rev"
git -C "$repo" bundle create "$R/root/enroll.bundle" HEAD 2>/dev/null

# in_root COMMAND: runs COMMAND in the root, as root, with a login-like
# environment and nothing of the caller's (but the network's trust, above).
in_root() {
  bg_wait chroot "$R" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb "${NODE_CA[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "$1"
}
in_root 'git -c advice.detachedHead=false clone -q /root/enroll.bundle /root/enroll && rm /root/enroll.bundle'

step "make demo"
in_root 'cd /root/enroll && make demo'
step "make demo passed"

step "make check"
in_root 'cd /root/enroll && make check'
step "make check passed"
