#!/usr/bin/env bash
# timeout: 600
# asan: yes
# swarm_ext4.sh — the core end-to-end test: a real ext4 filesystem travels through a swarm on 127.0.0.1.
#
# A ~64 MiB ext4 with ~40 MiB of random files (fragmented by deletions) → its used extents (dumpe2fs) →
# `diskswarm make-torrent` with 1 MiB pieces → layout and piece hashes checked independently → one seeder and
# four fetchers into blank files → every fetcher exits 0, every target passes e2fsck and the file manifest and
# `diskswarm verify`; bytes outside the extents are left untouched; negative cases for mounted / too small
# targets and a corrupted target. Prints its own "N passed, N failed, N skipped".
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
ds_init

FS_MB=64
DATA_MB=40
PIECE=1048576
NAME=dstest
NFETCH=4
SWARM_LIMIT=${DS_SWARM_LIMIT:-240} # seconds for the whole swarm to finish

IMG=$DS_TMP/fs.img
EXT=$DS_TMP/extents.txt
TOR=$DS_TMP/fs.torrent
FS_BYTES=$((FS_MB * 1048576))

if [ ! -x "$DISKSWARM" ]; then
    echo "no binary at $DISKSWARM (build first)"
    exit 1
fi

echo "making ${FS_MB} MiB ext4 with ${DATA_MB} MiB of files"
make_ext4_image "$IMG" "$FS_MB" "$DATA_MB"
ext4_used_extents "$IMG" >"$EXT"
echo "$(wc -l <"$EXT") used extents, $(extents_total "$EXT") bytes, $(wc -l <"$IMG.manifest") files"

# start_seeder PORT [extra args]: a seeder on 127.0.0.1:PORT serving $IMG; sets SEED_PID.
start_seeder() {
    local port=$1
    shift
    ds_bg_split "$DS_TMP/seed.$port.out" "$DS_TMP/seed.$port.err" \
        "$DISKSWARM" seed "$TOR" --from "$IMG" --listen "127.0.0.1:$port" "$@"
    SEED_PID=$DS_BG_PID
    wait_port "$port" 20 || { cat "$DS_TMP/seed.$port.err" >&2; fail "seeder not listening on $port"; }
}

show_logs() { # FILES...: print the tail of each log to stderr
    local f
    for f in "$@"; do
        [ -s "$f" ] || continue
        ds_log "  --- $(basename "$f") (tail)"
        tail -n 15 "$f" | sed 's/^/    /' >&2
    done
}

# ---------------------------------------------------------------------------------------------------------
case_make_torrent() {
    "$DISKSWARM" make-torrent "$IMG" --extents "$EXT" -o "$TOR" --name "$NAME" --piece-size 1M
    [ -s "$TOR" ] || fail "no torrent written"
}

case_torrent_layout() {
    [ -s "$TOR" ] || fail "no torrent"
    dstool layout "$TOR" "$IMG" "$EXT" "$NAME" "$PIECE"
}

case_info() {
    [ -s "$TOR" ] || fail "no torrent"
    local out total npieces
    total=$(extents_total "$EXT")
    npieces=$(((total + PIECE - 1) / PIECE))
    out=$("$DISKSWARM" info "$TOR")
    printf '%s\n' "$out" | head -n 20 >&2
    grep -q "$NAME" <<<"$out" || fail "info does not show the name $NAME"
    grep -qw "$npieces" <<<"$out" || fail "info does not show the piece count $npieces"
    "$DISKSWARM" info "$TOR" --json >"$DS_TMP/info.json"
    dstool jsonhas "$DS_TMP/info.json" "$NAME" "$total" "$PIECE" "$npieces"
}

case_verify_source() {
    "$DISKSWARM" verify "$TOR" "$IMG"
}

