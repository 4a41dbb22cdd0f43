"""Committed results are regenerated, never edited: the report under experiments/results/<run>/
equals the one `offswitch report` writes from that run's committed records, and
docs/results.md's tables equal those reports (rerun `python experiments/results/sync.py
--write docs/results.md` after committing a new run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results"
RUNS = sorted(p.parent.name for p in RESULTS.glob("*/report.md"))


def _sync():
    return load_script(RESULTS / "sync.py", "results_sync")


def test_there_are_committed_runs():
    assert "smoke" in RUNS


@pytest.mark.parametrize("run", RUNS)
def test_the_committed_report_is_the_one_regenerated_from_the_records(run, tmp_path, cli):
    out = tmp_path / run
    result = cli("report", str(RESULTS / run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("report.md", "summary.json"):
        assert (out / name).read_bytes() == (RESULTS / run / name).read_bytes(), f"{run}/{name} is stale: regenerate it"
    committed = sorted(p.name for p in (RESULTS / run / "plots").glob("*.png"))
    assert committed and sorted(p.name for p in (out / "plots").glob("*.png")) == committed
    for name in committed:
        assert (RESULTS / run / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_docs_results_tables_equal_the_committed_reports():
    sync = _sync()
    doc = ROOT / "docs" / "results.md"
    text = doc.read_text(encoding="utf-8")
    for run in RUNS:
        assert sync.markers(run)[0] in text, f"docs/results.md has no generated block for {run}"
    sync.main(["--check", str(doc)])  # raises SystemExit when stale


def test_a_changed_figure_in_docs_results_is_caught(tmp_path):
    sync = _sync()
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    start = text.index(sync.markers("smoke")[0])
    at = text.index("[", text.index("| ", start))  # a count inside the generated table
    doc = tmp_path / "results.md"
    doc.write_text(text[:at] + "[9" + text[at + 1 :], encoding="utf-8")
    with pytest.raises(SystemExit):
        sync.main(["--check", str(doc)])
