#!/usr/bin/env bash
# Prepare, on the development machine, what benchmarks/gpu/device.sh needs on a lent GPU
# machine (which reaches no package index and takes at most 64 MiB per call):
#
#   .whl/       wheels of offswitch's dependencies that the GPU image lacks or holds in other
#               versions (Python 3.12, manylinux x86_64), at the versions of this .venv
#   .carry-1/   the default model's GGUF (98 MB) in three parts, one folder per device call,
#   .carry-2/   so that each call stays under the limit with the wheels and the working tree;
#   .carry-3/   .carry-3 also holds the whole file's sha256
#
# All four are git-ignored. Then, with the device tool, three calls in a row (the machine
# stays warm about 30 s after each; the first start takes minutes):
#   run(command="bash benchmarks/gpu/device.sh stage 1", carry=[".whl", ".carry-1"])
#   run(command="bash benchmarks/gpu/device.sh stage 2", carry=[".carry-2"])
#   run(command="bash benchmarks/gpu/device.sh run",     carry=[".carry-3"], timeout_s=560)
# See benchmarks/README.md, "On a GPU".
set -euo pipefail
cd "$(dirname "$0")/../.."
py="${PYTHON:-.venv/bin/python}"
# names as pip knows them; versions are read from this environment so both sides match
packages=(gguf pydantic pydantic_core annotated-types typing-inspection cryptography cffi pycparser platformdirs
          transformers tokenizers huggingface_hub peft)
specs=()
for name in "${packages[@]}"; do
  version=$("$py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  specs+=("$name==$version")
done
rm -rf .whl .carry-1 .carry-2 .carry-3
mkdir -p .whl .carry-1 .carry-2 .carry-3
"$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "${specs[@]}"
gguf=$("$py" -c "from offswitch.models_default import locate_default_gguf; print(locate_default_gguf())")
size=$(stat -c %s "$gguf")
part=$(( (size + 2) / 3 ))
for i in 1 2 3; do
  dd if="$gguf" of=".carry-$i/model.part$i" bs=1M iflag=skip_bytes,count_bytes skip=$(( (i - 1) * part )) count=$part status=none
done
sha256sum "$gguf" | cut -d' ' -f1 > .carry-3/model.sha256
basename "$gguf" > .carry-3/model.name
for d in .whl .carry-1 .carry-2 .carry-3; do echo "$d: $(du -sm "$d" | cut -f1) MB"; done
echo "working tree: $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes tracked"
