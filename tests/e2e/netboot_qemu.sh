#!/usr/bin/env bash
# timeout: 720
# netboot_qemu.sh — bare metal for real, in QEMU (KVM where /dev/kvm works, plain TCG emulation otherwise):
#   two_deploy_two_refused: the client boot environment is built from Debian packages
#     (netboot/build-bootenv.sh), a small BIOS-bootable GPT disk (gptmbr + extlinux, Debian kernel, a root
#     filesystem whose init prints a marker with a random token on ttyS0) is captured and served with
#     `serve --netboot --dhcp-range` in one network namespace; four QEMU machines on a bridge in another
#     namespace, each with a blank virtual disk and network boot first, power on together. Two (64 MiB disks)
#     boot over the network (iPXE ROM → DHCP from serve's dnsmasq → boot script, kernel and initramfs over HTTP),
#     deploy, reboot, are told to boot from their disk, and print the marker with the token from /dev/vda1; the
#     test measures power-on → marker for each; serve --expect 2 then exits 0 by itself. The third has a 24 MiB disk: its console and the server's
#     /netboot.json (and the dashboard page, in headless Chromium) say the disk is too small, and the disk
#     stays all zeros. The fourth has no disk at all: its console and /netboot.json say so.
# Everything (namespaces, bridge, taps, QEMU, serve, dnsmasq) is removed on exit.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/netboot.sh"
ds_init

NB_WAIT=${NB_WAIT:-480}   # seconds for every machine to show its marker (TCG on 2 shared cores)

curl_srv() { ip netns exec "$SRV" curl -fsS --max-time 5 "$@"; }

