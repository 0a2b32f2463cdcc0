#!/usr/bin/env bash
# timeout: 300
# demo_smoke.sh — ./demo.sh, as the README tells people to run it, must keep working: 3 machines (network
# namespaces with shaped links and loop-device targets as root, 127.0.0.1 and disk files otherwise) receive the
# GPT sample disk through `diskswarm serve` + `diskswarm deploy`; the demo must exit 0, print the dashboard
# address, verify every machine's disk (partition table, fsck of both filesystems, every file's sha256,
# `diskswarm verify`: one PASS row per machine), see the server end with the swarm complete, print the PASS
# line, and leave nothing behind (namespaces, bridge, loop devices of its work dir). The binary under test
# ($DISKSWARM) is used. One test case: exit 0 pass, 1 fail.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

rc=0
DEMO_MACHINES=3 DEMO_TIMEOUT=120 DS_NO_INSTALL=1 timeout -k 10 250 "$root/demo.sh" >"$log" 2>&1 </dev/null || rc=$?
sed -n '/== checking/,$p' "$log"
if [ "$rc" != 0 ]; then
    echo "demo.sh exited $rc; last lines:"
    tail -n 80 "$log"
    exit 1
fi
grep -q '^PASS: all 3 machines hold a verified copy of the disk' "$log" || { echo "no PASS line"; exit 1; }
grep -q '^dashboard: http://[0-9.]*:[0-9]*/ ' "$log" || { echo "no dashboard address"; exit 1; }
grep -q ': diskswarm deploy http://[0-9.]*:[0-9]* --to .* --yes$' "$log" || { echo "machines did not run deploy"; exit 1; }
rows=$(grep -cE '^machine[0-9]+ +[^ ]+ +0 +[0-9.]+s +ok +ok +PASS$' "$log" || true)
[ "$rows" = 3 ] || { echo "$rows of 3 machines verified (table+fsck+files, verify)"; exit 1; }
grep -q '^server: exit 0 .*"reason":"swarm complete","machines_complete":3' "$log" ||
    { echo "the server did not end with the swarm complete"; exit 1; }
work=$(sed -n 's/^work directory: //p' "$log" | head -n 1)
[ -n "$work" ] && [ ! -e "$work" ] || { echo "work directory $work left behind"; exit 1; }
tag=$(grep -o 'netns dsdm[0-9]*n0' "$log" | head -n 1 | sed 's/netns //; s/n0$//') || true
if [ -n "$tag" ]; then
    if ip netns list | grep -q "^$tag"; then echo "namespaces $tag* left behind"; exit 1; fi
    if ip link show "${tag}br" >/dev/null 2>&1; then echo "bridge ${tag}br left behind"; exit 1; fi
fi
if losetup -a 2>/dev/null | grep -qF "$work/"; then echo "loop device left behind"; exit 1; fi
echo "demo passed and cleaned up"
