#!/usr/bin/env bash
# bench/cluster.sh — time to put one disk image onto N machines: diskswarm vs unicast HTTP, udpcast multicast
# and an aria2c swarm, on the same image and the same shaped network, N = 1, 4, 8, 16 (32).
#
#   sudo bench/cluster.sh [--rate 100mbit] [--size 128M] [--nodes "1 4 8 16 32"]
#                         [--methods "diskswarm diskswarm-tracker unicast udpcast aria2"] (also: diskswarm-mesh)
#                         [--pieces "128K 1M"] [--aria2-piece 4M] [--udp-bitrate 95m] [--unicast-max 16]
#                         [--nice -10] [--diag] [--quick] [--out DIR] [--image ext4|os] [--compress zstd[:L]|none]
#
# Network: one bridge; the server and every machine is a network namespace with a veth on it (addresses
# 198.18.0.1 and 198.18.0.11..), every link shaped to RATE in both directions with tc tbf (on the bridge-side
# veth = towards the machine, on eth0 in the namespace = from the machine), as demo.sh does. The bridge has
# multicast snooping off (floods multicast: what udpcast needs). Image: a real ext4 filesystem with random
# files (make_ext4_image from tests/lib/common.sh) whose used blocks total about --size; its used extents
# (ext4_used_extents) make the torrents, the extent-packed file (unicast, udpcast) and the Ezio directory
# (aria2c). Images and targets live on /dev/shm (tmpfs), so disks are out of the picture.
# --image os instead fills the ext4 filesystem with files copied from this machine's /usr (executables,
# libraries, text, files with zero runs: make_os_image from tests/lib/osimage.sh), which compresses; with it the
# diskswarm seeder serves a `capture --compress zstd` image (--compress, default zstd for os, none for ext4), so
# compressed pieces travel between diskswarm peers (ds_zpiece). The limit stays U*8/RATE for the uncompressed
# bytes U, the same for every method. Method diskswarm-plain = diskswarm with --no-wire-compress on every peer.
# The diskswarm seeder runs with --super-seed, as `diskswarm serve` does by default; --pieces lists the piece
# sizes to capture with (default 128K and 1M: 128K is capture's default for images up to 2 GiB).
#
# For each method and N (bench/lib/cluster_run.py): server side started and ready, then the N receivers start
# at t0; time = until the last receiver has the whole image (diskswarm: its "complete" JSON line, i.e. every
# piece SHA-1-verified on the target). The physical limit is U*8/RATE (U = used bytes); ratio = time/limit.
# CPU = system-wide busy % over the run from /proc/stat (2 cores here); "CPU-bound" when > 85 %. N = 32 is
# only run for a method whose N = 16 run stayed below 85 % CPU.
#
# Output: a table on stdout; OUT/results.csv, OUT/results.jsonl, OUT/cluster.png, and per-run logs with a
# timeline (per-link rates, CPU) in OUT/logs/. --diag also samples `ss -tin` in every namespace (who sent how
# much to whom) and prints a diagnosis of every diskswarm run (bench/lib/cluster_diag.py).
#
# Everything created (namespaces, bridge, veths, processes, files on /dev/shm) is removed on exit, also on
# failure or Ctrl-C. Needs root, ip/tc, udp-sender/udp-receiver, aria2c, opentracker, curl, /usr/bin/python3
# with matplotlib.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
DS_ROOT=$(cd "$BENCH/.." && pwd)
export DS_ROOT
DISKSWARM=${DISKSWARM:-$DS_ROOT/build/diskswarm}
export DISKSWARM
PY=/usr/bin/python3

RATE=100mbit SIZE=128M NODES="1 4 8 16 32" METHODS="diskswarm diskswarm-tracker unicast udpcast aria2"
PIECES="128K 1M" ARIA2_PIECE=4M UNICAST_MAX=16 DIAG=0 OUT=${OUT:-/tmp/diskswarm-bench} QUICK=0 UDP_BITRATE=
IMAGE=ext4 COMPRESS=
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
    --rate) RATE=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --nodes) NODES=$2; shift ;;
    --methods) METHODS=$2; shift ;;
    --pieces) PIECES=$2; shift ;;
    --aria2-piece) ARIA2_PIECE=$2; shift ;;
    --udp-bitrate) UDP_BITRATE=$2; shift ;;
    --unicast-max) UNICAST_MAX=$2; shift ;;
    --nice) export CLUSTER_NICE=$2; shift ;;
    --fetch-args) export CLUSTER_FETCH_ARGS=$2; shift ;;
    --seed-args) export CLUSTER_SEED_ARGS=$2; shift ;;
    --image) IMAGE=$2; shift ;;
    --compress) COMPRESS=$2; shift ;;
    --diag) DIAG=1 ;;
    --quick) QUICK=1 ;;
    --out) OUT=$2; shift ;;
    -h | --help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
    esac
    shift
