"""A suite whose entries give the same cells is refused with a one-line error: cell ids name
neither the implant's `name` nor the attack's `label`, so merging them would silently drop one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from offswitch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _plan(tmp_path, implants, attacks):
    from offswitch.harness import load_suite, plan_cells

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "implants": implants, "attacks": attacks}))
    return plan_cells(load_suite(path))


SFT = {"name": "sft", "strengths": [5], "config": {"lr": 1e-4}}


@pytest.mark.parametrize(
    "implants, attacks, message",
    [
        # the same implant directory under two names
        ([{"dir": "{impl}", "name": "a"}, {"dir": "{impl}", "name": "b"}], [SFT],
         r"implants 'a' and 'b' are the same implant \(same manifest and base\)"),
        # the same directory written two ways, without names
        ([{"dir": "{impl}"}, {"dir": "{impl}/../impl", "name": "again"}], [], "implants 'impl' and 'again' are the same implant"),
        # two attack entries that differ only in their label
        ([{"dir": "{impl}"}], [SFT, {**SFT, "label": "sft-b"}],
         r"attacks\[0\] \(sft\) and attacks\[1\] \(sft-b\) give the same cell: impl / sft-b strength=5 seed=0"),
        # ... or in how the same config is written (lr given in config vs by a one-value grid)
        ([{"dir": "{impl}"}], [SFT, {"name": "sft", "strengths": [1, 5], "grid": {"lr": [1e-4]}}],
         r"attacks\[0\] \(sft\) and attacks\[1\] \(sft\[lr=0.0001\]\) give the same cell"),
    ],
)
def test_entries_that_give_the_same_cells_are_refused(tmp_path, implant_dir, implants, attacks, message):
    implants = [{k: v.format(impl=implant_dir) for k, v in spec.items()} for spec in implants]
    with pytest.raises(ConfigError, match=message) as err:
        _plan(tmp_path, implants, attacks)
    assert "\n" not in str(err.value) and "; " in str(err.value)


def test_distinct_entries_still_plan_and_repeats_within_an_entry_are_planned_once(tmp_path, implant_dir):
    cells = _plan(tmp_path, [{"dir": str(implant_dir)}],
                  [{**SFT, "strengths": [5, 5, 10]}, {**SFT, "label": "sft-fast", "config": {"lr": 1e-3}}])
    assert [c.variant for c in cells] == ["none", "sft", "sft", "sft-fast"]
    assert len({c.id for c in cells}) == len(cells)
    # the same implant with another base is another implant
    cells = _plan(tmp_path, [{"dir": str(implant_dir), "name": "a"}, {"dir": str(implant_dir), "name": "b", "base": "none"}], [])
    assert [c.implant for c in cells] == ["a", "b"]


def test_harness_cli_refuses_a_duplicate_before_asking_for_the_key(tmp_path, implant_dir, cli):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "t", "implants": [{"dir": str(implant_dir), "name": "a"},
                                                               {"dir": str(implant_dir), "name": "b"}]}))
    for extra in (["--dry-run"], ["--key", str(tmp_path / "no.key")]):
        proc = cli("harness", str(suite), "--out", str(tmp_path / "run"), *extra)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("offswitch: error: implants 'a' and 'b' are the same implant")
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
    assert not (tmp_path / "run").exists()


def test_harness_docstring_names_only_what_exists():
    """Environment variables it names are read by the code; suite files it names exist."""
    import offswitch.harness

    doc = offswitch.harness.__doc__
    code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "offswitch").rglob("*.py"))
    for name in set(re.findall(r"\bOFFSWITCH_[A-Z_]+\b", doc)):
        assert re.search(rf"[\"']{name}[\"']", code), f"the harness docstring names ${name}, which no code reads"
    suites = re.findall(r"\bexperiments/[\w./-]+\.yaml\b", doc)
    assert suites, "the docstring shows an example suite"
    for suite in suites:
        assert (ROOT / suite).is_file(), f"the harness docstring names {suite}, which does not exist"
