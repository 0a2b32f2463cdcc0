#!/bin/bash
# bench/loopback.sh — one `diskswarm seed` -> one `diskswarm fetch` over 127.0.0.1.
#
# Source: a sparse image with USED_MIB (default 1024) MiB of random data in
# 64 extents separated by gaps (not piece aligned), page cache warmed.
# For each piece size (diskswarm's default, and 16 MiB as Clonezilla uses) and
# each target (a blank file in BENCH_DIR, a blank file in /dev/shm) it times
# the fetch (start to exit: connect, download, write at the offsets, verify
# every piece) and reports throughput, CPU use and peak RSS of both processes.
#
#   bench/loopback.sh            env: USED_MIB=1024 EXTENTS=64 BENCH_DIR=/tmp REPEAT=3
#                                     PIECES="default 16M" TARGETS="dir shm" DISKSWARM=build/diskswarm
#
# CPU and RSS: fetch is run under a python wrapper that reports getrusage() of
# the child (utime, stime, ru_maxrss); the seeder is a fresh process per run,
# sampled from /proc/PID/stat (CPU ticks at start and end of the fetch) and
# /proc/PID/status (VmHWM) just before it is stopped.
#
# Exit 0 when every run completed, 1 otherwise, 77 if it cannot run here.
set -euo pipefail
# shellcheck disable=SC2034 # used by tests/lib/interop.sh
IX_NAME=bench
. "$(dirname "$0")/../tests/lib/interop.sh"

USED_MIB=${USED_MIB:-1024}
N_EXT=${EXTENTS:-64}
BENCH_DIR=${BENCH_DIR:-/tmp}
REPEAT=${REPEAT:-3}
PIECES=${PIECES:-default 16M}
TARGETS=${TARGETS:-dir shm}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}

ix_need_tools python3 ss truncate dd
ix_need_binary

free_mib() { df -Pm "$1" | awk 'NR == 2 {print $4}'; }
need_mib=$((USED_MIB * 2 + 256))
(($(free_mib "$BENCH_DIR") >= need_mib)) \
    || { ix_log "SKIP: $BENCH_DIR has $(free_mib "$BENCH_DIR") MiB free, need $need_mib"; exit 77; }
if [[ " $TARGETS " == *" shm "* ]] && (($(free_mib /dev/shm) < USED_MIB + 256)); then
    ix_log "not enough room in /dev/shm ($(free_mib /dev/shm) MiB): skipping the shm target"
    TARGETS=${TARGETS//shm/}
fi

export TMPDIR=$BENCH_DIR
ds_init
ix_log "work dir $DS_TMP, binary $DISKSWARM ($(git -C "$DS_ROOT" log --oneline -1 2>/dev/null || echo '?'))"

# --- source image: N_EXT extents of EXT_BYTES, separated by gaps ---------------------------------
EXT_BYTES=$((USED_MIB * 1048576 / N_EXT))
EXT_BYTES=$((EXT_BYTES / 4096 * 4096))
GAP=$((EXT_BYTES / 2 + 12288))      # so extents do not start on piece boundaries
SRC=$DS_TMP/source.img
EXTF=$DS_TMP/extents.txt
: > "$EXTF"
off=4096
for ((i = 0; i < N_EXT; i++)); do
    echo "$off $EXT_BYTES" >> "$EXTF"
    off=$((off + EXT_BYTES + GAP))
done
IMG_BYTES=$((off + 1048576))
truncate -s "$IMG_BYTES" "$SRC"
USED=$(extents_total "$EXTF")
ix_log "source: $N_EXT extents x $((EXT_BYTES / 1048576)) MiB = $((USED / 1048576)) MiB used in a $((IMG_BYTES / 1048576)) MiB sparse image"
t0=$(date +%s.%N)
python3 - "$SRC" "$EXTF" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for line in open(sys.argv[2]):
    off, ln = map(int, line.split())
    pos = 0
    while pos < ln:
        n = min(8 << 20, ln - pos)
        os.pwrite(fd, os.urandom(n), off + pos)
        pos += n
os.close(fd)
PY
ix_log "random data written in $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)") s"

