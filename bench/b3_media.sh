#!/bin/sh
# B3 media relay capacity: SIPp UAC (G.711 stream) -> relay -> SIPp UAS
# (-rtp_echo), concurrent calls stepped up; denwa, then rtpengine behind
# Kamailio in the same run.
# Options: --calls 100,200,... --window N --loss PCT --name NAME --keep
set -eu
cd "$(dirname "$0")/.."
for pkg in rtpengine:rtpengine-daemon sox:sox; do
    command -v "${pkg%%:*}" >/dev/null || apt-get install -y --no-install-recommends "${pkg#*:}"
done
[ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/rtpengine.so ] ||
    apt-get install -y --no-install-recommends kamailio-extra-modules
exec timeout 3600 python3 bench/b3_media.py "$@"
