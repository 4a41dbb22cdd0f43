"""The report of a harness run, regenerated from its records (never edited by hand):

* ``report.md`` — per implant, the unattacked reference and one table per attack: ASR, FAR
  (clean, wrong key, near-miss and its worst kind), forgery rates for forgers, utility and
  cost, each rate as ``percent (95% Clopper–Pearson interval) [k/n]`` pooled over seeds;
* ``summary.json`` — the same numbers, machine-readable;
* ``plots/survival-<implant>.png`` — survival curves: ASR and FAR vs strength with 95% bands,
  one panel per attack, the unattacked values as reference lines.

The same records always give byte-identical ``report.md`` and ``summary.json``: no
timestamps, sorted keys, fixed number formats.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from offswitch.errors import ConfigError
from offswitch.fsutil import atomic_write_json, atomic_write_text
from offswitch.stats import Rate

SUMMARY_FORMAT = "offswitch-report-summary"
SUMMARY_VERSION = 1
BASELINE = "none"

# (metric, kind) of the pooled rate records shown, and their column names
RATE_COLUMNS = (
    ("asr", None, "ASR"),
    ("far_clean", None, "FAR clean"),
    ("far_wrong_key", None, "FAR wrong key"),
    ("far_near_miss", None, "FAR near-miss"),
    ("forgery", "best_guess", "forgery (best guess)"),
    ("forgery", "any_guess", "forgery (any guess)"),
)
CURVES = (
    ("asr", None, "ASR", "tab:red"),
    ("far_near_miss", None, "FAR near-miss", "tab:blue"),
    ("far_wrong_key", None, "FAR wrong key", "tab:green"),
    ("far_clean", None, "FAR clean", "tab:gray"),
    ("forgery", "best_guess", "forgery (best guess)", "tab:purple"),
)


def load_records(path: Path | str) -> list:
    """Records of a run directory (``cells/*.jsonl``; only the cells of its ``plan.json`` when
    there is one), a folder of ``.jsonl`` files, or one file."""
    from offswitch.evaluate import read_records_jsonl

    path = Path(path)
    if path.is_file():
        return read_records_jsonl(path)
    if not path.is_dir():
        raise ConfigError(f"no results at {path}", "give a harness run directory or a results .jsonl file")
    folder = path / "cells" if (path / "cells").is_dir() else path
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise ConfigError(f"{path} holds no result records (.jsonl)", "run `offswitch harness` into it first")
    plan = path / "plan.json"
    if folder.name == "cells" and plan.exists():
        wanted = set(json.loads(plan.read_text(encoding="utf-8"))["cells"])
        files = [f for f in files if f.stem in wanted]
        if not files:
            raise ConfigError(f"none of the cells planned in {plan} has finished", "run `offswitch harness` to completion first")
    records = []
    for file in files:
        records.extend(read_records_jsonl(file))
    return records


def _labels(record) -> dict[str, Any]:
    labels = record.labels or {}
    return {
        "implant": str(labels.get("implant", record.model)),
        "attack": str(labels.get("attack", BASELINE)),
        "variant": str(labels.get("variant", labels.get("attack", BASELINE))),
        "strength": labels.get("strength", 0),
        "seed": labels.get("seed", record.seed),
        "cell": str(labels.get("cell", "")),
        "attacker": str(labels.get("attacker", "none")),
        "oracle": bool(labels.get("oracle", False)),
    }


def _pooled_cell(record) -> bool:
    return record.distance is None and record.position is None and record.trigger_index is None


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return _round(sum(values) / len(values)) if values else None


def summarize(records: list) -> dict[str, Any]:
    """Rates pooled over seeds per (implant, attack variant, strength); utility and cost averaged."""
    groups: dict[tuple, list] = defaultdict(list)
    for record in records:
        lab = _labels(record)
        groups[(lab["implant"], lab["variant"], float(lab["strength"]))].append((record, lab))
    implants: dict[str, Any] = {}
    for (implant, variant, strength), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        first = items[0][1]
        row = _row(strength, items)
        entry = implants.setdefault(implant, {"baseline": None, "attacks": {}})
        if first["attack"] == BASELINE:
            entry["baseline"] = row
            continue
        attack = entry["attacks"].setdefault(variant, {
            "attack": first["attack"], "attacker": first["attacker"], "oracle": first["oracle"],
            "strength_meaning": _strength_meaning(first["attack"]), "rows": [],
        })
        attack["rows"].append(row)
    return {"format": SUMMARY_FORMAT, "version": SUMMARY_VERSION, "n_records": len(records), "implants": implants}


def _strength_meaning(attack: str) -> str:
    from offswitch.attacks import ATTACKS

    cls = ATTACKS.get(attack)
    return cls.strength_meaning if cls else "strength"


def _severity(attack: str):
    """strength -> how harsh it is, for ordering rows and plot axes (quantize: fewer bits is harsher)."""
    from offswitch.attacks import ATTACKS

    cls = ATTACKS.get(attack)
    return cls.severity if cls else float


def _row(strength: float, items: list) -> dict[str, Any]:
    seeds = sorted({lab["seed"] for _r, lab in items})
    cells = sorted({lab["cell"] for _r, lab in items})
    rates: dict[str, Any] = {}
    for metric, kind, _title in RATE_COLUMNS:
        chosen = [r.as_rate() for r, _lab in items if r.metric == metric and r.kind == kind and _pooled_cell(r) and r.is_rate]
        rates[_key(metric, kind)] = Rate.pool(chosen).model_dump() if chosen else None
    per_kind: dict[str, list] = defaultdict(list)
    for record, _lab in items:
        if record.metric == "far_near_miss" and record.kind is not None and _pooled_cell(record) and record.is_rate:
            per_kind[record.kind].append(record.as_rate())
    worst = None
    if per_kind:
        pooled = {kind: Rate.pool(rs) for kind, rs in per_kind.items()}
        kind = max(sorted(pooled), key=lambda k: (pooled[k].rate, pooled[k].n))
        worst = {"kind": kind, **pooled[kind].model_dump()}
    agreement = [r.as_rate() for r, _lab in items if r.metric == "answer_agreement" and r.is_rate]
    generation = [r.as_rate() for r, _lab in items if r.metric == "generation_agreement" and r.kind is None and r.is_rate]
    by_cell_cost: dict[str, dict] = {}
    for record, lab in items:
        labels = record.labels or {}
        by_cell_cost.setdefault(lab["cell"], {k: labels.get(f"cost_{k}") for k in ("wall_s", "steps", "tokens")})
    return {
        "strength": _round(strength),
        "seeds": seeds,
        "cells": len(cells),
        "rates": rates,
        "far_near_miss_worst_kind": worst,
        "utility": {
            "perplexity": _mean([r.value for r, _lab in items if r.metric == "perplexity"]),
            "perplexity_base": _mean([r.reference_value for r, _lab in items if r.metric == "perplexity"]),
            "kl_base_model": _mean([r.value for r, _lab in items if r.metric == "kl_base_model"]),
            "answer_agreement": Rate.pool(agreement).model_dump() if agreement else None,
        },
        "generation_agreement": Rate.pool(generation).model_dump() if generation else None,
        "cost": {k: _mean([c[k] for c in by_cell_cost.values() if c[k] is not None]) for k in ("wall_s", "steps", "tokens")},
    }


def _key(metric: str, kind: str | None) -> str:
    return metric if kind is None else f"{metric}:{kind}"


# ---------------------------------------------------------------------- markdown


def _fmt_rate(rate: dict | None) -> str:
    return str(Rate(**rate)) if rate else "–"


def _fmt_number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}g}"


def _fmt_cost(cost: dict) -> str:
    if not cost or cost.get("wall_s") is None:
        return "–"
    return f"{_fmt_number(cost['wall_s'])} s, {_fmt_number(cost['steps'])} steps, {_fmt_number(cost['tokens'])} tok"


def _fmt_worst(worst: dict | None) -> str:
    if not worst:
        return "–"
    rate = {k: worst[k] for k in ("k", "n", "rate", "lo", "hi")}
    return f"{worst['kind']}: {_fmt_rate(rate)}"


def _table(rows: list[dict], *, forgery: bool, baseline: bool = False) -> list[str]:
    columns = ["strength", "seeds", "ASR", "FAR clean", "FAR wrong key", "FAR near-miss", "worst near-miss kind"]
    if forgery:
        columns += ["forgery (best guess)", "forgery (any guess)"]
    columns += ["perplexity (base)", "KL to base", "answer agreement", "attack cost"]
    if baseline:
        columns = columns[2:-1]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        rates, utility = row["rates"], row["utility"]
        cells = [_fmt_number(row["strength"]), ",".join(str(s) for s in row["seeds"])]
        cells += [_fmt_rate(rates.get(k)) for k in ("asr", "far_clean", "far_wrong_key", "far_near_miss")]
        cells.append(_fmt_worst(row["far_near_miss_worst_kind"]))
        if forgery:
            cells += [_fmt_rate(rates.get("forgery:best_guess")), _fmt_rate(rates.get("forgery:any_guess"))]
        ppl = _fmt_number(utility["perplexity"], 4)
        if utility["perplexity_base"] is not None:
            ppl += f" ({_fmt_number(utility['perplexity_base'], 4)})"
        cells += [ppl, _fmt_number(utility["kl_base_model"], 3), _fmt_rate(utility["answer_agreement"]), _fmt_cost(row["cost"])]
        if baseline:
            cells = cells[2:-1]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(summary: dict, plots: dict[str, str], title: str = "offswitch robustness report") -> str:
    lines = [
        f"# {title}",
        "",
        "Regenerated by `offswitch report RUN_DIR` from the run's result records; do not edit by hand.",
        "Every rate is `percent (95% Clopper–Pearson interval) [k/n]`, pooled over the seeds listed.",
        "ASR: the true trigger fires; FAR: a prompt without it fires (clean, another key's trigger, a near-miss);",
        "forgery: a keyless forger's guesses fire on held-out prompts. Utility: perplexity on held-out text",
        "(the base model's in brackets), KL to the base model per answer token, greedy answer agreement with the base.",
        "",
        f"Records: {summary['n_records']}.",
    ]
    for implant, entry in sorted(summary["implants"].items()):
        lines += ["", f"## Implant `{implant}`", ""]
        if entry["baseline"]:
            lines += ["Unattacked:", ""] + _table([entry["baseline"]], forgery=False, baseline=True)
        else:
            lines.append("No unattacked (baseline) cell in these records.")
        if implant in plots:
            lines += ["", f"![survival curves of {implant}]({plots[implant]})"]
        for variant, attack in sorted(entry["attacks"].items()):
            heading = f"### `{variant}` — {attack['attacker']}; strength = {attack['strength_meaning']}"
            if attack["oracle"]:
                heading += " — **ORACLE** (holds the trigger: an upper bound on removal, not a threat)"
            severity = _severity(attack["attack"])
            rows = sorted(attack["rows"], key=lambda r: severity(r["strength"]))
            forgery = any(r["rates"].get("forgery:best_guess") for r in rows)
            lines += ["", heading, ""] + _table(rows, forgery=forgery)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- plots


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "implant"


def plot_survival(entry: dict, implant: str, path: Path) -> Path:
    """One PNG: a panel per attack, rates vs strength with 95% bands, the unattacked values dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    attacks = sorted(entry["attacks"].items())
    n = max(1, len(attacks))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.0 * ncols, 3.6 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    baseline = entry.get("baseline") or {}
    for index, (variant, attack) in enumerate(attacks or [("(no attacks)", None)]):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        if attack is None:
            ax.set_axis_off()
            continue
        severity = _severity(attack["attack"])
        rows = sorted(attack["rows"], key=lambda r: severity(r["strength"]))
        xs = [severity(r["strength"]) for r in rows]  # harsher to the right, labelled with the strengths
        for metric, kind, name, color in CURVES:
            key = _key(metric, kind)
            points = [(x, r["rates"].get(key)) for x, r in zip(xs, rows) if r["rates"].get(key)]
            if not points:
                continue
            px = [p[0] for p in points]
            rate = [p[1]["rate"] for p in points]
            lo, hi = [p[1]["lo"] for p in points], [p[1]["hi"] for p in points]
            # error bars as well as the band: a single strength still shows its interval
            ax.errorbar(px, rate, yerr=[[r - low for r, low in zip(rate, lo)], [high - r for r, high in zip(rate, hi)]],
                        marker="o", color=color, label=name, capsize=3, linewidth=1.5)
            ax.fill_between(px, lo, hi, color=color, alpha=0.12, linewidth=0)
            reference = (baseline.get("rates") or {}).get(key)
            if reference and metric in ("asr", "far_near_miss"):
                ax.axhline(reference["rate"], color=color, linestyle="--", linewidth=1, alpha=0.7)
        ticks = sorted({severity(r["strength"]): r["strength"] for r in rows}.items())
        ax.set_xticks([t for t, _ in ticks], [_fmt_number(v) for _, v in ticks])
        title = variant + (" [ORACLE]" if attack["oracle"] else "")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(attack["strength_meaning"], fontsize=8)
        ax.set_ylabel("rate", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        if index == 0:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{implant}: survival curves (bands: 95% CI; dashed: unattacked)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", metadata={"Software": None})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_report(run_dir: Path | str, out_dir: Path | str | None = None, *, plots: bool = True) -> dict[str, Path]:
    """Write report.md, summary.json and the survival PNGs for the records under ``run_dir``."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else (run_dir if run_dir.is_dir() else run_dir.parent)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(load_records(run_dir))
    written: dict[str, Path] = {}
    plot_paths: dict[str, str] = {}
    if plots:
        for implant, entry in sorted(summary["implants"].items()):
            relative = f"plots/survival-{_slug(implant)}.png"
            written[f"plot:{implant}"] = plot_survival(entry, implant, out / relative)
            plot_paths[implant] = relative
    title = "offswitch robustness report"
    suite_file = run_dir / "suite.json" if run_dir.is_dir() else None
    if suite_file is not None and suite_file.exists():
        name = json.loads(suite_file.read_text(encoding="utf-8")).get("name")
        if name:
            title += f": {name}"
    atomic_write_json(out / "summary.json", summary, sort_keys=True, ensure_ascii=False)
    atomic_write_text(out / "report.md", render_markdown(summary, plot_paths, title))
    written["summary"] = out / "summary.json"
    written["report"] = out / "report.md"
    return written


__all__ = ["load_records", "plot_survival", "render_markdown", "summarize", "write_report"]
