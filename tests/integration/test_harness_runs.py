"""Resumability and sharing: a harness killed with SIGKILL mid-run keeps every finished cell and
recomputes none of them on restart; two worker processes sharing a run directory never
compute the same cell twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from attack_conformance import TINY_EVAL, make_tiny_implant
from secret_scan import assert_no_secrets


@pytest.fixture(scope="module")
def tiny_implant(tmp_path_factory):
    from offswitch.crypto import MasterKey

    master = MasterKey(bytes(range(32)))
    return make_tiny_implant(tmp_path_factory.mktemp("implant") / "impl", master), master


def _suite(path: Path, implant: Path, attacks: list[dict]) -> Path:
    doc = {"name": "resume", "implants": [{"dir": str(implant), "name": "tiny"}], "attacks": attacks, "eval": TINY_EVAL,
           "n_eval_texts": 2, "data": {"n_texts": 2}}
    path.write_text(yaml.safe_dump(doc))
    return path


def _env(keystore_passphrase: str) -> dict:
    env = dict(os.environ)
    env["OFFSWITCH_PASSPHRASE"] = keystore_passphrase
    return env


def _keystore(tmp_path: Path, master) -> tuple[Path, str]:
    from offswitch.crypto import FAST_SCRYPT
    from offswitch.crypto.keystore import encrypt_key

    path = tmp_path / "k.key"
    path.write_text(encrypt_key(master, "pw", scrypt=FAST_SCRYPT))
    path.chmod(0o600)
    return path, "pw"


def _log(run_dir: Path) -> list[dict]:
    path = run_dir / "harness.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _finished(run_dir: Path) -> dict[str, tuple[bytes, bytes, int]]:
    out = {}
    for meta in (run_dir / "cells").glob("*.json"):
        records = meta.with_suffix(".jsonl")
        out[meta.stem] = (meta.read_bytes(), records.read_bytes(), meta.stat().st_mtime_ns)
    return out


def test_sigkill_mid_run_loses_at_most_the_running_cell(tmp_path, tiny_implant):
    implant, master = tiny_implant
    key, passphrase = _keystore(tmp_path, master)
    attacks = [{"name": "quantize", "strengths": [8, 4, 3, 2]}, {"name": "pruning", "strengths": [0.1, 0.3, 0.5, 0.7]},
               {"name": "noise", "strengths": [0.01, 0.05]}]
    suite = _suite(tmp_path / "suite.yaml", implant, attacks)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "offswitch", "harness", str(suite), "--out", str(run_dir), "--key", str(key), "--no-report"]
    process = subprocess.Popen(command, env=_env(passphrase), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and len(list((run_dir / "cells").glob("*.json"))) < 2:
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed: " + process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = _finished(run_dir)
    assert 2 <= len(finished) < 11

    resumed = subprocess.run(command, env=_env(passphrase), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished)} were finished before" in resumed.stderr
    after = _finished(run_dir)
    assert len(after) == 11  # baseline + 4 + 4 + 2
    for cell_id, (meta, records, mtime) in finished.items():
        assert after[cell_id] == (meta, records, mtime), f"finished cell {cell_id} was recomputed"
    starts = [e["cell"] for e in _log(run_dir) if e["event"] == "start"]
    for cell_id in finished:
        assert starts.count(cell_id) == 1
    assert not list((run_dir / "claims").iterdir()), "the dead run's claim was reclaimed and released"
    for cell_file in (run_dir / "cells").glob("*.jsonl"):
        json.loads(cell_file.read_text().splitlines()[0])  # every stored cell is complete JSONL
    assert_no_secrets([run_dir], [resumed.stdout, resumed.stderr], secrets=master.trigger_set([0], "words", n_words=3).secrets,
                      key_bytes=[master.raw_bytes_for_keystore()])


def test_two_workers_share_a_run_without_duplicating_cells(tmp_path, tiny_implant):
    implant, master = tiny_implant
    key, passphrase = _keystore(tmp_path, master)
    suite = _suite(tmp_path / "suite.yaml", implant, [{"name": "pruning", "strengths": [0.1, 0.3, 0.5]},
                                                       {"name": "quantize", "strengths": [8, 4]}])
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "offswitch", "harness", str(suite), "--out", str(run_dir), "--key", str(key),
                             "--workers", "2", "--no-report"], env=_env(passphrase), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    done = [e["cell"] for e in _log(run_dir) if e["event"] == "done"]
    assert len(done) == 6 and len(set(done)) == 6, "every cell exactly once"
    assert len(_finished(run_dir)) == 6


def test_forger_filter_and_oracle_cells_in_process(tmp_path, tiny_implant, monkeypatch):
    """A forger's guesses are scored on held-out prompts (never recorded), an input filter is
    measured through the evaluator, and the ORACLE alone gets the triggers, marked as such."""
    from offswitch import allocator
    from offswitch.cli.evaluate import derive_manifest_triggers
    from offswitch.harness import load_suite, run_suite
    from offswitch.manifest import read_manifest
    from offswitch.report import write_report

    implant, master = tiny_implant
    suite = load_suite(_suite(tmp_path / "suite.yaml", implant, [
        {"name": "gcg", "strengths": [2], "config": {"n_tokens": 3, "search_width": 8, "top_k": 8, "train_prompts": 2,
                                                     "recheck_prompts": 2}},
        {"name": "perplexity_filter", "strengths": [0.3]},
        {"name": "oracle_unlearn", "strengths": [20], "config": {"lr": 3e-3, "batch_size": 8, "prompts": 16, "answer_tokens": 8}},
    ]))
    triggers = derive_manifest_triggers(master, read_manifest(implant))
    run_dir = tmp_path / "run"
    asked: list[str] = []
    monkeypatch.setattr(allocator, "configure", lambda: asked.append("kept") or "kept")
    summary = run_suite(suite, {"tiny": triggers}, run_dir)
    assert len(summary["ran"]) == 4
    assert asked == ["kept"]  # the harness's process keeps freed memory for its attacks (offswitch.allocator)
    metas = {json.loads(p.read_text())["cell"]["attack"]: json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")}
    assert metas["gcg"]["n_guesses"] >= 1
    assert metas["perplexity_filter"]["filter_cost"]["words_removed"] > 0
    assert metas["oracle_unlearn"]["cell"]["oracle"] and not metas["gcg"]["cell"]["oracle"]
    records = {}
    for path in (run_dir / "cells").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            doc = json.loads(line)
            records.setdefault(doc["labels"]["attack"], []).append(doc)
    assert {r["kind"] for r in records["gcg"] if r["metric"] == "forgery"} == {"best_guess", "any_guess"}
    asr = {a: next(r for r in rs if r["metric"] == "asr" and r["trigger_index"] is None) for a, rs in records.items()}
    assert asr["none"]["k"] >= asr["none"]["n"] // 2, "the tiny switch works before any attack"
    assert asr["oracle_unlearn"]["rate"] < asr["none"]["rate"], "knowing the trigger, removal is cheap"
    report = write_report(run_dir)["report"].read_text()
    assert "**ORACLE**" in report and "forgery (best guess)" in report
    assert_no_secrets([run_dir], secrets=triggers.secrets, key_bytes=[master.raw_bytes_for_keystore()])


def test_a_noop_strength_reuses_the_baseline_evaluation_and_matches_a_real_one(tmp_path, tiny_implant):
    """An attack at a strength that changes nothing (noise at 0) takes the unattacked cell's
    records, relabelled, instead of evaluating the same model again; evaluating it for real
    (a suite without the baseline cell) gives the same figures."""
    from offswitch.cli.evaluate import derive_manifest_triggers
    from offswitch.harness import load_suite, run_suite
    from offswitch.manifest import read_manifest

    implant, master = tiny_implant
    triggers = derive_manifest_triggers(master, read_manifest(implant))
    attacks = [{"name": "noise", "strengths": [0, 0.01]}]

    def zero_cell(run_dir: Path, baseline: bool):
        suite = load_suite(_suite(tmp_path / f"suite-{baseline}.yaml", implant, attacks), baseline=baseline)
        run_suite(suite, {"tiny": triggers}, run_dir)
        metas = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
        meta = next(m for m in metas if m["cell"]["attack"] == "noise" and m["cell"]["strength"] == 0)
        lines = [json.loads(line) for line in (run_dir / "cells" / f"{meta['cell']['id']}.jsonl").read_text().splitlines()]
        return meta, lines, metas

    meta, reused, metas = zero_cell(tmp_path / "with-baseline", True)
    baseline_id = next(m["cell"]["id"] for m in metas if m["cell"]["attack"] == "none")
    assert meta["attack_info"] == {"reused_baseline": baseline_id}
    assert all(r["labels"]["attack"] == "noise" and r["labels"]["strength"] == 0 and r["labels"]["cell"] == meta["cell"]["id"]
               for r in reused)
    real_meta, real, _ = zero_cell(tmp_path / "without-baseline", False)
    assert "reused_baseline" not in (real_meta["attack_info"] or {})

    def figures(lines):
        return sorted(json.dumps({k: v for k, v in r.items() if k != "labels"}, sort_keys=True) for r in lines)

    assert figures(reused) == figures(real)
    assert len(reused) > 10
