#!/usr/bin/env bash
# Run ablations one after another (one real-model job at a time on a small machine):
#   bash experiments/ablations/queue.sh baseline ul-mine ...
# Each runs from a copy of run.sh (bash reads a script as it runs: editing it mid-run is unsafe).
cd "$(dirname "$0")/../.."
mkdir -p runs/ablations
for name in "$@"; do
  cp experiments/ablations/run.sh "runs/ablations/run-$name.sh"
  bash "runs/ablations/run-$name.sh" "$name" > "runs/ablations/$name.log" 2>&1 || echo "ablation $name failed (see runs/ablations/$name.log)"
done
