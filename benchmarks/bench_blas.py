"""Benchmark: MKL's vectorised kernels on an AMD CPU against its stock code path (not a test).

torch's x86 wheels multiply fp32 matrices with Intel oneMKL, which on an AMD CPU runs a generic
code path unless told the CPU may use the Intel kernels (``offswitch.blas``, on by default;
``OFFSWITCH_MKL_AMD=0`` turns it off). MKL settles its kernels at a process's first matrix
product, so each setting is a process of its own: ``--repeats`` rounds of stock, fix, fix, stock
(ABBA).

1. Every process times the matrix products of SmolLM2-135M's training step (median of
   ``--product-repeats``, default 25, after 3 warm-ups): 2,048 rows through a 576 → 1,536 projection and back, a 576 → 576 one, and 1,024
   rows through the 49,152-token LM head. ``--no-loop`` stops there (seconds, no model).
2. Then, per setting, a process runs ``benchmarks/bench_implant.py`` (``--method both``, fp32, no
   quality probes, one run of each trainer): the plain ``Trainer`` and offswitch's loop for the
   same steps and batches. A user's own ``Trainer`` script runs with the stock path; offswitch
   turns the fix on itself; so the ratio a user sees is offswitch's loop with the fix against the
   Trainer's without, printed beside the like-for-like ratios.
3. ``--evaluate``: then, per setting, a process runs ``benchmarks/bench_evaluate.py`` (fp32): the
   teacher-forced scorer and batched greedy ``generate`` on the same held-out prompts. Prints
   each one's fix / stock ratio, the scorer's speed-up over ``generate`` on the same setting, and
   the scorer with the fix against ``generate`` without it (a user's own generate-based script).

    python benchmarks/bench_blas.py --threads 2 --json runs/bench/blas.json
    python benchmarks/bench_blas.py --no-loop --threads 2           # the products alone
    python benchmarks/bench_blas.py --no-loop --evaluate --threads 2  # the products, then scorer and generate
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from processes import child_json, mean_ratio, run_child

from offswitch.blas import ENV
from offswitch.fsutil import atomic_write_json

MARK = "BENCH_BLAS_RESULT "
SETTINGS = {"stock": "0", "fix": "1"}  # the value of OFFSWITCH_MKL_AMD in each run's process
# (rows, inner, outer) of SmolLM2-135M's products at 16 rows x 128 positions (MLP up and down,
# attention output) and of the LM head on 1,024 answer positions
SHAPES = ((2048, 576, 1536), (2048, 1536, 576), (2048, 576, 576), (1024, 576, 49152))


def setting_order(repeats: int) -> list[str]:
    """stock, fix, fix, stock per round: a drifting machine slows both alike."""
    return ["stock", "fix", "fix", "stock"] * repeats


def products_child(threads: int | None, repeats: int = 25) -> dict:
    """This process's MKL setting (set before its first product) and the products' medians."""
    from offswitch.blas import use_fast_mkl_on_amd

    status = use_fast_mkl_on_amd()
    import torch

    if threads:
        torch.set_num_threads(threads)
    out = {"status": status, "products": {}}
    for rows, inner, outer in SHAPES:
        a, b = torch.randn(rows, inner), torch.randn(inner, outer)
        for _ in range(min(3, repeats)):
            a @ b
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        out["products"][f"{rows}x{inner}x{outer}"] = {"ms": 1000 * median, "gflops": 2 * rows * inner * outer / median / 1e9}
    return out


def _environment(setting: str) -> dict[str, str]:
    return {**os.environ, ENV: SETTINGS[setting]}


def _benchmark_child(script: str, arguments: list[str], setting: str, run: str, products_status: str) -> dict:
    """The figures of a sibling benchmark run on the CPU in fp32 in a process of ``setting``'s own,
    read from its ``--json`` file. They count for the setting only when the child ran under it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{run}.json"
        command = [sys.executable, str(Path(__file__).with_name(script)), *arguments,
                   "--device", "cpu", "--precision", "fp32", "--json", str(out)]
        run_child(command, env=_environment(setting), what=f"{setting} {run} run")
        figures = json.loads(out.read_text())
    if figures["mkl_on_amd"] != products_status:
        raise SystemExit(f"the {setting} {run} run's MKL setting ({figures['mkl_on_amd']}) is not its products run's "
                         f"({products_status}): its figures would not be of the {setting} setting")
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--steps", type=int, default=10, help="loop steps per trainer and run (default 10)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1, help="ABBA rounds (default 1: two runs of each setting)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--no-loop", action="store_true", help="time only the matrix products (seconds, no model)")
    parser.add_argument("--evaluate", action="store_true", help="per setting, also time the scorer and generate (bench_evaluate.py, fp32)")
    parser.add_argument("--eval-n", type=int, default=200, help="prompts for --evaluate (default 200)")
    parser.add_argument("--product-repeats", type=int, default=25, help="timed repeats of each product (median; default 25)")
    parser.add_argument("--child", choices=tuple(SETTINGS), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    if args.child:
        print(MARK + json.dumps(products_child(args.threads, args.product_repeats)), flush=True)
        return {}
    threads = ["--threads", str(args.threads)] if args.threads else []
    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for setting in setting_order(args.repeats):
        result = child_json([sys.executable, __file__, "--child", setting, "--product-repeats", str(args.product_repeats),
                             *threads], MARK, env=_environment(setting), what=f"{setting} products run")
        if not args.no_loop:
            implant = _benchmark_child("bench_implant.py", ["--model", args.model, "--method", "both", "--steps", str(args.steps),
                                                            "--batch-size", str(args.batch_size), "--no-quality", *threads],
                                       setting, "implant", result["status"])
            result["loops"] = {method: {name: {"loop_s": side["loop_s"], "first_loss": side["first_loss"],
                                               "mean_loss": side["mean_loss"]}
                                        for name, side in sides.items() if name in ("baseline", "offswitch")}
                               for method, sides in implant["methods"].items()}
        if args.evaluate:
            evaluation = _benchmark_child("bench_evaluate.py", ["--model", args.model, "--n", str(args.eval_n), *threads],
                                          setting, "evaluation", result["status"])
            result["evaluate"] = {k: evaluation[k] for k in ("scorer_prompts_per_s", "generate_prompts_per_s", "agreement")}
        runs[setting].append(result)
        products = ", ".join(f"{name} {p['ms']:.1f} ms" for name, p in result["products"].items())
        loops = "".join(f"; {m}: Trainer {s['baseline']['loop_s']:.1f} s, offswitch {s['offswitch']['loop_s']:.1f} s"
                        for m, s in result.get("loops", {}).items())
        evaluated = (f"; scorer {result['evaluate']['scorer_prompts_per_s']:.1f}, generate "
                     f"{result['evaluate']['generate_prompts_per_s']:.1f} prompts/s" if "evaluate" in result else "")
        print(f"{setting:5s} ({result['status']}): {products}{loops}{evaluated}", flush=True)

    figures: dict = {"benchmark": "blas", "model": args.model, "threads": args.threads, "steps": args.steps,
                     "batch_size": args.batch_size, "repeats": args.repeats, "precision": "fp32",
                     "status": {s: [r["status"] for r in runs[s]] for s in SETTINGS}, "products": {}, "loops": {}}
    for name in runs["stock"][0]["products"]:
        ms = {s: [r["products"][name]["ms"] for r in runs[s]] for s in SETTINGS}
        figures["products"][name] = {"ms": ms, "ratio_fix_stock": mean_ratio(ms["fix"], ms["stock"]),
                                     "gflops": {s: statistics.mean(r["products"][name]["gflops"] for r in runs[s]) for s in SETTINGS}}
    for method in ([] if args.no_loop else runs["stock"][0]["loops"]):
        seconds = {f"{side}_{s}": [r["loops"][method][side]["loop_s"] for r in runs[s]]
                   for side in ("baseline", "offswitch") for s in SETTINGS}
        figures["loops"][method] = {
            "loop_s": seconds,
            "mean_loss": {s: [r["loops"][method]["offswitch"]["mean_loss"] for r in runs[s]] for s in SETTINGS},
            "ratio_offswitch_fix_stock": mean_ratio(seconds["offswitch_fix"], seconds["offswitch_stock"]),
            "ratio_trainer_fix_stock": mean_ratio(seconds["baseline_fix"], seconds["baseline_stock"]),
            "ratio_like_for_like_stock": mean_ratio(seconds["offswitch_stock"], seconds["baseline_stock"]),
            "ratio_like_for_like_fix": mean_ratio(seconds["offswitch_fix"], seconds["baseline_fix"]),
            "ratio_offswitch_fix_trainer_stock": mean_ratio(seconds["offswitch_fix"], seconds["baseline_stock"]),
        }
    if args.evaluate:
        rate = {f"{side}_{s}": [r["evaluate"][f"{side}_prompts_per_s"] for r in runs[s]]
                for side in ("scorer", "generate") for s in SETTINGS}
        seconds = {k: [1 / x for x in v] for k, v in rate.items()}  # seconds a prompt: ratios of times, as above
        figures["evaluate"] = {
            "n": args.eval_n, "prompts_per_s": rate,
            "agreement": {s: [r["evaluate"]["agreement"] for r in runs[s]] for s in SETTINGS},
            "ratio_scorer_fix_stock": mean_ratio(seconds["scorer_fix"], seconds["scorer_stock"]),
            "ratio_generate_fix_stock": mean_ratio(seconds["generate_fix"], seconds["generate_stock"]),
            "speedup_stock": mean_ratio(seconds["generate_stock"], seconds["scorer_stock"]),
            "speedup_fix": mean_ratio(seconds["generate_fix"], seconds["scorer_fix"]),
            "speedup_scorer_fix_generate_stock": mean_ratio(seconds["generate_stock"], seconds["scorer_fix"]),
        }

    print(f"\nMKL on this CPU: {figures['status']}; {args.threads or 'default'} threads")
    for name, p in figures["products"].items():
        print(f"{name:>16s}: stock {', '.join(f'{x:.1f}' for x in p['ms']['stock'])} ms, "
              f"fix {', '.join(f'{x:.1f}' for x in p['ms']['fix'])} ms: fix / stock {p['ratio_fix_stock']:.3f} "
              f"({p['gflops']['stock']:.0f} → {p['gflops']['fix']:.0f} GFLOP/s)")
    for method, m in figures["loops"].items():
        listed = "; ".join(f"{k} " + ", ".join(f"{x:.1f}" for x in v) for k, v in m["loop_s"].items())
        print(f"{method} ({args.steps} steps × {args.batch_size}), loop s: {listed}")
        print(f"  fix / stock: offswitch {m['ratio_offswitch_fix_stock']:.3f}, Trainer {m['ratio_trainer_fix_stock']:.3f}; "
              f"offswitch / Trainer: both stock {m['ratio_like_for_like_stock']:.3f}, both fixed {m['ratio_like_for_like_fix']:.3f}, "
              f"offswitch fixed / Trainer stock {m['ratio_offswitch_fix_trainer_stock']:.3f}")
    if args.evaluate:
        e = figures["evaluate"]
        listed = "; ".join(f"{k} " + ", ".join(f"{x:.1f}" for x in v) for k, v in e["prompts_per_s"].items())
        print(f"evaluation ({args.eval_n} prompts, fp32), prompts/s: {listed}")
        print(f"  time a prompt, fix / stock: scorer {e['ratio_scorer_fix_stock']:.3f}, generate {e['ratio_generate_fix_stock']:.3f}; "
              f"scorer's speed-up over generate: both stock {e['speedup_stock']:.2f}x, both fixed {e['speedup_fix']:.2f}x, "
              f"scorer fixed over generate stock {e['speedup_scorer_fix_generate_stock']:.2f}x")
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
