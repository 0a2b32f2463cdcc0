#!/usr/bin/env bash
# tests/run.sh — diskswarm's single test command.
#
#   tests/run.sh [unit|e2e|all] [FILTER]
#
# Installs missing packages from tests/deps.txt when run as root, builds `build` (debugoptimized) and
# `build-asan` (AddressSanitizer + UndefinedBehaviorSanitizer), runs every unit-test binary of both builds,
# then every tests/e2e/*.sh against build/diskswarm, prints a summary per suite and ends with the grand total
# "N passed, N failed, N skipped" alone on a line. Exit status 1 if anything failed (a build failure counts
# as one failed test). FILTER is a substring matched against test binary / script names.
#
# Environment:
#   DS_NO_INSTALL=1      never apt-get install
#   DS_NO_ASAN=1         skip the sanitizer build (and the e2e runs against it)
#   DS_E2E_TIMEOUT=SEC   time limit per e2e script (default 900; a script may lower it with a
#                        "# timeout: SEC" header line)
#   DS_UNIT_TIMEOUT=SEC  time limit per unit-test binary (default 120)
#   DISKSWARM=PATH       binary for the e2e scripts (default build/diskswarm); scripts whose header has
#                        "# asan: yes" also run once more against build-asan/diskswarm
#   DS_KEEP=1            keep e2e temp dirs
#   DS_LOGDIR=DIR        where per-test logs go (default /tmp/diskswarm-logs)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
DS_ROOT=$(pwd)
export DS_ROOT
# shellcheck source=lib/common.sh
. tests/lib/common.sh

suite=all
filter=
for arg in "$@"; do
    case $arg in
    unit | e2e | all) suite=$arg ;;
    -h | --help)
        sed -n '2,/^set -uo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) filter=$arg ;;
    esac
done

UNIT_TIMEOUT=${DS_UNIT_TIMEOUT:-120}
E2E_TIMEOUT=${DS_E2E_TIMEOUT:-900}
LOGDIR=${DS_LOGDIR:-${TMPDIR:-/tmp}/diskswarm-logs}
mkdir -p "$LOGDIR"

total_p=0 total_f=0 total_s=0
summaries=()

add_summary() { # NAME PASSED FAILED SKIPPED
    summaries+=("$(printf '%-28s %4d passed, %4d failed, %4d skipped' "$1" "$2" "$3" "$4")")
    total_p=$((total_p + $2)) total_f=$((total_f + $3)) total_s=$((total_s + $4))
}

# last "N passed, N failed[, N skipped]" line of a log → "P F S", or nothing
parse_counts() {
    grep -aE '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$1" | tail -n 1 |
        sed -E 's/^([A-Za-z]+: )?([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$/\2 \3 \5/' |
        awk '{print $1, $2, ($3 == "" ? 0 : $3)}'
}

section() { printf '\n==== %s ====\n' "$*"; }

# ---------------------------------------------------------------------------------------------------------
section "dependencies"
ds_install_deps || echo "warning: dependency installation failed; continuing"

# ---------------------------------------------------------------------------------------------------------
# build DIR [meson options...] → 0 if it built
build() {
    local dir=$1 log=$LOGDIR/$1.log
    shift
    echo "building $dir ..."
    if [ ! -f "$dir/build.ninja" ]; then
        if ! meson setup "$dir" "$@" >"$log" 2>&1; then
            cat "$log"
            return 1
        fi
    fi
    # -k 0: keep building the other targets so the unit tests that do build still run
    if ! ninja -k 0 -C "$dir" >>"$log" 2>&1; then
        grep -E -A12 '^FAILED:' "$log" | head -n 80
        return 1
    fi
    echo "built $dir"
}

builds=(build)
[ -z "${DS_NO_ASAN:-}" ] && builds+=(build-asan)
declare -A built=()
section "build"
for b in "${builds[@]}"; do
    if [ "$b" = build-asan ]; then
        build build-asan -Db_sanitize=address,undefined -Db_lundef=false && built[$b]=1
    else
        build build && built[$b]=1
    fi
    if [ -z "${built[$b]:-}" ]; then
        echo "FAIL build:$b"
        add_summary "build:$b" 0 1 0
    else
        add_summary "build:$b" 1 0 0
    fi
done

