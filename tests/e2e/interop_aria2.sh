#!/bin/bash
# timeout: 600
# Interop with aria2c, both directions, on a torrent in the Ezio/Clonezilla
# layout (info.name = device label, one file per extent named by its device
# offset in 32 hex digits).
#
#  aria2_seeds:    aria2c seeds the extent files (the Ezio directory layout);
#                  `diskswarm fetch` writes them onto a blank image at their
#                  offsets.
#  diskswarm_seeds: `diskswarm seed --from source.img` serves the image;
#                  aria2c (which cannot be given a peer address directly) finds
#                  it through a local opentracker and downloads the extent
#                  files, which must equal the image's extents.
#
# Exit 0 pass, 1 fail, 77 skip.  Only 127.0.0.1.
set -euo pipefail
# shellcheck disable=SC2034 # used by tests/lib/interop.sh
IX_NAME=interop_aria2
. "$(dirname "$0")/../lib/interop.sh"

ix_need_tools aria2c mkfs.ext4 e2fsck dumpe2fs debugfs cmp curl ss python3
ix_need_binary
ds_init

PIECE=${PIECE:-256K}     # small pieces: many pieces, many of them span several extent files
IX_TIMEOUT=${IX_TIMEOUT:-120}

ARIA_COMMON=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
             --disable-ipv6=true --file-allocation=none --summary-interval=0 --console-log-level=notice
             --check-certificate=false --bt-max-peers=10 --bt-request-peer-speed-limit=0)

ix_prepare_source 64 24 $((1024 * 1024))

aria2_seeds() {
    local t=$DS_TMP/a.torrent ez=$DS_TMP/ezio_a dst=$DS_TMP/target_a.img
    local aport fport seed rc=0 plen
    ix_check "diskswarm make-torrent writes an Ezio-layout v1 torrent"
    ix_ds make-torrent "$SRC_IMG" --extents "$EXTENTS" -o "$t" --name sda1 --piece-size "$PIECE" \
        || fail "make-torrent failed"
    plen=$(ix_check_ezio_torrent "$t" sda1 "$EXTENTS") || fail "torrent layout wrong"
    ix_log "torrent: $N_EXTENTS files, piece length $plen, info-hash $(ix_infohash "$t")"

    ix_build_ezio_dir "$SRC_IMG" "$EXTENTS" "$ez" sda1
    ix_check "piece hashes match the Ezio directory (independent SHA-1 check)"
    ix_verify_dir_against_torrent "$t" "$ez" >&2 || fail "torrent hashes do not match the extents"

    aport=$(free_port); fport=$(free_port)
    ds_bg "$DS_TMP/aria2_seed.log" timeout -k 5 $((IX_TIMEOUT + 60)) \
        aria2c "${ARIA_COMMON[@]}" -V --seed-ratio=0.0 --bt-seed-unverified=false \
        --dir="$ez" --listen-port="$aport" --log="$DS_TMP/aria2_seed.detail" --log-level=info "$t"
    seed=$DS_BG_PID
    ix_check "aria2c verifies the extent files and seeds them"
    ix_wait_log "$DS_TMP/aria2_seed.log" 'Verification finished successfully' 30 "$seed" \
        || { ix_show_log "$DS_TMP/aria2_seed.log"; fail "aria2c did not verify the Ezio directory"; }
    ix_wait_listen "$aport" 15 "$seed" || { ix_show_log "$DS_TMP/aria2_seed.log"; fail "aria2c does not listen"; }

    ix_blank_like "$SRC_IMG" "$dst"
    ix_check "diskswarm fetch from aria2c (127.0.0.1:$aport) onto a blank image exits 0"
    ix_ds fetch "$t" --to "$dst" --peer "127.0.0.1:$aport" --listen "127.0.0.1:$fport" --no-tracker --verbose \
        >"$DS_TMP/fetch_a.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        ix_show_log "$DS_TMP/fetch_a.log" 40
        ix_show_log "$DS_TMP/aria2_seed.log"
        fail "diskswarm fetch exited $rc"
    fi
    ix_check_target "$SRC_IMG" "$dst" "$EXTENTS"
    ix_check "diskswarm verify agrees"
    ix_ds verify "$t" "$dst" >"$DS_TMP/verify_a.log" 2>&1 || { ix_show_log "$DS_TMP/verify_a.log"; fail "diskswarm verify failed"; }
    kill_and_wait "$seed" 10 || true
}

