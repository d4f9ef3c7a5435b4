#!/usr/bin/env bash
# Makes `runsc` on PATH one that starts gVisor's own network stack (--network=sandbox) inside a
# network namespace, as Capsule's netstack VMs (and so memory snapshots) need. A runsc that already
# does (a current upstream release) is kept. Otherwise scripts/build-runsc.sh builds one from
# Debian's source with the fix backported (cached: a second run takes seconds) and it is installed
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
  -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
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

current=$(command -v runsc || true)
if [ -n "$current" ] && why=$(probe "$current"); then
  note "$current starts gVisor's netstack ($(runsc --version | head -1))"
  exit 0
fi
note "${current:-runsc} cannot start gVisor's netstack (${why:-not installed}); building one"
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
