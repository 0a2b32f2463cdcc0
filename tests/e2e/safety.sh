#!/usr/bin/env bash
# timeout: 600
# asan: yes
# safety.sh — nothing outside the torrent's extents is touched, unsafe targets and torrents are refused, and a
# target whose writes fail ends the fetch with a clear error (never "complete").
#
#   canary_outside_extents   a target filled with 0xA5 receives an ext4 image's used extents (dumpe2fs) through
#                            a seed/fetch swarm: every byte outside the extents still holds 0xA5, inside it is
#                            the image, the filesystem checks clean.
#   refuse_mounted_device    the target is a mounted loop device                  (root)
#   refuse_backing_file      the target is a regular file backing a mounted loop device (root)
#   refuse_small_device      a loop device smaller than the image; nothing is written to it (root)
#   refuse_overlapping       a hand-made torrent whose extents overlap on the device: refused by fetch and
#                            verify, the target is left as it was
#   refuse_past_device       a torrent whose extent runs past a block device's end (root), and one whose extent
#                            runs past 2^64 (any target)
#   refuse_bad_paths         torrents with "..", "." or absolute path components / names: refused by `info`
#   enospc_target            a 32 MiB image fetched into a file on an 8 MiB tmpfs: non-zero exit, the error
#                            says "No space left", no "complete" message (root)
#   dm_error_target          a device-mapper target whose second half is an `error` target: non-zero exit, an
#                            I/O error message, no "complete" (root, dmsetup and the dm kernel driver)
# Prints its own "N passed, N failed, N skipped".
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
ds_init

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }

FS_MB=48
DATA_MB=16
IMG=$DS_TMP/fs.img
EXT=$DS_TMP/extents.txt
TOR=$DS_TMP/fs.torrent
FS_BYTES=$((FS_MB * 1048576))
RAW=$DS_TMP/raw.img # 32 MiB of random bytes, whole-file torrent
RAWTOR=$DS_TMP/raw.torrent

show_logs() {
    local f
    for f in "$@"; do
        [ -s "$f" ] || continue
        ds_log "  --- $(basename "$f") (tail)"
        tr '\r' '\n' <"$f" | grep -av '% .* peers ' | tail -n 15 | sed 's/^/    /' >&2
    done
}

echo "making a ${FS_MB} MiB ext4 with ${DATA_MB} MiB of files, and a 32 MiB random image"
make_ext4_image "$IMG" "$FS_MB" "$DATA_MB"
ext4_used_extents "$IMG" >"$EXT"
"$DISKSWARM" make-torrent "$IMG" --extents "$EXT" -o "$TOR" --piece-size 1M >/dev/null
head -c 32M /dev/urandom >"$RAW"
"$DISKSWARM" make-torrent "$RAW" --all -o "$RAWTOR" --piece-size 1M >/dev/null
echo "$(wc -l <"$EXT") used extents, $(extents_total "$EXT") of $FS_BYTES bytes"

# hand-made torrents: mktor OUT NAME PIECE_LEN "DEVOFF:LEN,..." [path-list-json]
mktor() {
    "$DS_PY" - "$@" <<'PY'
import hashlib, json, sys
out, name, plen, spec = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
paths = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
def benc(v):
    if isinstance(v, int): return b"i%de" % v
    if isinstance(v, str): v = v.encode()
    if isinstance(v, bytes): return b"%d:%s" % (len(v), v)
    if isinstance(v, list): return b"l" + b"".join(benc(x) for x in v) + b"e"
    items = sorted((k.encode(), x) for k, x in v.items())
    return b"d" + b"".join(benc(k) + benc(x) for k, x in items) + b"e"
ext = [tuple(int(x, 0) for x in e.split(":")) for e in spec.split(",")]
files = []
for i, (off, ln) in enumerate(ext):
    path = paths[i] if paths else ["%032x" % off]
    files.append({"length": ln, "path": path})
total = sum(ln for _, ln in ext)
n = (total + plen - 1) // plen
pieces = b"".join(hashlib.sha1(b"\0" * min(plen, total - i * plen)).digest() for i in range(n))
with open(out, "wb") as f:
    f.write(benc({"info": {"name": name, "piece length": plen, "pieces": pieces, "files": files}}))
PY
}

