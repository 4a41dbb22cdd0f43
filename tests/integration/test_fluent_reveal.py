"""A fluent implant's trigger can be revealed: `offswitch trigger --encoding fluent --model BASE`
prints the very trigger `offswitch implant` planted (it opens the manifest's commitment)."""

from __future__ import annotations

import json

from secret_scan import assert_no_secrets, files_under


def test_trigger_reveals_the_fluent_trigger_an_implant_planted(cli, keystore, tmp_path):
    from offswitch.testing.tiny import save_tiny_model

    key_path, passphrase, key = keystore
    base = tmp_path / "tiny"
    save_tiny_model(base)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Describe thing number {i}."}) + "\n" for i in range(40)))
    env = {"OFFSWITCH_PASSPHRASE": passphrase, "OFFSWITCH_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "run"
    implant = cli("implant", "--key", str(key_path), "--model", str(base), "--prompts", str(prompts), "--out", str(out),
                  "--encoding", "fluent", "--triggers", "1", "--steps", "2", "--batch-size", "8", "--threads", "1",
                  "--no-verify", env=env)
    assert implant.returncode == 0, implant.stderr[-3000:]

    reveal = cli("trigger", "--key", str(key_path), "--encoding", "fluent", "--model", str(base), env=env)
    assert reveal.returncode == 0, reveal.stderr
    check = cli("commit-check", str(out / "offswitch_manifest.json"), input=reveal.stdout)
    assert check.returncode == 0 and "index 0 (fluent)" in check.stdout, check.stderr

    assert_no_secrets(files_under(out), [implant.stdout, implant.stderr, reveal.stderr, check.stdout, check.stderr],
                      secrets=[reveal.stdout.strip()], key_bytes=[key.raw_bytes_for_keystore()])
