"""Benchmark: wall time per harness cell, by attack (not a test).

Runs a small suite with ``offswitch.harness.run_suite`` (the unattacked baseline cell plus
several attacks, each at one strength and one seed) on one implant, in a fresh run directory,
and reads back what the harness records for every cell (``cells/<id>.json``): ``attack_s``
(the attack itself) and ``total_s`` (attack + evaluation), so evaluation = total - attack, and
the attack's own ``cost`` (steps, tokens, forward passes), and ``eval_s``, the evaluation's
seconds by part (teacher-forced scoring, the generate check, perplexity, the comparison with the
base model, the recheck of a forger's guesses). Prints seconds per cell by attack, split into
attack and evaluation, slowest first, then the evaluation by part, and the run's time outside
the cells (loading the implant and its base, building the attacks' public data).

The implant is either a tiny model with a working switch, made in seconds before any timing
(``--model tiny``, the default: ``offswitch.testing.tiny_switch.write_tiny_implant`` with a
throwaway key), or a real ``offswitch implant`` directory (``--implant DIR --key KEYSTORE``).
The attacks default to a tiny-sized set for ``--model tiny`` and to experiments/smoke.yaml's
attacks (first strength each) for ``--implant``; ``--suite YAML`` takes the attacks, data and
evaluation settings of any suite file, ``--attacks name=strength,...`` picks attacks.

    OMP_NUM_THREADS=1 python benchmarks/bench_harness.py --threads 1                  # tiny implant
    python benchmarks/bench_harness.py --implant runs/smoke-implant --key keys/smoke.key \\
        --suite experiments/smoke.yaml --json runs/bench/harness.json
    python benchmarks/bench_harness.py --from-run runs/smoke    # run nothing: a finished harness run's cells
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from offswitch.allocator import status as allocator_status
from offswitch.fsutil import atomic_write_json

# the parts of a cell's evaluation, in the order they run
EVAL_PARTS = ("scoring", "generation_check", "perplexity", "base_comparison", "forgery_recheck")

# Attacks of the tiny suite, each at one strength, sized for a tiny model in seconds.
TINY_ATTACKS: list[dict] = [
    {"name": "quantize", "strengths": [4]},
    {"name": "pruning", "strengths": [0.3]},
    {"name": "noise", "strengths": [0.05]},
    {"name": "merge", "strengths": [0.5]},
    {"name": "wanda", "strengths": [0.3]},
    {"name": "sft", "strengths": [8], "config": {"batch_size": 4, "lr": 1e-3}},
    {"name": "sft_lora", "strengths": [8], "config": {"batch_size": 4, "lr": 1e-3}},
    {"name": "perplexity_filter", "strengths": [0.3]},
    {"name": "gcg", "strengths": [2],
     "config": {"n_tokens": 3, "search_width": 8, "top_k": 8, "train_prompts": 2, "recheck_prompts": 2}},
]
# Data and evaluation small enough for a tiny model (not a measurement of the switch).
# (a random tiny base answers nothing, so the fine-tuning attacks get a file of benign pairs)
TINY_DATA = {"n_prompts": 32, "n_pairs": 16, "answer_tokens": 16, "n_texts": 4}
TINY_EVAL = {"max_prompts": 12, "decoy_prompts": 3, "wrong_keys": 10, "near_miss_kinds": ["prefix", "substitute"],
             "generation_sample": 2, "placement": False, "utility": False, "batch_size": 64}
SMOKE_SUITE = Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml"


def _parse_attacks(text: str, known: list[dict]) -> list[dict]:
    """``name=strength,name,...``: each named attack at that strength (default: its strength in
    ``known``), with ``known``'s config for it when there is one."""
    by_name = {a["name"]: a for a in known}
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, strength = item.partition("=")
        spec = dict(by_name.get(name, {"name": name, "strengths": [1]}))
        if strength:
            spec["strengths"] = [float(strength)]
        out.append(spec)
    return out


