# shellcheck shell=bash
# tests/lib/capture.sh — helpers for the capture e2e scripts and bench/capture.sh (source after common.sh).
#
#   cap_torrent_extents TORRENT [SHIFT]    "OFFSET LENGTH" (decimal, sorted, adjacent merged) of an Ezio torrent's
#                                          files, each offset + SHIFT
#   cap_partclone_extents FS IMG DIR       run partclone.FS -c -d -t on IMG into DIR and print the used extents of
#                                          its torrent.info the same way
#   cap_covers A B [LABEL]                 every byte of extent file B lies in extent file A; prints how they
#                                          differ (equal / superset by N bytes); non-zero if B is not covered
#   cap_make_ext4 IMG SIZE_MB DATA_MB MKFS_OPTS...
#                                          fresh ext4 with mkfs options, populated through a loop mount (root) or
#                                          mkfs -d, with IMG.manifest (sha256 of every file)
#   cap_seed_fetch TORRENT SOURCE N TARGET_SIZE TARGET_PREFIX
#                                          one seeder from SOURCE + N fetchers into blank files
#                                          TARGET_PREFIX0.img ...; fails unless all exit 0

cap_py() { "$DS_PY" - "$@"; }

cap_torrent_extents() {
    cap_py "$1" "${2:-0}" "$DS_ROOT/tests/lib" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
from dstool import bdecode
t, _ = bdecode(open(sys.argv[1], "rb").read())
info = t[b"info"]
shift = int(sys.argv[2])
ext = []
if b"files" in info:
    for f in info[b"files"]:
        if b"attr" in f and b"p" in f[b"attr"]:
            continue
        ext.append((int(f[b"path"][-1], 16) + shift, f[b"length"]))
else:
    ext.append((shift, info[b"length"]))
ext.sort()
out = []
for o, l in ext:
    if out and out[-1][0] + out[-1][1] == o:
        out[-1][1] += l
    else:
        out.append([o, l])
for o, l in out:
    print(o, l)
PY
}

cap_partclone_extents() {
    local fs=$1 img=$2 dir=$3
    command -v "partclone.$fs" >/dev/null || { ds_log "partclone.$fs missing"; return 1; }
    rm -rf "$dir"
    timeout 300 "partclone.$fs" -c -d -t -s "$img" -o "$dir" -L "$dir.log" >/dev/null 2>&1 || {
        ds_log "partclone.$fs failed on $img:"
        tail -n 5 "$dir.log" >&2
        return 1
    }
    cap_py "$dir/torrent.info" <<'PY'
import sys
ext = []
off = None
for line in open(sys.argv[1]):
    k, _, v = line.partition(":")
    v = v.strip()
    if k == "offset":
        off = int(v, 16)
    elif k == "length":
        ext.append((off, int(v, 16)))
ext.sort()
out = []
for o, l in ext:
    if out and out[-1][0] + out[-1][1] >= o:
        out[-1][1] = max(out[-1][1], o + l - out[-1][0])
    else:
        out.append([o, l])
for o, l in out:
    print(o, l)
PY
}

cap_covers() {
    cap_py "$1" "$2" "${3:-}" <<'PY'
import sys
def load(p):
    r = []
    for line in open(p):
        f = line.split()
        if len(f) >= 2:
            r.append((int(f[0]), int(f[1])))
    r.sort()
    return r
a, b = load(sys.argv[1]), load(sys.argv[2])
label = sys.argv[3] or "capture"
# walk b against a
i = 0
missing = 0
first_missing = None
for o, l in b:
    end = o + l
    cur = o
    while cur < end:
        while i < len(a) and a[i][0] + a[i][1] <= cur:
            i += 1
        if i < len(a) and a[i][0] <= cur:
            cur = min(end, a[i][0] + a[i][1])
        else:
            nxt = a[i][0] if i < len(a) else end
            gap = min(nxt, end) - cur
            missing += gap
            if first_missing is None:
                first_missing = cur
            cur += gap
sa, sb = sum(l for _, l in a), sum(l for _, l in b)
if missing:
    print("%s: %d bytes of the reference set are NOT covered (first at offset %d)" % (label, missing, first_missing),
          file=sys.stderr)
    sys.exit(1)
if sa == sb:
    print("%s: equal to the reference set (%d bytes, %d vs %d extents)" % (label, sa, len(a), len(b)), file=sys.stderr)
else:
    print("%s: superset of the reference set by %d bytes (%d vs %d bytes)" % (label, sa - sb, sa, sb),
          file=sys.stderr)
PY
}

cap_make_ext4() {
    local img=$1 size_mb=$2 data_mb=$3 stage mnt loop
    shift 3
    rm -f "$img"
    truncate -s "${size_mb}M" "$img"
    if is_root; then
        mkfs.ext4 -q -F -L dstest "$@" "$img" || return 1
        loop=$(ds_losetup "$img") || return 1
        mnt=$(mktemp -d "$DS_TMP/mnt.XXXXXX")
        ds_mount "$loop" "$mnt" || return 1
        ds_populate "$mnt" "$data_mb" || return 1
        sync -f "$mnt" 2>/dev/null || sync
        ds_manifest "$mnt" >"$img.manifest" || return 1
        ds_umount "$mnt" || return 1
        ds_loop_detach "$loop" || return 1
        rmdir "$mnt"
    else
        stage=$(mktemp -d "$DS_TMP/stage.XXXXXX")
        ds_populate "$stage" "$data_mb" || return 1
        ds_manifest "$stage" >"$img.manifest" || return 1
        mkfs.ext4 -q -F -L dstest "$@" -d "$stage" "$img" || return 1
        rm -rf "$stage"
    fi
    e2fsck -fn "$img" >/dev/null 2>&1 || { ds_log "cap_make_ext4: fresh fs not clean"; return 1; }
}

