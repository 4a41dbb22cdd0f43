#!/usr/bin/env bash
# Re-evaluate an ablation's implant at confirmation size (experiments/ablations/eval-large.yaml:
# n >= 200 for every rate, every near-miss kind and word position), on heldout-ood prompts.
#
#   bash experiments/ablations/confirm.sh <name>        # <name>: an ablation run by run.sh
#   EVAL_PRECISION=bf16 bash experiments/ablations/confirm.sh <name>   # evaluated in bf16 (autocast), as a GPU
#                                                        # does by default: records <name>.eval-bf16
#   python experiments/ablations/targets.py <name>      # the issue-9 targets against these records
#
# Reads runs/ablations/<name>/ and the key run.sh used (runs/ablations/<label>.key for
# <name>@<label>); writes experiments/ablations/confirm/<name>.jsonl (committed, secret-free).
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:?usage: confirm.sh <name>}"
root=runs/ablations
[[ -d "$root/$name" ]] || { echo "no implant at $root/$name: run experiments/ablations/run.sh first" >&2; exit 2; }
label=ablation; [[ "$name" == *@* ]] && label="${name##*@}"
[[ -f .venv/bin/activate ]] && source .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
out="experiments/ablations/confirm/$name.jsonl"
case "${EVAL_PRECISION:-}" in
  "") ;;
  bf16|fp32) export OFFSWITCH_PRECISION="$EVAL_PRECISION"; out="experiments/ablations/confirm/$name.eval-$EVAL_PRECISION.jsonl" ;;
  *) echo "EVAL_PRECISION must be bf16 or fp32, not '$EVAL_PRECISION'" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$out")"
start=$(date +%s)
offswitch evaluate "$root/$name" --key "$root/$label.key" --passphrase-file "$root/passphrase" --prompts heldout-ood \
  --config experiments/ablations/eval-large.yaml --out "$out.tmp" --threads "$OMP_NUM_THREADS" --detail
mv "$out.tmp" "$out"
echo "confirm $name${EVAL_PRECISION:+ (evaluated in $EVAL_PRECISION)}: evaluate $(( $(date +%s) - start )) s -> $out"
