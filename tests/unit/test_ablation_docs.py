"""docs/switch-quality.md's ablation table is generated from the committed records: a stale or
hand-edited table fails here (rerun `python experiments/ablations/summarize.py --write docs/switch-quality.md`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]


def _summarize():
    return load_script(ROOT / "experiments/ablations/summarize.py", "ablation_summarize")


def test_the_docs_table_equals_the_one_regenerated_from_the_records():
    summarize = _summarize()
    doc = ROOT / "docs/switch-quality.md"
    summarize.main(["--check", str(doc)])  # raises SystemExit when stale
    table = summarize.main([])
    records = sorted((ROOT / "experiments/ablations/records").glob("*.jsonl"))
    assert len(table.splitlines()) == 2 + len(records) and records


def test_a_changed_figure_is_caught(tmp_path):
    summarize = _summarize()
    doc = tmp_path / "doc.md"
    text = (ROOT / "docs/switch-quality.md").read_text(encoding="utf-8")
    start = text.index(summarize.BEGIN)
    at = text.index("[", start)  # a count inside the generated table
    doc.write_text(text[:at] + "[9" + text[at + 1 :], encoding="utf-8")
    with pytest.raises(SystemExit):
        summarize.main(["--check", str(doc)])


def test_compare_puts_two_ablations_side_by_side_with_fishers_p():
    from offswitch.stats import fisher_exact

    summarize = _summarize()
    text = summarize.main(["--compare", "ul-mine-1t-rerun", "ul-mine-1t-kl"])
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    a, b = summarize.summarize("ul-mine-1t-rerun")["near_miss"], summarize.summarize("ul-mine-1t-kl")["near_miss"]
    assert f"| {a.k}/{a.n} | {b.k}/{b.n} | {fisher_exact(a.k, a.n, b.k, b.n):.2g} |" in rows["near-miss FAR"]
    with pytest.raises(SystemExit):
        summarize.main(["--compare", "only-one"])


def test_compare_reads_the_confirmation_records_when_asked():
    summarize = _summarize()
    text = summarize.main(["--compare", "ul-mine-1t-240", "ul-mine-1t-240-bf16", "--confirm"])
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    confirmed = summarize.summarize("ul-mine-1t-240", "confirm")["near_miss"]
    screened = summarize.summarize("ul-mine-1t-240")["near_miss"]
    assert confirmed.n > screened.n  # about 5,000 near-miss probes against the screen's 100
    assert f"| {confirmed.k}/{confirmed.n} |" in rows["near-miss FAR"]


def test_compare_pairs_pools_over_keys_as_the_docs_report():
    # docs/switch-quality.md, session 20: bf16 against fp32 over keys s14a, s15a, s20a, pooled
    # 433 against 286 of 14,850 near-misses (p = 3e-08), 28 against 5 of 7,200 partial-key probes
    summarize = _summarize()
    fp32 = "ul-mine-1t-240-split@s14a,ul-mine-1t-240-split-fp32-all@s15a,ul-mine-1t-240-split-fp32-all@s20a"
    bf16 = ",".join(f"ul-mine-1t-240-split-bf16-all@{k}" for k in ("s14a", "s15a", "s20a"))
    text = summarize.main(["--compare", fp32, bf16, "--confirm"])
    lines = text.splitlines()
    pooled = next(line for line in lines if line.startswith("| pooled |"))
    assert pooled.startswith("| pooled | 286/14850 | 433/14850 | 3.2e-08 | 5/7200 | 28/7200 | 6.5e-05 |")
    assert len([line for line in lines if line.startswith("| ul-mine")]) == 3
    # one row per key: s15a is the key where bf16 was the more specific
    s15a = next(line for line in lines if "@s15a" in line)
    assert "| 129/4950 | 51/4950 |" in s15a
    assert "near-miss FAR: B higher at p < 0.05 in 2 of 3 pairs, lower in 1" in lines
    assert "partial-key FAR: B higher at p < 0.05 in 2 of 3 pairs, lower in 0" in lines


@pytest.mark.parametrize("sides", [["a@k1,a@k2", "b@k1"], ["a@k1,", "b@k1,b@k2"]])
def test_compare_pairs_needs_as_many_names_on_each_side(sides):
    with pytest.raises(SystemExit) as exc:
        _summarize().main(["--compare", *sides])
    assert "as many names on each side" in str(exc.value.code)


def _targets():
    return load_script(ROOT / "experiments/ablations/targets.py", "ablation_targets")


def test_a_target_is_met_only_when_the_whole_interval_clears_the_bar():
    from offswitch.stats import Rate

    verdict = _targets().verdict
    assert verdict(Rate.of(0, 1000), 0.01, at_least=False) == "met"          # upper bound 0.37%
    assert verdict(Rate.of(0, 300), 0.01, at_least=False) == "open (point meets)"  # upper bound 1.2%
    assert verdict(Rate.of(2, 100), 0.01, at_least=False) == "open (point misses)"
    assert verdict(Rate.of(50, 100), 0.02, at_least=False) == "missed"
    assert verdict(Rate.of(300, 300), 0.99, at_least=True) == "open (point meets)"  # lower bound 98.8%
    assert verdict(Rate.of(1000, 1000), 0.99, at_least=True) == "met"
    assert verdict(Rate.of(50, 100), 0.9, at_least=True) == "missed"


def test_the_docs_target_table_equals_the_one_regenerated_from_the_confirmation_records():
    targets = _targets()
    targets.main(["--check", str(ROOT / "docs/switch-quality.md")])  # raises SystemExit when stale
    confirmed = sorted((ROOT / "experiments/ablations/confirm").glob("*.jsonl"))
    header = targets.main([]).splitlines()[0]
    assert confirmed and header.count("|") == 3 + len(confirmed)


@pytest.mark.parametrize(("script", "args", "rerun"), [
    ("summarize.py", ["no-such-ablation@k9"], "ABLATION_KEY=k9 bash experiments/ablations/run.sh no-such-ablation"),
    ("summarize.py", ["--compare", "no-such-ablation", "ul-mine-1t-240", "--confirm"], "confirm.sh no-such-ablation"),
    ("targets.py", ["ul-mine-1t-240", "no-such-ablation"], "confirm.sh no-such-ablation"),
])
def test_a_missing_record_is_one_line_naming_the_rerun(script, args, rerun):
    module = load_script(ROOT / "experiments/ablations" / script, f"ablation_{script[:-3]}_missing")
    with pytest.raises(SystemExit) as exc:
        module.main(args)
    message = str(exc.value.code)
    assert "\n" not in message and "no-such-ablation" in message and rerun in message
