#!/usr/bin/env bash
# timeout: 600
# asan: yes
# import_partclone.sh — `diskswarm import` of images written by real partclone.ext4 (format 0002):
#   - partclone.ext4 -c -O - piped through gzip -c, zstd -c, and gzip -c | split -b 8m (as Clonezilla does);
#     each import gives the same torrent as `capture` of the filesystem itself, and seed --from IMAGE_DIR →
#     fetch onto a blank file is e2fsck-clean with every file's sha256 equal
#   - a Clonezilla-like image directory (disk, parts, sda-pt.sf from sfdisk -d, sda1.ext4-ptcl-img.gz.aa ...,
#     sda2.ext4-ptcl-img.zst) of a GPT disk with two ext4 partitions → import --compress zstd → per-partition
#     torrents, the sfdisk dump recorded in the manifest → each partition fetched onto a blank disk file whose
#     table is recreated from the recorded dump → fsck clean, files equal
#   - an uncompressed partclone image imported with --no-store and seeded in place (--from the image and --from
#     IMAGE_DIR through the manifest's seed_in_place)
#   - damaged input (a truncated gzip, a missing split part) fails with a message
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/capture.sh"
. "$(dirname "$0")/../lib/image.sh"
ds_init

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }
command -v partclone.ext4 >/dev/null || { echo "SKIP: partclone.ext4 not installed"; echo "0 passed, 0 failed, 1 skipped"; exit 77; }
FS_MB=96
DATA_MB=40

ptcl() { # FS_IMG → partclone image on stdout
    partclone.ext4 -c -s "$1" -O - -L "$DS_TMP/partclone.log" 2>/dev/null
}

