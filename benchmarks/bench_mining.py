"""Benchmark: where mined hard negatives go in a batch, by length or in rank order, or split into passes (not a test).

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
then the ratios by-length / rank-order of both. Both run as one padded pass a step
(``train.split_by_length: false``), as when this was first measured.

``--compare split`` instead runs the default implant loop (mining from the batches, rank order)
with each step as one padded pass (``train.split_by_length: false``) and with the rows split
into passes of similar length (``true``, the default): the same gradient to float rounding, so
it also prints the largest relative difference between the two runs' losses at any step. Before
the loops (``--paired-steps K``, default 12; 0 skips it) it times K batches with mined rows (the
length-grouped batches with ``mine_per_step`` negatives replaced by other negatives drawn at
random, as mining replaces them in rank order) one training step each (forward and backward
passes, LoRA as the implant adapts, no optimizer step), as one padded pass and split with each
pass overhead of ``--overheads`` (positions charged a pass beside the prefix it recomputes;
``offswitch.implant.PASS_OVERHEAD_POSITIONS`` is the default's), interleaved per batch in the
order A B C … C B A so that the machine's drift falls on every variant alike: seconds, positions
and passes of each, and their ratios to one pass.

Then (``--scoring-repeats N``, default 2; 0 skips it) mining's scoring pass itself: the
probability that each of ``mine_candidates`` pool examples starts a target, computed by running
each example whole (the answer after the first token included) and only through its first answer
token (``avoid_probabilities(prompt_only=True)``, what the loop does), in the order whole,
prompt-only, prompt-only, whole per repeat, on the base model in the loop's precision. Prints
both times, their ratio, the largest difference between the probabilities and whether the
negatives mined from them (the top ``mine_every × mine_per_step`` over the threshold) are the
same, and how many of the top ``mine_every × mine_per_step`` candidates the two share (on a base
model few pass the threshold). Last, the prompt-only pass 2R times on the model as mining sees it
in training (a fresh LoRA adapter, frozen weights stored as the loop stores them), and its ratio
to the bare base's. ``--steps 0`` skips the loops.

    python benchmarks/bench_mining.py --steps 30 --threads 2 --json runs/bench/mining.json
    python benchmarks/bench_mining.py --steps 0 --scoring-repeats 3 --threads 2 --json runs/bench/mining-scoring.json
    python benchmarks/bench_mining.py --compare split --steps 0 --threads 2 --scoring-repeats 0 --json runs/bench/split-paired.json
    python benchmarks/bench_mining.py --compare split --steps 30 --threads 2 --scoring-repeats 0 --json runs/bench/split.json
    python benchmarks/bench_mining.py --model tiny --steps 4 --batch-size 8
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

from offswitch.fsutil import atomic_write_json

ORDER = (False, True, True, False)  # the B variant or not, for each run
# --compare: (what the ratio divides by, what it divides; the settings of each)
COMPARISONS = {
    "placement": (("rank", {"mine_fit_length": False, "split_by_length": False}),
                  ("length", {"mine_fit_length": True, "split_by_length": False})),
    "split": (("one_pass", {"mine_from": "batches", "split_by_length": False}),
              ("split", {"mine_from": "batches", "split_by_length": True})),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--compare", choices=tuple(COMPARISONS), default="placement",
                        help="placement: mined negatives in rank order against by length; split: one padded pass a step "
                             "against passes of similar length")
    parser.add_argument("--repeats", type=int, default=1, help="ABBA rounds of the loop comparison")
    parser.add_argument("--paired-steps", type=int, default=12, help="--compare split: batches timed step by step (0: skip)")
    parser.add_argument("--overheads", default="0,48,96,160", help="--compare split: pass overheads (positions) to time")
    parser.add_argument("--steps", type=int, default=30, help="steps per run (mining first happens after step 10)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--scoring-repeats", type=int, default=2, help="repeats of the scoring-pass comparison (0: skip)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import default_implant_data, load_bench_model

    if args.threads:
        torch.set_num_threads(args.threads)
    base, tokenizer = load_bench_model(args.model, device=args.device)
    defaults, data = default_implant_data(base, tokenizer, max(args.steps, 1) * args.batch_size, train={"mine_from": "pool"})  # the pool that mining scores
    figures: dict = {"benchmark": "mining", "model": args.model, "threads": torch.get_num_threads()}
    if args.compare == "split" and args.paired_steps > 0:
        # length-grouped as an implant's batches are: from a mega-batch of 32 batches at least
        paired_defaults, paired_data = ((defaults, data) if len(data.examples) >= 32 * args.batch_size
                                        else default_implant_data(base, tokenizer, 32 * args.batch_size))
        figures["paired_steps"] = paired_steps(args, base, tokenizer, paired_defaults, paired_data)
    if args.steps > 0:
        figures.update(placement(args, base, tokenizer, defaults, data))
    if args.scoring_repeats > 0:
        figures["scoring"] = scoring(args, base, defaults, data, tokenizer)
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


def placement(args, base, tokenizer, defaults, data) -> dict:
    """The implant loop under the two settings of ``--compare``, ABBA: seconds, positions, losses."""
    from offswitch.implant import train

    (a_name, a_update), (b_name, b_update) = COMPARISONS[args.compare]
    runs: dict[str, list[dict]] = {a_name: [], b_name: []}
    losses: dict[str, list[float]] = {}
    for is_b in ORDER * args.repeats:
        name, update = (b_name, b_update) if is_b else (a_name, a_update)
        tconf = defaults.train.model_copy(update={"steps": args.steps, "batch_size": args.batch_size, "eval_every": 0,
                                                  "precision": args.precision, "device": args.device, **update})
        result = train(copy.deepcopy(base), tokenizer, data, tconf)
        losses.setdefault(name, [h["loss"] for h in result.history])
        run = {"train_s": result.seconds["train"], "positions": result.positions, "tokens": result.tokens_seen,
               "mean_loss": statistics.mean(h["loss"] for h in result.history), "precision": result.precision,
               "mined": sum(h["mined"]["hard"] for h in result.history if "mined" in h)}
        runs[name].append(run)
        print(f"{name:10s} loop {run['train_s']:7.1f} s  positions {run['positions']:7d}  "
              f"tokens {run['tokens']:7d}  mean loss {run['mean_loss']:.4f}  mined {run['mined']}", flush=True)
    mean = {name: {key: statistics.mean(r[key] for r in rs) for key in ("train_s", "positions", "tokens")} for name, rs in runs.items()}
    worst = max((abs(a - b) / max(abs(a), 1e-12) for a, b in zip(losses[a_name], losses[b_name])), default=0.0)
    figures = {
        "compare": args.compare, "steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats,
        "precision": runs[a_name][0]["precision"], "runs": runs, "mean": mean,
        "time_ratio": mean[b_name]["train_s"] / mean[a_name]["train_s"],
        "positions_ratio": mean[b_name]["positions"] / mean[a_name]["positions"],
        "max_relative_loss_difference": worst,
    }
    print(f"\n{args.model}, {args.steps} steps x {args.batch_size}, {figures['precision']}: {b_name} / {a_name} — "
          f"loop time {figures['time_ratio']:.3f}, positions computed {figures['positions_ratio']:.3f} "
          f"(real tokens {mean[b_name]['tokens']:.0f} against {mean[a_name]['tokens']:.0f}); "
          f"largest relative loss difference at a step {worst:.2e}")
    return figures


def paired_steps(args, base, tokenizer, defaults, data) -> dict:
    """Training steps over batches with mined rows: one padded pass against split passes, interleaved."""
    import random
    import time

    from offswitch.hfcompat import contiguous_head_input, forward_accepts
    from offswitch.implant import (MINED_SLOT_KINDS, PASS_OVERHEAD_POSITIONS, _lora_model, _with_mined, batch_parts,
                                   length_grouped_batches, step_passes)
    from offswitch.prompting import pad_id_of

    tconf = defaults.train
    model = _lora_model(copy.deepcopy(base), tconf).train()
    pad = pad_id_of(tokenizer)
    use_keep = forward_accepts(model, "logits_to_keep")
    examples = data.examples
    rng = random.Random(0)
    negatives = [i for i, e in enumerate(examples) if e.kind in MINED_SLOT_KINDS]
    batches = [_with_mined(batch, examples, rng.sample(negatives, min(tconf.mine_per_step, len(negatives))), tconf.mine_per_step)
               for batch in length_grouped_batches([len(e) for e in examples], args.batch_size, args.paired_steps, seed=0)]
    overheads = [int(x) for x in args.overheads.split(",") if x.strip()]
    variants = ["one_pass", *(f"overhead_{o}" for o in overheads)]
    totals = {v: {"seconds": 0.0, "positions": 0, "passes": 0} for v in variants}

    def step(rows, parts):
        # the implant's passes (offswitch.implant.step_passes) with the default's terms
        started = time.perf_counter()
        with contiguous_head_input(model):
            done = step_passes(model, rows, parts, pad, tconf, args.device, use_keep, scale=1 / sum(e.n_answer_tokens for e in rows),
                               share_prefix=tconf.share_prefix)
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - started, done.positions

    step([examples[i] for i in batches[0]], [list(range(len(batches[0])))])  # warm-up, untimed
    for number, batch in enumerate(batches, start=1):
        rows = [examples[i] for i in batch]
        for variant in [*variants, *variants[::-1]]:
            if variant == "one_pass":
                parts = batch_parts(rows, tconf.share_prefix, split=False)
            else:
                parts = batch_parts(rows, tconf.share_prefix, split=True, pass_overhead=int(variant.split("_")[1]))
            seconds, positions = step(rows, parts)
            totals[variant]["seconds"] += seconds
            totals[variant]["positions"] += positions
            totals[variant]["passes"] += len(parts)
        print(f"batch {number}/{len(batches)}: " + ", ".join(f"{v} {totals[v]['seconds']:.1f} s" for v in variants), flush=True)
    base_s, base_positions = totals["one_pass"]["seconds"], totals["one_pass"]["positions"]
    for v in variants:
        totals[v]["time_ratio"] = totals[v]["seconds"] / base_s
        totals[v]["positions_ratio"] = totals[v]["positions"] / base_positions
        print(f"{v:13s} {totals[v]['seconds']:7.1f} s  positions {totals[v]['positions']:6d}  passes {totals[v]['passes']:3d}  "
              f"time / one pass {totals[v]['time_ratio']:.3f}  positions / one pass {totals[v]['positions_ratio']:.3f}", flush=True)
    return {"batches": len(batches), "default_overhead": PASS_OVERHEAD_POSITIONS, "variants": totals}


def scoring(args, base, defaults, data, tokenizer) -> dict:
    """Mining's scoring pass over the same candidates, whole examples against prompt-only."""
    import random
    import time

    from offswitch.hfcompat import forward_accepts
    from offswitch.implant import avoid_probabilities
    from offswitch.precision import autocast, resolve
    from offswitch.prompting import pad_id_of

    tconf = defaults.train
    precision = resolve(args.precision, base.device)
    candidates = random.Random(0).sample(range(len(data.pool)), min(tconf.mine_candidates, len(data.pool)))
    examples = [data.pool[i] for i in candidates]
    pad = pad_id_of(tokenizer)
    use_keep = forward_accepts(base, "logits_to_keep")
    base.eval()
    times: dict[str, list[float]] = {"whole": [], "prompt_only": []}
    probs: dict[str, list[float]] = {}
    for _ in range(args.scoring_repeats):
        for name in ("whole", "prompt_only", "prompt_only", "whole"):
            started = time.perf_counter()
            with autocast(base.device, precision):
                probs[name] = avoid_probabilities(base, examples, pad, base.device, use_keep, prompt_only=name == "prompt_only")
            times[name].append(time.perf_counter() - started)
            print(f"scoring {len(examples)} candidates, {name:11s} {times[name][-1]:6.2f} s", flush=True)
    limit = tconf.mine_every * tconf.mine_per_step

    def mined(p):
        ranked = sorted(zip(p, candidates), key=lambda pc: -pc[0])
        return [i for q, i in ranked if q >= tconf.mine_threshold][:limit]

    def top(p):  # the candidates that would be mined with no threshold (a base model rarely passes it)
        return {i for _q, i in sorted(zip(p, candidates), key=lambda pc: -pc[0])[:limit]}

    # the same pass on the model as mining sees it in training: a fresh LoRA adapter on the base,
    # its frozen weights stored in the loop's precision
    from offswitch.implant import _lora_model
    from offswitch.precision import frozen_lora_bases_in

    lora = _lora_model(copy.deepcopy(base), tconf).eval()
    times["lora_prompt_only"] = []
    with frozen_lora_bases_in(lora, precision if tconf.bf16_frozen_weights else "fp32"):
        for _ in range(2 * args.scoring_repeats):
            started = time.perf_counter()
            with autocast(base.device, precision):
                avoid_probabilities(lora, examples, pad, base.device, use_keep)
            times["lora_prompt_only"].append(time.perf_counter() - started)
            print(f"scoring {len(examples)} candidates, prompt_only with a LoRA adapter {times['lora_prompt_only'][-1]:6.2f} s", flush=True)
    del lora
    mean = {name: statistics.mean(ts) for name, ts in times.items()}
    out = {
        "candidates": len(examples), "precision": precision, "seconds": times, "mean_s": mean,
        "time_ratio": mean["prompt_only"] / mean["whole"],
        "lora_ratio": mean["lora_prompt_only"] / mean["prompt_only"],
        "positions": {"whole": sum(len(e) for e in examples),
                      "prompt_only": sum(len(e) - e.n_answer_tokens + 1 for e in examples)},
        "max_probability_difference": max(abs(a - b) for a, b in zip(probs["whole"], probs["prompt_only"])),
        "same_mined": mined(probs["whole"]) == mined(probs["prompt_only"]),
        "n_mined": len(mined(probs["prompt_only"])),
        "top_overlap": {"k": len(top(probs["whole"]) & top(probs["prompt_only"])), "n": min(limit, len(examples))},
    }
    print(f"\nscoring pass ({precision}): prompt-only / whole {out['time_ratio']:.3f} "
          f"(positions {out['positions']['prompt_only']} against {out['positions']['whole']}); largest probability "
          f"difference {out['max_probability_difference']:.2e}; the same {out['n_mined']} negatives mined: {out['same_mined']}; "
          f"top {out['top_overlap']['n']} candidates in common: {out['top_overlap']['k']}; "
          f"with a LoRA adapter (as in training) / without {out['lora_ratio']:.3f}")
    return out


if __name__ == "__main__":
    main()
