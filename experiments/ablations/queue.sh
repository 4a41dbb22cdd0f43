#!/usr/bin/env bash
# Run ablations one after another (one real-model job at a time on a small machine):
#   bash experiments/ablations/queue.sh baseline ul-mine ...
cd "$(dirname "$0")/../.."
for name in "$@"; do
  bash experiments/ablations/run.sh "$name" > "runs/ablations/$name.log" 2>&1 || echo "ablation $name failed (see runs/ablations/$name.log)"
done