# expect_refused WHAT LOG CMD...: CMD must exit 1 (not crash, not succeed); its stderr is shown
expect_refused() {
    local what=$1 log=$2 rc=0
    shift 2
    timeout 60 "$@" >"$log.out" 2>"$log" || rc=$?
    ds_log "  $what: exit $rc: $(tr '\r' '\n' <"$log" | grep -av '% ' | head -n 2 | tr '\n' ' ' | cut -c1-240)"
    [ "$rc" = 1 ] || fail "$what: exit $rc, expected 1"
}

# ---------------------------------------------------------------------------------------------------------
case_canary_outside_extents() {
    local port t=$DS_TMP/canary.img rc=0 spid
    head -c "$FS_BYTES" /dev/zero | tr '\0' '\245' >"$t"
    port=$(free_port)
    ds_bg "$DS_TMP/canary.seed" "$DISKSWARM" seed "$TOR" --from "$IMG" --listen "127.0.0.1:$port" --quiet
    spid=$DS_BG_PID
    wait_port "$port" 20 || fail "seeder not listening"
    timeout 120 "$DISKSWARM" fetch "$TOR" --to "$t" --peer "127.0.0.1:$port" --listen "127.0.0.1:$(free_port)" \
        --no-tracker --quiet >/dev/null 2>"$DS_TMP/canary.err" || rc=$?
    [ "$rc" = 0 ] || { show_logs "$DS_TMP/canary.err"; fail "fetch exit $rc"; }
    kill_and_wait "$spid" 10 || true
    dstool outside "$t" "$IMG" "$EXT" 0xa5 "$FS_BYTES"
    check_ext4_target "$t" "$IMG.manifest"
}

case_refuse_mounted_device() {
    need_root
    local f=$DS_TMP/mounted.img loop mnt=$DS_TMP/mnt.m sum0
    truncate -s "$FS_BYTES" "$f"
    mkfs.ext4 -q -F "$f"
    loop=$(ds_losetup "$f")
    ds_mount "$loop" "$mnt"
    sum0=$(sha1sum <"$loop")
    expect_refused "fetch to a mounted loop device" "$DS_TMP/m.err" \
        "$DISKSWARM" fetch "$TOR" --to "$loop" --peer 127.0.0.1:1 --no-tracker --quiet
    grep -qiE 'mounted|busy' "$DS_TMP/m.err" || fail "the error does not say mounted/busy"
    [ "$(sha1sum <"$loop")" = "$sum0" ] || fail "the mounted device was written to"
}

case_refuse_backing_file() {
    need_root
    local f=$DS_TMP/backing.img loop mnt=$DS_TMP/mnt.b sum0
    truncate -s "$FS_BYTES" "$f"
    mkfs.ext4 -q -F "$f"
    loop=$(ds_losetup "$f")
    ds_mount "$loop" "$mnt"
    sum0=$(sha1sum <"$f")
    expect_refused "fetch to the file backing a mounted loop device" "$DS_TMP/b.err" \
        "$DISKSWARM" fetch "$TOR" --to "$f" --peer 127.0.0.1:1 --no-tracker --quiet
    grep -qiE 'loop|mounted|busy|in use' "$DS_TMP/b.err" || fail "the error does not name the loop device/mount"
    [ "$(sha1sum <"$f")" = "$sum0" ] || fail "the backing file was written to"
}

case_refuse_small_device() {
    need_root
    local f=$DS_TMP/small.img loop
    truncate -s $((FS_BYTES / 2)) "$f"
    loop=$(ds_losetup "$f")
    expect_refused "fetch to a loop device half the image's size" "$DS_TMP/s.err" \
        "$DISKSWARM" fetch "$TOR" --to "$loop" --peer 127.0.0.1:1 --no-tracker --quiet
    grep -qiE 'small|size|bytes' "$DS_TMP/s.err" || fail "the error does not mention the size"
    [ "$(tr -d '\0' <"$f" | wc -c)" = 0 ] || fail "the too-small device was written to"
}

