#!/usr/bin/env bash
# timeout: 600
# capture_ext4.sh — `diskswarm capture` on real ext4 filesystems (4 KiB blocks, 1 KiB blocks, bigalloc):
# the captured extent set is compared with partclone.ext4's torrent.info (must be equal or a superset) and with
# the block bitmaps as dumpe2fs prints them; then the torrent is seeded from the source and fetched by two
# peers into blank files, which must be e2fsck-clean with every file's sha256 equal. Also: the raw fallback for
# an unknown filesystem (said clearly, recorded in the manifest, zero skipping), refusing a mounted read-write
# filesystem, the same info-hash for any number of hashing threads, and usage errors.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/capture.sh"
ds_init

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }
FS_MB=96
DATA_MB=40

# case_variant NAME MKFS_OPTS...
case_variant() {
    cap_case_init
    local v=$1 img=$DS_TMP/$1.img out=$DS_TMP/out-$1 i
    shift
    cap_make_ext4 "$img" "$FS_MB" "$DATA_MB" "$@"
    "$DISKSWARM" capture "$img" -o "$out" --name "$v" --piece-size 1M --json >"$out.json" 2>"$out.err" ||
        { cat "$out.err" >&2; fail "capture failed"; }
    [ -s "$out/$v.torrent" ] || fail "no torrent"
    grep -q '"type":"done"' "$out.json" || fail "no done line in --json output"
    cap_torrent_extents "$out/$v.torrent" >"$out.ours"
    # reference 1: the block bitmaps (dumpe2fs), bigalloc-aware
    cap_dumpe2fs_used "$img" >"$out.bitmap"
    cap_covers "$out.ours" "$out.bitmap" "$v vs block bitmaps"
    # reference 2: partclone.ext4 (0.3.23 cannot read bigalloc bitmaps: "bitmap error at 0 group")
    if cap_partclone_extents ext4 "$img" "$DS_TMP/pc-$v" >"$out.pc"; then
        cap_covers "$out.ours" "$out.pc" "$v vs partclone.ext4"
    elif [ "$v" = bigalloc ]; then
        ds_log "  partclone.ext4 cannot capture bigalloc; compared with the block bitmaps only"
    else
        fail "partclone.ext4 failed"
    fi
    "$DS_PY" - "$out/manifest.json" "$v" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["format"] == "diskswarm-manifest" and m["version"] == 1, m
assert m["kind"] == "partition" and m["mode"] == "single", m
p = m["partitions"][0]
assert p["fstype"] == "ext4" and p["scanner"] == "ext" and not p["raw_fallback"], p
t = m["torrents"][0]
assert t["file"] == sys.argv[2] + ".torrent" and t["bytes"] == p["used_bytes"], (t, p)
PY
    "$DISKSWARM" verify "$out/$v.torrent" "$img" >/dev/null || fail "verify against the source"
    cap_seed_fetch "$out/$v.torrent" "$img" 2 "$((FS_MB * 1048576))" "$DS_TMP/t-$v-" || fail "swarm"
    for i in 0 1; do
        check_ext4_target "$DS_TMP/t-$v-$i.img" "$img.manifest" || fail "target $i"
    done
    rm -f "$DS_TMP"/t-"$v"-*.img "$img"
}

case_raw_fallback() {
    cap_case_init
    local img=$DS_TMP/unknown.img out=$DS_TMP/out-raw
    truncate -s 8M "$img"
    head -c 1M /dev/urandom | dd of="$img" bs=1M seek=3 conv=notrunc status=none
    "$DISKSWARM" capture "$img" -o "$out" --piece-size 64K >/dev/null 2>"$out.err" || { cat "$out.err" >&2; fail "capture"; }
    grep -qi "not recognised" "$out.err" || fail "the raw fallback is not announced: $(cat "$out.err")"
    "$DS_PY" -c 'import json,sys; p=json.load(open(sys.argv[1]))["partitions"][0]
assert p["raw_fallback"] and p["fstype"] == "raw" and p["used_bytes"] == 8 << 20, p' "$out/manifest.json"
    "$DISKSWARM" capture "$img" -o "$out-z" --skip-zero --piece-size 64K >/dev/null 2>&1 || fail "capture --skip-zero"
    "$DS_PY" -c 'import json,sys; p=json.load(open(sys.argv[1]))["partitions"][0]
assert p["raw_fallback"] and p["used_bytes"] == 1 << 20, p' "$out-z/manifest.json"
    [ "$(cap_torrent_extents "$out-z/unknown.img.torrent")" = "3145728 1048576" ] || fail "skip-zero extents"
}

