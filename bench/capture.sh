#!/usr/bin/env bash
# bench/capture.sh — capture throughput against a plain read of the same device under the same cache state, and
# SHA-1 MB/s per core (is the CPU or the device the limit?).
#
#   bench/capture.sh [options] [SIZE_MB (default 1024)] [FILL_PERCENT (default 70)]
#     --repeat R        runs per figure, median reported (default 3)
#     --threads "1 N"   capture --threads values (default: 1 and the number of CPUs)
#     --throttle RATE   (root) read bandwidth limit on the source, e.g. 500M for a SATA SSD, 150M for a disk:
#                       a blkio cgroup around every run (cgroup v1 blkio.throttle or v2 io.max)
#     --image FILE      use this filesystem image instead of making one (it is read, never written)
#     --loop            (root) capture a read-only loop device (--direct-io=on) over the image, not the file;
#                       implied by --throttle
#     --caches "cold hot"  which cache states to measure (default both)
#     --baseline BIN    also time this diskswarm binary (e.g. a build before a change), same runs interleaved
#
# The image is an ext4 filesystem of SIZE_MB filled to about FILL_PERCENT with random files, then copied without
# holes (a real device has none; reading a hole costs no I/O). bench/lib/capture_bench.py then times, cold
# (posix_fadvise(DONTNEED) on the source before every run: no global drop_caches) and hot (page cache):
# dd of the whole device, dd of the used byte count, a plain read of exactly the used extents, and
# `diskswarm capture --threads N`; see that script for what every column means. Target: capture ≥ 90 % of
# the plain read of the used extents under the same cache state, or of the CPU ceiling when SHA-1 on all
# cores is slower than the read.
#
# On a virtual machine the "cold" image file is often served from the host's page cache (GB/s), and the page
# cache of a loop device may not hold (then "hot" on --loop is not hot): the dd lines say what the source really
# delivered. --throttle emulates a real disk of known bandwidth.
set -euo pipefail
cd "$(dirname "$0")/.."
DS_ROOT=$(pwd)
export DS_ROOT
. tests/lib/common.sh
. tests/lib/capture.sh

REPEAT=3 THREADS="1 $(nproc)" THROTTLE='' IMAGE='' USE_LOOP=0 BASELINE='' CACHES='cold hot'
while [ $# -gt 0 ]; do
    case $1 in
    --repeat) REPEAT=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --throttle) THROTTLE=$2; shift 2 ;;
    --image) IMAGE=$2; shift 2 ;;
    --loop) USE_LOOP=1; shift ;;
    --baseline) BASELINE=$2; shift 2 ;;
    --caches) CACHES=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
SIZE_MB=${1:-1024}
FILL=${2:-70}
DISKSWARM=${DISKSWARM:-$DS_ROOT/build/diskswarm}
[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM"; exit 1; }

CG=''
bench_cleanup() {
    local rc=$?
    [ -n "$CG" ] && [ -d "$CG" ] && rmdir "$CG" 2>/dev/null
    (exit "$rc")
    ds_cleanup
}
ds_init
trap bench_cleanup EXIT

if [ -n "$IMAGE" ]; then
    IMG=$IMAGE
else
    IMG=$DS_TMP/bench.img
    echo "making a ${SIZE_MB} MiB ext4 filled to ~${FILL} %"
    cap_make_ext4 "$DS_TMP/sparse.img" "$SIZE_MB" $((SIZE_MB * FILL / 100)) -b 4096
    cp --sparse=never "$DS_TMP/sparse.img" "$IMG"
    rm -f "$DS_TMP/sparse.img"
fi

SRC=$IMG BACKING=''
[ -n "$THROTTLE" ] && USE_LOOP=1
if [ "$USE_LOOP" = 1 ]; then
    is_root || { echo "--loop and --throttle need root"; exit 77; }
    SRC=$(ds_losetup "$IMG" -r --direct-io=on)
    BACKING=$IMG
fi
if [ -n "$THROTTLE" ]; then
    bps=$(numfmt --from=iec "$THROTTLE")
    mm=$(lsblk -dno MAJ:MIN "$SRC" | tr -d ' ')
    if [ -f /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device ]; then
        CG=/sys/fs/cgroup/blkio/diskswarm-bench.$$
        mkdir "$CG"
        echo "$mm $bps" >"$CG/blkio.throttle.read_bps_device"
    elif grep -qw io /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        CG=/sys/fs/cgroup/diskswarm-bench.$$
        mkdir "$CG"
        echo "$mm rbps=$bps" >"$CG/io.max"
    else
        echo "no blkio/io cgroup controller to throttle with"
        exit 77
    fi
    echo "reads from $SRC limited to $bps B/s"
fi

"$DS_PY" bench/lib/capture_bench.py "$DISKSWARM" "$SRC" "$DS_TMP" --repeat "$REPEAT" --threads "$THREADS" \
    --caches "$CACHES" \
    ${CG:+--cgroup "$CG"} ${BACKING:+--backing "$BACKING"} \
    ${BASELINE:+--baseline "$BASELINE"}
