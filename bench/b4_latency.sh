#!/bin/sh
# B4 added latency and jitter of the relay: the B3 load at a few levels
# (default 10/50/80 % of 800 calls), each window captured on loopback with
# tcpdump; every packet from the caller is paired with its copy leaving the
# relay for the callee. denwa, then rtpengine behind Kamailio, in one run.
# Options: --calls 80,400,640 --window N --name NAME --keep
set -eu
cd "$(dirname "$0")/.."
command -v tcpdump >/dev/null || apt-get install -y --no-install-recommends tcpdump
exec bench/b3_media.sh --latency --name b4-latency --calls 80,400,640 --settle 5 --loss 100 "$@"