cap_seed_fetch() {
    local tor=$1 src=$2 n=$3 size=$4 prefix=$5 seed_port ports=() pids=() i j args rc bad=0 t0
    seed_port=$(free_port)
    for ((i = 0; i < n; i++)); do ports+=("$(free_port)"); done
    ds_bg_split "$prefix.seed.out" "$prefix.seed.err" \
        "$DISKSWARM" seed "$tor" --from "$src" --listen "127.0.0.1:$seed_port" --expect "$n" --quiet
    local seed_pid=$DS_BG_PID
    wait_port "$seed_port" 20 || { cat "$prefix.seed.err" >&2; ds_log "seeder not listening"; return 1; }
    t0=$(date +%s)
    for ((i = 0; i < n; i++)); do
        rm -f "$prefix$i.img"
        truncate -s "$size" "$prefix$i.img"
        args=(--listen "127.0.0.1:${ports[i]}" --peer "127.0.0.1:$seed_port")
        for ((j = 0; j < n; j++)); do [ "$j" = "$i" ] || args+=(--peer "127.0.0.1:${ports[j]}"); done
        ds_bg_split "$prefix$i.out" "$prefix$i.err" \
            "$DISKSWARM" fetch "$tor" --to "$prefix$i.img" "${args[@]}" --expect "$n" --quiet
        pids+=("$DS_BG_PID")
    done
    for ((i = 0; i < n; i++)); do
        rc=0
        wait_for_exit "${pids[i]}" $((180 - ($(date +%s) - t0))) || rc=$?
        if [ "$rc" != 0 ]; then
            ds_log "  fetcher $i exit $rc (124 = still running)"
            tail -n 10 "$prefix$i.err" >&2
            bad=1
        fi
    done
    rc=0
    wait_for_exit "$seed_pid" 30 || rc=$?
    [ "$rc" = 0 ] || { ds_log "  seeder exit $rc"; tail -n 10 "$prefix.seed.err" >&2; bad=1; }
    [ "$bad" = 0 ]
}

# cap_dumpe2fs_used IMG: used extents from dumpe2fs's free ranges, bigalloc-aware (dumpe2fs prints a free
# range's end as the first block of its last cluster), plus the first 2 KiB / blocks before s_first_data_block.
# Checked against the superblock's free block count.
cap_dumpe2fs_used() {
    local dump
    dump=$(dumpe2fs "$1" 2>/dev/null) || { ds_log "dumpe2fs $1 failed"; return 1; }
    cap_py <(printf '%s\n' "$dump") <<'PY'
import re, sys
bs = bc = fc = fdb = None
cs = None
free = []
for line in open(sys.argv[1]):
    m = re.match(r"^Block size:\s+(\d+)", line)
    if m: bs = int(m.group(1))
    m = re.match(r"^Cluster size:\s+(\d+)", line)
    if m: cs = int(m.group(1))
    m = re.match(r"^Block count:\s+(\d+)", line)
    if m: bc = int(m.group(1))
    m = re.match(r"^Free blocks:\s+(\d+)", line)
    if m: fc = int(m.group(1))
    m = re.match(r"^First block:\s+(\d+)", line)
    if m: fdb = int(m.group(1))
    m = re.match(r"^  Free blocks: (.*)$", line)
    if m:
        for r in m.group(1).split(","):
            r = r.strip()
            if not r: continue
            a, _, b = r.partition("-")
            free.append((int(a), int(b or a)))
ratio = (cs // bs) if cs else 1
free.sort()
used, cur, nfree = [], 0, 0
for a, b in free:
    b = (b // ratio) * ratio + ratio - 1  # whole last cluster
    b = min(b, bc - 1)
    if a > cur: used.append([cur, a - cur])
    cur = max(cur, b + 1)
    nfree += b - a + 1
if cur < bc: used.append([cur, bc - cur])
if nfree != fc:
    sys.exit("cap_dumpe2fs_used: free ranges sum to %d blocks, superblock says %d" % (nfree, fc))
head = max(2048, (fdb or 0) * bs)
out = [[0, head]]
for a, n in used:
    o, l = a * bs, n * bs
    if o <= out[-1][0] + out[-1][1]:
        out[-1][1] = max(out[-1][1], o + l - out[-1][0])
    else:
        out.append([o, l])
for o, l in out: print(o, l)
PY
}

# cap_case_init: call first in every case. Workaround: common.sh's ds_unreg fails (grep -v exit 1 under set -e)
# when it removes the last registry entry, so keep one inert entry (a kind the cleanup ignores) in the registry.
cap_case_init() { ds_reg keep capture-sentinel; }
