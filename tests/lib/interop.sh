# shellcheck shell=bash
# tests/lib/interop.sh — helpers for the interop tests (tests/e2e/interop_*.sh,
# tests/e2e/clonezilla_pipeline.sh) and bench/loopback.sh.  Sourced, never run.
#
# Builds on tests/lib/common.sh (sourced here): ds_init/ds_bg/ds_case for temp
# dirs, background processes and cleanup, free_port, make_ext4_image,
# ext4_used_extents, check_ext4_target.  Everything defined here is prefixed
# ix_ so it cannot collide with common.sh.

IX_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$IX_LIB/common.sh"
IX_LT_PEER=$IX_LIB/lt_peer.py

ix_log()   { printf '[%s] %s\n' "${IX_NAME:-interop}" "$*" >&2; }
ix_check() { printf '[%s] CHECK: %s\n' "${IX_NAME:-interop}" "$*" >&2; }

# ix_need_tools CMD...: exit 77 (whole script skipped) when a tool is missing.
ix_need_tools() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || { ix_log "SKIP: required tool '$c' not installed (see tests/deps.txt)"; exit 77; }
    done
}

# ix_need_binary: exit 77 when diskswarm is not built.
ix_need_binary() {
    [[ -x "$DISKSWARM" ]] || { ix_log "SKIP: $DISKSWARM not built (meson setup build && ninja -C build)"; exit 77; }
}

# ix_need_lt: exit 77 without Debian's python3-libtorrent.
ix_need_lt() {
    "$DS_PY" -c 'import libtorrent' 2>/dev/null \
        || { ix_log "SKIP: $DS_PY has no libtorrent module (apt-get install python3-libtorrent)"; exit 77; }
}

# ix_ds ARGS...: run diskswarm in the foreground, bounded by $IX_TIMEOUT
# (default 120 s), output to stderr; returns its exit status.
ix_ds() {
    local rc=0
    timeout -k 5 "${IX_TIMEOUT:-120}" "$DISKSWARM" "$@" || rc=$?
    ((rc == 124)) && ix_log "TIMEOUT: diskswarm $* ran longer than ${IX_TIMEOUT:-120}s"
    return $rc
}

# ix_wait_listen PORT SECONDS [PID]: wait until something listens on
# 127.0.0.1:PORT, using ss (a connect probe would look like a broken peer).
# Fails early when PID (the process expected to listen) exits.
ix_wait_listen() {
    local port=$1 pid=${3:-} deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]] && return 0
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            ix_log "process $pid exited before listening on port $port"
            return 1
        fi
        sleep 0.1
    done
    ix_log "nothing listens on 127.0.0.1:$port after $2 s"
    return 1
}

# ix_wait_log FILE REGEX SECONDS [PID]: wait until FILE has a line matching REGEX.
ix_wait_log() {
    local file=$1 re=$2 pid=${4:-} deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        grep -qE "$re" "$file" 2>/dev/null && return 0
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            grep -qE "$re" "$file" 2>/dev/null && return 0
            ix_log "process $pid exited before '$re' appeared in $file"
            return 1
        fi
        sleep 0.1
    done
    ix_log "'$re' did not appear in $file within $3 s"
    return 1
}

# ix_show_log FILE [LINES]: the tail of a log, indented, to stderr.
ix_show_log() {
    [[ -f "$1" ]] || return 0
    ix_log "--- last ${2:-25} lines of $(basename "$1"):"
    tail -n "${2:-25}" "$1" | sed 's/^/    | /' >&2
}

# ix_split_extents MAX_LEN < extents > extents: split every extent into
# adjacent pieces of at most MAX_LEN bytes (like partclone's <= 1 MiB
# torrent.info entries), so a torrent has many files and pieces span files.
ix_split_extents() {
    awk -v max="$1" '!/^#/ && NF >= 2 {
        off = $1 + 0; len = $2 + 0
        while (len > 0) { l = (len > max) ? max : len; printf "%.0f %.0f\n", off, l; off += l; len -= l }
    }'
}