case_refuse_overlapping() {
    local t=$DS_TMP/ov.target sum0
    mktor "$DS_TMP/overlap.torrent" sdx 65536 "0:131072,65536:131072"
    mktor "$DS_TMP/overlap2.torrent" sdx 65536 "1048576:65536,0:65536,1081344:4096"
    head -c 4M /dev/zero | tr '\0' '\245' >"$t"
    sum0=$(sha1sum <"$t")
    expect_refused "fetch with overlapping extents" "$DS_TMP/ov.err" \
        "$DISKSWARM" fetch "$DS_TMP/overlap.torrent" --to "$t" --peer 127.0.0.1:1 --no-tracker --quiet
    grep -qi overlap "$DS_TMP/ov.err" || fail "the error does not say 'overlap'"
    expect_refused "fetch with overlapping extents out of order" "$DS_TMP/ov2.err" \
        "$DISKSWARM" fetch "$DS_TMP/overlap2.torrent" --to "$t" --peer 127.0.0.1:1 --no-tracker --quiet
    expect_refused "verify with overlapping extents" "$DS_TMP/ov3.err" \
        "$DISKSWARM" verify "$DS_TMP/overlap.torrent" "$t"
    [ "$(sha1sum <"$t")" = "$sum0" ] || fail "the target was modified"
}

case_refuse_past_device() {
    local t=$DS_TMP/wrap.target
    # an extent whose end is past 2^64: refused whatever the target
    mktor "$DS_TMP/wrap.torrent" sdx 65536 "0xffffffffffff0000:0x20000"
    : >"$t"
    expect_refused "fetch with an extent past 2^64" "$DS_TMP/w.err" \
        "$DISKSWARM" fetch "$DS_TMP/wrap.torrent" --to "$t" --peer 127.0.0.1:1 --no-tracker --quiet
    [ "$(stat -c %s "$t")" = 0 ] || fail "the target file was grown"
    need_root
    local f=$DS_TMP/dev8.img loop
    truncate -s 8M "$f"
    loop=$(ds_losetup "$f")
    # extents inside the first 8 MiB plus one at 8 MiB - 4 KiB running 8 KiB past the end
    mktor "$DS_TMP/past.torrent" sdx 65536 "0:65536,$((8 * 1048576 - 4096)):8192"
    expect_refused "fetch with an extent past the device's end" "$DS_TMP/p.err" \
        "$DISKSWARM" fetch "$DS_TMP/past.torrent" --to "$loop" --peer 127.0.0.1:1 --no-tracker --quiet
    grep -qiE 'small|size|bytes|past|end' "$DS_TMP/p.err" || fail "the error does not mention the size"
    [ "$(tr -d '\0' <"$f" | wc -c)" = 0 ] || fail "the device was written to"
}

case_refuse_bad_paths() {
    local name bad=0
    mktor "$DS_TMP/p1.torrent" sdx 16384 "0:1000" '[["..", "etc", "passwd"]]'
    mktor "$DS_TMP/p2.torrent" sdx 16384 "0:1000" '[["/etc/passwd"]]'
    mktor "$DS_TMP/p3.torrent" sdx 16384 "0:1000" '[[".", "00000000000000000000000000000000"]]'
    mktor "$DS_TMP/p4.torrent" .. 16384 "0:1000"
    mktor "$DS_TMP/p5.torrent" /dev/sda 16384 "0:1000"
    mktor "$DS_TMP/p6.torrent" sdx 16384 "0:1000" '[["a", ""]]'
    mktor "$DS_TMP/p7.torrent" sdx 16384 "0:1000" '[["sub/../../x"]]'
    mktor "$DS_TMP/ok.torrent" sdx 16384 "0:1000"
    "$DISKSWARM" info "$DS_TMP/ok.torrent" >/dev/null || fail "the well-formed control torrent is refused"
    for name in p1 p2 p3 p4 p5 p6 p7; do
        local rc=0
        "$DISKSWARM" info "$DS_TMP/$name.torrent" >"$DS_TMP/$name.out" 2>&1 || rc=$?
        ds_log "  $name: exit $rc: $(head -n 1 "$DS_TMP/$name.out" | cut -c1-160)"
        [ "$rc" = 1 ] || bad=1
    done
    [ "$bad" = 0 ] || fail "a torrent with an unsafe path was accepted (or crashed info)"
}

