#!/usr/bin/env bash
# Copy a finished harness run's public results into experiments/results/<name>/ and regenerate
# its report there (records, plan, suite, report.md, summary.json, plots; no models, claims or logs):
#   bash experiments/results/collect.sh runs/ablation-persistence ablation-persistence
# then add a marker block for it to docs/results.md and run
#   python experiments/results/sync.py --write docs/results.md
set -euo pipefail
cd "$(dirname "$0")/../.."
run="${1:?usage: collect.sh RUN_DIR NAME}"; name="${2:?usage: collect.sh RUN_DIR NAME}"
[[ -f "$run/plan.json" ]] || { echo "$run is not a harness run (no plan.json)" >&2; exit 2; }
dest="experiments/results/$name"
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/cells"
cp "$run"/cells/*.json "$run"/cells/*.jsonl "$dest.tmp/cells/"
cp "$run/plan.json" "$run/suite.json" "$dest.tmp/"
[[ -f .venv/bin/activate ]] && source .venv/bin/activate
offswitch report "$dest.tmp" --out "$dest.tmp" > /dev/null
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "collected $run -> $dest"