case_mounted_rw_refused() {
    cap_case_init
    need_root
    local img=$DS_TMP/mnt.img loop mnt=$DS_TMP/mnt-rw rc=0
    truncate -s 32M "$img"
    mkfs.ext4 -q -F "$img"
    loop=$(ds_losetup "$img")
    ds_mount "$loop" "$mnt"
    "$DISKSWARM" capture "$img" -o "$DS_TMP/out-m" >/dev/null 2>"$DS_TMP/m.err" || rc=$?
    [ "$rc" = 1 ] || fail "capture of a read-write mounted file exited $rc"
    grep -q "mounted read-write" "$DS_TMP/m.err" || fail "message: $(cat "$DS_TMP/m.err")"
    rc=0
    "$DISKSWARM" capture "$loop" -o "$DS_TMP/out-m" >/dev/null 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "capture of a read-write mounted device exited $rc"
    mount -o remount,ro "$mnt"
    "$DISKSWARM" capture "$loop" -o "$DS_TMP/out-m" --quiet >/dev/null || fail "read-only mount refused"
}

# The same source and piece size give the same info-hash whatever the number of hashing threads, with and without
# --store (pieces hashed by different workers, pieces larger than the 1 MiB read chunk); progress lines carry
# bytes/s and an ETA.
case_threads_same_hash() {
    cap_case_init
    local img=$DS_TMP/thr.img out=$DS_TMP/out-thr ps t h ref
    cap_make_ext4 "$img" 64 24 -b 4096
    for ps in 64K 4M; do
        ref=''
        for t in 1 2 5 store1 store3; do
            case $t in
            store*) "$DISKSWARM" capture "$img" -o "$out-$ps-$t" --piece-size "$ps" --threads "${t#store}" --store \
                        --json >"$out.json" 2>/dev/null || fail "capture --store --threads ${t#store}" ;;
            *) "$DISKSWARM" capture "$img" -o "$out-$ps-$t" --piece-size "$ps" --threads "$t" --json \
                   >"$out.json" 2>/dev/null || fail "capture --threads $t" ;;
            esac
            h=$(grep '"type":"torrent"' "$out.json" | grep -o '"info_hash":"[0-9a-f]*"') || fail "no torrent line"
            [ -z "$ref" ] && ref=$h
            [ "$h" = "$ref" ] || fail "piece size $ps, threads $t: $h, threads 1: $ref"
            grep '"type":"progress"' "$out.json" | tail -n 1 | grep -q '"bps":[0-9].*"eta":0}' ||
                fail "last progress line without bps/eta: $(grep progress "$out.json" | tail -n 1)"
        done
    done
    "$DISKSWARM" verify "$out-4M-5/thr.img.torrent" "$img" >/dev/null || fail "verify"
    "$DISKSWARM" capture "$img" -o "$out-text" --threads 2 >/dev/null 2>"$out.err" || fail "capture (text)"
    grep -q '^hash thr.img: 100.0% .*/s ETA ' "$out.err" || fail "no plain progress line: $(cat "$out.err")"
    if grep -q $'\033' "$out.err"; then fail "terminal escapes in non-TTY output"; fi
}

case_usage_errors() {
    cap_case_init
    local rc=0
    "$DISKSWARM" capture >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "no args: $rc"
    rc=0
    "$DISKSWARM" capture /dev/null >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "no -o: $rc"
    rc=0
    "$DISKSWARM" capture x -o y --piece-size 1000 >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "bad piece size: $rc"
    truncate -s 4M "$DS_TMP/p.img"
    rc=0
    "$DISKSWARM" capture "$DS_TMP/p.img" -o "$DS_TMP/o" --per-partition >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "--per-partition without a partition table: $rc"
    rc=0
    "$DISKSWARM" capture "$DS_TMP/missing.img" -o "$DS_TMP/o" >/dev/null 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "missing source: $rc"
}

ds_case ext4_4k case_variant 4k -b 4096
ds_case ext4_1k case_variant 1k -b 1024
ds_case ext4_bigalloc case_variant bigalloc -b 4096 -O bigalloc -C 16384
ds_case raw_fallback case_raw_fallback
ds_case mounted_rw_refused case_mounted_rw_refused
ds_case threads_same_hash case_threads_same_hash
ds_case usage_errors case_usage_errors
ds_finish