done
if ((QUICK)); then NODES="1 4" SIZE=48M; fi
case $IMAGE in ext4 | os) ;; *) echo "--image is ext4 or os" >&2; exit 2 ;; esac
[ -n "$COMPRESS" ] || { [ "$IMAGE" = os ] && COMPRESS=zstd || COMPRESS=none; }

# shellcheck source=../tests/lib/common.sh
. "$DS_ROOT/tests/lib/common.sh"

is_root || { echo "needs root (network namespaces, tc)" >&2; exit 77; }
for t in ip tc udp-sender udp-receiver aria2c opentracker curl mkfs.ext4 dumpe2fs ss; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install iproute2 udpcast aria2 opentracker curl e2fsprogs)" >&2; exit 77; }
done
"$PY" -c 'import matplotlib' 2>/dev/null || { echo "missing python3-matplotlib for $PY" >&2; exit 77; }
if [ ! -x "$DISKSWARM" ]; then
    echo "building $DISKSWARM" >&2
    [ -d /tmp/b-h12 ] || meson setup /tmp/b-h12 "$DS_ROOT" >/dev/null
    ninja -C /tmp/b-h12 >/dev/null
fi

to_bytes() { # 128M / 1G / 1048576 -> bytes
    local v=${1^^} n
    n=${v%%[KMG]*}
    case ${v#"$n"} in K) echo $((n << 10)) ;; M) echo $((n << 20)) ;; G) echo $((n << 30)) ;; *) echo "$n" ;; esac
}
rate_bps() {
    local r=${1,,} n
    n=${r%%[a-z]*}
    case ${r#"$n"} in
    gbit) echo $((n * 1000000000)) ;; mbit) echo $((n * 1000000)) ;; kbit) echo $((n * 1000)) ;; *) echo "$n" ;;
    esac
}
SIZE_B=$(to_bytes "$SIZE")
RATE_BPS=$(rate_bps "$RATE")
((RATE_BPS > 0 && SIZE_B >= (16 << 20))) || { echo "bad --rate or --size (>= 16M)" >&2; exit 2; }
MAXN=0
for n in $NODES; do ((n > MAXN)) && MAXN=$n; done
((MAXN >= 1 && MAXN <= 64)) || { echo "--nodes must be 1..64" >&2; exit 2; }
[ -z "$UDP_BITRATE" ] && UDP_BITRATE=$((RATE_BPS * 95 / 100 / 1000000))m

# memory: image (fs = 2*U) + packed + Ezio copy + MAXN targets (sparse, U written each) + slack
need_mb=$(((SIZE_B * (4 + MAXN) >> 20) + 512))
shm_mb=$(df -Pm /dev/shm | awk 'NR == 2 { print $4 }')
avail_mb=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
if ((need_mb > shm_mb || need_mb > avail_mb * 8 / 10)); then
    echo "not enough memory: need ~${need_mb} MiB on /dev/shm (free ${shm_mb}, MemAvailable ${avail_mb})" >&2
    exit 2
fi

export TMPDIR=/dev/shm
ds_init
W=$DS_TMP
mkdir -p "$OUT/logs"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
rm -rf "${OUT:?}/logs/"*
log() { printf '[cluster] %s\n' "$*" >&2; }

