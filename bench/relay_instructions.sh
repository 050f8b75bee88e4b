#!/bin/sh
# Instructions (callgrind) and syscalls per forwarded RTP packet, plain and
# recorded, on a small B3 load; compares builds on a busy machine.
# Options: --calls N --window S --modes plain,recorded --tools callgrind,syscalls
#          --denwa BIN --name NAME --keep
set -eu
cd "$(dirname "$0")/.."
for pkg in sipp:sip-tester sox:sox valgrind:valgrind perf:linux-perf; do
    command -v "${pkg%%:*}" >/dev/null || apt-get install -y --no-install-recommends "${pkg#*:}"
done
exec timeout 3600 python3 bench/relay_instructions.py "$@"
