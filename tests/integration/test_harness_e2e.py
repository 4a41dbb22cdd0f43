"""The whole chain on a tiny model: `offswitch implant` → `offswitch harness` (baseline + 2 attacks
× 2 strengths) → report with a valid PNG; every file written and everything printed is scanned
for the trigger and the key."""

from __future__ import annotations

import json

import yaml
from attack_conformance import TINY_EVAL, pairs_file
from secret_scan import assert_no_secrets


def test_implant_attack_report_chain(tmp_path, keystore, tiny_llama_dir, cli):
    key_path, passphrase, master = keystore
    env = {"OFFSWITCH_PASSPHRASE": passphrase, "OFFSWITCH_CACHE": str(tmp_path / "cache")}
    implant = cli("implant", "--key", str(key_path), "--model", str(tiny_llama_dir), "--out", str(tmp_path / "impl"),
                  "--triggers", "1", "--words", "3", "--steps", "10", "--no-verify", env=env)
    assert implant.returncode == 0, implant.stderr

    suite = {
        "name": "e2e",
        "implants": [{"dir": str(tmp_path / "impl"), "name": "tiny"}],
        "attacks": [
            {"name": "sft", "strengths": [2, 4], "config": {"batch_size": 4, "lr": 1e-3}},
            {"name": "pruning", "strengths": [0.2, 0.5]},
        ],
        "data": {"pairs": str(pairs_file(tmp_path / "pairs.jsonl")), "n_pairs": 20, "n_texts": 4},
        "eval": TINY_EVAL,
        "n_eval_texts": 4,
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    run_dir = tmp_path / "run"
    dry = cli("harness", str(tmp_path / "suite.yaml"), "--dry-run", "--out", str(run_dir))
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("pending") == 5 and "none strength=0" in dry.stdout

    ran = cli("harness", str(tmp_path / "suite.yaml"), "--out", str(run_dir), "--key", str(key_path), env=env)
    assert ran.returncode == 0, ran.stderr
    assert "ran 5 cells" in ran.stderr
    assert len(list((run_dir / "cells").glob("*.json"))) == 5 and not list((run_dir / "claims").iterdir())
    png = (run_dir / "plots" / "survival-tiny.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    report = (run_dir / "report.md").read_text()
    assert "### `sft`" in report and "### `pruning`" in report and "Unattacked" in report
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["strength"] for r in summary["implants"]["tiny"]["attacks"]["sft"]["rows"]] == [2, 4]
    meta = json.loads(next((run_dir / "cells").glob("*.json")).read_text())
    assert {"cost", "headline", "cell"} <= set(meta)

    again = cli("harness", str(tmp_path / "suite.yaml"), "--out", str(run_dir), "--key", str(key_path), env=env)
    assert again.returncode == 0 and "ran 0 cells, 5 were finished before" in again.stderr
    regenerated = cli("report", str(run_dir), "--out", str(tmp_path / "again"))
    assert regenerated.returncode == 0, regenerated.stderr
    assert (tmp_path / "again" / "report.md").read_bytes() == (run_dir / "report.md").read_bytes()

    triggers = master.trigger_set([0], "words", n_words=3)
    assert_no_secrets(
        [run_dir, tmp_path / "again", tmp_path / "cache"],
        [dry.stdout, dry.stderr, ran.stdout, ran.stderr, again.stdout, again.stderr],
        secrets=triggers.secrets,
        key_bytes=[master.raw_bytes_for_keystore()],
    )


def test_harness_bad_inputs_are_one_line_errors(tmp_path, keystore, implant_dir, cli):
    key_path, passphrase, _master = keystore
    (tmp_path / "typo.yaml").write_text("name: x\nimplants: [{dir: nowhere}]\nattacks: [{name: prunning, strengths: [0.1]}]\n")
    typo = cli("harness", str(tmp_path / "typo.yaml"), "--dry-run")
    assert typo.returncode != 0 and "did you mean 'pruning'" in typo.stderr and len(typo.stderr.strip().splitlines()) == 1
    (tmp_path / "nomanifest.yaml").write_text(f"name: x\nimplants: [{{dir: {tmp_path}}}]\n")
    no_manifest = cli("harness", str(tmp_path / "nomanifest.yaml"))
    assert no_manifest.returncode != 0 and "no implant manifest" in no_manifest.stderr
    assert len(no_manifest.stderr.strip().splitlines()) == 1
    (tmp_path / "nokey.yaml").write_text(f"name: x\nimplants: [{{dir: {implant_dir}}}]\n")
    missing = cli("harness", str(tmp_path / "nokey.yaml"))
    assert missing.returncode != 0 and "--key" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    unknown = cli("attack", "prunning", str(tmp_path), "--out", str(tmp_path / "o"))
    assert unknown.returncode != 0 and "did you mean 'pruning'" in unknown.stderr
    oracle = cli("attack", "oracle_unlearn", str(tmp_path), "--out", str(tmp_path / "o"))
    assert oracle.returncode != 0 and "ORACLE" in oracle.stderr and "--key" in oracle.stderr
