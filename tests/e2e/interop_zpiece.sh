#!/bin/bash
# timeout: 600
# interop_zpiece.sh — aria2c and libtorrent in the same swarm as diskswarm peers that send each other compressed
# pieces (ds_zpiece). The image is OS-like (tests/lib/osimage.sh), captured with --compress zstd and a tracker
# (a local opentracker).
#
#  plain_clients_fetch:  diskswarm seed --from the compressed image, two diskswarm fetchers, aria2c (through
#                        the tracker) and libtorrent (given every diskswarm peer) download at the same time. The
#                        diskswarm fetchers receive compressed pieces (fetch --json zpieces_down > 0, wire bytes
#                        below raw); aria2c's and libtorrent's files equal the image's extents (they check every
#                        SHA-1 themselves), so they were served plain pieces.
#  plain_clients_seed:   aria2c and libtorrent seed (no diskswarm seed at all); two diskswarm fetchers (compression
#                        on) download from them and from each other; both targets equal the image.
#
# Exit codes as in tests/README.md; 77 without aria2c/opentracker/python3-libtorrent. Only 127.0.0.1.
set -euo pipefail
# shellcheck disable=SC2034 # used by tests/lib/interop.sh
IX_NAME=interop_zpiece
. "$(dirname "$0")/../lib/interop.sh"
. "$(dirname "$0")/../lib/osimage.sh"
ix_need_tools aria2c opentracker mkfs.ext4 e2fsck dumpe2fs cmp curl ss
ix_need_binary
ix_need_lt
ds_init
IX_TIMEOUT=${IX_TIMEOUT:-180}
ARIA_COMMON=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
             --disable-ipv6=true --file-allocation=none --summary-interval=0 --console-log-level=notice
             --check-certificate=false --bt-max-peers=20 --bt-request-peer-speed-limit=0 --bt-tracker-interval=2)

SRC_IMG=$DS_TMP/os.img
make_os_image "$SRC_IMG" 64 24 || fail "make_os_image"
EXTENTS=$DS_TMP/extents.txt
ext4_used_extents "$SRC_IMG" >"$EXTENTS"
TPORT=$(free_port)
CAP=$DS_TMP/cap
"$DISKSWARM" capture "$SRC_IMG" -o "$CAP" --name sda1 --compress zstd --piece-size 256K \
    --tracker "http://127.0.0.1:$TPORT/announce" --quiet >/dev/null || fail "capture"
T=$CAP/sda1.torrent
IH=$(ix_infohash "$T")
ix_check_ezio_torrent "$T" sda1 "$EXTENTS" >/dev/null || fail "the capture's torrent does not describe the used extents"
EZ=$DS_TMP/ezio
ix_build_ezio_dir "$SRC_IMG" "$EXTENTS" "$EZ" sda1
ix_log "image: $(extents_total "$EXTENTS") bytes used, .dsimg $(stat -c %s "$CAP/sda1.dsimg") bytes; info-hash $IH"
ix_start_opentracker "$TPORT" "$IH"

jfield() { # FILE FIELD of the last "done" line
    "$DS_PY" -c 'import json,sys
v = None
for l in open(sys.argv[1]):
    if l.startswith("{"):
        e = json.loads(l)
        if e.get("type") == "done":
            v = e.get(sys.argv[2])
print(v if v is not None else "")' "$1" "$2"
}

# ds_fetcher TAG PORT [ARGS...]: a diskswarm fetcher in the background (pid in $DS_BG_PID)
ds_fetcher() {
    local tag=$1 port=$2
    shift 2
    ix_blank_like "$SRC_IMG" "$DS_TMP/$tag.img"
    ds_bg_split "$DS_TMP/$tag.json" "$DS_TMP/$tag.err" timeout -k 5 "$IX_TIMEOUT" "$DISKSWARM" fetch "$T" \
        --to "$DS_TMP/$tag.img" --listen "127.0.0.1:$port" --json --seed-time 25 --verbose "$@"
}

check_ds_target() { # TAG
    ix_check_target "$SRC_IMG" "$DS_TMP/$1.img" "$EXTENTS"
    "$DISKSWARM" verify "$T" "$DS_TMP/$1.img" >/dev/null 2>&1 || fail "diskswarm verify $1"
}