# ix_prepare_source [SIZE_MIB DATA_MIB MAX_EXTENT]: the fixture of the interop
# tests.  Sets SRC_IMG (ext4 image with random files; $SRC_IMG.manifest holds
# their sha256), EXTENTS (extent list file), N_EXTENTS, USED_BYTES.
ix_prepare_source() {
    local size=${1:-64} data=${2:-24} maxlen=${3:-$((1024 * 1024))}
    SRC_IMG=$DS_TMP/source.img
    make_ext4_image "$SRC_IMG" "$size" "$data" || fail "make_ext4_image"
    EXTENTS=$DS_TMP/extents.txt
    ext4_used_extents "$SRC_IMG" | ix_split_extents "$maxlen" > "$EXTENTS"
    [[ -s "$EXTENTS" ]] || fail "could not list used extents"
    N_EXTENTS=$(wc -l < "$EXTENTS")
    USED_BYTES=$(extents_total "$EXTENTS")
    ix_log "source: ext4 ${size} MiB, $N_EXTENTS extents (<= $maxlen B each), $USED_BYTES bytes used"
}

# ix_blank_like SRC DST: a sparse all-zero file of the same size.
ix_blank_like() {
    rm -f "$2"
    truncate -s "$(stat -c %s "$1")" "$2"
}

