#!/usr/bin/env bash
# Set up the environment and run the whole test suite (unit, integration, examples, and the
# `slow` end-to-end tests on the real default model). Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
# OFFSWITCH_TEST_SKIP_SETUP=1: .venv is ready (scripts/property-search.sh sets it after one set-up)
[[ "${OFFSWITCH_TEST_SKIP_SETUP:-0}" == 1 ]] || bash scripts/setup-env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# two pytest workers share the cores: one torch thread each (more threads only contend)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -n 2 --dist loadgroup -p no:cacheprovider "$@"
