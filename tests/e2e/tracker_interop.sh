#!/bin/bash
# timeout: 600
# `diskswarm tracker` with real clients, and diskswarm peers with a real tracker.
#
#  aria2-seeds-libtorrent-fetches:  aria2c seeds, python3-libtorrent downloads; both learn of each other only
#                                   through `diskswarm tracker` on 127.0.0.1 (no peer addresses given).
#  diskswarm-swarm-opentracker:     diskswarm seed + 3 diskswarm fetch announcing to a real opentracker, no
#                                   --peer: all complete, data verified.
#  diskswarm-swarm-diskswarm-tracker: the same with `diskswarm tracker` (also checks its scrape, status.json
#                                   and completed count) and its UDP face with a hand-made BEP 15 exchange.
# Exit 0 pass, 1 fail, 77 skip. Only 127.0.0.1.
set -euo pipefail
IX_NAME=tracker_interop
. "$(dirname "$0")/../lib/interop.sh"

ix_need_tools curl ss cmp python3
ix_need_binary
ds_init

IX_TIMEOUT=${IX_TIMEOUT:-120}
SIZE_MIB=${SIZE_MIB:-32}
ARIA_COMMON=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
             --disable-ipv6=true --file-allocation=none --summary-interval=0 --console-log-level=notice
             --check-certificate=false --bt-max-peers=10 --bt-request-peer-speed-limit=0)

SRC=$DS_TMP/src.bin
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$SRC"

# make_t PORT OUT: a torrent over all of $SRC announcing to http://127.0.0.1:PORT/announce
make_t() {
    "$DISKSWARM" make-torrent "$SRC" --all -o "$2" --tracker "http://127.0.0.1:$1/announce" --piece-size 256K \
        >/dev/null || fail "make-torrent failed"
}

# start_ds_tracker PORT TORRENT: diskswarm tracker on 127.0.0.1:PORT (tcp+udp); sets TRACKER_PID
start_ds_tracker() {
    ds_bg "$DS_TMP/tracker.log" "$DISKSWARM" tracker --listen "127.0.0.1:$1" --udp "127.0.0.1:$1" --torrent "$2" \
        --interval 30 --min-interval 2
    TRACKER_PID=$DS_BG_PID
    ix_wait_listen "$1" 10 "$TRACKER_PID" || { ix_show_log "$DS_TMP/tracker.log"; fail "diskswarm tracker did not start"; }
}

# wait_seeders PORT IH N SEC: until the tracker's scrape shows N seeders
wait_seeders() {
    local deadline=$((SECONDS + $4)) n
    while ((SECONDS < deadline)); do
        n=$(ix_tracker_seeders "$1" "$2")
        if ((n >= $3)); then return 0; fi
        sleep 0.3
    done
    ix_log "tracker on $1 shows $(ix_tracker_seeders "$1" "$2") seeders, wanted $3"
    return 1
}

# libtorrent download that knows no peer: everything comes from the torrent's tracker
LT_TRACKER_ONLY_PY='
import sys, time
import libtorrent as lt
torrent, save, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ses = lt.session({"listen_interfaces": f"127.0.0.1:{port}", "outgoing_interfaces": "127.0.0.1",
                  "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
                  "enable_incoming_utp": False, "enable_outgoing_utp": False,
                  "allow_multiple_connections_per_ip": True, "user_agent": "tracker_interop"})
atp = lt.add_torrent_params(); atp.ti = lt.torrent_info(torrent); atp.save_path = save
h = ses.add_torrent(atp)
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    st = h.status()
    if st.is_seeding:
        print("complete; tracker said:", st.current_tracker, file=sys.stderr); h.flush_cache(); time.sleep(0.5)
        sys.exit(0)
    for a in ses.pop_alerts():
        if a.category() & lt.alert.category_t.error_notification or "tracker" in a.what():
            print(a.what(), a.message(), file=sys.stderr)
    time.sleep(0.2)
print("timeout, progress", h.status().progress, file=sys.stderr); sys.exit(2)
'

