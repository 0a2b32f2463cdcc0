#!/bin/bash
# timeout: 600
# Interop with libtorrent-rasterbar 2.0 (Debian's python3-libtorrent, driven by
# tests/lib/lt_peer.py) on an Ezio/Clonezilla-layout torrent.
#
#  diskswarm_seeds:  `diskswarm seed --from source.img`; libtorrent downloads
#                    (it checks every piece's SHA-1) into the Ezio directory
#                    layout; the files must equal the image's extents.
#  libtorrent_seeds: libtorrent seeds the Ezio directory with a torrent that
#                    libtorrent itself made; `diskswarm fetch` writes it onto a
#                    blank image; extents, e2fsck and file hashes are checked.
#  relay:            libtorrent seed -> diskswarm fetch --seed-time -> a second
#                    libtorrent that can only reach the fetcher: the fetcher
#                    must serve the pieces it wrote, read back from its target.
#
# Exit 0 pass, 1 fail, 77 skip.  Only 127.0.0.1 (TCP; uTP, DHT, LSD off).
set -euo pipefail
# shellcheck disable=SC2034 # used by tests/lib/interop.sh
IX_NAME=interop_libtorrent
. "$(dirname "$0")/../lib/interop.sh"

ix_need_tools mkfs.ext4 e2fsck dumpe2fs debugfs cmp ss python3
ix_need_lt
ix_need_binary
ds_init

PIECE=${PIECE:-256K}
IX_TIMEOUT=${IX_TIMEOUT:-120}

ix_prepare_source 64 24 $((1024 * 1024))

# A torrent from diskswarm and one from libtorrent over the same extents.
DS_T=$DS_TMP/ds.torrent
LT_T=$DS_TMP/lt.torrent
EZ=$DS_TMP/ezio
ix_build_ezio_dir "$SRC_IMG" "$EXTENTS" "$EZ" sda1

cli_size_bytes() {
    local s=$1
    case $s in
    *[kK]) echo $(( ${s%?} * 1024 )) ;;
    *[mM]) echo $(( ${s%?} * 1024 * 1024 )) ;;
    *) echo "$s" ;;
    esac
}

ix_log "libtorrent makes a v1 torrent over the Ezio directory (piece $PIECE)"
ix_lt make "$EZ" sda1 "$LT_T" --piece-size "$(cli_size_bytes "$PIECE")" || fail "libtorrent could not make a torrent"
ix_check_ezio_torrent "$LT_T" sda1 "$EXTENTS" >/dev/null || fail "libtorrent's torrent layout unexpected"

torrents() {
    ix_check "diskswarm make-torrent output parses in libtorrent with the same files"
    ix_ds make-torrent "$SRC_IMG" --extents "$EXTENTS" -o "$DS_T" --name sda1 --piece-size "$PIECE" \
        || fail "make-torrent failed"
    ix_check_ezio_torrent "$DS_T" sda1 "$EXTENTS" >/dev/null || fail "torrent layout wrong"
    ix_lt files "$DS_T" > "$DS_TMP/ds.files" || fail "libtorrent cannot load diskswarm's torrent"
    awk -v n=sda1 '{printf "%s/%032x %d\n", n, $1, $2}' "$EXTENTS" > "$DS_TMP/want.files"
    diff <(grep '^sda1/' "$DS_TMP/ds.files") "$DS_TMP/want.files" >&2 || fail "libtorrent sees other files"

    ix_check "info-hash compared with libtorrent's torrent over the same directory"
    local a b
    a=$(ix_infohash "$DS_T"); b=$(ix_infohash "$LT_T")
    if [[ "$a" == "$b" ]]; then
        ix_log "diskswarm and libtorrent produce the same info-hash $a"
    else
        ix_log "note: info-hashes differ (diskswarm $a, libtorrent $b): info dicts differ in optional keys"
    fi
}


diskswarm_seeds() {
    [[ -s "$DS_T" ]] || skip "no torrent from diskswarm"
    local sport lport seed rc=0 dl=$DS_TMP/lt_dl
    sport=$(free_port); lport=$(free_port)
    ix_check "diskswarm seed --from the source image listens"
    ds_bg "$DS_TMP/seed_a.log" timeout -k 5 $((IX_TIMEOUT + 60)) \
        "$DISKSWARM" seed "$DS_T" --from "$SRC_IMG" --listen "127.0.0.1:$sport" --verbose
    seed=$DS_BG_PID
    ix_wait_listen "$sport" 30 "$seed" || { ix_show_log "$DS_TMP/seed_a.log"; fail "diskswarm seed does not listen"; }
    ix_check "libtorrent downloads every piece from diskswarm seed"
    timeout -k 5 $((IX_TIMEOUT + 10)) "$DS_PY" "$IX_LT_PEER" download "$DS_T" --save "$dl" \
        --listen "$lport" --peer "127.0.0.1:$sport" --timeout "$IX_TIMEOUT" 2>"$DS_TMP/lt_dl.log" || rc=$?
    sed 's/^/    | /' "$DS_TMP/lt_dl.log" | tail -8 >&2
    if ((rc != 0)); then
        ix_show_log "$DS_TMP/seed_a.log" 30
        fail "libtorrent download exited $rc"
    fi
    ix_check "libtorrent's files equal the image's extents"
    ix_cmp_ezio_dir "$SRC_IMG" "$EXTENTS" "$dl" sda1 || fail "downloaded files differ"
    ix_check "diskswarm seed exits 0 on SIGTERM"
    rc=0; kill_and_wait "$seed" 10 || rc=$?
    ((rc == 0)) || { ix_show_log "$DS_TMP/seed_a.log"; fail "diskswarm seed exited $rc after SIGTERM"; }
}

