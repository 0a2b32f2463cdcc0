# shellcheck shell=bash
# tests/lib/capture_fs.sh — helpers for tests/e2e/capture_fs.sh (source after common.sh and capture.sh):
# FAT/NTFS/XFS images written through the kernel (or ntfs-3g) on a loop device, and their checks.
#
#   cfs_populate DIR DATA_MB [nolinks]   random files in several directories: many small ones (a third deleted
#                                        again, so free space is fragmented), medium ones, three large ones, an
#                                        empty one; with anything but "nolinks" also a symlink and a sparse file
#   cfs_make IMG FS SIZE_MB DATA_MB      mkfs FS (fat16 | fat32 | ntfs | xfs) on IMG, loop-mount, populate,
#                                        unmount; writes IMG.manifest (sha256 of every file). Needs root. FAT
#                                        when the kernel has no vfat: written with mtools instead (mcopy -s),
#                                        with files deleted after the copy so the FAT has holes.
#   cfs_fsck FS IMG                      fsck.vfat -n / ntfsfix -n / xfs_repair -n: non-zero if not clean
#   cfs_check_files FS IMG MANIFEST      mount IMG read-only (FAT without vfat: mcopy -s it out) and compare
#                                        every file's sha256 with MANIFEST (and the number of files)

cfs_populate() {
    local dir=$1 data_mb=$2 mode=${3:-} budget sum i size d doomed=()
    budget=$((data_mb * 1048576))
    mkdir -p "$dir"/{boot,home/user/docs,var/lib/deep/er,opt/big,srv/mixed}
    sum=0
    for ((i = 0; i < 1500 && sum < budget / 8; i++)); do
        size=$((1 + (i * 7919 + 13) % 20000))
        case $((i % 4)) in 0) d=boot ;; 1) d=home/user/docs ;; 2) d=var/lib/deep/er ;; *) d=srv/mixed ;; esac
        head -c "$size" /dev/urandom >"$dir/$d/small_$i.bin"
        sum=$((sum + size))
        ((i % 3)) || doomed+=("$dir/$d/small_$i.bin")
    done
    sync -f "$dir/boot" 2>/dev/null || sync
    rm -f "${doomed[@]}"
    sum=0
    for ((i = 0; i < 100 && sum < budget * 3 / 8; i++)); do
        size=$((65536 + (i * 104729) % 900000))
        head -c "$size" /dev/urandom >"$dir/srv/mixed/medium_$i.dat"
        sum=$((sum + size))
    done
    : >"$dir/boot/empty"
    printf 'hello from diskswarm\n' >"$dir/boot/motd"
    for i in 1 2 3; do head -c $((budget / 2 / 3)) /dev/urandom >"$dir/opt/big/large_$i.bin"; done
    if [ "$mode" != nolinks ]; then
        ln -s ../boot/motd "$dir/home/motd.link"
        truncate -s 3M "$dir/home/user/sparse.img"
        printf 'island' | dd of="$dir/home/user/sparse.img" bs=1 seek=1500000 conv=notrunc status=none
    fi
}

# mount type and options for FS
cfs_mount_args() {
    case $1 in
    fat*) echo "-t vfat" ;;
    ntfs) echo "-t ntfs-3g" ;;
    xfs) echo "-t xfs" ;;
    esac
}

# cfs_kernel_fat: can this kernel mount vfat? (no modprobe here: only what /proc/filesystems lists, after one
# attempt that would autoload the module)
cfs_kernel_fat() {
    grep -qw vfat /proc/filesystems && return 0
    local d
    d=$(mktemp -d "$DS_TMP/fatprobe.XXXXXX")
    mount -t vfat none "$d" >/dev/null 2>&1 && umount "$d"
    rmdir "$d"
    grep -qw vfat /proc/filesystems
}

