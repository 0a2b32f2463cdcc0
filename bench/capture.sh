#!/usr/bin/env bash
# bench/capture.sh — capture throughput against a plain sequential read of the same image, and SHA-1 MB/s per
# core.
#
#   bench/capture.sh [SIZE_MB (default 1024)] [FILL_PERCENT (default 70)]
#
# Builds an ext4 image of SIZE_MB filled to about FILL_PERCENT with random files (loop-mounted as root,
# mkfs -d otherwise), then for each of: cold cache (page cache of the image dropped with
# posix_fadvise(DONTNEED) — no global drop_caches) and warm cache:
#   * `dd` of the used extents' byte count as one sequential read of the image (baseline MB/s),
#   * `diskswarm capture` with 1 thread and with all cores (MB/s over the used bytes, SHA-1 MB/s per core).
# The capture reads only the used blocks (~FILL %), so the baseline reads the same number of bytes from
# the start of the image. Target: capture ≥ 90 % of the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
DS_ROOT=$(pwd)
export DS_ROOT
. tests/lib/common.sh
. tests/lib/capture.sh
ds_init

SIZE_MB=${1:-1024}
FILL=${2:-70}
DISKSWARM=${DISKSWARM:-$DS_ROOT/build/diskswarm}
[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM"; exit 1; }
IMG=$DS_TMP/bench.img

echo "making a ${SIZE_MB} MiB ext4 filled to ~${FILL} %"
cap_make_ext4 "$IMG" "$SIZE_MB" $((SIZE_MB * FILL / 100)) -b 4096

drop_cache() { # drop the page cache of one file only
    "$DS_PY" -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"
}

"$DISKSWARM" capture "$IMG" -o "$DS_TMP/warmup" --quiet --json >"$DS_TMP/w.json"
USED=$("$DS_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["partitions"][0]["used_bytes"])' \
    "$DS_TMP/warmup/manifest.json")
echo "used bytes: $USED ($((USED >> 20)) MiB), $(nproc) cores"

seq_read() { # bytes → MB/s
    local t0 t1
    t0=$(date +%s%N)
    dd if="$IMG" of=/dev/null bs=4M count=$((($1 + 4194303) / 4194304)) status=none
    t1=$(date +%s%N)
    awk -v b="$1" -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", b / 1e6 / (ns / 1e9) }'
}

capture_run() { # THREADS → "MB/s sha_per_core"
    rm -rf "$DS_TMP/c"
    "$DISKSWARM" capture "$IMG" -o "$DS_TMP/c" --threads "$1" --json --quiet >"$DS_TMP/c.json"
    "$DS_PY" -c 'import json,sys
for l in open(sys.argv[1]):
    o = json.loads(l)
    if o["type"] == "done": print("%.1f %.1f" % (o["mbps"], o["sha1_mbps_per_core"]))' "$DS_TMP/c.json"
}

printf '\n%-6s %-28s %10s %14s %8s\n' cache what "MB/s" "SHA-1/core" "vs dd"
for cache in cold warm; do
    [ "$cache" = cold ] && drop_cache "$IMG"
    base=$(seq_read "$USED")
    printf '%-6s %-28s %10s %14s %8s\n' "$cache" "dd sequential read" "$base" "-" "100%"
    for th in 1 "$(nproc)"; do
        [ "$cache" = cold ] && drop_cache "$IMG"
        read -r mbps core < <(capture_run "$th")
        printf '%-6s %-28s %10s %14s %7s%%\n' "$cache" "capture --threads $th" "$mbps" "$core" \
            "$(awk -v a="$mbps" -v b="$base" 'BEGIN { printf "%.0f", 100 * a / b }')"
    done
done
