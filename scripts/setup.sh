#!/usr/bin/env bash
# Capsule host setup: installs what is missing, checks the kernel, builds the project, the guest
# agent bundle and the base image, boots one sandbox to prove the host works, and puts `capsule`
# on PATH. Idempotent: a second run only checks (a few seconds) and changes nothing; each build
# step is skipped while a stamp says its inputs are unchanged, and the smoke boot while a stamp
# says this exact build already booted on this host.
#
#   bash scripts/setup.sh                 # as root; otherwise it re-runs itself with sudo
#   bash scripts/setup.sh --build-only    # host packages, npm ci and the build only
#   CAPSULE_IMAGE=bookworm bash scripts/setup.sh
#
# Settings (environment): CAPSULE_DATA_DIR (default /var/lib/capsule), CAPSULE_IMAGE (trixie),
# CAPSULE_MAX_VMS (256: VMs run at once, for the conntrack table); the package caches' in scripts/package-caches.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
. "$ROOT/scripts/common.sh"

BUILD_ONLY=
case "${1:-}" in
  "") ;;
  --build-only) BUILD_ONLY=1 ;;
  -h|--help) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
  *) die "usage: bash scripts/setup.sh [--build-only]" ;;
esac
as_root "$ROOT/scripts/setup.sh" "$@"

DATA_DIR=${CAPSULE_DATA_DIR:-/var/lib/capsule}
IMAGE=${CAPSULE_IMAGE:-trixie}
STEPS=$([ -n "$BUILD_ONLY" ] && echo 2 || echo 10)
step=0
CACHE="$ROOT/node_modules/.cache/capsule-setup"

[ -r /etc/os-release ] && . /etc/os-release
case "${ID:-} ${ID_LIKE:-}" in
  *debian*|*ubuntu*) ;;
  *) die "Capsule's setup supports Debian 12+/Ubuntu 22.04+ hosts; this is ${PRETTY_NAME:-unknown}" ;;
esac
case "$IMAGE" in trixie|bookworm) ;; *) die "CAPSULE_IMAGE must be trixie or bookworm" ;; esac

# ---------------------------------------------------------------------------------------------
say "host packages"
PKGS=(iproute2 nftables conntrack mmdebstrap tini runc e2fsprogs util-linux gcc libc6-dev make g++ python3 ca-certificates)
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
# The host's git (repository mirrors for builds, docs/builds.md) runs as this user, never as root.
if ! id capsule-git >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin capsule-git
  note "created the system user capsule-git (the host's git runs as it)"
fi

# ---------------------------------------------------------------------------------------------
# Before the long builds: a host that cannot run sandboxes should say so in the first seconds.
if [ -z "$BUILD_ONLY" ]; then
  say "kernel features"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || die "the kernel has no overlayfs (modprobe overlay failed)"
  nft list tables >/dev/null 2>&1 || die "nftables is not usable on this kernel (nft list tables failed)"
  unshare --net true 2>/dev/null || die "cannot create a network namespace (unshare --net failed): in a container, give it CAP_SYS_ADMIN or run Capsule on the host"
  note "overlayfs, nftables and network namespaces available"
  # The host's one conntrack table (when full, every new connection on the host is dropped): each
  # VM may hold 2524 entries (the engine's MAX_CONNTRACK_ENTRIES_PER_VM) and 65536 stay for the
  # host (CONNTRACK_HOST_RESERVE); the engine warns when more VMs run than it holds. An entry
  # takes ~320 bytes, and only while it exists: 256 VMs at their bound ~220 MiB. Never lowered.
  max_vms=${CAPSULE_MAX_VMS:-256}
  case "$max_vms" in ''|*[!0-9]*) die "CAPSULE_MAX_VMS must be a number of VMs, got '$max_vms'" ;; esac
  ct_max=$(( max_vms * 2524 + 65536 ))
  modprobe nf_conntrack 2>/dev/null || true
  ct_now=$(cat /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null) || die "the kernel has no conntrack (modprobe nf_conntrack failed)"
  if [ "$ct_now" -lt "$ct_max" ]; then
    echo nf_conntrack >/etc/modules-load.d/capsule-conntrack.conf # the sysctl below applies at boot only once it is loaded
    echo "net.netfilter.nf_conntrack_max = $ct_max" >/etc/sysctl.d/60-capsule-conntrack.conf
    echo "$ct_max" >/proc/sys/net/netfilter/nf_conntrack_max
    note "conntrack table raised from $ct_now to $ct_max entries ($max_vms VMs)"
  else
    note "conntrack table holds $ct_now entries ($max_vms VMs need $ct_max)"
  fi
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
# tsc -b is incremental: about a second when nothing changed.
node_modules/.bin/tsc -b
# The console (Vite) has no such check, so a stamp of its inputs stands in: its own files, every
# workspace's sources (it may import them) and the lockfile.
console_key=$(tree_hash packages/console packages/*/src package-lock.json)
if [ -f packages/console/dist/web/index.html ] && stamp_ok "$CACHE/console" "$console_key"; then
  note "built (tsc -b is incremental; console inputs unchanged)"
else
  npm run --silent -w @capsule/console build
  stamp_write "$CACHE/console" "$console_key"
  note "built (tsc -b; console rebuilt)"
fi
if [ -n "$BUILD_ONLY" ]; then
  printf '\n\033[1mCapsule is built.\033[0m (--build-only: no runsc, agent bundle, image or smoke boot)\n'
  exit 0
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
say "package caches for VMs (apt-cacher-ng, npm registry cache)"
bash "$ROOT/scripts/package-caches.sh"

# ---------------------------------------------------------------------------------------------
say "guest agent bundle"
# The bundle carries this host's node and its libraries, tini, node-pty's addon and the static
# helper, so their versions are inputs too. The stamp also names the bundle it produced: if
# `current` was switched since, the bundle is rebuilt (bundle.mjs is idempotent).
node_bin=$(node -p process.execPath)
host_inputs="$(node --version) $(stat -L -c '%n %s %Y' "$node_bin") $(dpkg-query -W -f='${Package}=${Version} ' libc6 libc6-dev gcc tini 2>/dev/null || true)"
agent_key=$(printf '%s\n' "$host_inputs" "$(tree_hash packages/*/src packages/agent/native packages/agent/scripts packages/agent/inputrc packages/agent/package.json package-lock.json node_modules/node-pty/package.json node_modules/node-pty/build/Release/pty.node)" | sha256sum | cut -c1-64)
current_bundle() { readlink "$DATA_DIR/agent/current" 2>/dev/null || true; }
if [ -f "$DATA_DIR/agent/current/VERSION" ] && stamp_ok "$DATA_DIR/agent/.setup-inputs" "$agent_key $(current_bundle)"; then
  note "current: $DATA_DIR/agent/current -> $(current_bundle) (inputs unchanged)"