# cfs_make_fat_mtools IMG DATA_MB: populate a FAT image with mtools from a staging tree
cfs_make_fat_mtools() {
    local img=$1 data_mb=$2 stage holes i
    command -v mcopy >/dev/null || skip "no vfat in this kernel and mtools missing"
    stage=$(mktemp -d "$DS_TMP/stage.XXXXXX")
    holes=$(mktemp -d "$DS_TMP/holes.XXXXXX")
    cfs_populate "$stage" "$data_mb" nolinks || return 1
    for ((i = 0; i < 300; i++)); do head -c $((4096 + i * 97)) /dev/urandom >"$holes/h_$i.bin"; done
    mcopy -s -i "$img" "$holes" ::/holes || return 1
    mcopy -s -i "$img" "$stage"/* ::/ || return 1
    # delete every other early file: the FAT now has free clusters between used ones
    for ((i = 0; i < 300; i += 2)); do echo "::/holes/h_$i.bin"; done | xargs mdel -i "$img" || return 1
    for ((i = 0; i < 300; i += 2)); do rm -f "$holes/h_$i.bin"; done
    mkdir -p "$stage/holes" && mv "$holes"/* "$stage/holes/"
    ds_manifest "$stage" >"$img.manifest" || return 1
    rm -rf "$stage" "$holes"
}

cfs_make() {
    local img=$1 fs=$2 size_mb=$3 data_mb=$4 loop mnt mode=
    need_root
    rm -f "$img"
    truncate -s "${size_mb}M" "$img"
    case $fs in
    fat16) mkfs.vfat -F 16 -n DSTEST "$img" >/dev/null ;;
    fat32) mkfs.vfat -F 32 -n DSTEST "$img" >/dev/null ;;
    ntfs) mkfs.ntfs -F -f -q -L dstest "$img" >/dev/null 2>&1 ;;
    xfs) mkfs.xfs -q -f -L dstest "$img" ;;
    *) ds_log "cfs_make: unknown fs $fs"; return 1 ;;
    esac
    if [[ $fs == fat* ]]; then
        mode=nolinks
        if ! cfs_kernel_fat; then
            ds_log "  no vfat in this kernel: populating with mtools"
            cfs_make_fat_mtools "$img" "$data_mb" || return 1
            cfs_fsck "$fs" "$img" || { ds_log "cfs_make: fresh $fs not clean"; return 1; }
            return 0
        fi
    fi
    loop=$(ds_losetup "$img") || return 1
    DS_LOOPS+=("$loop") # ds_losetup ran in the $( ) subshell: register here so the cleanup trap detaches it
    mnt=$(mktemp -d "$DS_TMP/mnt.XXXXXX")
    # shellcheck disable=SC2046
    ds_mount "$loop" "$mnt" $(cfs_mount_args "$fs") || return 1
    cfs_populate "$mnt" "$data_mb" $mode || return 1
    sync -f "$mnt" 2>/dev/null || sync
    ds_manifest "$mnt" >"$img.manifest" || return 1
    ds_umount "$mnt" || return 1
    ds_loop_detach "$loop" || return 1
    rmdir "$mnt"
    cfs_fsck "$fs" "$img" || { ds_log "cfs_make: fresh $fs not clean"; return 1; }
}

cfs_fsck() {
    local fs=$1 img=$2 out
    case $fs in
    fat*) out=$(fsck.vfat -n "$img" 2>&1) ;;
    ntfs) out=$(ntfsfix -n "$img" 2>&1) ;;
    xfs) out=$(xfs_repair -n "$img" 2>&1) ;;
    esac || { printf '%s\n' "$out" | tail -n 20 >&2; return 1; }
}

cfs_check_files() {
    local fs=$1 img=$2 manifest=$3 loop dir rc=0 n_fs n_man opts=ro
    manifest=$(cd "$(dirname "$manifest")" && pwd)/$(basename "$manifest")
    [ "$fs" = xfs ] && opts=ro,norecovery
    dir=$(mktemp -d "$DS_TMP/check.XXXXXX")
    if [[ $fs == fat* ]] && ! cfs_kernel_fat; then
        mcopy -s -n -i "$img" '::/*' "$dir/" >/dev/null || { ds_log "cfs_check_files: mcopy out of $img failed"; return 1; }
        (cd "$dir" && sha256sum --quiet --strict -c "$manifest") >&2 || { ds_log "cfs_check_files: files differ"; rc=1; }
        n_fs=$(cd "$dir" && find . -type f | wc -l)
        n_man=$(wc -l <"$manifest")
        [ "$n_fs" = "$n_man" ] || { ds_log "cfs_check_files: $n_fs files on $img, manifest lists $n_man"; rc=1; }
        rm -rf "$dir"
        return "$rc"
    fi
    loop=$(ds_losetup "$img" -r) || return 1
    DS_LOOPS+=("$loop")
    # shellcheck disable=SC2046
    ds_mount "$loop" "$dir" -o "$opts" $(cfs_mount_args "$fs") || { ds_loop_detach "$loop"; return 1; }
    if ! (cd "$dir" && sha256sum --quiet --strict -c "$manifest") >&2; then
        ds_log "cfs_check_files: file contents differ from $manifest"
        rc=1
    fi
    n_fs=$(cd "$dir" && find . -type f | wc -l)
    n_man=$(wc -l <"$manifest")
    if [ "$n_fs" != "$n_man" ]; then
        ds_log "cfs_check_files: $n_fs regular files on $img, manifest lists $n_man"
        rc=1
    fi
    ds_umount "$dir" && ds_loop_detach "$loop"
    rmdir "$dir"
    return "$rc"
}
