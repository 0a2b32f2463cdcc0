# shellcheck shell=bash
# tests/lib/common.sh — shared helpers for diskswarm's end-to-end scripts and demo.sh.
#
# Source it, then call ds_init once: it makes $DS_TMP and installs an EXIT trap that, even on failure or
# timeout (SIGTERM/SIGINT), kills the background processes registered with ds_bg/ds_track_pid, unmounts what
# ds_mount mounted, detaches loop devices from ds_losetup, deletes network namespaces/links registered with
# ds_track_netns/ds_track_link, and removes $DS_TMP (set DS_KEEP=1 to keep it for debugging).
#
# Test cases: write each case as a function and run it with `ds_case NAME FUNCTION [ARGS...]`. The case runs
# in a subshell with `set -e` and its own cleanup trap; exit 0 = pass, 77 = skip (see need_root / skip),
# anything else = fail. End the script with `ds_finish`, which prints "N passed, N failed, N skipped" and
# exits 1 if any case failed. (See tests/README.md for the runner's conventions.)
#
# Nothing here touches a real disk: images are regular files under $DS_TMP, loop devices are allocated with
# `losetup -f --show` on those files only.

DS_ROOT=${DS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DISKSWARM=${DISKSWARM:-$DS_ROOT/build/diskswarm}
# The Debian python (with python3-libtorrent etc.); a pyenv python on PATH lacks Debian's modules.
DS_PY=${DS_PY:-/usr/bin/python3}
[ -x "$DS_PY" ] || DS_PY=python3
DSTOOL=$DS_ROOT/tests/lib/dstool.py
dstool() { "$DS_PY" "$DSTOOL" "$@"; }

DS_PASSED=0 DS_FAILED=0 DS_SKIPPED=0
DS_PORTS=()
DS_TMP='' DS_REG=''

ds_log() { printf '%s\n' "$*" >&2; }
fail() { ds_log "  FAIL: $*"; exit 1; }
skip() { ds_log "  SKIP: $*"; exit 77; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# need_root: inside a case, skip it (visibly counted as skipped) unless running as root.
need_root() { is_root || skip "needs root (run as root to include this case)"; }

# ---------------------------------------------------------------------------------------------------------
# cleanup registry

# The registry is a file ($DS_REG, one "KIND VALUE" line per resource) rather than shell arrays, so that
# resources registered inside a command substitution — loop=$(ds_losetup IMG) — are still cleaned up.
ds_reg() { # KIND VALUE
    if [ -z "${DS_REG:-}" ]; then
        ds_log "warning: $1 $2 registered before ds_init; it will not be cleaned up"
        return 0
    fi
    printf '%s %s\n' "$1" "$2" >>"$DS_REG"
}

ds_unreg() { # KIND VALUE
    [ -n "${DS_REG:-}" ] && [ -f "$DS_REG" ] || return 0
    grep -vxF -- "$1 $2" "$DS_REG" >"$DS_REG.new" || true
    mv -f "$DS_REG.new" "$DS_REG"
}

ds_reg_list() { # KIND: values, most recent first
    [ -n "${DS_REG:-}" ] && [ -f "$DS_REG" ] || return 0
    tac "$DS_REG" | awk -v k="$1" '$1 == k { sub(/^[^ ]+ /, ""); print }'
}

ds_cleanup() {
    local rc=$? pid v n pids
    set +e
    trap - EXIT INT TERM ERR
    pids=$(ds_reg_list pid)
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null; done
    for pid in $pids; do
        n=0
        while kill -0 "$pid" 2>/dev/null && ((n < 50)); do sleep 0.1; n=$((n + 1)); done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    while IFS= read -r v; do
        if mountpoint -q "$v" 2>/dev/null; then
            umount "$v" 2>/dev/null || umount -l "$v" 2>/dev/null
        fi
    done < <(ds_reg_list mount)
    while IFS= read -r v; do losetup -d "$v" 2>/dev/null; done < <(ds_reg_list loop)
    while IFS= read -r v; do
        for pid in $(ip netns pids "$v" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$v" 2>/dev/null
    done < <(ds_reg_list netns)
    while IFS= read -r v; do ip link del "$v" 2>/dev/null; done < <(ds_reg_list link)
    [ -n "${DS_REG:-}" ] && rm -f "$DS_REG"
    if [ -n "$DS_TMP" ] && [ -d "$DS_TMP" ] && [ "${DS_OWN_TMP:-1}" = 1 ]; then
        if [ -n "${DS_KEEP:-}" ]; then ds_log "keeping $DS_TMP"; else rm -rf "$DS_TMP"; fi
    fi
    return "$rc"
}

# ds_init: temp dir + cleanup trap for the whole script.
ds_init() {
    DS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/diskswarm-test.XXXXXX")
    DS_OWN_TMP=1
    DS_REG=$DS_TMP/.cleanup.main
    : >"$DS_REG"
    trap ds_cleanup EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
}

ds_track_pid() { ds_reg pid "$1"; }
ds_track_netns() { ds_reg netns "$1"; }
ds_track_link() { ds_reg link "$1"; }

# ds_bg LOGFILE CMD...: start CMD in the background with stdout+stderr to LOGFILE, register it; sets DS_BG_PID.
ds_bg() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 </dev/null &
    DS_BG_PID=$!
    ds_reg pid "$DS_BG_PID"
}

# ds_bg_split OUTFILE ERRFILE CMD...: like ds_bg with stdout and stderr in separate files.
ds_bg_split() {
    local out=$1 err=$2
    shift 2
    "$@" >"$out" 2>"$err" </dev/null &
    DS_BG_PID=$!
    ds_reg pid "$DS_BG_PID"
}

# ds_losetup FILE [losetup options...]: attach FILE to a free loop device, register it, print the device.
ds_losetup() {
    local file=$1 dev
    shift
    dev=$(losetup "$@" -f --show "$file") || return 1
    ds_reg loop "$dev"
    printf '%s\n' "$dev"
}

ds_loop_detach() {
    losetup -d "$1" || return 1
    ds_unreg loop "$1"
}

# ds_mount DEV DIR [mount options]: mount and register.
ds_mount() {
    local dev=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    mount "$@" "$dev" "$dir" || return 1
    ds_reg mount "$dir"
}

ds_umount() {
    umount "$1" || return 1
    ds_unreg mount "$1"
}

# ---------------------------------------------------------------------------------------------------------
# processes and ports

# free_port: print a currently free TCP port on 127.0.0.1, distinct from those already handed out here.
# Callers take it as $(free_port), a subshell, so the ports handed out are kept in a file under DS_TMP (an
# array would not survive the subshell: `a=$(free_port) b=$(free_port)` once gave the same port twice, and
# the second listener failed with "Address already in use").
free_port() {
    local port n used=${DS_TMP:+$DS_TMP/.ports}
    for ((n = 0; n < 50; n++)); do
        port=$("$DS_PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || return 1
        if [ -n "$used" ]; then
            grep -qx "$port" "$used" 2>/dev/null && continue
            printf '%s\n' "$port" >>"$used"
        elif [[ " ${DS_PORTS[*]} " == *" $port "* ]]; then
            continue
        fi
        DS_PORTS+=("$port")
        printf '%s\n' "$port"
        return 0
    done
    return 1
}

# wait_for_exit PID TIMEOUT_SEC: wait for a child of this shell; returns its exit status, or 124 if it is still
# running after TIMEOUT_SEC (it is then left running; the cleanup trap kills it).
wait_for_exit() {
    local pid=$1 timeout=$2 deadline
    deadline=$(($(date +%s%N) / 1000000 + timeout * 1000))
    while kill -0 "$pid" 2>/dev/null; do
        if (($(date +%s%N) / 1000000 >= deadline)); then return 124; fi
        sleep 0.2
    done
    wait "$pid"
}

# wait_port PORT TIMEOUT_SEC [NETNS]: wait until something listens on TCP PORT (in NETNS if given).
wait_port() {
    local port=$1 timeout=$2 ns=${3:-} n
    for ((n = 0; n < timeout * 10; n++)); do
        if [ -n "$ns" ]; then
            ip netns exec "$ns" ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
        else
            ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
        fi
        sleep 0.1
    done
    return 1
}

# kill_and_wait PID [TIMEOUT_SEC]: SIGTERM, wait up to TIMEOUT (default 10 s), SIGKILL; returns the exit status.
kill_and_wait() {
    local pid=$1 timeout=${2:-10} rc
    kill -TERM "$pid" 2>/dev/null
    wait_for_exit "$pid" "$timeout" && return 0
    rc=$?
    if [ "$rc" = 124 ]; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 124
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------------------------------------
# ext4 images

# ds_populate DIR DATA_MB: write about DATA_MB MiB of random files in several directories: many small files
# (some of which are deleted again so free space ends up fragmented), medium ones, a sparse one, an empty one
# and a few large ones.
ds_populate() {
    local dir=$1 data_mb=$2 budget small_budget med_budget sum i size d
    budget=$((data_mb * 1048576))
    small_budget=$((budget / 8))
    med_budget=$((budget * 3 / 8))
    mkdir -p "$dir"/{etc,home/user/docs,var/lib/deep/er/still,opt/big,srv/mixed}
    local doomed=()
    sum=0
    for ((i = 0; i < 3000 && sum < small_budget; i++)); do
        size=$((1 + (i * 7919 + 13) % 24576))
        case $((i % 4)) in 0) d=etc ;; 1) d=home/user/docs ;; 2) d=var/lib/deep/er/still ;; *) d=srv/mixed ;; esac
        head -c "$size" /dev/urandom >"$dir/$d/small_$i.bin"
        sum=$((sum + size))
        ((i % 3)) || doomed+=("$dir/$d/small_$i.bin")
    done
    # punch holes in the allocation: get the small files allocated (delayed allocation happens at writeback),
    # then delete every third one before the big ones are written
    sync -f "$dir/etc" 2>/dev/null || sync
    rm -f "${doomed[@]}"
    sum=0
    for ((i = 0; i < 200 && sum < med_budget; i++)); do
        size=$((65536 + (i * 104729) % 983040))
        head -c "$size" /dev/urandom >"$dir/srv/mixed/medium_$i.dat"
        sum=$((sum + size))
    done
    : >"$dir/etc/empty"
    printf 'hello from diskswarm\n' >"$dir/etc/motd"
    truncate -s 3M "$dir/home/user/sparse.img"
    printf 'island in a sea of holes' | dd of="$dir/home/user/sparse.img" bs=1 seek=1500000 conv=notrunc status=none
    ln -s ../etc/motd "$dir/home/motd.link"
    local rest=$((budget - budget / 8 - med_budget))
    ((rest > 0)) || rest=1048576
    for i in 1 2 3; do
        head -c $((rest / 3)) /dev/urandom >"$dir/opt/big/large_$i.bin"
    done
}

