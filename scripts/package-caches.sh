#!/usr/bin/env bash
# Host-side package caches, so `apt-get install` and `npm install` work in VMs without internet
# (run by setup.sh after the build; idempotent: a second run only checks that both answer).
#
#   apt: apt-cacher-ng (Debian's package), Capsule's own instance with its own config in
#        /etc/capsule/apt-cacher-ng, as user apt-cacher-ng, on 127.0.0.1:13142. It serves only
#        the Debian archive and debian-security (ForceManaged, no CONNECT tunnels) and fetches
#        them from this host's own Debian mirror. Its cache is a fixed-size ext4 image, so it
#        never takes more than CAPSULE_APT_CACHE_MB of disk; scripts/apt-cache-maint.sh trims it when
#        80% full, every 5 minutes while it runs, and bounds its logs.
#   npm: Capsule's caching proxy of registry.npmjs.org (packages/engine/src/caches/npm-cache.ts),
#        installed into /usr/local/lib/capsule/npm-cache and run as user capsule-npm-cache on
#        127.0.0.1:14873; it evicts least recently used files past CAPSULE_NPM_CACHE_MB.
#
# Both listen on loopback only; the engine's firewall forwards a VM's connections to
# host.capsule.internal:3142 (apt) and :4873 (npm) to them. A packaged apt-cacher-ng service
# that this script installs is masked/disabled (it would listen on every interface).
#
# Settings (environment): CAPSULE_PACKAGE_CACHE_DIR (default /var/cache/capsule),
# CAPSULE_APT_CACHE_MB (4096, fixed when the image is first made), CAPSULE_NPM_CACHE_MB (2048).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
. "$ROOT/scripts/common.sh"
as_root "$ROOT/scripts/package-caches.sh" "$@"

# Listener ports: PACKAGE_CACHE_PORTS in packages/engine/src/caches/ports.ts (a unit test checks).
APT_LISTEN_PORT=13142
NPM_LISTEN_PORT=14873
NPM_GUEST_PORT=4873

CACHE_ROOT=${CAPSULE_PACKAGE_CACHE_DIR:-/var/cache/capsule}
APT_CACHE_MB=${CAPSULE_APT_CACHE_MB:-4096}
NPM_CACHE_MB=${CAPSULE_NPM_CACHE_MB:-2048}
ACNG_CONF=/etc/capsule/apt-cacher-ng
APT_DIR=$CACHE_ROOT/apt
NPM_LIB=/usr/local/lib/capsule/npm-cache
NPM_USER=capsule-npm-cache
NPM_PIDFILE=/run/capsule/npm-cache.pid
[[ $APT_CACHE_MB =~ ^[0-9]+$ && $APT_CACHE_MB -ge 256 ]] || die "CAPSULE_APT_CACHE_MB must be a whole number of MiB, at least 256"
[[ $NPM_CACHE_MB =~ ^[0-9]+$ && $NPM_CACHE_MB -ge 64 ]] || die "CAPSULE_NPM_CACHE_MB must be a whole number of MiB, at least 64"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_listening() {
  local i
  for i in $(seq 50); do listening "$1" && return 0; sleep 0.1; done
  return 1
}
# stop_pidfile FILE WORD: stops the process FILE names, only if its command line has WORD (after a
# reboot or a crash the number may belong to another process by now).
stop_pidfile() {
  local pid
  pid=$(cat "$1" 2>/dev/null || true)
  # The braces take the shell's own "no such file" for the redirect of a pid that is gone.
  if [[ $pid =~ ^[0-9]+$ ]] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$2"; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$1"
}

# --- apt-cacher-ng --------------------------------------------------------------------------
if ! dpkg-query -W -f='${Status}' apt-cacher-ng 2>/dev/null | grep -q "ok installed"; then
  note "installing apt-cacher-ng"
  # Its packaged service would start at once, listening on every interface with the default
  # (open) configuration: masked before the install on systemd hosts, stopped after elsewhere.
  [ -d /run/systemd/system ] && systemctl mask -q apt-cacher-ng.service
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends apt-cacher-ng >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends apt-cacher-ng >/dev/null; }
  if [ ! -d /run/systemd/system ] && [ -x /etc/init.d/apt-cacher-ng ]; then
    /etc/init.d/apt-cacher-ng stop >/dev/null 2>&1 || true
    update-rc.d apt-cacher-ng disable >/dev/null 2>&1 || true
  fi