aria2_lt() {
    ix_need_tools aria2c
    ix_need_lt
    local tport aport lport t=$DS_TMP/a.torrent ih name seed rc=0
    tport=$(free_port); aport=$(free_port); lport=$(free_port)
    make_t "$tport" "$t"
    ih=$(ix_infohash "$t")
    start_ds_tracker "$tport" "$t"
    # the torrent's layout: NAME/<32 hex digits of offset 0>
    name=$("$DS_PY" "$IX_LT_PEER" files "$t" | awk 'NR == 1 {print $1}')
    mkdir -p "$DS_TMP/aria/$(dirname "$name")"
    cp "$SRC" "$DS_TMP/aria/$name"
    ix_check "aria2c verifies and seeds, announcing to diskswarm tracker"
    ds_bg "$DS_TMP/aria2.log" timeout -k 5 $((IX_TIMEOUT + 60)) aria2c "${ARIA_COMMON[@]}" -V --seed-ratio=0.0 \
        --bt-seed-unverified=false --dir="$DS_TMP/aria" --listen-port="$aport" "$t"
    seed=$DS_BG_PID
    wait_seeders "$tport" "$ih" 1 30 || { ix_show_log "$DS_TMP/aria2.log"; ix_show_log "$DS_TMP/tracker.log"; fail "aria2c never announced as a seed"; }
    ix_check "libtorrent downloads with no peer address, only the tracker"
    timeout -k 5 "$IX_TIMEOUT" "$DS_PY" -c "$LT_TRACKER_ONLY_PY" "$t" "$DS_TMP/lt" "$lport" $((IX_TIMEOUT - 10)) \
        >"$DS_TMP/lt.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        ix_show_log "$DS_TMP/lt.log"; ix_show_log "$DS_TMP/tracker.log"; fail "libtorrent download exited $rc"
    fi
    cmp "$SRC" "$DS_TMP/lt/$name" || fail "libtorrent's copy differs"
    ix_check "status.json lists both clients"
    curl -s "http://127.0.0.1:$tport/status.json" >"$DS_TMP/status.json"
    "$DS_PY" - "$DS_TMP/status.json" <<'EOF' || fail "status.json does not show both clients"
import json, sys
st = json.load(open(sys.argv[1]))
peers = st["torrents"][0]["peers"] + st["torrents"][0]["gone"]
clients = sorted({p["client"][:3] for p in peers})
print("clients seen:", clients, file=sys.stderr)
assert any(c.startswith("A2") for c in clients), clients
assert any(c.startswith("-LT") or c.startswith("-lt") for c in clients), clients
EOF
    kill_and_wait "$seed" 10 || true
}

# ds_swarm TRACKER_PORT TORRENT TAG: diskswarm seed + 3 fetchers, no --peer; all complete with correct data
ds_swarm() {
    local tport=$1 t=$2 tag=$3 ih sport seed i fpids=() rc
    ih=$(ix_infohash "$t")
    sport=$(free_port)
    ds_bg "$DS_TMP/seed_$tag.log" timeout -k 5 $((IX_TIMEOUT + 60)) "$DISKSWARM" seed "$t" --from "$SRC" \
        --listen "127.0.0.1:$sport" --quiet
    seed=$DS_BG_PID
    ix_check "diskswarm seed announces itself ($tag)"
    wait_seeders "$tport" "$ih" 1 30 || { ix_show_log "$DS_TMP/seed_$tag.log"; fail "seed never announced"; }
    for i in 1 2 3; do
        truncate -s "$(stat -c %s "$SRC")" "$DS_TMP/t_${tag}_$i.img"
        ds_bg "$DS_TMP/fetch_${tag}_$i.log" timeout -k 5 "$IX_TIMEOUT" "$DISKSWARM" fetch "$t" \
            --to "$DS_TMP/t_${tag}_$i.img" --listen "127.0.0.1:$(free_port)" --quiet
        fpids+=("$DS_BG_PID")
    done
    ix_check "3 diskswarm fetch complete through the tracker alone ($tag)"
    for i in 1 2 3; do
        rc=0
        wait_for_exit "${fpids[i - 1]}" "$IX_TIMEOUT" || rc=$?
        if ((rc != 0)); then
            ix_show_log "$DS_TMP/fetch_${tag}_$i.log"; ix_show_log "$DS_TMP/seed_$tag.log"
            fail "fetch $i exited $rc"
        fi
        cmp "$SRC" "$DS_TMP/t_${tag}_$i.img" || fail "fetch $i: data differs"
    done
    SWARM_SEED_PID=$seed
}

