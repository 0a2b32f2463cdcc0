#!/usr/bin/env bash
# timeout: 600
# fuzz_short.sh — a short libFuzzer run of every target in tests/fuzz/ (tests/fuzz/run.sh with
# DS_FUZZ_SECONDS per target, default 20), after replaying the regression inputs in tests/fuzz/regressions/.
# Exit 0 only if nothing crashed; a crash input and its sanitizer report are saved under
# ${DS_ARTIFACTS:-/tmp/diskswarm-artifacts}/fuzz/. Skipped (77) when clang is not installed.
# (DISKSWARM is not used: the targets are built from src/ by run.sh itself.)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v "${CC:-clang}" >/dev/null || { echo "SKIP: clang not installed (apt-get install clang)"; exit 77; }
export DS_ARTIFACTS=${DS_ARTIFACTS:-/tmp/diskswarm-artifacts}
rc=0
bash tests/fuzz/run.sh "${DS_FUZZ_SECONDS:-20}" || rc=$?
if [ "$rc" = 0 ]; then
    echo "fuzz_short: no crash"
elif [ "$rc" = 77 ]; then
    echo "SKIP: fuzz build prerequisites missing"
else
    echo "fuzz_short: FAILED (exit $rc); crash inputs and reports in $DS_ARTIFACTS/fuzz/"
fi
exit "$rc"
