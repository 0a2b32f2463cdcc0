#!/usr/bin/env bash
# timeout: 900
# asan: yes
# deploy_partitions.sh — `diskswarm deploy` of per-partition images, which recreates the partition table and
# writes every partition's torrent at its partition's offset on the target:
#   per_partition_capture: the GPT sample disk (EFI FAT32 + ext4) → `capture --per-partition` (no stored image:
#     serve reads the partitions from the source disk) → serve --expect 2 → two deploys onto blank files, one
#     64 MiB larger → both exit 0, `sfdisk -d` equal (modulo last-lba on the larger one, whose backup GPT is
#     moved to the end), boot gap equal, fsck clean, every file equal, no state file left behind.
#   clonezilla_import: a Clonezilla image directory of the same kind of disk made by real partclone with gzip
#     (sda1.vfat-ptcl-img.gz, sda2.ext4-ptcl-img.gz.aa/.ab/... split as ocs-sr does, sda-pt.sf from sfdisk -d)
#     → import → serve → deploy onto a blank disk file: the table is recreated from the dump (libfdisk), `sfdisk -d`
#     equal modulo the device name, fsck.vfat and e2fsck clean, every file equal.
#   bad_table: the recorded dump disagrees with the manifest (a partition moved) → deploy refuses before writing
#     anything, with a message; the target is untouched.
#   resume_after_kill9: the per-partition image through a 40 Mbit/s link (two network namespaces): deploy is
#     kill -9'ed part-way, the rerun resumes from the per-torrent state files, downloads less than the image, and
#     the target is a copy of the disk.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/gpt_disk.sh"
ds_init

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }

need_tools() {
    need_root
    local t
    for t in mcopy sfdisk partclone.ext4 partclone.vfat gzip; do command -v "$t" >/dev/null || skip "$t missing"; done
}

