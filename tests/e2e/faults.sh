#!/usr/bin/env bash
# timeout: 600
# faults.sh — swarms that lose a member or the tracker midway, and private swarms, all on 127.0.0.1 with a
# 48 MiB random image in 256 KiB pieces.
#
#   kill_fetcher_and_resume   1 seeder + 3 fetchers; fetcher 1 is kill -9'd once its --json progress shows
#                             >= 30 % (and before it completes), then restarted with --resume on the same target:
#                             its `resume` event reports >= 25 % of the pieces already there, its `done` line's
#                             `downloaded` is below the torrent size, every target is byte-exact and verifies.
#   seeder_leaves_early       1 seeder + 4 fetchers that --peer each other; the seeder is kill -9'd the moment
#                             the fetchers collectively hold every piece (followed live over the wire, see
#                             swarm_union_killer in tests/lib/faults.sh); all 4 still complete, byte-exact.
#   tracker_restart           tracker + 1 seeder + 3 fetchers with no --peer; the tracker is kill -9'd after the
#                             fetchers' first announce and restarted on the same port 3 s later: all complete,
#                             byte-exact, and the new tracker learns the swarm again.
#   tracker_late              the same, but the tracker only comes up 5 s after everyone started.
#   private_swarm_secret      --secret-file: a fetcher with the secret completes; one with another secret and one
#                             without any never get a byte (0 pieces, target still all zero), the seeder's log
#                             says why.
#   private_swarm_allow       --allow: a seeder allowing only 198.18.0.0/15 refuses 127.0.0.1 ("refused: not
#                             allowed", nothing fetched within 5 s); with 127.0.0.0/8 the fetch completes; a
#                             fetch whose --peer lies outside its own --allow is a usage error (exit 2).
#
# Loopback moves the whole image in ~0.3 s while --json progress comes once a second, so the seeder is slowed
# down by a SIGSTOP/SIGCONT duty cycle (throttle in tests/lib/faults.sh) where a case must act mid-transfer.
# Prints its own "N passed, N failed, N skipped".
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
ds_init
. "$DS_ROOT/tests/lib/faults.sh"

[ -x "$DISKSWARM" ] || { echo "no binary at $DISKSWARM (build first)"; exit 1; }

IMG_MB=48
IMG=$DS_TMP/src.img
TOR=$DS_TMP/src.torrent
LIMIT=${DS_FAULTS_LIMIT:-120} # seconds any swarm may take to complete

head -c $((IMG_MB * 1048576)) /dev/urandom >"$IMG"
"$DISKSWARM" make-torrent "$IMG" --all -o "$TOR" --piece-size 256K >/dev/null
SIZE=$(stat -c %s "$IMG")
NPIECES=$("$DISKSWARM" info "$TOR" | awk '/^pieces:/ {print $2}')
echo "image: $IMG_MB MiB of random bytes, $NPIECES pieces of 256 KiB"

