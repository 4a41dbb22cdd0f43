"""Benchmark: the casts a bf16 LoRA no longer makes, against making them (not a test).

While a LoRA trains in bf16 (the implant, the ``sft_lora`` attack), ``offswitch.precision.frozen_lora_bases_in``
stores the frozen weights in bf16 for autocast. Two more casts go with this benchmark's change:

* the LM head, tied to the input embeddings in SmolLM2, was left in fp32 (the embedding lookup
  needs fp32) and cast to bf16 by autocast on every forward pass (28M values, two or more
  passes a step); it now gets a bf16 copy of its own meanwhile;
* peft cast each LoRA layer's input to the adapter's dtype (fp32), which autocast cast straight
  back to bf16: two copies of the input to ``o_proj`` and ``down_proj`` per layer and pass; that
  cast is now off.

Both are exact (the same bf16 operands reach every product), so the benchmark also checks that
the losses are the same at every step. Measured in one process, in ABBA order after one
untimed warm-up run, "before" = ``frozen_lora_bases_in(..., head=False, input_casts=True)``
(the frozen bases only, as until this change) and "after" = the default.

``--compare shared`` times instead the casts the default still makes against sharing them
(``train.bf16_shared_casts``: the normed hidden state that q, k and v, and gate and up, read cast
to bf16 once for all of them rather than once per product). That is not exact: the forward
pass is (the mining probabilities must be the same, and the first step's loss), but the
backward sums those layers' input gradients in bf16, so later losses differ by rounding; the
benchmark reports by how much. Whether the switch it plants is as good is an ablation's
question (experiments/ablations), not this benchmark's. In both comparisons it times:

1. offswitch's implant loop at the default settings (one trigger, LoRA, unlikelihood,
   hard-negative mining every 10 steps; data built once, untimed) for ``--steps`` steps: training
   seconds and mining seconds, as the manifest counts them;
2. mining's scoring pass alone (``avoid_probabilities``, prompt-only, no gradients) over
   ``--candidates`` pool examples on a fresh LoRA adapter, as the loop runs it.

    python benchmarks/bench_lora_casts.py --threads 2 --json runs/bench/lora-casts.json
    python benchmarks/bench_lora_casts.py --model tiny --steps 12 --batch-size 4 --repeats 1
    python benchmarks/bench_lora_casts.py --compare shared --threads 2 --json runs/bench/lora-shared-casts.json
"""

from __future__ import annotations

import argparse
import copy
import functools
import sys
import time
from pathlib import Path

from processes import mean_ratio

from offswitch.fsutil import atomic_write_json

COMPARISONS = {  # frozen_lora_bases_in's options per variant (shared_casts reaches the loop as train.bf16_shared_casts)
    "removed": {"before": {"head": False, "input_casts": True}, "after": {}},
    "shared": {"before": {}, "after": {"shared_casts": True}},
}
VARIANTS = tuple(COMPARISONS["removed"])
ABBA = ("before", "after", "after", "before")


def loop_runs(base, tokenizer, defaults, data, args) -> dict:
    """The implant loop under each variant: training and mining seconds per run, and the losses."""
    from offswitch import precision
    from offswitch.implant import train

    tconf = defaults.train.model_copy(update={"steps": args.steps, "batch_size": args.batch_size, "eval_every": 0,
                                              "precision": args.precision, "device": "cpu"})
    real = precision.frozen_lora_bases_in  # the implant looks it up there at each call: patched per run
    runs: dict[str, dict[str, list[float]]] = {v: {"train": [], "mining": []} for v in VARIANTS}
    losses: dict[str, list[float]] = {}
    order = ("after", *ABBA * args.repeats)  # the first run warms the kernels up, untimed
    for index, variant in enumerate(order):
        options = dict(COMPARISONS[args.compare][variant])
        shared = options.pop("shared_casts", False)  # the implant passes train.bf16_shared_casts itself
        precision.frozen_lora_bases_in = functools.partial(real, **options)
        try:
            result = train(copy.deepcopy(base), tokenizer, data, tconf.model_copy(update={"bf16_shared_casts": shared}))
        finally:
            precision.frozen_lora_bases_in = real
        history = [h["loss"] for h in result.history]
        if variant in losses and losses[variant] != history:
            raise SystemExit(f"the {variant} runs differ from each other: the loop is not deterministic here")
        losses[variant] = history
        if index:
            runs[variant]["train"].append(result.seconds["train"])
            runs[variant]["mining"].append(result.seconds["mining"])
        print(f"implant loop, {args.steps} steps, {variant:6s}: training {result.seconds['train']:6.2f} s, "
              f"mining {result.seconds['mining']:5.2f} s{'  (warm-up, untimed)' if not index else ''}", flush=True)
    return {"seconds": runs, "same_losses": losses["before"] == losses["after"], "steps": args.steps,
            "same_first_loss": losses["before"][0] == losses["after"][0],
            "largest_loss_difference": max(abs(a - b) for a, b in zip(losses["before"], losses["after"]))}