case_swarm() {
    local seed_port ports=() pids=() i j args t0 t1 rc bad=0
    seed_port=$(free_port)
    for ((i = 0; i < NFETCH; i++)); do ports+=("$(free_port)"); done
    start_seeder "$seed_port" --expect "$NFETCH" --quiet
    t0=$(date +%s)
    for ((i = 0; i < NFETCH; i++)); do
        truncate -s "$FS_BYTES" "$DS_TMP/target$i.img"
        args=(--listen "127.0.0.1:${ports[i]}" --peer "127.0.0.1:$seed_port")
        for ((j = 0; j < NFETCH; j++)); do
            [ "$j" = "$i" ] || args+=(--peer "127.0.0.1:${ports[j]}")
        done
        ds_bg_split "$DS_TMP/fetch$i.out" "$DS_TMP/fetch$i.err" \
            "$DISKSWARM" fetch "$TOR" --to "$DS_TMP/target$i.img" "${args[@]}" --expect "$NFETCH" --json
        pids+=("$DS_BG_PID")
    done
    for ((i = 0; i < NFETCH; i++)); do
        rc=0
        wait_for_exit "${pids[i]}" $((SWARM_LIMIT - ($(date +%s) - t0))) || rc=$?
        t1=$(date +%s)
        if [ "$rc" = 0 ]; then
            ds_log "  fetcher $i exited 0 after $((t1 - t0))s"
        else
            ds_log "  fetcher $i: exit $rc after $((t1 - t0))s (124 = still running at the limit)"
            show_logs "$DS_TMP/fetch$i.err" "$DS_TMP/fetch$i.out"
            bad=1
        fi
    done
    rc=0
    wait_for_exit "$SEED_PID" 30 || rc=$?
    if [ "$rc" != 0 ]; then
        ds_log "  seeder with --expect $NFETCH: exit $rc (124 = did not stop by itself within 30 s of the fetchers)"
        show_logs "$DS_TMP/seed.$seed_port.err"
        bad=1
    fi
    [ "$bad" = 0 ] || fail "swarm did not finish cleanly"
    for ((i = 0; i < NFETCH; i++)); do
        local np
        np=$(dstool jsonlines "$DS_TMP/fetch$i.out") || fail "fetcher $i --json output"
        ds_log "  fetcher $i: $np progress lines, $(tail -n 1 "$DS_TMP/fetch$i.out" | cut -c1-200)"
        check_ext4_target "$DS_TMP/target$i.img" "$IMG.manifest" || fail "target $i: filesystem check"
        "$DISKSWARM" verify "$TOR" "$DS_TMP/target$i.img" >/dev/null || fail "target $i: diskswarm verify"
    done
    # a swarm, not a star: the fetchers must have served pieces to each other
    local up
    up=$(for ((i = 0; i < NFETCH; i++)); do tail -n 1 "$DS_TMP/fetch$i.out"; done |
        "$DS_PY" -c 'import json, sys; print(sum(int(json.loads(l).get("uploaded", 0)) for l in sys.stdin))')
    ds_log "  fetchers uploaded $up bytes to each other"
    ((up >= PIECE)) || fail "the fetchers uploaded $up bytes: they did not share pieces"
    ds_log "  $NFETCH fetchers done in $(($(date +%s) - t0))s; every target is a clean copy"
}

case_untouched_outside_extents() {
    local port t=$DS_TMP/pattern.img rc=0
    head -c "$FS_BYTES" /dev/zero | tr '\0' '\245' >"$t"
    port=$(free_port)
    start_seeder "$port" --quiet
    timeout 120 "$DISKSWARM" fetch "$TOR" --to "$t" --peer "127.0.0.1:$port" --quiet \
        >"$DS_TMP/pat.out" 2>"$DS_TMP/pat.err" || rc=$?
    [ "$rc" = 0 ] || { show_logs "$DS_TMP/pat.err"; fail "fetch exit $rc"; }
    kill_and_wait "$SEED_PID" 10 || fail "seeder did not exit 0 on SIGTERM"
    dstool outside "$t" "$IMG" "$EXT" 0xa5 "$FS_BYTES"
    check_ext4_target "$t" "$IMG.manifest"
}

