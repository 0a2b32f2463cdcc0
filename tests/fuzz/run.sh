#!/usr/bin/env bash
# tests/fuzz/run.sh — build the libFuzzer targets in tests/fuzz/ and run each for a while.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]        (default 60 s; targets default to all fuzz_*.c)
#
# Every src/*.c except main.c is compiled once with -fsanitize=fuzzer-no-link,address,undefined into a static
# archive; each target links against it (the linker pulls in only what the target needs) with clang
# -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all. For each target, first every input in
# tests/fuzz/regressions/<target>/ is replayed (each one once crashed the product; they must all pass now),
# then the fuzzer runs for SECONDS_PER_TARGET on a scratch copy of tests/fuzz/corpus/<target>/ (the committed
# seed corpus is never modified). A crash input is saved under $DS_ARTIFACTS/fuzz/ (default
# /tmp/diskswarm-artifacts/fuzz) as <target>-crash-<sha1>, with the sanitizer report next to it.
# Prints one line per target (executions, coverage, result) and exits 1 if any target crashed or failed to
# build, 0 otherwise.
#
# Environment: FUZZ_BUILD=DIR (build dir, default /tmp/diskswarm-fuzz-build), FUZZ_JOBS=N (parallel
# compiles, default nproc), FUZZ_KEEP_CORPUS=DIR (keep the grown corpora there), CC (default clang).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SECS=${1:-60}
shift || true
case $SECS in '' | *[!0-9]*) echo "usage: tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;; esac

CC=${CC:-clang}
BUILD=${FUZZ_BUILD:-/tmp/diskswarm-fuzz-build}
ART=${DS_ARTIFACTS:-/tmp/diskswarm-artifacts}/fuzz
JOBS=${FUZZ_JOBS:-$(nproc)}
LIBS=(-lcrypto -lcurl -lext2fs -lcom_err -lfdisk -lmicrohttpd -lzstd -lz -lpthread)
COMMON=(-g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -std=gnu17 -I"$ROOT/src")
# include paths of the libraries (libfdisk's header lives in a subdirectory)
# shellcheck disable=SC2207
COMMON+=($(pkg-config --cflags fdisk ext2fs libmicrohttpd libcurl libcrypto 2>/dev/null || true))
# shellcheck disable=SC2054
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all)

command -v "$CC" >/dev/null || { echo "fuzz: $CC not installed" >&2; exit 77; }
mkdir -p "$BUILD/obj" "$ART"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/diskswarm-fuzz.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# per-target extra options (max input length matters: the session target needs room for several messages)
opts_for() {
    case $1 in
    fuzz_scan) echo "-max_len=262144" ;;
    fuzz_session) echo "-max_len=8192" ;;
    fuzz_metainfo) echo "-max_len=4096" ;;
    fuzz_tracker_request) echo "-max_len=8192" ;;
    *) echo "-max_len=4096" ;;
    esac
}

build_failed() {
    local l
    for l in "$BUILD/obj/"*.log; do [ -s "$l" ] && cat "$l" >&2; done
    echo "fuzz: compiling src failed" >&2
    exit 1
}

# ---- build the product archive (incremental: a source is recompiled when it or any header is newer) ----
newest_hdr=$(find src -name '*.h' -printf '%T@\n' | sort -n | tail -n 1)
objs=()
pids=()
for src in src/*.c; do
    [ "$src" = src/main.c ] && continue
    obj=$BUILD/obj/$(basename "$src" .c).o
    objs+=("$obj")
    if [ -f "$obj" ]; then
        ot=$(stat -c %Y "$obj")
        st=$(stat -c %Y "$src")
        if ((ot >= st)) && (($(printf '%.0f' "$newest_hdr") <= ot)); then continue; fi
    fi
    "$CC" "${COMMON[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" 2>"$obj.log" &
    pids+=($!)
    if ((${#pids[@]} >= JOBS)); then
        wait "${pids[0]}" || { build_failed; }
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid" || { build_failed; }
done
rm -f "$BUILD/libds.a"
ar rcs "$BUILD/libds.a" "${objs[@]}"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

failed=0
summary=()
for t in "${targets[@]}"; do
    src=tests/fuzz/$t.c
    exe=$BUILD/$t
    if ! "$CC" "${COMMON[@]}" "${SAN[@]}" -fsanitize=fuzzer "$src" "$BUILD/libds.a" "${LIBS[@]}" -o "$exe" \
        2>"$WORK/$t.build.log"; then
        cat "$WORK/$t.build.log" >&2
        summary+=("$(printf '%-22s BUILD FAILED' "$t")")
        failed=1
        continue
    fi
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:allocator_may_return_null=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    # 1. regressions: each must run clean
    reg_bad=0 nreg=0
    if [ -d "tests/fuzz/regressions/$t" ]; then
        for f in "tests/fuzz/regressions/$t"/*; do
            [ -f "$f" ] || continue
            nreg=$((nreg + 1))
            if ! timeout 60 "$exe" -runs=1 "$f" >"$WORK/$t.reg.log" 2>&1; then
                echo "fuzz: $t: regression input $f fails again:" >&2
                tail -n 40 "$WORK/$t.reg.log" >&2
                cp "$WORK/$t.reg.log" "$ART/$t-regression-$(basename "$f").log"
                reg_bad=1
            fi
        done
    fi
    # 2. fuzz on a scratch copy of the seed corpus
    corpus=$WORK/corpus.$t
    mkdir -p "$corpus"
    [ -d "tests/fuzz/corpus/$t" ] && cp -r "tests/fuzz/corpus/$t/." "$corpus/"
    log=$WORK/$t.log
    rc=0
    # shellcheck disable=SC2046
    timeout -k 10 $((SECS + 120)) "$exe" $(opts_for "$t") -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2560 \
        -print_final_stats=1 -artifact_prefix="$ART/$t-" "$corpus" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')
    ncorp=$(find "$corpus" -type f | wc -l)
    if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
        mkdir -p "$FUZZ_KEEP_CORPUS/$t" && cp -r "$corpus/." "$FUZZ_KEEP_CORPUS/$t/"
    fi
    result=ok
    if [ "$rc" != 0 ]; then
        result="CRASH (exit $rc)"
        cp "$log" "$ART/$t-fuzz.log"
        echo "fuzz: $t crashed; report:" >&2
        grep -E 'ERROR|SUMMARY|runtime error|==[0-9]+==|#[0-9]+ 0x|Test unit written|abort' "$log" | head -n 60 >&2
        failed=1
    fi
    [ "$reg_bad" = 1 ] && { result="$result, REGRESSION FAILED"; failed=1; }
    summary+=("$(printf '%-22s %10s execs in %ss, cov %s, corpus %s, %d regression inputs: %s' \
        "$t" "${execs:-?}" "$SECS" "${cov:-?}" "$ncorp" "$nreg" "$result")")
done

echo "---- fuzz summary ($SECS s per target; crash inputs go to $ART)"
printf '%s\n' "${summary[@]}"
exit "$failed"
