# shellcheck shell=bash
# tests/lib/gpt_disk.sh — the GPT sample disk used by the whole-disk e2e scripts and demo.sh, and the checks
# that a copy of it is right (source after common.sh).
#
#   gpt_part_geom IMG N              "START_BYTES SIZE_BYTES" of partition N of the disk (image or device) IMG
#   gpt_fat_manifest IMG OFFSET      sha256 of every file of the FAT filesystem at byte OFFSET of IMG (mtools)
#   gpt_sfdisk_dump IMG [nolast]     `sfdisk -d IMG` with IMG's name replaced by DISK (and DISKp1 by DISK1) (nolast: without the
#                                    last-lba line, which differs on a larger disk)
#   gpt_make_disk IMG SIZE_MB EFI_MB FILL [ARGS...]
#                                    a GPT disk image: partition 1 "EFI" (EFI System, EFI_MB MiB, FAT32 written
#                                    with mtools: EFI/BOOT/BOOTX64.EFI, loader.conf, a copy of /etc/os-release),
#                                    partition 2 "root" (Linux filesystem, the rest, ext4 filled by running
#                                    `FILL DIR ARGS...`), random bytes in the boot gap before partition 1.
#                                    Writes IMG.fat.manifest and IMG.ext4.manifest (sha256 of every file). As
#                                    root the ext4 is written through a loop mount (the kernel's allocation,
#                                    fragmented by FILL's deletions); otherwise with mkfs.ext4 -d.
#   gpt_check_target SRC TARGET [nolast] [nogap]
#                                    TARGET (an image file or a block device) is a copy of SRC: same partition
#                                    table (nolast: modulo last-lba) and sfdisk --verify clean, the boot gap
#                                    equal (unless nogap), fsck.vfat and e2fsck clean, every file's sha256 equal.
#                                    Prints why and returns 1 otherwise.

gpt_part_geom() {
    sfdisk -J "$1" | "$DS_PY" -c 'import json,sys
p = json.load(sys.stdin)["partitiontable"]
ss = p.get("sectorsize", 512)
q = [x for x in p["partitions"] if x["node"].endswith(str(sys.argv[1]))][0]
print(q["start"] * ss, q["size"] * ss)' "$2"
}

