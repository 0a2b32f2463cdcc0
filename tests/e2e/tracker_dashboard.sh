#!/bin/bash
# timeout: 300
# The tracker's dashboard during a real, rate-limited multi-peer fetch, seen by headless Chromium.
#
# Needs root: five network namespaces of our own (a hub with a bridge where `diskswarm tracker` runs, one seeder,
# three fetchers), joined by veth pairs shaped with tc tbf (netem is not available) on 198.18.0.0/24, so a 96 MiB
# transfer lasts ~15-30 s. Chromium (in the hub namespace) loads http://198.18.0.1:PORT/ twice a few seconds
# apart: rows appear (one per machine) and progress changes. A screenshot is saved to
# ${DS_ARTIFACTS:-/tmp/diskswarm-artifacts}/dashboard.png. Exit 0 pass, 1 fail, 77 skip.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

log() { printf '[tracker_dashboard] %s\n' "$*" >&2; }
is_root || { log "SKIP: needs root (network namespaces + tc)"; exit 77; }
[[ -x "$DISKSWARM" ]] || { log "SKIP: $DISKSWARM not built"; exit 77; }
for t in ip tc chromium curl cmp; do
    command -v "$t" >/dev/null || { log "SKIP: $t not installed"; exit 77; }
done
ds_init

SIZE_MIB=${SIZE_MIB:-96}
RATE=${RATE:-50mbit}
ART=${DS_ARTIFACTS:-/tmp/diskswarm-artifacts}
mkdir -p "$ART"
TAG=dsd$$
HUB=${TAG}h
PORT=6969
HUBIP=198.18.0.1

# ---- network: hub namespace with a bridge, one namespace per machine
ip netns add "$HUB"; ds_track_netns "$HUB"
ip -n "$HUB" link set lo up
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" addr add "$HUBIP/24" dev br0
ip -n "$HUB" link set br0 up
for i in 0 1 2 3; do
    ns=${TAG}m$i
    ip netns add "$ns"; ds_track_netns "$ns"
    ip -n "$ns" link set lo up
    ip link add "v${TAG}a$i" netns "$HUB" type veth peer name eth0 netns "$ns"
    ip -n "$HUB" link set "v${TAG}a$i" master br0 up
    ip -n "$ns" addr add "198.18.0.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    # both directions: machine uplink and downlink
    ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$RATE" burst 64kb latency 50ms
    ip netns exec "$HUB" tc qdisc add dev "v${TAG}a$i" root tbf rate "$RATE" burst 64kb latency 50ms
done

# ---- data, torrent, tracker, seeder, fetchers
SRC=$DS_TMP/src.bin
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$SRC"
T=$DS_TMP/img.torrent
"$DISKSWARM" make-torrent "$SRC" --all -o "$T" --tracker "http://$HUBIP:$PORT/announce" --piece-size 256K >/dev/null
ds_bg "$DS_TMP/tracker.log" ip netns exec "$HUB" "$DISKSWARM" tracker --listen "$HUBIP:$PORT" --torrent "$T" \
    --interval 30 --min-interval 1
wait_port "$PORT" 10 "$HUB" || { cat "$DS_TMP/tracker.log" >&2; fail "tracker did not start"; }
ip netns exec "${TAG}m1" curl -s --max-time 3 -o /dev/null "http://$HUBIP:$PORT/status.json" \
    || fail "a machine namespace cannot reach the tracker: namespace network does not work"
ds_bg "$DS_TMP/seed.log" ip netns exec "${TAG}m0" timeout -k 5 200 "$DISKSWARM" seed "$T" --from "$SRC" \
    --listen "198.18.0.10:6881" --quiet
for i in 1 2 3; do
    truncate -s "$(stat -c %s "$SRC")" "$DS_TMP/t$i.img"
    ds_bg "$DS_TMP/fetch$i.log" ip netns exec "${TAG}m$i" timeout -k 5 200 "$DISKSWARM" fetch "$T" \
        --to "$DS_TMP/t$i.img" --listen "198.18.0.$((10 + i)):6881" --seed-time 20 --quiet
    eval "FETCH$i=\$DS_BG_PID"
done

# ---- the dashboard in headless Chromium
chrome() { # chrome ARGS...: bounded, isolated profile, no traffic but to the hub
    local prof
    prof=$(mktemp -d "$DS_TMP/chrome.XXXXXX")
    timeout -k 5 60 ip netns exec "$HUB" chromium --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --user-data-dir="$prof" --virtual-time-budget=2500 "$@" 2>>"$DS_TMP/chrome.log"
}
URL="http://$HUBIP:$PORT/"
rows() { # rows DOMFILE: "id progress state" per machine row
    grep -o '<tr class="peer[^>]*>' "$1" | sed -E 's/.*data-id="([0-9a-f]+)" data-progress="([0-9.]+)" data-state="([a-z]+)".*/\1 \2 \3/' || true
}
# wait until the fetchers are registered and moving
deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
    n=$(ip netns exec "$HUB" curl -s --max-time 2 "${URL}status.json" | grep -o '"state":"downloading"' | wc -l || true)
    if ((n >= 1)); then break; fi
    sleep 0.5
done
chrome --dump-dom "$URL" >"$DS_TMP/dom1.html" || fail "chromium --dump-dom failed"
rows "$DS_TMP/dom1.html" >"$DS_TMP/rows1"
log "first load: $(wc -l <"$DS_TMP/rows1") rows"; sed 's/^/    /' "$DS_TMP/rows1" >&2
sleep 4
chrome --screenshot="$ART/dashboard.png" --window-size=1280,800 "$URL" >/dev/null || fail "screenshot failed"
chrome --dump-dom "$URL" >"$DS_TMP/dom2.html" || fail "chromium --dump-dom failed"
rows "$DS_TMP/dom2.html" >"$DS_TMP/rows2"
log "second load: $(wc -l <"$DS_TMP/rows2") rows"; sed 's/^/    /' "$DS_TMP/rows2" >&2
log "screenshot: $ART/dashboard.png"

(($(wc -l <"$DS_TMP/rows1") >= 4)) || fail "expected a row per machine (4) on the first load"
(($(wc -l <"$DS_TMP/rows2") >= 4)) || fail "expected a row per machine (4) on the second load"
grep -q 'data-updates="[1-9]' "$DS_TMP/dom1.html" || fail "the page never got /status.json"
grep -q 'class="strip"' "$DS_TMP/dom1.html" || fail "no availability strip"
changed=$(join <(sort "$DS_TMP/rows1") <(sort "$DS_TMP/rows2") | awk '$2 != $4' | wc -l)
log "$changed rows changed progress between the loads"
((changed >= 1)) || fail "progress did not change between the two loads"
[[ -s "$ART/dashboard.png" ]] || fail "no screenshot"

# ---- the transfer itself must finish correctly
for i in 1 2 3; do
    eval "pid=\$FETCH$i"
    rc=0; wait_for_exit "$pid" 180 || rc=$?
    ((rc == 0)) || { tail -20 "$DS_TMP/fetch$i.log" >&2; fail "fetch $i exited $rc"; }
    cmp "$SRC" "$DS_TMP/t$i.img" || fail "fetch $i: data differs"
done
log "all 3 fetchers complete and verified"
