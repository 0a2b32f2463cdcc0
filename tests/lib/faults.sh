# shellcheck shell=bash
# tests/lib/faults.sh — helpers for tests/e2e/faults.sh (source after common.sh and ds_init).

# throttle PID [ON_SEC] [OFF_SEC]: slow PID down by a SIGSTOP/SIGCONT duty cycle (ON running, OFF stopped), so
# that a loopback transfer that would take 0.3 s takes several seconds and can be observed and interrupted at a
# chosen point. There is no rate limit option; this is the only way to slow the product down from outside.
# Sets THROTTLE_PID (registered for cleanup; on SIGTERM it leaves PID running). Ends by itself when PID is gone.
throttle() {
    local pid=$1 on=${2:-0.01} off=${3:-0.25}
    (
        trap 'kill -CONT "$pid" 2>/dev/null; exit 0' TERM INT
        while kill -0 "$pid" 2>/dev/null; do
            kill -STOP "$pid" 2>/dev/null || break
            sleep "$off"
            kill -CONT "$pid" 2>/dev/null || break
            sleep "$on"
        done
        kill -CONT "$pid" 2>/dev/null
        exit 0
    ) </dev/null >/dev/null 2>&1 &
    THROTTLE_PID=$!
    ds_track_pid "$THROTTLE_PID"
}

# unthrottle: stop the throttle loop (and leave its process running)
unthrottle() {
    [ -n "${THROTTLE_PID:-}" ] || return 0
    kill -TERM "$THROTTLE_PID" 2>/dev/null || true
    wait_for_exit "$THROTTLE_PID" 5 >/dev/null 2>&1 || true
    THROTTLE_PID=
}

# jfield FILE TYPE FIELD: FIELD of the last JSON line of type TYPE in FILE (empty if none)
jfield() {
    [ -f "$1" ] || return 0
    grep -a "\"type\":\"$2\"" "$1" 2>/dev/null | tail -n 1 | grep -ao "\"$3\":[^,}]*" | head -n 1 | cut -d: -f2 |
        tr -d '"' || true
}

# jpct FILE: integer percent of the last progress line (0 if none)
jpct() {
    local p
    p=$(jfield "$1" progress percent)
    printf '%s\n' "${p%%.*}" | sed 's/^$/0/'
}

# swarm_union_killer TORRENT KILL_PID TIMEOUT PORT...: connect to every fetcher (plain BitTorrent handshake,
# no fast extension), follow their BITFIELD/HAVE messages and, the moment the union of what they hold covers
# every piece, SIGKILL KILL_PID. Prints one JSON line {"killed":true,"t":..,"have":[per-fetcher counts]} and
# exits 0; exits 1 if the union is not complete within TIMEOUT seconds.
swarm_union_killer() {
    "$DS_PY" - "$DS_ROOT/tests/lib" "$@" <<'PY'
import json, os, select, signal, socket, struct, sys, time
sys.path.insert(0, sys.argv[1])
import hostile_peer as hp
tor = hp.Torrent(sys.argv[2]); victim = int(sys.argv[3]); limit = float(sys.argv[4])
ports = [int(p) for p in sys.argv[5:]]
n = tor.num_pieces
t0 = time.monotonic(); deadline = t0 + limit
have = [set() for _ in ports]
conns = {}  # index -> [sock, buffer]

def connect(i):
    try:
        s = hp.open_session(tor, "127.0.0.1:%d" % ports[i], "mon%d" % i, fast=False)
        s.sendall(hp.msg(2))  # interested: a peer with nothing that wants something is a normal peer
        s.setblocking(False)
        conns[i] = [s, b""]
    except Exception:
        conns.pop(i, None)

def union():
    u = set()
    for h in have: u |= h
    return len(u)

while time.monotonic() < deadline:
    for i in range(len(ports)):
        if i not in conns: connect(i)
    socks = {c[0]: i for i, c in conns.items()}
    if not socks:
        time.sleep(0.1); continue
    r, _, _ = select.select(list(socks), [], [], 0.1)
    for s in r:
        i = socks[s]
        try:
            data = s.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b""
        if not data:
            s.close(); conns.pop(i, None); continue
        buf = conns[i][1] + data
        while len(buf) >= 4:
            (ln,) = struct.unpack(">I", buf[:4])
            if len(buf) < 4 + ln: break
            body = buf[4:4 + ln]; buf = buf[4 + ln:]
            if ln == 0: continue
            if body[0] == 4 and ln == 5:
                have[i].add(struct.unpack(">I", body[1:5])[0])
            elif body[0] == 5:
                bf = body[1:]
                for p in range(n):
                    if bf[p >> 3] & (0x80 >> (p & 7)): have[i].add(p)
        conns[i][1] = buf
    if union() >= n:
        os.kill(victim, signal.SIGKILL)
        print(json.dumps({"killed": True, "t": round(time.monotonic() - t0, 2), "have": [len(h) for h in have],
                          "num_pieces": n}))
        sys.exit(0)
print(json.dumps({"killed": False, "have": [len(h) for h in have], "union": union(), "num_pieces": n}))
sys.exit(1)
PY
}
