#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: set up, make a key, publish commitments,
# reveal one trigger and prove it was committed to.
# Everything goes under runs/demo/ (git-ignored). The demo keystore uses the passphrase in
# $OFFSWITCH_PASSPHRASE, or "demo passphrase" when unset: use a real one for real keys.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OFFSWITCH_PASSPHRASE="${OFFSWITCH_PASSPHRASE:-demo passphrase}"
OFFSWITCH=(.venv/bin/offswitch)
RUN=runs/demo
mkdir -p "$RUN"

echo "== 1. keygen: a new master key, encrypted under the passphrase"
"${OFFSWITCH[@]}" keygen "$RUN/demo.key" --force
echo "== 2. key-info: public facts, no passphrase needed"
"${OFFSWITCH[@]}" key-info "$RUN/demo.key"
echo "== 3. commit: publish signed commitments to triggers 0-3 (reveals nothing)"
"${OFFSWITCH[@]}" commit --key "$RUN/demo.key" --index 0-3 --out "$RUN/commitments.json" --force
echo "== 4. trigger: the key holder reveals trigger 0 (stdout only) ..."
"${OFFSWITCH[@]}" trigger --key "$RUN/demo.key" --index 0 > "$RUN/revealed-trigger.txt"
echo "   (written to $RUN/revealed-trigger.txt)"
echo "== 5. commit-check: ... and anyone can check it was committed to before"
"${OFFSWITCH[@]}" commit-check "$RUN/commitments.json" --trigger-stdin < "$RUN/revealed-trigger.txt"
echo "== done"
