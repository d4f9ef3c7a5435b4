#!/bin/sh
# runsc with its debug logs on: one file per runsc command, and per sandbox and gofer process,
# in $RUNSC_DEBUG_DIR (default /tmp/runsc-debug/). Give it where a runsc path is taken
# (ckpt-lab.mjs --runsc, the engine's runscPath) to see where a command's time goes; then
# runsc-timeline.sh merges one command's files. Debug logging makes runsc ~25% slower.
dir=${RUNSC_DEBUG_DIR:-/tmp/runsc-debug/}
mkdir -p "$dir"
exec "${RUNSC:-/usr/local/bin/runsc}" --debug --debug-log="$dir" "$@"