# --- torrents ---------------------------------------------------------------------------------
declare -A TORRENT PLEN_OF MKT_S
for p in $PIECES; do
    t=$DS_TMP/bench-$p.torrent
    args=()
    [[ "$p" != default ]] && args=(--piece-size "$p")
    t0=$(date +%s.%N)
    timeout 600 "$DISKSWARM" make-torrent "$SRC" --extents "$EXTF" -o "$t" --name bench "${args[@]}" >/dev/null \
        || { ix_log "make-torrent ($p) failed"; exit 1; }
    MKT_S[$p]=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$(date +%s.%N)")
    TORRENT[$p]=$t
    PLEN_OF[$p]=$(python3 -c "$IX_BDECODE_PY"'
import sys
t, _ = bdecode(open(sys.argv[1], "rb").read()); print(t[b"info"][b"piece length"])' "$t")
    ix_log "make-torrent piece $p: piece length $((PLEN_OF[$p] / 1024)) KiB, hashed in ${MKT_S[$p]} s"
done

ix_log "warming the page cache of the source"
cat "$SRC" > /dev/null

# --- helpers --------------------------------------------------------------------------------
CLK=$(getconf CLK_TCK)
proc_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
proc_hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# run_fetch OUT CMD...: runs CMD, writes "rc wall user sys maxrss_kib" to OUT.
run_fetch() {
    local out=$1
    shift
    python3 - "$out" "$@" <<'PY'
import resource, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
try:
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=open(out + ".log", "w")).returncode
except KeyboardInterrupt:
    rc = 130
wall = time.monotonic() - t0
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(out, "w").write(f"{rc} {wall:.3f} {r.ru_utime:.3f} {r.ru_stime:.3f} {r.ru_maxrss}\n")
PY
}

RESULTS=$DS_TMP/results.txt
: > "$RESULTS"
failures=0

one_run() { # PIECE TARGET_KIND RUN
    local p=$1 kind=$2 run=$3 tdir dst sport fport seed s_t0 s_t1 s_hwm rc wall ut st rss
    case $kind in
    dir) tdir=$DS_TMP ;;
    shm) tdir=$(mktemp -d /dev/shm/diskswarm-bench.XXXXXX) ;;
    esac
    dst=$tdir/target.img
    truncate -s "$IMG_BYTES" "$dst"
    sport=$(free_port); fport=$(free_port)
    ds_bg "$DS_TMP/seed.log" timeout -k 5 $((RUN_TIMEOUT + 60)) \
        "$DISKSWARM" seed "${TORRENT[$p]}" --from "$SRC" --listen "127.0.0.1:$sport" --quiet
    seed=$DS_BG_PID
    local seedpid
    # the seeder is the child of timeout(1)
    ix_wait_listen "$sport" 60 "$seed" || { ix_show_log "$DS_TMP/seed.log"; return 1; }
    seedpid=$(pgrep -P "$seed" | head -n 1)
    s_t0=$(proc_cpu_ticks "$seedpid")
    run_fetch "$DS_TMP/fetch.res" timeout -k 5 "$RUN_TIMEOUT" "$DISKSWARM" fetch "${TORRENT[$p]}" --to "$dst" \
        --peer "127.0.0.1:$sport" --listen "127.0.0.1:$fport" --no-tracker --quiet
    s_t1=$(proc_cpu_ticks "$seedpid")
    s_hwm=$(proc_hwm_kib "$seedpid")
    kill_and_wait "$seed" 10 || true
    read -r rc wall ut st rss < "$DS_TMP/fetch.res"
    if ((rc != 0)); then
        ix_log "fetch (piece $p, target $kind) exited $rc after ${wall}s"
        ix_show_log "$DS_TMP/fetch.res.log" 15
        ix_show_log "$DS_TMP/seed.log" 10
        printf '%s %s %s FAIL %s - - - -\n' "$p" "$kind" "$run" "$wall" >> "$RESULTS"
        [[ $kind == shm ]] && rm -rf "$tdir"
        return 1
    fi
    # spot check: the target holds the data (full check: diskswarm verify, timed separately)
    if ! ix_cmp_extents "$SRC" "$dst" "$EXTF" 2>/dev/null; then
        ix_log "target differs from the source after a successful fetch!"
        printf '%s %s %s BAD %s - - - -\n' "$p" "$kind" "$run" "$wall" >> "$RESULTS"
        [[ $kind == shm ]] && rm -rf "$tdir"
        return 1
    fi
    python3 - "$p" "$kind" "$run" "$wall" "$ut" "$st" "$rss" "$s_t0" "$s_t1" "$s_hwm" "$CLK" "$USED" >> "$RESULTS" <<'PY'
