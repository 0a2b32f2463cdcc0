#!/usr/bin/env bash
# demo.sh — diskswarm's main job on one box: an image server and several "machines" receive the same disk.
#
#   sudo ./demo.sh          # fresh Debian 12: installs what it needs, builds, runs, cleans up
#   ./demo.sh               # without root: same swarm, processes on 127.0.0.1, no link shaping
#
# Steps: install packages (tests/deps.txt) → build → make a GPT sample disk (an EFI System partition with
# FAT32 written by mtools + an ext4 partition holding real files from /usr/share) → `diskswarm capture` it →
# `diskswarm serve IMAGE_DIR --expect N` on the server → `diskswarm deploy http://SERVER:6969 --to TARGET --yes`
# on every machine. As root with working `ip netns`, every machine is a network namespace on a bridge, with
# an address from 198.18.0.0/15 (server 198.18.0.1, machines 198.18.0.11, .12, ...; the host 198.18.0.254, so
# the dashboard opens in a browser) and its link shaped both ways with tbf (DEMO_RATE, default 200mbit);
# otherwise every process runs on 127.0.0.1. Targets are blank loop devices as root, blank disk files
# otherwise. A live table shows every machine's progress; the dashboard's address is printed. At the end
# every target is checked against the source disk (`sfdisk -d` equal, boot gap equal, fsck.vfat and e2fsck
# clean, the sha256 of every file on both partitions, `diskswarm verify`) and a PASS/FAIL summary compares the
# total time with the physical limit (used bytes × 8 / link rate). Everything created — namespaces, bridge,
# loop devices, mounts, processes, files — is removed on exit, also on failure or Ctrl-C.
#
# Environment: DEMO_MACHINES (default 4, max 20), DEMO_RATE (tc rate, default 200mbit), DEMO_TIMEOUT (seconds
# the swarm may take, default 300), DEMO_PIECE (default: capture's choice, 128K for this disk),
# DEMO_LOOPBACK=1 (force the 127.0.0.1 mode), DEMO_TARGET=file (blank files even as root),
# DISKSWARM=BINARY (use it instead of building), DS_NO_INSTALL=1 (skip apt-get), DS_KEEP=1 (keep the work dir).
set -euo pipefail
cd "$(dirname "$0")"
DS_ROOT=$(pwd)
export DS_ROOT
PREBUILT=${DISKSWARM:-}   # a binary given by the caller (tests/e2e/demo_smoke.sh) is used instead of building
# shellcheck source=tests/lib/common.sh
. tests/lib/common.sh

N=${DEMO_MACHINES:-4}
RATE=${DEMO_RATE:-200mbit}
LIMIT=${DEMO_TIMEOUT:-300}
PIECE=${DEMO_PIECE:-}
DISK_MB=128
EFI_MB=40
DATA_MB=30
HTTP_PORT=6969
PORT=6881
((N >= 1 && N <= 20)) || { echo "DEMO_MACHINES must be 1..20" >&2; exit 2; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ -t 1 ] || say() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------------------
say "packages"
ds_install_deps
for tool in meson ninja sfdisk mkfs.ext4 e2fsck mkfs.vfat fsck.vfat mcopy sha256sum curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool (run as root to install packages)" >&2; exit 1; }
done

say "build"
if [ -n "$PREBUILT" ] && [ -x "$PREBUILT" ]; then
    DISKSWARM=$PREBUILT
else
    [ -f build/build.ninja ] || meson setup build >/dev/null
    ninja -C build >/dev/null
    DISKSWARM=$DS_ROOT/build/diskswarm
fi
echo "built $DISKSWARM ($("$DISKSWARM" --version))"

ds_init
W=$DS_TMP
echo "work directory: $W"
# shellcheck source=tests/lib/gpt_disk.sh
. tests/lib/gpt_disk.sh

