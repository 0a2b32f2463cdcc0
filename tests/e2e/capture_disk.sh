#!/usr/bin/env bash
# timeout: 600
# capture_disk.sh — whole-disk capture. A GPT disk image (EFI System partition with FAT32 + ext4 partition
# with files) → `diskswarm capture` → one torrent with offsets relative to the disk → seeded from the image and
# fetched by two peers onto blank files of the same size → `sfdisk -d` equal, fsck.vfat and e2fsck clean, every
# file's sha256 equal. The manifest records the backup GPT and the disk size (for deploy's larger-target fix-up).
# --per-partition: Ezio layout per partition (offsets relative to the partition) + a table torrent. MBR with an
# extended partition: the EBRs are captured and the partition table survives the trip.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/capture.sh"
. "$(dirname "$0")/../lib/gpt_disk.sh"
ds_init

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }
DISK=$DS_TMP/disk.img
DISK_MB=256

make_gpt_disk() {
    need_root
    command -v mcopy >/dev/null || skip "mtools missing"
    gpt_make_disk "$DISK" "$DISK_MB" 64 ds_populate 40 || fail "making the GPT sample disk"
}

check_disk_target() { gpt_check_target "$DISK" "$1" || fail "$1 is not a copy of the source disk"; }

case_gpt_whole_disk() {
    cap_case_init
    make_gpt_disk
    local out=$DS_TMP/out-disk i
    "$DISKSWARM" capture "$DISK" -o "$out" --name sda --piece-size 1M >"$out.log" 2>&1 || { cat "$out.log" >&2; fail "capture"; }
    cat "$out.log" >&2
    [ -s "$out/sda.torrent" ] || fail "no sda.torrent"
    "$DS_PY" - "$out/manifest.json" "$((DISK_MB * 1048576))" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
size = int(sys.argv[2])
assert m["kind"] == "disk" and m["mode"] == "whole-disk" and m["label"] == "gpt", m
assert m["source_size"] == size
g = m["gpt"]
assert g["alt_lba"] == size // 512 - 1, g
assert g["backup_offset"] + g["backup_length"] == size, g
assert g["backup_length"] == 33 * 512, g
ps = m["partitions"]
assert [p["number"] for p in ps] == [1, 2] and [p["device"] for p in ps] == ["sda1", "sda2"], ps
assert ps[1]["fstype"] == "ext4" and not ps[1]["raw_fallback"], ps[1]
what = [a["what"] for a in m["areas"]]
assert what == ["head", "gpt-backup"], what
assert m["areas"][0]["offset"] == 0 and m["areas"][0]["length"] == ps[0]["start"], m["areas"]
print("manifest ok: partition 1 scanned as %s (%s), partition 2 as %s" % (ps[0]["fstype"], ps[0]["scanner"],
      ps[1]["fstype"]), file=sys.stderr)
PY
    # the ext4 partition's part of the torrent equals partclone's set for that partition, shifted
    local s2 z2 loop
    read -r s2 z2 < <(gpt_part_geom "$DISK" 2)
    loop=$(ds_losetup "$DISK" -r -o "$s2" --sizelimit "$z2")
    cap_partclone_extents ext4 "$loop" "$DS_TMP/pc-p2" |
        awk -v s="$s2" '{printf "%.0f %s\n", $1 + s, $2}' >"$DS_TMP/pc-p2.txt"
    ds_loop_detach "$loop"
    cap_torrent_extents "$out/sda.torrent" >"$DS_TMP/ours.txt"
    cap_covers "$DS_TMP/ours.txt" "$DS_TMP/pc-p2.txt" "disk torrent vs partclone.ext4 on sda2"
    "$DISKSWARM" verify "$out/sda.torrent" "$DISK" >/dev/null || fail "verify on the source"
    cap_seed_fetch "$out/sda.torrent" "$DISK" 2 "$((DISK_MB * 1048576))" "$DS_TMP/t-" || fail "swarm"
    for i in 0 1; do check_disk_target "$DS_TMP/t-$i.img"; done
}

case_per_partition() {
    cap_case_init
    [ -s "$DISK" ] || skip "no GPT disk (previous case skipped)"
    local out=$DS_TMP/out-pp s2 z2 loop
    "$DISKSWARM" capture "$DISK" -o "$out" --name sda --per-partition --piece-size 1M --quiet >/dev/null ||
        fail "capture --per-partition"
    for f in sda sda1 sda2; do [ -s "$out/$f.torrent" ] || fail "no $f.torrent"; done
    "$DS_PY" - "$out" "$DS_ROOT/tests/lib" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[2])
