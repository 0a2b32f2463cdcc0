#!/bin/bash
# bench/tracker_load.sh — load benchmark of `diskswarm tracker`, loopback only, bounded in count and time.
#
#   bench/tracker_load.sh [DISKSWARM]     (env: PEERS=10000 THREADS=4 DURATION=10 MAXREQ=2000000)
#
# 1. fills the table with PEERS simulated peers (each announces once over HTTP keep-alive);
# 2. HTTP: THREADS keep-alive connections announce as fast as they get answers for DURATION seconds (or MAXREQ);
# 3. UDP (BEP 15): the same over UDP;
# prints announces/s for both, and the tracker's RSS (VmRSS, VmHWM) empty, at PEERS peers, and after the runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DISKSWARM=${1:-${DISKSWARM:-$ROOT/build/diskswarm}}
PEERS=${PEERS:-10000}
THREADS=${THREADS:-4}
DURATION=${DURATION:-10}
MAXREQ=${MAXREQ:-2000000}
[[ -x $DISKSWARM ]] || { echo "no diskswarm binary at $DISKSWARM" >&2; exit 1; }
TMP=$(mktemp -d)
TPID=
cleanup() {
    [[ -n $TPID ]] && kill "$TPID" 2>/dev/null && wait "$TPID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

cc -O2 -Wall -Wextra -Werror -pthread -o "$TMP/loadgen" "$ROOT/bench/tracker_loadgen.c"
IH=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$IH" >"$TMP/wl"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$DISKSWARM" tracker --listen "127.0.0.1:$PORT" --udp "127.0.0.1:$PORT" --whitelist "$TMP/wl" \
    --max-peers $((PEERS * 3)) --max-total $((PEERS * 3)) --interval 1800 >"$TMP/tracker.log" 2>&1 &
TPID=$!
for _ in $(seq 50); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done
rss() { awk '/^VmRSS|^VmHWM/ {printf "%s %s kB  ", $1, $2}' "/proc/$TPID/status"; echo; }
peers() { curl -s "http://127.0.0.1:$PORT/scrape?info_hash=$(python3 -c "import urllib.parse,sys; print(urllib.parse.quote(bytes.fromhex('$IH')))")" | python3 -c '
import re, sys; d = sys.stdin.buffer.read()
print(sum(int(x) for x in re.findall(rb"(?:complete|incomplete)i(\d+)e", d)))'; }

echo "tracker pid $TPID on 127.0.0.1:$PORT; PEERS=$PEERS THREADS=$THREADS DURATION=$DURATION"
echo "empty:            $(rss)"
"$TMP/loadgen" http 127.0.0.1 "$PORT" "$IH" "$PEERS" 1 60 "$PEERS" >/dev/null
echo "at $(peers) peers: $(rss)"
echo "HTTP keep-alive:  $("$TMP/loadgen" http 127.0.0.1 "$PORT" "$IH" "$PEERS" "$THREADS" "$DURATION" "$MAXREQ")"
echo "UDP (BEP 15):     $("$TMP/loadgen" udp 127.0.0.1 "$PORT" "$IH" "$PEERS" "$THREADS" "$DURATION" "$MAXREQ")"
echo "after runs, $(peers) peers: $(rss)"
T=$(curl -s -o "$TMP/status.json" -w '%{time_total}' "http://127.0.0.1:$PORT/status.json")
echo "status.json at $(peers) peers: $(stat -c %s "$TMP/status.json") bytes in ${T} s"