show_logs() {
    local f
    for f in "$@"; do
        [ -s "$f" ] || continue
        ds_log "  --- $(basename "$f") (tail)"
        tr '\r' '\n' <"$f" | grep -av '"type":"progress"' | grep -av '% .* peers ' | tail -n 12 |
            cut -c1-300 | sed 's/^/    /' >&2
    done
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# start_seed TORRENT PORT NAME [args]: seeder with --json to $DS_TMP/NAME.json, --verbose to NAME.err; SEED_PID
start_seed() {
    local tor=$1 port=$2 name=$3
    shift 3
    ds_bg_split "$DS_TMP/$name.json" "$DS_TMP/$name.err" "$DISKSWARM" seed "$tor" --from "$IMG" \
        --listen "127.0.0.1:$port" --json --verbose "$@"
    SEED_PID=$DS_BG_PID
    wait_port "$port" 20 || { show_logs "$DS_TMP/$name.err"; fail "seeder $name not listening on $port"; }
}

# start_fetch TORRENT TARGET PORT NAME [args]: fetcher with --json/--verbose output as above; sets FETCH_PID
start_fetch() {
    local tor=$1 tgt=$2 port=$3 name=$4
    shift 4
    ds_bg_split "$DS_TMP/$name.json" "$DS_TMP/$name.err" "$DISKSWARM" fetch "$tor" --to "$tgt" \
        --listen "127.0.0.1:$port" --json --verbose "$@"
    FETCH_PID=$DS_BG_PID
}

# wait_fetch PID NAME [LIMIT]: the fetch must exit 0 within LIMIT seconds
wait_fetch() {
    local rc=0
    wait_for_exit "$1" "${3:-$LIMIT}" || rc=$?
    [ "$rc" = 0 ] || { show_logs "$DS_TMP/$2.err" "$DS_TMP/$2.json"; fail "fetch $2: exit $rc (124 = timed out)"; }
}

# check_target FILE NAME: byte-exact and `diskswarm verify` passes
check_target() {
    cmp -s "$IMG" "$1" || fail "$2: target differs from the image"
    "$DISKSWARM" verify "$TOR" "$1" >/dev/null 2>"$DS_TMP/verify.err" ||
        { cat "$DS_TMP/verify.err" >&2; fail "$2: diskswarm verify fails"; }
}

# tracker_peers URL: peers_total of the first torrent in the tracker's /status.json (empty if unreachable)
tracker_peers() {
    curl -s --max-time 2 "$1/status.json" 2>/dev/null | grep -o '"peers_total":[0-9]*' | head -n 1 | cut -d: -f2 || true
}

# wait_tracker_peers URL N TIMEOUT: until the tracker lists >= N peers
wait_tracker_peers() {
    local url=$1 n=$2 timeout=$3 i p
    for ((i = 0; i < timeout * 5; i++)); do
        p=$(tracker_peers "$url")
        [ -n "$p" ] && ((p >= n)) && return 0
        sleep 0.2
    done
    return 1
}

# ---------------------------------------------------------------------------------------------------------
case_kill_fetcher_and_resume() {
    local sport p i t0 pct kill_pct pids=() ports=() rs dl
    sport=$(free_port)
    for i in 1 2 3; do ports[i]=$(free_port); done
    start_seed "$TOR" "$sport" k.seed
    throttle "$SEED_PID" 0.005 0.8
    t0=$(now_ms)
    for i in 1 2 3; do
        start_fetch "$TOR" "$DS_TMP/k.tgt$i" "${ports[i]}" "k.f$i" --peer "127.0.0.1:$sport"
        pids[i]=$FETCH_PID
    done
    # poll fetcher 1's JSON progress (one line a second) until it reports >= 30 %
    kill_pct=
    for ((i = 0; i < LIMIT * 10; i++)); do
        kill -0 "${pids[1]}" 2>/dev/null || { show_logs "$DS_TMP/k.f1.json"; fail "fetcher 1 ended before it could be killed"; }
        grep -q '"type":"complete"' "$DS_TMP/k.f1.json" && fail "fetcher 1 completed before reaching the kill point"
        pct=$(jpct "$DS_TMP/k.f1.json")
        if ((pct >= 30)); then
            kill -KILL "${pids[1]}" || fail "fetcher 1 ended before it could be killed (too fast to catch)"
            kill_pct=$pct
            break
        fi
        sleep 0.1
    done
    [ -n "$kill_pct" ] || fail "fetcher 1 never reached 30 % in ${LIMIT}s"
    wait "${pids[1]}" 2>/dev/null || true
    grep -q '"type":"complete"' "$DS_TMP/k.f1.json" && fail "fetcher 1 had completed when it was killed"
    ds_log "  fetcher 1 killed at ${kill_pct} % ($(jfield "$DS_TMP/k.f1.json" progress pieces) pieces) after $(($(now_ms) - t0)) ms"
    # restart it on the same target and port
    start_fetch "$TOR" "$DS_TMP/k.tgt1" "${ports[1]}" k.f1r --peer "127.0.0.1:$sport" --resume
    pids[1]=$FETCH_PID
    unthrottle
    for i in 1 2 3; do wait_fetch "${pids[i]}" "k.f$i$([ "$i" = 1 ] && echo r)"; done
    rs=$(jfield "$DS_TMP/k.f1r.json" resume pieces)
    [ -n "$rs" ] || { show_logs "$DS_TMP/k.f1r.json"; fail "no resume event in the restarted fetcher's JSON"; }
    dl=$(jfield "$DS_TMP/k.f1r.json" "done" downloaded)
    ds_log "  resumed with $rs of $NPIECES pieces on the target; then downloaded $dl of $SIZE bytes"
    ((rs * 4 >= NPIECES)) || fail "resume found only $rs of $NPIECES pieces (expected >= 25 %)"
    if [ -z "$dl" ] || ((dl >= SIZE)); then fail "resumed fetch downloaded $dl bytes, not less than the size $SIZE"; fi
    for i in 1 2 3; do check_target "$DS_TMP/k.tgt$i" "fetcher $i"; done
    kill_and_wait "$SEED_PID" 10 || true
}

case_seeder_leaves_early() {
    local sport i j ports=() pids=() args out
    sport=$(free_port)
    for i in 1 2 3 4; do ports[i]=$(free_port); done
    start_seed "$TOR" "$sport" l.seed
    throttle "$SEED_PID"
    for i in 1 2 3 4; do
        args=(--peer "127.0.0.1:$sport")
        for j in 1 2 3 4; do [ "$j" = "$i" ] || args+=(--peer "127.0.0.1:${ports[j]}"); done
        # stay until all 4 are complete: a fetcher holding the last copy of a piece must not leave
        start_fetch "$TOR" "$DS_TMP/l.tgt$i" "${ports[i]}" "l.f$i" "${args[@]}" --expect 4 --seed-time 90
        pids[i]=$FETCH_PID
    done
    # Criterion for "the swarm has everything": the union of the fetchers' bitfields, followed live over the
    # wire (BITFIELD + HAVE messages) by a monitoring peer that SIGKILLs the seeder the moment it is complete.
    # Counters (sum of pieces, seeder's `uploaded`) cannot tell duplicates apart; a completed fetcher would be
    # too late to leave anything to the swarm.
    out=$(swarm_union_killer "$TOR" "$SEED_PID" "$LIMIT" "${ports[@]:1}") ||
        { ds_log "  monitor: $out"; show_logs "$DS_TMP/l.f1.err" "$DS_TMP/l.seed.err"; fail "the fetchers never held every piece together"; }
    ds_log "  seeder killed when the fetchers held together every piece: $out"
    wait "$SEED_PID" 2>/dev/null || true
    unthrottle
    # the seeder was still needed by somebody: not every fetcher was complete at that moment
    printf '%s\n' "$out" | "$DS_PY" -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if min(d['have']) < d['num_pieces'] else 1)" ||
        fail "every fetcher was already complete when the seeder left (the case proves nothing)"
    for i in 1 2 3 4; do wait_fetch "${pids[i]}" "l.f$i"; done
    for i in 1 2 3 4; do check_target "$DS_TMP/l.tgt$i" "fetcher $i"; done
}

