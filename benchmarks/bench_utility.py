"""Benchmark: a harness cell's utility metrics, the base model's side computed every cell or once (not a test).

Every harness cell measures the attacked model's utility against the implant's base model:
perplexity of both on the same texts, and KL and greedy-answer agreement over the base's own
answers to the same prompts. The base's perplexity and answers are the same in every cell of an
implant, so the harness keeps them (``offswitch.evaluate.metrics.BaseReference``) instead of
computing them again per cell.

Measures the utility metrics of one model against its base ``--repeats`` × 4 times, in the order
every-cell, kept, kept, every-cell: "every cell" recomputes the base's side each time, "kept"
reads it from a reference filled once before timing (what every cell after the first does).
Settings from a suite file's ``eval`` section and text source (default experiments/smoke.yaml:
16 perplexity texts, 16 utility prompts, 32 answer tokens). Prints both times, their ratio, and
whether the records are the same.

    python benchmarks/bench_utility.py --model runs/smoke-implant/merged --base smollm2-135m --threads 2 \\
        --json runs/bench/utility.json
    python benchmarks/bench_utility.py --model tiny --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from offswitch.fsutil import atomic_write_json

SMOKE_SUITE = Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml"
ORDER = ("every_cell", "kept", "kept", "every_cell")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="the model measured (a model directory, a spec, or tiny)")
    parser.add_argument("--base", default=None, help="its base model (default: smollm2-135m; with --model tiny a tiny base)")
    parser.add_argument("--suite", type=Path, default=SMOKE_SUITE, help="eval settings and texts from this suite file")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    import torch

    from offswitch.behaviors import make_behavior
    from offswitch.data.sources import load_prompts, plain_texts
    from offswitch.evaluate.metrics import BaseReference
    from offswitch.evaluate.run import _utility_records
    from offswitch.harness import SuiteConfig
    from offswitch.yamlio import read_yaml_mapping

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import load_bench_model

    if args.threads:
        torch.set_num_threads(args.threads)
    suite = SuiteConfig.model_validate(read_yaml_mapping(args.suite))
    model, tokenizer = load_bench_model(args.model, device=args.device)
    if args.model == "tiny":
        from offswitch.testing.tiny import tiny_model

        base = tiny_model("llama", tokenizer=tokenizer, seed=1)
    else:
        base = load_bench_model(args.base or "smollm2-135m", device=args.device)
    model.eval()
    base[0].eval()
    texts = plain_texts(suite.eval_texts or suite.data.texts, n=suite.n_eval_texts, seed=suite.data.seed)
    prompts = load_prompts("builtin", seed=0).heldout
    behavior = make_behavior("shutdown")

    common = {"model": args.model, "key_id": "bench", "behavior": behavior.kind}  # what the records carry besides the figures

    def utility(cache):
        notes: list[str] = []
        return _utility_records(model, tokenizer, behavior, prompts, base, texts, suite.eval, common, notes, lambda n: None, cache)

    kept = BaseReference()
    utility(kept)  # the first cell of an implant fills it (untimed)
    times: dict[str, list[float]] = {"every_cell": [], "kept": []}
    records: dict[str, list] = {}
    for _ in range(args.repeats):
        for name in ORDER:
            started = time.perf_counter()
            records[name] = utility(kept if name == "kept" else None)
            times[name].append(time.perf_counter() - started)
            print(f"utility metrics, base {'kept' if name == 'kept' else 'every cell':10s} {times[name][-1]:6.2f} s", flush=True)
    mean = {name: statistics.mean(ts) for name, ts in times.items()}
    figures = {
        "benchmark": "utility", "model": args.model, "base": args.base or ("tiny" if args.model == "tiny" else "smollm2-135m"),
        "suite": str(args.suite), "texts": len(texts), "utility_prompts": suite.eval.utility_prompts,
        "answer_tokens": suite.eval.answer_tokens, "threads": torch.get_num_threads(), "device": args.device,
        "seconds": times, "mean_s": mean, "time_ratio": mean["kept"] / mean["every_cell"],
        "saved_s_per_cell": mean["every_cell"] - mean["kept"], "same_records": records["kept"] == records["every_cell"],
    }
    print(f"\nutility metrics per cell: base kept / base every cell {figures['time_ratio']:.3f} "
          f"({figures['saved_s_per_cell']:.1f} s saved a cell); the same records: {figures['same_records']}")
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


if __name__ == "__main__":
    main()