import sys
p, kind, run = sys.argv[1:4]
wall, ut, st = map(float, sys.argv[4:7])
rss, st0, st1, shwm, clk, used = map(int, sys.argv[7:13])
mibs = used / 1048576 / wall
fcpu = 100 * (ut + st) / wall
scpu = 100 * (st1 - st0) / clk / wall
print(f"{p} {kind} {run} {mibs:.1f} {wall:.2f} {fcpu:.0f} {rss // 1024} {scpu:.0f} {shwm // 1024}")
PY
    ix_log "piece $p -> $kind #$run: $(tail -n 1 "$RESULTS" | awk '{print $4 " MiB/s in " $5 " s"}')"
    if [[ $kind == shm ]]; then rm -rf "$tdir"; else rm -f "$dst"; fi
}

for p in $PIECES; do
    for kind in $TARGETS; do
        for ((r = 1; r <= REPEAT; r++)); do
            one_run "$p" "$kind" "$r" || failures=$((failures + 1))
        done
    done
done

# --- table -------------------------------------------------------------------------------------
echo
echo "diskswarm loopback: 1 seeder -> 1 fetcher, $((USED / 1048576)) MiB in $N_EXT extents, $(nproc) CPUs, source in page cache ($BENCH_DIR)"
printf '%-8s %-9s %-6s %-6s %9s %8s %9s %10s %9s %10s\n' piece piece_len mktor target MiB/s wall_s fetch_cpu fetch_rss seed_cpu seed_rss
while read -r p kind run mibs wall fcpu frss scpu srss; do
    [[ "$kind" == dir ]] && kind="file"
    printf '%-8s %-9s %-6s %-6s %9s %8s %8s%% %6s MiB %8s%% %6s MiB\n' "$p" "$((PLEN_OF[$p] / 1024))K" "${MKT_S[$p]}s" \
        "$kind" "$mibs" "$wall" "$fcpu" "$frss" "$scpu" "$srss"
done < "$RESULTS"
echo
echo "median over $REPEAT run(s):"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[3] in ("FAIL", "BAD"):
        continue
    rows.setdefault((f[0], f[1]), []).append(f)
for (p, kind), rs in rows.items():
    med = lambda i: statistics.median(float(r[i]) for r in rs)
    print(f"  piece {p:<8} {('file' if kind == 'dir' else kind):<5} {med(3):7.1f} MiB/s  "
          f"(best {max(float(r[3]) for r in rs):.1f})  fetch cpu {med(5):.0f}%  "
          f"fetch rss {max(int(r[6]) for r in rs)} MiB  seed cpu {med(7):.0f}%  seed rss {max(int(r[8]) for r in rs)} MiB")
PY
echo "(file = blank file in $BENCH_DIR, shm = blank file in /dev/shm; wall = fetch start to exit incl. verify;"
echo " cpu = (user+sys)/wall; rss = peak resident set (VmHWM / ru_maxrss); mktor = make-torrent time)"
((failures == 0))
