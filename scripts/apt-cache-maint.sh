#!/usr/bin/env bash
# Keeps Capsule's apt cache (scripts/package-caches.sh) within its image while it runs: apt-cacher-ng
# has no size limit of its own, and the archive is far larger than the image, so one VM installing
# many packages would otherwise fill it for every tenant until an operator acted.
#
#   apt-cache-maint.sh CACHE_DIR CONF_DIR CACHE_MB [--loop SECONDS]
#
# Each pass: once the image is TRIM_AT_PERCENT full, apt-cacher-ng's own `acngtool shrink` drops
# the least recently used files until the cache is half of CACHE_MB; each log in CACHE_DIR/log past
# LOG_MAX_BYTES keeps its newest LOG_KEEP_BYTES (copied back in place: apt-cacher-ng appends to
# the open file). With --loop it repeats every SECONDS (package-caches.sh starts it that way, as
# root, installed outside the repository; it exits when the cache's image is no longer mounted).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 CACHE_DIR CONF_DIR CACHE_MB [--loop SECONDS]" >&2; exit 2; }
CACHE_DIR=$1 CONF_DIR=$2 CACHE_MB=$3
INTERVAL=${5:-}
TRIM_AT_PERCENT=80
LOG_MAX_BYTES=$((16 * 1024 * 1024))
LOG_KEEP_BYTES=$((4 * 1024 * 1024))

pass() {
  local used f size
  used=$(df --output=pcent "$CACHE_DIR" | tail -1 | tr -dc 0-9)
  if [ "${used:-0}" -ge "$TRIM_AT_PERCENT" ]; then
    if setpriv --reuid=apt-cacher-ng --regid=apt-cacher-ng --init-groups \
      /usr/lib/apt-cacher-ng/acngtool shrink "$((CACHE_MB / 2))M" -f -c "$CONF_DIR" >/dev/null 2>&1; then
      echo "$(date -Is) apt cache was ${used}% full: trimmed to $((CACHE_MB / 2)) MiB"
    else
      echo "$(date -Is) apt cache is ${used}% full and acngtool shrink failed" >&2
    fi
  fi
  for f in "$CACHE_DIR"/log/*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    size=$(stat -c %s "$f")
    [ "$size" -gt "$LOG_MAX_BYTES" ] || continue
    tail -c "$LOG_KEEP_BYTES" "$f" >"$f.keep" && cat "$f.keep" >"$f" && rm -f "$f.keep"
  done
}

pass
if [ "${4:-}" = "--loop" ]; then
  [[ $INTERVAL =~ ^[0-9]+$ && $INTERVAL -ge 10 ]] || { echo "--loop needs SECONDS >= 10" >&2; exit 2; }
  while sleep "$INTERVAL"; do
    mountpoint -q "$CACHE_DIR" || exit 0
    pass
  done
fi