opentracker_swarm() {
    ix_need_tools opentracker
    local tport t=$DS_TMP/o.torrent
    tport=$(free_port)
    make_t "$tport" "$t"
    ix_start_opentracker "$tport" "$(ix_infohash "$t")"
    ds_swarm "$tport" "$t" ot
    kill_and_wait "$SWARM_SEED_PID" 10 || true
}

dstracker_swarm() {
    local tport t=$DS_TMP/d.torrent ih
    tport=$(free_port)
    make_t "$tport" "$t"
    ih=$(ix_infohash "$t")
    start_ds_tracker "$tport" "$t"
    ds_swarm "$tport" "$t" dt
    ix_check "the tracker counted 3 completions, and sees the seed"
    curl -s "http://127.0.0.1:$tport/status.json" >"$DS_TMP/status_dt.json"
    "$DS_PY" - "$DS_TMP/status_dt.json" <<'EOF' || { ix_show_log "$DS_TMP/tracker.log"; fail "status.json is wrong"; }
import json, sys
t = json.load(open(sys.argv[1]))["torrents"][0]
print("complete", t["complete"], "downloaded", t["downloaded"], "peers", len(t["peers"]), "gone", len(t["gone"]),
      file=sys.stderr)
assert t["downloaded"] >= 3, t["downloaded"]
assert t["complete"] >= 1
assert all(p["client"].startswith("-DS") for p in t["peers"] + t["gone"])
EOF
    kill_and_wait "$SWARM_SEED_PID" 10 || true
    ix_check "UDP tracker: connect, announce, wrong connection id refused"
    "$DS_PY" - "$tport" "$ih" <<'EOF' || fail "UDP exchange failed"
import os, socket, struct, sys
port, ih = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(struct.pack(">QII", 0x41727101980, 0, 7), ("127.0.0.1", port))
act, tid, cid = struct.unpack(">IIQ", s.recv(64)); assert (act, tid) == (0, 7)
def announce(cid, tid, left):
    s.sendto(struct.pack(">QII20s20sQQQIIIiH", cid, 1, tid, ih, b"-PY0001-" + os.urandom(6).hex().encode(),
                         0, left, 0, 2, 0, 0, -1, 51413), ("127.0.0.1", port))
    return s.recv(2048)
r = announce(cid, 8, 1000)
act, tid, interval, leechers, seeders = struct.unpack(">IIIII", r[:20])
assert (act, tid) == (1, 8) and leechers >= 1, (act, tid, leechers, seeders)
r = announce(cid ^ 0xffff, 9, 1000)
assert struct.unpack(">II", r[:8]) == (3, 9), r
print("udp ok: interval", interval, "leechers", leechers, "seeders", seeders, file=sys.stderr)
EOF
    ix_check "garbage gets a failure reason or 400, and the tracker stays up"
    local code
    code=$(curl -s -o "$DS_TMP/bad.txt" -w '%{http_code}' "http://127.0.0.1:$tport/announce?info_hash=%zz&port=1")
    [[ $code == 200 ]] && grep -q 'failure reason' "$DS_TMP/bad.txt" || fail "bad announce: HTTP $code"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$tport/announce?x=$(head -c 40000 /dev/zero | tr '\0' a)")
    [[ $code == 400 || $code == 414 || $code == 431 ]] || fail "oversized announce: HTTP $code"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$tport/nope")
    [[ $code == 404 ]] || fail "unknown path: HTTP $code"
    kill -0 "$TRACKER_PID" || fail "tracker died"
    rc=0; kill_and_wait "$TRACKER_PID" 10 || rc=$?
    ((rc == 0)) || fail "tracker exited $rc on SIGTERM"
}

ix_case aria2-seeds-libtorrent-fetches aria2_lt
ix_case diskswarm-swarm-opentracker opentracker_swarm
ix_case diskswarm-swarm-diskswarm-tracker dstracker_swarm
ds_finish
