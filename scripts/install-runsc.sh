#!/usr/bin/env bash
# Makes `runsc` on PATH one that starts gVisor's own network stack (--network=sandbox) inside a
# network namespace, as Capsule's netstack VMs (and so memory snapshots) need, and whose epoll
# survives a restore (upstream's fix of 2026-03-31: before it, a restored process got events of
# descriptors it had closed before the checkpoint). An upstream release from that date on that
# starts netstack is kept. Otherwise scripts/build-runsc.sh builds one from Debian's source with
# scripts/runsc-patches applied (cached: a second run takes seconds) and it is installed
# as /usr/local/bin/runsc, where setup.sh already puts runsc and which comes first on PATH; the
# engine's default runscPath is `runsc` on PATH, so no setting changes. Idempotent.
#
#   bash scripts/install-runsc.sh    # as root, after the build (tsc) and the agent bundle
#
# Settings (environment): CAPSULE_DATA_DIR (default /var/lib/capsule: its agent bundle runs the
# probe); build-runsc.sh's.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
. "$ROOT/scripts/common.sh"
case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
  *) die "usage: bash scripts/install-runsc.sh" ;;
esac
as_root "$ROOT/scripts/install-runsc.sh" "$@"

DATA_DIR=${CAPSULE_DATA_DIR:-/var/lib/capsule}
TARGET=/usr/local/bin/runsc
PROBE="$ROOT/packages/engine/dist/src/runtime/netstack-probe.js"
[ -f "$PROBE" ] || die "$PROBE is missing: build the project first (npx tsc -b)"
[ -d "$DATA_DIR/agent/current" ] || die "no agent bundle at $DATA_DIR/agent/current: build it first (node packages/agent/scripts/bundle.mjs $DATA_DIR/agent)"

# probe BIN: succeeds when BIN starts netstack (the engine's own start-up probe); else prints why.
probe() {
  node --input-type=module -e '
    const { probeNetstack } = await import(process.argv[1]);
    const why = await probeNetstack(process.argv[2], "systrap", process.argv[3]);
    if (why !== undefined) { console.log(why); process.exit(1); }' "$PROBE" "$1" "$DATA_DIR/agent/current"
}

# The first release with upstream's epoll-after-restore fix (5d857245b, 2026-03-31), which
# build-runsc.sh backports to Debian's older source.
EPOLL_FIX_RELEASE=20260401
# release_date BIN: the date in BIN's version (release-20260331.0, or Debian's 0.0~20240729.0).
release_date() { "$1" --version 2>/dev/null | sed -n 's/^runsc version .*\([0-9]\{8\}\).*/\1/p' | head -1; }

current=$(command -v runsc || true)
why="not installed"
if [ -n "$current" ]; then
  date=$(release_date "$current")
  if [ "${date:-0}" -lt "$EPOLL_FIX_RELEASE" ]; then
    why="version ${date:-unknown} predates upstream's epoll fix for restores, or is a build of Debian's source"
  elif why=$(probe "$current"); then
    note "$current starts gVisor's netstack ($(runsc --version | head -1))"
    exit 0
  fi
fi
note "${current:-runsc}: $why; building (or reusing) one from Debian's source with the fixes backported"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
bash "$ROOT/scripts/build-runsc.sh" | tee "$out" | sed 's/^/      /'
built=$(tail -1 "$out")
[ -x "$built" ] || die "scripts/build-runsc.sh printed no runsc binary"
if ! cmp -s "$built" "$TARGET"; then
  # A new inode: sandboxes running on the old binary keep it.
  install -m 0755 "$built" "$TARGET.new"
  mv -f "$TARGET.new" "$TARGET"
fi
hash -r
[ "$(command -v runsc)" = "$TARGET" ] || die "$TARGET is installed but $(command -v runsc) comes first on PATH"
why=$(probe "$TARGET") || die "the built runsc cannot start gVisor's netstack either: $why"
note "$TARGET ($(sha256sum "$TARGET" | cut -c1-12)…) starts gVisor's netstack"
