#!/usr/bin/env bash
# Sets this host up (idempotent, fast once done) and starts the Capsule API server in the
# foreground on its embedded defaults: http://127.0.0.1:8080, data in /var/lib/capsule.
# On the very first start it creates an API key for the account "default" and prints it once.
# Extra arguments go to `capsule serve` (e.g. --port 9000 --host 0.0.0.0).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_DIR=${CAPSULE_DATA_DIR:-/var/lib/capsule}
bash "$ROOT/scripts/setup.sh"

capsule() { node "$ROOT/packages/cli/dist/src/main.js" "$@"; }
if [ "$(capsule keys list --json --data-dir "$DATA_DIR")" = "[]" ]; then
  key=$(capsule keys create --json --data-dir "$DATA_DIR" | node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).key')
  printf '\nFirst start: created an API key for account "default" (shown only now):\n\n  export FREESTYLE_API_URL=http://127.0.0.1:8080\n  export FREESTYLE_API_KEY=%s\n\n' "$key"
fi
echo "Starting Capsule (Ctrl-C stops it; VMs keep their disks and are recovered on the next start)."
exec node "$ROOT/packages/cli/dist/src/main.js" serve --data-dir "$DATA_DIR" "$@"