# ix_build_ezio_dir IMG EXTENTS DIR NAME: the layout aria2c/libtorrent use for
# an Ezio/Clonezilla torrent: DIR/NAME/<32 lowercase hex offset> holds the
# bytes of each extent.
ix_build_ezio_dir() {
    local img=$1 ext=$2 dir=$3 name=$4 off len
    mkdir -p "$dir/$name"
    while read -r off len; do
        [[ -z "$off" || "$off" == \#* ]] && continue
        dd if="$img" of="$dir/$name/$(printf '%032x' "$((off))")" bs=1M \
           iflag=skip_bytes,count_bytes skip="$((off))" count="$((len))" status=none \
           || fail "dd extent $off+$len"
    done < "$ext"
}

# ix_cmp_extents SRC DST EXTENTS: bytes of every extent equal on both images.
ix_cmp_extents() {
    local src=$1 dst=$2 ext=$3 off len n=0
    while read -r off len; do
        [[ -z "$off" || "$off" == \#* ]] && continue
        if ! cmp -s -i "$((off)):$((off))" -n "$((len))" "$src" "$dst"; then
            ix_log "extent at $off (+$len) differs: $(cmp -i "$((off)):$((off))" -n "$((len))" "$src" "$dst" 2>&1 | head -1)"
            return 1
        fi
        n=$((n + 1))
    done < "$ext"
    ix_log "all $n extents identical"
}

# ix_cmp_ezio_dir IMG EXTENTS DIR NAME: each DIR/NAME/<hex> file has the
# extent's length and bytes, and there are no other files.
ix_cmp_ezio_dir() {
    local img=$1 ext=$2 dir=$3 name=$4 off len f n=0 sz have
    while read -r off len; do
        [[ -z "$off" || "$off" == \#* ]] && continue
        f="$dir/$name/$(printf '%032x' "$((off))")"
        [[ -f "$f" ]] || { ix_log "missing file $f"; return 1; }
        sz=$(stat -c %s "$f")
        [[ "$sz" -eq "$((len))" ]] || { ix_log "$f has size $sz, want $len"; return 1; }
        cmp -s -i "0:$((off))" -n "$((len))" "$f" "$img" \
            || { ix_log "$f differs from the image at $off"; return 1; }
        n=$((n + 1))
    done < "$ext"
    have=$(find "$dir/$name" -type f | wc -l)
    [[ "$have" -eq "$n" ]] || { ix_log "$have files in $dir/$name, want $n"; return 1; }
    ix_log "all $n extent files identical to the image"
}

# ix_zero_outside IMG EXTENTS: every byte of IMG outside the extents is zero.
ix_zero_outside() {
    python3 - "$1" "$2" <<'PY'
import sys
img, ext = sys.argv[1], sys.argv[2]
exts = sorted(tuple(int(x, 0) for x in l.split()[:2])
              for l in open(ext) if l.strip() and not l.startswith("#"))
with open(img, "rb") as f:
    f.seek(0, 2)
    size = f.tell()
    gaps, pos = [], 0
    for o, l in exts:
        if o > pos:
            gaps.append((pos, o - pos))
        pos = max(pos, o + l)
    if pos < size:
        gaps.append((pos, size - pos))
    for o, l in gaps:
        f.seek(o)
        done = 0
        while done < l:
            b = f.read(min(l - done, 1 << 20))
            if not b:
                break
            if b.count(0) != len(b):
                i = next(k for k, c in enumerate(b) if c)
                sys.exit(f"non-zero byte at {o + done + i} (gap {o}+{l})")
            done += len(b)
PY
}

# ix_check_target SRC DST EXTENTS: every extent byte-equal, nothing written
# outside the extents, e2fsck clean and every file's sha256 equal.
ix_check_target() {
    local src=$1 dst=$2 ext=$3
    ix_check "bytes of all extents equal to the source"
    ix_cmp_extents "$src" "$dst" "$ext" || fail "extent data differs"
    ix_check "nothing written outside the extents (target started all zeros)"
    ix_zero_outside "$dst" "$ext" || fail "bytes written outside the extents"
    ix_check "e2fsck -fn clean, every file's sha256 equal to the source"
    check_ext4_target "$dst" "$src.manifest" || fail "filesystem check failed"
    ix_log "filesystem OK, $(wc -l < "$src.manifest") files identical"
}

# ix_bdecode_py: a tiny bencode decoder shared by the python snippets below.
IX_BDECODE_PY='
def bdecode(data, i=0):
    c = data[i:i+1]
    if c == b"i":
        e = data.index(b"e", i)
        return int(data[i+1:e]), e + 1
    if c == b"l":
        i += 1; out = []
        while data[i:i+1] != b"e":
            v, i = bdecode(data, i); out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1; out = {}
        while data[i:i+1] != b"e":
            k, i = bdecode(data, i); s = i; v, i = bdecode(data, i); out[k] = v
            if k == b"info": out[b"__info_span"] = (s, i)
        return out, i + 1
    colon = data.index(b":", i); n = int(data[i:colon])
    return data[colon+1:colon+1+n], colon + 1 + n
'

# ix_infohash TORRENT: v1 info-hash (hex), computed independently of diskswarm.
ix_infohash() {
    python3 -c "$IX_BDECODE_PY"'
import hashlib, sys
data = open(sys.argv[1], "rb").read()
t, _ = bdecode(data)
s, e = t[b"__info_span"]
print(hashlib.sha1(data[s:e]).hexdigest())' "$1"
}

# ix_check_ezio_torrent TORRENT NAME EXTENTS: the torrent is a v1 multi-file
# torrent in the Ezio layout: info.name = NAME, one file per extent in offset
# order named NAME/<32 lowercase hex offset>, length = extent length, piece
# count consistent with the total.  Prints the piece length.
ix_check_ezio_torrent() {
    python3 -c "$IX_BDECODE_PY"'
import sys
t, _ = bdecode(open(sys.argv[1], "rb").read())
name, ext = sys.argv[2].encode(), sys.argv[3]
exts = [tuple(int(x, 0) for x in l.split()[:2]) for l in open(ext) if l.strip() and not l.startswith("#")]
info = t[b"info"]
err = []
got = info.get(b"name")
if got != name: err.append(f"info.name {got!r} != {name!r}")
files = info.get(b"files")
if not isinstance(files, list): sys.exit("not a multi-file torrent")
if len(files) != len(exts): err.append(f"{len(files)} files, want {len(exts)}")
for k, (f, (o, l)) in enumerate(zip(files, exts)):
    want = [b"%032x" % o]
    gp, gl = f[b"path"], f[b"length"]
    if gp != want: err.append(f"file {k}: path {gp!r}, want {want!r}"); break
    if gl != l: err.append(f"file {k}: length {gl}, want {l}"); break
plen = info[b"piece length"]
total = sum(l for _, l in exts)
if len(info[b"pieces"]) != 20 * ((total + plen - 1) // plen): err.append("piece count does not match total length")
if b"meta version" in info or b"file tree" in info: err.append("v2/hybrid keys in info")
if err: sys.exit("; ".join(err))
print(plen)' "$1" "$2" "$3"
}

# ix_verify_dir_against_torrent TORRENT DIR: check the files in DIR (torrent
# layout: DIR/<name>/<path>) against the torrent's SHA-1 piece hashes.
ix_verify_dir_against_torrent() {
    python3 -c "$IX_BDECODE_PY"'
import hashlib, os, sys
t, _ = bdecode(open(sys.argv[1], "rb").read())
info = t[b"info"]; plen = info[b"piece length"]; hashes = info[b"pieces"]
name = info[b"name"].decode()
buf = b""; idx = 0; bad = 0
def check(b, i):
    return hashlib.sha1(b).digest() == hashes[i*20:i*20+20]
for f in info[b"files"]:
    path = os.path.join(sys.argv[2], name, *[p.decode() for p in f[b"path"]])
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(plen - len(buf))
            if not chunk: break
            buf += chunk
            if len(buf) == plen:
                bad += not check(buf, idx); idx += 1; buf = b""
if buf:
    bad += not check(buf, idx); idx += 1
if idx * 20 != len(hashes): sys.exit(f"piece count {idx} != {len(hashes)//20}")
if bad: sys.exit(f"{bad} of {idx} pieces fail their SHA-1")
print(f"{idx} pieces verified")' "$1" "$2"
}

ix_urlencode_hash() {
    local h=$1 i out=
    for ((i = 0; i < 40; i += 2)); do out+="%${h:i:2}"; done
    printf '%s' "$out"
}

# ix_start_opentracker PORT INFOHASH_HEX: opentracker on 127.0.0.1:PORT
# (tcp+udp) that accepts INFOHASH.  Sets TRACKER_PID.
ix_start_opentracker() {
    local port=$1 ih=$2 d=$DS_TMP/opentracker
    mkdir -p "$d"
    echo "$ih" > "$d/whitelist"
    # Debian's opentracker is built with an info-hash whitelist; it chroots to
    # -d, reads the whitelist (path relative to it) in a thread after start.
    ds_bg "$DS_TMP/opentracker.log" opentracker -i 127.0.0.1 -p "$port" -P "$port" -d "$d" -w whitelist -u nobody
    TRACKER_PID=$DS_BG_PID
    ix_wait_listen "$port" 10 "$TRACKER_PID" || { ix_show_log "$DS_TMP/opentracker.log"; fail "opentracker did not start"; }
    local deadline=$((SECONDS + 10)) q
    q=$(ix_urlencode_hash "$ih")
    while ((SECONDS < deadline)); do
        # refused ("not authorized") until the whitelist is loaded; event=stopped adds no peer
        if curl -s --max-time 2 "http://127.0.0.1:$port/announce?info_hash=$q&peer_id=-IX0000-probeprobe00&port=9&uploaded=0&downloaded=0&left=0&compact=1&event=stopped" \
            | grep -q 'interval'; then
            return 0
        fi
        sleep 0.2
    done
    fail "opentracker did not load its whitelist"
}

# ix_tracker_seeders PORT INFOHASH_HEX: number of seeders opentracker knows.
ix_tracker_seeders() {
    curl -s --max-time 2 "http://127.0.0.1:$1/scrape?info_hash=$(ix_urlencode_hash "$2")" \
        | python3 -c '
import re, sys
m = re.search(rb"8:completei(\d+)e", sys.stdin.buffer.read())
print(m.group(1).decode() if m else 0)'
}

# ix_tracker_announce PORT INFOHASH_HEX PEER_PORT LEFT: announce a peer at
# 127.0.0.1:PEER_PORT on its behalf.
ix_tracker_announce() {
    curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$1/announce?info_hash=$(ix_urlencode_hash "$2")&peer_id=-IX0001-$(printf '%012d' "$3")&port=$3&uploaded=0&downloaded=0&left=$4&compact=1&event=started"
}

# ix_lt ARGS...: run tests/lib/lt_peer.py with the Debian python.
ix_lt() { "$DS_PY" "$IX_LT_PEER" "$@"; }

# ix_case NAME FUNCTION: ds_case, unless IX_ONLY (a regex) is set and NAME does
# not match it (for debugging one case: IX_ONLY=relay DS_KEEP=1 tests/e2e/...).
ix_case() {
    if [[ -n "${IX_ONLY:-}" && ! "$1" =~ $IX_ONLY ]]; then
        ix_log "case $1 not selected by IX_ONLY"
        return 0
    fi
    ds_case "$@"
}
