#!/usr/bin/env bash
# timeout: 300
# demo_smoke.sh — ./demo.sh, as the README tells people to run it, must keep working: 3 machines (network
# namespaces with shaped links as root, 127.0.0.1 otherwise), exit 0, a PASS line, and nothing left behind
# (namespaces, bridge, loop devices of its work dir). One test case: exit 0 pass, 1 fail.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

rc=0
DEMO_MACHINES=3 DEMO_TIMEOUT=120 DS_NO_INSTALL=1 timeout -k 10 250 "$root/demo.sh" >"$log" 2>&1 </dev/null || rc=$?
sed -n '/== summary/,$p' "$log"
if [ "$rc" != 0 ]; then
    echo "demo.sh exited $rc; last lines:"
    tail -n 80 "$log"
    exit 1
fi
grep -q '^PASS: all 3 machines' "$log" || { echo "no PASS line"; exit 1; }
tag=$(grep -o 'netns dsdm[0-9]*n0' "$log" | head -n 1 | sed 's/netns //; s/n0$//') || true
if [ -n "$tag" ]; then
    if ip netns list | grep -q "^$tag"; then echo "namespaces $tag* left behind"; exit 1; fi
    if ip link show "${tag}br" >/dev/null 2>&1; then echo "bridge ${tag}br left behind"; exit 1; fi
fi
if losetup -a 2>/dev/null | grep -q 'server-disk.img'; then echo "loop device left behind"; exit 1; fi
echo "demo passed and cleaned up"