from dstool import bdecode
out = sys.argv[1]
m = json.load(open(out + "/manifest.json"))
assert m["mode"] == "per-partition", m["mode"]
roles = {t["file"]: t["role"] for t in m["torrents"]}
assert roles == {"sda.torrent": "table", "sda1.torrent": "partition", "sda2.torrent": "partition"}, roles
for n in ("sda1", "sda2"):
    t, _ = bdecode(open("%s/%s.torrent" % (out, n), "rb").read())
    info = t[b"info"]
    assert info[b"name"] == n.encode(), info[b"name"]
    names = [f[b"path"][-1] for f in info[b"files"]]
    assert all(len(x) == 32 for x in names), names[:3]
    assert int(names[0], 16) == 0, "first extent of %s is not at partition offset 0" % n
PY
    read -r s2 z2 < <(gpt_part_geom "$DISK" 2)
    loop=$(ds_losetup "$DISK" -r -o "$s2" --sizelimit "$z2")
    "$DISKSWARM" verify "$out/sda2.torrent" "$loop" >/dev/null || fail "sda2.torrent does not verify on the partition"
    cap_partclone_extents ext4 "$loop" "$DS_TMP/pc-pp" >"$DS_TMP/pc-pp.txt"
    cap_torrent_extents "$out/sda2.torrent" >"$DS_TMP/pp-ours.txt"
    cap_covers "$DS_TMP/pp-ours.txt" "$DS_TMP/pc-pp.txt" "sda2.torrent vs partclone.ext4"
    "$DISKSWARM" verify "$out/sda.torrent" "$DISK" >/dev/null || fail "table torrent does not verify"
}

case_mbr_logical() {
    cap_case_init
    need_root
    local d=$DS_TMP/mbr.img out=$DS_TMP/out-mbr s z loop
    truncate -s 128M "$d"
    printf 'label: dos\n,32M,83\n,,5\n,40M,83\n,,83\n' | sfdisk -q "$d"
    read -r s z < <(gpt_part_geom "$d" 5)
    loop=$(ds_losetup "$d" -o "$s" --sizelimit "$z")
    mkfs.ext4 -q -F "$loop"
    ds_loop_detach "$loop"
    read -r s z < <(gpt_part_geom "$d" 6)
    head -c 2M /dev/urandom | dd of="$d" bs=1M seek=$((s / 1048576)) conv=notrunc status=none
    "$DISKSWARM" capture "$d" -o "$out" --skip-zero --piece-size 256K >/dev/null 2>"$out.err" ||
        { cat "$out.err" >&2; fail "capture"; }
    grep -q "mbr.img6: filesystem not recognised" "$out.err" || fail "raw fallback of partition 6 not announced"
    "$DS_PY" -c 'import json,sys; m=json.load(open(sys.argv[1]))
assert m["label"] == "dos", m["label"]
assert [a["what"] for a in m["areas"]].count("ebr") == 2, m["areas"]
assert [p["number"] for p in m["partitions"]] == [1, 5, 6], m["partitions"]' "$out/manifest.json"
    cap_seed_fetch "$out/mbr.img.torrent" "$d" 1 $((128 << 20)) "$DS_TMP/mbr-t-" || fail "swarm"
    [ "$(gpt_sfdisk_dump "$DS_TMP/mbr-t-0.img" | sed 's/mbr-t-0.img/X/g')" = "$(gpt_sfdisk_dump "$d" | sed 's/mbr.img/X/g')" ] ||
        fail "MBR/EBR partition table differs after the trip"
    read -r s z < <(gpt_part_geom "$d" 5)
    dd if="$DS_TMP/mbr-t-0.img" of="$DS_TMP/p5.img" bs=1M iflag=skip_bytes,count_bytes skip="$s" count="$z" status=none
    e2fsck -fn "$DS_TMP/p5.img" >/dev/null 2>&1 || fail "ext4 in the logical partition"
}

ds_case gpt_whole_disk case_gpt_whole_disk
ds_case per_partition case_per_partition
ds_case mbr_logical case_mbr_logical
ds_finish
