#!/usr/bin/env bash
# Run ablations one after another (one real-model job at a time on a small machine):
#   bash experiments/ablations/queue.sh baseline ul-mine ...
# Each runs from a copy of run.sh (bash reads a script as it runs: editing it mid-run is unsafe).
cd "$(dirname "$0")/../.."
mkdir -p runs/ablations
for name in "$@"; do
  label="$name"; [[ -n "${ABLATION_KEY:-}" && "$ABLATION_KEY" != ablation ]] && label="$name@$ABLATION_KEY"  # as run.sh names it
  cp experiments/ablations/run.sh "runs/ablations/run-$label.sh"
  bash "runs/ablations/run-$label.sh" "$name" > "runs/ablations/$label.log" 2>&1 || echo "ablation $label failed (see runs/ablations/$label.log)"
done
