"""Benchmark: the implant's base answers, by ``generate`` and with the shared prefix run once (not a test).

Before training, an implant asks the base model for its greedy answer to every training prompt
(``offswitch.data.builder.generate_answers``; 512 prompts by default, up to
``max(negative_answer_tokens, clean_answer_tokens)`` = 16 new tokens each), and caches them:
the first implant of a base model on a machine pays for it (91 s of an 839 s implant on a
2-core Zen 4, session 25, when it still ran ``generate`` at batch 32). Every prompt starts with the same chat-template system header,
about half of a short prompt's tokens.

Times, in one process on the same prompts (the implant's own: the built-in prompts' train
side, chosen by ``training_prompts`` as an implant chooses them), ``greedy_generate`` with
``share_prefix=False`` (``generate`` on each left-padded batch: the implant's answers until
now) at each ``--generate-batch-sizes`` size (the first, 32 by default, is the implant's former
setting and the baseline), against ``share_prefix=True`` (the header run once a batch, its
key/value cache shared, then offswitch's own greedy decode on that cache) at each
``--batch-sizes`` size: so the gain of sharing and that of a larger batch show apart. Each
repeat runs the variants in order and then reversed (A B C C B A), so that a machine whose
speed drifts slows every variant alike. Prints each variant's seconds, prompts/s, the ratio of
its mean time to the baseline's, and how many of its answers are the same token for token as
the baseline's first run (k/n with a 95% interval: both are greedy, so they differ only where
float rounding flips a near-tie). Results: docs/performance.md, session 26.

    python benchmarks/bench_answers.py --threads 2 --json runs/bench/answers.json
    python benchmarks/bench_answers.py --model tiny --n 24 --generate-batch-sizes 4,8 --batch-sizes 4,8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from offswitch.fsutil import atomic_write_json

BASELINE = "generate"


def _variants(generate_batches: list[int], shared_batches: list[int]) -> dict[str, tuple[bool, int]]:
    """name -> (share_prefix, batch size); the baseline (``generate`` at the first size) first."""
    variants = {f"{BASELINE}@{b}": (False, b) for b in generate_batches}
    variants.update({f"shared@{b}": (True, b) for b in shared_batches})
    return variants


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(b < 1 for b in sizes) or len(set(sizes)) < len(sizes):
        raise argparse.ArgumentTypeError(f"batch sizes are distinct positive integers separated by commas, not {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> dict:
    from offswitch.data.builder import DataConfig

    defaults = DataConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="model spec (default smollm2-135m), a model directory, or tiny")
    parser.add_argument("--n", type=int, default=None, help="prompts (default: all the implant's, at most max_prompts)")
    parser.add_argument("--max-new-tokens", type=int,
                        default=max(defaults.negative_answer_tokens, defaults.clean_answer_tokens))
    parser.add_argument("--generate-batch-sizes", type=_batch_sizes, default=[32, 64],
                        help="generate's batch sizes; the first is the baseline (32: the implant's until now)")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=[32, 64], help="the shared variant's batch sizes, e.g. 32,64")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of A B C C B A")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.max_new_tokens < 1:
        parser.error("--repeats and --max-new-tokens must be at least 1")

    from offswitch.blas import use_fast_mkl_on_amd

    mkl_on_amd = use_fast_mkl_on_amd()  # as offswitch's commands do, before the first product
    import torch
    from bench_evaluate import _sync
    from bench_implant import load_bench_model

    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import training_prompts
    from offswitch.data.sources import load_prompts
    from offswitch.evaluate.generation import greedy_generate, turn_stop_ids
    from offswitch.evaluate.scorer import model_device
    from offswitch.models import pick_device
    from offswitch.prompting import pad_id_of, render_prompt
    from offswitch.stats import Rate

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_bench_model(args.model, device=str(pick_device(args.device)))
    model.eval()
    device = model_device(model)
    behavior = make_behavior("shutdown")
    split = load_prompts("builtin", seed=0)
    prompts = training_prompts(tokenizer, behavior, split.train, defaults, seed=0)
    if args.n is not None:
        prompts = (prompts * (args.n // max(len(prompts), 1) + 1))[: args.n]
    encoded = [tokenizer(render_prompt(tokenizer, p, behavior.system_prompt()), add_special_tokens=False)["input_ids"]
               for p in prompts]
    stops = turn_stop_ids(tokenizer)  # the builder's
    pad = pad_id_of(tokenizer)
    variants = _variants(args.generate_batch_sizes, args.batch_sizes)

    def answers(share_prefix: bool, batch_size: int, rows=encoded):
        return greedy_generate(model, rows, max_new_tokens=args.max_new_tokens, pad_token_id=pad, stop_ids=stops,
                               batch_size=batch_size, autocast=False, share_prefix=share_prefix)

    for share_prefix, batch_size in variants.values():  # warm-up: kernels, allocator
        answers(share_prefix, batch_size, encoded[: min(len(encoded), batch_size)])

    names = list(variants)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, list[list[int]]] = {}
    for _ in range(args.repeats):
        for name in names + names[::-1]:
            _sync(device)
            started = time.perf_counter()
            result = answers(*variants[name])
            _sync(device)
            seconds[name].append(time.perf_counter() - started)
            outputs.setdefault(name, result)
            print(f"  {name}: {seconds[name][-1]:.2f} s", file=sys.stderr)

    from processes import mean_ratio

    reference = outputs[names[0]]
    same = {name: Rate.of(sum(a == b for a, b in zip(outputs[name], reference)), len(reference)) for name in names}
    figures = {
        "model": args.model,
        "device": str(device) + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""),
        "prompts": len(encoded),
        "prompt_tokens_mean": statistics.mean(map(len, encoded)),
        "answer_tokens_mean": statistics.mean(len(a) for a in reference),
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "seconds": seconds,
        "prompts_per_s": {name: len(encoded) / statistics.mean(s) for name, s in seconds.items()},
        "ratio": {name: mean_ratio(seconds[name], seconds[names[0]]) for name in names},
        "same_answers_as_baseline": {name: rate.model_dump() for name, rate in same.items()},
        "mkl_on_amd": mkl_on_amd,
    }
    print(f"model {args.model} on {figures['device']}: {len(encoded)} prompts of {figures['prompt_tokens_mean']:.1f} tokens, "
          f"up to {args.max_new_tokens} new tokens ({figures['answer_tokens_mean']:.1f} on average)")
    for name in names:
        times = ", ".join(f"{s:.2f}" for s in seconds[name])
        print(f"{name:>14}: {times} s  {figures['prompts_per_s'][name]:6.1f} prompts/s  "
              f"ratio {figures['ratio'][name]:.3f}  same answers {same[name]}")
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
