#!/usr/bin/env bash
# demo.sh — diskswarm end to end on one box: one image server and several "machines" receive the same disk.
#
#   sudo ./demo.sh          # fresh Debian 12: installs what it needs, builds, runs, cleans up
#   ./demo.sh               # without root: same swarm, processes on 127.0.0.1, no link shaping
#
# Steps: install packages (tests/deps.txt) → build → make a ~64 MiB ext4 sample disk holding real files from
# /usr/share → list its used extents (dumpe2fs) → `diskswarm make-torrent` → start machines. As root with
# working `ip netns`, every machine is a network namespace on a bridge, with an address from 198.18.0.0/15
# (server 198.18.0.1, machines 198.18.0.11, .12, ...) and its link shaped both ways with tbf (DEMO_RATE,
# default 200mbit); otherwise every process runs on 127.0.0.1. The server runs `diskswarm seed`, each machine
# `diskswarm fetch --json` onto its own blank disk file while a live table shows their progress. At the end
# every disk is checked (e2fsck, sha256 of every file, `diskswarm verify`) and a PASS/FAIL summary compares
# the total time with the physical limit (used bytes × 8 / link rate). Everything created — namespaces,
# bridge, loop mounts, processes, files — is removed on exit, also on failure or Ctrl-C.
#
# Environment: DEMO_MACHINES (default 4, max 20), DEMO_RATE (tc rate, default 200mbit), DEMO_TIMEOUT (seconds
# the swarm may take, default 300), DEMO_PIECE (default 1M), DEMO_LOOPBACK=1 (force the 127.0.0.1 mode),
# DS_NO_INSTALL=1 (skip apt-get), DS_KEEP=1 (keep the work directory).
set -euo pipefail
cd "$(dirname "$0")"
DS_ROOT=$(pwd)
export DS_ROOT
# shellcheck source=tests/lib/common.sh
. tests/lib/common.sh

N=${DEMO_MACHINES:-4}
RATE=${DEMO_RATE:-200mbit}
LIMIT=${DEMO_TIMEOUT:-300}
PIECE=${DEMO_PIECE:-1M}
FS_MB=64
DATA_MB=30
PORT=6881
((N >= 1 && N <= 20)) || { echo "DEMO_MACHINES must be 1..20" >&2; exit 2; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ -t 1 ] || say() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------------------
say "packages"
ds_install_deps
for tool in meson ninja mkfs.ext4 e2fsck dumpe2fs sha256sum; do
    command -v "$tool" >/dev/null || { echo "missing $tool (run as root to install packages)" >&2; exit 1; }
done

say "build"
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
DISKSWARM=$DS_ROOT/build/diskswarm
echo "built $DISKSWARM ($("$DISKSWARM" --version))"

ds_init
W=$DS_TMP