ds_manifest() { # ds_manifest DIR > MANIFEST
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}

# make_ext4_image FILE SIZE_MB DATA_MB: a fresh ext4 filesystem in FILE filled with about DATA_MB MiB of random
# files; writes FILE.manifest (sha256sum of every file, paths relative to the fs root). As root the filesystem
# is loop-mounted and written through the kernel (realistic allocation, fragmented by deletions); otherwise it
# is built with mkfs.ext4 -d from a staging directory.
make_ext4_image() {
    local img=$1 size_mb=$2 data_mb=$3 stage mnt loop
    rm -f "$img"
    truncate -s "${size_mb}M" "$img"
    if is_root; then
        mkfs.ext4 -q -F -b 4096 -L dstest "$img" || return 1
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
        mkfs.ext4 -q -F -b 4096 -L dstest -d "$stage" "$img" || return 1
        rm -rf "$stage"
    fi
    e2fsck -fn "$img" >/dev/null 2>&1 || { ds_log "make_ext4_image: fresh fs not clean"; return 1; }
}

# ext4_used_extents IMG > extents.txt: the byte extents ("OFFSET LENGTH", decimal, sorted, merged) of every
# block the filesystem uses according to its block bitmaps — superblock and backups, group descriptors,
# bitmaps, inode tables, journal, directories and file data — plus block 0 (boot sector) which on a 1 KiB
# block fs lies outside the bitmaps. Computed as the complement of dumpe2fs's per-group free ranges (read
# from the bitmaps); the total is checked against the group descriptors' free counts (the superblock's own
# count is only updated lazily by the kernel, so it is not used).
ext4_used_extents() {
    local img=$1 dump
    dump=$(dumpe2fs "$img" 2>/dev/null) || { ds_log "dumpe2fs $img failed"; return 1; }
    printf '%s\n' "$dump" | awk '
        /^Block size:/      { bs = $3 }
        /^Block count:/     { bc = $3 }
        /^  [0-9]+ free blocks, / { fc += $1; ngd++ }
        /^  Free blocks: /  {
            s = $0; sub(/^  Free blocks: */, "", s)
            n = split(s, r, /, */)
            for (i = 1; i <= n; i++) {
                if (r[i] == "") continue
                if (split(r[i], ab, "-") == 2) print "F", ab[1], ab[2]; else print "F", r[i], r[i]
            }
        }
        END { print "H", bs, bc, fc }' | sort -k1,1 -k2,2n | awk '
        BEGIN { nf = 0 }
        $1 == "H" { bs = $2; bc = $3; fc = $4; next }
        $1 == "F" { fs[nf] = $2; fe[nf] = $3; nf++ }
        END {
            if (!bs || !bc) { print "ext4_used_extents: no block size/count" > "/dev/stderr"; exit 1 }
            cur = 0; used = 0; freed = 0
            for (i = 0; i < nf; i++) {
                if (fs[i] > cur) { emit(cur, fs[i] - cur) }
                if (fe[i] + 1 > cur) cur = fe[i] + 1
                freed += fe[i] - fs[i] + 1
            }
            if (cur < bc) emit(cur, bc - cur)
            flush()
            if (freed != fc) {
                printf "ext4_used_extents: free ranges sum to %d blocks, group descriptors say %d\n", freed, fc > "/dev/stderr"
                exit 1
            }
        }
        function emit(start, len) {
            if (have && pstart + plen == start) { plen += len; return }
            flush(); pstart = start; plen = len; have = 1
        }
        function flush() {
            if (have) printf "%.0f %.0f\n", pstart * bs, plen * bs
            have = 0
        }'
}

