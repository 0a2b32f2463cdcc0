#!/usr/bin/env bash
# timeout: 600
# capture_fs.sh — `diskswarm capture` on FAT32, FAT16, NTFS and XFS filesystems written through a loop mount
# (several directories, small and large files, deletions): the captured extent set must cover partclone's
# torrent.info on the same image (the difference is reported: equal, or superset by N bytes), the torrent must
# verify on the source, and a seeder from the image + a fetcher into a blank file must give a target that
# fsck passes (fsck.vfat -n / ntfsfix -n / xfs_repair -n) and whose files all have their original sha256.
# Needs root (loop mounts); each case is skipped otherwise.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/capture.sh"
. "$(dirname "$0")/../lib/capture_fs.sh"
ds_init

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }

# fs_case FS SIZE_MB DATA_MB PARTCLONE_FS FSCK_TOOL MKFS_TOOL
fs_case() {
    local fs=$1 size_mb=$2 data_mb=$3 pcfs=$4 fsck_tool=$5 mkfs_tool=$6
    local img=$DS_TMP/$fs.img out=$DS_TMP/out-$fs got
    need_root
    command -v "$mkfs_tool" >/dev/null || skip "$mkfs_tool missing"
    command -v "$fsck_tool" >/dev/null || skip "$fsck_tool missing"
    cfs_make "$img" "$fs" "$size_mb" "$data_mb"

    "$DISKSWARM" capture "$img" -o "$out" --name "$fs" --piece-size 1M --quiet >"$out.log" 2>&1 ||
        { cat "$out.log" >&2; fail "capture"; }
    [ -s "$out/$fs.torrent" ] || fail "no $fs.torrent"
    got=$("$DS_PY" -c 'import json,sys; p=json.load(open(sys.argv[1]))["partitions"][0]
print(p["fstype"], p["raw_fallback"])' "$out/manifest.json")
    case $fs in fat*) [ "$got" = "vfat False" ] ;; *) [ "$got" = "$fs False" ] ;; esac || fail "scanned as '$got'"

    # our set vs partclone's
    cap_torrent_extents "$out/$fs.torrent" >"$DS_TMP/$fs.ours"
    if command -v "partclone.$pcfs" >/dev/null; then
        cap_partclone_extents "$pcfs" "$img" "$DS_TMP/pc-$fs" >"$DS_TMP/$fs.pc" || fail "partclone.$pcfs"
        cap_covers "$DS_TMP/$fs.ours" "$DS_TMP/$fs.pc" "$fs vs partclone.$pcfs"
    else
        ds_log "  partclone.$pcfs missing: no comparison"
    fi
    "$DISKSWARM" verify "$out/$fs.torrent" "$img" >/dev/null || fail "torrent does not verify on the source"

    # through the swarm into a blank file
    cap_seed_fetch "$out/$fs.torrent" "$img" 1 "$((size_mb * 1048576))" "$DS_TMP/t-$fs-" || fail "swarm"
    cfs_fsck "$fs" "$DS_TMP/t-$fs-0.img" || fail "$fsck_tool reports problems on the target"
    cfs_check_files "$fs" "$DS_TMP/t-$fs-0.img" "$img.manifest" || fail "files differ on the target"
    rm -f "$DS_TMP/t-$fs-0.img" "$img"
}

ds_case fat32 fs_case fat32 160 48 fat32 fsck.vfat mkfs.vfat
ds_case fat16 fs_case fat16 96 32 fat16 fsck.vfat mkfs.vfat
ds_case ntfs fs_case ntfs 160 48 ntfs ntfsfix mkfs.ntfs
ds_case xfs fs_case xfs 400 64 xfs xfs_repair mkfs.xfs
ds_finish