# ---------------------------------------------------------------------------------------------------------
# sample_files DIR: about DATA_MB MiB of real files from /usr/share into DIR/usr/share
sample_files() {
    local dst=$1/usr/share budget=$((DATA_MB * 1048576)) sum=0 d size
    mkdir -p "$dst"
    for d in /usr/share/*/; do
        d=${d%/}
        size=$(du -sb "$d" 2>/dev/null | cut -f1) || continue
        [ -n "$size" ] && ((size > 0 && sum + size <= budget)) || continue
        cp -a "$d" "$dst/" 2>/dev/null || true
        sum=$((sum + size))
        ((sum > budget * 9 / 10)) && break
    done
    echo "copied $(find "$dst" -type f | wc -l) files, $((sum / 1048576)) MiB from /usr/share" >&2
}

say "sample disk: ${DISK_MB} MiB GPT — EFI System (FAT32, ${EFI_MB} MiB) + ext4 with real files"
DISK=$W/server-disk.img
gpt_make_disk "$DISK" "$DISK_MB" "$EFI_MB" sample_files || { echo "could not make the sample disk" >&2; exit 1; }
sfdisk -l "$DISK" | sed -n '/^Device/,$p'
echo "FAT: $(wc -l <"$DISK.fat.manifest") files; ext4: $(wc -l <"$DISK.ext4.manifest") files"

say "capture: diskswarm capture $DISK -o IMAGE_DIR"
IMG=$W/image
"$DISKSWARM" capture "$DISK" -o "$IMG" --name sda ${PIECE:+--piece-size "$PIECE"} 2>&1 | grep -v '^hash ' || true
[ -s "$IMG/manifest.json" ] || { echo "capture failed" >&2; exit 1; }
USED=$("$DS_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["torrents"][0]["bytes"])' "$IMG/manifest.json")
echo "$USED bytes to send of $((DISK_MB * 1048576)) (partition table, boot gap, used blocks of both filesystems)"

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
    # the host joins the bridge too (198.18.0.254), so the dashboard opens in a browser on this machine
    ip addr add 198.18.0.254/15 dev "$BR"
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
        if ((i == 0)); then ports+=("$HTTP_PORT"); else ports+=("$PORT"); fi
        nss+=("$ns") addrs+=("$addr")
        printf '  %-9s %-13s netns %s\n' "${names[i]}" "$addr" "$ns"
    done
    PHYS_BPS=$(rate_bps "$RATE")
    SERVER_PEER_PORT=$((HTTP_PORT + 1))
else
    say "network: loopback (not root, or network namespaces unavailable): all processes on 127.0.0.1"
    for ((i = 0; i <= N; i++)); do
        nss+=("") addrs+=(127.0.0.1) ports+=("$(free_port)")
        printf '  %-9s 127.0.0.1:%s\n' "${names[i]}" "${ports[i]}"
    done
    PHYS_BPS=0
    SERVER_PEER_PORT=$(free_port)
fi

# in_ns I: the command prefix that runs something in machine I's namespace (empty in loopback mode)
in_ns() { IN_NS=(); [ -z "${nss[$1]}" ] || IN_NS=(ip netns exec "${nss[$1]}"); }

# ---------------------------------------------------------------------------------------------------------
say "swarm: diskswarm serve on the server, diskswarm deploy on $N machines"
URL=http://${addrs[0]}:${ports[0]}
in_ns 0
echo "server:   diskswarm serve $IMG --listen ${addrs[0]}:${ports[0]} --expect $N"
ds_bg_split "$W/server.out" "$W/server.err" "${IN_NS[@]}" timeout -k 5 $((LIMIT + 60)) \
    "$DISKSWARM" serve "$IMG" --listen "${addrs[0]}:${ports[0]}" --peer-port "$SERVER_PEER_PORT" --expect "$N" --json
SERVER_PID=$DS_BG_PID
if [ "$MODE" = netns ]; then wait_port "${ports[0]}" 20 "${nss[0]}"; else wait_port "${ports[0]}" 20; fi ||
    { echo "server did not start:"; cat "$W/server.err"; exit 1; }
DASH=$(grep -o 'dashboard: *http://[^ ]*' "$W/server.err" | awk '{print $2}' | sed "s|SERVER|${addrs[0]}|")
if curl -fsS -m 5 -o /dev/null "$DASH" 2>/dev/null; then
    echo "dashboard: $DASH  (open it in a browser while the demo runs)"
else
    echo "dashboard: $DASH  (reachable from the machines' namespaces)"
fi

# targets: blank loop devices as root (real block devices, like a machine's disk), blank files otherwise
targets=()
for ((i = 1; i <= N; i++)); do
    f=$W/${names[i]}-disk.img
    truncate -s "${DISK_MB}M" "$f"
    if is_root && [ "${DEMO_TARGET:-}" != file ]; then
        targets[i]=$(ds_losetup "$f")
    else
        targets[i]=$f
    fi
done

T0=$(date +%s.%N)
for ((i = 1; i <= N; i++)); do
    in_ns "$i"
    echo "${names[i]}: diskswarm deploy $URL --to ${targets[i]} --yes"
    ds_bg_split "$W/${names[i]}.out" "$W/${names[i]}.err" "${IN_NS[@]}" timeout -k 5 "$LIMIT" \
        "$DISKSWARM" deploy "$URL" --to "${targets[i]}" --yes --json --listen "${addrs[i]}:${ports[i]}" \
        --state "$W/${names[i]}.state"
    pids[i]=$DS_BG_PID
done
pids[0]=$SERVER_PID

cat >"$W/table.py" <<'PY'
import json, sys
tty, elapsed, limit_s, dash = sys.argv[1] == "1", float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def human(bps):
    bps = float(bps or 0) * 8
    for unit in ("bit/s", "kbit/s", "Mbit/s", "Gbit/s"):
        if bps < 1000 or unit == "Gbit/s":
            return "%.1f %s" % (bps, unit)
        bps /= 1000
def lines(path):
    try:
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    pass
    except OSError:
        pass
out = []
if tty:
    out.append("\033[H\033[J")
out.append("diskswarm demo — %.1f s elapsed%s" % (elapsed, "  (physical limit %.1f s)" % limit_s if limit_s else ""))
out.append("dashboard: %s" % dash)
out.append("%-9s %-21s %-9s %-24s %9s %13s %13s %5s" % ("machine", "address", "state", "progress", "pieces",
                                                         "down", "up", "peers"))
for spec in sys.argv[5:]:
    name, addr, path, state = spec.split("|")
    prog, phase, machines = {}, "", None
    for o in lines(path):
        t = o.get("type")
        if t == "progress":
            prog = o
        elif t == "complete":
            phase = "seeding"
        elif t == "deploy" and o.get("ok") is True:
            phase = "verified"
        elif t == "machines":
            machines = o
    if name == "server":
        done = machines["complete"] if machines else 0
        out.append("%-9s %-21s %-9s %s of the machines complete" % (name, addr, state, done))
        continue
    pct = float(prog.get("percent", 0.0) or 0.0)
    bar = "#" * int(pct / 100 * 20 + 0.5)
    pieces = "%s/%s" % (prog.get("pieces", "?"), prog.get("num_pieces", "?"))
    st = phase if state == "running" and phase else state
    out.append("%-9s %-21s %-9s [%-20s]%3.0f%% %9s %13s %13s %5s" % (
        name, addr, st, bar, pct, pieces, human(prog.get("down_bps")), human(prog.get("up_bps")),
        prog.get("peers", "")))
print("\n".join(out), flush=True)
PY

declare -A end_time=() rc_of=() complete_time=()
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
        if ((i > 0)) && [ -z "${complete_time[$i]:-}" ] && grep -q '"type":"complete"' "$W/${names[i]}.out" 2>/dev/null; then
            complete_time[$i]=$el
        fi
        if [ -z "${rc_of[$i]:-}" ]; then
            alive=$((alive + 1)) state=running
        elif [ "${rc_of[$i]}" = 0 ]; then state="done"; else state="exit ${rc_of[$i]}"; fi
        specs+=("${names[i]}|${addrs[i]}:${ports[i]}|$W/${names[i]}.out|$state")
    done
    sec=${el%.*}
    if ((tty)) || ((sec / 2 != last_print)) || ((alive == 0)); then
        "$DS_PY" "$W/table.py" "$tty" "$el" "$PHYS_LIMIT" "$DASH" "${specs[@]}"
        last_print=$((sec / 2))
    fi
    ((alive == 0)) && break
    if ((sec > LIMIT + 70)); then
        echo "time limit reached; stopping"
        break
    fi
    sleep 0.5
done

# the swarm's time = when the last machine had every piece verified on its disk
TOTAL=0
for ((i = 1; i <= N; i++)); do
    t=${complete_time[$i]:-${end_time[$i]:-0}}
    TOTAL=$(awk -v a="$TOTAL" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
done

# ---------------------------------------------------------------------------------------------------------
say "checking every disk against the source (sfdisk -d, boot gap, fsck.vfat + e2fsck, sha256 of $(($(wc -l <"$DISK.fat.manifest") + $(wc -l <"$DISK.ext4.manifest"))) files, diskswarm verify)"
pass=0 failc=0
printf '%-9s %-18s %-6s %9s %-22s %-7s %s\n' machine target exit complete table+fsck+files verify result
for ((i = 1; i <= N; i++)); do
    t=${targets[i]}
    rc=${rc_of[$i]:-running}
    fs=FAIL vf=FAIL
    gpt_check_target "$DISK" "$t" 2>"$W/${names[i]}.check" && fs=ok
    "$DISKSWARM" verify "$IMG/sda.torrent" "$t" >/dev/null 2>&1 && vf=ok
    if [ "$rc" = 0 ] && [ "$fs" = ok ] && [ "$vf" = ok ]; then
        res=PASS pass=$((pass + 1))
    else
        res=FAIL failc=$((failc + 1))
    fi
    printf '%-9s %-18s %-6s %8ss %-22s %-7s %s\n' "${names[i]}" "$(basename "$t")" "$rc" "${complete_time[$i]:--}" \
        "$fs" "$vf" "$res"
    if [ "$res" = FAIL ]; then
        tail -n 5 "$W/${names[i]}.err" "$W/${names[i]}.check" 2>/dev/null | sed 's/^/    /'
        echo "    last status: $(tail -n 1 "$W/${names[i]}.out" 2>/dev/null | cut -c1-400)"
    fi
done
srv_rc=${rc_of[0]:-running}
echo "server: exit $srv_rc after ${end_time[0]:--}s: $(grep '"type":"done"' "$W/server.out" 2>/dev/null | tail -n 1)"
if [ "$srv_rc" != 0 ]; then
    tail -n 5 "$W/server.err" | sed 's/^/    /'
    failc=$((failc + 1))
fi

say "summary"
echo "mode: $MODE, $N machines, targets: $([ "${targets[1]#/dev/}" != "${targets[1]}" ] && echo "loop devices" || echo "disk files"), $USED bytes ($(awk -v b="$USED" 'BEGIN { printf "%.1f", b / 1048576 }') MiB) per disk"
if ((PHYS_BPS > 0)); then
    echo "total time ${TOTAL}s; physical limit ${PHYS_LIMIT}s (used bytes x 8 / $RATE) → $(awk -v t="$TOTAL" -v l="$PHYS_LIMIT" 'BEGIN { printf "%.1fx", (l > 0 ? t / l : 0) }') the limit"
    echo "(unicast from the server alone would need $(awk -v l="$PHYS_LIMIT" -v n="$N" 'BEGIN { printf "%.1f", l * n }')s)"
else
    echo "total time ${TOTAL}s (loopback: no link rate, so no physical limit to compare with)"
fi
if ((failc == 0 && pass == N)); then
    echo "PASS: all $N machines hold a verified copy of the disk (partition table, boot gap, both filesystems, every file)"
    exit 0
fi
echo "FAIL: $failc of $N machines failed"
exit 1