diskswarm_seeds() {
    ix_need_tools opentracker
    local t=$DS_TMP/b.torrent dl=$DS_TMP/aria2_dl tport sport aport seed ih n rc=0 plen
    tport=$(free_port); sport=$(free_port); aport=$(free_port)
    ix_check "make-torrent --tracker: torrent announces to a local opentracker"
    ix_ds make-torrent "$SRC_IMG" --extents "$EXTENTS" -o "$t" --name sda1 --piece-size "$PIECE" \
        --tracker "http://127.0.0.1:$tport/announce" || fail "make-torrent failed"
    plen=$(ix_check_ezio_torrent "$t" sda1 "$EXTENTS") || fail "torrent layout wrong"
    ih=$(ix_infohash "$t")
    ix_start_opentracker "$tport" "$ih"

    ix_check "diskswarm seed --from the source image starts and announces itself"
    ds_bg "$DS_TMP/seed_b.log" timeout -k 5 $((IX_TIMEOUT + 60)) \
        "$DISKSWARM" seed "$t" --from "$SRC_IMG" --listen "127.0.0.1:$sport" --verbose
    seed=$DS_BG_PID
    ix_wait_listen "$sport" 30 "$seed" || { ix_show_log "$DS_TMP/seed_b.log"; fail "diskswarm seed does not listen on $sport"; }
    local deadline=$((SECONDS + 15)) announced=0
    while ((SECONDS < deadline)); do
        n=$(ix_tracker_seeders "$tport" "$ih")
        if ((n >= 1)); then announced=1; break; fi
        kill -0 "$seed" 2>/dev/null || break
        sleep 0.3
    done
    if ((!announced)); then
        # go on (the wire protocol is what this test is about) but fail at the end
        ix_log "ERROR: diskswarm seed did not announce to http://127.0.0.1:$tport/announce within 15 s;"
        ix_log "       announcing 127.0.0.1:$sport on its behalf to test the peer wire protocol anyway"
        ix_tracker_announce "$tport" "$ih" "$sport" 0
    fi

    ix_check "aria2c downloads everything from diskswarm seed"
    timeout -k 5 "$IX_TIMEOUT" aria2c "${ARIA_COMMON[@]}" --seed-time=0 --dir="$dl" \
        --listen-port="$aport" --bt-stop-timeout=30 \
        --log="$DS_TMP/aria2_dl.detail" --log-level=info "$t" >"$DS_TMP/aria2_dl.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        ix_show_log "$DS_TMP/aria2_dl.log" 30
        grep -E 'ERROR|WARN|Dropping|drop|close' "$DS_TMP/aria2_dl.detail" | tail -20 | sed 's/^/    | /' >&2 || true
        ix_show_log "$DS_TMP/seed_b.log" 30
        ix_log "diskswarm seed's reasons for dropping peers:"
        grep -o 'disconnected: .*' "$DS_TMP/seed_b.log" | sort | uniq -c | sed 's/^/    | /' >&2 || true
        fail "aria2c exited $rc"
    fi
    ix_check "aria2c's files equal the image's extents (name = hex offset, size, bytes)"
    ix_cmp_ezio_dir "$SRC_IMG" "$EXTENTS" "$dl" sda1 || fail "downloaded files differ"

    ix_check "diskswarm seed exits 0 on SIGTERM"
    rc=0; kill_and_wait "$seed" 10 || rc=$?
    ((rc == 0)) || { ix_show_log "$DS_TMP/seed_b.log"; fail "diskswarm seed exited $rc after SIGTERM"; }
    ((announced)) || fail "diskswarm seed never announced to the tracker (data transfer itself worked)"
}

ix_case aria2c-seeds-diskswarm-fetches aria2_seeds
ix_case diskswarm-seeds-aria2c-fetches diskswarm_seeds
ds_finish
