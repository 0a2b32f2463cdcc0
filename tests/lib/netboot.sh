# shellcheck shell=bash
# tests/lib/netboot.sh — helpers for tests/e2e/netboot_qemu.sh (source after common.sh):
#   nb_bootenv DIR              netboot/build-bootenv.sh into DIR (kernel package cached outside the repo)
#   nb_kernel                   sets NB_KROOT / NB_KVER: the unpacked Debian kernel of that cache
#   nb_bootable_disk IMG TOKEN  a small BIOS-bootable GPT disk: gptmbr.bin + extlinux on an ext4 partition
#                               (legacy_boot attribute) holding the Debian kernel, a tiny initramfs that mounts
#                               the partition (LABEL=dsroot) as root, and a root filesystem whose /sbin/init
#                               prints "DISKSWARM-DISK-BOOT-MARKER TOKEN" on ttyS0 and powers off
#   nb_qemu LOG DISK MAC TAP    one machine: network boot first, then the disk; serial console to LOG

NB_CACHE=${DS_NETBOOT_CACHE:-${XDG_CACHE_HOME:-/var/tmp}/diskswarm-netboot}

nb_bootenv() { # DIR
    DS_NETBOOT_CACHE=$NB_CACHE bash "$DS_ROOT/netboot/build-bootenv.sh" "$1" --diskswarm "$DISKSWARM"
}

nb_kernel() {
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    NB_KVER=${pkg#linux-image-}
    NB_KROOT=$NB_CACHE/$pkg
    [ -f "$NB_KROOT/.complete" ] || return 1
}

# the modules (dependencies first) that MODULE... need, as paths in the unpacked kernel
nb_modules() {
    local m
    for m in "$@"; do
        modprobe -d "$NB_KROOT" -S "$NB_KVER" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
    done | awk '!seen[$0]++'
}

nb_bootable_disk() { # IMG TOKEN
    local img=$1 token=$2 w loop mnt ko rel start size
    nb_kernel || { ds_log "no unpacked kernel in $NB_CACHE (run nb_bootenv first)"; return 1; }
    w=$(mktemp -d "$DS_TMP/bootdisk.XXXXXX")
    # the disk's initramfs: load virtio + ext4, mount LABEL=dsroot read-only, switch_root into it
    mkdir -p "$w/ir"/{bin,dev,proc,sys,newroot,lib/modules}
    cp /bin/busybox "$w/ir/bin/busybox"
    ln -s busybox "$w/ir/bin/sh"
    nb_modules virtio_pci virtio_blk ext4 | while read -r ko; do
        rel=${ko#"$NB_KROOT"/lib/modules/"$NB_KVER"/}
        mkdir -p "$w/ir/lib/modules/$(dirname "$rel")"
        cp "$ko" "$w/ir/lib/modules/$rel"
        echo "/lib/modules/$rel"
    done >"$w/ir/lib/modules/load"
    cat >"$w/ir/init" <<'EOF'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
while read -r ko; do insmod "$ko" 2>/dev/null; done </lib/modules/load
n=0; dev=''
while [ $n -lt 50 ] && [ -z "$dev" ]; do dev=$(findfs LABEL=dsroot 2>/dev/null) || sleep 0.2; n=$((n + 1)); done
[ -n "$dev" ] && mount -o ro -t ext4 "$dev" /newroot || { echo "disk initramfs: no LABEL=dsroot" >/dev/console; poweroff -f; }
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
EOF
    chmod 755 "$w/ir/init"
    (cd "$w/ir" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -n -1 >"$w/initrd.img"
    # the root filesystem
    mkdir -p "$w/root"/{bin,sbin,dev,proc,sys,etc,boot/extlinux}
    cp /bin/busybox "$w/root/bin/busybox"
    ln -s busybox "$w/root/bin/sh"
    echo "$token" >"$w/root/etc/ds-token"
    cat >"$w/root/sbin/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
root=$(/bin/busybox awk '$2 == "/" { print $1 }' /proc/mounts | /bin/busybox tail -1)
echo "DISKSWARM-DISK-BOOT-MARKER $(/bin/busybox cat /etc/ds-token) root=$root" >/dev/ttyS0
/bin/busybox sync
/bin/busybox poweroff -f
EOF
    chmod 755 "$w/root/sbin/init"
    cp "$NB_KROOT/boot/vmlinuz-$NB_KVER" "$w/root/boot/vmlinuz"
    cp "$w/initrd.img" "$w/root/boot/initrd.img"
    cat >"$w/root/boot/extlinux/extlinux.conf" <<'EOF'
DEFAULT disk
PROMPT 0
TIMEOUT 0
LABEL disk
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd.img
  APPEND console=ttyS0,115200n8 quiet panic=5
EOF
    # the disk: GPT, one ext4 partition with the legacy BIOS bootable attribute, syslinux's GPT MBR
    rm -f "$img"
    truncate -s 48M "$img"
    printf 'label: gpt\nstart=2048, size=40M, type=L, name=dsroot, attrs=LegacyBIOSBootable\n' | sfdisk -q "$img"
    start=$((2048 * 512)) size=$((40 * 1024 * 1024))
    loop=$(ds_losetup "$img" -o "$start" --sizelimit "$size")
    # extlinux 6.04 reads ext4 without 64bit/metadata_csum
    mkfs.ext4 -q -F -L dsroot -O ^64bit,^metadata_csum -E root_owner=0:0 "$loop"
    mnt=$w/mnt
    ds_mount "$loop" "$mnt"
    cp -a "$w/root/." "$mnt/"
    extlinux --install "$mnt/boot/extlinux" >/dev/null 2>&1 || { ds_umount "$mnt"; ds_log "extlinux --install failed"; return 1; }
    sync -f "$mnt" 2>/dev/null || sync
    ds_umount "$mnt"
    ds_loop_detach "$loop"
    dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$img" bs=440 count=1 conv=notrunc status=none
    rm -rf "$w"
}

# nb_qemu_cmd LOG DISK|none MAC TAP [MEM_MB]: the command line of a machine booting from the network first (iPXE ROM of the NIC), then its
# disk; serial console appended to LOG (SeaBIOS and iPXE too: graphics=off); no display. Run it inside the
# namespace that holds TAP.
nb_qemu_cmd() {
    local log=$1 disk=$2 mac=$3 tap=$4 mem=${5:-512} accel=tcg
    [ -w /dev/kvm ] && accel=kvm
    printf '%s\n' qemu-system-x86_64 -machine "pc,accel=$accel,graphics=off" -m "$mem" -smp 1 \
        -display none -vga none -monitor none -chardev "file,id=s0,path=$log,append=on" -serial chardev:s0 -no-user-config -nodefaults \
        -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" \
        -device "virtio-net-pci,netdev=n0,mac=$mac,bootindex=1"
    [ "$disk" = none ] ||
        printf '%s\n' -drive "file=$disk,format=raw,if=none,id=d0,cache=unsafe" -device "virtio-blk-pci,drive=d0,bootindex=2"
}