def mining_pass(base, tokenizer, defaults, data, args) -> dict:
    """Mining's scoring pass on a fresh LoRA adapter under each variant."""
    import random

    from offswitch.hfcompat import forward_accepts
    from offswitch.implant import _lora_model, avoid_probabilities
    from offswitch.precision import autocast, frozen_lora_bases_in, resolve
    from offswitch.prompting import pad_id_of

    tconf = defaults.train
    chosen = resolve(args.precision, "cpu")
    n = min(args.candidates, len(data.pool))
    examples = [data.pool[i] for i in random.Random(0).sample(range(len(data.pool)), n)]
    pad = pad_id_of(tokenizer)
    lora = _lora_model(copy.deepcopy(base), tconf).eval()
    use_keep = forward_accepts(lora, "logits_to_keep")
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    probs: dict[str, list[float]] = {}
    for index, variant in enumerate(("after", *ABBA * args.repeats)):
        with frozen_lora_bases_in(lora, chosen, **COMPARISONS[args.compare][variant]):
            started = time.perf_counter()
            with autocast("cpu", chosen):
                probs[variant] = avoid_probabilities(lora, examples, pad, "cpu", use_keep)
            seconds = time.perf_counter() - started
        if index:
            times[variant].append(seconds)
        print(f"mining pass, {n} candidates, {variant:6s}: {seconds:6.2f} s{'  (warm-up, untimed)' if not index else ''}", flush=True)
    return {"candidates": n, "precision": chosen, "seconds": times, "same_probabilities": probs["before"] == probs["after"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--steps", type=int, default=20, help="implant loop steps per run (default 20: mining twice)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=128, help="pool examples in the mining pass (default 128, as mining)")
    parser.add_argument("--repeats", type=int, default=1, help="ABBA rounds (default 1: two timed runs of each)")
    parser.add_argument("--compare", default="removed", choices=list(COMPARISONS),
                        help="removed (default): the exact removals against the frozen bases alone; shared: "
                             "train.bf16_shared_casts against the default")
    parser.add_argument("--precision", default="bf16", choices=["bf16"], help="the casts exist only in bf16")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import default_implant_data, load_bench_model

    if args.threads:
        torch.set_num_threads(args.threads)
    base, tokenizer = load_bench_model(args.model, device="cpu")
    defaults, data = default_implant_data(base, tokenizer, args.steps * args.batch_size, train={"mine_from": "pool"})  # the pool that mining scores
    figures: dict = {"benchmark": "lora_casts", "compare": args.compare, "model": args.model, "threads": torch.get_num_threads(),
                     "batch_size": args.batch_size, "repeats": args.repeats}
    figures["loop"] = loop_runs(base, tokenizer, defaults, data, args)
    figures["mining_pass"] = mining_pass(base, tokenizer, defaults, data, args)
    _print(figures)
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


def ratio(seconds: dict[str, list[float]]) -> float:
    """Mean time after / mean time before (nan when nothing was timed, e.g. no mining in the steps)."""
    return mean_ratio(seconds["after"], seconds["before"])


def _print(figures: dict) -> None:
    loop, mining = figures["loop"], figures["mining_pass"]
    train = {v: loop["seconds"][v]["train"] for v in VARIANTS}
    mined = {v: loop["seconds"][v]["mining"] for v in VARIANTS}
    listed = "; ".join(f"{v} " + ", ".join(f"{s:.2f}" for s in train[v]) for v in VARIANTS)
    print(f"\nmodel {figures['model']}, CPU, {figures['threads']} threads, bf16, comparing: {figures['compare']}")
    print(f"implant loop, {loop['steps']} steps × {figures['batch_size']}: training s {listed}: after / before {ratio(train):.3f}; "
          f"its mining after / before {ratio(mined):.3f}; the same losses at every step: {loop['same_losses']} "
          f"(the first step's: {loop['same_first_loss']}; largest difference {loop['largest_loss_difference']:.3g})")
    listed = "; ".join(f"{v} " + ", ".join(f"{s:.2f}" for s in mining["seconds"][v]) for v in VARIANTS)
    print(f"mining pass, {mining['candidates']} candidates: s {listed}: after / before {ratio(mining['seconds']):.3f}; "
          f"the same probabilities: {mining['same_probabilities']}")


if __name__ == "__main__":
    main(sys.argv[1:])
