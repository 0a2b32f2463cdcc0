#!/usr/bin/env bash
# timeout: 900
# asan: yes
# serve_deploy.sh — `diskswarm serve IMAGE_DIR` + `diskswarm deploy http://SERVER:PORT --to TARGET`.
#   three_machines: a captured GPT disk (EFI FAT32 + ext4) served with --expect 3, deployed onto three file
#     targets (one 64 MiB larger than the source): all deploys and serve exit 0, partition tables equal
#     (modulo last-lba on the larger one, whose backup GPT is moved to the end: sfdisk --verify clean),
#     fsck clean, every file equal, no state file left behind; /torrents/ serves nothing but the manifest's files.
#   refusals: a mounted target, a too small block device, no --yes with stdin not a terminal — each refused
#     with the target untouched.
#   resume_after_kill9: a ~200 MiB image through a shaped link (two network namespaces, 160 Mbit/s): deploy is
#     kill -9'ed after 20 %, the rerun resumes from the state file, downloads less than the whole image, and
#     the target is a clean copy.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/capture.sh"
. "$(dirname "$0")/../lib/gpt_disk.sh"
ds_init

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }

# make_gpt_disk IMG SIZE_MB DATA_MB
make_gpt_disk() {
    need_root
    command -v mcopy >/dev/null || skip "mtools missing"
    gpt_make_disk "$1" "$2" 64 ds_populate "$3" || fail "making the GPT sample disk"
}

# check_target SOURCE TARGET: table (modulo last-lba), both filesystems and all files as on SOURCE
check_target() { gpt_check_target "$1" "$2" nolast || fail "$2 is not a copy of $1"; }

# last JSON object of TYPE in FILE, field FIELD
json_field() { # FILE TYPE FIELD
    "$DS_PY" - "$@" <<'PY'
import json, sys
val = None
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("type") == sys.argv[2] and sys.argv[3] in o:
        val = o[sys.argv[3]]
print("" if val is None else (json.dumps(val) if isinstance(val, bool) else val))
PY
}

DISK=$DS_TMP/disk.img
OUT=$DS_TMP/image

case_three_machines() {
    cap_case_init
    make_gpt_disk "$DISK" 128 30
    "$DISKSWARM" capture "$DISK" -o "$OUT" --name sda --piece-size 1M --store >"$OUT.log" 2>&1 ||
        { cat "$OUT.log" >&2; fail "capture"; }
    local port ports=() pids=() i rc bad=0 size=$((128 << 20)) sp
    port=$(free_port)
    ds_bg_split "$DS_TMP/serve.out" "$DS_TMP/serve.err" \
        "$DISKSWARM" serve "$OUT" --listen "127.0.0.1:$port" --peer-port "$(free_port)" --expect 3 --json
    sp=$DS_BG_PID
    wait_port "$port" 20 || { cat "$DS_TMP/serve.err" >&2; fail "serve not listening"; }
    grep -q "dashboard:  http://127.0.0.1:$port/" "$DS_TMP/serve.err" || { cat "$DS_TMP/serve.err" >&2; fail "no dashboard URL"; }
    # only the manifest's files are served
    curl -fsS "http://127.0.0.1:$port/torrents/sda.torrent" | cmp - "$OUT/sda.torrent" || fail "torrent not served"
    curl -fsS "http://127.0.0.1:$port/manifest.json" | cmp - "$OUT/manifest.json" || fail "manifest not served"
    for bad_path in /torrents/manifest.json /torrents/../manifest.json /torrents/%2e%2e/sda.torrent /torrents/ \
        /torrents/sda.dsimg; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --path-as-is "http://127.0.0.1:$port$bad_path")
        [ "$code" = 404 ] || fail "$bad_path answered $code"
    done
    for i in 0 1 2; do
        ports+=("$(free_port)")
        rm -f "$DS_TMP/t$i.img"
        if [ "$i" = 2 ]; then truncate -s $((size + (64 << 20))) "$DS_TMP/t$i.img"; else truncate -s "$size" "$DS_TMP/t$i.img"; fi
        ds_bg_split "$DS_TMP/d$i.out" "$DS_TMP/d$i.err" \
            "$DISKSWARM" deploy "http://127.0.0.1:$port" --to "$DS_TMP/t$i.img" --yes --json \
            --listen "127.0.0.1:${ports[i]}" --then "touch $DS_TMP/then$i"
        pids+=("$DS_BG_PID")
    done
    for i in 0 1 2; do
        rc=0
        wait_for_exit "${pids[i]}" 240 || rc=$?
        if [ "$rc" != 0 ]; then
            ds_log "  deploy $i exit $rc"
            tail -n 5 "$DS_TMP/d$i.err" "$DS_TMP/d$i.out" >&2
            bad=1
        else
            ds_log "  deploy $i: $(grep '"type":"deploy"' "$DS_TMP/d$i.out" | tail -n 1)"
        fi
    done
    [ "$bad" = 0 ] || fail "a deploy failed"
    rc=0
    wait_for_exit "$sp" 60 || rc=$?
    [ "$rc" = 0 ] || { tail -n 10 "$DS_TMP/serve.err" >&2; fail "serve exit $rc"; }
    grep -q '"type":"done","role":"serve","ok":true,"reason":"swarm complete","machines_complete":3' \
        "$DS_TMP/serve.out" || { cat "$DS_TMP/serve.out" >&2; fail "serve did not see 3 machines"; }
    for i in 0 1 2; do
        [ "$(json_field "$DS_TMP/d$i.out" deploy ok)" = true ] || fail "deploy $i: no ok"
        [ ! -e "$DS_TMP/t$i.img.dsstate" ] || fail "state file of t$i left behind"
        [ -e "$DS_TMP/then$i" ] || fail "deploy $i did not run --then"
        check_target "$DISK" "$DS_TMP/t$i.img"
    done
    [ "$(json_field "$DS_TMP/d2.out" deploy gpt_relocated)" = true ] || fail "backup GPT not relocated on the larger target"
    [ "$(json_field "$DS_TMP/d0.out" deploy gpt_relocated)" = false ] || fail "relocated on a same-size target"
    # the larger target's backup header is at its last LBA and covers its full size
    sfdisk -d "$DS_TMP/t2.img" | grep -q "^last-lba: $(((size + (64 << 20)) / 512 - 34))\$" ||
        { sfdisk -d "$DS_TMP/t2.img" >&2; fail "last-lba of the larger target"; }
    if command -v sgdisk >/dev/null; then
        sgdisk -v "$DS_TMP/t2.img" | grep -q "No problems found" || { sgdisk -v "$DS_TMP/t2.img" >&2; fail "sgdisk -v"; }
    fi
}