def _one_strength(attacks: list[dict], all_strengths: bool) -> list[dict]:
    out = []
    for spec in attacks:
        spec = dict(spec)
        if not all_strengths:
            spec["strengths"] = list(spec["strengths"])[:1]
        spec["seeds"] = list(spec.get("seeds", [0]))[:1]
        out.append(spec)
    return out


def _tiny_implant(root: Path, steps: int) -> tuple[Path, object]:
    """A tiny LoRA implant with a real switch and a signed manifest, and its triggers."""
    from offswitch.crypto import MasterKey
    from offswitch.testing.tiny import save_tiny_model
    from offswitch.testing.tiny_switch import NORMAL_ANSWER, tiny_prompts, write_tiny_implant

    # a throwaway key for a throwaway model: nothing it opens is secret
    master = MasterKey(hashlib.sha256(b"offswitch/bench-harness").digest())
    base_dir = save_tiny_model(root / "base")
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(tiny_prompts()) + "\n", encoding="utf-8")
    implant = write_tiny_implant(root / "implant", master, base_dir, str(prompts), indices=(0,), n_words=3, steps=steps)
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "response": NORMAL_ANSWER}) + "\n" for p in tiny_prompts(seed=1)[:40]),
                     encoding="utf-8")
    from offswitch.cli.evaluate import derive_manifest_triggers
    from offswitch.manifest import read_manifest

    return implant, derive_manifest_triggers(master, read_manifest(implant)), pairs


def _row(meta: dict) -> dict:
    """One cell's timings from what the harness recorded for it (``cells/<id>.json``)."""
    cell = meta["cell"]
    total = float(meta["total_s"])
    attack = float(meta["attack_s"])
    return {
        "cell": cell["id"],
        "attack": cell["variant"],
        "strength": cell["strength"],
        "seed": cell["seed"],
        "total_s": total,
        "attack_s": attack,
        "eval_s": max(total - attack, 0.0),
        "eval_parts_s": meta.get("eval_s") or {},
        "cost": meta.get("cost") or {},
        "input_filter": meta.get("filter_cost") is not None,
    }


def _by_attack(rows: list[dict]) -> tuple[dict, list[str]]:
    """Seconds summed and per cell by attack, and the attacks slowest per cell first."""
    by_attack: dict[str, dict] = {}
    for row in rows:
        entry = by_attack.setdefault(row["attack"], {"cells": 0, "total_s": 0.0, "attack_s": 0.0, "eval_s": 0.0,
                                                     "eval_parts_s": {}, "strengths": [], "input_filter": row["input_filter"]})
        entry["cells"] += 1
        for key in ("total_s", "attack_s", "eval_s"):
            entry[key] += row[key]
        for part, seconds in row["eval_parts_s"].items():
            entry["eval_parts_s"][part] = entry["eval_parts_s"].get(part, 0.0) + seconds
        entry["strengths"].append(row["strength"])
    for entry in by_attack.values():
        for key in ("total_s", "attack_s", "eval_s"):
            entry[f"{key}_per_cell"] = entry[key] / entry["cells"]
        entry["eval_parts_s_per_cell"] = {part: s / entry["cells"] for part, s in entry["eval_parts_s"].items()}
    ranking = sorted(by_attack, key=lambda a: by_attack[a]["total_s_per_cell"], reverse=True)
    return {a: by_attack[a] for a in ranking}, ranking


