#!/usr/bin/env bash
# The project's test command (`npm test`). As root; otherwise it re-runs itself with sudo. Builds
# (host packages, npm ci, tsc), runs the unit tier (`npm run test:unit`: no root, no sandbox),
# then sets the host up (idempotent and fast when already done), then lint, typecheck and every
# test suite on real gVisor sandboxes. Under CI=true a skipped test is a failure: CI must run
# the real-sandbox tests.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
. "$ROOT/scripts/common.sh"
as_root "$ROOT/scripts/test.sh" "$@"
cd "$ROOT"

log=$(mktemp)
trap 'rm -f "$log"' EXIT

bash scripts/setup.sh --build-only
echo "== unit tier (npm run test:unit)"
set +e
node scripts/test-unit.mjs 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || exit "$rc"

bash scripts/setup.sh

# Test-only host package: the web console's end-to-end tests drive Debian's Chromium (playwright-core).
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "ok installed"; then
  echo "== installing chromium (web console tests)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
fi

echo "== lint"
npx eslint --max-warnings=0 .
echo "== typecheck"
npx tsc -b

echo "== Claude Code binary (npm @anthropic-ai/claude-code-linux-x64, cached per version; the SDK's claude tests use it)"
node --input-type=module -e "const { ensureClaudeCodeBinary } = await import('./packages/sdk/dist/src/index.js'); console.log(await ensureClaudeCodeBinary());"

# heavy PACKAGE...: the compiled real-sandbox suites of these packages, i.e. every test/**/*.test.ts
# except the unit tier's *.unit.test.ts, as dist paths. Listed from the sources, so a suite whose
# source was renamed or removed never runs from a stale dist file.
heavy() {
  local pkg
  for pkg in "$@"; do
    [ -d "packages/$pkg/test" ] || continue
    find "packages/$pkg/test" -type f \( -name '*.test.ts' -o -name '*.test.tsx' \) ! -name '*.unit.test.ts' ! -name '*.unit.test.tsx' \
      | sed -E "s#^packages/$pkg/test/#packages/$pkg/dist/test/#; s#\.tsx?\$#.js#"
  done | sort
}
# compat-v5: the /v5 API through the official freestyle@0.2.x client (its own workspace, so its
# `freestyle` is 0.2 while the server's tests keep 0.1.63); its v5-node22 suite runs the client
# on a Node 22 that scripts/node22.sh fetches from the npm registry once (cached per version).
# compat-computesdk: the calls ComputeSDK's Freestyle provider makes, through its client
# freestyle-sandboxes@0.1.34 (its own workspace, like compat-v5).
mapfile -t server_suites < <(heavy agent engine server compat-v5 compat-computesdk)
mapfile -t client_suites < <(heavy sdk cli)
for dir in packages/*/; do
  pkg=$(basename "$dir")
  case " agent engine server compat-v5 compat-computesdk sdk cli " in *" $pkg "*) continue ;; esac
  [ -z "$(heavy "$pkg")" ] || die "packages/$pkg has real-sandbox suites (test/*.test.ts) that scripts/test.sh does not run: add it to one of its lists"
done

echo "== tests"
set +e
# --experimental-websocket: the official freestyle client's PTY needs the global WebSocket (Node 20).
timeout -k 10 1800 node --experimental-websocket --test --test-reporter=spec --test-concurrency=1 "${server_suites[@]}" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || exit "$rc"
echo "== SDK and CLI suites (no --experimental-websocket: the SDK must work without it)"
timeout -k 10 1200 node --test --test-reporter=spec --test-concurrency=1 "${client_suites[@]}" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || exit "$rc"
echo "== engine suites again on runc (the weaker, faster runtime)"
CAPSULE_TEST_RUNTIME=runc timeout -k 10 900 node --test --test-reporter=spec --test-concurrency=1 \
  packages/engine/dist/test/exec.test.js packages/engine/dist/test/files.test.js \
  packages/engine/dist/test/pty.test.js packages/engine/dist/test/snapshot.test.js \
  packages/engine/dist/test/isolation.test.js packages/engine/dist/test/limits.test.js \
  packages/engine/dist/test/guest-exhausted.test.js packages/engine/dist/test/guest-files.test.js \
  packages/engine/dist/test/host-modes.test.js packages/engine/dist/test/hostile-agent.test.js 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || exit "$rc"
echo "== isolation and hostile networking again on hostinet (the host kernel's network stack; netstack is the default)"
CAPSULE_NETWORK=hostinet timeout -k 10 600 node --test --test-reporter=spec --test-concurrency=1 \
  packages/engine/dist/test/isolation.test.js packages/engine/dist/test/network-stack.test.js \
  packages/engine/dist/test/net-hostile.test.js 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || exit "$rc"
echo "== fuzzers, short run: 5000 agent frames, 3000 API requests (the full run: npm run fuzz)"
timeout -k 10 600 node fuzz/dist/main.js --short 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || exit "$rc"

skipped=$(sed -n 's/^[^a-z]*skipped \([0-9]\+\)$/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
if [ -n "${CI:-}" ] && [ "${skipped:-0}" != 0 ]; then
  echo "CI: $skipped test(s) were skipped; the real-sandbox tests must run here" >&2
  exit 1
fi
