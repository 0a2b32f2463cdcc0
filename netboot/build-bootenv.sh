#!/usr/bin/env bash
# netboot/build-bootenv.sh — build the client boot environment that `diskswarm serve --netboot BOOTDIR` hands
# to blank machines: BOOTDIR/vmlinuz (Debian's linux-image-amd64 kernel) and BOOTDIR/initrd.img (gzip'ed cpio),
# all from Debian packages:
#   - the kernel: `apt-get download` of the package linux-image-amd64 depends on, unpacked with dpkg-deb -x
#     (nothing is installed into this system); its modules for NICs and disks are copied with their
#     dependencies, in load order (kmod's `modprobe --show-depends` on the unpacked tree);
#   - busybox-static: the shell, udhcpc, wget, insmod, reboot …;
#   - diskswarm, the binary given with --diskswarm (default: build/diskswarm).
# netboot/init is the initramfs's /init: it brings the network up, reads the server and options from the kernel
# command line, runs `diskswarm deploy` to the disk, reports to the server's dashboard and reboots.
#
# Deviation from "statically linked diskswarm": a static link is impossible with Debian's libraries — libcurl's
# static dependencies libgssapi_krb5, libldap/liblber, libnghttp2, libpsl, libssh2 and librtmp, and libfdisk,
# ship no .a. So the initramfs holds the dynamically linked binary plus exactly the shared libraries `ldd` lists
# and the dynamic loader, as initramfs-tools' copy_exec does.
#
# usage: netboot/build-bootenv.sh BOOTDIR [--diskswarm PATH] [--cache DIR] [--modules "MOD ..."]
# The downloaded kernel package is kept in the cache dir (default ${XDG_CACHE_HOME:-/var/tmp}/diskswarm-netboot),
# never in the repository. Needs: apt-get (download only), dpkg-deb, kmod, busybox-static, cpio, gzip.
# The output is reproducible for the same inputs (sorted cpio, fixed mtimes, gzip -n).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out='' ds="$here/../build/diskswarm"
cache=${DS_NETBOOT_CACHE:-${XDG_CACHE_HOME:-/var/tmp}/diskswarm-netboot}
# NICs (virtio, Intel, Realtek, Broadcom), disks (virtio, SATA/AHCI, NVMe, SCSI) and what they need
modules="virtio_pci virtio_net virtio_blk virtio_scsi e1000 e1000e igb igc ixgbe r8169 tg3 bnxt_en ahci sd_mod nvme"
while [ $# -gt 0 ]; do
    case $1 in
    --diskswarm) ds=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --modules) modules=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "build-bootenv: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "build-bootenv: one BOOTDIR" >&2; exit 2; }; out=$1; shift ;;
    esac
done
[ -n "$out" ] || { echo "usage: $0 BOOTDIR [--diskswarm PATH] [--cache DIR]" >&2; exit 2; }
[ -x "$ds" ] || { echo "build-bootenv: no diskswarm binary at $ds (build it, or give --diskswarm)" >&2; exit 1; }
for t in apt-get apt-cache dpkg-deb depmod modprobe cpio gzip ldd; do
    command -v "$t" >/dev/null || { echo "build-bootenv: $t missing (apt-get install kmod cpio ...)" >&2; exit 1; }
done
busybox=/bin/busybox
{ [ -x "$busybox" ] && "$busybox" true && ! ldd "$busybox" >/dev/null 2>&1; } ||
    { echo "build-bootenv: $busybox is not a static busybox (apt-get install busybox-static)" >&2; exit 1; }

# --- the kernel package, unpacked once into the cache
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || { echo "build-bootenv: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
kver=${kpkg#linux-image-}
kroot=$cache/$kpkg
if [ ! -f "$kroot/.complete" ]; then
    rm -rf "$kroot" "$cache/deb.$kpkg"
    mkdir -p "$cache/deb.$kpkg"
    (cd "$cache/deb.$kpkg" && apt-get download "$kpkg" >/dev/null 2>&1) ||
        { echo "build-bootenv: apt-get download $kpkg failed" >&2; exit 1; }
    mkdir -p "$kroot"
    dpkg-deb -x "$cache/deb.$kpkg"/*.deb "$kroot"
    rm -rf "$cache/deb.$kpkg"
    depmod -b "$kroot" "$kver"
    touch "$kroot/.complete"
fi
[ -f "$kroot/boot/vmlinuz-$kver" ] || { echo "build-bootenv: no kernel in $kpkg" >&2; exit 1; }

# --- the initramfs tree
work=$(mktemp -d "${TMPDIR:-/tmp}/ds-bootenv.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,var/lib/diskswarm,usr/bin,usr/share/udhcpc,lib/modules}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/usr/share/udhcpc/default.script"
: >"$root/etc/fstab"
printf 'root:x:0:0:root:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

# diskswarm + exactly the libraries ldd lists + the loader (copy_exec)
install -m 0755 "$ds" "$root/usr/bin/diskswarm"
ldd "$ds" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | sort -u | while read -r lib; do
    real=$(readlink -f "$lib")
    mkdir -p "$root$(dirname "$lib")"
    cp "$real" "$root$lib"
done
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || { echo "build-bootenv: the loader is missing from ldd's list" >&2; exit 1; }
# the initramfs must run it: fail here, not on the machines, if a library is missing
chroot "$root" /usr/bin/diskswarm --help >/dev/null 2>&1 || [ "$(id -u)" != 0 ] ||
    { echo "build-bootenv: diskswarm does not run inside the initramfs tree" >&2; exit 1; }

# kernel modules, dependencies first; the load order goes to /lib/modules/load
: >"$work/order"
for m in $modules; do
    modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }' \
        >>"$work/order" || { echo "build-bootenv: no module $m in $kpkg (skipped)" >&2; }
done
awk '!seen[$0]++' "$work/order" | while read -r ko; do
    rel=${ko#"$kroot"/lib/modules/"$kver"/}
    case $ko in
    *.ko) ;;
    *) echo "build-bootenv: compressed module $ko: not supported (busybox insmod wants .ko)" >&2; exit 1 ;;
    esac
    mkdir -p "$root/lib/modules/$(dirname "$rel")"
    cp "$ko" "$root/lib/modules/$rel"
    echo "/lib/modules/$rel"
done >"$root/lib/modules/load"
[ -s "$root/lib/modules/load" ] || { echo "build-bootenv: no module found" >&2; exit 1; }

# --- write BOOTDIR (reproducibly: fixed mtimes, sorted names, gzip without name/time)
mkdir -p "$out"
epoch=${SOURCE_DATE_EPOCH:-0}
find "$root" -exec touch -h -d "@$epoch" {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) |
    gzip -n -6 >"$out/initrd.img.tmp"
mv -f "$out/initrd.img.tmp" "$out/initrd.img"
cp "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz"
echo "build-bootenv: $out/vmlinuz ($kpkg) and $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1)," \
    "$(wc -l <"$root/lib/modules/load") modules)" >&2