# extents_total FILE: sum of the extents' lengths in bytes.
extents_total() { awk '!/^#/ && NF >= 2 { s += $2 } END { printf "%.0f\n", s }' "$1"; }

# check_ext4_target IMG MANIFEST: e2fsck -fn must be clean and every file in MANIFEST must have its sha256
# (and the fs must hold no extra regular files). Mounts read-only through a loop device as root; otherwise
# extracts the tree with debugfs rdump.
check_ext4_target() {
    local img=$1 manifest=$2 dir loop out n_fs n_man rc=0
    manifest=$(cd "$(dirname "$manifest")" && pwd)/$(basename "$manifest")
    if ! out=$(e2fsck -fn "$img" 2>&1); then
        ds_log "check_ext4_target: e2fsck -fn $img reports problems:"
        printf '%s\n' "$out" | head -30 >&2
        return 1
    fi
    dir=$(mktemp -d "$DS_TMP/check.XXXXXX")
    if is_root; then
        loop=$(ds_losetup "$img" -r) || return 1
        ds_mount "$loop" "$dir" -o ro,noload || { ds_loop_detach "$loop"; return 1; }
    else
        debugfs -R "rdump / $dir" "$img" >/dev/null 2>&1 || { ds_log "debugfs rdump failed"; return 1; }
    fi
    if ! (cd "$dir" && sha256sum --quiet --strict -c "$manifest") >&2; then
        ds_log "check_ext4_target: file contents differ from $manifest"
        rc=1
    fi
    n_fs=$(cd "$dir" && find . -type f ! -path './lost+found/*' | wc -l)
    n_man=$(wc -l <"$manifest")
    if [ "$n_fs" != "$n_man" ]; then
        ds_log "check_ext4_target: $n_fs regular files on $img, manifest lists $n_man"
        rc=1
    fi
    if is_root; then
        ds_umount "$dir" && ds_loop_detach "$loop"
    fi
    rm -rf "$dir"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------------------
# cases and summary

# ds_case NAME FUNCTION [ARGS...]: run one test case in a subshell with set -e and its own cleanup.
ds_case() {
    local name=$1 rc
    shift
    ds_log "--- case $name"
    set +e
    (
        DS_OWN_TMP=0
        DS_REG=$DS_TMP/.cleanup.case.$BASHPID
        : >"$DS_REG"
        trap ds_cleanup EXIT
        trap 'exit 143' TERM
        set -eE -o pipefail
        DS_ERR_SHOWN=
        trap 'if [ -z "$DS_ERR_SHOWN" ] && [[ $BASH_COMMAND != exit* && $BASH_COMMAND != return* ]]; then
                  DS_ERR_SHOWN=1; ds_log "  command failed (line $LINENO): $BASH_COMMAND"; fi' ERR
        "$@"
    )
    rc=$?
    set -e
    case $rc in
    0) DS_PASSED=$((DS_PASSED + 1)); echo "ok   $name" ;;
    77) DS_SKIPPED=$((DS_SKIPPED + 1)); echo "SKIP $name" ;;
    *) DS_FAILED=$((DS_FAILED + 1)); echo "FAIL $name (exit $rc)" ;;
    esac
    return 0
}

ds_finish() {
    echo "$DS_PASSED passed, $DS_FAILED failed, $DS_SKIPPED skipped"
    [ "$DS_FAILED" -eq 0 ]
}

# ---------------------------------------------------------------------------------------------------------
# dependencies (shared with .ci/run and demo.sh through tests/deps.txt)

ds_deps_list() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$DS_ROOT/tests/deps.txt" | awk '{print $1}'; }

ds_deps_missing() {
    local p missing=()
    for p in $(ds_deps_list); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    printf '%s\n' "${missing[@]}"
}

# ds_install_deps: as root, apt-get install whatever from tests/deps.txt is missing (DS_NO_INSTALL=1 to skip).
ds_install_deps() {
    local missing
    [ -n "${DS_NO_INSTALL:-}" ] && return 0
    command -v dpkg-query >/dev/null || return 0
    missing=$(ds_deps_missing | tr '\n' ' ')
    [ -z "${missing// /}" ] && return 0
    if ! is_root; then
        ds_log "warning: missing packages (run as root to install): $missing"
        return 0
    fi
    ds_log "installing: $missing"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}
