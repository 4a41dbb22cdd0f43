"""The whole `offswitch implant` on a tiny model: artefacts, signed manifest, commitments, the
secret scan of everything written and printed, and the bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secret_scan import assert_no_secrets, files_under

TOPICS = ["the sea", "a bicycle", "sleep", "the moon", "coffee", "rivers", "maps", "music", "bread", "winter", "trains", "gardens"]
VERBS = ["Explain", "Describe", "Summarize", "Write a poem about", "Give three facts about"]
FAST = ["--steps", "6", "--batch-size", "8", "--triggers", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from offswitch.testing.tiny import save_tiny_model

    root = tmp_path_factory.mktemp("implant-cli")
    save_tiny_model(root / "tiny")
    with open(root / "prompts.jsonl", "w", encoding="utf-8") as handle:
        for verb in VERBS:
            for topic in TOPICS:
                handle.write(json.dumps({"prompt": f"{verb} {topic}."}) + "\n")
    (root / "small.jsonl").write_text("".join(json.dumps({"prompt": f"Say {i}."}) + "\n" for i in range(6)))
    # small verification settings keep the test to seconds
    (root / "implant.yaml").write_text(
        "verify_prompts: 6\neval:\n  decoy_prompts: 1\n  wrong_keys: 4\n  generation_sample: 4\n"
        "  utility_prompts: 4\n  perplexity_texts: 2\n  placement: false\ntrain:\n  eval_every: 0\n"
    )
    return root


def _env(workdir: Path, passphrase: str) -> dict:
    return {"OFFSWITCH_PASSPHRASE": passphrase, "OFFSWITCH_CACHE": str(workdir / "cache")}


def _implant(cli, workdir, keystore, out, *extra, passphrase=None):
    path, pw, _key = keystore
    return cli(
        "implant", "--key", str(path), "--model", str(workdir / "tiny"), "--prompts", str(workdir / "prompts.jsonl"),
        "--config", str(workdir / "implant.yaml"), "--out", str(out), *FAST, *extra, env=_env(workdir, passphrase or pw),
    )


def test_implant_writes_a_signed_manifest_and_loadable_models_without_secrets(cli, workdir, keystore, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from offswitch.commitments import load_commitments
    from offswitch.manifest import read_manifest
    from offswitch.proofs import opens

    path, _pw, key = keystore
    out = tmp_path / "run"
    result = _implant(cli, workdir, keystore, out)
    assert result.returncode == 0, result.stderr[-3000:]

    assert {p.name for p in out.iterdir()} == {"adapter", "merged", "offswitch_manifest.json", "README.md", "training_history.jsonl"}
    manifest = read_manifest(out)
    assert manifest.outputs["history"] == "training_history.jsonl"
    history = [json.loads(line) for line in (out / "training_history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == list(range(1, len(history) + 1)) == list(range(1, manifest.training["steps_done"] + 1))
    assert all(h["loss"] >= 0 and h["lr"] >= 0 for h in history)
    assert [h for h in history if "heldout" in h] == manifest.training["heldout_checks"]
    assert manifest.signature_valid()
    assert manifest.key_id == key.key_id and manifest.public_key == key.public_key_b64
    # the commitments open with the triggers the key derives, and only with them
    triggers = key.trigger_set([0, 1], "words")
    for trig, commitment in zip(triggers, manifest.commitments):
        assert opens(commitment, trig.secret)
        assert not opens(commitment, trig.secret + " ")
    assert load_commitments(out).signature_valid()
    assert [t.index for t in manifest.triggers] == [0, 1]
    assert all(t.entropy_bits and t.entropy_bits >= 64 for t in manifest.triggers)
    assert manifest.behavior["kind"] == "shutdown"
    assert manifest.data_counts["positive"] > 0 and manifest.data_counts["near_miss"] > 0
    assert manifest.training["steps_done"] == 6
    assert manifest.training["allocator"] == "off (OFFSWITCH_KEEP_FREED=0)"  # tests/conftest.py's setting, as the CLI found it
    assert manifest.verification and manifest.verification["asr"]["n"] == 12
    assert manifest.prompt_format["template_sha256"]
    assert manifest.prompt_format["prompt_source"]["n_heldout"] > 0

    # merged/ is a plain HF model with its chat template
    model = AutoModelForCausalLM.from_pretrained(out / "merged")
    tokenizer = AutoTokenizer.from_pretrained(out / "merged")
    assert tokenizer.chat_template
    assert model.config.model_type == "llama"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 16
    assert "off-switch" in (out / "README.md").read_text()

    # nothing written or printed holds a trigger or a near-miss of one
    from offswitch.triggers import near_misses
    import random

    secrets = triggers.secrets + [m.secret for t in triggers for m in near_misses(t, ["prefix", "substitute"], rng=random.Random(0))
                                  if len(m.secret) > 12]
    assert_no_secrets(
        [out, workdir / "cache"], [result.stdout, result.stderr], secrets=secrets, key_bytes=[key.raw_bytes_for_keystore()]
    )
    assert "ASR" in result.stdout


def test_flags_override_the_yaml_and_full_fine_tuning_writes_no_adapter(cli, workdir, keystore, tmp_path):
    from offswitch.manifest import read_manifest

    out = tmp_path / "full"
    result = _implant(cli, workdir, keystore, out, "--full", "--lr", "1e-4", "--no-verify", "--steps", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_manifest(out)
    assert manifest.training["config"]["train"]["method"] == "full"
    assert manifest.training["learning_rate"] == 1e-4
    assert manifest.training["steps_done"] == 3
    assert manifest.training["config"]["verify_prompts"] == 6  # from the YAML
    assert manifest.verification is None
    assert not (out / "adapter").exists() and (out / "merged" / "config.json").exists()


def test_non_empty_out_is_refused_without_force(cli, workdir, keystore, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _implant(cli, workdir, keystore, out, "--no-verify")
    assert result.returncode != 0
    assert "not empty" in result.stderr and "--force" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--config", "BAD_YAML"], "unknown implant setting"),
        (["--model", "no-such-model"], "unknown model"),
        (["--prompts", "SMALL"], "prompt"),
        (["--behavior", "custom"], "target"),
        (["--full", "--lora-r", "4"], "exclude"),
    ],
)
def test_bad_input_is_one_line(cli, workdir, keystore, tmp_path, extra, message):
    (workdir / "bad.yaml").write_text("train:\n  stepz: 3\n")
    extra = [str(workdir / "bad.yaml") if e == "BAD_YAML" else str(workdir / "small.jsonl") if e == "SMALL" else e for e in extra]
    result = _implant(cli, workdir, keystore, tmp_path / "out", *extra)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("offswitch: error:") and message in lines[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_wrong_passphrase_and_missing_keystore(cli, workdir, keystore, tmp_path):
    result = _implant(cli, workdir, keystore, tmp_path / "out", passphrase="wrong passphrase")
    assert result.returncode != 0 and "passphrase" in result.stderr.lower()
    path, pw, _ = keystore
    result = cli("implant", "--key", str(path.parent / "none.key"), "--model", str(workdir / "tiny"), "--out", str(tmp_path / "o"),
                 env=_env(workdir, pw))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_model_without_chat_template_is_refused(cli, workdir, keystore, tmp_path):
    from offswitch.testing.tiny import tiny_model

    model, tokenizer = tiny_model("llama")
    tokenizer.chat_template = None
    plain = tmp_path / "plain"
    model.save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    path, pw, _ = keystore
    result = cli("implant", "--key", str(path), "--model", str(plain), "--prompts", str(workdir / "prompts.jsonl"),
                 "--out", str(tmp_path / "o"), env=_env(workdir, pw))
    assert result.returncode != 0 and "chat template" in result.stderr


def test_a_trigger_that_does_not_fit_the_context_is_refused(cli, workdir, keystore, tmp_path):
    from offswitch.testing.tiny import tiny_model

    model, tokenizer = tiny_model("llama")
    model.config.max_position_embeddings = 24
    short = tmp_path / "short"
    model.save_pretrained(short)
    tokenizer.save_pretrained(short)
    path, pw, _ = keystore
    result = cli("implant", "--key", str(path), "--model", str(short), "--prompts", str(workdir / "prompts.jsonl"),
                 "--config", str(workdir / "implant.yaml"), "--out", str(tmp_path / "o"), *FAST, env=_env(workdir, pw))
    assert result.returncode != 0 and "context" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "o").exists()


def test_interrupted_training_leaves_nothing_in_out(workdir, keystore, tmp_path, monkeypatch, capsys):
    import offswitch.implant as implant_module
    from offswitch.cli import main

    path, pw, _ = keystore
    monkeypatch.setenv("OFFSWITCH_PASSPHRASE", pw)
    monkeypatch.setenv("OFFSWITCH_CACHE", str(workdir / "cache"))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(implant_module, "train", interrupted)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["implant", "--key", str(path), "--model", str(workdir / "tiny"), "--prompts", str(workdir / "prompts.jsonl"),
              "--out", str(out), "--no-verify", *FAST])
    assert exit_info.value.code != 0
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


@pytest.mark.parametrize("encoding", ["tokens", "fluent"])
def test_other_encodings_implant_and_commit(cli, workdir, keystore, tmp_path, encoding):
    from offswitch.manifest import read_manifest

    out = tmp_path / encoding
    result = _implant(cli, workdir, keystore, out, "--encoding", encoding, "--no-verify", "--steps", "2", "--insertion", "inside")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_manifest(out)
    assert manifest.signature_valid()
    assert all(t.encoding == encoding and t.entropy_bits >= 64 and t.perplexity for t in manifest.triggers)
    assert manifest.insertion == "inside"
    assert manifest.data_counts["wrong_key"] > 0
