#!/usr/bin/env bash
# timeout: 600
# asan: yes
# wire_compress.sh — compressed pieces between diskswarm peers (ds_zpiece). An OS-like ext4 image (files from
# /usr, zero runs: tests/lib/osimage.sh) captured with --compress zstd; over 127.0.0.1:
#   from_image:   seed --from the image directory, three fetchers (--expect 3): every target e2fsck-clean with
#                 every file's sha256 equal and `verify` OK; the fetchers' bytes on the wire ("wire_down" of
#                 fetch --json) well below the raw bytes, the seeder sent the stored frames ("zfrom_image") and
#                 the fetchers forwarded frames from their caches ("zfrom_cache"); the seeder's wire bytes are
#                 cross-checked with the kernel's count for its socket (ss bytes_acked).
#   on_the_fly:   seed --from the raw image file: pieces compressed at level 1 as they are sent.
#   opt_out:      fetch --no-wire-compress: plain pieces only (wire bytes = raw bytes), same result.
#   random_plain: an image of random files: pieces do not compress, so they go plain, never larger.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/osimage.sh"
ds_init

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }

jfield() { # FILE FIELD: the field of the last "done" line
    "$DS_PY" -c 'import json,sys
v = None
for l in open(sys.argv[1]):
    l = l.strip()
    if l.startswith("{"):
        e = json.loads(l)
        if e.get("type") == "done":
            v = e.get(sys.argv[2])
print(v if v is not None else "")' "$1" "$2"
}

OS=$DS_TMP/os.img
make_os_image "$OS" 128 56 || { echo "make_os_image failed"; exit 1; }
"$DISKSWARM" capture "$OS" -o "$DS_TMP/cap" --name sda1 --compress zstd --piece-size 256K --quiet >/dev/null ||
    { echo "capture failed"; exit 1; }