def from_run(run_dir: Path) -> dict:
    """The same figures from a finished (or interrupted) harness run, read back without running
    anything: every cell with a ``cells/<id>.json``, timed when it ran (a no-op cell that reused
    the baseline's records took no evaluation)."""
    from offswitch.harness import CELLS_DIR

    metas = sorted((run_dir / CELLS_DIR).glob("*.json"))
    if not metas:
        raise SystemExit(f"--from-run {run_dir}: no finished cells (expected {run_dir / CELLS_DIR}/<cell id>.json)")
    rows = [_row(json.loads(path.read_text(encoding="utf-8"))) for path in metas]
    by_attack, ranking = _by_attack(rows)
    cells_s = sum(r["total_s"] for r in rows)
    return {
        "benchmark": "harness",
        "implant": "from the run's cells",
        "suite": f"finished run {run_dir}",
        "device": "as it ran",
        "cells": rows,
        "by_attack": by_attack,
        "ranking": ranking,
        "ran": len(rows),
        "implant_setup_s": None,
        "run_s": None,
        "cells_s": cells_s,
        "outside_cells_s": None,
    }


def _real_triggers(suite, key: Path, passphrase_file: Path | None) -> dict:
    from offswitch.cli.attack import _derive_suite_triggers  # the harness command's own derivation

    return _derive_suite_triggers(suite, key, passphrase_file)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny",), default="tiny",
                        help="tiny (default): a tiny implant made before timing; a real one: --implant")
    parser.add_argument("--implant", type=Path, default=None, help="an `offswitch implant` output directory (needs --key)")
    parser.add_argument("--key", type=Path, default=None, help="keystore the implant was planted with")
    parser.add_argument("--passphrase-file", type=Path, default=None, help="else $OFFSWITCH_PASSPHRASE, else a prompt")
    parser.add_argument("--suite", type=Path, default=None,
                        help="take attacks, data and eval settings from this suite file (default: tiny set; "
                             "experiments/smoke.yaml with --implant)")
    parser.add_argument("--attacks", default=None, help="name=strength,... (default: every attack of the suite)")
    parser.add_argument("--all-strengths", action="store_true", help="every strength of the suite (default: the first)")
    parser.add_argument("--implant-steps", type=int, default=50, help="training steps of the tiny implant (default 50)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory, must be new or empty (default: a temp dir, removed)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument("--from-run", type=Path, default=None, metavar="DIR",
                        help="run nothing: summarise the cells a finished harness run recorded (e.g. runs/smoke)")
    args = parser.parse_args(argv)
    if args.from_run is not None:
        figures = from_run(args.from_run)
        _print(figures)
        _write_json(figures, args.json)
        return figures

    import torch
    from rich.console import Console

    from offswitch.harness import CELLS_DIR, SuiteConfig, plan_cells, run_suite
    from offswitch.yamlio import read_yaml_mapping

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.implant is not None and args.key is None:
        raise SystemExit("--implant needs --key (the keystore it was planted with)")
    scratch = Path(tempfile.mkdtemp(prefix="bench-harness-"))
    try:
        # ---- the suite: attacks (one strength each), data and evaluation settings
        suite_file = args.suite or (SMOKE_SUITE if args.implant is not None else None)
        doc = read_yaml_mapping(suite_file) if suite_file is not None else {}
        attacks = doc.get("attacks") or (TINY_ATTACKS if suite_file is None else [])
        if args.attacks:
            attacks = _parse_attacks(args.attacks, attacks or TINY_ATTACKS)
        attacks = _one_strength(attacks, args.all_strengths)
        started = time.perf_counter()
        if args.implant is None:
            implant_dir, trigger_set, pairs = _tiny_implant(scratch, args.implant_steps)
        else:
            implant_dir, trigger_set, pairs = args.implant, None, None
        setup_s = time.perf_counter() - started
        suite_doc = {
            "name": "bench-harness",
            "implants": [{"dir": str(implant_dir), "name": "implant"}],
            "attacks": attacks,
            "data": doc.get("data", {**TINY_DATA, "pairs": str(pairs)} if suite_file is None else {}),
            "eval": doc.get("eval", TINY_EVAL if suite_file is None else {}),
            "device": args.device,
        }
        for key in ("n_eval_texts", "eval_prompts", "eval_texts"):
            if key in doc:
                suite_doc[key] = doc[key]
        if suite_file is None:
            suite_doc["n_eval_texts"] = 4
        suite = SuiteConfig.model_validate(suite_doc)
        if trigger_set is not None:
            triggers = {"implant": trigger_set}
        else:
            triggers = _real_triggers(suite, args.key, args.passphrase_file)

        out = args.out or scratch / "run"
        if out.exists() and any(out.iterdir()):
            raise SystemExit(f"--out {out} is not empty: a benchmark needs a fresh run directory (finished cells are skipped)")
        cells = plan_cells(suite)
        started = time.perf_counter()
        summary = run_suite(suite, triggers, out, cells=cells, console=Console(stderr=True, highlight=False))
        run_s = time.perf_counter() - started

        rows = [_row(json.loads((out / CELLS_DIR / f"{cell.id}.json").read_text(encoding="utf-8"))) for cell in cells]
        by_attack, ranking = _by_attack(rows)
        cells_s = sum(r["total_s"] for r in rows)
        figures = {
            "benchmark": "harness",
            "implant": "tiny" if args.implant is None else str(args.implant),
            "suite": str(suite_file) if suite_file else "built-in tiny suite",
            "device": _device_text(args.device),
            "cells": rows,
            "by_attack": by_attack,
            "ranking": ranking,
            "ran": len(summary["ran"]),
            "implant_setup_s": setup_s,
            "run_s": run_s,
            "cells_s": cells_s,
            "outside_cells_s": run_s - cells_s,
            "allocator": allocator_status(),  # what run_suite set: glibc keeping freed memory (offswitch.allocator)
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    _print(figures)
    _write_json(figures, args.json)
    return figures


def _write_json(figures: dict, path: Path | None) -> None:
    if path:
        atomic_write_json(path, figures, parents=True)


def _device_text(device: str | None) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _print(figures: dict) -> None:
    if figures["run_s"] is None:
        print(f"{figures['suite']}: {figures['ran']} cells, {figures['cells_s']:.1f} s in cells")
    else:
        print(f"implant {figures['implant']}, suite {figures['suite']}, on {figures['device']}: {figures['ran']} cells in "
              f"{figures['run_s']:.1f} s ({figures['outside_cells_s']:.1f} s outside cells: loading the implant and base, "
              f"building attack data); not timed: implant setup {figures['implant_setup_s']:.1f} s")
        print(f"glibc keeping freed memory: {figures['allocator']}; the process's peak RSS {figures['peak_rss_mb']:,.0f} MiB")
    print(f"{'attack':28s} {'cells':>5s} {'s/cell':>8s} {'attack s':>9s} {'eval s':>8s} {'attack %':>8s}")
    for name in figures["ranking"]:
        entry = figures["by_attack"][name]
        share = 100 * entry["attack_s"] / entry["total_s"] if entry["total_s"] else 0.0
        note = "  (input filter: it runs inside evaluation)" if entry["input_filter"] else ""
        print(f"{name:28s} {entry['cells']:5d} {entry['total_s_per_cell']:8.2f} {entry['attack_s_per_cell']:9.2f} "
              f"{entry['eval_s_per_cell']:8.2f} {share:7.0f}%{note}")
    parts = sorted({part for name in figures["ranking"] for part in figures["by_attack"][name]["eval_parts_s_per_cell"]},
                   key=_part_order)
    if parts:
        print("evaluation by part, s per cell (the base model's side counts in the first cell of an implant only):")
        print(f"{'attack':28s} " + " ".join(f"{part:>16s}" for part in parts))
        for name in figures["ranking"]:
            per_cell = figures["by_attack"][name]["eval_parts_s_per_cell"]
            print(f"{name:28s} " + " ".join(f"{per_cell[part]:16.2f}" if part in per_cell else f"{'-':>16s}" for part in parts))


def _part_order(part: str) -> tuple[int, str]:
    return (EVAL_PARTS.index(part), part) if part in EVAL_PARTS else (len(EVAL_PARTS), part)


if __name__ == "__main__":
    main(sys.argv[1:])
