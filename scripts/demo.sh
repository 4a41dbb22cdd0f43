#!/usr/bin/env bash
# The main job, end to end, on the default model (SmolLM2-135M-Instruct), on a fresh machine:
#   keygen -> commit/reveal/prove -> implant -> verify -> one attack -> harness (attacks x
#   strengths, each evaluated) -> report with survival curves.
# Everything goes under runs/ (git-ignored). The demo keystore uses $OFFSWITCH_PASSPHRASE, or
# "demo passphrase" when unset: use a real passphrase for real keys.
# Time on a 2-core CPU: 46.5 minutes on an AMD Zen 3 in fp32 (implant 23, harness 22; 2026-12-02,
# docs/results.md); 28 minutes on 2026-11-30 with AMX (bf16; implant 15, harness 12).
#
# Overrides (environment; the defaults are the demo above; relative paths are relative to the
# repository root). Used by tests/integration/test_demo_script.py to run the demo on a tiny model:
#   OFFSWITCH_DEMO_MODEL         model spec to implant                     (smollm2-135m)
#   OFFSWITCH_DEMO_RUNS          root of everything the demo writes        (runs)
#   OFFSWITCH_DEMO_SUITE         harness suite YAML                        (experiments/smoke.yaml)
#   OFFSWITCH_DEMO_IMPLANT_ARGS  extra implant flags, split on whitespace, e.g. "--steps 30 --threads 1"
#   OFFSWITCH_DEMO_SKIP_SETUP=1  do not run scripts/setup-env.sh (already in a working environment)
#   OFFSWITCH                    the offswitch executable                  (.venv/bin/offswitch)
#   OFFSWITCH_PYTHON             a Python with offswitch installed, used only to re-root the
#                                suite when OFFSWITCH_DEMO_RUNS is not runs  (python beside $OFFSWITCH)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${OFFSWITCH_DEMO_SKIP_SETUP:-0}" != 1 ]]; then
    bash scripts/setup-env.sh
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OFFSWITCH_PASSPHRASE="${OFFSWITCH_PASSPHRASE:-demo passphrase}"
OFFSWITCH=("${OFFSWITCH:-.venv/bin/offswitch}")
MODEL="${OFFSWITCH_DEMO_MODEL:-smollm2-135m}"
MODEL_NAME="$MODEL"
[[ "$MODEL" != smollm2-135m ]] || MODEL_NAME=SmolLM2-135M-Instruct
RUNS="${OFFSWITCH_DEMO_RUNS:-runs}"
RUNS="${RUNS%/}"
[[ -n "$RUNS" ]] || { echo "OFFSWITCH_DEMO_RUNS must name a directory other than /" >&2; exit 2; }
SUITE="${OFFSWITCH_DEMO_SUITE:-experiments/smoke.yaml}"
read -r -a IMPLANT_ARGS <<< "${OFFSWITCH_DEMO_IMPLANT_ARGS:-}"
RUN="$RUNS/demo"
IMPLANT="$RUNS/smoke-implant"   # the implant experiments/smoke.yaml attacks
SMOKE="$RUNS/smoke"             # the harness run directory
mkdir -p "$RUN"

HARNESS_SUITE="$SUITE"
if [[ "$RUNS" != runs ]]; then
    # The suite names its implants under runs/ (runs/smoke-implant): point those at $RUNS instead,
    # in a copy of the suite written under $RUNS (the harness has --out, but no flag for the implants).
    PYTHON="${OFFSWITCH_PYTHON:-$(dirname "$(command -v "${OFFSWITCH[0]}" || echo "${OFFSWITCH[0]}")")/python}"
    DERIVED="$RUN/suite.yaml"
    "$PYTHON" - "$SUITE" "$RUNS" "$DERIVED" <<'PY'
import sys
from pathlib import Path

import yaml

src, root, dst = sys.argv[1:]


def reroot(path):
    parts = Path(str(path)).parts
    return str(Path(root, *parts[1:])) if parts and parts[0] == "runs" else path


doc = yaml.safe_load(Path(src).read_text(encoding="utf-8"))
for implant in doc.get("implants") or []:
    if isinstance(implant, dict) and "dir" in implant:
        implant["dir"] = reroot(implant["dir"])
if doc.get("out") is not None:
    doc["out"] = reroot(doc["out"])
Path(dst).write_text(f"# {src}, with its runs/ paths under {root} (written by scripts/demo.sh)\n"
                     + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
PY
    HARNESS_SUITE="$DERIVED"
fi

step() { printf '\n== %s\n' "$*"; }

step "1. keygen: a new master key, encrypted under the passphrase"
"${OFFSWITCH[@]}" keygen "$RUN/demo.key" --force
"${OFFSWITCH[@]}" key-info "$RUN/demo.key"

step "2. commit: publish signed commitments to triggers 0-3 (reveals nothing)"
"${OFFSWITCH[@]}" commit --key "$RUN/demo.key" --index 0-3 --out "$RUN/commitments.json" --force

step "3. implant: plant the key's trigger 0 into $MODEL_NAME (shutdown behaviour, default settings)"
"${OFFSWITCH[@]}" implant --key "$RUN/demo.key" --model "$MODEL" --behavior shutdown --triggers 1 \
    --out "$IMPLANT" --force ${IMPLANT_ARGS[@]+"${IMPLANT_ARGS[@]}"}

step "4. verify: the key opens the manifest's commitments and its signature checks"
"${OFFSWITCH[@]}" verify --key "$RUN/demo.key" "$IMPLANT"

step "5. attack: 4-bit quantisation of the implanted model (an attacker needs no key)"
"${OFFSWITCH[@]}" attack quantize "$IMPLANT" --strength 4 --out "$RUN/quantized-4bit" --force

rm -rf "$SMOKE"  # a new implant: results of an earlier one must not be resumed into this run
step "6. harness: every attack of $SUITE at each strength, evaluated with the key"
"${OFFSWITCH[@]}" harness "$HARNESS_SUITE" --key "$RUN/demo.key" --out "$SMOKE"

step "7. report: tables with 95% intervals and survival curves"
"${OFFSWITCH[@]}" report "$SMOKE"
echo
echo "report: $SMOKE/report.md   plots: $SMOKE/plots/"

step "8. trigger + commit-check: the key holder reveals trigger 0 (it is spent now) and proves it was committed to"
"${OFFSWITCH[@]}" trigger --key "$RUN/demo.key" --index 0 > "$RUN/revealed-trigger.txt"
"${OFFSWITCH[@]}" commit-check "$RUN/commitments.json" --trigger-stdin < "$RUN/revealed-trigger.txt"
echo "== done"
