#!/usr/bin/env bash
# Sets this host up (idempotent, a few seconds once done) and starts the Capsule API server in
# the foreground: http://127.0.0.1:8080 by default, data in /var/lib/capsule. As root; otherwise
# it re-runs itself with sudo. On the very first start it creates an API key for the account
# "default" and prints it once. Extra arguments go to `capsule serve` (e.g. --port 9000
# --host 0.0.0.0; CAPSULE_PORT / CAPSULE_HOST work too). Once the server listens, this prints the
# address it actually serves, taken from the server's own "listening" line.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
. "$ROOT/scripts/common.sh"
as_root "$ROOT/scripts/start.sh" "$@"

# The data dir the server will use: --data-dir from the arguments, else CAPSULE_DATA_DIR.
DATA_DIR=${CAPSULE_DATA_DIR:-/var/lib/capsule}
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --data-dir) DATA_DIR=${args[$((i + 1))]:-$DATA_DIR} ;;
    --data-dir=*) DATA_DIR=${args[$i]#--data-dir=} ;;
  esac
done
export CAPSULE_DATA_DIR=$DATA_DIR
bash "$ROOT/scripts/setup.sh"

CLI="$ROOT/packages/cli/dist/src/main.js"
key=
if [ "$(node "$CLI" keys list --json --data-dir "$DATA_DIR")" = "[]" ]; then
  key=$(node "$CLI" keys create --json --data-dir "$DATA_DIR" | node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).key')
fi

# Passes the server's stdout through and, after its {"listening":URL,...} line, says where it
# serves (and, on the first start, the key). It ignores Ctrl-C and SIGTERM, which are the
# server's to handle, and ends when the server closes its stdout.
announce() {
  trap '' INT TERM
  local line url='' shown=''
  while IFS= read -r line; do
    printf '%s\n' "$line"
    [ -n "$shown" ] && continue
    url=$(sed -n 's/^{"listening":"\([^"]*\)".*/\1/p' <<<"$line")
    [ -n "$url" ] || continue
    shown=1
    printf '\n\033[1mCapsule is serving on %s\033[0m  (web console: %s/console/; Ctrl-C stops it, VMs keep their disks and are recovered on the next start)\n' "$url" "$url"
    if [ -n "$key" ]; then
      printf '\nFirst start: created an API key for account "default" (shown only now):\n\n  export FREESTYLE_API_URL=%s\n  export FREESTYLE_API_KEY=%s\n\n' "$url" "$key"
    else
      printf 'Keys: capsule keys list; a new one: capsule keys create\n\n'
    fi
  done
  if [ -z "$shown" ] && [ -n "$key" ]; then
    printf '\nThe server did not start. The API key created for account "default" (shown only now): %s\n' "$key" >&2
  fi
}

echo "Starting Capsule."
exec node "$CLI" serve --data-dir "$DATA_DIR" "$@" > >(announce)
