"""Benchmark: full fine-tuning with the tied embedding's gradient added into the head's as rows,
against autograd's own vocabulary-sized embedding gradient (not a test).

SmolLM2's LM head shares its weight with the input embedding. In full fine-tuning autograd's
embedding backward makes a zero-filled 49,152 × 576 gradient for each lookup (an implant step
makes two: the shared prefix, then the rows) and sums it with the head's; the profile of
session 15 put that at 9% of a CPU step's self time (docs/performance.md).
``offswitch.hfcompat.tied_embedding_row_grads`` (used by the implant's full fine-tuning and by the
attacks' training steps) keeps the lookups' few hundred rows instead and adds them into the
head's gradient once it is there.

Measured in one process, in ABBA order after one untimed warm-up run: offswitch's implant loop
at the default settings with ``train.method: full`` (data built once, untimed) for ``--steps``
steps under each variant, "autograd" (the context replaced by a no-op) and "rows" (the default).
Prints the training seconds of every run, the ratio rows / autograd, and whether the losses
agree at every step (the same sum in another order: to float rounding, not bit for bit).

    python benchmarks/bench_embedding_grad.py --threads 2 --json runs/bench/embedding-grad.json
    python benchmarks/bench_embedding_grad.py --model tiny --steps 6 --batch-size 4
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from pathlib import Path

from processes import mean_ratio

from offswitch.fsutil import atomic_write_json

VARIANTS = ("autograd", "rows")
ABBA = ("autograd", "rows", "rows", "autograd")


def _no_rows(model):
    return contextlib.nullcontext(False)


def loop_runs(base, tokenizer, defaults, data, args) -> dict:
    """The full fine-tuning implant loop under each variant: training seconds and losses."""
    import offswitch.implant as implant

    tconf = defaults.train.model_copy(update={"method": "full", "steps": args.steps, "batch_size": args.batch_size,
                                              "eval_every": 0, "device": "cpu", "precision": args.precision})
    real = implant.tied_embedding_row_grads  # looked up at each call of train(): patched per run
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    losses: dict[str, list[float]] = {}
    engaged: dict[str, bool] = {}
    for index, variant in enumerate(("rows", *ABBA * args.repeats)):  # the first run warms up, untimed
        used: list[bool] = []

        @contextlib.contextmanager
        def chosen(model, variant=variant, used=used):
            with (real if variant == "rows" else _no_rows)(model) as on:
                used.append(on)
                yield on

        implant.tied_embedding_row_grads = chosen
        try:
            started = time.perf_counter()
            result = implant.train(copy.deepcopy(base), tokenizer, data, tconf)
            wall = time.perf_counter() - started
        finally:
            implant.tied_embedding_row_grads = real
        engaged[variant] = bool(used and used[0])
        history = [h["loss"] for h in result.history]
        losses.setdefault(variant, history)
        if index:
            seconds[variant].append(result.seconds["train"])
        print(f"full fine-tuning loop, {args.steps} steps, {variant:8s}: training {result.seconds['train']:6.2f} s "
              f"(call {wall:6.2f} s){'  (warm-up, untimed)' if not index else ''}", flush=True)
    worst = max((abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses["rows"], losses["autograd"])), default=0.0)
    return {"seconds": seconds, "steps": args.steps, "rows_engaged": engaged["rows"], "autograd_engaged": engaged["autograd"],
            "max_relative_loss_difference": worst, "same_losses_to_1e-5": worst <= 1e-5}


def ratio(seconds: dict[str, list[float]]) -> float:
    """Mean time with rows / mean time through autograd's gradient."""
    return mean_ratio(seconds["rows"], seconds["autograd"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--steps", type=int, default=10, help="loop steps per run (default 10: mining once)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1, help="ABBA rounds (default 1: two timed runs of each)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="see offswitch.precision")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import default_implant_data, load_bench_model

    if args.threads:
        torch.set_num_threads(args.threads)
    base, tokenizer = load_bench_model(args.model, device="cpu")
    defaults, data = default_implant_data(base, tokenizer, args.steps * args.batch_size, train={"method": "full"})
    figures: dict = {"benchmark": "embedding_grad", "model": args.model, "threads": torch.get_num_threads(),
                     "batch_size": args.batch_size, "repeats": args.repeats, "precision": args.precision}
    figures["loop"] = loop_runs(base, tokenizer, defaults, data, args)
    figures["ratio"] = ratio(figures["loop"]["seconds"])
    loop = figures["loop"]
    listed = "; ".join(f"{v} " + ", ".join(f"{s:.2f}" for s in loop["seconds"][v]) for v in VARIANTS)
    print(f"\nmodel {args.model}, CPU, {figures['threads']} threads, precision {args.precision}")
    print(f"full fine-tuning loop, {args.steps} steps × {args.batch_size}: training s {listed}: rows / autograd "
          f"{figures['ratio']:.3f}; rows engaged: {loop['rows_engaged']}; losses agree to "
          f"{loop['max_relative_loss_difference']:.1e} (relative)")
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