else
  node packages/agent/scripts/bundle.mjs "$DATA_DIR/agent" | sed 's/^/      /'
  stamp_write "$DATA_DIR/agent/.setup-inputs" "$agent_key $(current_bundle)"
fi

# ---------------------------------------------------------------------------------------------
say "runsc with gVisor's own network stack (memory snapshots)"
# Probes runsc with the agent bundle, so after it; builds and installs one only when the runsc on
# PATH cannot start netstack (cached by version: seconds when warm, about 5 min cold on 2 cores).
bash "$ROOT/scripts/install-runsc.sh"

# ---------------------------------------------------------------------------------------------
say "base image '$IMAGE'"
# `capsule image build` writes etc/capsule-image last and renames the finished image into place,
# so the marker means a complete image; the CLI itself skips a present image the same way.
marker="$DATA_DIR/images/$IMAGE/rootfs/etc/capsule-image"
if [ -f "$marker" ]; then
  note "present ($(cut -d' ' -f3 "$marker")); capsule image build $IMAGE --force rebuilds it"
else
  node packages/cli/dist/src/main.js image build "$IMAGE" --suite "$IMAGE" --images-dir "$DATA_DIR/images" | sed 's/^/      /'
fi

# ---------------------------------------------------------------------------------------------
say "smoke test: boot a sandbox"
# This exact build on this host: the engine's compiled code (and its workspace dependencies), the
# agent bundle, the image, the runsc binary (its version does not tell a build with the netstack
# fix from Debian's), the kernel and this script's smoke test.
mapfile -t engine_dirs < <(node -e '
const fs = require("fs");
const dirs = fs.readdirSync("packages").map((d) => `packages/${d}`).filter((d) => fs.existsSync(`${d}/package.json`));
const byName = Object.fromEntries(dirs.map((d) => [JSON.parse(fs.readFileSync(`${d}/package.json`, "utf8")).name, d]));
const seen = new Set();
const visit = (d) => {
  if (seen.has(d)) return;
  seen.add(d);
  for (const n of Object.keys(JSON.parse(fs.readFileSync(`${d}/package.json`, "utf8")).dependencies ?? {})) if (byName[n]) visit(byName[n]);
};
visit("packages/engine");
console.log([...seen].map((d) => `${d}/dist/src`).join("\n"));')
[ ${#engine_dirs[@]} -gt 0 ] || die "cannot list the engine's workspace packages"
smoke_key=$(printf '%s\n' "$(tree_hash "${engine_dirs[@]}" scripts/smoke.mjs)" "$(cat "$DATA_DIR/agent/current/VERSION")" \
  "$(cat "$marker")" "$(sha256sum "$(command -v runsc)")" "$(uname -r)" "$(node --version)" | sha256sum | cut -c1-64)
if stamp_ok "$DATA_DIR/.setup-smoke" "$smoke_key"; then
  note "this build already booted a sandbox on this host (stamp $DATA_DIR/.setup-smoke)"
else
  CAPSULE_DATA_DIR="$DATA_DIR" node scripts/smoke.mjs | sed 's/^/      /'
  stamp_write "$DATA_DIR/.setup-smoke" "$smoke_key"
fi

# ---------------------------------------------------------------------------------------------
say "the capsule command"
bash "$ROOT/scripts/install-launcher.sh" | sed 's/^/      /'

printf '\n\033[1mCapsule is set up.\033[0m Data dir: %s.\n' "$DATA_DIR"
