#!/usr/bin/env bash
# timeout: 600
# asan: yes
# image_store.sh — `capture --store` and `capture --compress zstd` write IMAGE_DIR/NAME.dsimg; `seed T --from
# IMAGE_DIR` (and --from the .dsimg itself) serves from it with the source gone, `seed --verify` hashes the image,
# and a fetch into a blank file gives an e2fsck-clean filesystem with every file's sha256 equal. Done for an ext4
# image and a whole GPT disk image (sfdisk -d equal too). Prints the .dsimg sizes with and without compression
# (the ratio) and the fetch time from a compressed image. Also: a damaged image is refused by seed, another
# torrent's image is not picked, and bad --compress values are usage errors.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/capture.sh"
. "$(dirname "$0")/../lib/image.sh"
ds_init

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }
FS_MB=96
DATA_MB=40

manifest_image() { # MANIFEST INDEX → "image image_compression image_bytes"
    "$DS_PY" -c 'import json,sys
t = json.load(open(sys.argv[1]))["torrents"][int(sys.argv[2])]
print(t.get("image", ""), t.get("image_compression", ""), t.get("image_bytes", 0))' "$1" "$2"
}

case_ext4() {
    cap_case_init
    local img=$DS_TMP/fs.img src=$DS_TMP/gone.img raw=$DS_TMP/out-store z=$DS_TMP/out-zstd secs mode
    img_make_ext4 "$img" "$FS_MB" "$DATA_MB"
    "$DISKSWARM" capture "$img" -o "$raw" --name sda1 --store --piece-size 1M 2>"$raw.err" >/dev/null ||
        { cat "$raw.err" >&2; fail "capture --store"; }
    "$DISKSWARM" capture "$img" -o "$z" --name sda1 --compress zstd --piece-size 1M 2>"$z.err" >/dev/null ||
        { cat "$z.err" >&2; fail "capture --compress zstd"; }
    grep -h 'stored\|hashed' "$raw.err" "$z.err" >&2 || true
    cmp -s "$raw/sda1.torrent" "$z/sda1.torrent" || fail "--store and --compress made different torrents"
    read -r f1 c1 b1 <<<"$(manifest_image "$raw/manifest.json" 0)"
    read -r f2 c2 b2 <<<"$(manifest_image "$z/manifest.json" 0)"
    [ "$f1" = sda1.dsimg ] && [ "$c1" = none ] && [ "$f2" = sda1.dsimg ] && [ "$c2" = zstd:3 ] ||
        fail "manifest image fields: $f1 $c1 / $f2 $c2"
    [ "$(stat -c %s "$raw/sda1.dsimg")" = "$b1" ] && [ "$(stat -c %s "$z/sda1.dsimg")" = "$b2" ] ||
        fail "manifest image_bytes differ from the files"
    local used
    used=$("$DS_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["torrents"][0]["bytes"])' "$raw/manifest.json")
    ds_log "  ext4: $used bytes captured; .dsimg uncompressed $b1 bytes, zstd:3 $b2 bytes (ratio $(awk -v a="$b2" -v b="$b1" 'BEGIN{printf "%.3f", a/b}'))"
    [ "$b2" -lt "$b1" ] || fail "compressed image is not smaller"
    [ "$b1" -le $((used + 4096 + 16 * (used / 1048576 + 1))) ] || fail "uncompressed image larger than data+header+index"
    mv "$img" "$src"   # the source is gone for the seeders
    mv "$img.manifest" "$src.manifest"
    for mode in store zstd; do
        local dir=$raw
        [ "$mode" = zstd ] && dir=$z
        secs=$(img_seed_fetch "$dir/sda1.torrent" "$dir" "$DS_TMP/t-$mode.img" "$((FS_MB * 1048576))") ||
            fail "seed --from IMAGE_DIR ($mode) / fetch"
        ds_log "  $mode: fetched $used bytes in $secs s ($(awk -v b="$used" -v s="$secs" 'BEGIN{printf "%.1f", b/1e6/s}') MB/s over loopback)"
        check_ext4_target "$DS_TMP/t-$mode.img" "$src.manifest" || fail "target ($mode)"
        rm -f "$DS_TMP/t-$mode.img"
    done
    # --from the .dsimg file itself
    img_seed_fetch "$z/sda1.torrent" "$z/sda1.dsimg" "$DS_TMP/t-file.img" "$((FS_MB * 1048576))" >/dev/null ||
        fail "seed --from X.dsimg"
    check_ext4_target "$DS_TMP/t-file.img" "$src.manifest" || fail "target (file)"
    rm -f "$DS_TMP/t-file.img"
    # a damaged image (one byte of the index) is refused by seed
    cp "$z/sda1.dsimg" "$DS_TMP/bad.dsimg"
    printf '\xff' | dd of="$DS_TMP/bad.dsimg" bs=1 seek=$(($(stat -c %s "$DS_TMP/bad.dsimg") - 20)) conv=notrunc status=none
    if timeout 20 "$DISKSWARM" seed "$z/sda1.torrent" --from "$DS_TMP/bad.dsimg" --listen 127.0.0.1:0 --no-tracker \
        --seed-time 0 --quiet 2>"$DS_TMP/bad.err"; then
        fail "seed accepted a damaged image"
    fi
    grep -q 'index' "$DS_TMP/bad.err" || { cat "$DS_TMP/bad.err" >&2; fail "no clear message for a damaged image"; }
    # a payload byte flipped inside a zstd piece: seed --verify must notice (or zstd must refuse it)
    cp "$z/sda1.dsimg" "$DS_TMP/bad2.dsimg"
    printf '\x55' | dd of="$DS_TMP/bad2.dsimg" bs=1 seek=5000 conv=notrunc status=none
    if timeout 60 "$DISKSWARM" seed "$z/sda1.torrent" --from "$DS_TMP/bad2.dsimg" --verify --listen 127.0.0.1:0 \
        --no-tracker --seed-time 0 --quiet 2>"$DS_TMP/bad2.err"; then
        fail "seed --verify accepted a damaged piece"
    fi
    # an IMAGE_DIR whose image belongs to another torrent
    "$DISKSWARM" capture "$src" -o "$DS_TMP/other" --name other --compress zstd:1 --piece-size 512K --quiet >/dev/null
    cp "$DS_TMP/other/other.dsimg" "$DS_TMP/mixed.dsimg" 2>/dev/null || true
    mkdir -p "$DS_TMP/mixed" && mv "$DS_TMP/mixed.dsimg" "$DS_TMP/mixed/"
    if timeout 20 "$DISKSWARM" seed "$z/sda1.torrent" --from "$DS_TMP/mixed" --listen 127.0.0.1:0 --no-tracker \
        --seed-time 0 --quiet 2>"$DS_TMP/mixed.err"; then
        fail "seed used another torrent's image"
    fi
    grep -q 'info-hash' "$DS_TMP/mixed.err" || { cat "$DS_TMP/mixed.err" >&2; fail "no clear message"; }
}

case_gpt_disk() {
    cap_case_init
    local disk=$DS_TMP/disk.img p1=$DS_TMP/p1.img out=$DS_TMP/out-disk secs t=$DS_TMP/t-disk.img s1 z1
    img_make_ext4 "$p1" 64 24
    truncate -s 100M "$disk"
    printf 'label: gpt\nstart=2048, size=131072, type=L, name=root\n' | sfdisk -q "$disk"
    s1=$((2048 * 512)) z1=$((131072 * 512))
    dd if="$p1" of="$disk" bs=1M seek=1 conv=notrunc status=none
    "$DISKSWARM" capture "$disk" -o "$out" --name sdx --compress zstd:5 --piece-size 512K 2>"$out.err" >/dev/null ||
        { cat "$out.err" >&2; fail "capture --compress of a GPT disk"; }
    grep -h 'stored' "$out.err" >&2 || true
    [ -s "$out/sdx.dsimg" ] || fail "no sdx.dsimg"
    mv "$disk" "$disk.gone"
    secs=$(img_seed_fetch "$out/sdx.torrent" "$out" "$t" $((100 * 1048576))) || fail "swarm from the disk image"
    ds_log "  GPT disk: fetched in $secs s"
    [ "$(sfdisk -d "$t" | sed "s|$t|D|")" = "$(sfdisk -d "$disk.gone" | sed "s|$disk.gone|D|")" ] || fail "sfdisk -d differs"
    img_extract "$t" "$s1" "$z1" "$DS_TMP/t-p1.img"
    check_ext4_target "$DS_TMP/t-p1.img" "$p1.manifest" || fail "partition 1 of the target"
}

case_usage() {
    cap_case_init
    local img=$DS_TMP/u.img rc
    truncate -s 8M "$img"
    for bad in zstd:0 zstd:20 gzip zstd: lz4:3; do
        rc=0
        "$DISKSWARM" capture "$img" -o "$DS_TMP/u" --compress "$bad" 2>/dev/null || rc=$?
        [ "$rc" = 2 ] || fail "--compress $bad: exit $rc, expected 2"
    done
}

ds_case ext4_store_and_zstd case_ext4
ds_case gpt_disk_zstd case_gpt_disk
ds_case compress_usage case_usage
ds_finish