# serve_and_deploy IMAGE_DIR TARGET... : serve --expect N, one deploy per target; fails unless all exit 0
serve_and_deploy() {
    local img=$1 port pport sp pids=() i=0 rc bad=0 t
    shift
    port=$(free_port)
    pport=$(free_port)
    ds_bg_split "$DS_TMP/serve.out" "$DS_TMP/serve.err" \
        "$DISKSWARM" serve "$img" --listen "127.0.0.1:$port" --peer-port "$pport" --expect $# --json
    sp=$DS_BG_PID
    wait_port "$port" 20 || { cat "$DS_TMP/serve.err" >&2; fail "serve not listening"; }
    for t in "$@"; do
        ds_bg_split "$DS_TMP/d$i.out" "$DS_TMP/d$i.err" \
            "$DISKSWARM" deploy "http://127.0.0.1:$port" --to "$t" --yes --json --listen "127.0.0.1:$(free_port)"
        pids+=("$DS_BG_PID")
        i=$((i + 1))
    done
    for ((i = 0; i < $#; i++)); do
        rc=0
        wait_for_exit "${pids[i]}" 300 || rc=$?
        if [ "$rc" != 0 ]; then
            ds_log "  deploy $i exit $rc"
            tail -n 8 "$DS_TMP/d$i.err" >&2
            bad=1
        else
            ds_log "  deploy $i: $(grep '"type":"deploy","role":"deploy","ok"' "$DS_TMP/d$i.out" | tail -n 1)"
        fi
    done
    [ "$bad" = 0 ] || fail "a deploy failed"
    rc=0
    wait_for_exit "$sp" 60 || rc=$?
    [ "$rc" = 0 ] || { tail -n 10 "$DS_TMP/serve.err" >&2; fail "serve exit $rc"; }
    grep -q "\"reason\":\"swarm complete\",\"machines_complete\":$#" "$DS_TMP/serve.out" ||
        { tail -n 3 "$DS_TMP/serve.out" >&2; fail "serve did not see $# machines complete"; }
}

case_per_partition_capture() {
    need_tools
    local disk=$DS_TMP/pp.img out=$DS_TMP/pp-image size=$((160 << 20))
    gpt_make_disk "$disk" 160 64 ds_populate 30 || fail "making the GPT sample disk"
    "$DISKSWARM" capture "$disk" -o "$out" --name sda --per-partition --piece-size 256K >"$out.log" 2>&1 ||
        { cat "$out.log" >&2; fail "capture --per-partition"; }
    "$DS_PY" -c 'import json,sys; m=json.load(open(sys.argv[1]))
assert m["mode"] == "per-partition" and all("image" not in t for t in m["torrents"]), m["torrents"]
assert sorted(t["role"] for t in m["torrents"]) == ["partition", "partition", "table"]' "$out/manifest.json" ||
        fail "manifest"
    truncate -s "$size" "$DS_TMP/t0.img"
    truncate -s $((size + (64 << 20))) "$DS_TMP/t1.img"
    serve_and_deploy "$out" "$DS_TMP/t0.img" "$DS_TMP/t1.img"
    grep -q '"type":"progress","role":"deploy/sda2"' "$DS_TMP/d0.out" || fail "no per-partition progress lines"
    grep -q '"type":"progress","role":"deploy","t":[0-9.]*,"torrents":3' "$DS_TMP/d0.out" || fail "no summary progress"
    grep -q '"gpt_relocated":true' "$DS_TMP/d1.out" || fail "backup GPT not moved to the end of the larger target"
    gpt_check_target "$disk" "$DS_TMP/t0.img" || fail "t0 is not a copy of the disk"
    gpt_check_target "$disk" "$DS_TMP/t1.img" nolast || fail "t1 (larger) is not a copy of the disk"
    ls "$DS_TMP"/t*.dsstate >/dev/null 2>&1 && fail "state files left behind"
    return 0
}

# make_clonezilla DISK DIR: what ocs-sr saves of a GPT disk with a FAT32 and an ext4 partition, gzip-compressed
make_clonezilla() {
    local disk=$1 cz=$2 s z p
    mkdir -p "$cz"
    echo sda >"$cz/disk"
    echo "sda1 sda2" >"$cz/parts"
    sfdisk -d "$disk" | sed "s|$disk|/dev/sda|" >"$cz/sda-pt.sf"
    dd if="$disk" of="$cz/sda-mbr" bs=512 count=1 status=none
    for p in 1 2; do
        read -r s z < <(gpt_part_geom "$disk" "$p")
        dd if="$disk" of="$DS_TMP/part$p.img" bs=1M iflag=skip_bytes,count_bytes skip="$s" count="$z" status=none
    done
    partclone.vfat -c -s "$DS_TMP/part1.img" -O - -L "$DS_TMP/pc1.log" 2>/dev/null | gzip -c >"$cz/sda1.vfat-ptcl-img.gz"
    partclone.ext4 -c -s "$DS_TMP/part2.img" -O - -L "$DS_TMP/pc2.log" 2>/dev/null | gzip -c |
        split -b 4m - "$cz/sda2.ext4-ptcl-img.gz."
    rm -f "$DS_TMP/part1.img" "$DS_TMP/part2.img"
    [ -s "$cz/sda1.vfat-ptcl-img.gz" ] && [ -s "$cz/sda2.ext4-ptcl-img.gz.ab" ] || fail "partclone made no images"
}

case_clonezilla_import() {
    need_tools
    local disk=$DS_TMP/cz.img cz=$DS_TMP/2026-12-01-img out=$DS_TMP/cz-image t=$DS_TMP/cz-target.img
    gpt_make_disk "$disk" 128 48 ds_populate 24 || fail "making the GPT sample disk"
    make_clonezilla "$disk" "$cz"
    "$DISKSWARM" import "$cz" -o "$out" --piece-size 512K >"$out.log" 2>&1 || { cat "$out.log" >&2; fail "import"; }
    "$DS_PY" -c 'import json,sys; m=json.load(open(sys.argv[1]))
assert m["kind"] == "disk" and m["mode"] == "per-partition", m
assert m["partition_table"]["file"] == "sda-pt.sf", m
assert sorted(t["name"] for t in m["torrents"]) == ["sda1", "sda2"], m["torrents"]' \
        "$out/manifest.json" || fail "manifest"
    truncate -s 128M "$t"
    serve_and_deploy "$out" "$t"
    grep -q '"event":"partition-table"' "$DS_TMP/d0.out" || fail "no partition-table event"
    # the boot gap is not part of a Clonezilla image of a GPT disk: everything else must be equal
    gpt_check_target "$disk" "$t" nogap || fail "the target is not a copy of the disk"
}

case_bad_table() {
    need_tools
    local out=$DS_TMP/cz-image t=$DS_TMP/bad-target.img port sp rc h
    [ -s "$out/manifest.json" ] || skip "no imported image (previous case skipped)"
    cp -a "$out" "$DS_TMP/bad-image"
    # move partition 2 by one MiB in the dump: it no longer matches the manifest's partition
    "$DS_PY" - "$DS_TMP/bad-image/sda-pt.sf" <<'PY'
import re, sys
p = sys.argv[1]
lines = open(p).read().splitlines()
out = []
for l in lines:
    if l.startswith("/dev/sda2"):
        l = re.sub(r"start=\s*(\d+)", lambda m: "start=%12d" % (int(m.group(1)) + 2048), l)
    out.append(l)
open(p, "w").write("\n".join(out) + "\n")
PY
    grep -q '^/dev/sda2' "$DS_TMP/bad-image/sda-pt.sf" || fail "could not edit the dump"
    port=$(free_port)
    ds_bg_split "$DS_TMP/bs.out" "$DS_TMP/bs.err" \
        "$DISKSWARM" serve "$DS_TMP/bad-image" --listen "127.0.0.1:$port" --peer-port "$(free_port)"
    sp=$DS_BG_PID
    wait_port "$port" 20 || { cat "$DS_TMP/bs.err" >&2; fail "serve not listening"; }
    head -c 1M /dev/urandom >"$t"
    truncate -s 128M "$t"
    h=$(sha256sum <"$t")
    rc=0
    "$DISKSWARM" deploy "http://127.0.0.1:$port" --to "$t" --yes --listen "127.0.0.1:$(free_port)" \
        >"$DS_TMP/bad.out" 2>&1 || rc=$?
    ds_log "  exit $rc: $(tail -n 1 "$DS_TMP/bad.out")"
    [ "$rc" = 1 ] && grep -q "partition 2 in the dump .* is not where the manifest has sda2" "$DS_TMP/bad.out" ||
        fail "a dump that disagrees with the manifest was not refused clearly"
    [ "$(sha256sum <"$t")" = "$h" ] || fail "the target was modified"
    kill_and_wait "$sp" 10 || fail "serve did not stop on SIGTERM"
}

case_resume_after_kill9() {
    need_tools
    command -v tc >/dev/null || skip "tc missing"
    local disk=$DS_TMP/pp.img out=$DS_TMP/pp-image t=$DS_TMP/resume-target.img tag=$$ ns_s ns_m pid pct n rc
    [ -s "$out/manifest.json" ] || skip "no per-partition image (first case skipped)"
    ns_s=dsdp-s$tag ns_m=dsdp-m$tag
    ip netns add "$ns_s" && ds_track_netns "$ns_s"
    ip netns add "$ns_m" && ds_track_netns "$ns_m"
    ip link add "dpsv$tag" netns "$ns_s" type veth peer name "dpmv$tag" netns "$ns_m"
    ip -n "$ns_s" addr add 198.18.78.1/24 dev "dpsv$tag"
    ip -n "$ns_m" addr add 198.18.78.2/24 dev "dpmv$tag"
    for ns in "$ns_s" "$ns_m"; do ip -n "$ns" link set lo up; done
    ip -n "$ns_s" link set "dpsv$tag" up
    ip -n "$ns_m" link set "dpmv$tag" up
    # ~45 MB through 40 Mbit/s: about 9 s, time enough to kill the deploy part-way
    ip netns exec "$ns_s" tc qdisc add dev "dpsv$tag" root tbf rate 40mbit burst 32kb latency 50ms
    ip netns exec "$ns_m" tc qdisc add dev "dpmv$tag" root tbf rate 40mbit burst 32kb latency 50ms
    ds_bg_split "$DS_TMP/rs.out" "$DS_TMP/rs.err" \
        ip netns exec "$ns_s" "$DISKSWARM" serve "$out" --listen 198.18.78.1:6969 --expect 1 --json
    local sp=$DS_BG_PID
    wait_port 6969 20 "$ns_s" || { cat "$DS_TMP/rs.err" >&2; fail "serve not listening"; }
    truncate -s 160M "$t"
    ds_bg_split "$DS_TMP/r1.out" "$DS_TMP/r1.err" \
        ip netns exec "$ns_m" "$DISKSWARM" deploy http://198.18.78.1:6969 --to "$t" --yes --json
    pid=$DS_BG_PID
    pct=0
    for ((n = 0; n < 600; n++)); do
        pct=$(sed -n 's/.*"type":"progress","role":"deploy",.*"percent":\([0-9.]*\).*/\1/p' "$DS_TMP/r1.out" | tail -n 1)
        [ -n "$pct" ] && "$DS_PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) > 45 else 1)" "$pct" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ds_log "  killed the first deploy at ${pct:-?} %"
    "$DS_PY" -c "import sys; sys.exit(0 if 45 < float(sys.argv[1]) < 98 else 1)" "${pct:-0}" ||
        fail "could not kill the deploy part-way (at ${pct:-?} %)"
    ls "$t".sda*.dsstate >/dev/null 2>&1 || fail "no per-torrent state files after kill -9"
    ds_log "  state files: $(cd "$DS_TMP" && echo resume-target.img.*.dsstate)"
    rc=0
    ip netns exec "$ns_m" "$DISKSWARM" deploy http://198.18.78.1:6969 --to "$t" --yes --json \
        >"$DS_TMP/r2.out" 2>"$DS_TMP/r2.err" || rc=$?
    [ "$rc" = 0 ] || { tail -n 10 "$DS_TMP/r2.err" >&2; fail "resumed deploy exit $rc"; }
    grep -q '"event":"resume"' "$DS_TMP/r2.out" || fail "the rerun did not resume"
    local down total
    down=$(sed -n 's/.*"type":"deploy","role":"deploy","ok":true.*"downloaded":\([0-9]*\).*/\1/p' "$DS_TMP/r2.out")
    total=$("$DS_PY" -c 'import json,sys; print(sum(t["bytes"] for t in json.load(open(sys.argv[1]))["torrents"]))' \
        "$out/manifest.json")
    ds_log "  rerun downloaded $down of $total bytes"
    # the state files lag up to ~2 s (10 MB at 40 Mbit/s) behind what was verified when the deploy was killed
    grep -q '"event":"resume","pieces":[1-9]' "$DS_TMP/r2.out" || fail "the rerun found no verified piece"
    [ -n "$down" ] && [ "$down" -lt $((total * 90 / 100)) ] || fail "the rerun fetched verified pieces again"
    ls "$t".*dsstate >/dev/null 2>&1 && fail "state files left after success"
    rc=0
    wait_for_exit "$sp" 60 || rc=$?
    [ "$rc" = 0 ] || { tail -n 5 "$DS_TMP/rs.err" >&2; fail "serve exit $rc"; }
    gpt_check_target "$disk" "$t" || fail "the resumed target is not a copy of the disk"
}

ds_case per_partition_capture case_per_partition_capture
ds_case clonezilla_import case_clonezilla_import
ds_case bad_table case_bad_table
ds_case resume_after_kill9 case_resume_after_kill9
ds_finish