# ------------------------------------------------------------------------------------------------ image
SIZE_MB=$((SIZE_B >> 20))
FS_MB=$((SIZE_MB * 2 + 64))
# used = data + inode tables (~1.6 % of the fs) + journal (mke2fs: 16 MiB below 1 GiB, 32 below 2, 64 below 16)
# + directories: aim the data below --size
jr=$((FS_MB < 128 ? 4 : (FS_MB < 1024 ? 16 : (FS_MB < 2048 ? 32 : 64))))
DATA_MB=$((SIZE_MB - FS_MB / 60 - jr - 2))
((DATA_MB > 4)) || DATA_MB=4
IMG=$W/source.img
if [ "$IMAGE" = os ]; then
    # shellcheck source=../tests/lib/osimage.sh
    . "$DS_ROOT/tests/lib/osimage.sh"
    log "image: ${FS_MB} MiB ext4, ~${DATA_MB} MiB of files from /usr (aim: ${SIZE_MB} MiB used)"
    make_os_image "$IMG" "$FS_MB" "$DATA_MB" >/dev/null
else
    log "image: ${FS_MB} MiB ext4, ~${DATA_MB} MiB of random files (aim: ${SIZE_MB} MiB used)"
    make_ext4_image "$IMG" "$FS_MB" "$DATA_MB" >/dev/null
fi
ext4_used_extents "$IMG" >"$W/extents.txt"
USED=$(extents_total "$W/extents.txt")
NEXT=$(wc -l <"$W/extents.txt")
mkdir -p "$W/pub"
PACKED=$W/pub/image.packed
PACKED_SHA=$("$PY" "$BENCH/lib/cluster_prep.py" "$IMG" "$W/extents.txt" "$PACKED" "$W/ezio" sda1)
log "used: $USED bytes ($((USED >> 20)) MiB) in $NEXT extents; limit U*8/RATE = $(awk -v u="$USED" -v r="$RATE_BPS" 'BEGIN { printf "%.2f", u * 8 / r }') s at $RATE"

