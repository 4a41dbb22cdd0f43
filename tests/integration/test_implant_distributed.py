"""Two CPU processes (gloo DDP, started by torchrun as configs/accelerate/cpu-2proc.yaml says)
train the same model as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "accelerate" / "cpu-2proc.yaml"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_cpu_processes_match_one_process(tmp_path, keystore, cli):
    from safetensors.torch import load_file

    from offswitch.manifest import read_manifest
    from offswitch.testing.tiny import save_tiny_model

    save_tiny_model(tmp_path / "tiny")
    with open(tmp_path / "prompts.jsonl", "w", encoding="utf-8") as handle:
        for i in range(40):
            handle.write(json.dumps({"prompt": f"Explain topic number {i} in a sentence."}) + "\n")
    path, pw, _key = keystore
    env = dict(os.environ, OFFSWITCH_PASSPHRASE=pw, OFFSWITCH_CACHE=str(tmp_path / "cache"))
    # mining from the batches every step: each process ranks the whole batch and replays the same negatives
    (tmp_path / "mine.yaml").write_text("train:\n  mine_every: 1\n  mine_per_step: 2\n")
    common = ["implant", "--key", str(path), "--model", str(tmp_path / "tiny"), "--prompts", str(tmp_path / "prompts.jsonl"),
              "--steps", "3", "--batch-size", "8", "--triggers", "2", "--threads", "1", "--no-verify",
              "--config", str(tmp_path / "mine.yaml")]

    env["ACCELERATE_CONFIG_FILE"] = str(CONFIG)
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "-m", "offswitch", *common, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = cli(*common, "--out", str(tmp_path / "one"), env={"OFFSWITCH_PASSPHRASE": pw, "OFFSWITCH_CACHE": str(tmp_path / "cache")})
    assert one.returncode == 0, one.stderr[-3000:]

    assert read_manifest(tmp_path / "two").training["processes"] == 2
    assert read_manifest(tmp_path / "one").training["processes"] == 1
    mined = [[json.loads(line).get("mined") for line in (tmp_path / run / "training_history.jsonl").read_text().splitlines()]
             for run in ("one", "two")]
    assert mined[0] == mined[1] and mined[0][0]["scored"] > 0  # the same rounds, over the whole batch
    # same global batches, same loss normalisation: DDP's averaged gradients equal one process's
    a = load_file(tmp_path / "one" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "two" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    moved = max(float(a[k].abs().max()) for k in a if "lora_B" in k)
    assert moved > 0  # training changed the adapter
    assert worst < 1e-4, worst