two_deploy_two_refused() {
    need_root
    local t
    for t in qemu-system-x86_64 dnsmasq extlinux busybox cpio modprobe sfdisk curl; do
        command -v "$t" >/dev/null || skip "$t missing (tests/deps.txt)"
    done
    [ -e /usr/share/qemu/pxe-virtio.rom ] || [ -e /usr/lib/ipxe/qemu/pxe-virtio.rom ] || skip "ipxe-qemu missing"
    [ -e /usr/lib/syslinux/mbr/gptmbr.bin ] || skip "syslinux-common missing"
    [ -c /dev/net/tun ] || skip "no /dev/net/tun"
    local accel=tcg
    [ -w /dev/kvm ] && accel=kvm
    ds_log "  accelerator: $accel"

    local t0 boot=$DS_TMP/boot token
    t0=$(date +%s)
    nb_bootenv "$boot" || fail "build-bootenv failed"
    token=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
    nb_bootable_disk "$DS_TMP/golden.img" "$token" || fail "cannot build the bootable disk"
    "$DISKSWARM" capture "$DS_TMP/golden.img" -o "$DS_TMP/image" --store >"$DS_TMP/capture.log" 2>&1 ||
        { cat "$DS_TMP/capture.log" >&2; fail "capture failed"; }
    ds_log "  boot environment, bootable disk and capture ready in $(( $(date +%s) - t0 )) s"

    # network: serve in $SRV (198.18.0.1), machines' taps on a bridge in $LAN, a veth between them
    SRV=dsnb-srv-$$ LAN=dsnb-lan-$$
    ip netns add "$SRV"; ds_track_netns "$SRV"
    ip netns add "$LAN"; ds_track_netns "$LAN"
    ip -n "$LAN" link add br0 type bridge
    ip -n "$LAN" link set br0 up
    ip -n "$LAN" link set lo up
    ip link add "nbs$$" type veth peer name "nbl$$"
    ds_track_link "nbs$$"
    ip link set "nbs$$" netns "$SRV"
    ip link set "nbl$$" netns "$LAN"
    ip -n "$SRV" link set "nbs$$" name eth0
    ip -n "$SRV" addr add 198.18.0.1/24 dev eth0
    ip -n "$SRV" link set eth0 up
    ip -n "$SRV" link set lo up
    ip -n "$LAN" link set "nbl$$" master br0 up
    local i
    for i in 1 2 3 4; do
        ip -n "$LAN" tuntap add "tap$i" mode tap
        ip -n "$LAN" link set "tap$i" master br0 up
    done

    ds_bg "$DS_TMP/serve.log" ip netns exec "$SRV" "$DISKSWARM" serve "$DS_TMP/image" --listen 198.18.0.1:6969 \
        --netboot "$boot" --dhcp-range 198.18.0.100,198.18.0.150,255.255.255.0,1h --netboot-iface eth0 \
        --netboot-args ds.tries=20 --expect 2 --seed-time 60
    local serve_pid=$DS_BG_PID
    wait_port 6969 20 "$SRV" || { cat "$DS_TMP/serve.log" >&2; fail "serve --netboot did not start"; }

    # three blank machines: two big enough, one too small
    local -a mac=(x 52:54:00:d5:00:01 52:54:00:d5:00:02 52:54:00:d5:00:03 52:54:00:d5:00:04) size=(x 64M 64M 24M none) on=() seen=() envup=() deployed=()
    power_on() { # I
        local -a cmd
        local disk=$DS_TMP/m$1.img
        [ "${size[$1]}" = none ] && disk=none
        mapfile -t cmd < <(nb_qemu_cmd "$DS_TMP/m$1.serial" "$disk" "${mac[$1]}" "tap$1" 512)
        ds_bg "$DS_TMP/m$1.qemu.log" ip netns exec "$LAN" "${cmd[@]}"
        eval "qpid$1=\$DS_BG_PID"
    }
    for i in 1 2 3 4; do
        [ "${size[$i]}" = none ] || truncate -s "${size[$i]}" "$DS_TMP/m$i.img"
        on[$i]=$(date +%s.%N)
        power_on "$i"
    done
    # watchdog: under TCG on a loaded machine a guest once hung silently at boot; a machine whose serial console
    # stays silent for NB_SILENT seconds is power-cycled once (said in the log), as one would with real hardware
    local NB_SILENT=${NB_SILENT:-150}
    local -a grown=(x "$(date +%s)" "$(date +%s)") lastsz=(x 0 0) cycled=(x 0 0)

    # wait: markers on 1 and 2, the failure on 3 (then that machine is switched off)
    local deadline=$(( $(date +%s) + NB_WAIT )) small_done=0 nodisk_done=0 n=0
    while [ "$(date +%s)" -lt "$deadline" ] && [ $n -lt $((NB_WAIT * 2)) ]; do
        n=$((n + 1))
        for i in 1 2; do
            local sz
            sz=$(stat -c %s "$DS_TMP/m$i.serial" 2>/dev/null || echo 0)
            if [ "$sz" != "${lastsz[$i]}" ]; then
                lastsz[$i]=$sz grown[$i]=$(date +%s)
            elif [ -z "${seen[$i]:-}" ] && [ $(( $(date +%s) - grown[i] )) -ge "$NB_SILENT" ] && [ "${cycled[$i]}" = 0 ]; then
                ds_log "  machine $i: serial console silent for $NB_SILENT s (last line: $(tail -1 "$DS_TMP/m$i.serial" | tr -cd '[:print:]' | cut -c1-100)); power-cycling it once"
                kill_and_wait "$(eval echo "\$qpid$i")" 10 || true
                cycled[$i]=1 grown[$i]=$(date +%s)
                power_on "$i"
            fi
            # phases, for the closing note: deploy environment up, deploy finished
            if [ -z "${envup[$i]:-}" ] && grep -q "diskswarm: boot environment up" "$DS_TMP/m$i.serial" 2>/dev/null; then
                envup[$i]=$(date +%s.%N)
            fi
            if [ -z "${deployed[$i]:-}" ] && grep -q "diskswarm: deploy of /dev/vda complete" "$DS_TMP/m$i.serial" 2>/dev/null; then
                deployed[$i]=$(date +%s.%N)
            fi
            if [ -z "${seen[$i]:-}" ] && grep -q "DISKSWARM-DISK-BOOT-MARKER" "$DS_TMP/m$i.serial" 2>/dev/null; then
                seen[$i]=$(date +%s.%N)
                ds_log "  machine $i: marker after $(echo "${seen[$i]} - ${on[$i]}" | bc | xargs printf '%.0f') s"
            fi
        done
        if [ $small_done = 0 ] && grep -q "DEPLOY FAILED" "$DS_TMP/m3.serial" 2>/dev/null; then
            small_done=1
            sleep 2   # its report to the server goes out right after the console message
            kill_and_wait "$qpid3" 10 || true
            ds_log "  machine 3 (24 MiB disk): failure shown after $(echo "$(date +%s.%N) - ${on[3]}" | bc | xargs printf '%.0f') s"
        fi
        if [ $nodisk_done = 0 ] && grep -q "DEPLOY FAILED" "$DS_TMP/m4.serial" 2>/dev/null; then
            nodisk_done=1
            sleep 2
            kill_and_wait "$qpid4" 10 || true
            ds_log "  machine 4 (no disk): failure shown after $(echo "$(date +%s.%N) - ${on[4]}" | bc | xargs printf '%.0f') s"
        fi
        [ -n "${seen[1]:-}" ] && [ -n "${seen[2]:-}" ] && [ $small_done = 1 ] && [ $nodisk_done = 1 ] && break
        kill -0 "$serve_pid" 2>/dev/null || { tail -20 "$DS_TMP/serve.log" >&2; fail "serve died"; }
        sleep 0.5
    done
    curl_srv http://198.18.0.1:6969/netboot.json >"$DS_TMP/netboot.json" || true
    for i in 1 2; do
        [ -n "${seen[$i]:-}" ] || {
            ds_log "  --- machine $i serial console (last 40 lines):"; tail -40 "$DS_TMP/m$i.serial" >&2
            ds_log "  --- serve (last 30 lines):"; tail -30 "$DS_TMP/serve.log" >&2
            fail "machine $i showed no marker within $NB_WAIT s"; }
        grep -q "DISKSWARM-DISK-BOOT-MARKER $token root=/dev/vda1" "$DS_TMP/m$i.serial" ||
            fail "machine $i: marker without the token or not from /dev/vda1: $(grep MARKER "$DS_TMP/m$i.serial")"
        grep -q "diskswarm: deploy of /dev/vda complete" "$DS_TMP/m$i.serial" ||
            fail "machine $i booted the marker without a deploy on its console"
    done
    [ $small_done = 1 ] || { tail -40 "$DS_TMP/m3.serial" >&2; fail "machine 3 (too small disk) showed no failure"; }
    grep -q "DEPLOY FAILED: .*too small" "$DS_TMP/m3.serial" ||
        fail "machine 3's console does not say the disk is too small: $(grep 'DEPLOY FAILED' "$DS_TMP/m3.serial" | head -1)"
    cmp -s -n $((24 << 20)) "$DS_TMP/m3.img" /dev/zero || fail "machine 3's too small disk was written to"
    [ $nodisk_done = 1 ] || { tail -40 "$DS_TMP/m4.serial" >&2; fail "machine 4 (no disk) showed no failure"; }
    grep -q "DEPLOY FAILED: no disk found" "$DS_TMP/m4.serial" ||
        fail "machine 4's console does not say it has no disk: $(grep 'DEPLOY FAILED' "$DS_TMP/m4.serial" | head -1)"
    "$DS_PY" - "$DS_TMP/netboot.json" "${mac[1]}" "${mac[2]}" "${mac[3]}" "${mac[4]}" <<'EOF' || fail "netboot.json: $(cat "$DS_TMP/netboot.json")"
import json, sys
d = {m["mac"]: m for m in json.load(open(sys.argv[1]))["machines"]}
for mac in sys.argv[2:4]:
    assert d[mac]["deployed"] and d[mac]["state"] == "local-boot", d[mac]
small = d[sys.argv[4]]
assert small["state"] == "failed" and "too small" in small["message"] and not small["deployed"], small
nodisk = d[sys.argv[5]]
assert nodisk["state"] == "failed" and "no disk" in nodisk["message"] and not nodisk["deployed"], nodisk
EOF
    # the deployed disks: a valid GPT, its backup moved to the end of the larger disk
    for i in 1 2; do
        wait_for_exit "$(eval echo "\$qpid$i")" 60 || true
        sfdisk --verify "$DS_TMP/m$i.img" >"$DS_TMP/m$i.verify" 2>&1 ||
            { cat "$DS_TMP/m$i.verify" >&2; fail "machine $i's disk: sfdisk --verify"; }
    done
    grep -q "too small" <(curl_srv http://198.18.0.1:6969/netboot.json) || fail "dashboard data lost the failure"
    # the dashboard page shows the network-boot table (headless Chromium inside the server's namespace)
    if command -v chromium >/dev/null; then
        local prof
        prof=$(mktemp -d "$DS_TMP/chrome.XXXXXX")
        timeout -k 5 60 ip netns exec "$SRV" chromium --headless --no-sandbox --disable-gpu --disable-quic \
            --no-first-run --disable-background-networking --disable-component-update --disable-sync \
            --disable-dev-shm-usage --user-data-dir="$prof" --virtual-time-budget=2500 \
            --dump-dom http://198.18.0.1:6969/ >"$DS_TMP/dom.html" 2>>"$DS_TMP/chrome.log" || fail "chromium failed"
        grep -q "data-mac=\"${mac[3]}\" data-state=\"failed\"" "$DS_TMP/dom.html" ||
            fail "the dashboard shows no failed row for machine 3"
        grep -q "is too small" "$DS_TMP/dom.html" || fail "the dashboard does not show the failure message"
        grep -q "data-mac=\"${mac[1]}\" data-state=\"local-boot\"" "$DS_TMP/dom.html" ||
            fail "the dashboard does not show machine 1 as booted from its disk"
    fi
    # serve --expect 2 ends by itself: both machines came back and were told to boot their disk, + 60 s
    wait_for_exit "$serve_pid" 120 || { tail -20 "$DS_TMP/serve.log" >&2; fail "serve did not exit 0 after the swarm"; }
    grep -q "stopping (swarm complete), 2 machine" "$DS_TMP/serve.log" || fail "serve stopped for another reason"
    secs() { echo "$1 - $2" | bc | xargs printf '%.0f'; }
    for i in 1 2; do
        ds_log "  netboot ($accel) machine $i: power-on to marker $(secs "${seen[$i]}" "${on[$i]}") s" \
            "(deploy environment up at $(secs "${envup[$i]:-${on[$i]}}" "${on[$i]}") s," \
            "deploy done at $(secs "${deployed[$i]:-${on[$i]}}" "${on[$i]}") s)$([ "${cycled[$i]}" = 1 ] && echo ", after one power cycle")"
    done
}

ds_case two_deploy_two_refused two_deploy_two_refused
ds_finish