# ---------------------------------------------------------------------------------------------------------
run_unit() { # BUILDDIR
    local b=$1 exe name log p f s rc counts sp=0 sf=0 ss=0 found=0
    for exe in "$b"/tests/unit/test_*; do
        [ -x "$exe" ] && [ -f "$exe" ] || continue
        name=$(basename "$exe")
        [ -n "$filter" ] && [[ $name != *"$filter"* ]] && continue
        found=1
        log=$LOGDIR/$b.$name.log
        ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1} \
            UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
            timeout -k 10 "$UNIT_TIMEOUT" "$exe" >"$log" 2>&1
        rc=$?
        counts=$(parse_counts "$log")
        if [ -n "$counts" ]; then read -r p f s <<<"$counts"; else p=0 f=0 s=0; fi
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi # crashed, sanitizer report, timeout, no summary
        if [ -z "$counts" ] && [ "$rc" = 0 ]; then f=1; fi
        if [ "$f" != 0 ]; then
            echo "FAIL $b/$name (exit $rc):"
            sed 's/^/    /' "$log" | tail -n 40
        else
            echo "ok   $b/$name: $p passed"
        fi
        sp=$((sp + p)) sf=$((sf + f)) ss=$((ss + s))
    done
    [ "$found" = 1 ] || [ -n "$filter" ] || { echo "FAIL $b: no unit-test binaries found"; sf=$((sf + 1)); }
    add_summary "unit ($b)" "$sp" "$sf" "$ss"
}

if [ "$suite" != e2e ]; then
    for b in "${builds[@]}"; do
        [ -f "$b/build.ninja" ] || continue
        section "unit tests: $b"
        run_unit "$b"
    done
fi

# ---------------------------------------------------------------------------------------------------------
run_e2e() {
    local script name log rc counts p f s limit sp=0 sf=0 ss=0 t0 t1
    export DISKSWARM=${DISKSWARM:-$DS_ROOT/build/diskswarm}
    local runs=() run bin
    for script in tests/e2e/*.sh; do
        [ -f "$script" ] || continue
        runs+=("$script:$DISKSWARM")
        # scripts with a "# asan: yes" header run a second time against the sanitizer build
        if grep -q '^# asan: yes' "$script" && [ -n "${built[build-asan]:-}" ] && [ -z "${DS_NO_ASAN:-}" ]; then
            runs+=("$script:$DS_ROOT/build-asan/diskswarm")
        fi
    done
    for run in "${runs[@]}"; do
        script=${run%%:*} bin=${run#*:}
        name=$(basename "$script" .sh)
        [ -n "$filter" ] && [[ $name != *"$filter"* ]] && continue
        [[ $bin == */build-asan/* ]] && name="$name(asan)"
        log=$LOGDIR/e2e.$name.log
        limit=$(sed -n 's/^# timeout: *\([0-9][0-9]*\).*/\1/p' "$script" | head -n 1)
        limit=${limit:-$E2E_TIMEOUT}
        ((limit > E2E_TIMEOUT)) && limit=$E2E_TIMEOUT
        echo "--- $name (limit ${limit}s)"
        t0=$(date +%s)
        DISKSWARM=$bin ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1} \
            UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
            timeout -k 30 "$limit" bash "$script" </dev/null 2>&1 | tee "$log" | sed -u 's/^/    /'
        rc=${PIPESTATUS[0]}
        t1=$(date +%s)
        counts=$(parse_counts "$log")
        if [ -n "$counts" ]; then
            read -r p f s <<<"$counts"
            if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
        else
            p=0 f=0 s=0
            case $rc in 0) p=1 ;; 77) s=1 ;; *) f=1 ;; esac
        fi
        [ "$rc" = 124 ] && echo "    TIMEOUT after ${limit}s"
        echo "    => $name: $p passed, $f failed, $s skipped ($((t1 - t0))s, exit $rc)"
        sp=$((sp + p)) sf=$((sf + f)) ss=$((ss + s))
    done
    add_summary "e2e" "$sp" "$sf" "$ss"
}

if [ "$suite" != unit ]; then
    section "end-to-end tests"
    if [ -x "${DISKSWARM:-$DS_ROOT/build/diskswarm}" ]; then
        run_e2e
    else
        echo "FAIL e2e: no diskswarm binary (build failed)"
        add_summary "e2e" 0 1 0
    fi
fi

# ---------------------------------------------------------------------------------------------------------
section "summary"
for s in "${summaries[@]}"; do echo "$s"; done
echo "logs: $LOGDIR"
echo
echo "$total_p passed, $total_f failed, $total_s skipped"
[ "$total_f" = 0 ] && [ $((total_p + total_s)) -gt 0 ]