case_refusals() {
    cap_case_init
    need_root
    [ -s "$OUT/manifest.json" ] || skip "no image (previous case skipped)"
    local port sp small loop mnt t rc h
    port=$(free_port)
    ds_bg_split "$DS_TMP/serve2.out" "$DS_TMP/serve2.err" \
        "$DISKSWARM" serve "$OUT" --listen "127.0.0.1:$port" --peer-port "$(free_port)"
    sp=$DS_BG_PID
    wait_port "$port" 20 || { cat "$DS_TMP/serve2.err" >&2; fail "serve not listening"; }
    # mounted target (a file whose loop device is mounted)
    t=$DS_TMP/mounted.img
    truncate -s 160M "$t"
    mkfs.ext4 -q -F "$t"
    loop=$(ds_losetup "$t")
    mnt=$DS_TMP/mnt-target
    ds_mount "$loop" "$mnt"
    rc=0
    "$DISKSWARM" deploy "http://127.0.0.1:$port" --to "$t" --yes --listen "127.0.0.1:$(free_port)" \
        >"$DS_TMP/r1.out" 2>&1 || rc=$?
    ds_log "  exit $rc: $(tail -n 1 "$DS_TMP/r1.out")"
    [ "$rc" != 0 ] && grep -q "mounted" "$DS_TMP/r1.out" || fail "a mounted target was not refused"
    ds_umount "$mnt"
    ds_loop_detach "$loop"
    e2fsck -fn "$t" >/dev/null 2>&1 || fail "the mounted target was damaged"
    # a block device smaller than the source disk
    small=$DS_TMP/small.img
    truncate -s 64M "$small"
    loop=$(ds_losetup "$small")
    rc=0
    "$DISKSWARM" deploy "http://127.0.0.1:$port" --to "$loop" --yes --listen "127.0.0.1:$(free_port)" \
        --state "$DS_TMP/small.state" >"$DS_TMP/r2.out" 2>&1 || rc=$?
    ds_log "  exit $rc: $(tail -n 1 "$DS_TMP/r2.out")"
    [ "$rc" != 0 ] && grep -q "too small" "$DS_TMP/r2.out" || fail "a too small device was not refused"
    ds_loop_detach "$loop"
    # no --yes, stdin not a terminal
    t=$DS_TMP/noyes.img
    head -c 1M /dev/urandom >"$t"
    truncate -s 128M "$t"
    h=$(sha256sum <"$t")
    rc=0
    "$DISKSWARM" deploy "http://127.0.0.1:$port" --to "$t" --listen "127.0.0.1:$(free_port)" \
        </dev/null >"$DS_TMP/r3.out" 2>&1 || rc=$?
    ds_log "  exit $rc: $(tail -n 1 "$DS_TMP/r3.out")"
    [ "$rc" != 0 ] && grep -q -- "--yes" "$DS_TMP/r3.out" || fail "no --yes on a non-TTY was not refused"
    [ "$(sha256sum <"$t")" = "$h" ] || fail "the unconfirmed target was modified"
    # a server that is not there
    rc=0
    "$DISKSWARM" deploy "http://127.0.0.1:$(free_port)" --to "$t" --yes >"$DS_TMP/r4.out" 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "no server: exit $rc"
    kill_and_wait "$sp" 10 || fail "serve did not stop cleanly on SIGTERM"
}