# tracker swarm: torrent with the tracker URL; TRK_PORT
tracker_torrent() {
    TRK_PORT=$(free_port)
    TRK_URL=http://127.0.0.1:$TRK_PORT
    TTOR=$DS_TMP/trk.$TRK_PORT.torrent
    "$DISKSWARM" make-torrent "$IMG" --all -o "$TTOR" --piece-size 256K --tracker "$TRK_URL/announce" >/dev/null
}

start_tracker() { # NAME: sets TRK_PID
    ds_bg "$DS_TMP/$1.log" "$DISKSWARM" tracker --listen "127.0.0.1:$TRK_PORT" --torrent "$TTOR" --interval 5 \
        --min-interval 1
    TRK_PID=$DS_BG_PID
    wait_port "$TRK_PORT" 20 || { show_logs "$DS_TMP/$1.log"; fail "tracker $1 not listening on $TRK_PORT"; }
}

case_tracker_restart() {
    local sport i pids=() ports=()
    tracker_torrent
    start_tracker tr.trk1
    sport=$(free_port)
    start_seed "$TTOR" "$sport" tr.seed
    wait_tracker_peers "$TRK_URL" 1 20 || fail "the seeder never showed up on the tracker"
    throttle "$SEED_PID" 0.005 1.5 # slow enough that the fetch outlasts the tracker's 3 s absence
    for i in 1 2 3; do
        ports[i]=$(free_port)
        start_fetch "$TTOR" "$DS_TMP/tr.tgt$i" "${ports[i]}" "tr.f$i"
        pids[i]=$FETCH_PID
    done
    wait_tracker_peers "$TRK_URL" 4 20 || fail "the fetchers never showed up on the tracker ($(tracker_peers "$TRK_URL") peers)"
    kill -KILL "$TRK_PID"
    wait "$TRK_PID" 2>/dev/null || true
    ds_log "  tracker killed with $(jpct "$DS_TMP/tr.f1.json") % on fetcher 1; restarting it in 3 s"
    sleep 3
    start_tracker tr.trk2
    ds_log "  tracker back; fetchers complete so far: $(cat "$DS_TMP"/tr.f?.json | grep -c '"type":"complete"' || true) of 3"
    for i in 1 2 3; do wait_fetch "${pids[i]}" "tr.f$i"; done
    unthrottle
    for i in 1 2 3; do check_target "$DS_TMP/tr.tgt$i" "fetcher $i"; done
    # the new tracker learns the swarm again (at least the seeder, which stays) within an interval or two
    wait_tracker_peers "$TRK_URL" 1 30 || fail "the restarted tracker never heard from the seeder again"
    kill_and_wait "$SEED_PID" 10 || true
}

