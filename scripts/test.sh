#!/usr/bin/env bash
# The project's test command (`npm test`, as root). Sets the host up first (idempotent and fast
# when already done), then lint, typecheck and every test suite on real gVisor sandboxes.
# Under CI=true a skipped test is a failure: CI must run the real-sandbox tests.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

[ "$(id -u)" = 0 ] || { echo "npm test needs root (real sandboxes): sudo npm test" >&2; exit 1; }

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

echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# --experimental-websocket: the official freestyle client's PTY needs the global WebSocket (Node 20).
node --experimental-websocket --test --test-reporter=spec --test-concurrency=1 \
  packages/agent/dist/test/ packages/engine/dist/test/ packages/server/dist/test/ 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || exit "$rc"
echo "== SDK and CLI suites (no --experimental-websocket: the SDK must work without it)"
node --test --test-reporter=spec --test-concurrency=1 packages/sdk/dist/test/ packages/cli/dist/test/ 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || exit "$rc"
echo "== engine suites again on runc (the weaker, faster runtime)"
CAPSULE_TEST_RUNTIME=runc node --test --test-reporter=spec --test-concurrency=1 \
  packages/engine/dist/test/exec.test.js packages/engine/dist/test/files.test.js \
  packages/engine/dist/test/pty.test.js packages/engine/dist/test/snapshot.test.js \
  packages/engine/dist/test/isolation.test.js packages/engine/dist/test/limits.test.js 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || exit "$rc"

skipped=$(sed -n 's/^[^a-z]*skipped \([0-9]\+\)$/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
if [ -n "${CI:-}" ] && [ "${skipped:-0}" != 0 ]; then
  echo "CI: $skipped test(s) were skipped; the real-sandbox tests must run here" >&2
  exit 1
fi