case_fetch_creates_missing_file() {
    local port t=$DS_TMP/sub/new.img rc=0 last_end
    mkdir -p "$DS_TMP/sub"
    port=$(free_port)
    start_seeder "$port" --quiet
    timeout 120 "$DISKSWARM" fetch "$TOR" --to "$t" --peer "127.0.0.1:$port" --quiet \
        >/dev/null 2>"$DS_TMP/new.err" || rc=$?
    [ "$rc" = 0 ] || { show_logs "$DS_TMP/new.err"; fail "fetch exit $rc"; }
    kill_and_wait "$SEED_PID" 10 || true
    last_end=$(tail -n 1 "$EXT" | awk '{printf "%.0f", $1 + $2}')
    (($(stat -c %s "$t") >= last_end)) || fail "created file is $(stat -c %s "$t") bytes, last extent ends at $last_end"
    "$DISKSWARM" verify "$TOR" "$t" >/dev/null
}

case_fetch_to_mounted_device() {
    need_root
    local f=$DS_TMP/mounted.img loop mnt=$DS_TMP/mnt.mounted rc=0
    truncate -s "$FS_BYTES" "$f"
    mkfs.ext4 -q -F "$f"
    loop=$(ds_losetup "$f")
    ds_mount "$loop" "$mnt"
    timeout 60 "$DISKSWARM" fetch "$TOR" --to "$loop" --peer "127.0.0.1:1" --quiet >/dev/null 2>"$DS_TMP/m.err" || rc=$?
    ds_log "  exit $rc: $(head -c 300 "$DS_TMP/m.err")"
    [ "$rc" = 1 ] || fail "fetch to a mounted device exited $rc, expected 1"
    grep -qi mounted "$DS_TMP/m.err" || fail "message does not mention 'mounted'"
}

case_fetch_to_small_device() {
    need_root
    local f=$DS_TMP/small.img loop rc=0
    truncate -s $((FS_BYTES / 2)) "$f"
    loop=$(ds_losetup "$f")
    timeout 60 "$DISKSWARM" fetch "$TOR" --to "$loop" --peer "127.0.0.1:1" --quiet >/dev/null 2>"$DS_TMP/s.err" || rc=$?
    ds_log "  exit $rc: $(head -c 300 "$DS_TMP/s.err")"
    [ "$rc" = 1 ] || fail "fetch to a too-small device exited $rc, expected 1"
    grep -qiE 'size|small|bytes' "$DS_TMP/s.err" || fail "message does not mention the size"
    # nothing may have been written to it
    [ "$(head -c 1048576 "$f" | tr -d '\0' | wc -c)" = 0 ] || fail "the too-small device was written to"
}

case_verify_corrupted() {
    local c=$DS_TMP/corrupt.img rc=0 off
    cp --sparse=always "$IMG" "$c"
    # flip one byte in the middle of the last extent (file data, not metadata)
    off=$(tail -n 1 "$EXT" | awk '{printf "%.0f", $1 + int($2 / 2)}')
    dstool corrupt "$c" "$off"
    "$DISKSWARM" verify "$TOR" "$c" >"$DS_TMP/v.out" 2>&1 || rc=$?
    ds_log "  exit $rc: $(tail -n 3 "$DS_TMP/v.out" | head -c 300)"
    [ "$rc" = 1 ] || fail "verify of a corrupted image exited $rc, expected 1"
    rc=0
    truncate -s "$FS_BYTES" "$DS_TMP/blank.img"
    "$DISKSWARM" verify "$TOR" "$DS_TMP/blank.img" >/dev/null 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "verify of a blank image exited $rc, expected 1"
}

case_usage_errors() {
    local rc=0
    "$DISKSWARM" fetch >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "fetch without arguments exited $rc, expected 2"
    rc=0
    "$DISKSWARM" no-such-command >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "unknown command exited $rc, expected 2"
    rc=0
    "$DISKSWARM" verify "$DS_TMP/does-not-exist.torrent" "$IMG" >/dev/null 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "verify with a missing torrent exited $rc, expected 1"
}

ds_case make_torrent case_make_torrent
ds_case torrent_layout case_torrent_layout
ds_case info case_info
ds_case verify_source case_verify_source
ds_case swarm_1_seed_${NFETCH}_fetchers case_swarm
ds_case untouched_outside_extents case_untouched_outside_extents
ds_case fetch_creates_missing_file case_fetch_creates_missing_file
ds_case fetch_to_mounted_device case_fetch_to_mounted_device
ds_case fetch_to_small_device case_fetch_to_small_device
ds_case verify_corrupted case_verify_corrupted
ds_case usage_errors case_usage_errors
ds_finish