case_tracker_late() {
    local sport i pids=() ports=() t0
    tracker_torrent
    sport=$(free_port)
    t0=$(now_ms)
    start_seed "$TTOR" "$sport" tl.seed
    for i in 1 2 3; do
        ports[i]=$(free_port)
        start_fetch "$TTOR" "$DS_TMP/tl.tgt$i" "${ports[i]}" "tl.f$i"
        pids[i]=$FETCH_PID
    done
    sleep 5
    for i in 1 2 3; do
        [ "$(jfield "$DS_TMP/tl.f$i.json" progress pieces)" = "" ] || [ "$(jfield "$DS_TMP/tl.f$i.json" progress pieces)" = 0 ] ||
            fail "fetcher $i got pieces without a tracker"
    done
    start_tracker tl.trk
    for i in 1 2 3; do wait_fetch "${pids[i]}" "tl.f$i"; done
    ds_log "  all complete $(($(now_ms) - t0)) ms after the start (tracker up after 5 s)"
    for i in 1 2 3; do check_target "$DS_TMP/tl.tgt$i" "fetcher $i"; done
    kill_and_wait "$SEED_PID" 10 || true
}

case_private_swarm_secret() {
    local sport pa pb pc s1=$DS_TMP/secret1 s2=$DS_TMP/secret2 apid bpid cpid i x
    head -c 32 /dev/urandom >"$s1"
    head -c 32 /dev/urandom >"$s2"
    sport=$(free_port) pa=$(free_port) pb=$(free_port) pc=$(free_port)
    truncate -s "$SIZE" "$DS_TMP/p.tgtB" "$DS_TMP/p.tgtC"
    start_seed "$TOR" "$sport" p.seed --secret-file "$s1"
    # B and C first (they keep trying A until it is up), then A, which stays a while after completing
    start_fetch "$TOR" "$DS_TMP/p.tgtB" "$pb" p.fB --peer "127.0.0.1:$sport" --peer "127.0.0.1:$pa" --secret-file "$s2"
    bpid=$FETCH_PID
    start_fetch "$TOR" "$DS_TMP/p.tgtC" "$pc" p.fC --peer "127.0.0.1:$sport" --peer "127.0.0.1:$pa"
    cpid=$FETCH_PID
    start_fetch "$TOR" "$DS_TMP/p.tgtA" "$pa" p.fA --peer "127.0.0.1:$sport" --secret-file "$s1" --seed-time 30
    apid=$FETCH_PID
    for ((i = 0; i < LIMIT * 10; i++)); do
        grep -q '"type":"complete"' "$DS_TMP/p.fA.json" 2>/dev/null && break
        kill -0 "$apid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '"type":"complete"' "$DS_TMP/p.fA.json" || { show_logs "$DS_TMP/p.fA.err"; fail "fetcher A (right secret) did not complete"; }
    sleep 5
    kill -0 "$apid" 2>/dev/null || fail "fetcher A left before the 5 s were over"
    for x in B C; do
        local pid
        [ "$x" = B ] && pid=$bpid || pid=$cpid
        kill -0 "$pid" 2>/dev/null || { show_logs "$DS_TMP/p.f$x.err"; fail "fetcher $x exited"; }
        [ -n "$(jfield "$DS_TMP/p.f$x.json" progress pieces)" ] || fail "fetcher $x printed no progress"
        [ "$(jfield "$DS_TMP/p.f$x.json" progress pieces)" = 0 ] || fail "fetcher $x got pieces: $(jfield "$DS_TMP/p.f$x.json" progress pieces)"
        [ "$(jfield "$DS_TMP/p.f$x.json" progress downloaded)" = 0 ] || fail "fetcher $x downloaded bytes"
        cmp -s -n "$SIZE" "$DS_TMP/p.tgt$x" /dev/zero || fail "fetcher $x's target is not all zero"
    done
    kill_and_wait "$apid" 10 || true
    kill_and_wait "$bpid" 10 || true
    kill_and_wait "$cpid" 10 || true
    check_target "$DS_TMP/p.tgtA" "fetcher A"
    grep -aq 'wrong swarm secret' "$DS_TMP/p.seed.err" "$DS_TMP/p.fA.err" "$DS_TMP/p.fB.err" ||
        { show_logs "$DS_TMP/p.seed.err"; fail "no 'wrong swarm secret' in the logs"; }
    grep -aq 'does not take part' "$DS_TMP/p.seed.err" "$DS_TMP/p.fA.err" ||
        { show_logs "$DS_TMP/p.seed.err"; fail "no 'does not take part' in the logs"; }
    ds_log "  seeder: $(grep -ac 'wrong swarm secret' "$DS_TMP/p.seed.err" || true)x wrong secret, $(grep -ac \
        'does not take part' "$DS_TMP/p.seed.err" || true)x no secret"
    kill_and_wait "$SEED_PID" 10 || true
}