# start_lt_seed TORRENT: libtorrent seeding the Ezio directory; sets LT_SEED_PORT, LT_SEED_PID.
start_lt_seed() {
    LT_SEED_PORT=$(free_port)
    ds_bg "$DS_TMP/lt_seed.log" timeout -k 5 $((IX_TIMEOUT + 120)) \
        "$DS_PY" "$IX_LT_PEER" seed "$1" --save "$EZ" --listen "$LT_SEED_PORT" --timeout $((IX_TIMEOUT + 100))
    LT_SEED_PID=$DS_BG_PID
    ix_wait_log "$DS_TMP/lt_seed.log" '^READY' 60 "$LT_SEED_PID" \
        || { ix_show_log "$DS_TMP/lt_seed.log"; fail "libtorrent did not become a seed"; }
}

libtorrent_seeds() {
    [[ -s "$LT_T" ]] || skip "no torrent from libtorrent"
    local dst=$DS_TMP/target_b.img fport rc=0
    ix_check "libtorrent seeds the Ezio directory (its own torrent)"
    start_lt_seed "$LT_T"
    fport=$(free_port)
    ix_blank_like "$SRC_IMG" "$dst"
    ix_check "diskswarm fetch (libtorrent's torrent) from libtorrent onto a blank image exits 0"
    ix_ds fetch "$LT_T" --to "$dst" --peer "127.0.0.1:$LT_SEED_PORT" --listen "127.0.0.1:$fport" --no-tracker --verbose \
        >"$DS_TMP/fetch_b.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        ix_show_log "$DS_TMP/fetch_b.log" 40
        ix_show_log "$DS_TMP/lt_seed.log"
        fail "diskswarm fetch exited $rc"
    fi
    ix_check_target "$SRC_IMG" "$dst" "$EXTENTS"
    ix_check "diskswarm verify agrees"
    ix_ds verify "$LT_T" "$dst" >"$DS_TMP/verify_b.log" 2>&1 || { ix_show_log "$DS_TMP/verify_b.log"; fail "diskswarm verify failed"; }
    kill_and_wait "$LT_SEED_PID" 10 || true
}

relay() {
    [[ -s "$LT_T" ]] || skip "no torrent from libtorrent"
    local dst=$DS_TMP/target_c.img fport lport fetch rc=0 dl=$DS_TMP/lt_relay_dl
    start_lt_seed "$LT_T"
    fport=$(free_port); lport=$(free_port)
    ix_blank_like "$SRC_IMG" "$dst"
    ix_check "diskswarm fetch --seed-time 120 from libtorrent"
    ds_bg "$DS_TMP/fetch_c.log" timeout -k 5 $((IX_TIMEOUT + 120)) \
        "$DISKSWARM" fetch "$LT_T" --to "$dst" --peer "127.0.0.1:$LT_SEED_PORT" --listen "127.0.0.1:$fport" \
        --no-tracker --seed-time 120 --verbose
    fetch=$DS_BG_PID
    ix_wait_listen "$fport" 30 "$fetch" || { ix_show_log "$DS_TMP/fetch_c.log"; fail "diskswarm fetch does not listen on $fport"; }
    # let the fetcher finish first so the second libtorrent cannot get pieces elsewhere anyway
    ix_check "a second libtorrent, connected only to the fetcher, gets every piece from it"
    timeout -k 5 $((IX_TIMEOUT + 10)) "$DS_PY" "$IX_LT_PEER" download "$LT_T" --save "$dl" \
        --listen "$lport" --peer "127.0.0.1:$fport" --timeout "$IX_TIMEOUT" 2>"$DS_TMP/lt_relay.log" || rc=$?
    sed 's/^/    | /' "$DS_TMP/lt_relay.log" | tail -5 >&2
    if ((rc != 0)); then
        ix_show_log "$DS_TMP/fetch_c.log" 30
        fail "libtorrent download from the fetcher exited $rc"
    fi
    ix_cmp_ezio_dir "$SRC_IMG" "$EXTENTS" "$dl" sda1 || fail "files relayed by the fetcher differ"
    ix_check "the fetcher, still seeding, exits 0 on SIGTERM"
    rc=0; kill_and_wait "$fetch" 10 || rc=$?
    if ((rc != 0)); then
        ix_show_log "$DS_TMP/fetch_c.log" 30
        fail "diskswarm fetch exited $rc after SIGTERM in its seeding phase"
    fi
    ix_check_target "$SRC_IMG" "$dst" "$EXTENTS"
}

ix_case torrents torrents
ix_case diskswarm-seeds-libtorrent-fetches diskswarm_seeds
ix_case libtorrent-seeds-diskswarm-fetches libtorrent_seeds
ix_case libtorrent-diskswarm-libtorrent-relay relay
ds_finish