fi

# The cache's own filesystem bounds its disk use (apt-cacher-ng has no size limit of its own).
mkdir -p "$APT_DIR"
if [ ! -f "$CACHE_ROOT/apt.img" ]; then
  truncate -s "${APT_CACHE_MB}M" "$CACHE_ROOT/apt.img.tmp"
  mkfs.ext4 -q -F -m 0 "$CACHE_ROOT/apt.img.tmp"
  mv "$CACHE_ROOT/apt.img.tmp" "$CACHE_ROOT/apt.img"
fi
mountpoint -q "$APT_DIR" || mount -o loop,nosuid,nodev,noexec "$CACHE_ROOT/apt.img" "$APT_DIR"
install -d -o apt-cacher-ng -g apt-cacher-ng -m 0750 "$APT_DIR/cache" "$APT_DIR/log" "$APT_DIR/run"

# Upstreams: this host's own Debian mirror and security archive when its apt has them, else
# Debian's CDN names (what mmdebstrap writes into the base image).
apt_uris() { grep -rhoE '^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | awk '{print $NF}' || true; }
debian_mirror=$(apt_uris | grep -v -- '-security' | grep -E '/debian/?$' | head -1 || true)
security_mirror=$(apt_uris | grep -E '/debian-security/?$' | head -1 || true)
debian_mirror=${debian_mirror:-http://deb.debian.org/debian}
security_mirror=${security_mirror:-http://security.debian.org/debian-security}

install -d -m 0750 -g apt-cacher-ng "$ACNG_CONF"
[ -f "$ACNG_CONF/security.conf" ] || {
  # Guards the report page (statistics and maintenance): VMs reach the port, never the page.
  printf 'AdminAuth: capsule:%s\n' "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" >"$ACNG_CONF/security.conf.tmp"
  chgrp apt-cacher-ng "$ACNG_CONF/security.conf.tmp" && chmod 0640 "$ACNG_CONF/security.conf.tmp"
  mv "$ACNG_CONF/security.conf.tmp" "$ACNG_CONF/security.conf"
}
printf '%s/\n' "${debian_mirror%/}" >"$ACNG_CONF/backends_debian"
printf '%s/\n' "${security_mirror%/}" >"$ACNG_CONF/backends_debian_security"
cat >"$ACNG_CONF/acng.conf" <<EOF
# Written by Capsule's scripts/package-caches.sh; rewritten on every run.
CacheDir: $APT_DIR/cache
LogDir: $APT_DIR/log
SupportDir: /usr/lib/apt-cacher-ng
BindAddress: 127.0.0.1:$APT_LISTEN_PORT
PidFile: $APT_DIR/run/pid
SocketPath: $APT_DIR/run/socket
ReportPage: acng-report.html
VerboseLog: 1
# Only the two remapped repositories below, fetched from their backends; nothing a client
# names by host, no CONNECT tunnel anywhere, no redirects followed (and no LocalDirs: the
# built-in default serves no local directory).
ForceManaged: 1
PassThroughPattern: ^$
RedirMax: 0
AllowUserPorts: 80
Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian
Remap-secdeb: security.debian.org security.debian.org/debian-security deb.debian.org/debian-security /debian-security ; file:backends_debian_security
ExThreshold: 4
EOF
chgrp apt-cacher-ng "$ACNG_CONF"/*
chmod 0640 "$ACNG_CONF"/*

acng_key=$(printf '%s\n' "$(cat "$ACNG_CONF"/acng.conf "$ACNG_CONF"/backends_*)" "$(dpkg-query -W -f='${Version}' apt-cacher-ng)" | sha256sum | cut -c1-64)
if listening "$APT_LISTEN_PORT" && stamp_ok "$APT_DIR/run/.capsule-inputs" "$acng_key"; then
  note "apt cache: 127.0.0.1:$APT_LISTEN_PORT (apt-cacher-ng, $debian_mirror)"
else
  stop_pidfile "$APT_DIR/run/pid" "$ACNG_CONF"
  start-stop-daemon --start --quiet --chuid apt-cacher-ng:apt-cacher-ng --pidfile "$APT_DIR/run/pid" \
    --exec /usr/sbin/apt-cacher-ng -- -c "$ACNG_CONF" ForeGround=0
  wait_listening "$APT_LISTEN_PORT" || die "apt-cacher-ng did not start on 127.0.0.1:$APT_LISTEN_PORT (see $APT_DIR/log/apt-cacher.err)"
  stamp_write "$APT_DIR/run/.capsule-inputs" "$acng_key"
  note "apt cache started: 127.0.0.1:$APT_LISTEN_PORT (apt-cacher-ng, $debian_mirror)"
fi

# The image is the hard bound; apt-cacher-ng trims by size only when asked. scripts/apt-cache-maint.sh
# asks: once the image is 80% full it drops the least recently used files down to half, and it
# bounds the logs. It runs once now and then every APT_MAINT_INTERVAL_S, as root, from a copy
# outside the repository (which may be a scratch clone that goes away).
APT_MAINT=/usr/local/lib/capsule/apt-cache-maint.sh
APT_MAINT_PIDFILE=/run/capsule/apt-cache-maint.pid
APT_MAINT_INTERVAL_S=300
install -d -m 0755 "$(dirname "$APT_MAINT")" "$(dirname "$APT_MAINT_PIDFILE")"
install -m 0755 "$ROOT/scripts/apt-cache-maint.sh" "$APT_MAINT.tmp" && mv -f "$APT_MAINT.tmp" "$APT_MAINT"
"$APT_MAINT" "$APT_DIR" "$ACNG_CONF" "$APT_CACHE_MB" | sed 's/^/      /'
stop_pidfile "$APT_MAINT_PIDFILE" "$APT_MAINT"
setsid "$APT_MAINT" "$APT_DIR" "$ACNG_CONF" "$APT_CACHE_MB" --loop "$APT_MAINT_INTERVAL_S" \
  </dev/null >>"$CACHE_ROOT/apt-cache-maint.log" 2>&1 &
echo $! >"$APT_MAINT_PIDFILE"
note "apt cache kept under ${APT_CACHE_MB} MiB: trimmed when 80% full, checked every ${APT_MAINT_INTERVAL_S} s"

# --- npm registry cache ---------------------------------------------------------------------
id -u "$NPM_USER" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$NPM_USER"
node_bin=$(command -v node)
dist="$ROOT/packages/engine/dist/src/caches"
[ -f "$dist/npm-cache-main.js" ] || die "the engine is not built ($dist/npm-cache-main.js missing): run setup.sh"
# Installed outside the repository (which may sit in a home directory the cache user cannot
# read): the two files import only Node's own modules.
install -d -m 0755 "$NPM_LIB"
install -m 0644 "$dist/npm-cache.js" "$dist/npm-cache-main.js" "$NPM_LIB/"
printf '{ "type": "module" }\n' >"$NPM_LIB/package.json"
install -d -o "$NPM_USER" -g "$NPM_USER" -m 0700 "$CACHE_ROOT/npm"
mkdir -p "$(dirname "$NPM_PIDFILE")"
npm_key=$(printf '%s\n' "$(cat "$NPM_LIB"/*.js)" "$node_bin $("$node_bin" --version)" "$NPM_CACHE_MB" | sha256sum | cut -c1-64)
if listening "$NPM_LISTEN_PORT" && stamp_ok "$CACHE_ROOT/.npm-cache-inputs" "$npm_key"; then
  note "npm cache: 127.0.0.1:$NPM_LISTEN_PORT (registry.npmjs.org, ${NPM_CACHE_MB} MiB)"
else
  stop_pidfile "$NPM_PIDFILE" "$NPM_LIB/npm-cache-main.js"
  setsid setpriv --reuid="$NPM_USER" --regid="$NPM_USER" --init-groups --no-new-privs --inh-caps=-all \
    "$node_bin" "$NPM_LIB/npm-cache-main.js" --dir "$CACHE_ROOT/npm/store" --max-mb "$NPM_CACHE_MB" \
    --port "$NPM_LISTEN_PORT" --public-url "http://host.capsule.internal:$NPM_GUEST_PORT" \
    </dev/null >>"$CACHE_ROOT/npm-cache.log" 2>&1 &
  echo $! >"$NPM_PIDFILE"
  wait_listening "$NPM_LISTEN_PORT" || die "the npm cache did not start on 127.0.0.1:$NPM_LISTEN_PORT (see $CACHE_ROOT/npm-cache.log)"
  stamp_write "$CACHE_ROOT/.npm-cache-inputs" "$npm_key"
  note "npm cache started: 127.0.0.1:$NPM_LISTEN_PORT (registry.npmjs.org, ${NPM_CACHE_MB} MiB)"
fi
