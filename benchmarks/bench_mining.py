"""Benchmark: where mined hard negatives go in a batch, by length or in rank order (not a test).

offswitch's implant batches are length-grouped (little padding), and every ``mine_every`` steps
hard-negative mining puts up to ``mine_per_step`` mined negatives into each of the coming
batches. In rank order (``train.mine_fit_length: false``) they land in batches of any length and
pad each to its longest row; by length (``true``) the shortest go to the batch of shortest
rows. The same examples are trained on in the same window of steps either way.

Runs offswitch's implant loop at the default settings for ``--steps`` steps on the same data
(built once, untimed) in the order rank, length, length, rank, each from a fresh copy of the
base model, and prints per run the loop's seconds (``TrainResult.seconds["train"]``: mining
and held-out checks excluded), the token positions its forward passes computed
(``TrainResult.positions``: padding counted, the shared prefix once a batch) and the mean loss;
then the ratios by-length / rank-order of both.

    python benchmarks/bench_mining.py --steps 30 --threads 2 --json runs/bench/mining.json
    python benchmarks/bench_mining.py --model tiny --steps 4 --batch-size 8
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

ORDER = (False, True, True, False)  # mine_fit_length of each run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--steps", type=int, default=30, help="steps per run (mining first happens after step 10)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    import torch

    from offswitch.implant import train

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import default_implant_data, load_bench_model

    if args.threads:
        torch.set_num_threads(args.threads)
    base, tokenizer = load_bench_model(args.model, device=args.device)
    defaults, data = default_implant_data(base, tokenizer, args.steps * args.batch_size)
    runs: dict[str, list[dict]] = {"rank": [], "length": []}
    for fit in ORDER:
        tconf = defaults.train.model_copy(update={"steps": args.steps, "batch_size": args.batch_size, "eval_every": 0,
                                                  "precision": args.precision, "device": args.device, "mine_fit_length": fit})
        result = train(copy.deepcopy(base), tokenizer, data, tconf)
        run = {"train_s": result.seconds["train"], "positions": result.positions, "tokens": result.tokens_seen,
               "mean_loss": statistics.mean(h["loss"] for h in result.history), "precision": result.precision,
               "mined": sum(h["mined"]["hard"] for h in result.history if "mined" in h)}
        runs["length" if fit else "rank"].append(run)
        print(f"{'by length' if fit else 'rank order':10s} loop {run['train_s']:7.1f} s  positions {run['positions']:7d}  "
              f"tokens {run['tokens']:7d}  mean loss {run['mean_loss']:.4f}  mined {run['mined']}", flush=True)
    mean = {name: {key: statistics.mean(r[key] for r in rs) for key in ("train_s", "positions", "tokens")} for name, rs in runs.items()}
    figures = {
        "benchmark": "mining", "model": args.model, "steps": args.steps, "batch_size": args.batch_size,
        "precision": runs["rank"][0]["precision"], "threads": torch.get_num_threads(), "runs": runs, "mean": mean,
        "time_ratio": mean["length"]["train_s"] / mean["rank"]["train_s"],
        "positions_ratio": mean["length"]["positions"] / mean["rank"]["positions"],
    }
    print(f"\n{args.model}, {args.steps} steps x {args.batch_size}, {figures['precision']}: by length / rank order — "
          f"loop time {figures['time_ratio']:.3f}, positions computed {figures['positions_ratio']:.3f} "
          f"(real tokens {mean['length']['tokens']:.0f} against {mean['rank']['tokens']:.0f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    main()
