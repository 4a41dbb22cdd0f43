"""`offswitch attack` and `offswitch attacks` as a user runs them: no key, the attacked model is
saved and loads back, data comes from the implant's manifest (behaviour, split, base)."""

from __future__ import annotations

import json

import pytest
from attack_conformance import make_tiny_implant, pairs_file


@pytest.fixture(scope="module")
def tiny_implant(tmp_path_factory):
    from offswitch.crypto import MasterKey

    return make_tiny_implant(tmp_path_factory.mktemp("implant") / "impl", MasterKey(bytes(range(32))))


def test_attack_saves_a_loadable_model_without_a_key(tmp_path, tiny_implant, cli):
    from offswitch.models import load_model, state_dict_sha256

    out = tmp_path / "pruned"
    done = cli("attack", "pruning", str(tiny_implant), "--strength", "0.3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    info = json.loads((out / "attack_info.json").read_text())
    assert info["attack"] == "pruning" and info["config"]["strength"] == 0.3 and "cost" in info
    attacked, _ = load_model(out, device="cpu")
    original, _ = load_model(tiny_implant, device="cpu")
    assert state_dict_sha256(attacked) != state_dict_sha256(original)
    refused = cli("attack", "pruning", str(tiny_implant), "--strength", "0.3", "--out", str(out))
    assert refused.returncode != 0 and "not empty" in refused.stderr
    forced = cli("attack", "pruning", str(tiny_implant), "--strength", "0.5", "--out", str(out), "--force")
    assert forced.returncode == 0 and json.loads((out / "attack_info.json").read_text())["config"]["strength"] == 0.5


def test_attack_config_file_and_set_flags(tmp_path, tiny_implant, cli):
    config = tmp_path / "sft.yaml"
    config.write_text(f"lr: 1.0e-3\nbatch_size: 2\ndata: {{pairs: {pairs_file(tmp_path / 'pairs.jsonl')}, n_pairs: 8}}\n")
    out = tmp_path / "sft"
    done = cli("attack", "sft", str(tiny_implant), "--config", str(config), "--set", "batch_size=4", "--strength", "2",
               "--seed", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    info = json.loads((out / "attack_info.json").read_text())
    assert info["config"] == {**info["config"], "lr": 1e-3, "batch_size": 4, "strength": 2, "seed": 3}
    assert info["cost"]["steps"] == 2 and info["cost"]["tokens"] > 0
    bad = cli("attack", "sft", str(tiny_implant), "--set", "learning_rate=1", "--out", str(tmp_path / "x"))
    assert bad.returncode != 0 and "learning_rate" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_forger_needs_no_key_and_keeps_its_guesses_private_unless_asked(tmp_path, tiny_implant, cli):
    out = tmp_path / "gcg"
    args = ["attack", "gcg", str(tiny_implant), "--strength", "2", "--set", "n_tokens=3", "--set", "search_width=8",
            "--set", "train_prompts=2", "--set", "recheck_prompts=2", "--out"]
    done = cli(*args, str(out))
    assert done.returncode == 0, done.stderr
    assert "guesses" in done.stderr and not (out / "guesses.txt").exists()
    shown = cli(*args, str(tmp_path / "gcg2"), "--write-guesses")
    assert shown.returncode == 0 and (tmp_path / "gcg2" / "guesses.txt").read_text().strip()


def test_attacks_lists_every_attack_with_its_knowledge(cli):
    from offswitch.attacks import attack_names

    listed = cli("attacks", "--json")
    assert listed.returncode == 0
    described = json.loads(listed.stdout)
    assert [d["name"] for d in described] == attack_names()
    assert [d["name"] for d in described if d["oracle"]] == ["oracle_unlearn"]
    one = cli("attacks", "wanda")
    assert one.returncode == 0 and "calibration_prompts" in one.stdout and "clean_data" in one.stdout