case_private_swarm_allow() {
    local sport fpid rc=0
    sport=$(free_port)
    truncate -s "$SIZE" "$DS_TMP/a.tgt1"
    start_seed "$TOR" "$sport" a.seed1 --allow 198.18.0.0/15
    start_fetch "$TOR" "$DS_TMP/a.tgt1" "$(free_port)" a.f1 --peer "127.0.0.1:$sport"
    fpid=$FETCH_PID
    sleep 5
    kill -0 "$fpid" 2>/dev/null || { show_logs "$DS_TMP/a.f1.err"; fail "the refused fetch exited"; }
    [ "$(jfield "$DS_TMP/a.f1.json" progress pieces)" = 0 ] || fail "the refused fetcher got pieces"
    cmp -s -n "$SIZE" "$DS_TMP/a.tgt1" /dev/zero || fail "the refused fetcher's target was written"
    grep -aq 'refused: not allowed' "$DS_TMP/a.seed1.err" || { show_logs "$DS_TMP/a.seed1.err"; fail "no 'refused: not allowed' in the seeder's log"; }
    kill_and_wait "$fpid" 10 || true
    kill_and_wait "$SEED_PID" 10 || true

    sport=$(free_port)
    start_seed "$TOR" "$sport" a.seed2 --allow 127.0.0.0/8
    start_fetch "$TOR" "$DS_TMP/a.tgt2" "$(free_port)" a.f2 --peer "127.0.0.1:$sport" --allow 127.0.0.0/8
    wait_fetch "$FETCH_PID" a.f2 60
    check_target "$DS_TMP/a.tgt2" "allowed fetcher"
    kill_and_wait "$SEED_PID" 10 || true

    timeout 20 "$DISKSWARM" fetch "$TOR" --to "$DS_TMP/a.tgt3" --listen "127.0.0.1:$(free_port)" \
        --peer "127.0.0.1:$sport" --allow 10.0.0.0/8 --quiet >/dev/null 2>"$DS_TMP/a.f3.err" || rc=$?
    ds_log "  --peer outside --allow: exit $rc: $(head -n 1 "$DS_TMP/a.f3.err" | cut -c1-200)"
    [ "$rc" = 2 ] || fail "a fetch whose --peer is outside its --allow: exit $rc, expected 2 (usage error)"
}

timed_case() { # NAME FUNCTION
    local t0=$SECONDS
    ds_case "$@"
    ds_log "  ($1: $((SECONDS - t0)) s)"
}

timed_case kill_fetcher_and_resume case_kill_fetcher_and_resume
timed_case seeder_leaves_early case_seeder_leaves_early
timed_case tracker_restart case_tracker_restart
timed_case tracker_late case_tracker_late
timed_case private_swarm_secret case_private_swarm_secret
timed_case private_swarm_allow case_private_swarm_allow
ds_finish
