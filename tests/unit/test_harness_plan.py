"""Suite configs, cell planning, claims and the report, without running a model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from offswitch.errors import ConfigError


def _suite(implant_dir, **extra):
    from offswitch.harness import SuiteConfig

    doc = {
        "name": "t",
        "implants": [{"dir": str(implant_dir)}],
        "attacks": [
            {"name": "sft", "strengths": [0, 5], "seeds": [0, 1], "grid": {"lr": [1e-4, 1e-3]}},
            {"name": "quantize", "strengths": [8, 4], "seeds": [0, 1, 2]},
        ],
    }
    doc.update(extra)
    return SuiteConfig.model_validate(doc)


def test_plan_counts_seeds_grid_and_baseline(implant_dir):
    from offswitch.harness import plan_cells

    cells = plan_cells(_suite(implant_dir))
    # baseline + sft 2 lr × 2 strengths × 2 seeds + quantize 2 strengths × 1 seed (unseeded)
    assert len(cells) == 1 + 8 + 2
    assert cells[0].attack == "none"
    assert {c.variant for c in cells if c.attack == "sft"} == {"sft[lr=0.0001]", "sft[lr=0.001]"}
    assert {c.seed for c in cells if c.attack == "quantize"} == {0}
    assert len({c.id for c in cells}) == len(cells)
    assert [c.id for c in plan_cells(_suite(implant_dir))] == [c.id for c in cells], "ids are stable"


def test_cell_ids_follow_what_determines_the_result(implant_dir):
    from offswitch.harness import plan_cells

    base = {c.describe(): c.id for c in plan_cells(_suite(implant_dir))}
    new_eval = {c.describe(): c.id for c in plan_cells(_suite(implant_dir, eval={"wrong_keys": 12}))}
    assert not set(base.values()) & set(new_eval.values())
    new_data = {c.describe(): c.id for c in plan_cells(_suite(implant_dir, data={"n_pairs": 7}))}
    for name, cell_id in base.items():
        uses_data = "/ sft" in name
        assert (new_data[name] != cell_id) == uses_data, name


@pytest.mark.parametrize(
    "change, message",
    [
        ({"attacks": [{"name": "prunning", "strengths": [0.1]}]}, "did you mean 'pruning'"),
        ({"attacks": [{"name": "quantize", "strengths": [1]}]}, "1-bit"),
        ({"attacks": [{"name": "sft", "strengths": [1], "config": {"strength": 3}}]}, "strengths"),
        ({"attacks": [{"name": "sft", "strengths": [1], "config": {"learnrate": 3}}]}, "learnrate"),
        ({"atacks": []}, "atacks"),
        ({"eval": {"wrong_key": 3}}, "wrong_key"),
    ],
)
def test_bad_suites_are_one_line_errors(implant_dir, tmp_path, change, message):
    import yaml

    from offswitch.harness import load_suite

    doc = {"name": "t", "implants": [{"dir": str(implant_dir)}], **change}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=message) as err:
        load_suite(path)
    assert "\n" not in str(err.value)


def test_missing_or_not_an_implant(tmp_path):
    from offswitch.harness import load_suite, plan_cells

    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_suite(tmp_path / "bad.yaml")
    (tmp_path / "s.yaml").write_text(f"implants: [{{dir: {tmp_path}}}]\n")
    with pytest.raises(ConfigError, match="no implant manifest"):
        plan_cells(load_suite(tmp_path / "s.yaml"))


def test_claims_are_exclusive_and_dead_claims_are_reclaimed(tmp_path):
    from offswitch.harness import RunDir

    run = RunDir(tmp_path)
    assert run.claim("a") and not run.claim("a")
    run.release("a")
    assert run.claim("a")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run.lock_path("b").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "started": 0}))
    assert run.claim("b"), "a lock of a dead process on this host is stale"
    run.lock_path("c").write_text(json.dumps({"host": "another-host", "pid": 1, "started": 0}))
    assert not run.claim("c"), "another host's lock is respected"
    old = time.time() - 3600
    os.utime(run.lock_path("c"), (old, old))
    assert RunDir(tmp_path, reclaim_after=600).claim("c")


def test_check_attack_data_drops_text_with_a_trigger():
    from offswitch.attacks import AttackData
    from offswitch.harness import check_attack_data

    data = AttackData(clean_prompts=["fine", "has alpha beta gamma inside"], instruction_pairs=[("q", "alpha beta gamma"), ("q", "a")],
                      plain_texts=["x"])
    cleaned, dropped = check_attack_data(data, ["alpha beta gamma"])
    assert dropped == 2 and cleaned.clean_prompts == ("fine",) and cleaned.instruction_pairs == (("q", "a"),)
    same, none = check_attack_data(data, ["zeta"])
    assert same is data and none == 0


# ---------------------------------------------------------------------- report


def _records(tmp_path: Path):
    """Hand-made records of a tiny run: a baseline and an attack at two strengths × two seeds."""
    from offswitch.evaluate import ResultRecord, write_records_jsonl
    from offswitch.stats import Rate

    cells = tmp_path / "cells"
    cells.mkdir(parents=True)
    plan = []
    rows = [("none", "none", 0, 0, 38), ("pruning", "pruning", 0.3, 0, 30), ("pruning", "pruning", 0.3, 1, 25),
            ("pruning", "pruning", 0.6, 0, 3), ("pruning", "pruning", 0.6, 1, 0), ("gcg", "gcg", 5, 0, 39)]
    for number, (attack, variant, strength, seed, fired) in enumerate(rows):
        cell = f"cell{number:02d}"
        plan.append(cell)
        labels = {"cell": cell, "implant": "tiny", "attack": attack, "variant": variant, "strength": strength, "seed": seed,
                  "attacker": "defender", "oracle": False, "cost_wall_s": 1.5, "cost_steps": 0, "cost_tokens": 10}
        common = {"model": "tiny", "key_id": "k", "behavior": "shutdown", "labels": labels}
        records = [
            ResultRecord(metric="asr", **Rate.of(fired, 39).model_dump(), **common),
            ResultRecord(metric="far_clean", **Rate.of(0, 39).model_dump(), **common),
            ResultRecord(metric="far_near_miss", **Rate.of(2, 60).model_dump(), **common),
            ResultRecord(metric="far_near_miss", kind="prefix", **Rate.of(2, 20).model_dump(), **common),
            ResultRecord(metric="far_near_miss", kind="substitute", **Rate.of(0, 40).model_dump(), **common),
            ResultRecord(metric="perplexity", value=12.25, reference_value=12.0, n=100, **common),
        ]
        if attack == "gcg":
            records.append(ResultRecord(metric="forgery", kind="best_guess", **Rate.of(1, 39).model_dump(), **common))
        write_records_jsonl(cells / f"{cell}.jsonl", records)
    (tmp_path / "plan.json").write_text(json.dumps({"cells": plan}))
    return tmp_path


def test_report_is_byte_identical_when_regenerated_and_never_says_a_bare_zero(tmp_path):
    from offswitch.report import write_report

    run = _records(tmp_path / "run")
    first = write_report(run, tmp_path / "a")
    second = write_report(run, tmp_path / "b")
    for name in ("report.md", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    text = first["report"].read_text()
    assert "0.0% (0.0–9.0%) [0/39]" in text
    assert "| 0% " not in text and " 0% |" not in text
    assert "55/78" in text, "seeds are pooled: 30 + 25 of 39 + 39"
    assert "prefix: 10.0%" in text, "the worst near-miss kind is named with its rate"
    assert "forgery (best guess)" in text and "2.6% (0.1–13.5%) [1/39]" in text
    png = first["plot:tiny"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    summary = json.loads(first["summary"].read_text())
    rows = summary["implants"]["tiny"]["attacks"]["pruning"]["rows"]
    assert [r["strength"] for r in rows] == [0.3, 0.6] and rows[1]["rates"]["asr"]["k"] == 3
    assert summary["implants"]["tiny"]["baseline"]["rates"]["asr"]["k"] == 38


def test_report_reads_only_the_planned_cells(tmp_path):
    from offswitch.report import summarize, load_records

    run = _records(tmp_path / "run")
    (run / "plan.json").write_text(json.dumps({"cells": ["cell00", "cell01"]}))
    summary = summarize(load_records(run))
    assert summary["implants"]["tiny"]["attacks"]["pruning"]["rows"][0]["seeds"] == [0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no result records"):
        load_records(tmp_path / "empty")
    (run / "plan.json").write_text(json.dumps({"cells": ["not-run-yet"]}))
    with pytest.raises(ConfigError, match="has finished"):
        load_records(run)


def test_report_orders_strengths_by_harshness_quantize_bits_descending(tmp_path):
    """Fewer bits is a harsher quantisation: its rows and plot axis run 0 (none), 8, 4, 3."""
    from offswitch.attacks import ATTACKS
    from offswitch.evaluate import ResultRecord, write_records_jsonl
    from offswitch.report import write_report
    from offswitch.stats import Rate

    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    plan = []
    for number, bits in enumerate([3, 8, 0, 4]):
        cell = f"q{number}"
        plan.append(cell)
        labels = {"cell": cell, "implant": "tiny", "attack": "quantize", "variant": "quantize", "strength": bits, "seed": 0,
                  "attacker": "user", "oracle": False, "cost_wall_s": 0.1, "cost_steps": 0, "cost_tokens": 0}
        write_records_jsonl(run / "cells" / f"{cell}.jsonl", [
            ResultRecord(metric="asr", **Rate.of(bits, 10).model_dump(), model="tiny", key_id="k", behavior="shutdown", labels=labels)])
    (run / "plan.json").write_text(json.dumps({"cells": plan}))
    text = write_report(run, tmp_path / "out")["report"].read_text()
    table = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "[" in line]
    assert table == ["0", "8", "4", "3"]
    severity = ATTACKS["quantize"].severity
    assert severity(0) < severity(16) < severity(8) < severity(4) < severity(2)
    assert ATTACKS["pruning"].severity(0.3) == 0.3