T=$DS_TMP/cap/sda1.torrent
USED=$("$DS_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["torrents"][0]["bytes"])' "$DS_TMP/cap/manifest.json")
ZB=$(stat -c %s "$DS_TMP/cap/sda1.dsimg")
ds_log "  OS-like image: $USED bytes used, .dsimg $ZB bytes (ratio $(awk -v a="$ZB" -v b="$USED" 'BEGIN{printf "%.3f", a/b}'))"

# swarm FROM NFETCH TAG [FETCH_ARGS...]: seed --from FROM, NFETCH fetchers; logs in $DS_TMP/TAG-*
swarm() {
    local from=$1 nf=$2 tag=$3 sport i pids=() rc
    shift 3
    sport=$(free_port)
    ds_bg_split "$DS_TMP/$tag-seed.json" "$DS_TMP/$tag-seed.err" "$DISKSWARM" seed "$T" --from "$from" \
        --listen "127.0.0.1:$sport" --no-tracker --json --expect "$nf" --seed-time 120
    local seed=$DS_BG_PID
    wait_port "$sport" 20 || fail "seeder did not start"
    for ((i = 1; i <= nf; i++)); do
        truncate -s 128M "$DS_TMP/$tag-t$i.img"
        ds_bg_split "$DS_TMP/$tag-f$i.json" "$DS_TMP/$tag-f$i.err" "$DISKSWARM" fetch "$T" --to "$DS_TMP/$tag-t$i.img" \
            --listen "127.0.0.1:$(free_port)" --peer "127.0.0.1:$sport" --no-tracker --json --expect "$nf" \
            --seed-time 60 "$@"
        pids+=("$DS_BG_PID")
        sleep 0.2
    done
    # the seeder's socket counters while the swarm runs (bytes the kernel had acked, summed over its peers)
    : >"$DS_TMP/$tag-ss.txt"
    for ((i = 0; i < 600; i++)); do
        kill -0 "$seed" 2>/dev/null || break
        ss -Htin "sport = :$sport" 2>/dev/null | grep -o 'bytes_acked:[0-9]*' | cut -d: -f2 |
            awk '{ s += $1 } END { print s + 0 }' >>"$DS_TMP/$tag-ss.txt" || true
        sleep 0.2
    done
    for p in "${pids[@]}"; do
        rc=0
        wait_for_exit "$p" 120 || rc=$?
        [ "$rc" = 0 ] || { tail -5 "$DS_TMP/$tag-f"*.err >&2; fail "a fetcher exited $rc"; }
    done
    wait_for_exit "$seed" 30 || true
    for ((i = 1; i <= nf; i++)); do
        "$DISKSWARM" verify "$T" "$DS_TMP/$tag-t$i.img" >/dev/null || fail "verify $tag-t$i"
        check_ext4_target "$DS_TMP/$tag-t$i.img" "$OS.manifest" || fail "target $tag-t$i"
    done
}

sum_field() { # TAG N FIELD
    local s=0 i v
    for ((i = 1; i <= $2; i++)); do
        v=$(jfield "$DS_TMP/$1-f$i.json" "$3")
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

case_from_image() {
    swarm "$DS_TMP/cap" 3 img
    local wd pd zd fc fi wu ssmax
    wd=$(sum_field img 3 wire_down); pd=$(sum_field img 3 downloaded); zd=$(sum_field img 3 zpieces_down)
    fc=$(sum_field img 3 zfrom_cache)
    fi=$(jfield "$DS_TMP/img-seed.json" zfrom_image); wu=$(jfield "$DS_TMP/img-seed.json" wire_up)
    ssmax=$(sort -n "$DS_TMP/img-ss.txt" | tail -1)
    ds_log "  from_image: fetchers got $pd bytes of pieces with $wd bytes on the wire ($(awk -v a="$wd" -v b="$pd" 'BEGIN{printf "%.3f", a/b}')), $zd compressed pieces, $fc forwarded from caches; seeder: $fi frames from the image, wire_up $wu, kernel acked ≥ ${ssmax:-?}"
    # every byte at least once; endgame may fetch a few blocks twice (a cancel racing the data), never much
    ((pd >= 3 * USED && pd <= 3 * USED + 3 * USED / 100)) ||
        fail "downloaded $pd, expected $((3 * USED)) (+ at most 1 % endgame duplicates)"
    [ "$wd" -lt $((pd * 7 / 10)) ] || fail "wire bytes $wd not well below the raw $pd"
    [ "$zd" -gt 0 ] && [ "${fi:-0}" -gt 0 ] || fail "no compressed pieces ($zd down, $fi from the image)"
    [ "$fc" -gt 0 ] || fail "no frame forwarded from a cache"
    # the kernel agrees that the seeder's socket carried about what it says (protocol overhead on top)
    if [ -n "$ssmax" ] && [ "$ssmax" -gt 0 ]; then
        [ "$ssmax" -lt $((USED * 3)) ] || fail "the seeder's sockets carried $ssmax bytes: not compressed?"
    fi
}

case_on_the_fly() {
    swarm "$OS" 2 fly
    local wd pd zc
    wd=$(sum_field fly 2 wire_down); pd=$(sum_field fly 2 downloaded)
    zc=$(jfield "$DS_TMP/fly-seed.json" zcompressed)
    ds_log "  on_the_fly: $pd raw bytes with $wd on the wire; the seeder compressed $zc pieces at level 1 in $(jfield "$DS_TMP/fly-seed.json" zcomp_cpu_s) CPU-s"
    [ "$wd" -lt $((pd * 7 / 10)) ] || fail "wire bytes $wd not well below the raw $pd"
    [ "${zc:-0}" -gt 0 ] || fail "the seeder compressed nothing on the fly"
}

case_opt_out() {
    swarm "$DS_TMP/cap" 1 plain --no-wire-compress
    local wd pd zd
    wd=$(sum_field plain 1 wire_down); pd=$(sum_field plain 1 downloaded); zd=$(sum_field plain 1 zpieces_down)
    [ "$wd" = "$pd" ] && [ "$zd" = 0 ] || fail "--no-wire-compress still got compressed pieces ($zd, $wd/$pd)"
}

case_random_plain() {
    local R=$DS_TMP/rnd.img
    make_ext4_image "$R" 64 24 >/dev/null || fail "make_ext4_image"
    "$DISKSWARM" capture "$R" -o "$DS_TMP/rcap" --name sda1 --piece-size 256K --quiet >/dev/null || fail "capture"
    local rt=$DS_TMP/rcap/sda1.torrent sport
    sport=$(free_port)
    ds_bg_split "$DS_TMP/rnd-seed.json" "$DS_TMP/rnd-seed.err" "$DISKSWARM" seed "$rt" --from "$R" \
        --listen "127.0.0.1:$sport" --no-tracker --json --expect 1 --seed-time 60
    wait_port "$sport" 20 || fail "seeder did not start"
    truncate -s 64M "$DS_TMP/rnd-t.img"
    "$DISKSWARM" fetch "$rt" --to "$DS_TMP/rnd-t.img" --peer "127.0.0.1:$sport" --no-tracker --json \
        >"$DS_TMP/rnd-f.json" 2>"$DS_TMP/rnd-f.err" || fail "fetch"
    check_ext4_target "$DS_TMP/rnd-t.img" "$R.manifest" || fail "target"
    local wd pd pa
    wd=$(jfield "$DS_TMP/rnd-f.json" wire_down); pd=$(jfield "$DS_TMP/rnd-f.json" downloaded)
    wait_for_exit "$DS_BG_PID" 30 || true
    pa=$(jfield "$DS_TMP/rnd-seed.json" zplain_answers)
    ds_log "  random_plain: $pd raw bytes, $wd on the wire, $pa pieces answered 'plain'"
    [ "$wd" -le "$pd" ] || fail "compressed transfer expanded the data ($wd > $pd)"
}

ds_case from_image case_from_image
ds_case on_the_fly case_on_the_fly
ds_case opt_out case_opt_out
ds_case random_plain case_random_plain
ds_finish
