# shellcheck shell=bash
# tests/lib/image.sh — helpers for the image-file and import e2e scripts (source after common.sh).
#
#   img_make_ext4 IMG SIZE_MB DATA_MB   ext4 made with mkfs.ext4 -d (no root needed): half random files
#                                       (ds_populate), half compressible text; IMG.manifest = sha256 of every file
#   img_seed_fetch TORRENT FROM TARGET SIZE [SEED_ARGS...]
#                                       seed TORRENT --from FROM (with --verify) and fetch it into a blank file TARGET
#                                       of SIZE bytes over 127.0.0.1; prints "SECONDS" of the fetch on stdout
#   img_extract DISK OFFSET LENGTH OUT  copy a byte range of DISK into OUT

img_make_ext4() {
    local img=$1 size_mb=$2 data_mb=$3 stage i
    stage=$(mktemp -d "$DS_TMP/stage.XXXXXX")
    ds_populate "$stage/rnd" $((data_mb / 2)) || return 1
    mkdir -p "$stage/text"
    for ((i = 0; i < data_mb / 2; i++)); do
        seq $((i * 20000)) $((i * 20000 + 19999)) | sed 's/$/ the quick brown fox jumps over the lazy dog/' \
            >"$stage/text/t$i.txt"   # about 1 MiB
    done
    ds_manifest "$stage" >"$img.manifest" || return 1
    rm -f "$img"
    truncate -s "${size_mb}M" "$img"
    mkfs.ext4 -q -F -L dsimg -d "$stage" "$img" || return 1
    rm -rf "$stage"
    e2fsck -fn "$img" >/dev/null 2>&1 || { ds_log "img_make_ext4: fresh fs not clean"; return 1; }
}

img_seed_fetch() {
    local tor=$1 from=$2 target=$3 size=$4 port rc=0 t0 t1 seed_pid fetch_pid
    shift 4
    port=$(free_port)
    ds_bg_split "$target.seed.out" "$target.seed.err" \
        "$DISKSWARM" seed "$tor" --from "$from" --verify --listen "127.0.0.1:$port" --expect 1 --no-tracker --quiet "$@"
    seed_pid=$DS_BG_PID
    wait_port "$port" 60 || { cat "$target.seed.err" >&2; ds_log "seeder not listening"; return 1; }
    rm -f "$target"
    truncate -s "$size" "$target"
    t0=$(date +%s%N)
    ds_bg_split "$target.out" "$target.err" "$DISKSWARM" fetch "$tor" --to "$target" --listen 127.0.0.1:0 \
        --peer "127.0.0.1:$port" --expect 1 --no-tracker --quiet
    fetch_pid=$DS_BG_PID
    wait_for_exit "$fetch_pid" 180 || rc=$?
    t1=$(date +%s%N)
    if [ "$rc" != 0 ]; then
        ds_log "  fetch exit $rc"
        tail -n 5 "$target.err" "$target.seed.err" >&2
        return 1
    fi
    rc=0
    wait_for_exit "$seed_pid" 30 || rc=$?
    [ "$rc" = 0 ] || { ds_log "  seeder exit $rc"; tail -n 5 "$target.seed.err" >&2; return 1; }
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}

img_extract() {
    dd if="$1" of="$4" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none
}
