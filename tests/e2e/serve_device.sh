#!/usr/bin/env bash
# timeout: 600
# asan: yes
# serve_device.sh — `diskswarm serve DEVICE`: the device is captured on the fly into a state directory (torrent
# and manifest, no image store) and seeded straight from the device.
#   image_file: the GPT sample disk as a plain file (no root needed) → serve FILE --expect 1 → deploy onto a blank
#     file: exit 0, the target is a copy of the disk; the temporary state directory is gone after serve exits;
#     nothing but the manifest and the torrent was written there (no image store).
#   loop_device: the same disk on a loop device, with --state-dir (kept) → two deploys onto blank files, both
#     copies of the disk.
#   mounted_rw_refused: a filesystem mounted read-write from the device → serve refuses with a clear message and
#     exit 1, before listening; mounted read-only → served.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/gpt_disk.sh"
ds_init

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }
DISK=$DS_TMP/disk.img

make_disk() {
    command -v mcopy >/dev/null || skip "mtools missing"
    [ -s "$DISK" ] || gpt_make_disk "$DISK" 128 48 ds_populate 20 || fail "making the GPT sample disk"
}

# serve_deploy SOURCE N [SERVE_ARGS...]: serve SOURCE --expect N, N deploys onto blank files $DS_TMP/tN.img
serve_deploy() {
    local src=$1 n=$2 port sp pids=() i rc
    shift 2
    port=$(free_port)
    ds_bg_split "$DS_TMP/serve.out" "$DS_TMP/serve.err" \
        "$DISKSWARM" serve "$src" --listen "127.0.0.1:$port" --peer-port "$(free_port)" --expect "$n" --json "$@"
    sp=$DS_BG_PID
    wait_port "$port" 60 || { cat "$DS_TMP/serve.err" >&2; fail "serve not listening"; }
    for ((i = 0; i < n; i++)); do
        rm -f "$DS_TMP/t$i.img"
        truncate -s 128M "$DS_TMP/t$i.img"
        ds_bg_split "$DS_TMP/d$i.out" "$DS_TMP/d$i.err" "$DISKSWARM" deploy "http://127.0.0.1:$port" \
            --to "$DS_TMP/t$i.img" --yes --json --listen "127.0.0.1:$(free_port)"
        pids+=("$DS_BG_PID")
    done
    for ((i = 0; i < n; i++)); do
        rc=0
        wait_for_exit "${pids[i]}" 240 || rc=$?
        [ "$rc" = 0 ] || { tail -n 8 "$DS_TMP/d$i.err" >&2; fail "deploy $i exit $rc"; }
    done
    rc=0
    wait_for_exit "$sp" 60 || rc=$?
    [ "$rc" = 0 ] || { tail -n 10 "$DS_TMP/serve.err" >&2; fail "serve exit $rc"; }
    grep -q "\"reason\":\"swarm complete\",\"machines_complete\":$n" "$DS_TMP/serve.out" ||
        fail "serve did not see $n machines complete"
    "$DS_PY" -c 'import json,sys
for l in open(sys.argv[1]):
    json.loads(l)' "$DS_TMP/serve.out" || fail "serve's stdout is not JSON lines only"
    for ((i = 0; i < n; i++)); do gpt_check_target "$DISK" "$DS_TMP/t$i.img" || fail "t$i is not a copy"; done
}

case_image_file() {
    make_disk
    local dir
    serve_deploy "$DISK" 1
    dir=$(sed -n 's/^diskswarm serve: capturing .* into \(.*\) (used blocks.*/\1/p' "$DS_TMP/serve.err")
    [ -n "$dir" ] || { cat "$DS_TMP/serve.err" >&2; fail "serve did not say where it captured"; }
    [ ! -e "$dir" ] || fail "the temporary state directory $dir was left behind"
}

case_loop_device() {
    need_root
    make_disk
    local loop st=$DS_TMP/state
    loop=$(ds_losetup "$DISK" -r)
    serve_deploy "$loop" 2 --state-dir "$st"
    [ -s "$st/manifest.json" ] || fail "no manifest kept in --state-dir"
    "$DS_PY" -c 'import json,sys; m=json.load(open(sys.argv[1]))
assert m["source"] == sys.argv[2] and m["mode"] == "whole-disk", (m["source"], m["mode"])
assert all("image" not in t for t in m["torrents"]), m["torrents"]' "$st/manifest.json" "$loop" ||
        fail "manifest in the state directory"
    [ "$(ls "$st" | grep -v -e '^manifest.json$' -e '\.torrent$' | wc -l)" = 0 ] || fail "more than torrent + manifest"
    ds_loop_detach "$loop"
}

case_mounted_rw_refused() {
    need_root
    local img=$DS_TMP/fs.img loop mnt=$DS_TMP/mnt rc=0 port
    truncate -s 64M "$img"
    mkfs.ext4 -q -F "$img"
    loop=$(ds_losetup "$img")
    ds_mount "$loop" "$mnt"
    port=$(free_port)
    timeout 60 "$DISKSWARM" serve "$loop" --listen "127.0.0.1:$port" --peer-port "$(free_port)" >"$DS_TMP/rw.out" \
        2>&1 || rc=$?
    ds_log "  exit $rc: $(tail -n 1 "$DS_TMP/rw.out")"
    [ "$rc" = 1 ] && grep -q "refusing to serve $loop: .*mounted read-write on $mnt" "$DS_TMP/rw.out" ||
        fail "a device mounted read-write was not refused clearly"
    rc=0
    timeout 60 "$DISKSWARM" serve "$img" --listen "127.0.0.1:$port" --peer-port "$(free_port)" >"$DS_TMP/rw2.out" \
        2>&1 || rc=$?
    [ "$rc" = 1 ] && grep -q "mounted read-write" "$DS_TMP/rw2.out" || fail "the image file of a rw-mounted loop device"
    mount -o remount,ro "$mnt" || fail "remount read-only"
    ds_bg_split "$DS_TMP/ro.out" "$DS_TMP/ro.err" \
        "$DISKSWARM" serve "$loop" --listen "127.0.0.1:$port" --peer-port "$(free_port)"
    wait_port "$port" 60 || { cat "$DS_TMP/ro.err" >&2; fail "a read-only mounted device was not served"; }
    kill_and_wait "$DS_BG_PID" 10 || fail "serve did not stop on SIGTERM"
    ds_umount "$mnt"
    ds_loop_detach "$loop"
}

ds_case image_file case_image_file
ds_case loop_device case_loop_device
ds_case mounted_rw_refused case_mounted_rw_refused
ds_finish
