#!/bin/sh
# B1 registrar benchmark: REGISTER with MD5 digest against denwa, then
# against Kamailio (bench/kamailio.cfg), over a rising rate ladder.
# Options: --rates 500,1000,... --seconds N --users N --name NAME
set -eu
cd "$(dirname "$0")/.."
exec timeout 1800 python3 bench/bench.py b1 "$@"
