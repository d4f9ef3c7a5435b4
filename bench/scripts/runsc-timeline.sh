#!/bin/sh
# runsc-timeline.sh PREFIX: the debug logs of one runsc command (PREFIX.<command>.txt, and the
# PREFIX.boot.txt and PREFIX.gofer.txt of the sandbox it started) merged into one timeline,
# milliseconds from its first line, config dumps left out. PREFIX is a file name without its
# ".<command>.txt", e.g. /tmp/runsc-debug/runsc.log.20261202-062727.172232.
set -eu
for f in "$1".*.txt; do
  k=${f#"$1".}
  grep -h '^[IDWE][0-9]\{4\} ' "$f" | grep -v 'config\.go' | sed "s/^/${k%.txt} /"
done | awk '{ split($3, t, ":"); printf "%.6f %s %s\n", t[1] * 3600 + t[2] * 60 + t[3], $1, substr($0, index($0, $5)) }' |
  sort -n -s -k1,1 | awk 'NR == 1 { t0 = $1 } { printf "%7.1f %s\n", ($1 - t0) * 1000, substr($0, index($0, $2)) }'
