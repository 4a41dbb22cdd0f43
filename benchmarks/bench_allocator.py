"""Benchmark: training on a CPU with glibc keeping freed memory for reuse, against its default
(not a test).

``offswitch.allocator.keep_freed_memory`` (called by the ``offswitch`` command at start) makes
glibc's malloc serve large blocks from its heap and keep them when freed, instead of mapping
fresh pages for each and unmapping them on free. The setting is per process, so each run is a
process of its own: ``--repeats`` × ABBA, "default" (``OFFSWITCH_KEEP_FREED_MEMORY=0``) and
"kept". Each process loads the model, builds the default implant data (untimed), trains two
untimed warm-up steps, then times offswitch's implant loop for ``--steps`` steps for each of
``--methods`` (LoRA, the default, and full fine-tuning), and reports the training seconds, the
losses (the allocator changes no number: they must be the same bit for bit) and its peak
resident memory. Prints every run, the ratio kept / default per method, and the peak memory.

    python benchmarks/bench_allocator.py --threads 2 --json runs/bench/allocator.json
    python benchmarks/bench_allocator.py --model tiny --steps 4 --batch-size 4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from offswitch.fsutil import atomic_write_json

VARIANTS = ("default", "kept")
ABBA = ("default", "kept", "kept", "default")
MARK = "BENCH_ALLOCATOR_RESULT "


def child(args) -> dict:
    """One process: the setting as the command makes it, then the timed loops."""
    import copy
    import resource

    from offswitch.allocator import keep_freed_memory

    kept = keep_freed_memory()
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import default_implant_data, load_bench_model

    from offswitch.implant import train

    if args.threads:
        torch.set_num_threads(args.threads)
    base, tokenizer = load_bench_model(args.model, device="cpu")
    defaults, data = default_implant_data(base, tokenizer, args.steps * args.batch_size)
    out: dict = {"kept": kept, "methods": {}}
    for method in args.methods:
        tconf = defaults.train.model_copy(update={"method": method, "batch_size": args.batch_size, "eval_every": 0,
                                                  "device": "cpu", "precision": args.precision})
        train(copy.deepcopy(base), tokenizer, data, tconf.model_copy(update={"steps": 2}))  # warm-up, untimed
        result = train(copy.deepcopy(base), tokenizer, data, tconf.model_copy(update={"steps": args.steps}))
        out["methods"][method] = {"train_s": result.seconds["train"], "losses": [h["loss"] for h in result.history]}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def ratio(seconds: dict[str, list[float]]) -> float:
    """Mean seconds kept / mean seconds default."""
    before = statistics.mean(seconds["default"])
    return statistics.mean(seconds["kept"]) / before if before > 0 else math.nan


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--steps", type=int, default=10, help="timed loop steps per method and run (default 10)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--methods", nargs="+", choices=("lora", "full"), default=["lora", "full"])
    parser.add_argument("--repeats", type=int, default=1, help="ABBA rounds (default 1: two runs of each)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="see offswitch.precision")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--child", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    if args.child:
        print(MARK + json.dumps(child(args)), flush=True)
        return {}
    forwarded = ["--model", args.model, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                 "--precision", args.precision, "--methods", *args.methods]
    if args.threads:
        forwarded += ["--threads", str(args.threads)]
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for variant in ABBA * args.repeats:
        env = {**os.environ, "OFFSWITCH_KEEP_FREED_MEMORY": "1" if variant == "kept" else "0"}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--child", variant, *forwarded], env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the {variant} run failed:\n{done.stderr[-2000:]}")
        result = json.loads(next(line[len(MARK):] for line in done.stdout.splitlines() if line.startswith(MARK)))
        result["process_s"] = time.perf_counter() - started
        runs[variant].append(result)
        timed = ", ".join(f"{m} {r['train_s']:.2f} s" for m, r in result["methods"].items())
        print(f"{variant:7s} (setting on: {result['kept']}): {timed}; peak RSS {result['peak_rss_mb']:.0f} MiB", flush=True)
    figures: dict = {"benchmark": "allocator", "model": args.model, "threads": args.threads, "steps": args.steps,
                     "batch_size": args.batch_size, "repeats": args.repeats, "precision": args.precision,
                     "engaged": {v: [r["kept"] for r in runs[v]] for v in VARIANTS}, "methods": {}}
    for method in args.methods:
        seconds = {v: [r["methods"][method]["train_s"] for r in runs[v]] for v in VARIANTS}
        losses = [r["methods"][method]["losses"] for v in VARIANTS for r in runs[v]]
        figures["methods"][method] = {"train_s": seconds, "ratio": ratio(seconds),
                                      "same_losses": all(loss == losses[0] for loss in losses)}
    figures["peak_rss_mb"] = {v: [r["peak_rss_mb"] for r in runs[v]] for v in VARIANTS}
    print(f"\nmodel {args.model}, CPU, {args.threads or 'default'} threads, {args.steps} steps × {args.batch_size}")
    for method, m in figures["methods"].items():
        listed = "; ".join(f"{v} " + ", ".join(f"{s:.2f}" for s in m["train_s"][v]) for v in VARIANTS)
        print(f"{method}: training s {listed}: kept / default {m['ratio']:.3f}; the same losses in every run: {m['same_losses']}")
    print("peak RSS MiB: " + "; ".join(f"{v} " + ", ".join(f"{x:.0f}" for x in figures["peak_rss_mb"][v]) for v in VARIANTS))
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