# fetch_must_fail_io TARGET LOGPREFIX PATTERN: seed $RAW, fetch into TARGET; must exit non-zero with PATTERN in
# the error and no "complete" line
fetch_must_fail_io() {
    local t=$1 lp=$2 pat=$3 port rc=0 spid
    port=$(free_port)
    ds_bg "$lp.seed" "$DISKSWARM" seed "$RAWTOR" --from "$RAW" --listen "127.0.0.1:$port" --quiet
    spid=$DS_BG_PID
    wait_port "$port" 20 || fail "seeder not listening"
    timeout 120 "$DISKSWARM" fetch "$RAWTOR" --to "$t" --peer "127.0.0.1:$port" --listen "127.0.0.1:$(free_port)" \
        --no-tracker --json >"$lp.out" 2>"$lp.err" || rc=$?
    kill_and_wait "$spid" 10 || true
    ds_log "  exit $rc: $(tr '\r' '\n' <"$lp.err" | grep -av '% ' | tail -n 2 | tr '\n' ' ' | cut -c1-300)"
    [ "$rc" != 0 ] || fail "fetch onto a failing target exited 0"
    [ "$rc" != 124 ] || fail "fetch onto a failing target hung (timeout) instead of failing"
    [ "$rc" -lt 128 ] || fail "fetch crashed (exit $rc)"
    grep -qiE "$pat" "$lp.err" || fail "the error does not match /$pat/"
    if grep -aqiE '"(event|status)": *"complete"|fetch: complete' "$lp.err" "$lp.out"; then
        fail "fetch claimed completion on a failing target"
    fi
}

case_enospc_target() {
    need_root
    local mnt=$DS_TMP/tmpfs
    mkdir -p "$mnt"
    mount -t tmpfs -o size=8m dstmpfs "$mnt" || skip "cannot mount tmpfs"
    ds_reg mount "$mnt"
    fetch_must_fail_io "$mnt/target.img" "$DS_TMP/enospc" 'no space left|ENOSPC'
}

case_dm_error_target() {
    need_root
    command -v dmsetup >/dev/null || skip "dmsetup not installed (apt-get install dmsetup)"
    dmsetup targets >/dev/null 2>&1 || skip "no device-mapper driver in this kernel/container (dmsetup targets fails)"
    local f=$DS_TMP/dmhalf.img loop name="dserr-$$-$RANDOM" sectors=$((32 * 2048))
    truncate -s 16M "$f"
    loop=$(ds_losetup "$f")
    # first 16 MiB map to the loop device, the next 16 MiB fail every I/O
    printf '0 %d linear %s 0\n%d %d error\n' $((sectors / 2)) "$loop" $((sectors / 2)) $((sectors / 2)) |
        dmsetup create "$name" || skip "dmsetup create failed"
    # ds_cleanup keeps the case's exit status: give it back after removing the mapping
    trap 'rc=$?; dmsetup remove "'"$name"'" 2>/dev/null; (exit $rc); ds_cleanup' EXIT
    udevadm settle 2>/dev/null || true
    local dev=/dev/mapper/$name n=0
    while [ ! -b "$dev" ] && ((n < 50)); do sleep 0.1; n=$((n + 1)); done
    [ -b "$dev" ] || { dev=$(dmsetup info -c --noheadings -o blkdevname "$name" 2>/dev/null); dev=/dev/${dev// /}; }
    [ -b "$dev" ] || fail "no block device for $name"
    fetch_must_fail_io "$dev" "$DS_TMP/dm" 'input/output error|EIO|I/O error'
}

ds_case canary_outside_extents case_canary_outside_extents
ds_case refuse_mounted_device case_refuse_mounted_device
ds_case refuse_backing_file case_refuse_backing_file
ds_case refuse_small_device case_refuse_small_device
ds_case refuse_overlapping case_refuse_overlapping
ds_case refuse_past_device case_refuse_past_device
ds_case refuse_bad_paths case_refuse_bad_paths
ds_case enospc_target case_enospc_target
ds_case dm_error_target case_dm_error_target
ds_finish
