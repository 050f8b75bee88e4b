#!/bin/sh
# B2 call-setup benchmark: SIPp UAC -> denwa (B2BUA, media anchored) ->
# SIPp UAS, then the same through Kamailio as a stateful proxy.
# Options: --rates 200,500,... --seconds N --users N --hold-ms N --name NAME
set -eu
cd "$(dirname "$0")/.."
exec timeout 2400 python3 bench/bench.py b2 "$@"