plain_clients_fetch() {
    local sport p1 p2 lport aport seed f1 f2 lt rc=0
    sport=$(free_port); p1=$(free_port); p2=$(free_port); lport=$(free_port); aport=$(free_port)
    ds_bg_split "$DS_TMP/seed.json" "$DS_TMP/seed.err" timeout -k 5 $((IX_TIMEOUT + 30)) "$DISKSWARM" seed "$T" \
        --from "$CAP" --listen "127.0.0.1:$sport" --json --verbose
    seed=$DS_BG_PID
    ix_wait_listen "$sport" 20 "$seed" || fail "diskswarm seed did not start"
    ds_fetcher f1 "$p1" --peer "127.0.0.1:$sport"; f1=$DS_BG_PID
    ds_fetcher f2 "$p2" --peer "127.0.0.1:$sport" --peer "127.0.0.1:$p1"; f2=$DS_BG_PID
    ds_bg "$DS_TMP/lt.log" timeout -k 5 "$IX_TIMEOUT" "$DS_PY" "$IX_LT_PEER" download "$T" --save "$DS_TMP/lt_dl" \
        --listen "$lport" --peer "127.0.0.1:$sport" --peer "127.0.0.1:$p1" --peer "127.0.0.1:$p2" \
        --timeout $((IX_TIMEOUT - 10))
    lt=$DS_BG_PID
    ix_check "aria2c downloads from the compressing swarm (through the tracker)"
    timeout -k 5 "$IX_TIMEOUT" aria2c "${ARIA_COMMON[@]}" --seed-time=0 --dir="$DS_TMP/aria_dl" \
        --listen-port="$aport" --bt-stop-timeout=60 "$T" >"$DS_TMP/aria_dl.log" 2>&1 || rc=$?
    ((rc == 0)) || { ix_show_log "$DS_TMP/aria_dl.log"; fail "aria2c exited $rc"; }
    ix_cmp_ezio_dir "$SRC_IMG" "$EXTENTS" "$DS_TMP/aria_dl" sda1 || fail "aria2c's files differ"
    ix_check "libtorrent downloads from the diskswarm peers"
    rc=0; wait_for_exit "$lt" "$IX_TIMEOUT" || rc=$?
    ((rc == 0)) || { ix_show_log "$DS_TMP/lt.log"; fail "libtorrent exited $rc"; }
    ix_cmp_ezio_dir "$SRC_IMG" "$EXTENTS" "$DS_TMP/lt_dl" sda1 || fail "libtorrent's files differ"
    ix_check "the diskswarm fetchers complete, byte-exact, with compressed pieces"
    for t in f1 f2; do
        local pid=$f1
        [ "$t" = f2 ] && pid=$f2
        rc=0; wait_for_exit "$pid" "$IX_TIMEOUT" || rc=$?
        ((rc == 0)) || { ix_show_log "$DS_TMP/$t.err"; fail "diskswarm fetch $t exited $rc"; }
        check_ds_target "$t"
        local zd wd pd
        zd=$(jfield "$DS_TMP/$t.json" zpieces_down); wd=$(jfield "$DS_TMP/$t.json" wire_down)
        pd=$(jfield "$DS_TMP/$t.json" downloaded)
        ix_log "$t: $zd compressed pieces, $wd bytes on the wire for $pd bytes of pieces; uploaded $(jfield "$DS_TMP/$t.json" uploaded)"
        [ "${zd:-0}" -gt 0 ] && [ "$wd" -lt "$pd" ] || fail "$t received no compressed pieces"
    done
    kill_and_wait "$seed" 10 || true
    ix_log "seed: uploaded $(jfield "$DS_TMP/seed.json" uploaded) bytes of pieces, $(jfield "$DS_TMP/seed.json" wire_up) on the wire, $(jfield "$DS_TMP/seed.json" zpieces_up) compressed pieces"
    grep -q 'disconnected: .*compressed\|malformed ds_zpiece' "$DS_TMP"/*.err && fail "a peer was dropped over ds_zpiece"
    return 0
}

plain_clients_seed() {
    local aport lport p1 p2 aseed lseed f1 f2 rc
    aport=$(free_port); lport=$(free_port); p1=$(free_port); p2=$(free_port)
    ds_bg "$DS_TMP/aria_seed.log" timeout -k 5 $((IX_TIMEOUT + 30)) aria2c "${ARIA_COMMON[@]}" -V \
        --seed-ratio=0.0 --bt-seed-unverified=false --dir="$EZ" --listen-port="$aport" "$T"
    aseed=$DS_BG_PID
    ix_wait_log "$DS_TMP/aria_seed.log" 'Verification finished successfully' 30 "$aseed" || fail "aria2c did not verify"
    ix_wait_listen "$aport" 15 "$aseed" || fail "aria2c does not listen"
    ds_bg "$DS_TMP/lt_seed.log" timeout -k 5 $((IX_TIMEOUT + 30)) "$DS_PY" "$IX_LT_PEER" seed "$T" --save "$EZ" \
        --listen "$lport" --timeout "$IX_TIMEOUT"
    lseed=$DS_BG_PID
    ix_wait_log "$DS_TMP/lt_seed.log" '^READY' 60 "$lseed" || { ix_show_log "$DS_TMP/lt_seed.log"; fail "libtorrent seed not ready"; }
    ix_check "two compressing diskswarm fetchers download from aria2c, libtorrent and each other"
    ds_fetcher g1 "$p1" --peer "127.0.0.1:$lport" --peer "127.0.0.1:$aport"; f1=$DS_BG_PID
    ds_fetcher g2 "$p2" --peer "127.0.0.1:$lport" --peer "127.0.0.1:$aport" --peer "127.0.0.1:$p1"; f2=$DS_BG_PID
    for t in g1 g2; do
        local pid=$f1
        [ "$t" = g2 ] && pid=$f2
        rc=0; wait_for_exit "$pid" "$IX_TIMEOUT" || rc=$?
        ((rc == 0)) || { ix_show_log "$DS_TMP/$t.err"; fail "diskswarm fetch $t exited $rc"; }
        check_ds_target "$t"
        ix_log "$t: $(jfield "$DS_TMP/$t.json" zpieces_down) compressed pieces (from the other diskswarm fetcher), $(jfield "$DS_TMP/$t.json" wire_down) bytes on the wire for $(jfield "$DS_TMP/$t.json" downloaded)"
    done
    grep -qi 'connected to 127.0.0.1:'"$aport"'\|127.0.0.1:'"$aport" "$DS_TMP/g1.err" "$DS_TMP/g2.err" ||
        ix_log "note: no log line names aria2c's port"
    kill_and_wait "$aseed" 10 || true
    kill_and_wait "$lseed" 10 || true
}

ix_case plain_clients_fetch plain_clients_fetch
ix_case plain_clients_seed plain_clients_seed
ds_finish