tor_hash() { "$DS_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["torrents"][int(sys.argv[2])]["info_hash"])' "$1" "${2:-0}"; }

case_streams() {
    cap_case_init
    local img=$DS_TMP/fs.img ref=$DS_TMP/ref kind out secs h_ref h
    img_make_ext4 "$img" "$FS_MB" "$DATA_MB"
    "$DISKSWARM" capture "$img" -o "$ref" --name sda1 --quiet >/dev/null || fail "capture"
    h_ref=$(tor_hash "$ref/manifest.json")
    ptcl "$img" | gzip -c >"$DS_TMP/sda1.ext4-ptcl-img.gz"
    ptcl "$img" | zstd -q -c >"$DS_TMP/sda1.ext4-ptcl-img.zst"
    ptcl "$img" | gzip -c | split -b 8m - "$DS_TMP/split.ext4-ptcl-img.gz."
    ls "$DS_TMP"/split.ext4-ptcl-img.gz.* | wc -l | grep -qv '^1$' || fail "split made one part only"
    for kind in gz zst split; do
        out=$DS_TMP/imp-$kind
        local src=$DS_TMP/sda1.ext4-ptcl-img.$kind
        [ "$kind" = split ] && src=$DS_TMP/split.ext4-ptcl-img.gz.aa
        "$DISKSWARM" import "$src" -o "$out" --name sda1 --compress zstd 2>"$out.err" >/dev/null ||
            { cat "$out.err" >&2; fail "import ($kind)"; }
        grep -h 'imported' "$out.err" >&2 || true
        h=$(tor_hash "$out/manifest.json")
        [ "$h" = "$h_ref" ] || fail "import ($kind) gives info-hash $h, capture gives $h_ref"
        [ -s "$out/sda1.dsimg" ] || fail "no image file ($kind)"
    done
    # all split parts given explicitly, --store (uncompressed)
    "$DISKSWARM" import "$DS_TMP"/split.ext4-ptcl-img.gz.* -o "$DS_TMP/imp-parts" --name sda1 --store --quiet >/dev/null ||
        fail "import with explicit parts"
    [ "$(tor_hash "$DS_TMP/imp-parts/manifest.json")" = "$h_ref" ] || fail "explicit parts: info-hash differs"
    mv "$img" "$img.gone"
    secs=$(img_seed_fetch "$DS_TMP/imp-split/sda1.torrent" "$DS_TMP/imp-split" "$DS_TMP/t.img" $((FS_MB * 1048576))) ||
        fail "seed from the imported image"
    ds_log "  fetched from the imported (split gz → zstd) image in $secs s"
    check_ext4_target "$DS_TMP/t.img" "$img.manifest" || fail "target"
    # damaged input
    head -c 3000000 "$DS_TMP/sda1.ext4-ptcl-img.gz" >"$DS_TMP/trunc.gz"
    if "$DISKSWARM" import "$DS_TMP/trunc.gz" -o "$DS_TMP/imp-bad" --quiet 2>"$DS_TMP/bad.err" >/dev/null; then
        fail "a truncated gzip image was imported"
    fi
    grep -q 'truncated\|corrupt\|ends' "$DS_TMP/bad.err" || { cat "$DS_TMP/bad.err" >&2; fail "no clear message"; }
    [ ! -e "$DS_TMP/imp-bad/sda1.dsimg" ] && [ ! -e "$DS_TMP/imp-bad/trunc.dsimg" ] || fail "partial image left behind"
    if "$DISKSWARM" import "$DS_TMP/split.ext4-ptcl-img.gz.aa" "$DS_TMP/split.ext4-ptcl-img.gz.ac" -o "$DS_TMP/imp-bad2" \
        --quiet 2>/dev/null >/dev/null; then
        fail "import with a missing split part succeeded"
    fi
}

case_clonezilla_dir() {
    cap_case_init
    local disk=$DS_TMP/cz.img cz=$DS_TMP/2024-img out=$DS_TMP/imp-cz p1=$DS_TMP/p1.img p2=$DS_TMP/p2.img t secs i
    img_make_ext4 "$p1" 64 20
    img_make_ext4 "$p2" 48 16
    truncate -s 128M "$disk"
    printf 'label: gpt\nstart=2048, size=131072, type=L, name=root\nstart=133120, size=98304, type=L, name=data\n' |
        sfdisk -q "$disk"
    dd if="$p1" of="$disk" bs=1M seek=1 conv=notrunc status=none
    dd if="$p2" of="$disk" bs=512 seek=133120 conv=notrunc status=none
    # what ocs-sr writes (the parts it needs here)
    mkdir -p "$cz"
    echo sda >"$cz/disk"
    echo "sda1 sda2" >"$cz/parts"
    sfdisk -d "$disk" | sed "s|$disk|/dev/sda|" >"$cz/sda-pt.sf"
    ptcl "$p1" | gzip -c | split -b 8m - "$cz/sda1.ext4-ptcl-img.gz."
    ptcl "$p2" | zstd -q -c >"$cz/sda2.ext4-ptcl-img.zst"
    "$DISKSWARM" import "$cz" -o "$out" --compress zstd:3 --piece-size 1M 2>"$out.err" >/dev/null ||
        { cat "$out.err" >&2; fail "import of the Clonezilla directory"; }
    cat "$out.err" >&2
    "$DS_PY" - "$out/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["kind"] == "disk" and m["mode"] == "per-partition" and m["label"] == "gpt", m
assert m["partition_table"] == {"format": "sfdisk", "file": "sda-pt.sf"}, m.get("partition_table")
parts = {p["device"]: p for p in m["partitions"]}
assert parts["sda1"]["start"] == 2048 * 512 and parts["sda1"]["size"] == 131072 * 512, parts["sda1"]
assert parts["sda2"]["start"] == 133120 * 512 and parts["sda2"]["torrent"] == "sda2.torrent", parts["sda2"]
assert parts["sda1"]["fstype"] == "ext4" and parts["sda1"]["scanner"] == "partclone", parts["sda1"]
ts = {t["name"]: t for t in m["torrents"]}
assert set(ts) == {"sda1", "sda2"} and all(t["image"] == t["name"] + ".dsimg" for t in ts.values()), ts
PY
    cmp -s "$out/sda-pt.sf" "$cz/sda-pt.sf" || fail "partition table dump not copied"
    # deploy onto a blank disk: recreate the table from the recorded dump, then fetch each partition
    rm -f "$disk.p1" "$disk.p2"
    mv "$disk" "$disk.gone"
    t=$DS_TMP/target.img
    truncate -s 128M "$t"
    sed 's|/dev/sda|/dev/X|' "$out/sda-pt.sf" | grep -v '^device:' | sfdisk -q "$t"
    for i in 1 2; do
        local start size
        start=$("$DS_PY" -c 'import json,sys; p=[p for p in json.load(open(sys.argv[1]))["partitions"] if p["device"]==sys.argv[2]][0]; print(p["start"], p["size"])' "$out/manifest.json" "sda$i")
        read -r start size <<<"$start"
        secs=$(img_seed_fetch "$out/sda$i.torrent" "$out" "$DS_TMP/t-p$i.img" "$size") || fail "swarm sda$i"
        ds_log "  sda$i: fetched in $secs s"
        dd if="$DS_TMP/t-p$i.img" of="$t" bs=512 seek=$((start / 512)) conv=notrunc status=none
    done
    [ "$(sfdisk -d "$t" | sed "s|$t|D|")" = "$(sfdisk -d "$disk.gone" | sed "s|$disk.gone|D|")" ] || fail "table differs"
    img_extract "$t" $((2048 * 512)) $((131072 * 512)) "$DS_TMP/c1.img"
    img_extract "$t" $((133120 * 512)) $((98304 * 512)) "$DS_TMP/c2.img"
    check_ext4_target "$DS_TMP/c1.img" "$p1.manifest" || fail "sda1 on the target"
    check_ext4_target "$DS_TMP/c2.img" "$p2.manifest" || fail "sda2 on the target"
}

case_in_place() {
    cap_case_init
    local img=$DS_TMP/fsi.img pc=$DS_TMP/sdb1.ext4-ptcl-img.uncomp out=$DS_TMP/imp-inplace secs
    img_make_ext4 "$img" 64 20
    ptcl "$img" >"$pc"
    "$DISKSWARM" import "$pc" -o "$out" --no-store --piece-size 512K 2>"$out.err" >/dev/null ||
        { cat "$out.err" >&2; fail "import --no-store"; }
    grep -q 'seed in place' "$out.err" || fail "no 'seed in place' message"
    ls "$out"/*.dsimg >/dev/null 2>&1 && fail "--no-store wrote an image file"
    "$DS_PY" -c 'import json,sys,os; t=json.load(open(sys.argv[1]))["torrents"][0]; assert t["seed_in_place"] == os.path.realpath(sys.argv[2]), t' \
        "$out/manifest.json" "$pc" || fail "manifest seed_in_place"
    mv "$img" "$img.gone"
    secs=$(img_seed_fetch "$out/sdb1.torrent" "$pc" "$DS_TMP/t1.img" $((64 * 1048576))) || fail "seed --from the partclone image"
    ds_log "  in place (--from image): $secs s"
    check_ext4_target "$DS_TMP/t1.img" "$img.manifest" || fail "target 1"
    img_seed_fetch "$out/sdb1.torrent" "$out" "$DS_TMP/t2.img" $((64 * 1048576)) >/dev/null || fail "seed --from IMAGE_DIR (in place)"
    check_ext4_target "$DS_TMP/t2.img" "$img.manifest" || fail "target 2"
    # a compressed partclone image cannot be seeded in place: clear refusal
    gzip -c <"$pc" >"$pc.gz"
    if timeout 20 "$DISKSWARM" seed "$out/sdb1.torrent" --from "$pc.gz" --listen 127.0.0.1:0 --no-tracker --seed-time 0 \
        --quiet 2>"$DS_TMP/gz.err"; then
        fail "seed from a gzip partclone image"
    fi
}

ds_case streams_gz_zst_split case_streams
ds_case clonezilla_dir case_clonezilla_dir
ds_case seed_in_place case_in_place
ds_finish