mk_torrent() { # OUT PIECE [TRACKER]
    local args=("$IMG" --extents "$W/extents.txt" -o "$1" --name sda1 --piece-size "$2")
    [ -n "${3:-}" ] && args+=(--tracker "$3")
    "$DISKSWARM" make-torrent "${args[@]}" >/dev/null
}
torrents_json="" seed_from_json=""
for p in $PIECES; do
    mk_torrent "$W/pex-$p.torrent" "$p"
    mk_torrent "$W/trk-$p.torrent" "$p" "http://198.18.0.1:6970/announce"
    torrents_json+="\"pex-$p\": \"$W/pex-$p.torrent\", \"trk-$p\": \"$W/trk-$p.torrent\", "
    if [ "$COMPRESS" != none ]; then
        # the seeder's compressed image: capture finds the same used blocks, so the same info-hash
        "$DISKSWARM" capture "$IMG" -o "$W/cap-$p" --name sda1 --piece-size "$p" --compress "$COMPRESS" 2>"$W/cap-$p.err" >/dev/null ||
            { cat "$W/cap-$p.err" >&2; exit 1; }
        ih1=$("$DISKSWARM" info "$W/pex-$p.torrent" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
        ih2=$("$DISKSWARM" info "$W/cap-$p/sda1.torrent" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
        [ "$ih1" = "$ih2" ] || { echo "capture found other extents than ext4_used_extents ($ih1 / $ih2)" >&2; exit 1; }
        zb=$(stat -c %s "$W/cap-$p/sda1.dsimg")
        log "pieces $p: capture --compress $COMPRESS: $zb bytes for $USED (ratio $(awk -v a="$zb" -v b="$USED" 'BEGIN { printf "%.3f, %.2f:1", a / b, b / a }'))"
        seed_from_json+="\"$p\": \"$W/cap-$p\", "
    fi
done
mk_torrent "$W/aria2.torrent" "$ARIA2_PIECE" "http://198.18.0.1:6969/announce"
ARIA2_IH=$("$DISKSWARM" info "$W/aria2.torrent" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')

# ------------------------------------------------------------------------------------------------ network
TAG=dscl$(($$ % 1000))
BR=${TAG}br
ip link add "$BR" type bridge
ds_track_link "$BR"
ip link set "$BR" type bridge mcast_snooping 0 stp_state 0 forward_delay 0
ip link set "$BR" up
netns_json="" addrs_json="" veths_json=""
for ((i = 0; i <= MAXN; i++)); do
    ns=${TAG}n$i
    if ((i == 0)); then addr=198.18.0.1; else addr=198.18.0.$((10 + i)); fi
    ip netns add "$ns"
    ds_track_netns "$ns"
    ip link add "${TAG}v$i" type veth peer name "${TAG}p$i"
    ds_track_link "${TAG}v$i"
    ip link set "${TAG}p$i" netns "$ns"
    ip -n "$ns" link set "${TAG}p$i" name eth0
    ip -n "$ns" addr add "$addr/15" brd + dev eth0  # udp-receiver finds the sender by broadcast
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add 224.0.0.0/4 dev eth0
    ip link set "${TAG}v$i" master "$BR" up
    tc qdisc add dev "${TAG}v$i" root tbf rate "$RATE" burst 256kb latency 50ms
    ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$RATE" burst 256kb latency 50ms
    netns_json+="\"$ns\"," addrs_json+="\"$addr\"," veths_json+="\"${TAG}v$i\","
done
log "network: bridge $BR, server + $MAXN machines, every link $RATE each way (tbf)"

ARIA_OPTS='["--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=true",
  "--disable-ipv6=true", "--file-allocation=none", "--summary-interval=0", "--console-log-level=notice",
  "--bt-max-peers=64", "--bt-request-peer-speed-limit=0", "--bt-tracker-interval=5", "--check-certificate=false",
  "--auto-save-interval=0"]'
CFG=$W/config.json
cat >"$CFG" <<EOF
{"work": "$W", "logdir": "$OUT/logs", "results": "$RESULTS", "diskswarm": "$DISKSWARM",
 "image": "$IMG", "image_size": $(stat -c %s "$IMG"), "used": $USED, "rate_bps": $RATE_BPS,
 "packed": "$PACKED", "packed_sha256": "$PACKED_SHA", "ezio_dir": "$W/ezio", "name": "sda1",
 "torrents": { $torrents_json "aria2": "$W/aria2.torrent"}, "aria2_infohash": "$ARIA2_IH",
 "seed_from": { ${seed_from_json%, } }, "image_kind": "$IMAGE", "compress": "$COMPRESS",
 "default_piece": "${PIECES%% *}", "udpcast_bitrate": "$UDP_BITRATE", "aria2_opts": $ARIA_OPTS,
 "netns": [${netns_json%,}], "addrs": [${addrs_json%,}], "veths": [${veths_json%,}]}
EOF

# ------------------------------------------------------------------------------------------------ runs
diag=()
((DIAG)) && diag=(--diag)
declare -A cpu16=()
for m in $METHODS; do
    variants=("")
    [[ $m == diskswarm* ]] && read -ra variants <<<"$PIECES"
    for p in "${variants[@]}"; do
        label=$m
        [ -n "$p" ] && [ "$(wc -w <<<"$PIECES")" -gt 1 ] && label="$m/$p"
        for n in $NODES; do
            if [ "$m" = unicast ] && ((n > UNICAST_MAX)); then
                log "unicast N=$n skipped (--unicast-max $UNICAST_MAX): it takes N x the limit, $((n)) x"
                continue
            fi
            if ((n > 16)) && [ "${cpu16[$label]:-ok}" = high ]; then
                log "$label N=$n skipped: N=16 was CPU-bound"
                continue
            fi
            log "run: $label N=$n"
            line=$("$PY" "$BENCH/lib/cluster_run.py" "$CFG" "$m" "$n" --label "${label//\//-}" ${p:+--piece "$p"} \
                "${diag[@]}") || log "  $label N=$n did not complete (see $OUT/logs)"
            [ -n "$line" ] && "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print("  %s N=%d: %s s (%.2fx limit %s s), CPU %s%% (bg %s%%)%s %s" % (r["method"], r["n"], r["seconds"], r["ratio"] or 0, r["limit"], r["cpu"], r["bg_cpu"], ", wire/payload %s, decomp %s MB/s" % (r["wire_ratio"], r.get("decomp_mbps")) if "wire_ratio" in r else "", r["notes"]))' "$line" >&2
            if ((n == 16)) && [ -n "$line" ]; then
                c=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["cpu"])' "$line")
                awk -v c="$c" 'BEGIN { exit !(c > 85) }' && cpu16[$label]=high
            fi
        done
    done
done

"$PY" "$BENCH/cluster_plot.py" "$RESULTS" "$OUT" --rate "$RATE" --extents "$NEXT"
((DIAG)) && "$PY" "$BENCH/lib/cluster_diag.py" "$RESULTS" || true