NS_S='' NS_M=''
case_resume_after_kill9() {
    cap_case_init
    need_root
    command -v tc >/dev/null || skip "tc missing"
    local disk=$DS_TMP/big.img out=$DS_TMP/big-image tag port pport t=$DS_TMP/big-target.img pid rc n pct
    make_gpt_disk "$disk" 320 200
    "$DISKSWARM" capture "$disk" -o "$out" --name sda --piece-size 1M --store >"$out.log" 2>&1 ||
        { cat "$out.log" >&2; fail "capture"; }
    tag=$$
    NS_S=dssd-s$tag NS_M=dssd-m$tag
    ip netns add "$NS_S" && ds_track_netns "$NS_S"
    ip netns add "$NS_M" && ds_track_netns "$NS_M"
    ip link add "dssv$tag" netns "$NS_S" type veth peer name "dsmv$tag" netns "$NS_M"
    ip -n "$NS_S" addr add 198.18.77.1/24 dev "dssv$tag"
    ip -n "$NS_M" addr add 198.18.77.2/24 dev "dsmv$tag"
    for ns in "$NS_S" "$NS_M"; do ip -n "$ns" link set lo up; done
    ip -n "$NS_S" link set "dssv$tag" up
    ip -n "$NS_M" link set "dsmv$tag" up
    ip netns exec "$NS_S" tc qdisc add dev "dssv$tag" root tbf rate 160mbit burst 64kb latency 50ms
    ip netns exec "$NS_M" tc qdisc add dev "dsmv$tag" root tbf rate 160mbit burst 64kb latency 50ms
    port=6969 pport=6970
    ds_bg_split "$DS_TMP/bs.out" "$DS_TMP/bs.err" \
        ip netns exec "$NS_S" "$DISKSWARM" serve "$out" --listen "198.18.77.1:$port" --expect 1 --json
    wait_port "$port" 20 "$NS_S" || { cat "$DS_TMP/bs.err" >&2; fail "serve not listening"; }
    local sp=$DS_BG_PID
    truncate -s 320M "$t"
    ds_bg_split "$DS_TMP/bd1.out" "$DS_TMP/bd1.err" \
        ip netns exec "$NS_M" "$DISKSWARM" deploy "http://198.18.77.1:$port" --to "$t" --yes --json
    pid=$DS_BG_PID
    pct=0
    for ((n = 0; n < 600; n++)); do
        pct=$(json_field "$DS_TMP/bd1.out" progress percent)
        [ -n "$pct" ] && "$DS_PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) > 20 else 1)" "$pct" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # the deploy runs inside `ip netns exec`, which execs it: $pid is the deploy itself
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ds_log "  killed the first deploy at $pct %"
    "$DS_PY" -c "import sys; sys.exit(0 if 20 < float(sys.argv[1]) < 95 else 1)" "${pct:-0}" ||
        fail "could not kill the deploy mid-run (at ${pct:-?} %)"
    [ -s "$t.dsstate" ] || fail "no state file after kill -9"
    ds_log "  state: $(grep -c . "$t.dsstate") lines"
    rc=0
    ip netns exec "$NS_M" "$DISKSWARM" deploy "http://198.18.77.1:$port" --to "$t" --yes --json \
        >"$DS_TMP/bd2.out" 2>"$DS_TMP/bd2.err" || rc=$?
    [ "$rc" = 0 ] || { tail -n 10 "$DS_TMP/bd2.err" >&2; fail "resumed deploy exit $rc"; }
    grep -q '"event":"resume"' "$DS_TMP/bd2.out" || fail "the rerun did not resume"
    local total down
    total=$(json_field "$DS_TMP/bd2.out" complete bytes)
    down=$(json_field "$DS_TMP/bd2.out" deploy downloaded)
    ds_log "  rerun downloaded $down of $total bytes"
    [ -n "$down" ] && [ -n "$total" ] && [ "$down" -lt $((total * 85 / 100)) ] ||
        fail "the rerun downloaded $down of $total bytes: verified pieces were fetched again"
    [ ! -e "$t.dsstate" ] || fail "state file left after success"
    rc=0
    wait_for_exit "$sp" 60 || rc=$?
    [ "$rc" = 0 ] || { tail -n 5 "$DS_TMP/bs.err" >&2; fail "serve exit $rc"; }
    check_target "$disk" "$t"
}

ds_case three_machines case_three_machines
ds_case refusals case_refusals
ds_case resume_after_kill9 case_resume_after_kill9
ds_finish
