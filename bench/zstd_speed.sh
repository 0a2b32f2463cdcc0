#!/usr/bin/env bash
# bench/zstd_speed.sh — can a receiver decompress ds_zpiece frames as fast as the link brings them, and can a
# sender compress on the fly? zstd speed per core on the OS-like image (tests/lib/osimage.sh: files from /usr,
# zero runs, a real ext4 filesystem), piece by piece as the wire extension uses it.
#
#   bench/zstd_speed.sh [--size-mb 128] [--data-mb 80] [--pieces "256K 1M 4M"] [--levels "1 3 9"] [--cpu N]
#
# The image's used blocks (ext4_used_extents) are packed into one file; bench/zpiece_speed.c (built here with
# cc -O2 against libzstd) compresses each piece alone at each level and decompresses it into exactly one piece.
# It prints, per piece size and level: ratio, compression and decompression MB/s of raw bytes per core (thread
# CPU time, so a shared machine only slows the wall clock), and the link rate one core keeps up with when
# decompressing (decompression MB/s × ratio × 8). --cpu N pins to one core (taskset) to stand for a small CPU;
# numbers from a faster core than the deployed machines have must be scaled by hand.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
SIZE_MB=128 DATA_MB=80 PIECES="256K 1M 4M" LEVELS="1 3 9" CPU=
while (($#)); do
    case $1 in
    --size-mb) SIZE_MB=$2; shift ;;
    --data-mb) DATA_MB=$2; shift ;;
    --pieces) PIECES=$2; shift ;;
    --levels) LEVELS=$2; shift ;;
    --cpu) CPU=$2; shift ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 2 ;;
    esac
    shift
done
. "$ROOT/tests/lib/common.sh"
. "$ROOT/tests/lib/osimage.sh"
ds_init
cc -O2 -o "$DS_TMP/zpiece_speed" "$BENCH/zpiece_speed.c" -lzstd
make_os_image "$DS_TMP/os.img" "$SIZE_MB" "$DATA_MB" >/dev/null
ext4_used_extents "$DS_TMP/os.img" >"$DS_TMP/ext.txt"
while read -r off len; do
    dd if="$DS_TMP/os.img" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none
done <"$DS_TMP/ext.txt" >"$DS_TMP/used.bin"
echo "OS-like image: $(stat -c %s "$DS_TMP/used.bin") bytes used ($(wc -l <"$DS_TMP/ext.txt") extents); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
pin=()
[ -n "$CPU" ] && pin=(taskset -c "$CPU")
to_bytes() { local v=${1^^} n; n=${v%%[KMG]*}; case ${v#"$n"} in K) echo $((n << 10)) ;; M) echo $((n << 20)) ;; *) echo "$n" ;; esac; }
for p in $PIECES; do
    for l in $LEVELS; do
        "${pin[@]}" "$DS_TMP/zpiece_speed" "$DS_TMP/used.bin" "$(to_bytes "$p")" "$l" 3
    done
done
