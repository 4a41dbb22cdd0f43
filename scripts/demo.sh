#!/usr/bin/env bash
# The main job, end to end, on the default model (SmolLM2-135M-Instruct), on a fresh machine:
#   keygen -> commit/reveal/prove -> implant -> verify -> one attack -> harness (attacks x
#   strengths, each evaluated) -> report with survival curves.
# Everything goes under runs/ (git-ignored). The demo keystore uses $OFFSWITCH_PASSPHRASE, or
# "demo passphrase" when unset: use a real passphrase for real keys.
# Time on a 2-core CPU: about an hour (most of it training and evaluation); minutes on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OFFSWITCH_PASSPHRASE="${OFFSWITCH_PASSPHRASE:-demo passphrase}"
OFFSWITCH=(.venv/bin/offswitch)
RUN=runs/demo
IMPLANT=runs/smoke-implant   # the implant experiments/smoke.yaml attacks
mkdir -p "$RUN"

step() { printf '\n== %s\n' "$*"; }

step "1. keygen: a new master key, encrypted under the passphrase"
"${OFFSWITCH[@]}" keygen "$RUN/demo.key" --force
"${OFFSWITCH[@]}" key-info "$RUN/demo.key"

step "2. commit: publish signed commitments to triggers 0-3 (reveals nothing)"
"${OFFSWITCH[@]}" commit --key "$RUN/demo.key" --index 0-3 --out "$RUN/commitments.json" --force

step "3. implant: plant the key's trigger 0 into SmolLM2-135M-Instruct (shutdown behaviour, default settings)"
"${OFFSWITCH[@]}" implant --key "$RUN/demo.key" --model smollm2-135m --behavior shutdown --triggers 1 \
    --out "$IMPLANT" --force

step "4. verify: the key opens the manifest's commitments and its signature checks"
"${OFFSWITCH[@]}" verify --key "$RUN/demo.key" "$IMPLANT"

step "5. attack: 4-bit quantisation of the implanted model (an attacker needs no key)"
"${OFFSWITCH[@]}" attack quantize "$IMPLANT" --strength 4 --out "$RUN/quantized-4bit" --force

rm -rf runs/smoke  # a new implant: results of an earlier one must not be resumed into this run
step "6. harness: every attack of experiments/smoke.yaml at each strength, evaluated with the key"
"${OFFSWITCH[@]}" harness experiments/smoke.yaml --key "$RUN/demo.key" --out runs/smoke

step "7. report: tables with 95% intervals and survival curves"
"${OFFSWITCH[@]}" report runs/smoke
echo
echo "report: runs/smoke/report.md   plots: runs/smoke/plots/"

step "8. trigger + commit-check: the key holder reveals trigger 0 (it is spent now) and proves it was committed to"
"${OFFSWITCH[@]}" trigger --key "$RUN/demo.key" --index 0 > "$RUN/revealed-trigger.txt"
"${OFFSWITCH[@]}" commit-check "$RUN/commitments.json" --trigger-stdin < "$RUN/revealed-trigger.txt"
echo "== done"
