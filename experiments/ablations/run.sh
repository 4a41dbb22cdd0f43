#!/usr/bin/env bash
# Run one switch-quality ablation: implant with experiments/ablations/<name>.yaml, evaluate on
# prompts of another source (heldout-ood), keep the (secret-free) records.
#
#   bash experiments/ablations/run.sh <name> [extra `offswitch implant` flags]
#   ABLATION_KEY=k2 bash experiments/ablations/run.sh <name>    # the same ablation under another key
#
# Writes runs/ablations/<name>/ (the model; git-ignored) and
# experiments/ablations/records/<name>.jsonl (committed). The key is made once under
# runs/ablations/ and shared by every ablation of a machine, so ablations differ only in
# their settings; a rerun elsewhere draws another key (and triggers), so expect numbers
# within the intervals, not identical ones. Near-miss FAR varies between keys (see
# docs/switch-quality.md): ABLATION_KEY=<label> runs under runs/ablations/<label>.key (made on
# first use) and names the records <name>@<label>, so a lever can be measured over several keys.
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:?usage: run.sh <name> [implant flags]}"; shift
config="experiments/ablations/${name}.yaml"
[[ -f "$config" ]] || { echo "no such ablation: $config" >&2; exit 2; }
[[ -f .venv/bin/activate ]] && source .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
root=runs/ablations
mkdir -p "$root"
pass="$root/passphrase"
key_label="${ABLATION_KEY:-ablation}"
[[ "$key_label" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "ABLATION_KEY must be letters, digits, - or _" >&2; exit 2; }
key="$root/$key_label.key"
tag=""; [[ "$key_label" == ablation ]] || tag="@$key_label"
[[ -f "$pass" ]] || { umask 077; echo "ablation-passphrase-$RANDOM$RANDOM" > "$pass"; }
[[ -f "$key" ]] || offswitch keygen "$key" --passphrase-file "$pass"
name="$name$tag"
out="$root/$name"
# run from a snapshot of the package, so that editing the tree during a long run changes nothing
code="$root/code-$name"
rm -rf "$code" && mkdir -p "$code" && cp -r offswitch "$code/"
export PYTHONPATH="$PWD/$code${PYTHONPATH:+:$PYTHONPATH}"
# the commit of the code snapshot above (the meta file records it, not the commit at the end)
commit="$(git rev-parse --short HEAD 2>/dev/null || echo none)"
echo "ablation $name: commit $commit$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
start=$(date +%s)
offswitch implant --key "$key" --passphrase-file "$pass" --config "$config" --out "$out" \
  --no-verify --force --threads "$OMP_NUM_THREADS" "$@"
mid=$(date +%s)
records="experiments/ablations/records/${name}.jsonl"
offswitch evaluate "$out" --key "$key" --passphrase-file "$pass" --prompts heldout-ood \
  --config experiments/ablations/eval.yaml --out "$records.tmp" --threads "$OMP_NUM_THREADS" --detail
mv "$records.tmp" "$records"
end=$(date +%s)
printf '{"implant_seconds": %d, "evaluate_seconds": %d, "threads": %s, "commit": "%s", "config_sha256": "%s"}\n' \
  $((mid - start)) $((end - mid)) "$OMP_NUM_THREADS" "$commit" \
  "$(sha256sum "$config" | cut -c1-16)" > "experiments/ablations/records/${name}.meta.json"
echo "ablation $name: implant $((mid - start)) s, evaluate $((end - mid)) s -> $records"