gpt_fat_manifest() {
    local img=$1 off=$2 d
    d=$(mktemp -d "$DS_TMP/fat.XXXXXX")
    mcopy -s -n -i "$img@@$off" '::/*' "$d/" >/dev/null || { rm -rf "$d"; return 1; }
    (cd "$d" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    rm -rf "$d"
}

gpt_sfdisk_dump() {
    # partitions of a device whose name ends in a digit get a "p": /dev/loop3p1 ~ disk.img1
    sfdisk -d "$1" | sed -E -e "s|^$1p?([0-9]+) :|DISK\1 :|" -e "s|$1|DISK|g" |
        if [ "${2:-}" = nolast ]; then sed '/^last-lba:/d'; else cat; fi
}

gpt_make_disk() {
    local disk=$1 size_mb=$2 efi_mb=$3 fill=$4 s1 z1 s2 z2 loop mnt stage efi
    shift 4
    command -v mcopy >/dev/null || { ds_log "gpt_make_disk: mtools missing"; return 1; }
    rm -f "$disk"
    truncate -s "${size_mb}M" "$disk"
    printf 'label: gpt\nsize=%sM, type=U, name=EFI\ntype=L, name=root\n' "$efi_mb" | sfdisk -q "$disk" || return 1
    # a boot loader lives in the gap before the first partition: make it non-zero
    head -c 65536 /dev/urandom | dd of="$disk" bs=512 seek=100 conv=notrunc status=none
    read -r s1 z1 < <(gpt_part_geom "$disk" 1)
    read -r s2 z2 < <(gpt_part_geom "$disk" 2)
    mkfs.vfat -F 32 -s 1 -n EFI --offset $((s1 / 512)) "$disk" $((z1 / 1024)) >/dev/null 2>&1 ||
        { ds_log "gpt_make_disk: mkfs.vfat failed"; return 1; }
    efi=$(mktemp -d "$DS_TMP/efi.XXXXXX")
    mkdir -p "$efi/EFI/BOOT"
    head -c 300000 /dev/urandom >"$efi/EFI/BOOT/BOOTX64.EFI"
    echo "timeout 3" >"$efi/loader.conf"
    cp /etc/os-release "$efi/os-release.txt" 2>/dev/null || echo "diskswarm sample" >"$efi/os-release.txt"
    mcopy -s -i "$disk@@$s1" "$efi/EFI" "$efi/loader.conf" "$efi/os-release.txt" ::/ || return 1
    rm -rf "$efi"
    gpt_fat_manifest "$disk" "$s1" >"$disk.fat.manifest" || return 1
    if is_root; then
        mnt=$(mktemp -d "$DS_TMP/mnt-root.XXXXXX")
        loop=$(ds_losetup "$disk" -o "$s2" --sizelimit "$z2") || return 1
        mkfs.ext4 -q -F -L root "$loop" || return 1
        ds_mount "$loop" "$mnt" || return 1
        "$fill" "$mnt" "$@" || return 1
        sync -f "$mnt" 2>/dev/null || sync
        ds_manifest "$mnt" >"$disk.ext4.manifest"
        ds_umount "$mnt"
        ds_loop_detach "$loop"
        rmdir "$mnt"
        sync
        # seen once under load: the journal still flagged as needing recovery after umount; replay it
        loop=$(ds_losetup "$disk" -o "$s2" --sizelimit "$z2") || return 1
        if dumpe2fs -h "$loop" 2>/dev/null | grep -q needs_recovery; then
            ds_log "  (ext4 journal needs recovery after umount; replaying it)"
            e2fsck -fy "$loop" >/dev/null 2>&1 || true
        fi
        ds_loop_detach "$loop"
    else
        stage=$(mktemp -d "$DS_TMP/stage.XXXXXX")
        "$fill" "$stage" "$@" || return 1
        ds_manifest "$stage" >"$disk.ext4.manifest"
        rm -f "$disk.p2"
        truncate -s "$z2" "$disk.p2"
        mkfs.ext4 -q -F -L root -d "$stage" "$disk.p2" || return 1
        dd if="$disk.p2" of="$disk" bs=1M oflag=seek_bytes seek="$s2" conv=notrunc,sparse status=none || return 1
        rm -rf "$stage" "$disk.p2"
    fi
}

gpt_check_target() {
    local src=$1 t=$2 nolast='' gap=1 a s1 z1 s2 z2 part rc=0
    shift 2
    for a in "$@"; do
        case $a in nolast) nolast=nolast ;; nogap) gap='' ;; esac
    done
    if [ "$(gpt_sfdisk_dump "$t" $nolast)" != "$(gpt_sfdisk_dump "$src" $nolast)" ]; then
        diff <(gpt_sfdisk_dump "$src" $nolast) <(gpt_sfdisk_dump "$t" $nolast) >&2
        ds_log "gpt_check_target: sfdisk -d differs on $t"
        return 1
    fi
    if ! sfdisk --verify "$t" >"$DS_TMP/verify.out" 2>&1 ||
        grep -qiE "not at the end|differ|mismatch|corrupt" "$DS_TMP/verify.out"; then
        cat "$DS_TMP/verify.out" >&2
        ds_log "gpt_check_target: sfdisk --verify complains on $t"
        return 1
    fi
    read -r s1 z1 < <(gpt_part_geom "$src" 1)
    read -r s2 z2 < <(gpt_part_geom "$src" 2)
    # the boot gap: after the primary GPT (LBA 34) up to partition 1
    if [ -n "$gap" ] && ! cmp -s -i $((34 * 512)) -n $((s1 - 34 * 512)) "$src" "$t"; then
        ds_log "gpt_check_target: the boot gap differs on $t"
        return 1
    fi
    part=$DS_TMP/check-p1.img
    dd if="$t" of="$part" bs=1M iflag=skip_bytes,count_bytes skip="$s1" count="$z1" status=none
    fsck.vfat -n "$part" >/dev/null 2>&1 || { ds_log "gpt_check_target: fsck.vfat -n reports problems on $t"; rc=1; }
    if [ "$(gpt_fat_manifest "$part" 0)" != "$(cat "$src.fat.manifest")" ]; then
        ds_log "gpt_check_target: FAT files differ on $t"
        rc=1
    fi
    part=$DS_TMP/check-p2.img
    dd if="$t" of="$part" bs=1M iflag=skip_bytes,count_bytes skip="$s2" count="$z2" status=none
    check_ext4_target "$part" "$src.ext4.manifest" || { ds_log "gpt_check_target: ext4 partition of $t"; rc=1; }
    rm -f "$DS_TMP/check-p1.img" "$DS_TMP/check-p2.img"
    return "$rc"
}
