#!/usr/bin/env bash
# Capsule host setup: installs what is missing, builds the project, the guest agent bundle and
# the base image, then boots one sandbox to prove the host works. Idempotent: a second run only
# checks, and changes nothing.
#
#   sudo bash scripts/setup.sh            # trixie base image (default)
#   CAPSULE_IMAGE=bookworm sudo -E bash scripts/setup.sh
#
# Settings (environment): CAPSULE_DATA_DIR (default /var/lib/capsule), CAPSULE_IMAGE (trixie).
set -euo pipefail

DATA_DIR=${CAPSULE_DATA_DIR:-/var/lib/capsule}
IMAGE=${CAPSULE_IMAGE:-trixie}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STEPS=7
step=0
say() { step=$((step + 1)); printf '\033[1m[%d/%d] %s\033[0m\n' "$step" "$STEPS" "$*"; }
note() { printf '      %s\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo bash scripts/setup.sh): Capsule mounts filesystems and creates network namespaces"
[ -r /etc/os-release ] && . /etc/os-release
case "${ID:-} ${ID_LIKE:-}" in
  *debian*|*ubuntu*) ;;
  *) die "Capsule's setup supports Debian 12+/Ubuntu 22.04+ hosts; this is ${PRETTY_NAME:-unknown}" ;;
esac

# ---------------------------------------------------------------------------------------------
say "host packages"
PKGS=(iproute2 nftables mmdebstrap tini runc e2fsprogs util-linux gcc libc6-dev make g++ python3 ca-certificates)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  note "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
  note "all present"
fi

# ---------------------------------------------------------------------------------------------
say "gVisor runsc"
runsc_ok() {
  local v
  v=$(runsc --version 2>/dev/null | sed -n 's/^runsc version .*\([0-9]\{8\}\).*/\1/p' | head -1)
  [ -n "$v" ] && [ "$v" -ge 20240101 ]
}
if runsc_ok; then
  note "$(runsc --version | head -1)"
else
  # Debian 12's runsc (2022) cannot list directories on current kernels; Debian 13's works and is
  # a static binary, so it is taken out of its .deb without touching the host's libc. The mirror
  # is the one this host's apt already uses.
  mirror=$(grep -rhoE '^(URIs:|deb)[[:space:]]+[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | awk '{print $2}' | grep -v -- '-security' | grep -E '/debian/?$' | head -1 || true)
  [ -n "$mirror" ] || die "runsc 2024+ is needed and this host's apt has no Debian mirror to fetch trixie's runsc from; install runsc (gVisor) 2024 or later into /usr/local/bin and rerun"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$tmp/sources.list"
  aptopts=(-o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache" -o APT::Sandbox::User=root)
  note "fetching runsc from Debian trixie ($mirror)"
  apt-get "${aptopts[@]}" update -q >/dev/null
  (cd "$tmp" && apt-get "${aptopts[@]}" download runsc >/dev/null)
  dpkg-deb -x "$tmp"/runsc_*.deb "$tmp/x"
  install -m 0755 "$tmp/x/usr/bin/runsc" /usr/local/bin/runsc
  hash -r
  runsc_ok || die "installed runsc does not report a 2024+ version"
  note "$(runsc --version | head -1)"
fi

# ---------------------------------------------------------------------------------------------
say "Node.js and project build"
command -v node >/dev/null || die "Node.js 20 or later is needed (e.g. apt-get install nodejs on Debian 13, or your distribution's Node 20 package)"
nmaj=$(node -p 'process.versions.node.split(".")[0]')
[ "$nmaj" -ge 20 ] || die "Node.js 20 or later is needed; this host has $(node --version)"
cd "$ROOT"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  note "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
else
  note "dependencies up to date"
fi
npm run --silent build
note "built"

# ---------------------------------------------------------------------------------------------
say "guest agent bundle"
node packages/agent/scripts/bundle.mjs "$DATA_DIR/agent" | sed 's/^/      /'

# ---------------------------------------------------------------------------------------------
say "base image '$IMAGE'"
case "$IMAGE" in trixie|bookworm) ;; *) die "CAPSULE_IMAGE must be trixie or bookworm" ;; esac
# The recipe lives in the CLI (`capsule image build`): packages, /srv/app, the bind-mount targets.
node packages/cli/dist/src/main.js image build "$IMAGE" --suite "$IMAGE" --images-dir "$DATA_DIR/images" | sed 's/^/      /'

# ---------------------------------------------------------------------------------------------
say "kernel features"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || die "the kernel has no overlayfs"
nft list tables >/dev/null 2>&1 || die "nftables is not usable on this kernel"
note "overlayfs, network namespaces and nftables available"

# ---------------------------------------------------------------------------------------------
say "smoke test: boot a sandbox"
CAPSULE_DATA_DIR="$DATA_DIR" node scripts/smoke.mjs | sed 's/^/      /'

printf '\n\033[1mCapsule is set up.\033[0m Data dir: %s.\n' "$DATA_DIR"
