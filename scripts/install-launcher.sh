#!/usr/bin/env bash
# Installs the `capsule` command: a two-line launcher, /usr/local/bin/capsule (or $1), that runs
# this checkout's CLI with the node on PATH. Idempotent; it never replaces a `capsule` that
# another program installed there. Run by scripts/setup.sh; as root.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${1:-/usr/local/bin/capsule}
MARK="# capsule launcher, installed by scripts/setup.sh"
case "$ROOT" in *"'"*) echo "the checkout's path $ROOT has a quote in it; no launcher installed" >&2; exit 1 ;; esac

want="#!/bin/sh
$MARK
exec node '$ROOT/packages/cli/dist/src/main.js' \"\$@\""

if [ -e "$TARGET" ] && ! grep -qxF "$MARK" "$TARGET"; then
  echo "$TARGET exists and was not installed by Capsule: left alone (run the CLI as node $ROOT/packages/cli/dist/src/main.js)"
  exit 0
fi
if [ -f "$TARGET" ] && [ "$(cat "$TARGET")" = "$want" ]; then
  echo "capsule is on PATH ($TARGET -> $ROOT)"
  exit 0
fi
was=$( [ -f "$TARGET" ] && sed -n "s/^exec node '\\(.*\\)\\/packages\\/cli\\/dist\\/src\\/main.js'.*/\\1/p" "$TARGET" || true)
mkdir -p "$(dirname "$TARGET")"
tmp=$(mktemp "$TARGET.XXXXXX")
printf '%s\n' "$want" >"$tmp"
chmod 0755 "$tmp"
mv -f "$tmp" "$TARGET"
if [ -n "$was" ]; then
  echo "installed $TARGET -> $ROOT (it pointed at $was)"
else
  echo "installed $TARGET -> $ROOT: \`capsule --help\` works from any directory"
fi
case ":$PATH:" in *":$(dirname "$TARGET"):"*) ;; *) echo "note: $(dirname "$TARGET") is not on this shell's PATH" ;; esac