# ---------------------------------------------------------------------------------------------------------
# copy_sample DIR: about DATA_MB MiB of real files from /usr/share into DIR
copy_sample() {
    local dst=$1 budget=$((DATA_MB * 1048576)) sum=0 d size
    for d in /usr/share/*/; do
        d=${d%/}
        size=$(du -sb "$d" 2>/dev/null | cut -f1) || continue
        [ -n "$size" ] && ((size > 0 && sum + size <= budget)) || continue
        cp -a "$d" "$dst/" 2>/dev/null || true
        sum=$((sum + size))
        ((sum > budget * 9 / 10)) && break
    done
    echo "copied $(find "$dst" -type f | wc -l) files, $((sum / 1048576)) MiB from /usr/share"
}

say "sample disk: ${FS_MB} MiB ext4 with real files"
DISK=$W/server-disk.img
truncate -s "${FS_MB}M" "$DISK"
if is_root; then
    mkfs.ext4 -q -F -b 4096 -N 16000 -L sample-disk "$DISK"
    loop=$(ds_losetup "$DISK")
    ds_mount "$loop" "$W/mnt"
    mkdir -p "$W/mnt/usr/share"
    copy_sample "$W/mnt/usr/share"
    sync -f "$W/mnt"
    ds_manifest "$W/mnt" >"$W/manifest"
    ds_umount "$W/mnt"
    ds_loop_detach "$loop"
else
    mkdir -p "$W/stage/usr/share"
    copy_sample "$W/stage/usr/share"
    ds_manifest "$W/stage" >"$W/manifest"
    mkfs.ext4 -q -F -b 4096 -N 16000 -L sample-disk -d "$W/stage" "$DISK"
    rm -rf "$W/stage"
fi
e2fsck -fn "$DISK" >/dev/null 2>&1 || { echo "sample disk is not clean" >&2; exit 1; }

ext4_used_extents "$DISK" >"$W/extents.txt"
USED=$(extents_total "$W/extents.txt")
echo "$(wc -l <"$W/extents.txt") used extents, $USED bytes used of $((FS_MB * 1048576))"

say "torrent"
"$DISKSWARM" make-torrent "$DISK" --extents "$W/extents.txt" -o "$W/disk.torrent" --name sample-disk \
    --piece-size "$PIECE" >/dev/null
"$DISKSWARM" info "$W/disk.torrent"

# ---------------------------------------------------------------------------------------------------------
MODE=loopback
TAG=dsdm$(($$ % 10000))
if [ -z "${DEMO_LOOPBACK:-}" ] && is_root && command -v ip >/dev/null && command -v tc >/dev/null &&
    ip netns add "${TAG}probe" 2>/dev/null; then
    ip netns del "${TAG}probe"
    MODE=netns
fi

names=(server) addrs=() ports=() nss=()
for ((i = 1; i <= N; i++)); do names+=("machine$i"); done

# rate_bps RATE: tc rate → bits per second
rate_bps() {
    local r=${1,,} n
    n=${r%%[a-z]*}
    case ${r#"$n"} in
    gbit) echo $((n * 1000000000)) ;; mbit) echo $((n * 1000000)) ;; kbit) echo $((n * 1000)) ;;
    bit | "") echo "$n" ;; *) echo 0 ;;
    esac
}

if [ "$MODE" = netns ]; then
    say "network: bridge + $((N + 1)) namespaces, every link ${RATE} each way (tbf)"
    BR=${TAG}br
    ip link add "$BR" type bridge
    ds_track_link "$BR"
    ip link set "$BR" up
    for ((i = 0; i <= N; i++)); do
        ns=${TAG}n$i
        if ((i == 0)); then addr=198.18.0.1; else addr=198.18.0.$((10 + i)); fi
        ip netns add "$ns"
        ds_track_netns "$ns"
        ip link add "${TAG}v$i" type veth peer name "${TAG}p$i"
        ds_track_link "${TAG}v$i"
        ip link set "${TAG}p$i" netns "$ns"
        ip -n "$ns" link set "${TAG}p$i" name eth0
        ip -n "$ns" addr add "$addr/15" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
        ip link set "${TAG}v$i" master "$BR" up
        # shape both directions: bridge side = towards the machine, eth0 = from the machine
        tc qdisc add dev "${TAG}v$i" root tbf rate "$RATE" burst 256kb latency 50ms
        ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$RATE" burst 256kb latency 50ms
        nss+=("$ns") addrs+=("$addr") ports+=("$PORT")
        printf '  %-9s %-13s netns %s\n' "${names[i]}" "$addr" "$ns"
    done
    PHYS_BPS=$(rate_bps "$RATE")
else
    say "network: loopback (not root, or network namespaces unavailable): all processes on 127.0.0.1"
    for ((i = 0; i <= N; i++)); do
        nss+=("") addrs+=(127.0.0.1) ports+=("$(free_port)")
        printf '  %-9s 127.0.0.1:%s\n' "${names[i]}" "${ports[i]}"
    done
    PHYS_BPS=0
fi

# in_ns I: the command prefix that runs something in machine I's namespace (empty in loopback mode)
in_ns() { IN_NS=(); [ -z "${nss[$1]}" ] || IN_NS=(ip netns exec "${nss[$1]}"); }

# ---------------------------------------------------------------------------------------------------------
say "swarm: 1 server seeding, $N machines fetching"
pids=()
in_ns 0
ds_bg_split "$W/server.out" "$W/server.err" "${IN_NS[@]}" timeout -k 5 $((LIMIT + 30)) \
    "$DISKSWARM" seed "$W/disk.torrent" --from "$DISK" --listen "${addrs[0]}:${ports[0]}" --expect "$N" --json
pids+=("$DS_BG_PID")
if [ "$MODE" = netns ]; then wait_port "${ports[0]}" 20 "${nss[0]}"; else wait_port "${ports[0]}" 20; fi ||
    { echo "server did not start:"; cat "$W/server.err"; exit 1; }

T0=$(date +%s.%N)
for ((i = 1; i <= N; i++)); do
    truncate -s "${FS_MB}M" "$W/${names[i]}-disk.img"
    args=(--listen "${addrs[i]}:${ports[i]}")
    for ((j = 0; j <= N; j++)); do
        ((j == i)) || args+=(--peer "${addrs[j]}:${ports[j]}")
    done
    in_ns "$i"
    ds_bg_split "$W/${names[i]}.out" "$W/${names[i]}.err" "${IN_NS[@]}" timeout -k 5 "$LIMIT" \
        "$DISKSWARM" fetch "$W/disk.torrent" --to "$W/${names[i]}-disk.img" "${args[@]}" --expect "$N" --json
    pids+=("$DS_BG_PID")
done

cat >"$W/table.py" <<'PY'
import json, sys
tty, elapsed, limit_s = sys.argv[1] == "1", float(sys.argv[2]), float(sys.argv[3])
rows = []
for spec in sys.argv[4:]:
    name, addr, out, state = spec.split("|")
    last = {}
    try:
        for line in open(out):
            line = line.strip()
            if line.startswith("{"):
                try:
                    last = json.loads(line)
                except ValueError:
                    pass
    except OSError:
        pass
    rows.append((name, addr, state, last))
def human(bps):
    bps = float(bps or 0) * 8
    for unit in ("bit/s", "kbit/s", "Mbit/s", "Gbit/s"):
        if bps < 1000 or unit == "Gbit/s":
            return "%.1f %s" % (bps, unit)
        bps /= 1000
out = []
if tty:
    out.append("\033[H\033[J")
out.append("diskswarm demo — %.1f s elapsed%s" % (elapsed, "  (physical limit %.1f s)" % limit_s if limit_s else ""))
out.append("%-9s %-15s %-8s %-24s %7s %13s %13s %5s" % ("machine", "address", "state", "progress", "pieces",
                                                        "down", "up", "peers"))
for name, addr, state, o in rows:
    pct = float(o.get("percent", 0.0) or 0.0)
    if o.get("type") == "done":
        pct = 100.0 if o.get("ok") else pct
    bar = "#" * int(pct / 100 * 20 + 0.5)
    pieces = "%s/%s" % (o.get("pieces", "?"), o.get("num_pieces", "?"))
    out.append("%-9s %-15s %-8s [%-20s]%3.0f%% %7s %13s %13s %5s" % (
        name, addr, state, bar, pct, pieces, human(o.get("down_bps")), human(o.get("up_bps")), o.get("peers", "")))
print("\n".join(out), flush=True)
PY

declare -A end_time=() rc_of=()
tty=0
[ -t 1 ] && tty=1
PHYS_LIMIT=0
if ((PHYS_BPS > 0)); then PHYS_LIMIT=$(awk -v b="$USED" -v r="$PHYS_BPS" 'BEGIN { printf "%.2f", b * 8 / r }'); fi
last_print=-1
while :; do
    now=$(date +%s.%N)
    el=$(awk -v a="$T0" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
    alive=0
    specs=()
    for ((i = 0; i <= N; i++)); do
        pid=${pids[i]}
        if [ -z "${rc_of[$i]:-}" ] && ! kill -0 "$pid" 2>/dev/null; then
            rc=0
            wait "$pid" || rc=$?
            rc_of[$i]=$rc
            end_time[$i]=$el
        fi
        if [ -z "${rc_of[$i]:-}" ]; then
            alive=$((alive + 1)) state=running
        elif [ "${rc_of[$i]}" = 0 ]; then state="done"; else state="exit ${rc_of[$i]}"; fi
        if [ "$MODE" = netns ]; then a=${addrs[i]}; else a=127.0.0.1:${ports[i]}; fi
        specs+=("${names[i]}|$a|$W/${names[i]}.out|$state")
    done
    sec=${el%.*}
    if ((tty)) || ((sec / 2 != last_print)) || ((alive == 0)); then
        "$DS_PY" "$W/table.py" "$tty" "$el" "$PHYS_LIMIT" "${specs[@]}"
        last_print=$((sec / 2))
    fi
    ((alive == 0)) && break
    if ((sec > LIMIT + 40)); then
        echo "time limit reached; stopping"
        break
    fi
    sleep 0.5
done

# machines' finish time = the last machine's exit
TOTAL=0
for ((i = 1; i <= N; i++)); do
    t=${end_time[$i]:-0}
    TOTAL=$(awk -v a="$TOTAL" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
done

# ---------------------------------------------------------------------------------------------------------
say "checking every disk (e2fsck, sha256 of $(wc -l <"$W/manifest") files, diskswarm verify)"
pass=0 failc=0
printf '%-9s %-6s %8s %-8s %-8s %s\n' machine exit time e2fsck+sha verify result
for ((i = 1; i <= N; i++)); do
    img=$W/${names[i]}-disk.img
    rc=${rc_of[$i]:-running}
    fs=FAIL vf=FAIL
    check_ext4_target "$img" "$W/manifest" 2>"$W/${names[i]}.check" && fs=ok
    "$DISKSWARM" verify "$W/disk.torrent" "$img" >/dev/null 2>&1 && vf=ok
    if [ "$rc" = 0 ] && [ "$fs" = ok ] && [ "$vf" = ok ]; then
        res=PASS pass=$((pass + 1))
    else
        res=FAIL failc=$((failc + 1))
    fi
    printf '%-9s %-6s %7ss %-8s %-8s %s\n' "${names[i]}" "$rc" "${end_time[$i]:--}" "$fs" "$vf" "$res"
    if [ "$res" = FAIL ]; then
        tail -n 5 "$W/${names[i]}.err" "$W/${names[i]}.check" 2>/dev/null | sed 's/^/    /'
        echo "    last status: $(tail -n 1 "$W/${names[i]}.out" 2>/dev/null | cut -c1-400)"
    fi
done
srv_rc=${rc_of[0]:-running}
echo "server: exit $srv_rc after ${end_time[0]:--}s ($(grep -c '"type"' "$W/server.out" 2>/dev/null || echo 0) status lines)"
[ "$srv_rc" = 0 ] || tail -n 5 "$W/server.err" | sed 's/^/    /'

say "summary"
echo "mode: $MODE, $N machines, $USED bytes used ($(awk -v b="$USED" 'BEGIN { printf "%.1f", b / 1048576 }') MiB) per disk"
if ((PHYS_BPS > 0)); then
    echo "total time ${TOTAL}s; physical limit ${PHYS_LIMIT}s (used bytes x 8 / $RATE) → $(awk -v t="$TOTAL" -v l="$PHYS_LIMIT" 'BEGIN { printf "%.1fx", (l > 0 ? t / l : 0) }') the limit"
    echo "(unicast from the server alone would need $(awk -v l="$PHYS_LIMIT" -v n="$N" 'BEGIN { printf "%.1f", l * n }')s)"
else
    echo "total time ${TOTAL}s (loopback: no link rate, so no physical limit to compare with)"
fi
if ((failc == 0 && pass == N)); then
    echo "PASS: all $N machines hold a verified, mountable copy of the disk"
    exit 0
fi
echo "FAIL: $failc of $N machines failed"
exit 1
