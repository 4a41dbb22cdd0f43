#!/usr/bin/env bash
# Go on searching for counterexamples: the property-based (hypothesis) tests, run N times (default
# 10), each time with a fresh random seed that it prints first. CI draws the same examples on every
# run (OFFSWITCH_HYPOTHESIS=ci in .ci/run); this is where new draws happen. A failure prints the
# example: pin it on its test as @example, fix, rerun with `--hypothesis-seed=SEED`.
# Usage: bash scripts/property-search.sh [N] [pytest arguments, e.g. tests/unit/test_keystore.py]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
[ $# -gt 0 ] && shift
case "$runs" in '' | *[!0-9]*) echo "property-search: N must be a number of runs, got '$runs'" >&2; exit 2 ;; esac
bash scripts/setup-env.sh
failed=()
for _ in $(seq 1 "$runs"); do
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    echo "[property-search] seed $seed"
    OFFSWITCH_TEST_SKIP_SETUP=1 OFFSWITCH_HYPOTHESIS=offswitch bash scripts/test.sh -q -m hypothesis --hypothesis-seed="$seed" "$@" \
        || failed+=("$seed")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "[property-search] failed under seeds: ${failed[*]}" >&2
    exit 1
fi
echo "[property-search] $runs runs passed"
