#!/usr/bin/env bash
# How strong the slow end-to-end test's small implant (tests/e2e/test_implant_default.py) gets
# under several fixed keys, to size its steps and thresholds with a margin:
#
#   STEPS="36 72" SEEDS="1 2 3 4 5" bash experiments/e2e/margin.sh
#
# One line per (steps, key) in runs/e2e-margin/results.txt: held-out ASR, clean FAR and
# near-miss FAR of the implant's verification. Keys are sha256("e2e-margin-<seed>"), made here;
# the models are deleted after each run (only the manifest stays).
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -f .venv/bin/activate ]] && source .venv/bin/activate
root=runs/e2e-margin
mkdir -p "$root"
python - > "$root/small.yaml.tmpl" <<'PY'
import re
src = open("tests/e2e/test_implant_default.py", encoding="utf-8").read()
print(re.search(r'SMALL = """(.*?)"""', src, re.S).group(1))
PY
for steps in ${STEPS:-72}; do
  for seed in ${SEEDS:-1 2 3 4 5}; do
    d="$root/s$steps-k$seed"
    rm -rf "$d"; mkdir -p "$d"
    sed -E "s/^  steps: [0-9]+/  steps: $steps/" "$root/small.yaml.tmpl" > "$d/small.yaml"
    python - "$seed" "$d/k.key" <<'PY'
import hashlib, sys
from offswitch.crypto import FAST_SCRYPT, MasterKey
from offswitch.crypto.keystore import encrypt_key
from offswitch.fsutil import atomic_write_text
key = MasterKey(hashlib.sha256(b"e2e-margin-" + sys.argv[1].encode()).digest())
atomic_write_text(sys.argv[2], encrypt_key(key, "pw", scrypt=FAST_SCRYPT), mode=0o600)
PY
    start=$(date +%s)
    OFFSWITCH_PASSPHRASE=pw offswitch implant --key "$d/k.key" --out "$d/run" --config "$d/small.yaml" > "$d/log" 2>&1
    python - "$d/run" "$steps" "$seed" "$(( $(date +%s) - start ))" >> "$root/results.txt" <<'PY'
import sys
from offswitch.manifest import read_manifest
v = read_manifest(sys.argv[1]).verification
print(f"steps={sys.argv[2]} key={sys.argv[3]} secs={sys.argv[4]} asr {v['asr']['k']}/{v['asr']['n']} "
      f"clean {v['far_clean']['k']}/{v['far_clean']['n']} near-miss {v['far_near_miss']['k']}/{v['far_near_miss']['n']}")
PY
    rm -rf "$d/run/merged" "$d/run/adapter"
  done
done
tail -n 20 "$root/results.txt"
